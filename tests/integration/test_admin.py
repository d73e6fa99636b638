"""Browsing metrics and managing API keys in the admin."""

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from metrics_app.admin import BoundedCountPaginator
from metrics_app.alerts.models import Alert
from metrics_app.history.summaries import aggregate_day
from metrics_app.ingest.storage import store_metrics
from metrics_app.models import ApiKey, hash_key
from metrics_app.records import validate_records
from tests.support.records import navigation, scheduler_run, scrape

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client: Client, admin_user: Any) -> Client:
    client.force_login(admin_user)
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/admin/metrics_app/pageperformance/",
        "/admin/metrics_app/pageperformance/?scraper_source=robinhood&success__exact=0&q=timeout",
        "/admin/metrics_app/schedulermetric/?q=nightly",
        "/admin/metrics_app/dailysummary/",
        "/admin/metrics_app/schedulerdailysummary/?q=nightly",
        "/admin/metrics_app/hourlyrollup/?metric_type=page_scrape",
        "/admin/metrics_app/apikey/",
    ],
)
def test_changelists_filter_and_search(staff: Client, path: str) -> None:
    store_metrics(validate_records([navigation(success=False, error="timeout"), scrape(), scheduler_run()]))
    assert staff.get(path).status_code == 200


def test_metric_rows_are_read_only(staff: Client) -> None:
    store_metrics(validate_records([navigation()]))
    assert staff.get("/admin/metrics_app/pageperformance/add/").status_code == 403
    row_id = staff.get("/admin/metrics_app/pageperformance/").context["cl"].result_list[0].pk
    response = staff.post(f"/admin/metrics_app/pageperformance/{row_id}/change/", {"scraper_source": "x"})
    assert response.status_code == 403


def test_creating_a_key_shows_it_once_never_through_a_cookie(staff: Client) -> None:
    created = staff.post(
        "/admin/metrics_app/apikey/add/", {"name": "cnbc scraper", "scope": "all", "sources": ""}
    )
    api_key = ApiKey.objects.get()
    assert "messages" not in created.cookies  # kept server-side, in the session
    shown = staff.get(created["Location"])
    (message,) = [str(m) for m in shown.context["messages"] if "shown only now" in str(m)]
    key = message.rsplit(" ", 1)[-1]
    assert key in shown.content.decode()
    assert api_key.name == "cnbc scraper"
    assert api_key.key_hash == hash_key(key) and key not in api_key.key_hash
    assert "no-store" in shown["Cache-Control"]  # and no cache keeps the page
    assert key not in staff.get(created["Location"]).content.decode()  # once


def test_revoking_keys(staff: Client) -> None:
    api_key, _ = ApiKey.issue("old")
    staff.post("/admin/metrics_app/apikey/", {"action": "revoke", "_selected_action": [api_key.pk]})
    api_key.refresh_from_db()
    assert not api_key.is_active


def test_metrics_cannot_be_deleted_here(staff: Client) -> None:
    store_metrics(validate_records([navigation()]))
    page = staff.get("/admin/metrics_app/pageperformance/")
    assert "delete_selected" not in page.content.decode()
    row_id = page.context["cl"].result_list[0].pk
    assert (
        staff.post(f"/admin/metrics_app/pageperformance/{row_id}/delete/", {"post": "yes"}).status_code == 403
    )


def test_lists_read_like_the_page(staff: Client) -> None:
    store_metrics(validate_records([navigation(navigationDurationMs=2116, recordedAt=1_795_000_000_123)]))
    store_metrics(
        validate_records([scrape(success=False, error="net::ERR_CONNECTION_RESET", dataSize=56375)])
    )
    rows = staff.get("/admin/metrics_app/pageperformance/").content.decode()
    assert "2.1 s" in rows and "2026-11-18 11:06:40" in rows  # a duration in s, a time to the second
    assert "56.4 KB" in rows and "56375" not in rows  # a size as the page writes it
    header = re.findall(r'<th scope="col"[^>]*class="[^"]*column-(\w+)', rows)
    assert header.index("error_text") < header.index("page")  # why it failed, before the long URL
    rollups = staff.get("/admin/metrics_app/hourlyrollup/").content.decode()
    assert "1.8 s–2.1 s" in rollups  # the bucket as the durations it holds

    aggregate_day(timezone.localdate(datetime.fromtimestamp(1_795_000_000, UTC)))
    summaries = staff.get("/admin/metrics_app/dailysummary/").content.decode()
    assert "100.0 %" in summaries and "2.1 s" in summaries  # success % and a rounded p95/average


def test_the_detailed_lists_never_count_every_row(staff: Client, monkeypatch: Any) -> None:
    monkeypatch.setattr(BoundedCountPaginator, "COUNT_LIMIT", 3)
    store_metrics(validate_records([navigation(url=f"u{i}") for i in range(5)]))
    page = staff.get("/admin/metrics_app/pageperformance/")
    assert page.context["cl"].result_count == 3  # a bounded count, not COUNT(*) of the table
    assert "3+ page metrics (filter or search to narrow)" in page.content.decode()  # not read as exact
    assert "days" in page.context and len(page.context["days"]) == 1  # the days it holds


@pytest.mark.parametrize("sources", ["ABC,\n", "*", "cnbc,not a name"])
def test_a_key_limited_to_what_is_not_a_source_is_refused(staff: Client, sources: str) -> None:
    form = {"name": "odd scraper", "scope": "all", "sources": sources}
    refused = staff.post("/admin/metrics_app/apikey/add/", form)
    assert refused.status_code == 200 and "not a source or scheduler name" in refused.content.decode()
    assert not ApiKey.objects.exists()


def test_a_keys_sources_are_kept_as_names_once_each(staff: Client) -> None:
    staff.post(
        "/admin/metrics_app/apikey/add/", {"name": "two", "scope": "read", "sources": " webull,cnbc,\n cnbc"}
    )
    assert ApiKey.objects.get().source_list == frozenset({"cnbc", "webull"})


SILENCE = {"scraper_source": "cnbc", "scheduler_name": "", "verdict": "", "reason": "maintenance",
           "starts_at_0": "2026-12-07", "starts_at_1": "10:00:00", "ends_at_0": "2026-12-07", "ends_at_1": "11:00:00"}  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"scraper_source": ""}, "a silence of everything"),
        ({"ends_at_1": "09:00:00"}, "must end after it starts"),
        ({"scraper_source": "Not A Name"}, "is not a source or scheduler name"),
    ],
)
def test_a_silence_of_everything_or_backwards_is_refused(
    staff: Client, changes: dict[str, str], says: str
) -> None:
    from metrics_app.alerts.models import Silence

    refused = staff.post("/admin/metrics_app/silence/add/", {**SILENCE, **changes})
    assert refused.status_code == 200 and says in refused.content.decode()
    assert not Silence.objects.exists()
    staff.post("/admin/metrics_app/silence/add/", SILENCE)
    assert Silence.objects.get().scraper_source == "cnbc"


def test_an_alerts_figures_read_like_its_summary(staff: Client) -> None:
    """Its value and threshold as the summary gives them ("59.9 %"), not 0.599009900990099."""
    now = timezone.now()
    alert = Alert.objects.create(fingerprint="site_down:cnbc:", verdict="site_down", scraper_source="cnbc",
                                 severity="critical", state="firing", summary="cnbc: 59.9 % of page loads failed",
                                 value=0.599009900990099, threshold=0.16, pending_since=now, starts_at=now,
                                 last_held_at=now)  # fmt: skip
    detail = staff.get(f"/admin/metrics_app/alert/{alert.pk}/change/").content.decode()
    assert "59.9 %" in detail and "16.0 %" in detail and "0.599009900990099" not in detail
    listed = staff.get("/admin/metrics_app/alert/").content.decode()
    columns = re.findall(r'<th scope="col"[^>]*class="[^"]*column-(\w+)', listed)
    assert columns.index("summary") < columns.index("started")  # the summary gets the room

"""GET /metrics: Prometheus's own parser reads it, the values are the stored ones, and two
processes give the same exposition."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from metrics_app.alerts.models import Alert
from metrics_app.models import ApiKey, Scope
from tests.support.asgi import AsgiClient
from tests.support.db import store
from tests.support.records import navigation, scrape
from tests.support.servers import DaphneServer
from tests.support.waiting import wait_for


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


@pytest.mark.django_db
def test_the_exposition_holds_what_was_stored(asgi: AsgiClient, api_key: str) -> None:
    store(
        *[navigation(scraperSource="cnbc", navigationDurationMs=300) for _ in range(3)],
        navigation(scraperSource="cnbc", navigationDurationMs=4000, success=False, error="timeout"),
        scrape(scraperSource="cnbc", itemsExtracted=25),
    )
    now = timezone.now()
    Alert.objects.create(fingerprint="slow:cnbc:", verdict="slow", scraper_source="cnbc", severity="warning",
                         state="firing", summary="s", pending_since=now, starts_at=now, last_held_at=now)  # fmt: skip

    response = asgi.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {api_key}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = samples(response.content.decode())
    nav = {"source": "cnbc", "type": "page_navigation"}
    assert found[key("wealthmetrics_records_total", **nav, success="true")] == 3
    assert found[key("wealthmetrics_records_total", **nav, success="false")] == 1
    assert found[key("wealthmetrics_duration_seconds_bucket", **nav, le="0.5")] == 3
    assert found[key("wealthmetrics_duration_seconds_bucket", **nav, le="5.0")] == 4
    assert found[key("wealthmetrics_duration_seconds_count", **nav)] == 4
    assert found[key("wealthmetrics_duration_seconds_sum", **nav)] == pytest.approx(4.9)
    assert found[key("wealthmetrics_items_total", source="cnbc")] == 25
    last = found[key("wealthmetrics_last_record_timestamp_seconds", source="cnbc")]
    assert abs(last - now.timestamp()) < 60
    assert found[key("wealthmetrics_alerts_firing", source="cnbc", verdict="slow")] == 1
    assert ("wealthmetrics_websocket_clients", ()) in found


@pytest.mark.django_db(transaction=True)
def test_strangers_and_non_staff_people_are_refused(asgi: AsgiClient, django_user_model: Any) -> None:
    assert asgi.get("/metrics").status_code == 401
    person = django_user_model.objects.create_user("viewer", password="pw-123456!")
    asgi.force_login(person)
    assert asgi.get("/metrics").status_code == 403
    person.is_staff = True
    person.save()  # counts within METRICS_KEY_CACHE_SECONDS (the door's copy of who is behind a session)
    assert wait_for(lambda: asgi.get("/metrics").status_code == 200, 5)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_two_processes_give_the_same_values(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    store(*[navigation(scraperSource="webull", recordedAt=int((timezone.now() - timedelta(hours=n)).timestamp() * 1000))
            for n in range(5)])  # fmt: skip
    servers = [start_daphne(), start_daphne()]
    answers = [
        httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {committed_api_key}"}).text
        for server in servers
    ]
    assert samples(answers[0]) == samples(answers[1])
    webull = key("wealthmetrics_records_total", source="webull", success="true", type="page_navigation")
    assert samples(answers[0])[webull] == 5


@pytest.mark.django_db(transaction=True)
def test_a_limited_key_sees_only_alerts_naming_its_own_sources(asgi: AsgiClient) -> None:
    now = timezone.now()
    for source, scheduler in (
        ("nightly", None),
        ("acme-private", "nightly"),
        (None, "nightly"),
        (None, None),
    ):
        Alert.objects.create(
            fingerprint=f"{source}-{scheduler}", verdict="site_down", scraper_source=source,
            scheduler_name=scheduler, severity="critical", state=Alert.State.FIRING, summary="x",
            pending_since=now, starts_at=now, last_held_at=now,
        )  # fmt: skip
    _, limited = ApiKey.issue("nightly only", Scope.READ, ("nightly",))
    exposition = asgi.get("/metrics", headers={"Authorization": f"Bearer {limited}"}).text
    firing = [line for line in exposition.splitlines() if line.startswith("wealthmetrics_alerts_firing{")]
    assert "acme-private" not in exposition
    assert len(firing) == 2  # its source's, and its scheduler's own

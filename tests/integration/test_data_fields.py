"""The optional record fields `fields` and `httpStatus` (docs/api.md, "Fields and HTTP
statuses"): validated, stored, read back as sent, summed into their rollups in the ingest
transaction, trimmed, summarised daily and rebuilt like the other rollups."""

import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from io import StringIO
from typing import Any

import httpx
import orjson
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from metrics_app import retention
from metrics_app.collector import MetricsCollector
from metrics_app.history import summaries
from metrics_app.models import (
    FieldDay,
    FieldHour,
    FieldMinute,
    MinuteRollup,
    PagePerformance,
    StatusDay,
    StatusHour,
    StatusMinute,
)
from tests.support.asgi import AsgiClient
from tests.support.db import store, stored
from tests.support.records import navigation, scrape
from tests.support.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

DAY = date(2026, 11, 20)
NOON = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp() * 1000)


def post(asgi: AsgiClient, key: str, *metrics: dict[str, Any]) -> Any:
    return asgi.post("/api/metrics/", data=orjson.dumps({"metrics": list(metrics)}),
                     content_type="application/json", headers={"Authorization": f"Bearer {key}"})  # fmt: skip


def counts(filled: int, invalid: int = 0) -> dict[str, int]:
    return {"filled": filled, "invalid": invalid}


# --- Validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (navigation(httpStatus=99), "httpStatus"),
        (navigation(httpStatus=600), "httpStatus"),
        (navigation(httpStatus="200"), "httpStatus"),
        (navigation(httpStatus=200.5), "httpStatus"),
        (navigation(fields={}), "fields"),  # a navigation has no fields
        (scrape(httpStatus=200), "httpStatus"),  # nor a scrape a status
        (scrape(fields=None), "fields"),
        (scrape(fields=[]), "fields"),
        (scrape(fields={f"f{i}": counts(1) for i in range(51)}), "fields"),
        (scrape(fields={"9price": counts(1)}), "fields.9price"),
        (scrape(fields={"pri ce": counts(1)}), "fields.pri ce"),
        (scrape(fields={"p" * 65: counts(1)}), f"fields.{'p' * 65}"),
        (scrape(fields={"price": 3}), "fields.price"),
        (scrape(fields={"price": {"filled": 3}}), "fields.price.invalid"),
        (scrape(fields={"price": {"filled": 3, "invalid": 0, "empty": 1}}), "fields.price.empty"),
        (scrape(fields={"price": counts(-1)}), "fields.price.filled"),
        (scrape(fields={"price": counts(3, -1)}), "fields.price.invalid"),
        (scrape(fields={"price": {"filled": True, "invalid": 0}}), "fields.price.filled"),
        (scrape(fields={"price": counts(3, 4)}), "fields.price.invalid"),  # invalid > filled
        (scrape(itemsExtracted=5, fields={"price": counts(6)}), "fields.price.filled"),  # > items
    ],
)
def test_rejects_each_violation_naming_index_and_field(
    asgi: AsgiClient, api_key: str, record: dict[str, Any], field: str
) -> None:
    good = scrape(fields={"price": counts(25, 1)})
    response = post(asgi, api_key, good, navigation(httpStatus=200), record)
    assert response.status_code == 400
    details = response.json()["details"]
    assert [(d["index"], d["field"]) for d in details] == [(2, field)]
    assert stored() == 0
    assert FieldMinute.objects.count() == StatusMinute.objects.count() == 0


def test_names_every_bad_record_of_a_batch(asgi: AsgiClient, api_key: str) -> None:
    body = [scrape(fields={"a": counts(30)}), scrape(), navigation(httpStatus=700)]
    response = post(asgi, api_key, *body)
    assert [(d["index"], d["field"]) for d in response.json()["details"]] == [
        (0, "fields.a.filled"),
        (2, "httpStatus"),
    ]


def test_accepts_the_bounds(asgi: AsgiClient, api_key: str) -> None:
    widest = {f"{'f' * 62}{i:02}": counts(25, 25) for i in range(50)}
    body = [navigation(httpStatus=100), navigation(httpStatus=599), navigation(httpStatus=None),
            scrape(fields=widest), scrape(fields={}), scrape(itemsExtracted=0, fields={"a.b_C": counts(0)})]  # fmt: skip
    assert post(asgi, api_key, *body).status_code == 202
    assert stored() == 6


# --- Stored, read back as sent --------------------------------------------------------------


def test_a_record_with_them_is_stored_and_read_back_as_sent(
    daphne: DaphneServer, committed_api_key: str
) -> None:
    """Through daphne, as production serves it: the recent records carry them back unchanged,
    and records without them come back exactly as before (no new keys)."""
    sent = [
        navigation(scraperSource="roundtrip", httpStatus=403),
        scrape(scraperSource="roundtrip", fields={"price": counts(20, 2), "meta.ticker": counts(25)}),
        navigation(scraperSource="roundtrip"),
        scrape(scraperSource="roundtrip"),
        scrape(scraperSource="roundtrip", fields={}),
    ]
    auth = {"Authorization": f"Bearer {committed_api_key}"}
    response = httpx.post(f"{daphne.url}/api/metrics/", content=orjson.dumps({"metrics": sent}), headers=auth)
    assert response.status_code == 202
    recent = httpx.get(f"{daphne.url}/api/metrics/recent/", params={"source": "roundtrip"}, headers=auth)
    got = sorted(recent.json()["metrics"], key=lambda r: r["id"])
    assert [{k: v for k, v in r.items() if k != "id"} for r in got] == sent
    row = PagePerformance.objects.get(scraper_source="roundtrip", http_status__isnull=False)
    assert row.http_status == 403


def test_a_null_status_reads_back_as_left_out(asgi: AsgiClient, api_key: str) -> None:
    assert post(asgi, api_key, navigation(scraperSource="nulls", httpStatus=None)).status_code == 202
    got = asgi.get(
        "/api/metrics/recent/", {"source": "nulls"}, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert "httpStatus" not in got.json()["metrics"][0]


# --- Rollups --------------------------------------------------------------------------------


def random_batch(rng: random.Random, size: int) -> list[dict[str, Any]]:
    batch = []
    for _ in range(size):
        source = rng.choice(["cnbc", "yahoo"])
        at = NOON + rng.randrange(-3 * 3_600_000, 3 * 3_600_000)
        if rng.random() < 0.5:
            status = rng.choice([200, 200, 200, 403, 404, 429, 503, None])
            batch.append(
                navigation(scraperSource=source, recordedAt=at, **({"httpStatus": status} if status else {}))
            )
            continue
        items = rng.randrange(0, 30)
        fields = {}
        for name in rng.sample(["price", "change", "volume", "name"], rng.randrange(0, 4)):
            filled = rng.randrange(0, items + 1)
            fields[name] = counts(filled, rng.randrange(0, filled + 1))
        batch.append(scrape(scraperSource=source, recordedAt=at, itemsExtracted=items,
                            **({"fields": fields} if fields or rng.random() < 0.5 else {})))  # fmt: skip
    return batch


def expected_sums(sent: list[dict[str, Any]], step_ms: int) -> tuple[dict[Any, list[int]], Counter[Any]]:
    fields: dict[Any, list[int]] = {}
    statuses: Counter[Any] = Counter()
    for record in sent:
        start = datetime.fromtimestamp(record["recordedAt"] // step_ms * step_ms / 1000, UTC)
        for name, count in record.get("fields", {}).items():
            sums = fields.setdefault((record["scraperSource"], start, name), [0, 0, 0])
            sums[0] += record["itemsExtracted"]
            sums[1] += count["filled"]
            sums[2] += count["invalid"]
        if record.get("httpStatus"):
            statuses[(record["scraperSource"], start, record["httpStatus"])] += 1
    return fields, statuses


def field_rows(model: Any, column: str) -> dict[Any, list[int]]:
    return {(r.scraper_source, getattr(r, column), r.field): [r.items, r.filled, r.invalid]
            for r in model.objects.all()}  # fmt: skip


def status_rows(model: Any, column: str) -> Counter[Any]:
    return Counter(
        {(r.scraper_source, getattr(r, column), r.http_status): r.navigations for r in model.objects.all()}
    )


def assert_rollups_are_the_sums(sent: list[dict[str, Any]]) -> None:
    for field_model, status_model, column, step in [
        (FieldMinute, StatusMinute, "minute", 60_000),
        (FieldHour, StatusHour, "hour", 3_600_000),
    ]:
        fields, statuses = expected_sums(sent, step)
        assert field_rows(field_model, column) == fields
        assert status_rows(status_model, column) == statuses


def test_rollups_are_the_sums_of_the_records_sent(daphne: DaphneServer, committed_api_key: str) -> None:
    """Several batches, concurrent senders, late records: minutes and hours hold exactly the
    sums of what was sent."""
    rng = random.Random(24)
    batches = [random_batch(rng, rng.randrange(1, 300)) for _ in range(12)]
    auth = {"Authorization": f"Bearer {committed_api_key}"}

    def send(batch: list[dict[str, Any]]) -> int:
        body = orjson.dumps({"metrics": batch})
        return httpx.post(f"{daphne.url}/api/metrics/", content=body, headers=auth, timeout=30).status_code

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(send, batches)) == [202] * len(batches)
    assert_rollups_are_the_sums([record for batch in batches for record in batch])


def test_a_batch_writes_one_row_per_source_field_and_minute() -> None:
    at = NOON + 5_000
    batch = [
        scrape(recordedAt=at + i, fields={f"f{n}": counts(20, 1) for n in range(10)}) for i in range(1000)
    ]
    with CaptureQueriesContext(connection) as queries:
        store(*batch)
    field_inserts = [q["sql"] for q in queries if "scraper_fields_minute" in q["sql"]]
    assert len(field_inserts) == 1
    assert FieldMinute.objects.count() == 10
    assert {(r.items, r.filled, r.invalid) for r in FieldMinute.objects.all()} == {(25_000, 20_000, 1000)}


def test_records_without_them_write_no_data_rollups() -> None:
    with CaptureQueriesContext(connection) as queries:
        store(navigation(), scrape(), navigation(httpStatus=None))
    assert not [q for q in queries if "scraper_fields" in q["sql"] or "scraper_status" in q["sql"]]


# --- Retention, daily summaries, repair -----------------------------------------------------


def test_retention_trims_minutes_after_a_day_and_hours_after_the_retention_window(settings: Any) -> None:
    settings.METRICS_RETENTION_DAYS = 7
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    ms = int(now.timestamp() * 1000)
    ages = [timedelta(hours=2), timedelta(days=2), timedelta(days=8)]
    for age in ages:
        at = ms - int(age.total_seconds() * 1000)
        store(scrape(recordedAt=at, fields={"price": counts(1)}), navigation(recordedAt=at, httpStatus=200))
    report = retention.cleanup(now=now)
    minute_starts = {r.minute for r in FieldMinute.objects.all()} | {
        r.minute for r in StatusMinute.objects.all()
    }
    assert {now - m for m in minute_starts} == {timedelta(hours=2)}
    hour_ages = {now - r.hour for r in FieldHour.objects.all()} | {
        now - r.hour for r in StatusHour.objects.all()
    }
    assert hour_ages == {timedelta(hours=2), timedelta(days=2)}
    assert report.as_dict()["deleted"]["scraper_fields_minute"] == 2


def test_the_daily_summary_sums_the_days_hours(settings: Any) -> None:
    rng = random.Random(7)
    sent = [r for r in random_batch(rng, 400)]
    store(*sent)
    summaries.aggregate_day(DAY)
    summaries.aggregate_day(DAY)  # twice gives the same rows
    day_fields: dict[Any, list[int]] = {}
    day_statuses: Counter[Any] = Counter()
    for record in sent:
        if datetime.fromtimestamp(record["recordedAt"] / 1000, UTC).date() != DAY:
            continue
        for name, count in record.get("fields", {}).items():
            sums = day_fields.setdefault((record["scraperSource"], name), [0, 0, 0])
            for i, value in enumerate((record["itemsExtracted"], count["filled"], count["invalid"])):
                sums[i] += value
        if record.get("httpStatus"):
            day_statuses[(record["scraperSource"], record["httpStatus"])] += 1
    assert {(r.scraper_source, r.field): [r.items, r.filled, r.invalid]
            for r in FieldDay.objects.filter(metric_date=DAY)} == day_fields  # fmt: skip
    assert Counter({(r.scraper_source, r.http_status): r.navigations
                    for r in StatusDay.objects.filter(metric_date=DAY)}) == day_statuses  # fmt: skip
    assert day_fields and day_statuses


def test_the_repair_path_rebuilds_them_from_the_detailed_rows(settings: Any) -> None:
    rng = random.Random(11)
    sent = random_batch(rng, 500)
    store(*sent)
    for model in (FieldMinute, FieldHour, StatusMinute, StatusHour):
        model.objects.all().delete()
    FieldMinute.objects.create(scraper_source="cnbc", minute=datetime(2026, 11, 20, 12, tzinfo=UTC),
                               field="ghost", items=1, filled=1, invalid=0)  # fmt: skip
    settings.METRICS_RETENTION_DAYS = 3650  # the records are dated 2026-11-20
    call_command(
        "aggregate_daily",
        "--from",
        "2026-11-19",
        "--to",
        "2026-11-21",
        "--rebuild-rollups",
        stdout=StringIO(),
    )
    assert_rollups_are_the_sums(sent)
    assert MinuteRollup.objects.exists()


# --- The in-process collector ---------------------------------------------------------------


def test_the_collector_takes_the_same_fields(make_collector: Callable[..., MetricsCollector]) -> None:
    collector = make_collector(batch_size=1000, interval_ms=60_000)
    collector.record_page_navigation(
        scraper_source="inproc", url="u", navigation_duration_ms=5, http_status=429
    )
    collector.record_page_scrape(scraper_source="inproc", url="u", scrape_duration_ms=5, items_extracted=10,
                                 fields={"price": counts(9, 1)})  # fmt: skip
    collector.record_page_scrape(scraper_source="inproc", url="u", scrape_duration_ms=5, items_extracted=10)
    with pytest.raises(Exception, match=r"fields\.price\.invalid"):
        collector.record_page_scrape(scraper_source="inproc", url="u", scrape_duration_ms=5, items_extracted=10,
                                     fields={"price": counts(1, 2)})  # fmt: skip
    assert collector.flush() == 3
    assert StatusMinute.objects.get().http_status == 429
    assert (FieldMinute.objects.get().items, FieldMinute.objects.get().filled) == (10, 9)
    rows = {r.field_counts is None for r in PagePerformance.objects.filter(metric_type="page_scrape")}
    assert rows == {True, False}

"""GET /api/metrics/history/ (docs/api.md): buckets of counts, success, durations and items."""

from datetime import UTC, datetime
from typing import Any

import pytest

from metrics_app.api.views import Turns
from metrics_app.ingest.storage import store_metrics
from metrics_app.records import validate_records
from tests.support.asgi import AsgiClient
from tests.support.db import store
from tests.support.records import navigation, scheduler_run, scrape

pytestmark = pytest.mark.django_db(transaction=True)

T0 = int(datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp() * 1000)
MINUTE = 60_000


@pytest.fixture
def history_records() -> None:
    store(
        navigation(navigationDurationMs=100, recordedAt=T0 + 1),
        navigation(navigationDurationMs=300, success=False, error="x", recordedAt=T0 + 5 * MINUTE),
        scrape(scraperSource="robinhood", scrapeDurationMs=50, itemsExtracted=9, recordedAt=T0 + 61 * MINUTE),
        navigation(scraperSource="cnbc", navigationDurationMs=999, recordedAt=T0 + 2 * MINUTE),
        scheduler_run(
            schedulerName="hourly", executionDurationMs=2000, itemsProcessed=4, recordedAt=T0 + 3 * MINUTE
        ),
    )


def get(reader: AsgiClient, **params: str) -> Any:
    return reader.get(
        "/api/metrics/history/", {"from": "2026-11-20T09:00:00Z", "to": "2026-11-20T12:00:00Z", **params}
    )


def test_hourly_buckets_of_one_source(reader: AsgiClient, history_records: None) -> None:
    response = get(reader, source="robinhood", bucket="hour")
    assert response.status_code == 200
    first, second = response.json()["buckets"]
    assert first["start"] == "2026-11-20T10:00:00Z"
    assert (first["count"], first["successCount"], first["avgDurationMs"], first["itemsExtracted"]) == (
        2,
        1,
        200.0,
        0,
    )
    assert 300 <= first["p95DurationMs"] <= 360
    assert second["start"] == "2026-11-20T11:00:00Z"
    assert (second["count"], second["itemsExtracted"]) == (1, 9)


def test_minute_buckets_type_filter_and_scheduler_channel(reader: AsgiClient, history_records: None) -> None:
    minutes = get(reader, source="robinhood", type="page_navigation", bucket="minute").json()["buckets"]
    assert [b["start"] for b in minutes] == ["2026-11-20T10:00:00Z", "2026-11-20T10:05:00Z"]
    hourly = get(reader, source="hourly").json()["buckets"]
    assert [(b["count"], b["itemsExtracted"]) for b in hourly] == [(1, 4)]


def test_all_sources_by_day(reader: AsgiClient, history_records: None) -> None:
    (day,) = get(reader, bucket="day").json()["buckets"]
    assert day["start"] == "2026-11-20T00:00:00Z"
    assert day["count"] == 5


def test_defaults_to_the_last_24_hours(reader: AsgiClient) -> None:
    store_metrics(validate_records([navigation()]))
    buckets = reader.get("/api/metrics/history/").json()["buckets"]
    assert sum(b["count"] for b in buckets) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"source": "Bad!"}, "source"),
        ({"type": "page_view"}, "type"),
        ({"bucket": "week"}, "bucket"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-45"}, "to"),
        ({"from": "2026-11-21T00:00:00Z", "to": "2026-11-20T00:00:00Z"}, "from"),
        ({"from": "2000-01-01T00:00:00Z", "bucket": "minute"}, "bucket"),
        ({"from": "0001-01-01", "bucket": "day"}, "from"),
        ({"to": "9999-12-31T23:59:59+14:00"}, "to"),
    ],
)
def test_rejects_bad_parameters(reader: AsgiClient, params: dict[str, str], field: str) -> None:
    response = reader.get("/api/metrics/history/", params)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_strangers_are_refused(asgi: AsgiClient) -> None:
    assert asgi.get("/api/metrics/history/").status_code == 401


def test_more_buckets_than_the_limit_is_400_naming_bucket(reader: AsgiClient) -> None:
    week = reader.get("/api/metrics/history/", {"bucket": "minute", "from": "2026-11-01T00:00:00Z",
                                                 "to": "2026-11-08T00:00:00Z"})  # fmt: skip
    assert week.status_code == 400
    assert week.json()["field"] == "bucket"
    day = reader.get("/api/metrics/history/", {"bucket": "minute", "from": "2026-11-01T00:00:00Z",
                                                "to": "2026-11-02T00:00:00Z"})  # fmt: skip
    assert day.status_code == 200


def test_one_client_runs_a_bounded_number_of_history_reads_at_once() -> None:
    turns = Turns(limit=2)
    with turns.turn("key:1") as first, turns.turn("key:1") as second, turns.turn("key:1") as third:
        assert (first, second, third) == (True, True, False)
        with turns.turn("key:2") as someone_else:
            assert someone_else
    with turns.turn("key:1") as later:
        assert later  # turns are given back

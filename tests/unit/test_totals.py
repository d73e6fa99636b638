"""The dashboard's totals and trends, kept in memory from the stream (metrics_app.stream.totals)."""

import pytest

from metrics_app.records import now_ms
from metrics_app.stream.totals import LiveStats
from tests.support.records import navigation, scheduler_run, scrape

MINUTE = 60_000


def test_totals_and_per_source_figures() -> None:
    stats = LiveStats()
    now = now_ms()
    for record in (
        navigation(scraperSource="cnbc", navigationDurationMs=100, recordedAt=now),
        navigation(scraperSource="cnbc", navigationDurationMs=300, success=False, error="x", recordedAt=now),
        scrape(scraperSource="cnbc", scrapeDurationMs=50, itemsExtracted=7, recordedAt=now),
        scheduler_run(schedulerName="nightly", executionDurationMs=2000, itemsProcessed=4, recordedAt=now),
    ):
        stats.add(record, record.get("scraperSource") or record["schedulerName"])
    snapshot = stats.snapshot()
    assert snapshot["totals"] == {
        "records": 4, "successCount": 3, "successRate": 75.0, "avgDurationMs": 612.5,
        "p95DurationMs": snapshot["totals"]["p95DurationMs"], "itemsExtracted": 7, "activeSources": 2,
    }  # fmt: skip
    assert 2000 <= snapshot["totals"]["p95DurationMs"] <= 2000 * 1.2  # a bucket's upper edge
    cnbc = snapshot["sources"]["cnbc"]
    assert (cnbc["navigations"], cnbc["scrapes"], cnbc["errors"], cnbc["avgNavigationDurationMs"]) == (
        2,
        1,
        1,
        200.0,
    )
    assert snapshot["sources"]["nightly"]["itemsProcessed"] == 4


def test_records_older_than_the_window_change_nothing() -> None:
    stats = LiveStats()
    stats.add(navigation(recordedAt=now_ms() - 61 * MINUTE), "robinhood")
    assert stats.snapshot()["totals"]["records"] == 0
    assert stats.snapshot()["sources"] == {}


@pytest.mark.parametrize(
    ("before", "recent", "direction"), [(10, 20, "up"), (20, 10, "down"), (20, 20, "stable")]
)
def test_trends_compare_the_last_five_minutes_with_the_five_before(
    before: int, recent: int, direction: str
) -> None:
    stats = LiveStats()
    now = now_ms()
    for _ in range(before):
        stats.add(navigation(recordedAt=now - 7 * MINUTE), "robinhood")
    for _ in range(recent):
        stats.add(navigation(recordedAt=now), "robinhood")
    assert stats.snapshot()["trends"]["robinhood"]["records"]["direction"] == direction


def test_a_trend_against_five_minutes_that_held_records_in_one_of_them_is_new() -> None:
    stats = LiveStats()
    now = now_ms()
    for _ in range(30):
        stats.add(navigation(recordedAt=now - 7 * MINUTE), "robinhood")
    for _ in range(60):
        stats.add(navigation(recordedAt=now), "robinhood")
    records = stats.snapshot()["trends"]["robinhood"]["records"]
    assert records == {"direction": "up", "change": None, "comparable": False}


def test_a_trend_against_five_minutes_of_steady_records_is_a_percentage() -> None:
    stats = LiveStats()
    now = now_ms()
    for minute in range(5, 10):  # 4 records in each of the 5 minutes before: 20
        for _ in range(4):
            stats.add(navigation(recordedAt=now - minute * MINUTE), "robinhood")
    for _ in range(25):
        stats.add(navigation(recordedAt=now), "robinhood")
    records = stats.snapshot()["trends"]["robinhood"]["records"]
    assert records == {"direction": "up", "change": 25.0, "comparable": True}

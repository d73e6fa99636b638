"""Hourly rollups and daily summaries (README, "History, summaries and retention"): checked against numbers computed here."""

import random
from datetime import UTC, date, datetime, timedelta
from io import StringIO
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from metrics_app import histogram, rollups
from metrics_app.history import summaries
from metrics_app.models import AggregatedDay, DailySummary, HourlyRollup, MinuteRollup, SchedulerDailySummary
from tests.support.asgi import AsgiClient
from tests.support.db import store
from tests.support.records import navigation, scheduler_run, scrape

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 20)


def at(day: date, hour: int, minute: int = 0, zone: str = "UTC", second: int = 0) -> int:
    local = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=ZoneInfo(zone))
    return int(local.timestamp() * 1000)


def summary_values(model: Any) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in row.items() if k not in {"id", "updated_at"}}
        for row in model.objects.order_by("pk").values()
    ]


def rollup_values() -> list[tuple[Any, ...]]:
    return sorted(HourlyRollup.objects.values_list(*rollups.HOURS.columns))


def minute_rollup_values() -> list[tuple[Any, ...]]:
    return sorted(MinuteRollup.objects.values_list(*rollups.MINUTES.columns))


def test_daily_summary_matches_numbers_computed_here() -> None:
    rng = random.Random(7)
    navigations = [
        navigation(
            navigationDurationMs=rng.randint(50, 5000),
            retryCount=rng.randint(0, 3),
            success=(ok := rng.random() > 0.2),
            error=None if ok else "timeout",
            recordedAt=at(DAY, rng.randint(0, 23), rng.randint(0, 59)),
        )
        for _ in range(300)
    ]
    scrapes = [
        scrape(
            scraperSource="robinhood",
            scrapeDurationMs=rng.randint(10, 900),
            itemsExtracted=rng.randint(0, 40),
            dataSize=rng.randint(0, 10_000),
            success=rng.random() > 0.1,
            recordedAt=at(DAY, rng.randint(0, 23), rng.randint(0, 59)),
        )
        for _ in range(200)
    ]
    runs = [
        scheduler_run(
            executionDurationMs=rng.randint(1000, 9000),
            itemsProcessed=rng.randint(0, 100),
            success=rng.random() > 0.3,
            recordedAt=at(DAY, rng.randint(0, 23)),
        )
        for _ in range(50)
    ]
    other_day = [navigation(recordedAt=at(DAY + timedelta(days=1), 0, 0))]
    store(*navigations, *scrapes, *runs, *other_day)

    result = summaries.aggregate_day(DAY)
    assert (result.sources, result.schedulers, result.records) == (1, 1, 550)

    row = DailySummary.objects.get(scraper_source="robinhood", metric_date=DAY)
    nav_ms = [r["navigationDurationMs"] for r in navigations]
    scrape_ms = [r["scrapeDurationMs"] for r in scrapes]
    assert row.total_navigations == 300
    assert row.successful_navigations == sum(r["success"] for r in navigations)
    assert row.avg_navigation_duration_ms == pytest.approx(sum(nav_ms) / 300)
    assert (row.min_navigation_duration_ms, row.max_navigation_duration_ms) == (min(nav_ms), max(nav_ms))
    assert row.avg_retry_count == pytest.approx(sum(r["retryCount"] for r in navigations) / 300)
    assert row.p95_navigation_duration_ms == pytest.approx(p95_of(nav_ms))
    assert row.total_scrapes == 200
    assert row.successful_scrapes == sum(r["success"] for r in scrapes)
    assert row.avg_scrape_duration_ms == pytest.approx(sum(scrape_ms) / 200)
    assert (row.min_scrape_duration_ms, row.max_scrape_duration_ms) == (min(scrape_ms), max(scrape_ms))
    assert row.p95_scrape_duration_ms == pytest.approx(p95_of(scrape_ms))
    assert row.total_items_extracted == sum(r["itemsExtracted"] for r in scrapes)
    assert row.total_data_size == sum(r["dataSize"] for r in scrapes)
    assert row.error_count == sum(not r["success"] for r in navigations + scrapes)

    sched = SchedulerDailySummary.objects.get(scheduler_name="nightly-prices", metric_date=DAY)
    run_ms = [r["executionDurationMs"] for r in runs]
    assert (sched.total_runs, sched.successful_runs) == (50, sum(r["success"] for r in runs))
    assert sched.error_count == 50 - sched.successful_runs
    assert sched.avg_execution_duration_ms == pytest.approx(sum(run_ms) / 50)
    assert (sched.min_execution_duration_ms, sched.max_execution_duration_ms) == (min(run_ms), max(run_ms))
    assert sched.p95_execution_duration_ms == pytest.approx(p95_of(run_ms))
    assert sched.total_items_processed == sum(r["itemsProcessed"] for r in runs)

    # the exact p95 lies at most one bucket (20 %) below the histogram's
    exact = sorted(nav_ms)[int(0.95 * 300) - 1]
    assert exact <= row.p95_navigation_duration_ms <= exact * histogram.GROWTH * 1.001

    before = (summary_values(DailySummary), summary_values(SchedulerDailySummary))
    summaries.aggregate_day(DAY)
    assert (summary_values(DailySummary), summary_values(SchedulerDailySummary)) == before
    assert AggregatedDay.objects.get().metric_date == DAY


def p95_of(durations: list[int]) -> float | None:
    counts: dict[int, int] = {}
    for duration in durations:
        counts[histogram.bucket_of(duration)] = counts.get(histogram.bucket_of(duration), 0) + 1
    return histogram.percentile(counts, 0.95)


def test_rollups_kept_by_ingest_equal_a_rebuild_from_detailed_rows(settings: Any) -> None:
    settings.TIME_ZONE = "Asia/Kolkata"  # a half-hour offset: local hours start at UTC :30
    rng = random.Random(3)
    store(
        *[
            navigation(
                scraperSource=rng.choice(["robinhood", "cnbc"]),
                navigationDurationMs=rng.choice([0, 1, 2, 5, 120, 10**7]),
                recordedAt=at(DAY, 0) + rng.randint(0, 3 * 3600_000),
            )
            for _ in range(200)
        ]
        + [scrape(recordedAt=at(DAY, 1, 29, second=59)), scrape(recordedAt=at(DAY, 1, 30))]
        + [scheduler_run(scraperSource="cnbc", recordedAt=at(DAY, 2)), scheduler_run(recordedAt=at(DAY, 2))]
    )
    kept, kept_minutes = rollup_values(), minute_rollup_values()
    hours = {row[0] for row in kept}
    assert all(hour.minute == 30 for hour in hours)
    assert all(row[0].second == 0 for row in kept_minutes)
    assert sum(row[5] for row in kept_minutes) == 204
    assert rollups.rebuild(datetime(2026, 11, 19, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)) == 204
    assert rollup_values() == kept
    assert minute_rollup_values() == kept_minutes  # last_recorded_at to the millisecond included


def test_days_are_cut_in_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Asia/Kolkata"
    zone = "Asia/Kolkata"
    store(
        *[
            navigation(navigationDurationMs=100, recordedAt=at(DAY, 23, 59, zone, second=59)),
            navigation(navigationDurationMs=300, recordedAt=at(DAY + timedelta(days=1), 0, 0, zone)),
            navigation(navigationDurationMs=500, recordedAt=at(DAY, 0, 0, zone)),
        ]
    )
    summaries.aggregate_day(DAY)
    summaries.aggregate_day(DAY + timedelta(days=1))
    totals = dict(DailySummary.objects.values_list("metric_date", "total_navigations"))
    assert totals == {DAY: 2, DAY + timedelta(days=1): 1}
    assert DailySummary.objects.get(metric_date=DAY).max_navigation_duration_ms == 500


def test_a_quarter_hour_zone_cuts_its_own_days(settings: Any) -> None:
    settings.TIME_ZONE = "Asia/Kathmandu"  # UTC+5:45: local hours start at UTC :15
    assert rollups.hour_shift_seconds() == 900
    store(
        *[
            navigation(recordedAt=at(DAY, 0, 10, "Asia/Kathmandu")),
            navigation(recordedAt=at(DAY, 23, 59, "Asia/Kathmandu")),
            navigation(recordedAt=at(DAY, 0, 0, "Asia/Kathmandu") - 1),
        ]
    )
    assert summaries.aggregate_day(DAY).records == 2
    assert {hour.minute for hour in HourlyRollup.objects.values_list("hour", flat=True)} == {15}


def test_a_daylight_saving_day_has_its_23_hours(settings: Any) -> None:
    settings.TIME_ZONE = "America/New_York"
    spring = date(2026, 3, 8)  # clocks go from 02:00 to 03:00
    start, end = summaries.day_bounds(spring)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)
    store(
        *[
            navigation(recordedAt=at(spring, 0, 0, "America/New_York")),
            navigation(recordedAt=at(spring, 23, 59, "America/New_York")),
            navigation(recordedAt=at(spring + timedelta(days=1), 0, 0, "America/New_York")),
        ]
    )
    assert summaries.aggregate_day(spring).records == 2


@pytest.mark.django_db(transaction=True)
def test_history_reads_day_buckets_in_time_zone(settings: Any, reader: AsgiClient) -> None:
    settings.TIME_ZONE = "Asia/Kolkata"
    store(
        *[
            navigation(navigationDurationMs=100, recordedAt=at(DAY, 23, 0, "Asia/Kolkata")),
            navigation(
                navigationDurationMs=100, recordedAt=at(DAY + timedelta(days=1), 1, 0, "Asia/Kolkata")
            ),
        ]
    )
    response = reader.get(
        "/api/metrics/history/",
        {"bucket": "day", "from": "2026-11-19T00:00:00Z", "to": "2026-11-22T00:00:00Z"},
    )
    buckets = response.json()["buckets"]
    # local midnights, 18:30 UTC the day before
    assert [(b["start"], b["count"]) for b in buckets] == [
        ("2026-11-19T18:30:00Z", 1),
        ("2026-11-20T18:30:00Z", 1),
    ]


def test_missed_nights_are_caught_up() -> None:
    today = timezone.localdate()
    days = [today - timedelta(days=n) for n in (4, 3, 2, 1)]
    store(*[navigation(recordedAt=at(day, 12)) for day in days] + [navigation()])
    AggregatedDay.objects.create(metric_date=days[0], sources=1)
    AggregatedDay.objects.create(metric_date=days[3], sources=1)
    # days[0] is done; yesterday (days[3]) is always redone, late records may have come in
    assert summaries.days_to_aggregate() == days[1:]
    assert [r.day for r in summaries.catch_up()] == days[1:]
    assert summaries.days_to_aggregate() == [days[3]]
    assert DailySummary.objects.count() == 3


def test_aggregate_daily_command(settings: Any) -> None:
    settings.METRICS_RETENTION_DAYS = (timezone.localdate() - DAY).days + 2
    store(*[navigation(recordedAt=at(DAY, 12)), navigation(recordedAt=at(DAY + timedelta(days=1), 12))])
    out = StringIO()
    call_command("aggregate_daily", "--date", "2026-11-20", stdout=out)
    assert out.getvalue().startswith("2026-11-20: 1 records, 1 sources, 0 schedulers")
    out = StringIO()
    call_command(
        "aggregate_daily", "--from", "2026-11-19", "--to", "2026-11-21", "--rebuild-rollups", stdout=out
    )
    assert "Aggregated 3 days, 2026-11-19 to 2026-11-21." in out.getvalue()
    assert "2026-11-21: rollups rebuilt from 1 detailed records" in out.getvalue()
    assert DailySummary.objects.count() == 2
    for bad in (
        ["--date", "20-11-2026"],
        ["--from", "2026-11-21", "--to", "2026-11-20"],
        ["--to", "2026-11-20"],
    ):
        with pytest.raises(CommandError):
            call_command("aggregate_daily", *bad, stdout=StringIO())

"""Retention (cleanup_metrics, README "History, summaries and retention"): detailed rows older than N days go, the rest stays."""

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from metrics_app import retention
from metrics_app.history import summaries
from metrics_app.models import DailySummary, HourlyRollup, MinuteRollup, PagePerformance, SchedulerMetric
from metrics_app.records import epoch_ms
from tests.support.asgi import AsgiClient
from tests.support.db import store
from tests.support.records import navigation, scheduler_run

NOW = timezone.now().replace(microsecond=0)
CUTOFF = NOW - timedelta(days=7)


def ms(value: datetime) -> int:
    return epoch_ms(value)


@pytest.mark.django_db
def test_rows_older_than_n_days_go_and_a_row_at_exactly_n_days_stays() -> None:
    store(
        *[
            navigation(url="https://x/expired", recordedAt=ms(CUTOFF) - 1),
            navigation(url="https://x/boundary", recordedAt=ms(CUTOFF)),
            navigation(url="https://x/fresh", recordedAt=ms(NOW)),
            scheduler_run(schedulerName="expired", recordedAt=ms(CUTOFF) - 1),
            scheduler_run(schedulerName="boundary", recordedAt=ms(CUTOFF)),
        ]
    )
    summaries.aggregate_day(timezone.localdate(CUTOFF))
    rollups_before = HourlyRollup.objects.count()

    report = retention.cleanup(7, now=NOW)

    assert report.deleted == 2
    assert {t.table: t.deleted for t in report.tables} == {
        "scraper_page_performance": 1,
        "scheduler_metrics": 1,
    }
    assert sorted(PagePerformance.objects.values_list("page_url", flat=True)) == [
        "https://x/boundary",
        "https://x/fresh",
    ]
    assert list(SchedulerMetric.objects.values_list("scheduler_name", flat=True)) == ["boundary"]
    assert HourlyRollup.objects.count() == rollups_before
    assert DailySummary.objects.exists()
    assert retention.cleanup(7, now=NOW).deleted == 0


@pytest.mark.django_db
def test_minute_rollups_go_with_the_detailed_rows_a_whole_minute_at_a_time() -> None:
    cutoff_minute = CUTOFF.replace(second=0)
    store(
        navigation(scraperSource="old", recordedAt=ms(cutoff_minute) - 90_000),
        navigation(scraperSource="old", recordedAt=ms(cutoff_minute) - 1),
        navigation(scraperSource="edge", recordedAt=ms(cutoff_minute)),
        navigation(scraperSource="new", recordedAt=ms(NOW)),
    )
    report = retention.cleanup(7, now=NOW)
    assert report.minute_rollups.deleted == 2  # the two minutes before the cutoff's
    kept = MinuteRollup.objects.values_list("scraper_source", "minute")
    assert sorted(source for source, _ in kept) == ["edge", "new"]
    assert all(minute >= cutoff_minute for _, minute in kept)


@pytest.mark.django_db(transaction=True)
def test_history_outlives_the_detailed_rows(reader: AsgiClient) -> None:
    old = NOW - timedelta(days=30)
    store(*[navigation(recordedAt=ms(old)), navigation(recordedAt=ms(old))])
    retention.cleanup(7)
    assert not PagePerformance.objects.exists()
    response = reader.get(
        "/api/metrics/history/",
        {"bucket": "day", "from": (old - timedelta(days=1)).isoformat(), "to": NOW.isoformat()},
    )
    assert [bucket["count"] for bucket in response.json()["buckets"]] == [2]


@pytest.mark.django_db
def test_cleanup_metrics_command_reports_what_it_deleted(settings: Any) -> None:
    settings.METRICS_RETENTION_DAYS = 3
    store(
        *[
            navigation(recordedAt=ms(NOW - timedelta(days=4))),
            navigation(recordedAt=ms(NOW - timedelta(days=2))),
        ]
    )
    out = StringIO()
    call_command("cleanup_metrics", stdout=out)
    assert "scraper_page_performance: 1 rows deleted" in out.getvalue()
    assert "Deleted 1 detailed rows recorded before" in out.getvalue()
    out = StringIO()
    call_command("cleanup_metrics", "--days", "1", stdout=out)
    assert "Deleted 1 detailed rows" in out.getvalue()
    with pytest.raises(CommandError, match="at least 1"):
        call_command("cleanup_metrics", "--days", "0")


def partitions(table: str) -> list[str]:
    return [name for name, _ in retention._partitions(connection, table)]


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_on_mysql_an_expired_day_leaves_by_dropping_its_partition() -> None:
    table = "scheduler_metrics"
    today = datetime.now(UTC).date()
    first = partitions(table)[0]
    old_days = [today - timedelta(days=n) for n in (12, 11, 10)]
    # Split the oldest partition so three old days have partitions of their own.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT PARTITION_DESCRIPTION FROM information_schema.PARTITIONS WHERE "
                       f"TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' AND PARTITION_NAME = '{first}'")  # fmt: skip
        bound = int(cursor.fetchone()[0])
        assert bound > retention.to_days(old_days[-1]) + 1, "the test database's oldest partition is too new"
        days = ", ".join(
            f"PARTITION {retention.partition_name(day)} VALUES LESS THAN ({retention.to_days(day + timedelta(days=1))})"
            for day in old_days
        )
        cursor.execute(
            f"ALTER TABLE {table} REORGANIZE PARTITION {first} INTO "
            f"(PARTITION p_older VALUES LESS THAN ({retention.to_days(old_days[0])}), {days}, "
            f"PARTITION {first} VALUES LESS THAN ({bound}))"
        )
    noon = [datetime(d.year, d.month, d.day, 12, tzinfo=UTC) for d in old_days]
    store(*[scheduler_run(recordedAt=ms(t)) for t in noon for _ in range(3)])
    store(*[scheduler_run(recordedAt=ms(NOW - timedelta(days=8)))])  # expired, in a straddling partition
    store(*[scheduler_run(recordedAt=ms(NOW))])
    with connection.cursor() as cursor:  # what a cleanup interrupted after its swap leaves behind
        cursor.execute(f"CREATE TABLE {table}_expired_p20200101 (id int)")
        cursor.execute(f"INSERT INTO {table}_expired_p20200101 VALUES (1), (2)")

    report = retention.cleanup(7)

    result = report.tables[1]
    assert result.dropped_partitions == ["p_older", *map(retention.partition_name, old_days)]
    assert result.rows_in_dropped_partitions == 9 + 2
    with connection.cursor() as cursor:
        cursor.execute("SHOW TABLES LIKE '%%expired%%'")
        assert cursor.fetchall() == ()
    assert result.rows_deleted_in_chunks == 1
    assert SchedulerMetric.objects.count() == 1
    assert retention.partition_name(today + timedelta(days=retention.ADD_DAYS_AHEAD)) in partitions(table)
    assert partitions(table)[-1] == retention.FUTURE

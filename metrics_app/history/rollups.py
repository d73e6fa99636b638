"""Hourly rollups (table scraper_metrics_hourly): kept current by the transaction that stores
the records, rebuilt from the detailed rows on demand.

A rollup row counts the records of one channel, type (and scheduler), hour and duration
bucket. Adding a batch is one multi-row upsert that adds to the counters, in the same
transaction as the detailed rows, so the rollups hold exactly what was stored, late records
(an old recordedAt) included, without a job that could fall behind or run twice.

Hours are cut in TIME_ZONE: a local hour starts hour_shift_seconds() after a UTC hour (0 in
most zones, 1800 in India or Adelaide, 900 in Nepal, which is UTC+5:45). Whole local days are
then whole rollup hours, daylight saving time included, and the SQL needs no time zone tables
(MySQL's CONVERT_TZ returns NULL without them).
"""

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from django.db import connection, transaction
from django.utils import timezone

from metrics_app.dialect import Merge, db_hour, db_instant, insert_sql, upsert_clause
from metrics_app.histogram import bucket_of, bucket_sql
from metrics_app.models import (
    PAGE_DURATION_SQL,
    SCHEDULER_CHANNEL_SQL,
    HourlyRollup,
    PagePerformance,
    SchedulerMetric,
)
from metrics_app.records import (
    DURATION_FIELD,
    ITEMS_FIELD,
    Metric,
    channel_of,
    duration_of,
    epoch_ms,
    items_of,
    type_of,
)

HOUR_MS: Final = 3_600_000
TABLE: Final = HourlyRollup._meta.db_table
KEY: Final = ("scraper_source", "hour", "metric_type", "scheduler_name", "duration_bucket")
COLUMNS: Final = (
    "hour", "scraper_source", "metric_type", "scheduler_name", "duration_bucket",
    "records", "successes", "duration_sum", "duration_min", "duration_max",
    "retry_sum", "items_sum", "bytes_sum",
)  # fmt: skip
# How each counter merges with the row already there: sums add, extremes compare.
_MERGE: Final[dict[str, Merge]] = {
    "records": "sum", "successes": "sum", "duration_sum": "sum", "duration_min": "min",
    "duration_max": "max", "retry_sum": "sum", "items_sum": "sum", "bytes_sum": "sum",
}  # fmt: skip


def hour_shift_seconds() -> int:
    """Seconds from a UTC hour to the start of a TIME_ZONE hour: local time is UTC plus the
    offset, so local hours start where UTC time is a whole hour minus the offset.

    Taken from the zone's current offset. Zones whose offset changes by part of an hour
    (Australia/Lord_Howe: 30 minutes) would cut summer and winter hours differently."""
    offset = timezone.get_current_timezone().utcoffset(datetime.now(UTC).replace(tzinfo=None))
    return int(-offset.total_seconds()) % 3600 if offset is not None else 0


def hour_start_ms(recorded_at: int, shift_ms: int) -> int:
    return (recorded_at - shift_ms) // HOUR_MS * HOUR_MS + shift_ms


def _measures(record: Metric) -> tuple[str, str, int, int, int, int]:
    """type, scheduler name, duration, retries, items, bytes."""
    return (
        type_of(record), getattr(record, "scheduler_name", ""), duration_of(record),
        getattr(record, "retry_count", 0), items_of(record), getattr(record, "data_size", 0),
    )  # fmt: skip


def rollup_rows(records: Sequence[Metric]) -> list[tuple[Any, ...]]:
    """The records summed per rollup key, in key order (concurrent upserts then take their
    row locks in the same order, which keeps them from deadlocking each other)."""
    shift_ms = hour_shift_seconds() * 1000
    sums: dict[tuple[str, str, int, str, str], list[int]] = {}
    # A batch repeats hours and durations: format and bucket each once (a third of the time).
    hours: dict[int, str] = {}
    buckets: dict[int, int] = {}
    for record in records:
        metric_type, scheduler, duration, retries, items, size = _measures(record)
        hour = hour_start_ms(record.recorded_at, shift_ms)
        hour_text = hours.get(hour) or hours.setdefault(hour, db_hour(hour))
        bucket = buckets.get(duration)
        if bucket is None:
            bucket = buckets[duration] = bucket_of(duration)
        key = (channel_of(record), hour_text, bucket, metric_type, scheduler)
        ok = 1 if record.success else 0
        counters = sums.get(key)
        if counters is None:
            sums[key] = [1, ok, duration, duration, duration, retries, items, size]
            continue
        counters[0] += 1
        counters[1] += ok
        counters[2] += duration
        counters[3] = min(counters[3], duration)
        counters[4] = max(counters[4], duration)
        counters[5] += retries
        counters[6] += items
        counters[7] += size
    return [
        (hour, channel, metric_type, scheduler, bucket, *counters)
        for (channel, hour, bucket, metric_type, scheduler), counters in sorted(sums.items())
    ]


def add_to_rollups(cursor: Any, records: Sequence[Metric], rows_per_statement: int = 1000) -> None:
    """Add stored records to their rollups; call inside the transaction that stored them."""
    rows = rollup_rows(records)
    for start in range(0, len(rows), rows_per_statement):
        chunk = rows[start : start + rows_per_statement]
        cursor.execute(
            insert_sql(TABLE, COLUMNS, len(chunk)) + " " + _merge_clause(connection.vendor),
            [value for row in chunk for value in row],
        )


@functools.cache
def _merge_clause(vendor: str) -> str:
    """upsert_clause for the rollups, built once per database vendor (the cache key)."""
    return upsert_clause(KEY, _MERGE)


# --- Rebuilding from the detailed rows ------------------------------------------------------


def _hour_sql(column: str, shift: int) -> str:
    if connection.vendor == "mysql":
        return (
            f"TIMESTAMPADD(SECOND, {shift}, "
            f"DATE_FORMAT(TIMESTAMPADD(SECOND, {-shift}, {column}), '%%Y-%%m-%%d %%H:00:00'))"
        )
    return f"datetime(strftime('%%Y-%%m-%%d %%H:00:00', {column}, '{-shift} seconds'), '{shift} seconds')"


def rebuild(start: datetime, end: datetime) -> int:
    """Recompute the rollups of [start, end) from the detailed rows, in one transaction.

    For repairs and for records stored before rollups existed; only hours still inside
    retention can be rebuilt (older rollups are kept as they are). start and end should fall on
    rollup hours. Returns the number of records rolled up.

    A day of 10 million records is one statement of about half a minute on a 2-core machine
    (one scan of the day's partition; per-hour statements through the index took twice as
    long), so call it inside db.long_queries(), as aggregate_daily does."""
    shift = hour_shift_seconds()
    page_source = f"""
        SELECT {_hour_sql("created_at", shift)} AS hour, scraper_source, metric_type,
               '' AS scheduler_name, success, {PAGE_DURATION_SQL} AS duration,
               COALESCE(retry_count, 0) AS retries, COALESCE({ITEMS_FIELD["page_scrape"]}, 0) AS items,
               COALESCE(data_size, 0) AS size
        FROM {PagePerformance._meta.db_table} WHERE created_at >= %s AND created_at < %s"""
    scheduler_source = f"""
        SELECT {_hour_sql("created_at", shift)} AS hour, {SCHEDULER_CHANNEL_SQL} AS scraper_source,
               'scheduler_run' AS metric_type, scheduler_name, success,
               {DURATION_FIELD["scheduler_run"]} AS duration, 0 AS retries,
               {ITEMS_FIELD["scheduler_run"]} AS items, 0 AS size
        FROM {SchedulerMetric._meta.db_table} WHERE created_at >= %s AND created_at < %s"""
    bounds = [db_instant(start), db_instant(end)]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE hour >= %s AND hour < %s", bounds)
        for source in (page_source, scheduler_source):
            cursor.execute(
                f"""INSERT INTO {TABLE} ({", ".join(COLUMNS)})
                SELECT hour, scraper_source, metric_type, scheduler_name, bucket,
                       COUNT(*), SUM(CASE WHEN success THEN 1 ELSE 0 END), SUM(duration), MIN(duration),
                       MAX(duration), SUM(retries), SUM(items), SUM(size)
                FROM (SELECT r.*, {bucket_sql("r.duration")} AS bucket FROM ({source}) AS r) AS b
                GROUP BY hour, scraper_source, metric_type, scheduler_name, bucket""",
                bounds,
            )
        cursor.execute(
            f"SELECT COALESCE(SUM(records), 0) FROM {TABLE} WHERE hour >= %s AND hour < %s", bounds
        )
        return int(cursor.fetchone()[0] or 0)


def rebuild_span(first: datetime, last: datetime) -> int:
    """rebuild() over the whole rollup hours that hold first … last."""
    shift_ms = hour_shift_seconds() * 1000
    start = hour_start_ms(epoch_ms(first), shift_ms)
    end = hour_start_ms(epoch_ms(last), shift_ms) + HOUR_MS
    return rebuild(datetime.fromtimestamp(start / 1000, UTC), datetime.fromtimestamp(end / 1000, UTC))

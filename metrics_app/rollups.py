"""Rollups: the records summed per channel, type (and scheduler), time bucket and duration
bucket, at two grains: hours (table scraper_metrics_hourly, kept forever: hour and day history,
the daily summaries) and minutes (scraper_metrics_minute, kept as long as the detailed rows:
the live ranges, minute history, each process's live totals). Kept current by the transaction
that stores the records, rebuilt from the detailed rows on demand.

Adding a batch is one multi-row upsert per grain that adds to the counters, in the same
transaction as the detailed rows, so the rollups hold exactly what was stored, late records
(an old recordedAt) included, without a job that could fall behind or run twice.

Hours are cut in TIME_ZONE: a local hour starts hour_shift_seconds() after a UTC hour (0 in
most zones, 1800 in India or Adelaide, 900 in Nepal, which is UTC+5:45). Whole local days are
then whole rollup hours, daylight saving time included, and the SQL needs no time zone tables
(MySQL's CONVERT_TZ returns NULL without them). Minutes are the same in every zone.
"""

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.db import connection, models, transaction
from django.utils import timezone
from msgspec import UnsetType

from metrics_app.dialect import Merge, db_instant, db_start, epoch_ms_sql, execute_rows, upsert_clause
from metrics_app.histogram import bucket_of, bucket_sql
from metrics_app.models import (
    PAGE_DURATION_SQL,
    SCHEDULER_CHANNEL_SQL,
    FieldHour,
    FieldMinute,
    HourlyRollup,
    MinuteRollup,
    PagePerformance,
    SchedulerMetric,
    StatusHour,
    StatusMinute,
)
from metrics_app.records import (
    DURATION_FIELD,
    ITEMS_FIELD,
    FieldCount,
    Metric,
    PageNavigation,
    PageScrape,
    channel_of,
    duration_of,
    epoch_ms,
    fields_of,
    items_of,
    type_of,
)

HOUR_MS: Final = 3_600_000
MINUTE_MS: Final = 60_000
# Each counter (in rollup_rows' order): how it merges with the row already there (sums add,
# extremes compare), and how a rebuild computes it from the detailed rows.
COUNTERS: Final[dict[str, tuple[Merge, str]]] = {
    "records": ("sum", "COUNT(*)"),
    "successes": ("sum", "SUM(CASE WHEN success THEN 1 ELSE 0 END)"),
    "duration_sum": ("sum", "SUM(duration)"),
    "duration_min": ("min", "MIN(duration)"),
    "duration_max": ("max", "MAX(duration)"),
    "retry_sum": ("sum", "SUM(retries)"),
    "items_sum": ("sum", "SUM(items)"),
    "bytes_sum": ("sum", "SUM(size)"),
    "last_recorded_at": ("max", "MAX(at)"),
}


@dataclass(frozen=True)
class Grain:
    """A rollup table: its time column, its bucket's length, and the counters it keeps (a
    prefix of COUNTERS)."""

    model: type[models.Model]
    time_column: str
    step_ms: int
    counters: int  # how many of COUNTERS

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def key(self) -> tuple[str, ...]:
        return ("scraper_source", self.time_column, "metric_type", "scheduler_name", "duration_bucket")

    @property
    def kept(self) -> list[str]:
        """The counters it keeps."""
        return list(COUNTERS)[: self.counters]

    @property
    def columns(self) -> tuple[str, ...]:
        """The order of a row from rollup_rows."""
        return (
            self.time_column,
            "scraper_source",
            "metric_type",
            "scheduler_name",
            "duration_bucket",
            *self.kept,
        )

    def start_ms(self, recorded_at: int, shift_ms: int) -> int:
        """The start of the bucket holding recorded_at (hours shifted to TIME_ZONE's)."""
        shift = shift_ms if self.step_ms == HOUR_MS else 0
        return (recorded_at - shift) // self.step_ms * self.step_ms + shift


HOURS: Final = Grain(HourlyRollup, "hour", HOUR_MS, counters=8)
MINUTES: Final = Grain(MinuteRollup, "minute", MINUTE_MS, counters=9)
GRAINS: Final = (HOURS, MINUTES)


def hour_shift_seconds() -> int:
    """Seconds from a UTC hour to the start of a TIME_ZONE hour: local time is UTC plus the
    offset, so local hours start where UTC time is a whole hour minus the offset.

    Taken from the zone's current offset. Zones whose offset changes by part of an hour
    (Australia/Lord_Howe: 30 minutes) would cut summer and winter hours differently."""
    offset = timezone.get_current_timezone().utcoffset(datetime.now(UTC).replace(tzinfo=None))
    return int(-offset.total_seconds()) % 3600 if offset is not None else 0


def hour_start_ms(recorded_at: int, shift_ms: int) -> int:
    return HOURS.start_ms(recorded_at, shift_ms)


def _measures(record: Metric) -> tuple[str, str, int, int, int, int]:
    """type, scheduler name, duration, retries, items, bytes."""
    return (
        type_of(record), getattr(record, "scheduler_name", ""), duration_of(record),
        getattr(record, "retry_count", 0), items_of(record), getattr(record, "data_size", 0),
    )  # fmt: skip


def rollup_rows(records: Sequence[Metric]) -> dict[Grain, list[tuple[Any, ...]]]:
    """The records summed per rollup key, for each grain, in key order (concurrent upserts then
    take their row locks in the same order, which keeps them from deadlocking each other)."""
    shift_ms = hour_shift_seconds() * 1000
    sums: dict[Grain, dict[tuple[str, str, int, str, str], list[int]]] = {grain: {} for grain in GRAINS}
    # A batch repeats times and durations: format and bucket each once (a third of the time).
    texts: dict[int, str] = {}
    buckets: dict[int, int] = {}
    for record in records:
        metric_type, scheduler, duration, retries, items, size = _measures(record)
        bucket = buckets.get(duration)
        if bucket is None:
            bucket = buckets[duration] = bucket_of(duration)
        channel, ok, at = channel_of(record), 1 if record.success else 0, record.recorded_at
        for grain, grain_sums in sums.items():
            start = grain.start_ms(at, shift_ms)
            text = texts.get(start) or texts.setdefault(start, db_start(start))
            key = (channel, text, bucket, metric_type, scheduler)
            counters = grain_sums.get(key)
            if counters is None:
                grain_sums[key] = [1, ok, duration, duration, duration, retries, items, size, at]
                continue
            counters[0] += 1
            counters[1] += ok
            counters[2] += duration
            counters[3] = min(counters[3], duration)
            counters[4] = max(counters[4], duration)
            counters[5] += retries
            counters[6] += items
            counters[7] += size
            counters[8] = max(counters[8], at)
    return {
        grain: [
            (start, channel, metric_type, scheduler, bucket, *counters[: grain.counters])
            for (channel, start, bucket, metric_type, scheduler), counters in sorted(grain_sums.items())
        ]
        for grain, grain_sums in sums.items()
    }


def add_to_rollups(cursor: Any, records: Sequence[Metric], rows_per_statement: int = 1000) -> None:
    """Add stored records to their rollups; call inside the transaction that stored them."""
    for grain, rows in rollup_rows(records).items():
        _upsert(
            cursor,
            grain.table,
            grain.columns,
            _merge_clause(grain, connection.vendor),
            rows,
            rows_per_statement,
        )
    _upsert_data(cursor, data_rows(records), rows_per_statement)


def _upsert(
    cursor: Any,
    table: str,
    columns: Sequence[str],
    merge: str,
    rows: list[tuple[Any, ...]],
    rows_per_statement: int,
) -> None:
    """Rows into a rollup table, adding to the rows already there, in statements of at most
    `rows_per_statement` rows."""
    for start in range(0, len(rows), rows_per_statement):
        execute_rows(cursor, table, tuple(columns), rows[start : start + rows_per_statement], merge)


@functools.cache
def _merge_clause(grain: Grain, vendor: str) -> str:
    """upsert_clause for a grain's table, built once per database vendor (the cache key)."""
    merges: Mapping[str, Merge] = {column: COUNTERS[column][0] for column in grain.kept}
    return upsert_clause(grain.key, merges)


# --- Rebuilding from the detailed rows ------------------------------------------------------


def _start_sql(grain: Grain, column: str, shift: int) -> str:
    """The start of the grain's bucket holding `column`, as rollup_rows gives it."""
    if grain is MINUTES:
        if connection.vendor == "mysql":
            return f"DATE_FORMAT({column}, '%%Y-%%m-%%d %%H:%%i:00')"
        return f"strftime('%%Y-%%m-%%d %%H:%%M:00', {column})"
    if connection.vendor == "mysql":
        return (
            f"TIMESTAMPADD(SECOND, {shift}, "
            f"DATE_FORMAT(TIMESTAMPADD(SECOND, {-shift}, {column}), '%%Y-%%m-%%d %%H:00:00'))"
        )
    return f"datetime(strftime('%%Y-%%m-%%d %%H:00:00', {column}, '{-shift} seconds'), '{shift} seconds')"


def rebuild(start: datetime, end: datetime) -> int:
    """Recompute the rollups of [start, end), both grains, from the detailed rows, in one
    transaction.

    For repairs and for records stored before rollups existed; only hours still inside
    retention can be rebuilt (older rollups are kept as they are). start and end should fall on
    rollup hours. Returns the number of records rolled up.

    A day of 10 million records is one statement per grain of about half a minute on a 2-core
    machine (one scan of the day's partition; per-hour statements through the index took twice
    as long), so call it inside db.long_queries(), as aggregate_daily does."""
    bounds = [db_instant(start), db_instant(end)]
    with transaction.atomic(), connection.cursor() as cursor:
        for grain in GRAINS:
            _rebuild_grain(cursor, grain, bounds)
        _rebuild_data(cursor, start, end)
        cursor.execute(
            f"SELECT COALESCE(SUM(records), 0) FROM {HOURS.table} WHERE hour >= %s AND hour < %s", bounds
        )
        return int(cursor.fetchone()[0] or 0)


def _rebuild_grain(cursor: Any, grain: Grain, bounds: list[str]) -> None:
    shift = hour_shift_seconds()
    start = _start_sql(grain, "created_at", shift)
    at = epoch_ms_sql("created_at")
    page_source = f"""
        SELECT {start} AS start, scraper_source, metric_type, '' AS scheduler_name, success,
               {PAGE_DURATION_SQL} AS duration, COALESCE(retry_count, 0) AS retries,
               COALESCE({ITEMS_FIELD["page_scrape"]}, 0) AS items, COALESCE(data_size, 0) AS size, {at} AS at
        FROM {PagePerformance._meta.db_table} WHERE created_at >= %s AND created_at < %s"""
    scheduler_source = f"""
        SELECT {start} AS start, {SCHEDULER_CHANNEL_SQL} AS scraper_source,
               'scheduler_run' AS metric_type, scheduler_name, success,
               {DURATION_FIELD["scheduler_run"]} AS duration, 0 AS retries,
               {ITEMS_FIELD["scheduler_run"]} AS items, 0 AS size, {at} AS at
        FROM {SchedulerMetric._meta.db_table} WHERE created_at >= %s AND created_at < %s"""
    sums = ", ".join(COUNTERS[column][1] for column in grain.kept)
    cursor.execute(
        f"DELETE FROM {grain.table} WHERE {grain.time_column} >= %s AND {grain.time_column} < %s", bounds
    )
    for source in (page_source, scheduler_source):
        cursor.execute(
            f"""INSERT INTO {grain.table} ({", ".join(grain.columns)})
            SELECT start, scraper_source, metric_type, scheduler_name, bucket, {sums}
            FROM (SELECT r.*, {bucket_sql("r.duration")} AS bucket FROM ({source}) AS r) AS b
            GROUP BY start, scraper_source, metric_type, scheduler_name, bucket""",
            bounds,
        )


# --- What the data holds: field counts and HTTP statuses --------------------------------------
#
# Per source and field: the items of the pages that reported the field, and of those items the
# filled and the invalid; per source and HTTP status: the navigations. Same grains, same
# transaction, same rebuild as the rollups above; a record without `fields` or `httpStatus`
# adds nothing to them. Minutes are kept DATA_MINUTES_KEPT (metrics_app.retention).

DATA_MINUTES_KEPT: Final = timedelta(days=1)


@dataclass(frozen=True)
class DataGrain:
    """A field or status rollup table: the grain it follows, its key column, its counters."""

    model: type[models.Model]
    grain: Grain
    key_column: str  # "field" or "http_status"
    counters: tuple[str, ...]

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.grain.time_column, "scraper_source", self.key_column, *self.counters)


_FIELD_COUNTERS: Final = ("items", "filled", "invalid")
FIELD_MINUTES: Final = DataGrain(FieldMinute, MINUTES, "field", _FIELD_COUNTERS)
FIELD_HOURS: Final = DataGrain(FieldHour, HOURS, "field", _FIELD_COUNTERS)
STATUS_MINUTES: Final = DataGrain(StatusMinute, MINUTES, "http_status", ("navigations",))
STATUS_HOURS: Final = DataGrain(StatusHour, HOURS, "http_status", ("navigations",))
DATA_GRAINS: Final = (FIELD_MINUTES, FIELD_HOURS, STATUS_MINUTES, STATUS_HOURS)

# A page's field counts as summed: (source, recordedAt, itemsExtracted, fields).
FieldEntry = tuple[str, int, int, Mapping[str, FieldCount]]


def field_sums(entries: Iterable[FieldEntry]) -> dict[DataGrain, list[tuple[Any, ...]]]:
    """Pages' field counts summed per source, bucket and field, for both grains, in key order:
    the one definition of a field's items (those of the pages that reported the field), used
    by ingest and rebuild alike. A batch of 1,000 pages of 10 fields is then one row per
    (source, field, minute), not one per page.

    Each page's fields are visited once: summed per (source, minute) by name (a batch's pages
    share a few sources and minutes), then hours from minutes (a local hour is whole minutes)."""
    minutes: dict[tuple[str, int], dict[str, list[int]]] = {}
    for source, at, items, fields in entries:
        key = (source, at - at % MINUTE_MS)
        by_name = minutes.get(key)
        if by_name is None:
            by_name = minutes[key] = {}
        for name, count in fields.items():
            counters = by_name.get(name)
            if counters is None:
                by_name[name] = [items, count.filled, count.invalid]
            else:
                counters[0] += items
                counters[1] += count.filled
                counters[2] += count.invalid
    return {FIELD_MINUTES: _keyed_rows(minutes), FIELD_HOURS: _keyed_rows(_to_hours(minutes))}


def _to_hours(
    minutes: Mapping[tuple[str, int], Mapping[Any, list[int]]],
) -> dict[tuple[str, int], dict[Any, list[int]]]:
    """Per-minute sums (source, minute) -> key -> counters, added up per local hour."""
    shift_ms = hour_shift_seconds() * 1000
    hours: dict[tuple[str, int], dict[Any, list[int]]] = {}
    for (source, minute), by_key in minutes.items():
        hour = hours.setdefault((source, HOURS.start_ms(minute, shift_ms)), {})
        for key, counters in by_key.items():
            summed = hour.get(key)
            if summed is None:
                hour[key] = list(counters)
            else:
                for i, value in enumerate(counters):
                    summed[i] += value
    return hours


def _keyed_rows(sums: Mapping[tuple[str, int], Mapping[Any, list[int]]]) -> list[tuple[Any, ...]]:
    """(start, source, key, *counters) rows, in the tables' key order (source, start, key):
    concurrent upserts then take their row locks in the same order."""
    texts = {start: db_start(start) for _, start in sums}
    return [
        (texts[start], source, key, *counters)
        for source, start in sorted(sums)
        for key, counters in sorted(sums[(source, start)].items())
    ]


def data_rows(records: Sequence[Metric]) -> dict[DataGrain, list[tuple[Any, ...]]]:
    """The records' field counts and HTTP statuses summed per rollup key, in key order."""
    pages: list[FieldEntry] = []
    statuses: dict[tuple[str, int], dict[int, list[int]]] = {}
    for record in records:
        if isinstance(record, PageScrape):
            if not isinstance(fields := record.fields, UnsetType):
                pages.append((record.scraper_source, record.recorded_at, record.items_extracted, fields))
        elif isinstance(record, PageNavigation) and isinstance(status := record.http_status, int):
            at = record.recorded_at
            by_code = statuses.setdefault((record.scraper_source, at - at % MINUTE_MS), {})
            if (counter := by_code.get(status)) is None:
                by_code[status] = [1]
            else:
                counter[0] += 1
    rows = field_sums(pages) if pages else {}
    if statuses:
        rows[STATUS_MINUTES] = _keyed_rows(statuses)
        rows[STATUS_HOURS] = _keyed_rows(_to_hours(statuses))
    return rows


def _upsert_data(
    cursor: Any, rows: Mapping[DataGrain, list[tuple[Any, ...]]], rows_per_statement: int
) -> None:
    for data_grain, grain_rows in rows.items():
        merge = _data_merge_clause(data_grain, connection.vendor)
        _upsert(cursor, data_grain.table, data_grain.columns, merge, grain_rows, rows_per_statement)


@functools.cache
def _data_merge_clause(data_grain: DataGrain, vendor: str) -> str:
    key = (data_grain.grain.time_column, "scraper_source", data_grain.key_column)
    return upsert_clause(key, dict.fromkeys(data_grain.counters, "sum"))


def _rebuild_data(cursor: Any, start: datetime, end: datetime) -> None:
    """Recompute the field and status rollups of [start, end) from the detailed rows.

    Statuses are counted in SQL. Field counts are summed by field_sums, the function ingest
    uses, over the pages that reported fields: expanding a JSON object's keys in SQL is spelt
    differently on each database (MariaDB has no JSON_EACH), and only those pages are read."""
    bounds = [db_instant(start), db_instant(end)]
    for data_grain in DATA_GRAINS:
        column = data_grain.grain.time_column
        cursor.execute(f"DELETE FROM {data_grain.table} WHERE {column} >= %s AND {column} < %s", bounds)
    shift = hour_shift_seconds()
    for data_grain in (STATUS_MINUTES, STATUS_HOURS):
        bucket = _start_sql(data_grain.grain, "created_at", shift)
        cursor.execute(
            f"""INSERT INTO {data_grain.table} ({", ".join(data_grain.columns)})
            SELECT {bucket} AS start, scraper_source, http_status, COUNT(*)
            FROM {PagePerformance._meta.db_table}
            WHERE created_at >= %s AND created_at < %s AND http_status IS NOT NULL
              AND metric_type = 'page_navigation'
            GROUP BY start, scraper_source, http_status""",
            bounds,
        )
    pages = (
        PagePerformance.objects.filter(created_at__gte=start, created_at__lt=end, field_counts__isnull=False)
        .order_by()
        .values_list("scraper_source", "created_at", "items_extracted", "field_counts")
    )
    entries = (
        (source, epoch_ms(created), items or 0, fields_of(fields or {}))
        for source, created, items, fields in pages.iterator(chunk_size=5000)
    )
    _upsert_data(cursor, field_sums(entries), 1000)

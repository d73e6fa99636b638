"""Retention: detailed rows (and their minute rollups) older than METRICS_RETENTION_DAYS go;
hourly rollups and summaries stay. The field and status rollups keep their minutes
DATA_MINUTES_KEPT and their hours METRICS_RETENTION_DAYS (metrics_app.rollups); their daily
summaries stay.

On MySQL/MariaDB the detailed tables are partitioned by UTC day (migration 0003), so an
expired day leaves by swapping its partition out (`EXCHANGE PARTITION`) and dropping it: a
few milliseconds of table lock whatever its size, where deleting ten million rows one chunk at
a time takes minutes of I/O and holds row locks throughout. Rows older than the cutoff in the
partition that straddles it, and every expired row on SQLite, are deleted in bounded chunks so
inserts keep flowing.

Partitions for the coming days are added ahead (ADD_DAYS_AHEAD) from the empty catch-all
partition `p_future`, whenever the cleanup or the migration runs.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from metrics_app.dialect import db_datetime, db_instant
from metrics_app.ingest import idempotency, sources
from metrics_app.models import (
    EntitySeen,
    MinuteRollup,
    PagePerformance,
    RunEntity,
    RunSource,
    SchedulerMetric,
    StaleMinute,
)
from metrics_app.records import epoch_ms
from metrics_app.rollups import DATA_GRAINS, DATA_MINUTES_KEPT, MINUTES

DETAILED_TABLES: Final = (PagePerformance._meta.db_table, SchedulerMetric._meta.db_table)
# Minute rollups serve the ranges the detailed rows cover, and go with them.
MINUTE_ROLLUPS: Final = MinuteRollup._meta.db_table
CHUNK_ROWS: Final = 10_000
ADD_DAYS_AHEAD: Final = 7
FUTURE: Final = "p_future"
PAST: Final = "p_past"
# MySQL's TO_DAYS(d) is the proleptic Gregorian ordinal of d plus 365 (it counts a year 0).
_TO_DAYS_OFFSET: Final = 365
_LOCK: Final = "wealthmetrics.retention"


@dataclass
class TableCleanup:
    table: str
    dropped_partitions: list[str] = field(default_factory=list)
    rows_in_dropped_partitions: int = 0
    rows_deleted_in_chunks: int = 0

    @property
    def deleted(self) -> int:
        return self.rows_in_dropped_partitions + self.rows_deleted_in_chunks

    def __str__(self) -> str:
        how = f"{self.rows_deleted_in_chunks} in chunks"
        if self.dropped_partitions:
            how = f"{self.rows_in_dropped_partitions} by dropping {', '.join(self.dropped_partitions)}; {how}"
        return f"{self.table}: {self.deleted} rows deleted ({how})"


@dataclass
class CleanupReport:
    cutoff: datetime
    tables: list[TableCleanup]  # the detailed tables
    minute_rollups: TableCleanup
    data_rollups: list[TableCleanup] = field(default_factory=list)  # fields' and statuses'
    idempotency_keys: int = 0  # past their 24 h
    names_forgotten: int = 0  # sources and schedulers with no record left in the window

    @property
    def deleted(self) -> int:
        """Detailed rows: records."""
        return sum(table.deleted for table in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "deleted": {
                table.table: table.deleted
                for table in [*self.tables, self.minute_rollups, *self.data_rollups]
            },
            "droppedPartitions": {table.table: table.dropped_partitions for table in self.tables},
            "idempotencyKeys": self.idempotency_keys,
            "namesForgotten": self.names_forgotten,
        }


def to_days(day: date) -> int:
    return day.toordinal() + _TO_DAYS_OFFSET


def partition_name(day: date) -> str:
    return f"p{day:%Y%m%d}"


def _partitions(db: BaseDatabaseWrapper, table: str) -> list[tuple[str, int | None]]:
    """(name, upper bound in TO_DAYS or None for MAXVALUE) in order; empty if unpartitioned."""
    if db.vendor != "mysql":
        return []
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT PARTITION_NAME, PARTITION_DESCRIPTION FROM information_schema.PARTITIONS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND PARTITION_NAME IS NOT NULL "
            "ORDER BY PARTITION_ORDINAL_POSITION",
            [table],
        )
        return [(name, None if bound == "MAXVALUE" else int(bound)) for name, bound in cursor.fetchall()]


def add_partitions(db: BaseDatabaseWrapper | None = None, today: date | None = None) -> list[str]:
    """Split day partitions off `p_future` up to ADD_DAYS_AHEAD days ahead; returns them.

    `p_future` normally holds no rows, so the split moves nothing."""
    db = db or connection
    today = today or datetime.now(UTC).date()
    added: list[str] = []
    for table in DETAILED_TABLES:
        partitions = _partitions(db, table)
        if not partitions:
            continue
        bounds = [bound for _, bound in partitions if bound is not None]
        next_day = date.fromordinal(max(bounds) - _TO_DAYS_OFFSET) if bounds else today
        days = [next_day + timedelta(days=n) for n in range((today - next_day).days + ADD_DAYS_AHEAD + 1)]
        if not days:
            continue
        new = ", ".join(
            f"PARTITION {partition_name(day)} VALUES LESS THAN ({to_days(day + timedelta(days=1))})"
            for day in days
        )
        with db.cursor() as cursor:
            cursor.execute(
                f"ALTER TABLE {table} REORGANIZE PARTITION {FUTURE} INTO "
                f"({new}, PARTITION {FUTURE} VALUES LESS THAN MAXVALUE)"
            )
        added += [f"{table}.{partition_name(day)}" for day in days]
    return added


def cleanup(
    days: int | None = None,
    progress: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> CleanupReport:
    """Delete detailed rows recorded more than `days` (default METRICS_RETENTION_DAYS) before
    now: a row recorded exactly at the cutoff stays."""
    days = settings.METRICS_RETENTION_DAYS if days is None else days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    say = progress or (lambda _: None)
    with _exclusive():
        add_partitions()
        tables = [_cleanup_table(table, cutoff, say) for table in DETAILED_TABLES]
        # Whole minutes only: the minute that straddles the cutoff also counts kept records.
        minute = db_instant(cutoff.replace(second=0, microsecond=0))
        report = CleanupReport(
            cutoff, tables, _delete_expired(TableCleanup(MINUTE_ROLLUPS), "minute", minute, say)
        )
        report.data_rollups = _trim_data_rollups(cutoff, now or timezone.now(), say)
        # entities not refreshed within the retention are forgotten
        report.data_rollups.append(
            _delete_expired(
                TableCleanup(EntitySeen._meta.db_table), "last_seen_at", str(epoch_ms(cutoff)), say
            )
        )
        report.data_rollups.append(
            _delete_expired(TableCleanup(StaleMinute._meta.db_table), "minute", db_instant(cutoff), say)
        )
        report.data_rollups.append(_fold_run_entities(cutoff, say))
        report.idempotency_keys = idempotency.forget_expired()
        say(f"idempotency keys: {report.idempotency_keys} past {idempotency.IDEMPOTENCY_HOURS} h deleted")
        report.names_forgotten = sources.forget_silent(cutoff)
        say(f"sources and schedulers: {report.names_forgotten} with no record since the cutoff forgotten")
    return report


def _fold_run_entities(cutoff: datetime, say: Callable[[str], None]) -> TableCleanup:
    """The entities of runs whose last record is past the cutoff, a row each, become a count on
    the run's rows (RunSource.entities): the run's summary stays, its list of entities goes."""
    result = TableCleanup(RunEntity._meta.db_table)
    entities, runs = RunEntity._meta.db_table, RunSource._meta.db_table
    past = f"SELECT run_id, scraper_source FROM {runs} WHERE last_at < %s"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {runs} SET entities = entities + (SELECT COUNT(*) FROM {entities} e "
            f"WHERE e.run_id = {runs}.run_id AND e.scraper_source = {runs}.scraper_source) "
            f"WHERE last_at < %s AND EXISTS (SELECT 1 FROM {entities} e "
            f"WHERE e.run_id = {runs}.run_id AND e.scraper_source = {runs}.scraper_source)",
            [epoch_ms(cutoff)],
        )
        cursor.execute(
            f"DELETE FROM {entities} WHERE (run_id, scraper_source) IN ({past})", [epoch_ms(cutoff)]
        )
        result.rows_deleted_in_chunks = cursor.rowcount
    say(f"{entities}: {result.rows_deleted_in_chunks} rows of runs past the cutoff folded into their counts")
    return result


def _trim_data_rollups(cutoff: datetime, now: datetime, say: Callable[[str], None]) -> list[TableCleanup]:
    """Field and status minutes older than DATA_MINUTES_KEPT, hours wholly before the cutoff:
    a field's usual is learned from the hours of the retention window, and summarised daily."""
    trimmed = []
    for data_grain in DATA_GRAINS:
        if data_grain.grain is MINUTES:
            before = (now - DATA_MINUTES_KEPT).replace(second=0, microsecond=0)
        else:
            before = cutoff - timedelta(hours=1)
        column = data_grain.grain.time_column
        trimmed.append(_delete_expired(TableCleanup(data_grain.table), column, db_instant(before), say))
    return trimmed


def _cleanup_table(table: str, cutoff: datetime, say: Callable[[str], None]) -> TableCleanup:
    result = TableCleanup(table)
    result.rows_in_dropped_partitions += _drop_swapped_out(table, say)  # left by an interrupted run
    expired = [
        name
        for name, bound in _partitions(connection, table)
        if bound is not None and bound <= to_days(cutoff.astimezone(UTC).date())
    ]
    for name in expired:
        result.rows_in_dropped_partitions += _drop_partition(table, name, say)
    result.dropped_partitions = expired
    return _delete_expired(result, "created_at", db_datetime(epoch_ms(cutoff)), say)


def _delete_expired(
    result: TableCleanup, column: str, before: str, say: Callable[[str], None]
) -> TableCleanup:
    """Delete the table's rows from before `before`, written as the column's values are (on
    SQLite times compare as text), a chunk at a time."""
    while (deleted := _delete_chunk(result.table, column, before)) > 0:
        result.rows_deleted_in_chunks += deleted
        if deleted == CHUNK_ROWS:
            say(f"{result.table}: {result.rows_deleted_in_chunks} rows deleted so far")
    return result


def _drop_partition(table: str, name: str, say: Callable[[str], None]) -> int:
    """Drop a partition without stalling inserts: swap its rows out into a table of their own,
    drop the now empty partition, then drop that table.

    Dropping a 10-million-row partition directly holds the table's metadata lock while the
    server deletes gigabytes of file (350 ms here, and every insert waits); the exchange and
    the empty drop take 2 ms each, and dropping the separate table blocks no one."""
    swap = f"{table}_expired_{name}"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {swap}")
        cursor.execute(f"CREATE TABLE {swap} LIKE {table}")
        cursor.execute(f"ALTER TABLE {swap} REMOVE PARTITIONING")
        cursor.execute(f"ALTER TABLE {table} EXCHANGE PARTITION {name} WITH TABLE {swap}")
        cursor.execute(f"ALTER TABLE {table} DROP PARTITION {name}")
    return _drop_swap_table(swap, say)


def _drop_swap_table(swap: str, say: Callable[[str], None]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {swap}")
        rows = int(cursor.fetchone()[0])
        cursor.execute(f"DROP TABLE {swap}")
    say(f"{swap}: dropped ({rows} rows)")
    return rows


def _drop_swapped_out(table: str, say: Callable[[str], None]) -> int:
    if connection.vendor != "mysql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SHOW TABLES LIKE %s", [f"{table}\\_expired\\_%"])
        leftovers = [row[0] for row in cursor.fetchall()]
    return sum(_drop_swap_table(swap, say) for swap in leftovers)


def _delete_chunk(table: str, column: str, before: str) -> int:
    """Delete up to CHUNK_ROWS expired rows in a transaction of their own."""
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute(f"DELETE FROM {table} WHERE {column} < %s LIMIT {CHUNK_ROWS}", [before])
        else:
            # rowid: every SQLite table has one, whatever its primary key
            cursor.execute(
                f"DELETE FROM {table} WHERE rowid IN "
                f"(SELECT rowid FROM {table} WHERE {column} < %s LIMIT {CHUNK_ROWS})",
                [before],
            )
        return int(cursor.rowcount)


@contextmanager
def _exclusive() -> Iterator[None]:
    """One cleanup at a time across processes (two beats, a duplicate delivery): on MySQL a
    named lock, so partition changes never race; SQLite serialises writers itself."""
    if connection.vendor != "mysql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK(%s, 600)", [_LOCK])
        if cursor.fetchone()[0] != 1:
            raise TimeoutError("another cleanup has held the retention lock for 10 minutes")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT RELEASE_LOCK(%s)", [_LOCK])

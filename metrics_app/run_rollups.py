"""Run rollups: the records that carry a runId, summed per run (metrics_app.run_models), in
the transaction that stores them, as metrics_app.rollups does per time bucket.

A record without a runId adds nothing here and costs one attribute check. A batch's records
mostly share a few runs, so a group of a thousand records is a few rows per table.
"""

import functools
from collections.abc import Sequence
from typing import Any, Final

from django.db import connection
from msgspec import UnsetType

from metrics_app.dialect import Merge, execute_rows, upsert_clause
from metrics_app.records import Metric, PageNavigation, PageScrape, SchedulerRun
from metrics_app.run_models import RunEnd, RunField, RunSource, RunStatus


class RunTable:
    """A run rollup table: its key, and how each counter merges with the row already there."""

    def __init__(self, model: Any, key: tuple[str, ...], merges: dict[str, Merge]) -> None:
        self.table: Final = model._meta.db_table
        self.key: Final = key
        self.merges: Final = merges
        self.columns: Final = (*key, *merges)


SOURCES: Final = RunTable(
    RunSource,
    ("run_id", "scraper_source"),
    {"first_at": "min", "last_at": "max", "navigations": "sum", "failed_navigations": "sum",
     "scrapes": "sum", "failed_scrapes": "sum", "items": "sum", "bytes": "sum"},
)  # fmt: skip
FIELDS: Final = RunTable(RunField, ("run_id", "field"), dict.fromkeys(("items", "filled", "invalid"), "sum"))
STATUSES: Final = RunTable(RunStatus, ("run_id", "http_status"), {"navigations": "sum"})
# A run's end is its scheduler_run record: a second one for the same run replaces the first.
ENDS: Final = RunTable(
    RunEnd,
    ("run_id",),
    dict.fromkeys(
        ("scheduler_name", "scraper_source", "success", "duration_ms", "items_processed", "ended_at"),
        "replace",
    ),
)


def run_rows(records: Sequence[Metric]) -> dict[RunTable, list[tuple[Any, ...]]]:
    """The records' runs summed per table key, in key order (concurrent upserts then lock rows
    in the same order). Tables with no rows are left out."""
    sources: dict[tuple[str, str], list[int]] = {}
    fields: dict[tuple[str, str], list[int]] = {}
    statuses: dict[tuple[str, int], list[int]] = {}
    ends: dict[str, tuple[Any, ...]] = {}
    for record in records:
        run = record.run_id
        if isinstance(run, UnsetType) or run is None:
            continue
        if isinstance(record, SchedulerRun):
            earlier = ends.get(run)
            if earlier is None or earlier[-1] <= record.recorded_at:
                ends[run] = (
                    run, record.scheduler_name, record.scraper_source or "", int(record.success),
                    record.execution_duration_ms, record.items_processed, record.recorded_at,
                )  # fmt: skip
            continue
        at, failed = record.recorded_at, 0 if record.success else 1
        counters = sources.get((run, record.scraper_source))
        if counters is None:
            counters = sources[(run, record.scraper_source)] = [at, at, 0, 0, 0, 0, 0, 0]
        else:
            counters[0] = min(counters[0], at)
            counters[1] = max(counters[1], at)
        if isinstance(record, PageNavigation):
            counters[2] += 1
            counters[3] += failed
            if isinstance(status := record.http_status, int):
                _add(statuses, (run, status), (1,))
        elif isinstance(record, PageScrape):
            counters[4] += 1
            counters[5] += failed
            counters[6] += record.items_extracted
            counters[7] += record.data_size
            if not isinstance(page_fields := record.fields, UnsetType):
                for name, count in page_fields.items():
                    _add(fields, (run, name), (record.items_extracted, count.filled, count.invalid))
    rows: dict[RunTable, list[tuple[Any, ...]]] = {
        SOURCES: _keyed(sources),
        FIELDS: _keyed(fields),
        STATUSES: _keyed(statuses),
        ENDS: [ends[run] for run in sorted(ends)],
    }
    return {table: table_rows for table, table_rows in rows.items() if table_rows}


def _add(sums: dict[Any, list[int]], key: Any, values: tuple[int, ...]) -> None:
    counters = sums.get(key)
    if counters is None:
        sums[key] = list(values)
    else:
        for i, value in enumerate(values):
            counters[i] += value


def _keyed(sums: dict[Any, list[int]]) -> list[tuple[Any, ...]]:
    return [(*key, *sums[key]) for key in sorted(sums)]


@functools.cache
def _clause(table: RunTable, vendor: str) -> str:
    """A table's upsert clause, built once per database vendor (the cache key)."""
    return upsert_clause(table.key, table.merges)


def add_to_runs(cursor: Any, records: Sequence[Metric], rows_per_statement: int = 1000) -> None:
    """Add stored records to their runs; call inside the transaction that stored them."""
    for table, rows in run_rows(records).items():
        clause = _clause(table, connection.vendor)
        for start in range(0, len(rows), rows_per_statement):
            execute_rows(cursor, table.table, table.columns, rows[start : start + rows_per_statement], clause)

"""Storing records: one transaction, one multi-row INSERT per table and 1000 rows.

The same transaction adds the records to their rollups (metrics_app.rollups) and to their
runs' (metrics_app.run_rollups), so history, daily summaries and runs count exactly what was
stored.

A multi-row INSERT is one round trip instead of a thousand (about 61k rows/s against 3k/s
for row-at-a-time autocommit on this kind of machine), and it gives the rows consecutive ids:
MySQL reports the first (LAST_INSERT_ID), SQLite the last. Those ids go out with every live
record, so a browser that re-reads history after a gap can drop what it already has.
"""

from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction

from metrics_app.dialect import insert_sql
from metrics_app.ingest import idempotency
from metrics_app.ingest.freshness import freshness
from metrics_app.ingest.idempotency import Claim, Earlier
from metrics_app.ingest.rows import (
    PAGE_COLUMNS,
    PAGE_TABLE,
    SCHEDULER_COLUMNS,
    SCHEDULER_TABLE,
    page_row,
    scheduler_row,
)
from metrics_app.ingest.sources import registry
from metrics_app.records import Metric, SchedulerRun
from metrics_app.rollups import add_to_rollups
from metrics_app.run_rollups import add_to_runs

ROWS_PER_STATEMENT = 1000  # SQLite allows 32766 parameters: 1000 rows of 11 columns fit
# InnoDB may pick a transaction as a deadlock victim when two batches upsert the same rollup
# rows; it rolled back entirely, so running it again is safe.
DEADLOCK_ATTEMPTS = 3
_RETRYABLE_MYSQL_ERRORS = {1213, 1205}  # deadlock found, lock wait timeout


def _insert(cursor: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        cursor.execute(insert_sql(table, columns, len(chunk)), [value for row in chunk for value in row])
        last_id = int(cursor.lastrowid)
        first_id = last_id if connection.vendor == "mysql" else last_id - len(chunk) + 1
        ids.extend(range(first_id, first_id + len(chunk)))
    return ids


def store_metrics(records: Sequence[Metric]) -> list[int]:
    """Store every record or none; returns their ids, in the order given, once committed."""
    stored = store_batches([(records, None)])[0]
    assert isinstance(stored, list)  # no idempotency key, so never an earlier use
    return stored


Batch = tuple[Sequence[Metric], Claim | None]


def store_batches(batches: Sequence[Batch]) -> list[list[int] | Earlier]:
    """Store batches in one transaction: each batch's ids, in order, or the earlier use of its
    idempotency key (metrics_app.ingest.idempotency), whose records are then not stored."""
    for _ in range(DEADLOCK_ATTEMPTS - 1):
        try:
            return _store_once(batches)
        except OperationalError as exc:
            if not _is_retryable(exc):
                raise
        except IntegrityError:
            # A key was remembered by another transaction meanwhile: run again, finding it.
            if connection.in_atomic_block or all(claim is None for _, claim in batches):
                raise
    return _store_once(batches)


def _store_once(batches: Sequence[Batch]) -> list[list[int] | Earlier]:
    with transaction.atomic(), connection.cursor() as cursor:
        earlier = idempotency.settle(
            [claim for _, claim in batches], [len(records) for records, _ in batches]
        )
        records = [record for (batch, _), used in zip(batches, earlier, strict=True) if used is None
                   for record in batch]  # fmt: skip
        ids = _insert_records(cursor, records)
        add_to_rollups(cursor, records)
        add_to_runs(cursor, records)
        registry.register(records)
        freshness.seen(records)  # written behind, once committed
    stored: list[list[int] | Earlier] = []
    at = 0
    for (batch, _), used in zip(batches, earlier, strict=True):
        if used is None:
            stored.append(ids[at : at + len(batch)])
            at += len(batch)
        else:
            stored.append(used)
    return stored


def _insert_records(cursor: Any, records: Sequence[Metric]) -> list[int]:
    """Insert the records' rows, one multi-row INSERT per table; their ids in the order given."""
    ids = [0] * len(records)
    by_table: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]], list[int]]] = {
        PAGE_TABLE: (PAGE_COLUMNS, [], []),
        SCHEDULER_TABLE: (SCHEDULER_COLUMNS, [], []),
    }
    for index, record in enumerate(records):
        if isinstance(record, SchedulerRun):
            _, rows, positions = by_table[SCHEDULER_TABLE]
            rows.append(scheduler_row(record))
        else:
            _, rows, positions = by_table[PAGE_TABLE]
            rows.append(page_row(record))
        positions.append(index)
    for table, (columns, rows, positions) in by_table.items():
        for index, row_id in zip(positions, _insert(cursor, table, columns, rows), strict=True):
            ids[index] = row_id
    return ids


def _is_retryable(exc: OperationalError) -> bool:
    return bool(exc.args) and exc.args[0] in _RETRYABLE_MYSQL_ERRORS and not connection.in_atomic_block

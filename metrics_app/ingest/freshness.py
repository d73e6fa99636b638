"""Entity freshness, written behind (docs/api.md, "Entities"): when each source last refreshed
each entity a page named (`entities`), and how often it usually does.

A fleet refreshes the same symbols again and again: 500 of them every few seconds from many
processes would be a row write per symbol and page. Instead each process keeps the newest
time per (source, entity) since its last flush, and writes them every METRICS_ENTITY_FLUSH_S
in one upsert, so the writes per second are bounded by the distinct pairs per flush, not by the
records. A crash loses at most that much freshness, never a record: the records are stored
first, and the freshness is taken from them once their transaction has committed. Entities not
refreshed within the retention are forgotten (metrics_app.retention).

The refresh interval is averaged per entity in the upsert itself (a quarter of each new interval
into the average): intervals shorter than the flush count as the flush's.

The entities of a page with a `runId` are the run's too (RunEntity, so a run knows how many
distinct entities it refreshed): written the same way, beside them.
"""

import logging
import threading
from collections.abc import Sequence
from typing import Final

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from msgspec import UnsetType

from metrics_app import counters, db
from metrics_app.data_models import EntitySeen
from metrics_app.dialect import execute_rows
from metrics_app.records import Metric, PageScrape
from metrics_app.run_models import RunEntity
from metrics_app.server import features

log = logging.getLogger(__name__)

ROWS_PER_STATEMENT: Final = 1000
MAX_PENDING: Final = 1_000_000  # pairs held between flushes; beyond them a flush is due at once
_COLUMNS: Final = ("scraper_source", "entity", "last_seen_at", "interval_ms")
_RUN_COLUMNS: Final = ("run_id", "scraper_source", "entity")
# The rule of the average, in both dialects. MySQL assigns left to right with the new values,
# SQLite from the old row: the interval is assigned first, so both see the old last_seen_at.
_AVERAGED: Final = (
    "CASE WHEN {new} <= last_seen_at THEN interval_ms WHEN interval_ms = 0 THEN {new} - last_seen_at "
    "ELSE (3 * interval_ms + {new} - last_seen_at) / 4 END"
)


def _upsert_clause() -> str:
    if connection.vendor == "mysql":
        new = "VALUES(last_seen_at)"
        averaged = _AVERAGED.format(new=new).replace(" / 4", " DIV 4")
        return (
            f"ON DUPLICATE KEY UPDATE interval_ms = {averaged}, last_seen_at = GREATEST(last_seen_at, {new})"
        )
    new = "excluded.last_seen_at"
    return (
        f"ON CONFLICT (scraper_source, entity) DO UPDATE SET interval_ms = {_AVERAGED.format(new=new)}, "
        f"last_seen_at = MAX(last_seen_at, {new})"
    )


RunEntities = set[tuple[str, str, str]]  # (run id, source, entity)


class Freshness:
    """The pairs seen since the last flush, and the thread that flushes them (under a server;
    elsewhere each commit writes its own at once)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], int] = {}
        self._pending_runs: RunEntities = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._due = threading.Event()

    def seen(self, records: Sequence[Metric]) -> None:
        """Call in the transaction that stores the records: taken once it commits."""
        pairs: dict[tuple[str, str], int] = {}
        runs: RunEntities = set()
        for record in records:
            if type(record) is PageScrape and not isinstance(entities := record.entities, UnsetType):
                at, source = record.recorded_at, record.scraper_source
                for entity in entities:
                    key = (source, entity)
                    if pairs.get(key, 0) < at:
                        pairs[key] = at
                if isinstance(run_id := record.run_id, str):
                    runs.update((run_id, source, entity) for entity in entities)
        if pairs:
            transaction.on_commit(lambda: self._take(pairs, runs))

    def _take(self, pairs: dict[tuple[str, str], int], runs: RunEntities) -> None:
        if not features.serving:
            write(pairs, runs)  # a command or a test: nobody flushes later
            return
        with self._lock:
            pending = self._pending
            for key, at in pairs.items():
                if pending.get(key, 0) < at:
                    pending[key] = at
            self._pending_runs |= runs
            full = len(pending) + len(self._pending_runs) >= MAX_PENDING
        self._start()
        if full:
            self._due.set()

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="wealthmetrics-freshness", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            self._due.wait(settings.METRICS_ENTITY_FLUSH_S)
            self._due.clear()
            self.flush()

    def flush(self) -> int:
        """Write what is pending; returns the pairs written. On a database error they stay
        pending (merged with what came meanwhile) for the next flush."""
        with self._lock:
            pairs, self._pending = self._pending, {}
            runs, self._pending_runs = self._pending_runs, set()
        if not pairs:
            return 0
        try:
            db.call(write, pairs, runs)
        except DatabaseError as exc:
            counters.problem("entity_flush_failures", log, "entity freshness not written: %s", exc)
            with self._lock:
                for key, at in pairs.items():
                    if self._pending.get(key, 0) < at:
                        self._pending[key] = at
                self._pending_runs |= runs
            return 0
        counters.incr("entity_flushes")
        counters.incr("entity_rows_written", len(pairs) + len(runs))
        return len(pairs)


def write(pairs: dict[tuple[str, str], int], runs: RunEntities) -> None:
    """Upsert the pairs' newest times, and add the runs' entities not known yet, in key order
    (concurrent flushes of several processes then lock rows in the same order)."""
    rows = [(source, entity, at, 0) for (source, entity), at in sorted(pairs.items())]
    known = (
        "ON DUPLICATE KEY UPDATE run_id = run_id"
        if connection.vendor == "mysql"
        else "ON CONFLICT DO NOTHING"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        for table, columns, written, clause in (
            (EntitySeen._meta.db_table, _COLUMNS, rows, _upsert_clause()),
            (RunEntity._meta.db_table, _RUN_COLUMNS, sorted(runs), known),
        ):
            for start in range(0, len(written), ROWS_PER_STATEMENT):
                execute_rows(cursor, table, columns, written[start : start + ROWS_PER_STATEMENT], clause)


freshness = Freshness()

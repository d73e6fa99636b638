"""Group commit: concurrent ingest requests of a process share transactions.

Each request hands its validated records to the process's writer and waits. A writer thread
(METRICS_DB_WRITERS of them, each with one database connection) takes what is waiting, up to
MAX_RECORDS records or MAX_WAIT_S after the first, stores it all in one transaction with its
rollup upserts
(metrics_app.ingest.storage), publishes it once, then answers every request in it: with its
own records' ids once they are committed, or with the transaction's error, which fails
exactly the requests in that transaction.

A fleet of scrapers sends many small batches at once; one transaction per request meant one
fsync and one round of rollup upserts each, and concurrent transactions waiting on each
other's row locks for the same rollup rows. Batched, those costs are paid once per group.

For the same reason small groups go to the database one at a time. The first writer takes
whatever waits whenever it is free; the others take a group only when PARALLEL_RECORDS records
or more wait. While the first commits, small requests gather into the next group instead of
going beside it: side by side, small groups upsert the same rollup rows (same sources, same
minute), so the second waits on the first's row locks and each pays a round of upserts for a
handful of records. Big batches mostly insert their own rows, which two transactions do in
parallel. Whatever waits is taken as soon as the first writer is free, or by another writer
once a request has waited HELP_AFTER_S (the first is held up), so no request is left waiting.

Used where a server runs the application (metrics_app.server.features.serving); elsewhere
(management commands, Django's test client) requests store directly, in the caller's
transaction.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Final

from django.conf import settings
from django.db import DatabaseError

from metrics_app import counters, db
from metrics_app.ingest.idempotency import Claim, Earlier
from metrics_app.ingest.storage import store_batches
from metrics_app.records import Metric
from metrics_app.server import features
from metrics_app.stream import broadcast_metrics

log = logging.getLogger(__name__)

MAX_RECORDS: Final = 5000
MAX_WAIT_S: Final = 0.002  # after the first request: long enough for the others arriving with it
PARALLEL_RECORDS: Final = 500  # waiting records worth a transaction beside the first writer's
# Or a request waiting this long: the first writer is held up (a slow commit, a lock wait), so
# another takes what waits before the requests give up (METRICS_INGEST_QUEUE_MS, 500 by default).
HELP_AFTER_S: Final = 0.1

# What a request hears back: its records' ids once committed, or the earlier use of its
# idempotency key (its records were not stored again).
Stored = list[int] | Earlier
Waiting = tuple[Sequence[Metric], Claim | None, "Future[Stored]", float]  # …, since (monotonic)


class GroupWriter:
    def __init__(self, autostart: bool = True) -> None:
        """`autostart`: start the writing threads with the first request (else `start()` does)."""
        self._waiting: deque[Waiting] = deque()
        self._waiting_records = 0
        lock = threading.Lock()
        self._for_first = threading.Condition(lock)  # anything waits
        self._for_others = threading.Condition(lock)  # PARALLEL_RECORDS wait
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._autostart = autostart

    def store(self, records: Sequence[Metric], claim: Claim | None = None) -> Stored:
        """Store and publish the records with whatever else is waiting; their ids once
        committed. Raises the error of the transaction they were in."""
        return self.submit(records, claim).result()

    def submit(self, records: Sequence[Metric], claim: Claim | None = None) -> "Future[Stored]":
        """Queue records for the next group; the future holds their ids or the group's error.
        Cancelling the future while it waits takes the records out (cancel() says whether it
        was in time: once a writer has them, they are stored or fail with their group)."""
        if self._autostart:
            self.start()
        done: Future[Stored] = Future()
        with self._for_first:
            self._waiting.append((records, claim, done, time.monotonic()))
            self._waiting_records += len(records)
            self._for_first.notify()
            if self._waiting_records >= PARALLEL_RECORDS:
                self._for_others.notify()
        return done

    def start(self) -> None:
        """Start the writers: METRICS_DB_WRITERS threads, each with its own connection (one
        stores while another builds its rows or waits on the disk)."""
        if not self._threads:
            with self._start_lock:
                if not self._threads:
                    for n in range(settings.METRICS_DB_WRITERS):
                        thread = threading.Thread(
                            target=self._run, args=(n == 0,), name=f"wealthmetrics-writer-{n}", daemon=True
                        )
                        thread.start()
                        self._threads.append(thread)

    def _run(self, first: bool) -> None:
        while True:
            group: list[Waiting] = []
            try:
                self._gather(first, group)
                self._commit(group)
            except Exception:  # a writer that died would leave every request waiting: log, go on
                log.exception("group writer: committing a group failed")
                for _, _, done, _ in group:
                    if not done.done():
                        done.set_exception(DatabaseError("the group writer failed"))

    def _gather(self, first: bool, group: list[Waiting]) -> None:
        """The next group, into `group`: once anything waits (the first writer), or
        PARALLEL_RECORDS records or a request HELP_AFTER_S old do (the others), what waits and
        what arrives within MAX_WAIT_S, up to MAX_RECORDS."""
        ready = self._for_first if first else self._for_others
        size = 0
        with ready:
            while not group:
                while not (self._waiting if first else self._others_turn()):
                    ready.wait(None if first else HELP_AFTER_S)
                deadline = time.monotonic() + MAX_WAIT_S
                while True:
                    while self._waiting and size < MAX_RECORDS:
                        item = self._waiting.popleft()
                        self._waiting_records -= len(item[0])
                        # False when its request stopped waiting (cancel(): overloaded, answered
                        # 503) before a writer took it: then it is not stored, as its answer said.
                        if item[2].set_running_or_notify_cancel():
                            group.append(item)
                            size += len(item[0])
                    remaining = deadline - time.monotonic()
                    if size >= MAX_RECORDS or remaining <= 0:
                        break
                    self._for_first.wait(remaining)

    def _others_turn(self) -> bool:
        """Whether a writer beside the first takes what waits (call holding the lock)."""
        if self._waiting_records >= PARALLEL_RECORDS:
            return True
        return bool(self._waiting) and time.monotonic() - self._waiting[0][3] >= HELP_AFTER_S

    def _commit(self, group: list[Waiting]) -> None:
        try:
            outcomes = db.call(store_batches, [(batch, claim) for batch, claim, _, _ in group])
        except BaseException as exc:  # every request of the group hears of it; the writer goes on
            for _, _, done, _ in group:
                done.set_exception(exc)
            return
        counters.incr("group_commits")
        for (_, _, done, _), outcome in zip(group, outcomes, strict=True):
            done.set_result(outcome)  # committed: the answers need not wait for the broadcast
        stored = [
            (batch, ids)
            for (batch, _, _, _), ids in zip(group, outcomes, strict=True)
            if isinstance(ids, list)
        ]
        broadcast_metrics(
            [record for batch, _ in stored for record in batch], [i for _, ids in stored for i in ids]
        )


writer = GroupWriter()


def store_and_publish(records: Sequence[Metric], claim: Claim | None = None) -> Stored:
    """Store records and publish them; their ids once committed (or the earlier use of their
    idempotency key). Under a server, through the group writer; elsewhere in the caller's own
    transaction."""
    if features.serving:
        return writer.store(records, claim)
    outcome = store_batches([(records, claim)])[0]
    if isinstance(outcome, list):
        broadcast_metrics(records, outcome)
    return outcome

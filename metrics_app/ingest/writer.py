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

Used where a server runs the application (metrics_app.server.features.serving); elsewhere
(management commands, Django's test client) requests store directly, in the caller's
transaction.
"""

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Final

from django.conf import settings

from metrics_app import counters, db
from metrics_app.ingest.storage import store_metrics
from metrics_app.records import Metric
from metrics_app.server import features
from metrics_app.stream import broadcast_metrics

log = logging.getLogger(__name__)

MAX_RECORDS: Final = 5000
MAX_WAIT_S: Final = 0.002  # after the first request: long enough for the others arriving with it


class GroupWriter:
    def __init__(self, autostart: bool = True) -> None:
        """`autostart`: start the writing thread with the first request (else `start()` does)."""
        self._queue: queue.SimpleQueue[tuple[Sequence[Metric], Future[list[int]]]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._autostart = autostart

    def store(self, records: Sequence[Metric]) -> list[int]:
        """Store and publish the records with whatever else is waiting; their ids once
        committed. Raises the error of the transaction they were in."""
        return self.submit(records).result()

    def submit(self, records: Sequence[Metric]) -> "Future[list[int]]":
        """Queue records for the next group; the future holds their ids or the group's error.
        Cancelling the future while it waits takes the records out (cancel() says whether it
        was in time: once a writer has them, they are stored or fail with their group)."""
        if self._autostart:
            self.start()
        done: Future[list[int]] = Future()
        self._queue.put((records, done))
        return done

    def start(self) -> None:
        """Start the writers: METRICS_DB_WRITERS threads, each with its own connection, taking
        groups from the same queue (one stores while another builds its rows or waits on the
        disk; small batches arriving together still share a group)."""
        if not self._threads:
            with self._lock:
                if not self._threads:
                    for n in range(settings.METRICS_DB_WRITERS):
                        thread = threading.Thread(
                            target=self._run, name=f"wealthmetrics-writer-{n}", daemon=True
                        )
                        thread.start()
                        self._threads.append(thread)

    def _run(self) -> None:
        while True:
            group: list[tuple[Sequence[Metric], Future[list[int]]]] = []
            size = 0
            while size < MAX_RECORDS:
                try:
                    item = self._queue.get(timeout=MAX_WAIT_S) if group else self._queue.get()
                except queue.Empty:
                    break
                # False when its request stopped waiting (cancel(): overloaded, answered 503)
                # before a writer took it: then it is not stored, as its answer said.
                if item[1].set_running_or_notify_cancel():
                    group.append(item)
                    size += len(item[0])
            self._commit(group)

    def _commit(self, group: list[tuple[Sequence[Metric], Future[list[int]]]]) -> None:
        records = [record for batch, _ in group for record in batch]
        try:
            ids = db.call(store_metrics, records)
        except BaseException as exc:  # every request of the group hears of it; the writer goes on
            for _, done in group:
                done.set_exception(exc)
            return
        counters.incr("group_commits")
        broadcast_metrics(records, ids)
        at = 0
        for batch, done in group:
            done.set_result(ids[at : at + len(batch)])
            at += len(batch)


writer = GroupWriter()


def store_and_publish(records: Sequence[Metric]) -> list[int]:
    """Store records and publish them; their ids once committed. Under a server, through the
    group writer; elsewhere in the caller's own transaction."""
    if features.serving:
        return writer.store(records)
    ids = store_metrics(records)
    broadcast_metrics(records, ids)
    return ids

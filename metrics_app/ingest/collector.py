"""The in-process collector (docs/integration.md, "Inside a wealthmetrics process"): record
now, store a moment later.

Scrapers running inside a wealthmetrics process call `collector.record_*()`. That validates
the record at once (a bad call raises InvalidMetrics in the scraper, where the bug is) and
queues it. A background thread stores the queue every METRICS_FLUSH_INTERVAL_MS, or as soon
as METRICS_FLUSH_BATCH_SIZE records wait, then broadcasts what it stored.

When the database is away the records go back to the front of their queue and are retried
after the next interval. The queues are bounded (METRICS_COLLECTOR_MAX_QUEUE per record
type): past that the oldest records are dropped and counted in stats()["dropped"], so a long
outage costs bounded memory and never passes silently. What is queued is stored at normal
process exit (registered by MetricsAppConfig.ready()), which includes daphne's shutdown on
SIGTERM or Ctrl-C.

Recording never blocks on the database, so it is safe from async code; flush() does block
and touches the database, so async code awaits `collector.aflush()` instead.
"""

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from metrics_app import counters
from metrics_app.ingest.storage import store_metrics
from metrics_app.records import METRIC_TYPES, Metric, now_ms, validate_record
from metrics_app.stream import broadcast_metrics
from wealthmetrics_client.recorder import MetricRecorder

log = logging.getLogger(__name__)

Store = Callable[[Sequence[Metric]], list[int]]
Broadcast = Callable[[Sequence[Metric], Sequence[int]], None]

# One transaction stores at most this many records, so a large backlog after an outage
# goes in as several ordinary multi-row inserts rather than one huge one.
STORE_CHUNK = 1000


class MetricsCollector(MetricRecorder[Metric]):
    def __init__(
        self,
        *,
        batch_size: int | None = None,
        interval_ms: int | None = None,
        max_queue: int | None = None,
        store: Store = store_metrics,
        broadcast: Broadcast = broadcast_metrics,
    ) -> None:
        self._batch_size = batch_size
        self._interval_ms = interval_ms
        self._max_queue = max_queue
        self._store = store
        self._broadcast = broadcast
        self._queues: dict[str, deque[Metric]] = {kind: deque() for kind in METRIC_TYPES}
        self._counts = {"recorded": 0, "flushed": 0, "dropped": 0, "flush_failures": 0}
        self._last_error: str | None = None
        self._last_flush_ms: int | None = None
        self._retry_after = 0.0
        self._lock = threading.Lock()  # guards the queues and counts
        self._wakeup = threading.Condition(self._lock)
        self._flush_lock = threading.Lock()  # one flush at a time keeps records in order
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stopping = False

    # Settings are read when used, not at import, so tests and processes can change them.
    @property
    def batch_size(self) -> int:
        return self._batch_size or settings.METRICS_FLUSH_BATCH_SIZE

    @property
    def interval(self) -> float:
        return (self._interval_ms or settings.METRICS_FLUSH_INTERVAL_MS) / 1000

    @property
    def max_queue(self) -> int:
        return self._max_queue or settings.METRICS_COLLECTOR_MAX_QUEUE

    # --- recording -----------------------------------------------------------------------

    def record(self, metric: dict[str, Any]) -> Metric:
        """Validate and queue one record in the API's shape; the record_* methods come here."""
        record = validate_record(metric)  # raises InvalidMetrics naming the field
        self._ensure_thread()
        with self._lock:
            queue = self._queues[metric["type"]]
            if len(queue) >= self.max_queue:
                queue.popleft()
                self._dropped(1)
            queue.append(record)
            self._counts["recorded"] += 1
            if self._pending() >= self.batch_size:
                self._wakeup.notify()
        counters.incr("collector_queued")
        return record

    # --- flushing ------------------------------------------------------------------------

    def flush(self) -> int:
        """Store everything queued now; returns how many records were stored.

        On a database error the unstored records are re-queued and the error is logged and
        counted, not raised: a scraper should not fail because its metrics could not be kept.
        """
        with self._flush_lock:
            stored = 0
            while batch := self._take(STORE_CHUNK):
                try:
                    ids = self._store(batch)
                except DatabaseError as exc:
                    self._requeue(batch, exc)
                    break
                stored += len(batch)
                with self._lock:
                    self._counts["flushed"] += len(batch)
                    self._last_flush_ms = now_ms()
                    self._last_error = None
                counters.incr("collector_flushed", len(batch))
                self._broadcast(batch, ids)
            return stored

    async def aflush(self) -> int:
        return await sync_to_async(self.flush, thread_sensitive=False)()

    def _take(self, limit: int) -> list[Metric]:
        with self._lock:
            batch: list[Metric] = []
            for queue in self._queues.values():
                while queue and len(batch) < limit:
                    batch.append(queue.popleft())
            return batch

    def _requeue(self, batch: list[Metric], exc: Exception) -> None:
        log.warning("storing %d metrics failed, will retry: %s", len(batch), exc)
        with self._lock:
            self._counts["flush_failures"] += 1
            self._last_error = str(exc)
            self._retry_after = time.monotonic() + self.interval
            for record in reversed(batch):
                queue = self._queues[record.__struct_config__.tag]  # type: ignore[index]
                if len(queue) >= self.max_queue:
                    self._dropped(1)  # the oldest record: this one, at the front
                    continue
                queue.appendleft(record)
        counters.incr("collector_flush_failures")

    def _dropped(self, count: int) -> None:
        self._counts["dropped"] += count
        counters.incr("collector_dropped", count)
        log.warning("collector queue full: dropped %d oldest record(s)", count)

    def _pending(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    # --- the background thread -----------------------------------------------------------

    def _ensure_thread(self) -> None:
        if os.getpid() != self._pid:  # forked (celery prefork): the thread stayed behind
            self._pid = os.getpid()
            self._thread = None
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._stopping = False
                    self._thread = threading.Thread(target=self._run, name="metrics-collector", daemon=True)
                    self._thread.start()

    def _ready(self) -> bool:
        return self._stopping or (
            self._pending() >= self.batch_size and time.monotonic() >= self._retry_after
        )

    def _run(self) -> None:
        while True:
            with self._wakeup:
                self._wakeup.wait_for(self._ready, timeout=self.interval)
                if self._stopping:
                    return
            try:
                # The thread's own connection: drop it if the last flush broke it.
                close_old_connections()
                self.flush()
            except Exception:  # keep the thread alive whatever a broadcast did
                log.exception("collector flush failed")

    def close(self) -> None:
        """Stop the background thread and store what is queued (runs at process exit)."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify_all()
        if self._pending():
            self.flush()
        if self._pending():
            log.error("collector exiting with %d unstored records", self._pending())

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "queued": {kind: len(queue) for kind, queue in self._queues.items()},
                "pending": self._pending(),
                "recorded": self._counts["recorded"],
                "flushed": self._counts["flushed"],
                "dropped": self._counts["dropped"],
                "flushFailures": self._counts["flush_failures"],
                "lastError": self._last_error,
                "lastFlushAt": self._last_flush_ms,
                "maxQueue": self.max_queue,
                "batchSize": self.batch_size,
                "flushIntervalMs": int(self.interval * 1000),
            }


collector = MetricsCollector()

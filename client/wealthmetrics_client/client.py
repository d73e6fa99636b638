"""MetricsClient: records from scrapers in other processes or hosts, batched to the HTTP API.

Recording only appends to a bounded buffer under a lock, so it never blocks a scraper, from a
thread or from an event loop. A background thread sends the buffer to `POST /api/metrics/`
in batches, every `flush_interval` seconds or as soon as `batch_size` records wait.

Records are checked when recorded (wealthmetrics_client.records): what the server would
refuse raises InvalidRecord in the scraper, naming the field.

A batch the server did not answer with 2xx stays at the front of the buffer and is sent again
after an exponential backoff with full jitter (or the server's Retry-After): on 502, 503, 504,
429 and connection errors, for as long as the buffer holds it. A 500 says the server failed on
this batch: after `max_server_errors` tries in a row it is given up and counted in
`stats()["failed"]`, so one batch cannot stall a scraper's metrics. A 4xx other than 429 is
never retried: the records a 400 names as invalid are dropped and counted in
`stats()["rejected"]` and the rest of the batch goes again; other 4xx (a bad key) reject the
whole batch. When the buffer is full the oldest records are dropped and counted in
`stats()["dropped"]`. What is buffered is sent at interpreter exit.

Each batch carries an `Idempotency-Key`, kept while the same batch is retried: if the server
stored a batch but the answer was lost on the way back, the batch is sent again and the
server answers with its first answer without storing it twice. (Only when the buffer
overflows while a batch waits for its retry, so that records of it are dropped, does the
rest go under a new key.)
"""

from __future__ import annotations

import asyncio
import atexit
import http.client
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from typing import Any

from wealthmetrics_client.recorder import MetricRecorder
from wealthmetrics_client.records import checked

log = logging.getLogger("wealthmetrics_client")

MAX_BATCH = 1000  # the server takes at most this many records per request
# Answers that say "later": the server, or a proxy in front of it, is away or busy.
_TRANSIENT = {429, 502, 503, 504}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MetricsClient(MetricRecorder[None]):
    """A sink like the in-process collector: the same record methods (MetricRecorder)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_server_errors: int = 5,
        flush_at_exit: bool = True,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        self.endpoint = url.rstrip("/") + "/api/metrics/"
        self.api_key = api_key
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_server_errors = max_server_errors
        self._buffer: deque[str] = deque(maxlen=max_buffer)  # records, JSON-encoded
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._closing = False  # close() has begun: no new records
        self._closed = False  # the sending thread is to stop
        self._sending = 0  # records taken from the buffer and not yet answered
        self._counts = {"recorded": 0, "sent": 0, "dropped": 0, "rejected": 0, "failed": 0, "retries": 0}
        self._failures = 0  # consecutive failed sends, for the backoff
        self._server_errors = 0  # consecutive 500s for the batch at the front
        self._retry_at = 0.0
        self._retrying: tuple[str, int] | None = None  # the front batch's key and size, to resend as is
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="wealthmetrics-client", daemon=True)
        self._thread.start()
        if flush_at_exit:
            atexit.register(self.close)

    # --- recording ------------------------------------------------------------------------

    def record(self, metric: dict[str, Any]) -> None:
        """Buffer one record in the API's JSON shape; recordedAt defaults to now.

        It is checked and encoded here, so a record the server would refuse raises
        InvalidRecord, and what JSON cannot carry raises TypeError, in the scraper."""
        metric = checked({"recordedAt": _now_ms(), **metric})
        encoded = json.dumps(metric, separators=(",", ":"))
        with self._lock:
            if self._closing:
                raise RuntimeError("this MetricsClient is closed")
            if len(self._buffer) == self._buffer.maxlen:
                self._counts["dropped"] += 1  # the oldest: maybe part of a batch to resend
                self._retrying = None
            self._buffer.append(encoded)
            self._counts["recorded"] += 1
            full = len(self._buffer) >= self.batch_size
        if full:
            self._wake.set()

    # --- sending --------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything recorded until now; True once the server has answered for all of it
        (stored, or rejected as invalid), False on timeout (the records stay buffered and are
        retried). Records made meanwhile by other threads are not waited for."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._counts["recorded"]
            self._retry_at = 0.0  # the caller wants it now: skip the current backoff
            self._wake.set()
            # Records leave the buffer in order, so once this many have been dealt with, every
            # record made before the call has been.
            while self._dealt_with() < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(min(0.1, remaining) if remaining is not None else 0.1)
                self._wake.set()
            return True

    def _dealt_with(self) -> int:
        counts = self._counts
        return counts["sent"] + counts["rejected"] + counts["failed"] + counts["dropped"]

    async def aflush(self, timeout: float | None = None) -> bool:
        """flush() for asyncio code: waits in a worker thread, not on the event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new records, send what is buffered (waiting at most `timeout` seconds), stop."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self.flush(timeout)
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=1)
        with self._lock:
            lost = len(self._buffer)
            self._buffer.clear()
            self._counts["dropped"] += lost
        if lost:
            log.warning("wealthmetrics: %d records not delivered at close (%s)", lost, self._last_error)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self._counts,
                "buffered": len(self._buffer) + self._sending,
                "maxBuffer": self._buffer.maxlen,
                "lastError": self._last_error,
            }

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
            while self._send_one_batch():
                pass

    def _send_one_batch(self) -> bool:
        """Send the oldest batch; True if there is more to send right away."""
        with self._lock:
            if not self._buffer or self._retry_at > time.monotonic():
                return False
            key, size = self._retrying or (uuid.uuid4().hex, self.batch_size)
            batch = [self._buffer.popleft() for _ in range(min(size, len(self._buffer)))]
            self._sending = len(batch)
            self._retrying = None
        try:
            outcome, retry_after, invalid = self._post(batch, key)
        except Exception as exc:  # whatever went wrong, the batch is kept and the thread lives on
            self._last_error = f"{type(exc).__name__}: {exc}"
            outcome, retry_after, invalid = "retry", 0.0, set()
        with self._lock:
            self._sending = 0
            backing_off = False
            if outcome != "server_error":
                self._server_errors = 0
            if outcome == "sent":
                self._failures = 0
                self._counts["sent"] += len(batch)
            elif outcome == "rejected":
                # Only the records the server named are bad; the rest go again, first.
                self._failures = 0
                rejected = invalid if invalid and len(invalid) < len(batch) else set(range(len(batch)))
                self._counts["rejected"] += len(rejected)
                self._requeue([record for i, record in enumerate(batch) if i not in rejected])
            elif outcome == "server_error" and self._server_errors + 1 >= self.max_server_errors:
                self._failures = self._server_errors = 0
                self._counts["failed"] += len(batch)
                log.error("wealthmetrics: gave up on %d records after %d server errors (%s)",
                          len(batch), self.max_server_errors, self._last_error)  # fmt: skip
            else:
                backing_off = True
                if outcome == "server_error":
                    self._server_errors += 1
                if self._requeue(batch):
                    self._retrying = (key, len(batch))
                self._failures += 1
                self._counts["retries"] += 1
                backoff = random.uniform(0, min(self.backoff_max, self.backoff_base * 2**self._failures))
                self._retry_at = time.monotonic() + max(backoff, retry_after)
            self._idle.notify_all()
            return bool(self._buffer) and not backing_off

    def _requeue(self, batch: list[str]) -> bool:
        """Put records back at the front, in order; with the lock held. What no longer fits
        is the oldest, so it goes, counted. True if all of the batch is back."""
        room = (self._buffer.maxlen or 0) - len(self._buffer)
        whole = room >= len(batch)
        if not whole:
            self._counts["dropped"] += len(batch) - room
            batch = batch[len(batch) - room :]
        self._buffer.extendleft(reversed(batch))
        return whole

    def _post(self, batch: list[str], key: str) -> tuple[str, float, set[int]]:
        """("sent" | "rejected" | "server_error" | "retry", seconds the server asked us to wait,
        indices of the records a 400 named as invalid)."""
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json",
                   "Idempotency-Key": key}  # fmt: skip
        request = urllib.request.Request(
            self.endpoint,
            data=('{"metrics":[' + ",".join(batch) + "]}").encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
            return "sent", 0.0, set()
        except urllib.error.HTTPError as exc:
            body = exc.read(20_000).decode(errors="replace")
            self._last_error = f"HTTP {exc.code}: {body[:2000]}"
            if exc.code in _TRANSIENT:
                return "retry", _retry_after(exc.headers.get("Retry-After")), set()
            if exc.code >= 500:
                return "server_error", _retry_after(exc.headers.get("Retry-After")), set()
            invalid = _invalid_indices(body) if exc.code == 400 else set()
            log.error("wealthmetrics rejected records, not retried: HTTP %d %s", exc.code, body[:2000])
            return "rejected", 0.0, invalid
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeout, bad reply
            self._last_error = f"{type(exc).__name__}: {exc}"
            return "retry", 0.0, set()


def _retry_after(value: str | None) -> float:
    try:
        return min(300.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def _invalid_indices(body: str) -> set[int]:
    """The records a 400 named (`details[].index`); empty when it named none."""
    try:
        details = json.loads(body).get("details") or []
        return {int(d["index"]) for d in details if isinstance(d, dict) and d.get("index") is not None}
    except (ValueError, AttributeError, TypeError, KeyError):
        return set()

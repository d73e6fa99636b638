"""The live stream between processes: every stored batch is published once, and every process
subscribes once. Two backends behind one interface (`Bus`):

- `RedisBus` (with REDIS_URL): publishing is a single Lua script call that numbers the batch's
  records per source (INCRBY) and PUBLISHes them, atomically: subscribers therefore see each
  source's sequence numbers in order, and a missing number is a lost message, never a late one.
  It happens out of band, on a thread of its own, so an ingest answer never waits on Redis (a
  frozen Redis held each request for seconds): publish() only queues. The queue is bounded
  (PUBLISH_QUEUE_RECORDS); a batch that does not fit, or that Redis refused, is counted
  (broadcast_dropped, broadcast_failures) and its sequence numbers are skipped at the next
  publish, so subscribers see the gap and reload from the database.
- `LocalBus` (no REDIS_URL): the same numbering under a lock, delivered inside the process.

Both deliver the same message, `{"source": firstSeq, …}\n<payload>`, where the payload is
`batch_payload()`'s: read by `parse()`.

channels-redis stays the Channels layer; the stream does not go through it because its
pub/sub layer cannot number messages atomically, and its per-event-loop connections would
be re-created by every publish from a worker thread.
"""

import asyncio
import atexit
import logging
import os
import queue
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Final

import msgspec
import orjson
import redis
import redis.asyncio
from django.conf import settings
from msgspec import UNSET
from redis.backoff import NoBackoff
from redis.retry import Retry

from metrics_app import counters

log = logging.getLogger(__name__)

TOPIC: Final = "wealthmetrics:metrics"  # the Redis pub/sub channel
SEQ_KEY_PREFIX: Final = "wealthmetrics:seq:"
SEQ_TTL_S: Final = 24 * 3600

# KEYS[1]: the sequence key prefix. ARGV: topic, payload, base, the keys' lifetime (s), then
# (source, count, skip) triples. `skip` burns numbers for records that were stored but could
# not be published, so the loss shows as a gap. A source's counter starts at `base` (the time
# in µs) rather than 1: after Redis restarts empty, numbering resumes far beyond where it was,
# and the jump shows too. A source silent for SEQ_TTL_S leaves no key behind (a typo's names
# would otherwise stay for ever): its numbers start afresh from a later `base`, a jump its
# subscribers see as a gap. The header is built by hand because cjson prints such numbers
# with 14 digits. Publishes `{"source": firstSeq, …}\n<payload>`.
_PUBLISH_SCRIPT: Final = """
local parts = {}
for i = 5, #ARGV, 3 do
  local key = KEYS[1] .. ARGV[i]
  local count = tonumber(ARGV[i + 1])
  redis.call('SET', key, ARGV[3], 'NX')
  local last = redis.call('INCRBY', key, count + tonumber(ARGV[i + 2]))
  redis.call('EXPIRE', key, ARGV[4])
  if count > 0 then
    table.insert(parts, cjson.encode(ARGV[i]) .. ':' .. string.format('%d', last - count + 1))
  end
end
return redis.call('PUBLISH', ARGV[1], '{' .. table.concat(parts, ',') .. '}\\n' .. ARGV[2])
"""

PUBLISH_QUEUE_RECORDS: Final = 100_000
CLIENTS_KEY: Final = "wealthmetrics:clients"  # process → "sockets reported-at"
CLIENTS_FRESH_S: Final = 15
PROCESS: Final = f"{socket.gethostname()}:{os.getpid()}"
# Starts a message that is an event for every socket, not a batch of records (never a JSON header).
EVENT_MARK: Final = b"!"


class Bus(ABC):
    """Publish from any thread; subscribe from an event loop."""

    connected = False  # the subscription is up: messages published now will arrive

    @abstractmethod
    def publish(self, counts: dict[str, int], payload: bytes) -> None:
        """Publish a batch: `counts` records per channel, `payload` the records as JSON. Never
        waits on a remote server, never raises for one that is away."""

    @abstractmethod
    def publish_event(self, message: bytes) -> None:
        """Publish a message for every socket of every process, whatever it subscribed to (an
        alert), unnumbered. Delivered as EVENT_MARK + message."""

    @abstractmethod
    def last_numbers(self) -> dict[str, int]:
        """Per source, the last sequence number handed out (blocking: call it off the event
        loop). A hub that starts takes these as where each source's next batch starts."""

    @abstractmethod
    def report_clients(self, count: int) -> None:
        """Say how many sockets this process holds (blocking: call it off the event loop)."""

    @abstractmethod
    def clients(self) -> int:
        """Sockets held by every live process: the sum of their last reports (blocking)."""

    @abstractmethod
    def subscribe(self) -> AsyncGenerator[bytes, None]:
        """Every message published from now on, as long as the iteration goes on; it keeps
        going through outages (reconnecting), so a gap in sequence numbers shows them."""


class LocalBus(Bus):
    """The in-process stream: numbering under a lock, delivery to subscribers in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        # Numbers start at the time in µs, as RedisBus's do: after a restart they resume far
        # beyond where they were, so a returning client sees the jump however few records came.
        self._base = time.time_ns() // 1000
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[bytes]]] = []

    def publish(self, counts: dict[str, int], payload: bytes) -> None:
        with self._lock:
            header = {}
            for source, count in counts.items():
                header[source] = self._seq.get(source, self._base) + 1
                self._seq[source] = header[source] + count - 1
            message = orjson.dumps(header) + b"\n" + payload
            for loop, inbox in self._subscribers:
                loop.call_soon_threadsafe(inbox.put_nowait, message)
        counters.incr("records_broadcast", sum(counts.values()))

    def last_numbers(self) -> dict[str, int]:
        with self._lock:
            return dict(self._seq)

    def publish_event(self, message: bytes) -> None:
        with self._lock:
            for loop, inbox in self._subscribers:
                loop.call_soon_threadsafe(inbox.put_nowait, EVENT_MARK + message)

    def report_clients(self, count: int) -> None:
        self._clients = count

    def clients(self) -> int:
        return getattr(self, "_clients", 0)

    async def subscribe(self) -> AsyncGenerator[bytes, None]:
        inbox: asyncio.Queue[bytes] = asyncio.Queue()
        subscriber = (asyncio.get_running_loop(), inbox)
        with self._lock:
            self._subscribers.append(subscriber)
        self.connected = True
        try:
            while True:
                yield await inbox.get()
        finally:
            with self._lock:
                self._subscribers.remove(subscriber)
            self.connected = False


class RedisBus(Bus):
    def __init__(self, url: str) -> None:
        self.url = url
        # One connection is enough: only the publishing thread talks to Redis. One immediate
        # retry replaces a connection Redis dropped (a restart); beyond that, fail fast.
        self._client = redis.Redis.from_url(
            url, max_connections=4, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 1)
        )
        self._script = self._client.register_script(_PUBLISH_SCRIPT)
        # (counts, payload) for a batch, (None, message) for an event, None to stop
        self._queue: queue.SimpleQueue[tuple[dict[str, int] | None, bytes] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queued_records = 0  # queued or being published
        self._unpublished: Counter[str] = Counter()  # per source, since Redis was last reached
        self._thread = threading.Thread(target=self._run, name="wealthmetrics-publish", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def publish(self, counts: dict[str, int], payload: bytes) -> None:
        """Queue a batch for publishing; never waits on Redis."""
        size = sum(counts.values())
        with self._lock:
            if self._queued_records + size > PUBLISH_QUEUE_RECORDS:
                self._unpublished.update(counts)
                counters.incr("broadcast_dropped", size)
                return
            self._queued_records += size
        self._queue.put((counts, payload))

    def publish_event(self, message: bytes) -> None:
        self._queue.put((None, message))  # in order with the batches, on the publishing thread

    def last_numbers(self) -> dict[str, int]:
        keys = list(self._client.scan_iter(match=SEQ_KEY_PREFIX + "*", count=1000))
        numbers: dict[str, int] = {}
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            values: list[bytes | None] = self._client.mget(chunk)  # type: ignore[assignment]
            for key, value in zip(chunk, values, strict=True):
                if value is not None:
                    numbers[key.decode()[len(SEQ_KEY_PREFIX) :]] = int(value)
        return numbers

    def report_clients(self, count: int) -> None:
        self._client.hset(CLIENTS_KEY, PROCESS, f"{count} {time.time():.0f}")

    def clients(self) -> int:
        """The reports of the last CLIENTS_FRESH_S seconds; older ones are of processes gone."""
        total, now = 0, time.time()
        reports: dict[bytes, bytes] = self._client.hgetall(CLIENTS_KEY)  # type: ignore[assignment]
        for process, report in reports.items():
            count, at = report.split()
            if now - float(at) <= CLIENTS_FRESH_S:
                total += int(count)
            else:
                self._client.hdel(CLIENTS_KEY, process.decode())
        return total

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued has been published (or has failed)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._queued_records == 0, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Publish what is queued (waiting at most `timeout`), then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            counts, payload = item
            if counts is None:
                try:
                    self._client.publish(TOPIC, EVENT_MARK + payload)
                except Exception as exc:
                    counters.problem(
                        "event_broadcast_failures", log, "publishing an event to Redis failed: %s", exc
                    )
                continue
            size = sum(counts.values())
            try:
                self._publish_now(counts, payload)
            except Exception as exc:  # Redis away or frozen: the records are stored, so carry on
                counters.problem("broadcast_failures", log, "publishing to Redis failed: %s", exc)
            else:
                counters.incr("records_broadcast", size)
            with self._idle:
                self._queued_records -= size
                self._idle.notify_all()

    def _publish_now(self, counts: dict[str, int], payload: bytes) -> None:
        with self._lock:
            skips = dict(self._unpublished)
        args: list[Any] = [TOPIC, payload, time.time_ns() // 1000, SEQ_TTL_S]
        for source in counts.keys() | skips.keys():
            args += [source, counts.get(source, 0), skips.get(source, 0)]
        try:
            self._script(keys=[SEQ_KEY_PREFIX], args=args)
        except Exception:
            with self._lock:
                self._unpublished.update(counts)
            raise
        if skips:
            with self._lock:
                self._unpublished.subtract(skips)
                self._unpublished = +self._unpublished

    async def subscribe(self) -> AsyncGenerator[bytes, None]:
        """One subscription; reconnects with backoff and never gives up. Errors are logged and
        counted (bus_disconnects for Redis going away, bus_subscriber_errors for anything else)."""
        backoff = 0.1
        while True:
            client = redis.asyncio.Redis.from_url(self.url, socket_connect_timeout=2, health_check_interval=5)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(TOPIC)
                    self.connected, backoff = True, 0.1
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            yield message["data"]
            except (redis.RedisError, OSError) as exc:
                if self.connected:
                    log.warning("the live stream lost Redis (%s); reconnecting", exc)
                    counters.incr("bus_disconnects")
            except Exception:
                log.exception("the live stream's Redis subscriber failed; reconnecting")
                counters.incr("bus_subscriber_errors")
            finally:
                self.connected = False
                await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


_bus: Bus | None = None
_bus_lock = threading.Lock()


def get_bus() -> Bus:
    global _bus
    if _bus is None:
        with _bus_lock:
            if _bus is None:
                _bus = RedisBus(settings.REDIS_URL) if settings.REDIS_URL else LocalBus()
    return _bus


_records_encoder = msgspec.json.Encoder()


def batch_payload(records: Sequence[Any], ids: Sequence[int]) -> bytes:
    """Stored records as published: their wire JSON (records.to_wire's shape, encoded straight
    from the structs in C, a third of the cost of a dict per record), their ids, the positions
    of the pages with field counts, then those pages' field counts, a line each.

    The hubs never look inside field counts, only pass them on to browsers, so they are kept
    out of the records' JSON: a hub parses a batch of pages with 10 fields in half the time,
    and sends them on without encoding them again (`parse()`)."""
    plain, where, counts = list(records), [], []
    for at, record in enumerate(records):
        if getattr(record, "fields", UNSET) is not UNSET:
            plain[at] = msgspec.structs.replace(record, fields=UNSET)
            where.append(at)
            counts.append(_records_encoder.encode(record.fields))
    return b"\n".join([_records_encoder.encode(plain), orjson.dumps(list(ids)), orjson.dumps(where), *counts])


def parse(message: bytes) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Split a published message into its first-sequence header and its records, each with
    its id and its field counts (as an orjson.Fragment: already JSON, sent on as it is)."""
    header, records, ids, where, *counts = message.split(b"\n")
    batch: list[dict[str, Any]] = orjson.loads(records)
    for record, row_id in zip(batch, orjson.loads(ids), strict=True):
        record["id"] = row_id
    for at, fields in zip(orjson.loads(where), counts, strict=True):
        batch[at]["fields"] = orjson.Fragment(fields)
    return orjson.loads(header), batch

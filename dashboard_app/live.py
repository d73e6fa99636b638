"""The live hub: one per process, between the stream of stored records and local sockets.

It receives each published batch once (one Redis subscription per process, or the in-process
bus), keeps per-source batches, and every METRICS_BATCH_INTERVAL_MS, or as soon as
METRICS_MAX_BATCH_SIZE records wait, serialises a source's batch once and writes it to every
local socket subscribed to that source or to '*'. Heartbeats and `metrics:update` are
serialised once per tick the same way. Consumers only register, subscribe and answer.

Sequence numbers come from the publisher (metrics_app.bus). A batch always covers a
contiguous run of its source's numbers, so a client that sees `seq` jump (or go back, after
Redis restarted) knows it missed records and asks for history again.
"""

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import orjson
import redis.asyncio
from django.conf import settings
from django.db import DatabaseError

from dashboard_app.sinks import DaphneSink, Frame
from metrics_app import counters, db, queries
from metrics_app.bus import CHANNEL, LocalBus, get_bus, parse
from metrics_app.livestats import LiveStats
from metrics_app.schema import now_ms

log = logging.getLogger(__name__)

WILDCARD = "*"
HISTORY_SIZE = 100
# Concurrent subscribers of a source share one load, and its result serves later ones for a
# second: a reconnect storm costs one query per source per second. At most HISTORY_CACHE_SIZE
# sources are kept, least recently used first out.
HISTORY_CACHE_SECONDS = 1.0
HISTORY_CACHE_SIZE = 256
UPDATE_EVERY_SECONDS = 1.0


class Client(Protocol):
    """What the hub needs of a connection (the consumer)."""

    client_id: str
    subscriptions: set[str]

    def push(self, frame: Frame) -> bool: ...

    def drop(self) -> None: ...

    def close_going_away(self) -> None: ...


def channel_of_wire(record: dict[str, Any]) -> str:
    return record.get("scraperSource") or record["schedulerName"]


class Hub:
    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.subscribers: dict[str, set[Client]] = defaultdict(set)
        self.stats = LiveStats()
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._pending_seq: dict[str, int] = {}  # first sequence number of the pending batch
        self._next_seq: dict[str, int] = {}  # the number the source's next record should have
        self._history: OrderedDict[str, tuple[float, Frame]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Frame]] = {}
        # Channels with stored records (None until loaded): a name not among them has no
        # history, and costs no query however many made-up names are subscribed to.
        self.known: set[str] | None = None
        self._update: Frame | None = None
        self._changed = False
        self._started: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.bus_connected = False
        self.started_at = time.monotonic()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start once per process; every caller waits until the stats are loaded."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        try:
            loaded = await db.run(queries.load_live_stats, self.stats)
            self.known = await db.run(queries.known_channels)
            log.info("live hub started with the last hour's %d records", loaded)
        except DatabaseError as exc:  # totals fill from the live stream instead
            log.warning("live hub started without the last hour: %s", exc)
        loop = asyncio.get_running_loop()
        bus = get_bus()
        if isinstance(bus, LocalBus):

            def from_thread(header: dict[str, int], payload: bytes) -> None:
                loop.call_soon_threadsafe(self.receive, header, orjson.loads(payload))

            bus.listeners.append(from_thread)
            self.bus_connected = True
        else:
            self._tasks.append(asyncio.ensure_future(self._listen_redis(settings.REDIS_URL)))
        self._tasks.append(
            asyncio.ensure_future(self._every(settings.METRICS_BATCH_INTERVAL_MS / 1000, self.flush))
        )
        self._tasks.append(asyncio.ensure_future(self._every(UPDATE_EVERY_SECONDS, self.send_update)))
        self._tasks.append(
            asyncio.ensure_future(self._every(settings.METRICS_HEARTBEAT_INTERVAL_MS / 1000, self.heartbeat))
        )
        _on_twisted_shutdown(self.shutdown)

    async def _every(self, seconds: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                action()
            except Exception:
                log.exception("live hub: %s failed", getattr(action, "__name__", action))

    async def _listen_redis(self, url: str) -> None:
        """One subscription per process; reconnects with backoff and never gives up. A message
        it cannot handle is logged and counted, and the next one is read."""
        backoff = 0.1
        while True:
            client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=5)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.bus_connected, backoff = True, 0.1
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._receive_message(message["data"])
            except (redis.RedisError, OSError) as exc:
                if self.bus_connected:
                    log.warning("live hub lost Redis (%s); reconnecting", exc)
                    counters.incr("bus_disconnects")
            except Exception:
                log.exception("live hub's Redis subscriber failed; reconnecting")
                counters.incr("bus_subscriber_errors")
            finally:
                self.bus_connected = False
                await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def shutdown(self) -> None:
        """Send what is pending, then close every socket cleanly (server going away)."""
        self.flush()
        for client in list(self.clients):
            client.close_going_away()

    # --- the stream ----------------------------------------------------------------------

    def _receive_message(self, data: bytes) -> None:
        try:
            self.receive(*parse(data))
        except Exception:
            log.exception("live hub could not handle a published message (%d bytes)", len(data))
            counters.incr("bus_bad_messages")

    def receive(self, header: dict[str, int], records: list[dict[str, Any]]) -> None:
        seqs = dict(header)
        wildcard = self.subscribers.get(WILDCARD)
        for record in records:
            channel = channel_of_wire(record)
            seq = seqs[channel]
            seqs[channel] = seq + 1
            self.stats.add(record, channel)
            if self.known is not None:
                self.known.add(channel)
            if not (wildcard or self.subscribers.get(channel)):
                self._next_seq[channel] = seq + 1
                continue
            pending = self._pending.get(channel)
            if pending and seq != self._next_seq.get(channel):
                self._flush_channel(channel)  # keep every batch a contiguous run of numbers
                pending = None
            if not pending:
                pending = self._pending[channel] = []
                self._pending_seq[channel] = seq
            pending.append(record)
            self._next_seq[channel] = seq + 1
            if len(pending) >= settings.METRICS_MAX_BATCH_SIZE:
                self._flush_channel(channel)
        self._changed = True
        self._update = None

    def flush(self) -> None:
        for channel in list(self._pending):
            self._flush_channel(channel)

    def _flush_channel(self, channel: str) -> None:
        records = self._pending.pop(channel, None)
        if not records:
            return
        records.sort(key=lambda r: r["recordedAt"])  # stable: arrival order among equal times
        frame = _frame(
            {
                "type": "metrics_batch",
                "scraperSource": channel,
                "count": len(records),
                "timestamp": now_ms(),
                "seq": self._pending_seq.pop(channel),
                "metrics": records,
            }
        )
        recipients = self.subscribers.get(channel, set()) | self.subscribers.get(WILDCARD, set())
        self._send(recipients, frame)
        counters.incr("batches_broadcast")
        counters.incr("records_delivered", len(records) * len(recipients))

    def _send(self, clients: Iterable[Client], frame: Frame) -> None:
        for client in list(clients):
            if not client.push(frame):
                counters.incr("clients_dropped_slow")
                log.warning("dropping slow client %s", client.client_id)
                client.drop()
                self.remove(client)

    def heartbeat(self) -> None:
        self._send(self.clients, _frame({"type": "heartbeat", "timestamp": now_ms()}))

    def send_update(self) -> None:
        """At most once a second, and only while records flow."""
        if not self._changed:
            return
        self._changed = False
        if self.clients:
            self._send(self.clients, self.update_frame())

    def update_frame(self) -> Frame:
        if self._update is None:
            self._update = _frame(
                {"type": "metrics:update", "data": self.stats.snapshot(), "timestamp": _iso_now()}
            )
        return self._update

    # --- clients -------------------------------------------------------------------------

    def add(self, client: Client) -> None:
        self.clients.add(client)

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        for source in client.subscriptions:
            subscribers = self.subscribers.get(source)
            if subscribers is not None:
                subscribers.discard(client)
                if not subscribers:
                    del self.subscribers[source]
        client.subscriptions = set()

    def subscribe(self, client: Client, source: str) -> None:
        client.subscriptions.add(source)
        self.subscribers[source].add(client)

    def unsubscribe(self, client: Client, source: str) -> None:
        client.subscriptions.discard(source)
        subscribers = self.subscribers.get(source)
        if subscribers is not None:
            subscribers.discard(client)
            if not subscribers:
                del self.subscribers[source]

    async def history(self, source: str) -> Frame:
        """The ≤100 newest stored records of a source ('*': of all), oldest first. Raises
        DatabaseError when they cannot be read."""
        if source != WILDCARD and self.known is not None and source not in self.known:
            return _frame({"type": "history", "scraperSource": source, "metrics": []})
        cached = self._history.get(source)
        if cached is not None and time.monotonic() - cached[0] < HISTORY_CACHE_SECONDS:
            self._history.move_to_end(source)
            return cached[1]
        loading = self._loading.get(source)
        if loading is None:
            loading = self._loading[source] = asyncio.ensure_future(self._load_history(source))
            loading.add_done_callback(lambda done: self._loaded(source, done))
        # shielded: one subscriber going away must not cancel the load the others wait for
        return await asyncio.shield(loading)

    def _loaded(self, source: str, done: "asyncio.Future[Frame]") -> None:
        self._loading.pop(source, None)
        if not done.cancelled():
            done.exception()  # retrieved here, so a failure no one waited for is not logged as lost

    async def _load_history(self, source: str) -> Frame:
        counters.incr("history_loads")
        channel = None if source == WILDCARD else source
        metrics = await db.run(queries.recent_metrics, channel, HISTORY_SIZE)
        frame = _frame({"type": "history", "scraperSource": source, "metrics": metrics})
        self._history[source] = (time.monotonic(), frame)
        self._history.move_to_end(source)
        while len(self._history) > HISTORY_CACHE_SIZE:
            self._history.popitem(last=False)
        return frame

    def health(self) -> dict[str, Any]:
        return {
            "connected": self._started is not None and self._started.done() and self.bus_connected,
            "clients": len(self.clients),
            "subscriptions": {source: len(clients) for source, clients in sorted(self.subscribers.items())},
            "uptime": round(time.monotonic() - self.started_at, 3),
            "fastPathClients": sum(isinstance(getattr(c, "sink", None), DaphneSink) for c in self.clients),
        }


def _frame(message: dict[str, Any]) -> Frame:
    return Frame(orjson.dumps(message))


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


def _on_twisted_shutdown(action: Callable[[], None]) -> None:
    """Under daphne, flush and close sockets before the reactor stops, and give the writes
    half a second to leave."""
    try:
        from twisted.internet import reactor
        from twisted.internet.task import deferLater
    except ImportError:
        return
    if not reactor.running:
        return

    def before_shutdown() -> Any:
        try:
            action()
        except Exception:  # Twisted would swallow it silently
            log.exception("live hub shutdown failed")
        return deferLater(reactor, 0.5, lambda: None)

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[arg-type]


_hub: Hub | None = None


def get_hub() -> Hub:
    global _hub
    if _hub is None:
        _hub = Hub()
    return _hub

"""The live hub: one per process, between the stream of stored records and local sockets.

It receives each published batch once (one subscription to the bus per process), keeps
per-source batches, and every METRICS_BATCH_INTERVAL_MS, or as soon as
METRICS_MAX_BATCH_SIZE records wait, serialises a source's batch once and writes it to every
local socket subscribed to that source or to '*'. Heartbeats and `metrics:update` are
serialised once per tick the same way. Consumers only register, subscribe and answer.

Sequence numbers come from the publisher (metrics_app.stream.bus). A batch always covers a
contiguous run of its source's numbers, so a client that sees `seq` jump (or go back, after
Redis restarted) knows it missed records and asks for history again.
"""

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import orjson
from django.conf import settings
from django.db import DatabaseError

from metrics_app import counters, db
from metrics_app.records import WILDCARD, channel_of_wire, now_ms
from metrics_app.stream import totals
from metrics_app.stream.bus import EVENT_MARK, get_bus, parse
from metrics_app.stream.catchup import CatchUp
from metrics_app.stream.sockets import Frame, SocketWriter
from metrics_app.stream.totals import LiveStats

log = logging.getLogger(__name__)

UPDATE_EVERY_SECONDS = 1.0
CLIENTS_REPORT_SECONDS = 5.0


class Client(Protocol):
    """What the hub needs of a connection (the consumer): who it is, what it subscribed to,
    and how to write to it."""

    client_id: str
    subscriptions: set[str]

    @property
    def writer(self) -> SocketWriter: ...

    @property
    def sources(self) -> frozenset[str] | None:
        """The sources it may see (a key limited to some), or None: every one."""

    @property
    def credential(self) -> str:
        """Whose it is (a person or a key): each credential has a share of the sockets."""


class Hub:
    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self._joining: set[Client] = set()  # admitted, not yet added (opening)
        self._per_credential: Counter[str] = Counter()  # sockets admitted per credential
        self.subscribers: dict[str, set[Client]] = defaultdict(set)
        self.stats = LiveStats()
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._pending_seq: dict[str, int] = {}  # first sequence number of the pending batch
        self._next_seq: dict[str, int] = {}  # the number the source's next record should have
        self.catch_up = CatchUp()  # history, resyncs and the newest ids (metrics_app.stream.catchup)
        self._updates: dict[frozenset[str] | None, Frame] = {}  # per scope of the clients, this second's
        self._changed = False
        # While the totals are read again after a gap: the records received meanwhile
        self._repairing: list[tuple[dict[str, Any], str]] | None = None
        self._repair: asyncio.Future[None] | None = None  # held: a task no one holds may be collected
        self._started: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = time.monotonic()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start once per process; every caller waits until the stats are loaded."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        try:
            loaded = await db.run(totals.load_window, self.stats)
            await self.catch_up.load_known()
            log.info("live hub started with the live window's %d records", loaded)
        except DatabaseError as exc:  # totals fill from the live stream instead
            log.warning("live hub started without the live window: %s", exc)
        try:
            self.adopt_numbers(await asyncio.to_thread(get_bus().last_numbers))
        except Exception as exc:  # Redis away: sources are learnt from their batches instead
            log.warning("live hub started without the sources' sequence numbers: %s", exc)
        self._tasks.append(asyncio.ensure_future(self._listen()))
        self._tasks.append(
            asyncio.ensure_future(self._every(settings.METRICS_BATCH_INTERVAL_MS / 1000, self.flush))
        )
        self._tasks.append(asyncio.ensure_future(self._every(UPDATE_EVERY_SECONDS, self.send_update)))
        self._tasks.append(
            asyncio.ensure_future(self._every(settings.METRICS_HEARTBEAT_INTERVAL_MS / 1000, self.heartbeat))
        )
        self._tasks.append(asyncio.ensure_future(self._report_clients()))

    async def _every(self, seconds: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                action()
            except Exception:
                log.exception("live hub: %s failed", getattr(action, "__name__", action))

    async def _report_clients(self) -> None:
        """Every few seconds, this process's socket count where every process can sum them
        (GET /metrics gives the same total whichever process answers)."""
        while True:
            try:
                await asyncio.to_thread(get_bus().report_clients, len(self.clients))
            except Exception as exc:  # Redis away: the next report will do
                log.debug("could not report the socket count: %s", exc)
            await asyncio.sleep(CLIENTS_REPORT_SECONDS)

    async def _listen(self) -> None:
        """The process's one subscription. A message it cannot handle is logged and counted,
        and the next one is read."""
        async for message in get_bus().subscribe():
            try:
                if message.startswith(EVENT_MARK):
                    self.send_event(message[len(EVENT_MARK) :])
                    continue
                self.receive(*parse(message))
            except Exception:
                log.exception("live hub could not handle a published message (%d bytes)", len(message))
                counters.incr("bus_bad_messages")

    def shutdown(self) -> None:
        """Send what is pending, then close every socket cleanly (server going away)."""
        self.flush()
        for client in list(self.clients):
            client.writer.close(1001)

    # --- the stream ----------------------------------------------------------------------

    def receive(self, header: dict[str, int], records: list[dict[str, Any]]) -> None:
        seqs = dict(header)
        wildcard = self.subscribers.get(WILDCARD)
        for record in records:
            channel = channel_of_wire(record)
            seq = seqs[channel]
            seqs[channel] = seq + 1
            if seq > self._next_seq.get(channel, seq):
                self._repair_totals()  # records this process never heard of (Redis was away)
            self.stats.add(record, channel)
            if self._repairing is not None:
                self._repairing.append((record, channel))
            self.catch_up.saw(channel)
            if not (wildcard or self.subscribers.get(channel)):
                # Nobody to send it to. A batch still pending (its subscribers just left) is
                # dropped: joined by later records it would skip the numbers in between.
                self._pending.pop(channel, None)
                self._pending_seq.pop(channel, None)
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
        self._updates.clear()

    # --- the totals after a gap ----------------------------------------------------------

    def _repair_totals(self) -> None:
        """Records published while this process was not listening are missing from its
        totals (`metrics:update`, the live page's tiles): read the window again from the
        database, once for a burst of gaps."""
        if self._repairing is None and self._started is not None:  # not started: no window read yet
            self._repairing = []
            counters.incr("live_totals_repairs")
            self._repair = asyncio.ensure_future(self._reload_totals())

    async def _reload_totals(self) -> None:
        try:
            stats = LiveStats()
            marks = await db.run(totals.load_window_marked, stats)
            for record, channel in self._repairing or []:
                if not totals.covered_by(record, marks):  # stored after the snapshot
                    stats.add(record, channel)
            self.stats = stats
            self._changed = True
            self._updates.clear()
        except DatabaseError as exc:  # the totals stay as they are until the next gap
            log.warning("live hub could not read its totals again after a gap: %s", exc)
        finally:
            self._repairing = None

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
        self.send(recipients, frame)
        counters.incr("batches_broadcast")
        counters.incr("records_delivered", len(records) * len(recipients))

    def send(self, clients: Iterable[Client], frame: Frame) -> None:
        """Write to each client; one that stopped reading is dropped (docs/websocket.md, "Limits")."""
        for client in list(clients):
            if not client.writer.send(frame):
                counters.problem("clients_dropped_slow", log, "dropping a client that stopped reading (%s)",
                                 client.client_id)  # fmt: skip
                client.writer.abort()
                self.remove(client)

    def heartbeat(self) -> None:
        self.send(self.clients, _frame({"type": "heartbeat", "timestamp": now_ms()}))

    def send_update(self) -> None:
        """At most once a second, and only while records flow; each client sees the sources
        it may (one frame per distinct scope)."""
        if not self._changed:
            return
        self._changed = False
        for sources, clients in _by_scope(self.clients).items():
            self.send(clients, self.update_frame(sources))

    def update_frame(self, sources: frozenset[str] | None = None) -> Frame:
        """The `metrics:update` message of every source, or of `sources` only."""
        self._forget(self.stats.prune())
        frame = self._updates.get(sources)
        if frame is None:
            data = self.stats.snapshot(sources)
            frame = self._updates[sources] = _frame(
                {"type": "metrics:update", "data": data, "timestamp": _iso_now()}
            )
        return frame

    def _forget(self, channels: set[str]) -> None:
        """Channels silent for the live window leave the hub's numbering (and come back with their
        next batch): a typo's names do not stay for ever."""
        for channel in channels:
            if channel not in self._pending:
                self._next_seq.pop(channel, None)

    def send_event(self, data: bytes) -> None:
        """An event for every page (an alert changed state), to each client that may see what
        it names: a client limited to sources sees an alert only if it covers each name in it
        (the rule of metrics_app.alerts.models.visible_to, for the alert's JSON)."""
        frame = Frame(data)
        scopes = _by_scope(self.clients)
        everyone = scopes.pop(None, [])
        self.send(everyone, frame)
        if scopes:
            names = _names_in_event(data)
            for sources, clients in scopes.items():
                if names and sources is not None and names <= sources:
                    self.send(clients, frame)

    # --- clients -------------------------------------------------------------------------

    def admit(self, client: Client) -> str | None:
        """Hold a place for a socket about to open, before anything is awaited (a reconnect
        storm arrives while the process starts): None, or why not: "full" past
        METRICS_MAX_CLIENTS, "share" past its credential's METRICS_MAX_CLIENTS_PER_CREDENTIAL,
        so that one key or person cannot lock the others out."""
        if (refused := self.room(client.credential)) is not None:
            return refused
        self._joining.add(client)
        self._per_credential[client.credential] += 1
        return None

    def room(self, credential: str) -> str | None:
        """None if a socket of this credential would be admitted now, else why not (admit)."""
        if len(self.clients) + len(self._joining) >= settings.METRICS_MAX_CLIENTS:
            return "full"
        if self._per_credential.get(credential, 0) >= settings.METRICS_MAX_CLIENTS_PER_CREDENTIAL:
            return "share"
        return None

    def add(self, client: Client) -> None:
        self._joining.discard(client)
        self.clients.add(client)

    def remove(self, client: Client) -> None:
        if client in self.clients or client in self._joining:
            self._per_credential[client.credential] -= 1
            if not self._per_credential[client.credential]:
                del self._per_credential[client.credential]
        self.clients.discard(client)
        self._joining.discard(client)
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

    def adopt_numbers(self, last: dict[str, int]) -> None:
        """Where each source's numbers stand, for a hub that has just started: a client that
        comes to it from a process that was killed with a batch pending sees what it missed
        when it subscribes, not only at the source's next batch."""
        for source, number in last.items():
            self._next_seq.setdefault(source, number + 1)

    def next_seqs(self, source: str) -> dict[str, int]:
        """Where a new subscriber of `source` ('*': of every source) starts: per source this
        hub has seen, the `seq` of the next batch it will send. A client compares it with what
        it expected: a difference is records it missed (docs/websocket.md, "Gaps and resync")."""
        channels = self._next_seq if source == WILDCARD else [source] if source in self._next_seq else []
        return {channel: self._pending_seq.get(channel, self._next_seq[channel]) for channel in channels}

    def unsubscribe(self, client: Client, source: str) -> None:
        client.subscriptions.discard(source)
        subscribers = self.subscribers.get(source)
        if subscribers is not None:
            subscribers.discard(client)
            if not subscribers:
                del self.subscribers[source]

    def health(self) -> dict[str, Any]:
        return {
            "connected": self._started is not None and self._started.done() and get_bus().connected,
            "clients": len(self.clients),
            "subscriptions": {source: len(clients) for source, clients in sorted(self.subscribers.items())},
            "uptime": round(time.monotonic() - self.started_at, 3),
            "fastPathClients": sum(client.writer.fast for client in self.clients),
        }


def _by_scope(clients: Iterable[Client]) -> dict[frozenset[str] | None, list[Client]]:
    grouped: dict[frozenset[str] | None, list[Client]] = defaultdict(list)
    for client in clients:
        grouped[client.sources].append(client)
    return grouped


def _names_in_event(data: bytes) -> set[str]:
    """The sources and schedulers an event names (an alert's); none for an incident of many."""
    alert = orjson.loads(data).get("alert") or {}
    return {name for name in (alert.get("scraperSource"), alert.get("schedulerName")) if name}


def _frame(message: dict[str, Any]) -> Frame:
    return Frame(orjson.dumps(message))


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


_hub: Hub | None = None


def get_hub() -> Hub:
    global _hub
    if _hub is None:
        _hub = Hub()
    return _hub

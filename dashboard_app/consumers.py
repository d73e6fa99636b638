"""/ws/metrics/ (docs/websocket.md): register with the hub, answer client messages.

The consumer holds a connection's small state (id, subscriptions, how to write to it) and
nothing else: batches, heartbeats and updates are fanned out by the process's hub
(metrics_app.stream.hub), which writes to the socket's `writer`. It has no channel-layer
channel of its own, which is what lets one process hold thousands of sockets. Who may connect
is decided before it exists (the door: metrics_app.admission.door), and its rights are re-read
while it is open (dashboard_app.security).
"""

import contextlib
import logging
import secrets
import time
from typing import Any, Final

import orjson
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from dashboard_app.protocol import ClientError, Ping, Since, Subscribe, parse_command
from dashboard_app.security import credentials
from metrics_app import counters
from metrics_app.admission import refusals
from metrics_app.admission.door import NOBODY, Caller
from metrics_app.admission.keys import KeyInfo
from metrics_app.records import now_ms
from metrics_app.stream.catchup import Budget, HistoryUnavailable
from metrics_app.stream.hub import get_hub
from metrics_app.stream.sockets import Frame, SocketWriter, writer_for

log = logging.getLogger(__name__)

# A socket's messages are paced by what they ask for: a message costs 1, and each source a
# subscribe or unsubscribe names past the first 1 more (each is a reply, a history and a
# subscription to keep). A burst holds an unsubscribe of every subscription and a subscribe of
# as many; then COSTS_PER_S a second.
COSTS_PER_S: Final = 10


class MetricsConsumer(AsyncWebsocketConsumer):
    """Only sockets the door let in get here, with their caller in scope["caller"]."""

    channel_layer_alias = "no-layer"  # not configured on purpose: see the module docstring

    writer: SocketWriter

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_id = ""
        self.subscriptions: set[str] = set()
        self.caller: Caller = NOBODY
        self._allowance = (float(_burst()), time.monotonic())  # (what it may ask for now, when)

    @property
    def sources(self) -> frozenset[str] | None:
        """What this socket may see: the hub cuts updates and alerts to it (None: everything)."""
        return self.caller.sources

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the consumer ended: also when daphne killed it because its socket closed
            # while it was awaiting something, and disconnect() never ran.
            get_hub().remove(self)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch (and websocket_disconnect) first closes stale database
        # connections in a thread: a thread round trip per message, a quarter of a reconnect
        # storm's CPU. This consumer never touches Django's connections (history is read by
        # metrics_app.db's own threads).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    @property
    def credential(self) -> str:
        return self.caller.client

    async def connect(self) -> None:
        hub = get_hub()
        self.caller = self.scope["caller"]
        refused = hub.admit(self)  # before any await: the cap holds while the process starts
        if refused is not None:
            counters.incr(f"websocket_refused_{refused}")
            await self.close()
            return
        self.client_id = f"client-{now_ms()}-{secrets.token_hex(4)}"
        await self.accept()
        self.writer = writer_for(self.base_send)
        self._reply(
            {
                "type": "connected",
                "clientId": self.client_id,
                "heartbeatIntervalMs": settings.METRICS_HEARTBEAT_INTERVAL_MS,
                "batchIntervalMs": settings.METRICS_BATCH_INTERVAL_MS,
                "maxSubscriptions": settings.METRICS_MAX_SUBSCRIPTIONS,
            }
        )
        await hub.start()  # the first socket of a process waits for the hub's first load
        hub.add(self)
        credentials.start(lambda: hub.clients)
        self.writer.send(hub.update_frame(self.sources))

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Not Channels' own: no groups to leave, and no stale connections to close (dispatch).
        get_hub().remove(self)
        raise StopConsumer()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        hub = get_hub()
        try:
            self._take(1)
            command = parse_command(text_data)
            if not isinstance(command, Ping):
                self._take(len(command.sources) - 1)
            if isinstance(command, Ping):
                self._reply({"type": "pong", "timestamp": now_ms()})
            elif isinstance(command, Subscribe):
                self._check_limit(command.sources)
                self._check_allowed(command.sources)
                newest = await hub.catch_up.newest_if_quick()
                # No await from here to the last `subscribed`: each one's `seq` must be where
                # the batches written to this socket after it start.
                for source in command.sources:
                    hub.subscribe(self, source)
                listed = self._listed()
                for source in command.sources:
                    self._reply(
                        {
                            "type": "subscribed",
                            "scraperSource": source,
                            "subscriptions": listed,
                            "seq": hub.next_seqs(source),
                            **({"newest": newest} if newest else {}),
                        }
                    )
                await self._catch_up_all(command.sources, command.since)
            else:
                for source in command.sources:
                    hub.unsubscribe(self, source)
                    self._reply(
                        {"type": "unsubscribed", "scraperSource": source, "subscriptions": self._listed()}
                    )
        except ClientError as error:
            counters.incr("websocket_client_errors")
            self._reply(error.as_message())

    async def _catch_up_all(self, sources: tuple[str, ...], since: Since | None) -> None:
        """Each new subscription's history, or, with `since`, what the client missed: within
        one budget for the ask, taken from this socket's credential at once (its other sockets'
        asks share the bucket), what is left given back at the end."""
        catch_up = get_hub().catch_up
        budget = catch_up.budget(self.credential) if since is not None else None
        try:
            for source in sources:
                try:
                    await self._catch_up(source, since, budget)
                except HistoryUnavailable as missing:  # the next source's history may still come
                    counters.incr("websocket_client_errors")
                    self._reply(ClientError("history_unavailable", str(missing), missing.source,
                                            missing.resync).as_message())  # fmt: skip
        finally:
            if budget is not None:
                catch_up.refund(self.credential, budget)

    async def _catch_up(self, source: str, since: Since | None, budget: Budget | None) -> None:
        hub = get_hub()
        if since is None or budget is None:
            hub.send([self], await hub.catch_up.history(source))
            return
        pages = hub.catch_up.missed(source, since.page, since.scheduler, budget)
        async with contextlib.aclosing(pages):
            async for page in pages:
                hub.send([self], page)
                if not await self.writer.drained():
                    return  # it stopped reading: the hub drops it with its next frame

    # --- helpers -------------------------------------------------------------------------

    def _reply(self, message: dict[str, Any]) -> None:
        # Through the hub: a socket that stopped reading is dropped, never left with a gap.
        get_hub().send([self], Frame(orjson.dumps(message)))

    def _listed(self) -> list[str]:
        return sorted(self.subscriptions)

    def _check_allowed(self, sources: tuple[str, ...]) -> None:
        for source in sources:
            if not self.caller.covers(source):
                raise ClientError("forbidden", self._outside(), source=source)

    def rights_changed(self, key: KeyInfo) -> None:
        """The key was narrowed while the socket is open: what it no longer covers goes."""
        self.caller = Caller(key=key)
        hub = get_hub()
        for source in sorted(self.subscriptions):
            if not self.caller.covers(source):
                hub.unsubscribe(self, source)
                self._reply(ClientError("forbidden", self._outside(), source=source).as_message())
                self._reply(
                    {"type": "unsubscribed", "scraperSource": source, "subscriptions": self._listed()}
                )

    def _take(self, cost: int) -> None:
        """A page asks for little, every few seconds at most: past its allowance (COSTS_PER_S,
        in bursts of _burst()) a message is answered `rate_limited` and not handled, so that one
        socket cannot keep the process busy subscribing and unsubscribing."""
        left, then = self._allowance
        now = time.monotonic()
        left = min(_burst(), left + (now - then) * COSTS_PER_S)
        if left < cost:
            self._allowance = (left, now)
            raise ClientError(
                "rate_limited",
                f"a connection may send a message or name a source {COSTS_PER_S} times a second, "
                f"{_burst()} at once",
            )
        self._allowance = (left - cost, now)

    def _outside(self) -> str:
        return refusals.outside_sources(self.sources or frozenset()).message

    def _check_limit(self, sources: tuple[str, ...]) -> None:
        limit = settings.METRICS_MAX_SUBSCRIPTIONS
        if len(self.subscriptions | set(sources)) > limit:
            raise ClientError("too_many_subscriptions", f"at most {limit} subscriptions per connection")


def _burst() -> int:
    return 2 * settings.METRICS_MAX_SUBSCRIPTIONS

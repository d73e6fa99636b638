"""/ws/metrics/ (contract §6): authenticate, register with the hub, answer client messages.

The consumer holds a connection's small state (id, subscriptions, how to write to it) and
nothing else: batches, heartbeats and updates are fanned out by the process's hub
(dashboard_app.live), which writes to `push()`. It has no channel-layer channel of its own,
which is what lets one process hold thousands of sockets.
"""

import logging
import secrets
from typing import Any

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from dashboard_app.live import get_hub
from dashboard_app.protocol import ClientError, Ping, Subscribe, parse_command
from dashboard_app.sinks import AsgiSink, DaphneSink, Frame, sink_for
from metrics_app import counters
from metrics_app.schema import now_ms

log = logging.getLogger(__name__)


class MetricsConsumer(AsyncWebsocketConsumer):
    """Only identified sockets get here (dashboard_app.security.IdentifiedSockets)."""

    channel_layer_alias = "no-layer"  # not configured on purpose: see the module docstring

    sink: DaphneSink | AsgiSink

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_id = ""
        self.subscriptions: set[str] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the consumer ended: also when daphne killed it because its socket closed
            # while it was awaiting something, and disconnect() never ran.
            get_hub().remove(self)

    async def connect(self) -> None:
        hub = get_hub()
        if len(hub.clients) >= settings.METRICS_MAX_CLIENTS:
            counters.incr("websocket_refused_full")
            await self.close()
            return
        self.client_id = f"client-{now_ms()}-{secrets.token_hex(4)}"
        await self.accept()
        self.sink = sink_for(self.base_send)
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
        self.push(hub.update_frame())

    async def disconnect(self, code: int) -> None:
        get_hub().remove(self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        hub = get_hub()
        try:
            command = parse_command(text_data)
            if isinstance(command, Ping):
                self._reply({"type": "pong", "timestamp": now_ms()})
            elif isinstance(command, Subscribe):
                self._check_limit(command.sources)
                for source in command.sources:
                    hub.subscribe(self, source)
                for source in command.sources:
                    self._reply(
                        {"type": "subscribed", "scraperSource": source, "subscriptions": self._listed()}
                    )
                    await self._send_history(source)
            else:
                for source in command.sources:
                    hub.unsubscribe(self, source)
                    self._reply(
                        {"type": "unsubscribed", "scraperSource": source, "subscriptions": self._listed()}
                    )
        except ClientError as error:
            counters.incr("websocket_client_errors")
            self._reply(error.as_message())

    async def _send_history(self, source: str) -> None:
        try:
            self.push(await get_hub().history(source))
        except DatabaseError:  # subscribed all the same: live batches come, history later
            counters.incr("history_unavailable")
            raise ClientError("history_unavailable", f"history of {source!r} cannot be read now") from None

    # --- what the hub calls --------------------------------------------------------------

    def push(self, frame: Frame) -> bool:
        return self.sink.send(frame)

    def drop(self) -> None:
        self.sink.abort()

    def close_going_away(self) -> None:
        self.sink.close(1001)

    # --- helpers -------------------------------------------------------------------------

    def _reply(self, message: dict[str, Any]) -> None:
        self.push(Frame(orjson.dumps(message)))

    def _listed(self) -> list[str]:
        return sorted(self.subscriptions)

    def _check_limit(self, sources: tuple[str, ...]) -> None:
        limit = settings.METRICS_MAX_SUBSCRIPTIONS
        if len(self.subscriptions | set(sources)) > limit:
            raise ClientError("too_many_subscriptions", f"at most {limit} subscriptions per connection")

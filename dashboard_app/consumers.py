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
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from dashboard_app.live import get_hub
from dashboard_app.protocol import ClientError, Ping, Subscribe, parse_command
from dashboard_app.sinks import AsgiSink, DaphneSink, Frame, sink_for
from metrics_app import counters
from metrics_app.auth import bearer_token, find_api_key
from metrics_app.schema import now_ms

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 1013


class MetricsConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = "no-layer"  # not configured on purpose: see the module docstring

    client_id: str
    subscriptions: set[str]
    sink: DaphneSink | AsgiSink

    async def connect(self) -> None:
        hub = get_hub()
        if not await self._authorised():
            counters.incr("websocket_refused_auth")
            await self.close()  # before accept: the handshake is answered 403
            return
        if len(hub.clients) >= settings.METRICS_MAX_CLIENTS:
            counters.incr("websocket_refused_full")
            await self.close()
            return
        self.client_id = f"client-{now_ms()}-{secrets.token_hex(4)}"
        self.subscriptions = set()
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
                    self.push(await hub.history(source))
            else:
                for source in command.sources:
                    hub.unsubscribe(self, source)
                    self._reply(
                        {"type": "unsubscribed", "scraperSource": source, "subscriptions": self._listed()}
                    )
        except ClientError as error:
            counters.incr("websocket_client_errors")
            self._reply(error.as_message())

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

    async def _authorised(self) -> bool:
        """A logged-in active user (the origin was checked by BrowserOriginValidator) or an API key."""
        user = self.scope.get("user")
        if user is not None and user.is_authenticated and user.is_active:
            return True
        headers = dict(self.scope.get("headers", []))
        token = bearer_token(headers.get(b"authorization", b"").decode("latin1") or None)
        return token is not None and await database_sync_to_async(find_api_key)(token) is not None

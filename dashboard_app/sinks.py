"""Writing one serialised message to many sockets.

A batch is serialised once into a `Frame`. Under daphne the frame is also framed once as a
WebSocket message (autobahn's PreparedMessage), and each socket gets the same bytes written
straight to its transport: no per-socket ASGI message, re-encoding or framing. That is what
keeps fan-out near the cost of a plain `websockets` broadcast server (README, Figures).

Every socket's send buffer is bounded. A client whose unsent data stays above
METRICS_CLIENT_BUFFER_BYTES for SLOW_AFTER_SECONDS has stopped reading: it is disconnected and
counted instead of holding memory or anyone else up. (Above the bound for a moment is normal:
one tick's batches are all written before the reactor hands them to the kernel.)

Under another ASGI server (uvicorn, the test communicator) a sink falls back to the ASGI
`send`, with the number of sends in flight bounded the same way.
"""

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from django.conf import settings

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]

MAX_SENDS_IN_FLIGHT = 256
SLOW_AFTER_SECONDS = 2.0


class Frame:
    """One message, serialised once, sent to any number of sockets."""

    __slots__ = ("_text", "_wire", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._text: str | None = None
        self._wire: bytes | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.data.decode()
        return self._text

    @property
    def wire_bytes(self) -> bytes:
        """The complete WebSocket frame: header and payload, unmasked as a server sends it."""
        if self._wire is None:
            self._wire = PreparedMessage(self.data, False, False, True).payloadHybi
        return self._wire


class DaphneSink:
    __slots__ = ("over_since", "protocol")

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.over_since = 0.0  # when the backlog went over the bound; 0 while under
        _release_handshake(protocol)

    def send(self, frame: Frame) -> bool:
        """Write the frame; False when the socket's buffer is full (a slow client)."""
        protocol = self.protocol
        if protocol.state != WebSocketProtocol.STATE_OPEN:
            return True  # closing: daphne will tell the consumer; nothing to hold
        transport = protocol.transport
        if _buffered(transport) > settings.METRICS_CLIENT_BUFFER_BYTES:
            now = time.monotonic()
            if not self.over_since:
                self.over_since = now
            elif now - self.over_since > SLOW_AFTER_SECONDS:
                return False
        else:
            self.over_since = 0.0
        transport.write(frame.wire_bytes)
        return True

    def abort(self) -> None:
        self.protocol.dropConnection(abort=True)

    def close(self, code: int) -> None:
        # sendClose only lets an application say 1000 or 3000-4999; going away (1001) is the
        # server's to say, so send the close frame directly.
        if self.protocol.state == WebSocketProtocol.STATE_OPEN:
            self.protocol.sendCloseFrame(code=code, isReply=False)


class AsgiSink:
    __slots__ = ("_send", "in_flight")

    def __init__(self, send: AsgiSend) -> None:
        self._send = send
        self.in_flight = 0

    def send(self, frame: Frame) -> bool:
        if self.in_flight >= MAX_SENDS_IN_FLIGHT:
            return False
        self.in_flight += 1
        task = asyncio.ensure_future(self._send({"type": "websocket.send", "text": frame.text}))
        task.add_done_callback(self._sent)
        return True

    def _sent(self, task: "asyncio.Future[None]") -> None:
        self.in_flight -= 1
        if not task.cancelled():
            task.exception()  # a send to a closed socket is expected; don't log it as unhandled

    def abort(self) -> None:
        self.close(1013)

    def close(self, code: int) -> None:
        self.in_flight += 1
        task = asyncio.ensure_future(self._send({"type": "websocket.close", "code": code}))
        task.add_done_callback(self._sent)


def sink_for(send: AsgiSend) -> DaphneSink | AsgiSink:
    protocol = _daphne_protocol(send)
    return DaphneSink(protocol) if protocol is not None else AsgiSink(send)


def _daphne_protocol(send: Any) -> Any:
    """daphne hands each app `partial(server.handle_reply, protocol)` as its send; Channels'
    session middleware wraps it, keeping the original as `real_send`. Unwrap to the protocol."""
    for _ in range(8):
        if isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            return protocol if isinstance(protocol, WebSocketProtocol) else None
        owner = getattr(send, "__self__", None)
        send = getattr(owner, "real_send", None)
        if send is None:
            return None
    return None


def _release_handshake(protocol: Any) -> None:
    """Once a socket is open, autobahn and daphne still hold its request headers several
    times over (raw bytes, a parsed dict, daphne's list, the response): a few KB a socket
    that nothing reads again. Channels has already built the consumer's scope from them."""
    for name in ("http_request_data", "http_response_data"):
        if hasattr(protocol, name):
            setattr(protocol, name, None)
    for name in ("http_headers", "clean_headers"):
        headers = getattr(protocol, name, None)
        if isinstance(headers, dict | list):
            headers.clear()


def _buffered(transport: Any) -> int:
    """Bytes written to a Twisted TCP transport and not yet handed to the kernel."""
    try:
        return int(len(transport.dataBuffer) - transport.offset + transport._tempDataLen)
    except AttributeError:
        return 0

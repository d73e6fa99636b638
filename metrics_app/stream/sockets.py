"""Writing one serialised message to many sockets: the socket writer and its backends.

A batch is serialised once into a `Frame` and handed to each subscribed socket's
`SocketWriter`. The generic writer (`AsgiWriter`) sends it through the ASGI `send` of the
socket's application: one ASGI message per socket, which works under any server. A server
may offer a faster writer: under daphne, wealthmetrics.daphne_internals frames a message once
and writes the same bytes to every socket's transport (10-20x less CPU at thousands of
sockets), and registers itself here with `register_fast_path()` when it starts.

Every writer bounds what a socket may hold: a client whose unsent data stays above
`buffer_bytes()` for SLOW_AFTER_SECONDS has stopped reading, and `send()` answers False so the
hub drops it (docs/websocket.md, "Limits").
"""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Final

from django.conf import settings

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]

MAX_SENDS_IN_FLIGHT: Final = 256
SLOW_AFTER_SECONDS: Final = 2.0


def buffer_bytes() -> int:
    """What one socket may hold unsent: METRICS_CLIENT_BUFFER_BYTES, or its share of
    METRICS_CLIENT_BUFFER_TOTAL_BYTES among METRICS_MAX_CLIENTS sockets if that is less, so the
    process's total stays bounded however many clients stop reading."""
    share = settings.METRICS_CLIENT_BUFFER_TOTAL_BYTES // settings.METRICS_MAX_CLIENTS
    return int(min(settings.METRICS_CLIENT_BUFFER_BYTES, max(64 * 1024, share)))


class Frame:
    """One message, serialised once, sent to any number of sockets. A writer may keep its
    own encoding of it in `prepared` (the daphne writer keeps the framed bytes there)."""

    __slots__ = ("_text", "data", "prepared")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._text: str | None = None
        self.prepared: Any = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.data.decode()
        return self._text


class SocketWriter(ABC):
    """How the hub and the consumer write to one socket."""

    __slots__ = ()
    fast: bool = False  # True for a server-specific writer that frames once for all sockets

    @abstractmethod
    def send(self, frame: Frame) -> bool:
        """Queue the frame; False when the client has stopped reading (drop it)."""

    async def drained(self) -> bool:
        """Wait until the socket has taken what it was sent: False if it has not within
        SLOW_AFTER_SECONDS (it will be dropped). A resync sends its next page only then, so a
        slow link is paced rather than sent more than it may hold."""
        return True

    @abstractmethod
    def abort(self) -> None:
        """Drop the connection now (a client that stopped reading)."""

    @abstractmethod
    def close(self, code: int) -> None:
        """Close with a WebSocket close code: 1001 going away, 1013 try again later."""


class AsgiWriter(SocketWriter):
    """Any ASGI server: one `websocket.send` per frame, at most MAX_SENDS_IN_FLIGHT pending."""

    __slots__ = ("_send", "in_flight")

    def __init__(self, send: AsgiSend) -> None:
        self._send = send
        self.in_flight = 0

    def send(self, frame: Frame) -> bool:
        if self.in_flight >= MAX_SENDS_IN_FLIGHT:
            return False
        self._start({"type": "websocket.send", "text": frame.text})
        return True

    def abort(self) -> None:
        self.close(1013)

    def close(self, code: int) -> None:
        self._start({"type": "websocket.close", "code": code})

    def _start(self, message: dict[str, Any]) -> None:
        self.in_flight += 1
        asyncio.ensure_future(self._send(message)).add_done_callback(self._sent)

    def _sent(self, task: "asyncio.Future[None]") -> None:
        self.in_flight -= 1
        if not task.cancelled():
            task.exception()  # a send to a closed socket is expected; don't log it as unhandled


FastPath = Callable[[AsgiSend], SocketWriter | None]
_fast_paths: list[FastPath] = []


def register_fast_path(make_writer: FastPath) -> None:
    """Offer a server-specific writer: `make_writer(send)` returns one for sockets it serves,
    None for others."""
    if make_writer not in _fast_paths:
        _fast_paths.append(make_writer)


def writer_for(send: AsgiSend) -> SocketWriter:
    """The fastest writer available for the socket whose ASGI send this is."""
    for make_writer in _fast_paths:
        writer = make_writer(send)
        if writer is not None:
            return writer
    return AsgiWriter(send)

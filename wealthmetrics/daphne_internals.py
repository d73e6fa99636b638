"""Everything wealthmetrics relies on inside daphne, Twisted, autobahn and Channels, in one
module, checked at start: a process whose server differs from what was checked refuses to
start, naming the package and version (wealthmetrics.serving calls `install()`).

Three things need the server itself, below ASGI:

1. **The request guard.** daphne (through Twisted) reads a request's whole body, into memory
   or a temporary file, before the application sees any of it: a stranger could make a
   process hold gigabytes. So the door (metrics_app.admission.door) judges a request that
   carries a body the moment its headers are in, in `GuardedRequest`, daphne's request class:
   key, scope and size, on the normalised path, whatever path it names. A refused request is
   answered at once, and no byte of its body is kept. When the process's copies cannot tell
   who the caller is, the socket is paused (nothing more is read) and the request is held
   until a database thread has looked the key or the session up. A body without a declared
   length (chunked) is cut once it passes the caller's limit.
   After a refusal the body is read and thrown away (never kept) until it ends, for at most
   LINGER_SECONDS or METRICS_MAX_BODY_BYTES more bytes, then the connection closes: closing
   at once, with the client still sending, would reset the connection and could lose the
   answer.

2. **The fast socket writer.** A live batch is framed once as a WebSocket message
   (autobahn's PreparedMessage) and sent to every socket with autobahn's public
   `sendPreparedMessage`: no per-socket ASGI message, encoding or framing. A socket's unsent
   data is watched through Twisted's producer interface (the transport pauses a registered
   producer when its buffer passes `bufferSize`, and resumes it once drained).

3. **Slow clients.** Twisted keeps a silent connection 12 hours, and a body that trickles in
   a byte at a time for ever. daphne's HTTP factory is replaced by one whose idle timeout is
   METRICS_HTTP_IDLE_TIMEOUT_S, and once a request's headers are in, its body must arrive
   within METRICS_HTTP_READ_TIMEOUT_S or the answer is 408 and the connection closes.

The listen backlog is daphne's own option: `-e tcp:port=8000:interface=127.0.0.1:backlog=4096`
(`make run` and bin/daphnes use it).

What is not public, and is checked by `install()` before anything is changed (CHECKS):
- Twisted's HTTPChannel calls `gotLength` with the headers in and keeps the request line in
  `_command` and `_path`, and daphne's HTTPFactory builds requests from
  `daphne.http_protocol.WebRequest` (checked by feeding a stranger's POST through a real
  HTTPChannel built by daphne's factory: it must be refused before its body);
- daphne hands each application `functools.partial(server.handle_reply, protocol)` as its
  `send`, and Channels hands it on to a consumer unchanged, with no channel layer for an
  alias that is not configured (checked by running daphne's `create_application` and a
  consumer through Channels' routing);
- autobahn's `sendPreparedMessage`, `sendCloseFrame` (to send 1001 going away and 1013 try
  again later, which its `sendClose` refuses to an application), `dropConnection` and
  `registerProducer`, and its per-protocol `maxMessagePayloadSize`/`maxFramePayloadSize`;
- Twisted's transports keeping unsent data in `dataBuffer` (from `offset`) and
  `_tempDataBuffer` (`_tempDataLen` bytes), which bounds what a socket that stopped reading
  may hold (`unsent`, checked by writing to a bare FileDescriptor);
- daphne's `onMessage` putting each client message on the protocol's `application_queue`
  (checked by calling it on a bare protocol), which the writer bounds (`_queue_bounded`);
- daphne.server's module-level `HTTPFactory` (replaced by a subclass that sets Twisted's
  `timeOut`).
If a check fails, the process stops with a message naming the packages and their versions:
install the versions pinned in requirements.txt. METRICS_ACCEPT_UNCHECKED_SERVER=1 accepts
the risk instead: what failed stays off, and /api/stats/ and /api/health/websocket say so.
tests/integration/test_daphne_internals.py checks that every part is in use under daphne.
"""

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, Final

from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from daphne import http_protocol, ws_protocol
from django.conf import settings
from twisted.internet import abstract
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import StringTransport
from twisted.web import http
from zope.interface import implementer

from metrics_app import counters
from metrics_app.admission import refusals
from metrics_app.admission.door import (
    BEFORE_BODY,
    Caller,
    Head,
    body_limit,
    checked,
    identify,
    identify_now,
    socket_checked,
)  # fmt: skip
from metrics_app.admission.refusals import Refusal
from metrics_app.server import features
from metrics_app.stream.hub import get_hub
from metrics_app.stream.sockets import (
    SLOW_AFTER_SECONDS,
    AsgiSend,
    Frame,
    SocketWriter,
    buffer_bytes,
    register_fast_path,
)
from wealthmetrics.env import BadSetting

log = logging.getLogger(__name__)

# --- 1. the request guard ----------------------------------------------------------------------

LINGER_SECONDS: Final = 2.0


def head_of(request: http.Request, length: int | None, kind: str = "http") -> Head:
    """The door's view of a request whose headers are in (Twisted keeps the request line on
    the channel until the body has come)."""
    channel = request.channel
    headers = {name.lower(): values[0] for name, values in request.requestHeaders.getAllRawHeaders()}
    if length is not None:
        headers[b"content-length"] = str(length).encode()
    return Head.of(kind, channel._command.decode("latin-1"), channel._path, headers)


class GuardedRequest(http_protocol.WebRequest):
    _refused = False
    _received = 0  # body bytes so far
    _limit = 0  # body bytes this request may send (the door's limit for its caller)
    _linger_until = 0  # after a refusal: close once this many have come
    _wants_continue = False
    _judging = False  # a database thread is looking the caller up
    _draining = False  # refused, the body is read and thrown away until it ends (or the linger does)
    _held: tuple[bytes, bytes, bytes] | None = None  # the request, complete while it was judged
    _read_deadline: asyncio.TimerHandle | None = None

    def connectionLost(self, reason: Any) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
        super().connectionLost(reason)

    def _read_too_slow(self) -> None:
        if self._refused:
            self._close()
        else:
            self._refuse(refusals.TOO_SLOW, close=True)

    def gotLength(self, length: int | None) -> None:
        # The headers are in; the body must follow within METRICS_HTTP_READ_TIMEOUT_S, however
        # slowly its bytes trickle in (each byte would reset the channel's idle timeout).
        with contextlib.suppress(RuntimeError):  # no loop: the start-up self-check
            self._read_deadline = asyncio.get_running_loop().call_later(
                settings.METRICS_HTTP_READ_TIMEOUT_S, self._read_too_slow
            )
        self._limit = settings.METRICS_MAX_BODY_BYTES
        if length is None or length > 0:  # a body comes: who may send it?
            head = head_of(self, length)
            known = identify_now(head)
            if known is None:
                self._judge_later(head)
            else:
                self._judged(head, known)
        elif b"websocket" in (self.getHeader(b"upgrade") or b"").lower():
            self._check_room(head_of(self, None, "websocket"))
        super().gotLength(0 if self._refused else length)

    def _check_room(self, head: Head) -> None:
        """A handshake the door would let in but the hub has no room for (the process is full,
        or the caller holds its share) is answered here, before daphne and autobahn build a
        socket and Channels a consumer only to close it: most of a refused handshake's cost,
        and one key reconnecting a thousand sockets a second made it all the process did. The
        door and the hub judge what goes on (a caller this process cannot name yet among it)."""
        known = identify_now(head)
        if known is None:
            return
        verdict = socket_checked(head, known, take_rate=False)
        if isinstance(verdict, Caller) and (no_room := get_hub().room(verdict.client)) is not None:
            self._refuse(refusals.NO_ROOM[no_room], close=True)

    def _judged(self, head: Head, caller: Caller | Refusal) -> None:
        verdict = checked(head, caller, BEFORE_BODY)
        if isinstance(verdict, Refusal):
            # Nothing more is coming for a client waiting for "100 Continue", nor for a request
            # that arrived whole while it was judged: close. Otherwise drain the body.
            self._refuse(verdict, close=self._wants_continue or self._held is not None)
        else:
            self._limit = body_limit(head, verdict)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._refused:  # read and thrown away, for a while
            if self._received > self._linger_until:
                self._close()
            return
        if self._received > self._limit:
            self._refuse(refusals.body_over(self._limit))
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
        if self._refused:  # the answer is written; the body has been read
            self._close()
        elif self._judging:  # it came in the same packets as the headers: held until judged
            self._held = (command, path, version)
        else:
            super().requestReceived(command, path, version)

    def _refuse(self, refusal: Refusal, *, close: bool = False) -> None:
        """Answer now; close now, or once the body has been read (within the linger bounds)."""
        if self._refused:
            return
        self._refused = True
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the answer
        transport = self._transport()
        if transport is None:
            return
        transport.write(refusal.http_bytes())
        if close:
            self._close()
            return
        self._draining = True
        self._linger_until = self._received + settings.METRICS_MAX_BODY_BYTES
        with contextlib.suppress(RuntimeError):  # no loop: the start-up self-check, not a client
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        transport = self._transport()
        if transport is not None:
            transport.loseConnection()

    def _transport(self) -> Any:
        """The connection's transport, or None once Twisted let go of the request (it deletes
        `channel` when the connection is lost, which a lookup may outlast)."""
        channel = getattr(self, "channel", None)
        return channel.transport if channel is not None else None

    def _judge_later(self, head: Head) -> None:
        """Stop reading until a database thread has looked the caller up."""
        self._judging = True
        self.transport.pauseProducing()
        if self.requestHeaders.hasHeader(b"expect"):  # answer "100 Continue" ourselves, later
            self.requestHeaders.removeHeader(b"expect")
            self._wants_continue = True
        asyncio.ensure_future(identify(head)).add_done_callback(functools.partial(self._looked_up, head))

    def _looked_up(self, head: Head, lookup: "asyncio.Future[Caller | Refusal]") -> None:
        self._judging = False
        transport = self._transport()
        if transport is None or not transport.connected:
            return  # the client went away meanwhile
        try:
            caller = lookup.result()  # identify() answers an outage with a refusal
        except Exception:  # a bug, but the request must not stay held (no timer is left to end it)
            log.exception("judging a request's caller failed")
            caller = refusals.UNJUDGED
        self._judged(head, caller)
        if not self._refused and self._received > self._limit:  # what came while it was judged
            self._refuse(refusals.body_over(self._limit), close=True)
        if self._refused:
            if self._draining:
                transport.resumeProducing()  # the rest of the body is read and thrown away
            return
        if self._wants_continue:
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        held, self._held = self._held, None
        if held is not None:
            super().requestReceived(*held)
        transport.resumeProducing()


# --- 2. the fast socket writer -------------------------------------------------------------------

MAX_CLIENT_MESSAGE_BYTES: Final = 64 * 1024  # the consumer answers past 16 KiB (message_too_large)
MAX_WAITING_MESSAGES: Final = 64  # a socket's messages waiting for the consumer: at most 4 MiB


class Held:
    """The sockets over their bound, and what they hold together: past
    METRICS_CLIENT_BUFFER_TOTAL_BYTES, those holding most whose clients have taken nothing for
    GRACE_S are dropped (checked every CHECK_S while any is over), not SLOW_AFTER_SECONDS
    later. A socket on '*' that stopped reading is sent every record, megabytes in those
    seconds, and a few hundred such would hold gigabytes; a reader over its bound for a moment
    costs nothing."""

    CHECK_S: Final = 0.1
    # A socket counts as not reading once it has taken no byte for this long: a reconnect
    # storm's first frames pass every bound at once, and its clients read them.
    GRACE_S: Final = 0.5

    def __init__(self) -> None:
        self.over: set[DaphneWriter] = set()
        self._checking: asyncio.TimerHandle | None = None

    def add(self, writer: "DaphneWriter") -> None:
        self.over.add(writer)
        self._schedule()

    def discard(self, writer: "DaphneWriter") -> None:
        self.over.discard(writer)

    def check(self) -> None:
        self._checking = None
        holding = sorted(((unsent(w.protocol.transport), w) for w in self.over), key=lambda h: -h[0])
        total = sum(size for size, _ in holding)
        now = time.monotonic()
        for size, writer in holding:
            if writer.written - size > writer.taken:  # its client took bytes since the last check
                writer.taken, writer.taking_at = writer.written - size, now
        for size, writer in holding:
            if total <= settings.METRICS_CLIENT_BUFFER_TOTAL_BYTES:
                break
            if now - writer.taking_at < Held.GRACE_S:
                continue
            counters.problem("clients_dropped_slow", log, "dropping a client that stopped reading (%d bytes "
                             "held, %d by all)", size, total)  # fmt: skip
            self.over.discard(writer)
            writer.abort()  # daphne tells its consumer, which leaves the hub
            total -= size
        if self.over:
            self._schedule()

    def _schedule(self) -> None:
        if self._checking is None:
            with contextlib.suppress(RuntimeError):  # no running loop (a unit test): check() by hand
                self._checking = asyncio.get_running_loop().call_later(self.CHECK_S, self.check)


held = Held()


@implementer(IPushProducer)
class DaphneWriter(SocketWriter):
    """Writes frames to a daphne WebSocket through autobahn, framing each frame once."""

    __slots__ = ("_drain", "over_since", "protocol", "taken", "taking_at", "written")
    fast = True

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.over_since = 0.0  # when the unsent data passed the bound; 0 while under it
        # Bytes handed to the transport, and of them those its client had taken (and when)
        # at the last look: whether a socket over its bound is read at all (Held.check).
        self.written = self.taken = 0
        self.taking_at = 0.0
        self._drain: asyncio.Future[None] | None = None  # resolved when it is under it again
        transport = protocol.transport
        # The upgrade leaves daphne's HTTP channel registered as the transport's producer.
        transport.unregisterProducer()
        transport.bufferSize = buffer_bytes()
        protocol.registerProducer(self, True)
        # A client's messages are a few hundred bytes (docs/websocket.md): a larger one is
        # refused by autobahn (close 1009) before it is held, not queued for the consumer.
        protocol.maxMessagePayloadSize = protocol.maxFramePayloadSize = MAX_CLIENT_MESSAGE_BYTES
        protocol.onMessage = functools.partial(_queue_bounded, protocol, protocol.onMessage)
        _release_handshake(protocol)

    # IPushProducer: the transport pauses us while its unsent data is over bufferSize (on every
    # write, so only the first call counts) and resumes us once it has all gone out.
    def pauseProducing(self) -> None:
        if not self.over_since:
            self.over_since = self.taking_at = time.monotonic()
            self.taken = self.written - unsent(self.protocol.transport)
            held.add(self)

    def resumeProducing(self) -> None:
        self.over_since = 0.0
        held.discard(self)
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    async def drained(self) -> bool:
        if not self.over_since:
            return True
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drain), SLOW_AFTER_SECONDS)
        except TimeoutError:
            return False
        return True

    def stopProducing(self) -> None:
        held.discard(self)  # the connection is gone, and what it held with it

    def send(self, frame: Frame) -> bool:
        protocol = self.protocol
        if protocol.state != WebSocketProtocol.STATE_OPEN:
            return True  # closing: daphne will tell the consumer; nothing to hold
        if self.over_since and time.monotonic() - self.over_since > SLOW_AFTER_SECONDS:
            return False
        if frame.prepared is None:
            frame.prepared = PreparedMessage(frame.data, False, False, True)
        self.written += len(frame.prepared.payloadHybi)
        protocol.sendPreparedMessage(frame.prepared)
        return True

    def abort(self) -> None:
        self.protocol.dropConnection(abort=True)

    def close(self, code: int) -> None:
        if self.protocol.state == WebSocketProtocol.STATE_OPEN:
            self.protocol.sendCloseFrame(code=code, isReply=False)


def unsent(transport: Any) -> int:
    """Bytes a Twisted transport holds unsent: what it is writing and what waits behind it."""
    return int(len(transport.dataBuffer) - transport.offset + transport._tempDataLen)


def _queue_bounded(
    protocol: Any, queue_it: Callable[[bytes, bool], None], payload: bytes, binary: bool
) -> None:
    """daphne queues each message for the consumer, which handles one at a time (a resync is
    database reads): a client that sends faster than it is answered is dropped once
    MAX_WAITING_MESSAGES wait, rather than held in the server's memory."""
    if protocol.application_queue.qsize() >= MAX_WAITING_MESSAGES:
        counters.incr("clients_dropped_flooding")
        protocol.dropConnection(abort=True)
        return
    queue_it(payload, binary)


def daphne_writer(send: AsgiSend) -> DaphneWriter | None:
    protocol = _protocol_of(send)
    return DaphneWriter(protocol) if protocol is not None else None


def _protocol_of(send: Any) -> Any:
    """daphne's `partial(server.handle_reply, protocol)`: the socket's protocol, or None. The
    door and Channels hand the consumer daphne's own send (checked at start)."""
    if isinstance(send, functools.partial) and send.args and isinstance(send.args[0], WebSocketProtocol):
        return send.args[0]
    return None


def _release_handshake(protocol: Any) -> None:
    """Once a socket is open, autobahn and daphne still hold its request headers several times
    over (raw bytes, a parsed dict, daphne's list, the response): a few KB a socket that
    nothing reads again. Channels has already built the consumer's scope from them."""
    for name in ("http_request_data", "http_response_data"):
        if hasattr(protocol, name):
            setattr(protocol, name, None)
    for name in ("http_headers", "clean_headers"):
        headers = getattr(protocol, name, None)
        if isinstance(headers, dict | list):
            headers.clear()


# --- installing, after checking -----------------------------------------------------------------


class UncheckedServer(BadSetting):
    """The installed server is not what the checks know: the process must not serve."""


class IdleLimitedFactory(http_protocol.HTTPFactory):
    """daphne's HTTP factory with an idle timeout of METRICS_HTTP_IDLE_TIMEOUT_S instead of
    Twisted's 12 hours: a connection that sends nothing (before, between or inside requests)
    is closed."""

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        self.timeOut = settings.METRICS_HTTP_IDLE_TIMEOUT_S


def install() -> None:
    """Check every part against the installed packages, then switch it on. A part whose check
    fails stops the process, unless METRICS_ACCEPT_UNCHECKED_SERVER accepts the risk."""
    failed = {part: problem for part, (check, _) in CHECKS.items() if (problem := check())}
    if failed and not settings.METRICS_ACCEPT_UNCHECKED_SERVER:
        raise UncheckedServer(
            f"wealthmetrics cannot protect this server ({_versions()}): "
            + "; ".join(f"{part}: {problem}" for part, problem in failed.items())
            + ". Install the versions pinned in requirements.txt, or set METRICS_ACCEPT_UNCHECKED_SERVER=1"
            " to run without these parts (health then says so)."
        )
    for part, (_, switch_on) in CHECKS.items():
        if part in failed:
            log.error("%s is OFF (%s), as METRICS_ACCEPT_UNCHECKED_SERVER allows", part, failed[part])
        else:
            switch_on()
    features.unchecked = sorted(failed)


def _versions() -> str:
    return ", ".join(f"{name} {version(name)}" for name in ("daphne", "Twisted", "autobahn", "channels"))


def _install_guard() -> None:
    http_protocol.WebRequest = GuardedRequest
    features.request_guard = True


def _install_sockets() -> None:
    register_fast_path(daphne_writer)
    features.fast_sockets = True


def _install_idle_timeout() -> None:
    from daphne import server

    server.HTTPFactory = IdleLimitedFactory
    features.idle_timeout = True


class _Server:
    """The little of daphne's Server that the checks touch."""

    def __init__(self) -> None:
        self.connections: dict[Any, dict[str, Any]] = {}
        self.sent: Any = None

    def protocol_connected(self, protocol: object) -> None:
        pass

    def protocol_disconnected(self, protocol: object) -> None:
        pass

    def application(self, *, scope: Any, receive: Any, send: Any) -> Any:
        self.sent = send
        raise _Caught

    async def handle_reply(self, protocol: Any, message: Any) -> None:
        pass


class _Caught(Exception):
    pass


def _check_guard() -> str | None:
    """daphne's factory must build requests from http_protocol.WebRequest, and a stranger's POST
    fed through a real Twisted HTTPChannel must be refused before its body."""
    if not issubclass(http_protocol.WebRequest, http.Request) or not hasattr(http_protocol, "HTTPFactory"):
        return "daphne.http_protocol no longer has WebRequest and HTTPFactory"
    original, http_protocol.WebRequest = http_protocol.WebRequest, GuardedRequest
    try:
        channel: Any = http_protocol.HTTPFactory(_Server()).buildProtocol(None)
        if channel.requestFactory is not GuardedRequest:
            return "daphne's HTTPFactory no longer builds requests from http_protocol.WebRequest"
        channel.timeOut = None  # no idle timer: that would need a running reactor
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"POST //api/%6detrics/. HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    except Exception as exc:  # any change in how Twisted drives a request lands here
        return f"Twisted's HTTPChannel changed: {type(exc).__name__}: {exc}"
    finally:
        http_protocol.WebRequest = original
        counters.incr("requests_unauthorized", -1)  # the check's own refusal is not a client's
    if not transport.value().startswith(b"HTTP/1.1 401"):
        return "a stranger's body was not refused before it was read"
    return None


def _check_sockets() -> str | None:
    """daphne must still hand applications a send that leads to the protocol, Channels must
    hand it on to a consumer as it is, and autobahn must still have what the writer calls."""
    needed = ("sendPreparedMessage", "sendCloseFrame", "dropConnection", "registerProducer", "STATE_OPEN")
    missing = [name for name in needed if not hasattr(ws_protocol.WebSocketProtocol, name)]
    options = ws_protocol.WebSocketProtocol.CONFIG_ATTRS_COMMON  # read per message, per protocol
    missing += [name for name in ("maxMessagePayloadSize", "maxFramePayloadSize") if name not in options]
    if not missing and (problem := _check_message_queue() or _check_unsent()):
        return problem
    if missing:
        return f"daphne's WebSocketProtocol lacks {', '.join(missing)}"
    from daphne.server import Server  # installs daphne's reactor: only once daphne runs

    server = _Server()
    protocol = object.__new__(ws_protocol.WebSocketProtocol)  # not connected: never used
    server.connections[protocol] = {}
    try:
        Server.create_application(server, protocol, {"type": "websocket"})
    except _Caught:
        pass
    except Exception as exc:
        return f"daphne's create_application changed: {type(exc).__name__}: {exc}"
    if _protocol_of(server.sent) is not protocol:
        return "daphne's send no longer leads to the socket's protocol"
    return _check_channels(server.sent)


def _check_message_queue() -> str | None:
    """daphne's onMessage must put a client's message on the protocol's application_queue,
    which is what _queue_bounded measures."""
    probe: Any = object.__new__(ws_protocol.WebSocketProtocol)
    probe.muted, probe.client_addr, probe.application_queue = False, None, asyncio.Queue()
    try:
        ws_protocol.WebSocketProtocol.onMessage(probe, b"{}", False)
    except Exception as exc:
        return f"daphne's onMessage changed: {type(exc).__name__}: {exc}"
    if probe.application_queue.qsize() != 1:
        return "daphne's onMessage no longer queues on application_queue"
    return None


def _check_unsent() -> str | None:
    """Twisted's transports must still keep what waits to be written where `unsent` counts it."""

    class Reactor:
        def addWriter(self, writer: object) -> None:
            pass

    reactor: Any = Reactor()  # of the interface, only what a write calls
    transport = abstract.FileDescriptor(reactor)
    transport.connected = True
    try:
        transport.write(b"x" * 10)
        held = unsent(transport)
    except Exception as exc:
        return f"Twisted's FileDescriptor changed: {type(exc).__name__}: {exc}"
    return None if held == 10 else f"Twisted's FileDescriptor holds {held} bytes unsent where 10 were written"


def _check_channels(send: Any) -> str | None:
    """A consumer routed by Channels must get daphne's send as it is, and no channel layer."""
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import URLRouter
    from django.urls import path

    seen: dict[str, Any] = {}

    class Probe(AsyncWebsocketConsumer):
        channel_layer_alias = "no-layer"

        async def dispatch(self, message: Any) -> None:
            seen.update(send=self.base_send, layer=self.channel_layer)
            raise _Caught

    async def connect() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    router = URLRouter([path("probe/", Probe.as_asgi())])
    scope = {"type": "websocket", "path": "/probe/", "headers": []}
    loop = asyncio.new_event_loop()  # of its own: the process's loop belongs to daphne's reactor
    try:
        loop.run_until_complete(router(scope, connect, send))
    except _Caught:
        pass
    except Exception as exc:
        return f"Channels' routing changed: {type(exc).__name__}: {exc}"
    finally:
        loop.close()
    if seen.get("send") is not send or seen.get("layer") is not None:
        return "Channels no longer hands a consumer the server's send, without a channel layer"
    return None


def _check_idle_timeout() -> str | None:
    from daphne import server

    if getattr(server, "HTTPFactory", None) is not http_protocol.HTTPFactory:
        return "daphne.server no longer builds http_protocol.HTTPFactory"
    return None


# Each part: its check (None when it holds), and what switches it on.
CHECKS: Final[dict[str, tuple[Callable[[], str | None], Callable[[], None]]]] = {
    "request guard": (_check_guard, _install_guard),
    "fast socket writer": (_check_sockets, _install_sockets),
    "idle timeout": (_check_idle_timeout, _install_idle_timeout),
}

"""Everything wealthmetrics relies on inside daphne, Twisted and autobahn, in one module.

Two things need the server itself, below ASGI:

1. **The request guard.** daphne (through Twisted) reads a request's whole body, into memory or
   a temporary file, before the application sees any of it: a stranger could make a process
   hold 800 MB. So the check moves to the moment the headers are in, in `GuardedRequest`,
   daphne's request class with three refusals:
   - a declared body over METRICS_MAX_BODY_BYTES: 413 at once, no byte of the body kept;
   - a body without a declared length (chunked): cut with 413 once it passes the limit;
   - a POST to the ingest endpoint without a valid API key: 401 before the body is read. The
     key is checked against the process's key cache (metrics_app.api.auth); when the cache
     cannot tell, the socket is paused (nothing more is read) while a database thread looks
     the key up.
   After a refusal the body is read and thrown away (never kept) until it ends, for at most
   LINGER_SECONDS or METRICS_MAX_BODY_BYTES more bytes, then the connection closes: closing at
   once, with the client still sending, would reset the connection and could lose the answer.

2. **The fast socket writer.** A live batch is framed once as a WebSocket message
   (autobahn's PreparedMessage) and sent to every socket with autobahn's public
   `sendPreparedMessage`: no per-socket ASGI message, encoding or framing. A socket's unsent
   data is watched through Twisted's producer interface (the transport pauses a registered
   producer when its buffer passes `bufferSize`, and resumes it once drained).

3. **Slow clients.** Twisted keeps a silent connection 12 hours, and a body that trickles in
   a byte at a time for ever. daphne's HTTP factory is replaced by one whose idle timeout is
   METRICS_HTTP_IDLE_TIMEOUT_S, and once a request's headers are in, its body must arrive
   within METRICS_HTTP_READ_TIMEOUT_S or the answer is 408 and the connection closes.

4. **The listen backlog.** daphne gives Twisted no backlog for `-b`/`-p` or a plain `tcp:`/
   `unix:` endpoint, so the kernel queues only 50 connections not yet accepted: a restart's
   reconnect storm overflows it and handshakes stall for seconds or fail. Endpoints without a
   `backlog=` of their own get METRICS_LISTEN_BACKLOG (the kernel caps it at
   net.core.somaxconn). daphne's `--fd` sockets keep the backlog they were made with.

What is not public, and is checked by `install()` before anything is changed:
- daphne's HTTPFactory builds requests from `daphne.http_protocol.WebRequest` (replaced by a
  subclass), and Twisted's HTTPChannel calls `gotLength` with the headers in and keeps the
  request line in `_command` and `_path` (checked by feeding an oversized POST through a real
  HTTPChannel);
- daphne hands each application `functools.partial(server.handle_reply, protocol)` as its
  `send` (checked by calling daphne's `create_application` with a stand-in server), which is
  how a socket's protocol is found;
- autobahn's `sendCloseFrame`, to send 1001 (going away) and 1013 (try again later), which its
  `sendClose` refuses to an application;
- the handshake's request and response, kept by autobahn and daphne after the socket opens
  (released to save memory; skipped if absent);
- daphne.server's module-level `HTTPFactory` (replaced by a subclass that sets Twisted's
  `timeOut`);
- daphne.server's module-level `serverFromString`, which its Server.run() calls with each
  endpoint description (replaced by a wrapper that adds the backlog).
If a check fails, that part stays off, an error is logged, and `metrics_app.server.features`
(shown in /api/stats/ and /api/health/websocket) says so: the generic paths still work, at
the cost the checks protect against. Behind nginx, `client_max_body_size` refuses large
bodies one hop earlier (README, "Running behind a proxy").

The versions these were checked against are pinned in requirements.txt (daphne, Twisted,
autobahn); tests/integration/test_daphne_internals.py checks that both paths are in use.
"""

import asyncio
import contextlib
import functools
import logging
import sys
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import orjson
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from daphne import http_protocol, ws_protocol
from django.conf import settings
from django.db import DatabaseError
from twisted.internet import endpoints
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import StringTransport
from twisted.web import http
from zope.interface import implementer

from metrics_app import counters, db
from metrics_app.alerts import evaluator
from metrics_app.api.auth import MISSING_KEY, UNKNOWN, bearer_token, keys
from metrics_app.server import features
from metrics_app.stream.hub import get_hub
from metrics_app.stream.sockets import SLOW_AFTER_SECONDS, AsgiSend, Frame, SocketWriter, register_fast_path

log = logging.getLogger(__name__)

# --- 1. the request guard ----------------------------------------------------------------------

INGEST_PATHS: Final = (b"/api/metrics/", b"/api/metrics")
LINGER_SECONDS: Final = 2.0


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    counter: str
    headers: tuple[tuple[str, str], ...] = ()

    def response(self) -> bytes:
        body = orjson.dumps({"error": self.code, "message": self.message})
        head = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
                "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close",
                *(f"{name}: {value}" for name, value in self.headers)]  # fmt: skip
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def too_large(limit: int) -> Refusal:
    return Refusal(413, "too_large", f"body exceeds the limit of {limit} bytes", "requests_too_large")


UNAUTHORIZED: Final = Refusal(
    401,
    "unauthorized",
    MISSING_KEY,
    "requests_unauthorized",
    (("WWW-Authenticate", 'Bearer realm="wealthmetrics"'),),
)
TOO_SLOW: Final = Refusal(
    408, "request_timeout", "the request body did not arrive in time", "requests_read_timeout"
)
UNAVAILABLE: Final = Refusal(
    503, "database_unavailable", "the database is unreachable; retry later", "database_unavailable",
    (("Retry-After", "5"),),
)  # fmt: skip


def judge(
    method: bytes, target: bytes, authorization: bytes | None, length: int | None
) -> Refusal | str | None:
    """What to do once a request's headers are in: refuse it, look up the key it carries (the
    token is returned), or let it through (None)."""
    limit = settings.METRICS_MAX_BODY_BYTES
    if length is not None and length > limit:
        return too_large(limit)
    if method != b"POST" or target.split(b"?", 1)[0] not in INGEST_PATHS:
        return None
    token = bearer_token(authorization.decode("latin-1") if authorization else None)
    if token is None:
        return UNAUTHORIZED
    return None if keys.peek(token) is not UNKNOWN else token


class GuardedRequest(http_protocol.WebRequest):
    _refused = False
    _received = 0  # body bytes so far
    _linger_until = 0  # after a refusal: close once this many have come
    _wants_continue = False
    _read_deadline: asyncio.TimerHandle | None = None

    def connectionLost(self, reason: Any) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
        super().connectionLost(reason)

    def _read_too_slow(self) -> None:
        if self._refused:
            self._close()
        else:
            self._refuse(TOO_SLOW, close=True)

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        # The headers are in; the body must follow within METRICS_HTTP_READ_TIMEOUT_S, however
        # slowly its bytes trickle in (each byte would reset the channel's idle timeout).
        with contextlib.suppress(RuntimeError):  # no loop: the start-up self-check
            self._read_deadline = asyncio.get_running_loop().call_later(
                settings.METRICS_HTTP_READ_TIMEOUT_S, self._read_too_slow
            )
        authorization = self.requestHeaders.getRawHeaders(b"authorization", [None])[0]
        verdict = judge(channel._command, channel._path, authorization, length)
        if isinstance(verdict, Refusal):
            self._refuse(verdict)
        elif verdict is not None:
            self._look_up_key(verdict)
        super().gotLength(0 if self._refused else length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._refused:  # read and thrown away, for a while
            if self._received > self._linger_until:
                self._close()
            return
        if self._received > settings.METRICS_MAX_BODY_BYTES:
            self._refuse(too_large(settings.METRICS_MAX_BODY_BYTES))
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
        if self._refused:  # the answer is written; the body has been read
            self._close()
            return
        super().requestReceived(command, path, version)

    def _refuse(self, refusal: Refusal, *, close: bool = False) -> None:
        """Answer now; close now, or once the body has been read (within the linger bounds)."""
        if self._refused:
            return
        self._refused = True
        counters.incr(refusal.counter)
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the answer
        transport = self._transport()
        if transport is None:
            return
        transport.write(refusal.response())
        if close:
            self._close()
            return
        self._linger_until = self._received + settings.METRICS_MAX_BODY_BYTES
        with contextlib.suppress(RuntimeError):  # no loop: the start-up self-check, not a client
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        transport = self._transport()
        if transport is not None:
            transport.loseConnection()

    def _transport(self) -> Any:
        """The connection's transport, or None once Twisted let go of the request (it deletes
        `channel` when the connection is lost, which a key lookup may outlast)."""
        channel = getattr(self, "channel", None)
        return channel.transport if channel is not None else None

    def _look_up_key(self, token: str) -> None:
        """Stop reading until a database thread has looked the key up."""
        self.transport.pauseProducing()
        if self.requestHeaders.hasHeader(b"expect"):  # answer "100 Continue" ourselves, later
            self.requestHeaders.removeHeader(b"expect")
            self._wants_continue = True
        asyncio.ensure_future(db.run(keys.lookup, token)).add_done_callback(self._key_looked_up)

    def _key_looked_up(self, lookup: "asyncio.Future[Any]") -> None:
        transport = self._transport()
        if transport is None or not transport.connected:
            return  # the client went away meanwhile
        try:
            refusal = None if lookup.result() is not None else UNAUTHORIZED
        except DatabaseError:
            refusal = UNAVAILABLE
        if refusal is not None:
            # A client waiting for "100 Continue" sends no body: close. Otherwise drain it.
            self._refuse(refusal, close=self._wants_continue)
        elif self._wants_continue:
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        transport.resumeProducing()


# --- 2. the fast socket writer -------------------------------------------------------------------


@implementer(IPushProducer)
class DaphneWriter(SocketWriter):
    """Writes frames to a daphne WebSocket through autobahn, framing each frame once."""

    __slots__ = ("over_since", "protocol")
    fast = True

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.over_since = 0.0  # when the unsent data passed the bound; 0 while under it
        transport = protocol.transport
        # The upgrade leaves daphne's HTTP channel registered as the transport's producer.
        transport.unregisterProducer()
        transport.bufferSize = settings.METRICS_CLIENT_BUFFER_BYTES
        protocol.registerProducer(self, True)
        _release_handshake(protocol)

    # IPushProducer: the transport pauses us while its unsent data is over bufferSize (on every
    # write, so only the first call counts) and resumes us once it has all gone out.
    def pauseProducing(self) -> None:
        if not self.over_since:
            self.over_since = time.monotonic()

    def resumeProducing(self) -> None:
        self.over_since = 0.0

    def stopProducing(self) -> None:
        pass

    def send(self, frame: Frame) -> bool:
        protocol = self.protocol
        if protocol.state != WebSocketProtocol.STATE_OPEN:
            return True  # closing: daphne will tell the consumer; nothing to hold
        if self.over_since and time.monotonic() - self.over_since > SLOW_AFTER_SECONDS:
            return False
        if frame.prepared is None:
            frame.prepared = PreparedMessage(frame.data, False, False, True)
        protocol.sendPreparedMessage(frame.prepared)
        return True

    def abort(self) -> None:
        self.protocol.dropConnection(abort=True)

    def close(self, code: int) -> None:
        if self.protocol.state == WebSocketProtocol.STATE_OPEN:
            self.protocol.sendCloseFrame(code=code, isReply=False)


def daphne_writer(send: AsgiSend) -> DaphneWriter | None:
    protocol = _protocol_of(send)
    return DaphneWriter(protocol) if protocol is not None else None


def _protocol_of(send: Any) -> Any:
    """daphne's `partial(server.handle_reply, protocol)`, perhaps wrapped by Channels' session
    middleware (which keeps the original as `real_send`): the socket's protocol, or None."""
    for _ in range(8):
        if isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            return protocol if isinstance(protocol, WebSocketProtocol) else None
        send = getattr(getattr(send, "__self__", None), "real_send", None)
        if send is None:
            return None
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


# --- installing, after checking ------------------------------------------------------------------


def install() -> None:
    """Switch on what checks out; report what is on in metrics_app.server.features. Only when
    daphne's command line is what runs (it imports the application after its reactor is in)."""
    if "daphne.cli" not in sys.modules:
        return
    features.name, features.serving = "daphne", True
    features.request_guard = _install_guard()
    problem = _check_sockets()
    if problem is None:
        register_fast_path(daphne_writer)
        features.fast_sockets = True
    else:
        log.error("fast socket writer is OFF (%s): sockets are written through ASGI", problem)
    features.listen_backlog = _install_backlog()
    features.idle_timeout = _install_idle_timeout()
    _on_shutdown(lambda: get_hub().shutdown())
    # Every process offers to evaluate alerts; a lease elects one (metrics_app.alerts.evaluator).
    from twisted.internet import reactor

    reactor.callWhenRunning(evaluator.start_watching)


def _install_backlog() -> int | None:
    from daphne import server

    original = getattr(server, "serverFromString", None)
    if original is not endpoints.serverFromString:
        log.error("listen backlog stays at Twisted's 50: daphne.server no longer calls serverFromString")
        return None
    backlog = settings.METRICS_LISTEN_BACKLOG

    def with_backlog(reactor: Any, description: str) -> Any:
        kind = description.partition(":")[0]
        if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
            description = f"{description}:backlog={backlog}"
        return original(reactor, description)

    server.serverFromString = with_backlog
    return backlog


class IdleLimitedFactory(http_protocol.HTTPFactory):
    """daphne's HTTP factory with an idle timeout of METRICS_HTTP_IDLE_TIMEOUT_S instead of
    Twisted's 12 hours: a connection that sends nothing (before, between or inside requests)
    is closed."""

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        self.timeOut = settings.METRICS_HTTP_IDLE_TIMEOUT_S


def _install_idle_timeout() -> bool:
    from daphne import server

    if getattr(server, "HTTPFactory", None) is not http_protocol.HTTPFactory:
        log.error(
            "idle HTTP connections are kept 12 h: daphne.server no longer builds http_protocol.HTTPFactory"
        )
        return False
    server.HTTPFactory = IdleLimitedFactory
    return True


def _install_guard() -> bool:
    problem = _check_guard()
    if problem is None:
        original, http_protocol.WebRequest = http_protocol.WebRequest, GuardedRequest
        if http_protocol.HTTPFactory(_Server()).buildProtocol(None).requestFactory is not GuardedRequest:
            http_protocol.WebRequest = original
            problem = "daphne's HTTPFactory no longer builds requests from http_protocol.WebRequest"
    if problem is not None:
        log.error("request guard is OFF (%s): bodies are read before they are checked", problem)
        return False
    return True


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
    """Feed an oversized POST through a real Twisted HTTPChannel: it must be refused."""
    if not issubclass(http_protocol.WebRequest, http.Request) or not hasattr(http_protocol, "HTTPFactory"):
        return "daphne.http_protocol changed"
    factory = http_protocol.HTTPFactory(_Server())
    channel: Any = http.HTTPFactory.buildProtocol(factory, None)
    channel.requestFactory = GuardedRequest
    channel.timeOut = None  # no idle timer: that would need a running reactor
    transport = StringTransport()
    try:
        channel.makeConnection(transport)
        size = settings.METRICS_MAX_BODY_BYTES + 1
        channel.dataReceived(
            f"POST /api/metrics/ HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
        )
    except Exception as exc:  # any change in how Twisted drives a request lands here
        return f"{type(exc).__name__}: {exc}"
    finally:
        counters.incr("requests_too_large", -1)  # the check's own refusal is not a client's
    if not transport.value().startswith(b"HTTP/1.1 413"):
        return "an oversized body was not refused"
    return None


def _check_sockets() -> str | None:
    """daphne must still hand applications a send that leads to the protocol, and autobahn
    must still have what the writer calls."""
    needed = ("sendPreparedMessage", "sendCloseFrame", "dropConnection", "registerProducer", "STATE_OPEN")
    missing = [name for name in needed if not hasattr(ws_protocol.WebSocketProtocol, name)]
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
    return None


def _on_shutdown(action: Any) -> None:
    """Before the reactor stops: send what is pending, close sockets with 1001, and give the
    writes half a second to leave."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    def before_shutdown() -> Any:
        try:
            action()
        except Exception:  # Twisted would swallow it silently
            log.exception("live hub shutdown failed")
        return deferLater(reactor, 0.5, lambda: None)

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[arg-type]

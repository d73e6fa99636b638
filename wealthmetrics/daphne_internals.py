"""What wealthmetrics changes inside daphne and Twisted, in one module that checks itself.

daphne (through Twisted) reads a request's whole body, into memory or a temporary file,
before the application sees any of it: a stranger could make a process hold 800 MB. Nothing
in the ASGI application can prevent that, so the check moves to the moment the headers are
in, in `GuardedRequest`, daphne's request class with three refusals:

- a declared body over METRICS_MAX_BODY_BYTES: 413 at once, the connection closed, no byte of
  the body read;
- a body without a declared length (chunked): cut with 413 once it passes the limit;
- a POST to the ingest endpoint without a valid API key: 401 before the body is read. The key
  is checked against the process's key cache (metrics_app.auth); when the cache cannot tell,
  the socket is paused (nothing more is read) while a database thread looks the key up.

After a refusal the body is read and thrown away (never kept) until it ends, for at most
LINGER_SECONDS or METRICS_MAX_BODY_BYTES more bytes, then the connection closes: closing at
once, with the client still sending, would reset the connection and could lose the answer.

install() replaces daphne's WebRequest (daphne's HTTPFactory looks the name up each time it
builds a connection) after checking that Twisted still calls the hooks used here: a request
fed through a real HTTPChannel must be refused. If the check fails the guard stays off, an
error is logged, and `active()` (shown in /api/stats/) says so; Django's own limits still
apply then, after the body is read. Behind nginx, `client_max_body_size` does the same job
one hop earlier (README, "Running behind a proxy").
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import orjson
from daphne import http_protocol
from django.conf import settings
from django.db import DatabaseError
from twisted.internet.testing import StringTransport
from twisted.web import http

from metrics_app import counters, db
from metrics_app.auth import MISSING_KEY, UNKNOWN, bearer_token, keys

log = logging.getLogger(__name__)

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

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
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
        self.channel.transport.write(refusal.response())
        if close:
            self._close()
            return
        self._linger_until = self._received + settings.METRICS_MAX_BODY_BYTES
        with contextlib.suppress(RuntimeError):  # no loop: the start-up self-check, not a client
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        transport = self.channel.transport if self.channel is not None else None
        if transport is not None:
            transport.loseConnection()

    def _look_up_key(self, token: str) -> None:
        """Stop reading until a database thread has looked the key up."""
        self.transport.pauseProducing()
        if self.requestHeaders.hasHeader(b"expect"):  # answer "100 Continue" ourselves, later
            self.requestHeaders.removeHeader(b"expect")
            self._wants_continue = True
        asyncio.ensure_future(db.run(keys.lookup, token)).add_done_callback(self._key_looked_up)

    def _key_looked_up(self, lookup: "asyncio.Future[Any]") -> None:
        transport = self.channel.transport if self.channel is not None else None
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


_installed = False


def install() -> bool:
    """Put GuardedRequest in daphne's place, if Twisted still behaves as it expects."""
    global _installed
    if _installed:
        return True
    problem = _self_check()
    if problem is None:
        original, http_protocol.WebRequest = http_protocol.WebRequest, GuardedRequest
        if http_protocol.HTTPFactory(_Server()).buildProtocol(None).requestFactory is not GuardedRequest:
            http_protocol.WebRequest = original
            problem = "daphne's HTTPFactory no longer builds requests from http_protocol.WebRequest"
    if problem is not None:
        log.error("request guard is OFF (%s): bodies are read before they are checked", problem)
        return False
    _installed = True
    return True


def active() -> bool:
    return _installed and http_protocol.WebRequest is GuardedRequest


class _Server:
    """The little of daphne's Server that a request touches before it is processed."""

    def protocol_connected(self, protocol: object) -> None:
        pass

    def protocol_disconnected(self, protocol: object) -> None:
        pass


def _self_check() -> str | None:
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

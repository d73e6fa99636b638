"""Saying no: one type for every refusal, and each refusal's words defined once.

A refusal is written in one of three places, and has a renderer for each:
- `http_bytes()`: raw HTTP, by the request guard, before daphne has read the body and before
  any ASGI application exists (wealthmetrics.daphne_internals);
- `send_asgi()`: in front of Django, by the door and the ingest route;
- `response()`: a Django response, by views and middleware.

Each is counted under its `counter` when it is written (shown in /api/stats/).
"""

from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any, Final

import orjson
from django.http import HttpResponse

from metrics_app import counters

# Retry-After, in seconds, of the two kinds of "not now".
RETRY_AFTER_UNAVAILABLE_S: Final = 5  # the database is away: outages last seconds, not milliseconds
RETRY_AFTER_OVERLOADED_S: Final = 1  # the process is busy: shedding clears within a second

Detail = dict[str, Any]  # {"index": i or None, "field": "…", "message": "…"}


@dataclass(frozen=True)
class Refusal:
    """An answer that is not a success: status, code, message, details, headers, counter."""

    status: int
    code: str
    message: str
    counter: str | None = None
    details: tuple[Detail, ...] | None = None
    field: str | None = None  # the one request field at fault (query parameters)
    headers: tuple[tuple[str, str], ...] = ()

    def with_details(self, details: list[Detail]) -> "Refusal":
        return replace(self, details=tuple(details))

    def body(self) -> bytes:
        content: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details is not None:
            content["details"] = list(self.details)
        if self.field is not None:
            content["field"] = self.field
        return orjson.dumps(content)

    def count(self) -> None:
        if self.counter:
            counters.incr(self.counter)

    def response(self) -> HttpResponse:
        self.count()
        response = HttpResponse(self.body(), status=self.status, content_type="application/json")
        for name, value in self.headers:
            response[name] = value
        return response

    async def send_asgi(self, send: Any) -> None:
        self.count()
        body = self.body()
        await send({"type": "http.response.start", "status": self.status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in self.headers),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    def http_bytes(self) -> bytes:
        """The whole answer as raw HTTP/1.1, closing the connection."""
        self.count()
        body = self.body()
        head = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
                "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close",
                *(f"{name}: {value}" for name, value in self.headers)]  # fmt: skip
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# --- who ------------------------------------------------------------------------------------------

_BEARER: Final = (("WWW-Authenticate", 'Bearer realm="wealthmetrics"'),)


def unauthorized(message: str) -> Refusal:
    return Refusal(401, "unauthorized", message, "requests_unauthorized", headers=_BEARER)


NEEDS_KEY: Final = unauthorized("send a valid API key as 'Authorization: Bearer <key>'")
NEEDS_READER: Final = unauthorized("log in or send a valid API key")
NEEDS_PERSON: Final = unauthorized("log in first")
NEEDS_STAFF_OR_KEY: Final = unauthorized("send a valid API key, or log in as staff")
NEEDS_CREDENTIALS_FOR_BODY: Final = unauthorized("a request with a body needs a valid API key or a login")
INVALID_KEY: Final = unauthorized(
    "this API key is unknown or revoked: send a valid one as 'Authorization: Bearer <key>'"
)


def forbidden(message: str, field: str | None = None, details: list[Detail] | None = None) -> Refusal:
    return Refusal(
        403, "forbidden", message, "requests_forbidden", field=field,
        details=tuple(details) if details is not None else None,
    )  # fmt: skip


READ_ONLY_KEY: Final = forbidden("this key may only read; nothing was stored")
INGEST_ONLY_KEY: Final = forbidden("this key may only send records")
NOT_STAFF: Final = forbidden("log in as staff, or send an API key that reads")
FOREIGN_ORIGIN: Final = forbidden("a page of another origin may not open this socket")


def outside_sources(allowed: frozenset[str], field: str | None = "source") -> Refusal:
    return forbidden(f"this key may read only {', '.join(sorted(allowed))}", field)


def writes_outside_sources(allowed: frozenset[str], details: list[Detail]) -> Refusal:
    return forbidden(f"this key may write only {', '.join(sorted(allowed))}; nothing was stored",
                     details=details)  # fmt: skip


def rate_limited(wait: int) -> Refusal:
    return Refusal(429, "rate_limited", f"too many requests for this key; retry in {wait} s",
                   headers=(("Retry-After", str(wait)),))  # fmt: skip


# --- how much -------------------------------------------------------------------------------------


def too_large(message: str) -> Refusal:
    return Refusal(413, "too_large", message, "requests_too_large")


def body_over(limit: int) -> Refusal:
    return too_large(f"body exceeds the limit of {limit} bytes")


TOO_SLOW: Final = Refusal(
    408, "request_timeout", "the request body did not arrive in time", "requests_read_timeout"
)


# --- what -----------------------------------------------------------------------------------------


def invalid_request(message: str, field: str | None = None) -> Refusal:
    return Refusal(400, "invalid_request", message, "requests_invalid", field=field)


def invalid_header(name: str, problem: str) -> Refusal:
    return Refusal(400, "invalid_request", f"{name} {problem}", "requests_invalid",
                   details=({"index": None, "field": name, "message": problem},))  # fmt: skip


def invalid_metrics(message: str, details: list[Detail]) -> Refusal:
    return Refusal(400, "invalid_metrics", message, "requests_rejected", details=tuple(details))


def too_many_sources(first: dict[str, Any], held: int, limit: int) -> Refusal:
    """A batch that would take the installation past METRICS_MAX_SOURCES names."""
    message = (
        f"{first['name']!r} would be a new name: this installation holds {held:,} sources and "
        f"schedulers, and METRICS_MAX_SOURCES is {limit:,}; nothing was stored"
    )
    return Refusal(422, "too_many_sources", message, "requests_too_many_sources", details=(_new_name(first),))


def too_many_fields(index: int, source: str, name: str, held: int, limit: int) -> Refusal:
    """A batch that would take a source past METRICS_MAX_FIELDS_PER_SOURCE field names."""
    message = (
        f"{name!r} would be a new field of {source!r}, which has {held:,} and "
        f"METRICS_MAX_FIELDS_PER_SOURCE is {limit:,}; nothing was stored"
    )
    detail = {"index": index, "field": f"fields.{name}", "message": f"{source!r} has {held:,} fields already"}
    return Refusal(422, "too_many_fields", message, "requests_too_many_fields", details=(detail,))


def new_sources_too_fast(first: dict[str, Any], per_hour: int, wait: int) -> Refusal:
    """A batch that would take its key past METRICS_NEW_SOURCES_PER_KEY new names an hour."""
    message = (
        f"{first['new']} new names, {first['name']!r} among them: a key may add {per_hour:,} an "
        f"hour (METRICS_NEW_SOURCES_PER_KEY); nothing was stored, retry in {wait} s"
    )
    return Refusal(
        429, "new_sources_rate_limited", message, "requests_new_sources_limited",
        details=(_new_name(first),), headers=(("Retry-After", str(wait)),),
    )  # fmt: skip


def _new_name(first: dict[str, Any]) -> Detail:
    return {
        "index": first["index"],
        "field": first["field"],
        "message": f"{first['name']!r} is not a known name",
    }


KEY_REUSED: Final = Refusal(
    409, "idempotency_key_reused",
    "this Idempotency-Key came with a different body before; nothing was stored", "idempotent_conflicts",
    details=({"index": None, "field": "Idempotency-Key", "message": "already used with another body"},),
)  # fmt: skip


def method_not_allowed(*methods: str) -> Refusal:
    return Refusal(405, "method_not_allowed", f"use {' or '.join(methods)}",
                   headers=(("Allow", ", ".join(methods)),))  # fmt: skip


NOT_FOUND: Final = Refusal(404, "not_found", "there is nothing at this path", "requests_not_found")


# --- not now --------------------------------------------------------------------------------------

# Not counted here: where an outage is met, counters.problem() counts it and logs it (once in a while).
DATABASE_UNAVAILABLE: Final = Refusal(
    503, "database_unavailable", "the database is unreachable; retry later",
    headers=(("Retry-After", str(RETRY_AFTER_UNAVAILABLE_S)),),
)  # fmt: skip
UNJUDGED: Final = Refusal(
    503, "unavailable", "the server could not check this request's credentials; retry later",
    "requests_unjudged", headers=(("Retry-After", str(RETRY_AFTER_UNAVAILABLE_S)),),
)  # fmt: skip
# A handshake the process has no room for (the hub's own check, wealthmetrics.daphne_internals
# answers it before a socket is built): the process holds METRICS_MAX_CLIENTS, or the caller its
# METRICS_MAX_CLIENTS_PER_CREDENTIAL.
NO_ROOM: Final = {
    "full": Refusal(503, "too_many_connections", "this server holds all the live connections it may; "
                    "retry later", "websocket_refused_full",
                    headers=(("Retry-After", str(RETRY_AFTER_UNAVAILABLE_S)),)),
    "share": Refusal(429, "too_many_connections", "this key or person holds its share of this server's "
                     "live connections; close one, or retry later", "websocket_refused_share",
                     headers=(("Retry-After", str(RETRY_AFTER_UNAVAILABLE_S)),)),
}  # fmt: skip

OVERLOADED: Final = Refusal(
    503, "overloaded", "the server is busy; retry after a second", "requests_overloaded",
    headers=(("Retry-After", str(RETRY_AFTER_OVERLOADED_S)),),
)  # fmt: skip


def busy(message: str, field: str | None = None) -> Refusal:
    """Too many of one client's requests at once in this process (429, retry in a second)."""
    return Refusal(429, "too_many_requests", message, "requests_busy", field=field,
                   headers=(("Retry-After", str(RETRY_AFTER_OVERLOADED_S)),))  # fmt: skip

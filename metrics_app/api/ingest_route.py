"""POST /api/metrics/ without Django: the machine endpoint does only what it needs.

Django's request path (a thread per request, the middleware stack, the session and CSRF
machinery) cost about 7 ms of a core per request on the 2-core machine of the figures, where
a bare ASGI app answers in 0.5 ms; a fleet of scrapers sending a few records each made that
the whole cost. This route sits in front of Django (wealthmetrics.asgi) and, for POSTs to the
ingest path only, on the event loop:

1. checks the API key against the process's key cache (metrics_app.api.auth; a database
   thread only when the cache cannot tell);
2. reads the body up to METRICS_MAX_BODY_BYTES (daphne's request guard has already refused
   larger declared bodies and strangers before reading, when it is in use);
3. decodes and validates it (metrics_app.records);
4. hands the records to the group writer (metrics_app.ingest.writer) and awaits their commit;
5. answers exactly as docs/api.md says: 202, 400 with details, 401, 413, 503 with Retry-After.

Every other request, and other methods on this path, go on to Django.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from django.conf import settings
from django.db import DatabaseError

from metrics_app import counters, db
from metrics_app.api.auth import MISSING_KEY, KeyInfo, bearer_token, keys, rate_limit_message, rates
from metrics_app.ingest.idempotency import Claim, Earlier, key_problem
from metrics_app.ingest.writer import Stored, writer
from metrics_app.records import InvalidMetrics, Metric, channel_of, decode_batch

log = logging.getLogger(__name__)

PATHS: Final = ("/api/metrics/", "/api/metrics")
MAX_RECORDS_PER_REQUEST: Final = 1000
RETRY_AFTER_UNAVAILABLE_S: Final = 5
RETRY_AFTER_OVERLOADED_S: Final = 1


@dataclass(frozen=True)
class Answer:
    """A refusal of an ingest request: its status and JSON body (docs/api.md), and headers."""

    status: int
    code: str
    message: str
    extra: dict[str, Any] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()

    def content(self) -> bytes:
        return orjson.dumps({"error": self.code, "message": self.message, **self.extra})


def too_large(message: str) -> Answer:
    counters.incr("requests_too_large")
    return Answer(413, "too_large", message)


UNAUTHORIZED: Final = Answer(
    401, "unauthorized", MISSING_KEY, headers=(("WWW-Authenticate", 'Bearer realm="wealthmetrics"'),)
)
UNAVAILABLE: Final = Answer(
    503, "database_unavailable", "the database is unreachable; retry later",
    headers=(("Retry-After", str(RETRY_AFTER_UNAVAILABLE_S)),),
)  # fmt: skip
OVERLOADED: Final = Answer(
    503,
    "overloaded",
    "the server is busy; retry after a second",
    headers=(("Retry-After", str(RETRY_AFTER_OVERLOADED_S)),),
)


READ_ONLY: Final = Answer(403, "forbidden", "this key may only read; nothing was stored")
KEY_REUSED: Final = Answer(
    409, "idempotency_key_reused",
    "this Idempotency-Key came with a different body before; nothing was stored",
    {"details": [{"index": None, "field": "Idempotency-Key", "message": "already used with another body"}]},
)  # fmt: skip


def declared_size(declared: str | None) -> Answer | None:
    """A refusal for a Content-Length that is not a number or is over METRICS_MAX_BODY_BYTES."""
    limit = settings.METRICS_MAX_BODY_BYTES
    if declared is None or declared == "":
        return None
    if not declared.isdigit():
        return Answer(400, "invalid_request", "Content-Length is not a number")
    if int(declared) > limit:
        return too_large(f"body is {int(declared)} bytes; the limit is {limit}")
    return None


def checked_batch(body: bytes) -> Sequence[Metric] | Answer:
    """The body's records, valid, 1 to 1000 of them; or the refusal naming what is wrong."""
    try:
        records = decode_batch(body)
    except InvalidMetrics as exc:
        counters.incr("requests_rejected")
        details = [e.as_dict() for e in exc.errors]
        return Answer(
            400, "invalid_metrics", "some records are invalid; none were stored", {"details": details}
        )
    if not records:
        details = [{"index": None, "field": "metrics", "message": "must not be empty"}]
        return Answer(400, "invalid_metrics", "send 1 to 1000 records", {"details": details})
    if len(records) > MAX_RECORDS_PER_REQUEST:
        return too_large(f"{len(records)} records; at most {MAX_RECORDS_PER_REQUEST} per request")
    return records


class LoopPressure:
    """How late this process's event loop runs callbacks: the wait every request sees before
    any of its own work. Past METRICS_MAX_LOOP_LAG_MS the process is overloaded, and new
    ingest requests are refused at once (503 with Retry-After) rather than queued behind the
    others until every answer is late. Watching starts with the first question."""

    TICK_S: Final = 0.05

    def __init__(self) -> None:
        self.lag = 0.0  # seconds the last tick came late
        self._watching: asyncio.Task[None] | None = None

    def overloaded(self) -> bool:
        if self._watching is None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to watch
                self._watching = asyncio.get_running_loop().create_task(self._watch())
        return self.lag * 1000 > settings.METRICS_MAX_LOOP_LAG_MS

    async def _watch(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.TICK_S)
            self.lag = max(0.0, time.monotonic() - started - self.TICK_S)


pressure = LoopPressure()


class IngestRoute:
    def __init__(self, application: Any) -> None:
        self.application = application
        self._waiting = 0  # requests whose records wait for the writer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PATHS:
            return await self.application(scope, receive, send)
        answer = await self._ingest(scope, receive)
        if isinstance(answer, Answer):
            status, content, headers = answer.status, answer.content(), answer.headers
        else:
            status, content, headers = 202, orjson.dumps({"accepted": answer}), ()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in headers),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": content})

    async def _ingest(self, scope: dict[str, Any], receive: Any) -> Answer | int:
        """The refusal, or how many records were stored (or the first answer to its key)."""
        api_key = await _api_key(_header(scope, b"authorization"))
        if api_key is None:
            counters.incr("requests_unauthorized")
            return UNAUTHORIZED
        if not api_key.ingests:
            return READ_ONLY
        if wait := rates.wait(api_key.id):
            retry = (("Retry-After", str(wait)),)
            return Answer(429, "rate_limited", rate_limit_message(wait), headers=retry)
        if refused := declared_size(_header(scope, b"content-length")):
            return refused
        if pressure.overloaded():
            counters.incr("requests_overloaded")
            return OVERLOADED
        limit = settings.METRICS_MAX_BODY_BYTES
        body = await _read(receive, limit)
        if body is None:
            return too_large(f"body exceeds the limit of {limit} bytes")
        records = checked_batch(body)
        if isinstance(records, Answer):
            return records
        if refused := outside_sources(records, api_key):
            return refused
        claim = idempotency_claim(_header(scope, b"idempotency-key"), api_key, body)
        if isinstance(claim, Answer):
            return claim
        if self._waiting >= settings.METRICS_MAX_WAITING_REQUESTS:
            counters.incr("requests_overloaded")
            return OVERLOADED
        self._waiting += 1
        try:
            stored = await _stored_in_time(writer.submit(records, claim))
        except DatabaseError as exc:  # the group's transaction failed: nothing of it is stored
            counters.problem("database_unavailable", log, "database unavailable (ingest): %s", exc)
            return UNAVAILABLE
        finally:
            self._waiting -= 1
        if stored is None:
            counters.incr("requests_overloaded")
            return OVERLOADED
        return answered(stored, len(records))


def outside_sources(records: Sequence[Metric], api_key: KeyInfo) -> Answer | None:
    """403 naming the records of sources a key limited to some may not write, or None."""
    if api_key.sources is None:
        return None
    details = [
        {
            "index": index,
            "field": "scraperSource",
            "message": f"this key may not write {channel_of(record)!r}",
        }
        for index, record in enumerate(records)
        if channel_of(record) not in api_key.sources
    ]
    if not details:
        return None
    allowed = ", ".join(sorted(api_key.sources))
    return Answer(
        403, "forbidden", f"this key may write only {allowed}; nothing was stored", {"details": details}
    )


def idempotency_claim(value: str | None, api_key: KeyInfo, body: bytes) -> Claim | Answer | None:
    """The request's Idempotency-Key as a claim on its body, none, or the refusal of a bad one."""
    if value is None:
        return None
    if problem := key_problem(value):
        details = [{"index": None, "field": "Idempotency-Key", "message": problem}]
        return Answer(400, "invalid_request", f"Idempotency-Key {problem}", {"details": details})
    return Claim.of(api_key.id, value, body)


def answered(stored: Stored, count: int) -> Answer | int:
    """How many records a stored request may report (202), or 409 for a reused key."""
    if isinstance(stored, Earlier):
        counters.incr("idempotent_replays")
        return stored.accepted if stored.same_body else KEY_REUSED
    counters.incr("records_stored", count)
    return count


async def _stored_in_time(stored: "Future[Stored]") -> Stored | None:
    """Wait for the writer; None if no writer took the records within METRICS_INGEST_QUEUE_MS
    (they are withdrawn, never stored), so that an overloaded process answers within about a
    second instead of queueing ever longer. Raises the error of the records' transaction."""
    result = asyncio.wrap_future(stored)
    try:
        return await asyncio.wait_for(asyncio.shield(result), settings.METRICS_INGEST_QUEUE_MS / 1000)
    except TimeoutError:
        if stored.cancel():
            return None
        return await result  # a writer has them: they are stored (or fail) with their group


async def _api_key(authorization: str | None) -> KeyInfo | None:
    token = bearer_token(authorization)
    if token is None:
        return None
    known = keys.peek(token)
    return known if isinstance(known, KeyInfo) else await db.run(keys.lookup, token)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _read(receive: Any, limit: int) -> bytes | None:
    """The whole body, or None past `limit` bytes (the rest is not kept)."""
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)

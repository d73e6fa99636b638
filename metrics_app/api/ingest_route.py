"""POST /api/metrics/ without Django: the one ingest path, as production serves it.

Django's request path (a thread per request, the middleware stack, the session and CSRF
machinery) cost about 7 ms of a core per request on the 2-core machine of the figures, where
a bare ASGI app answers in 0.5 ms; a fleet of scrapers sending a few records each made that
the whole cost. This route sits behind the door (metrics_app.admission.asgi, which has judged
the key, its scope and rate and the declared size) and in front of Django, on the event loop:

1. refuses at once while the process is overloaded (503 with Retry-After);
2. reads the body up to METRICS_MAX_BODY_BYTES (daphne's request guard has already refused
   larger declared bodies and strangers before reading);
3. admits the batch: decode, validate, sources, idempotency (metrics_app.admission.ingest);
4. hands the records to the group writer (metrics_app.ingest.writer) and awaits their commit;
5. answers exactly as docs/api.md says: 202, or the refusal.

Every other request goes on to Django.
"""

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Future
from typing import Any, Final

import orjson
from django.conf import settings
from django.db import DatabaseError

from metrics_app import counters
from metrics_app.admission import ingest, refusals
from metrics_app.admission.door import INGEST_PATHS
from metrics_app.admission.refusals import Refusal
from metrics_app.ingest.writer import Stored, writer

log = logging.getLogger(__name__)


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
        if scope["type"] != "http" or scope["path"] not in INGEST_PATHS:
            return await self.application(scope, receive, send)
        if scope["method"] != "POST":
            return await refusals.method_not_allowed("POST").send_asgi(send)
        answer = await self._ingest(scope, receive)
        if isinstance(answer, Refusal):
            return await answer.send_asgi(send)
        content = orjson.dumps({"accepted": answer})
        await send({"type": "http.response.start", "status": 202, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": content})

    async def _ingest(self, scope: dict[str, Any], receive: Any) -> Refusal | int:
        """The refusal, or how many records were stored (or the first answer to its key)."""
        if pressure.overloaded():
            return refusals.OVERLOADED
        limit = settings.METRICS_MAX_BODY_BYTES
        body = await _read(receive, limit)
        if body is None:
            return refusals.body_over(limit)
        caller = scope["caller"]
        batch = ingest.admit(caller, body, _header(scope, b"idempotency-key"))
        if isinstance(batch, Refusal):
            return batch
        if refused := await ingest.new_names(batch, caller):
            return refused
        if self._waiting >= settings.METRICS_MAX_WAITING_REQUESTS:
            return refusals.OVERLOADED
        self._waiting += 1
        try:
            stored = await _stored_in_time(writer.submit(batch.records, batch.claim))
        except DatabaseError as exc:  # the group's transaction failed: nothing of it is stored
            counters.problem("database_unavailable", log, "database unavailable (ingest): %s", exc)
            return refusals.DATABASE_UNAVAILABLE
        finally:
            self._waiting -= 1
        if stored is None:
            return refusals.OVERLOADED
        return ingest.answered(stored, len(batch.records))


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

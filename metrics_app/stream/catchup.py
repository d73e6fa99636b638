"""Catching up: what a socket gets besides the live stream (docs/websocket.md, "Gaps and resync").

- `history(source)`: the ≤ HISTORY_SIZE newest records after a subscribe, shared by every
  subscriber of a source for a second (a reconnect storm costs one query per source);
- `missed(source, since, budget)`: a resync, every record stored after the ids a client
  holds, in pages, bounded per ask across its sources and per credential over time, read on
  a thread of its own so that resyncs queue behind each other, never ahead of key lookups;
- `newest_if_quick()`: the newest stored ids, for a `subscribed` message, when the database
  can say at once.
All three read through metrics_app.db's threads and raise HistoryUnavailable when the
database is away; the live stream goes on meanwhile.
"""

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, Final, TypeVar

import orjson
from django.conf import settings
from django.db import DatabaseError

from metrics_app import counters, db
from metrics_app.history import reads
from metrics_app.records import WILDCARD
from metrics_app.stream.sockets import Frame

T = TypeVar("T")

HISTORY_SIZE: Final = 100
# Concurrent subscribers of a source share one load, and its result serves later ones for a
# second. At most HISTORY_CACHE_SIZE sources are kept, least recently used first out.
HISTORY_CACHE_SECONDS: Final = 1.0
HISTORY_CACHE_SIZE: Final = 256
RESYNC_PAGE: Final = 1000  # records per history message of a resync
NEWEST_WAIT_S: Final = 0.2
# A credential's resyncs draw on a bucket of METRICS_RESYNC_MAX_RECORDS records, refilled over
# this many seconds: a burst of reconnects is answered in full, a loop of asks is not.
RESYNC_REFILL_S: Final = 10.0

_resync_thread = db.own_thread("resync")


class Budget:
    """The records one resync ask may still bring, across all its sources."""

    def __init__(self, left: int) -> None:
        self.left = max(0, left)

    def take(self, records: int) -> None:
        self.left -= records


class HistoryUnavailable(Exception):
    """A source's history cannot be read now (the database is away)."""

    def __init__(self, source: str, resync: bool) -> None:
        super().__init__(f"history of {source!r} cannot be read now")
        self.source = source
        self.resync = resync  # it answers a resync: the client asks again for what it missed


class CatchUp:
    def __init__(self) -> None:
        # Channels with stored records (None until loaded): a name not among them has no
        # history, and costs no query however many made-up names are subscribed to.
        self.known: set[str] | None = None
        self._history: OrderedDict[str, tuple[float, Frame]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Frame]] = {}
        self._newest: tuple[float, asyncio.Future[dict[str, int]]] | None = None
        self._buckets: dict[str, tuple[float, float]] = {}  # credential -> (records left, when)

    async def load_known(self) -> None:
        self.known = await db.run(reads.known_channels)

    def saw(self, channel: str) -> None:
        if self.known is not None:
            self.known.add(channel)

    # --- history after a subscribe -------------------------------------------------------

    async def history(self, source: str) -> Frame:
        """The ≤ HISTORY_SIZE newest stored records of a source ('*': of all), oldest first."""
        if source != WILDCARD and self.known is not None and source not in self.known:
            return _frame({"type": "history", "scraperSource": source, "metrics": []})
        cached = self._history.get(source)
        if cached is not None and time.monotonic() - cached[0] < HISTORY_CACHE_SECONDS:
            self._history.move_to_end(source)
            return cached[1]
        loading = self._loading.get(source)
        if loading is None:
            loading = self._loading[source] = asyncio.ensure_future(self._load_history(source))
            loading.add_done_callback(lambda done: self._loaded(source, done))
        # shielded: one subscriber going away must not cancel the load the others wait for
        return await _readable(source, asyncio.shield(loading))

    def _loaded(self, source: str, done: "asyncio.Future[Frame]") -> None:
        self._loading.pop(source, None)
        if not done.cancelled():
            done.exception()  # retrieved here, so a failure no one waited for is not logged as lost

    async def _load_history(self, source: str) -> Frame:
        counters.incr("history_loads")
        channel = None if source == WILDCARD else source
        metrics = await db.run(reads.recent_metrics, channel, HISTORY_SIZE)
        frame = _frame({"type": "history", "scraperSource": source, "metrics": metrics})
        self._history[source] = (time.monotonic(), frame)
        self._history.move_to_end(source)
        while len(self._history) > HISTORY_CACHE_SIZE:
            self._history.popitem(last=False)
        return frame

    # --- a resync ------------------------------------------------------------------------

    def budget(self, credential: str) -> Budget:
        """What one ask of this credential may bring: METRICS_RESYNC_MAX_RECORDS, or what is
        left of its bucket if less, taken from the bucket now (so that the credential's asks
        running at once share it); `refund` gives back what the ask did not spend."""
        left = self._left(credential)
        granted = min(settings.METRICS_RESYNC_MAX_RECORDS, int(left))
        self._buckets[credential] = (left - granted, time.monotonic())
        return Budget(granted)

    def refund(self, credential: str, budget: Budget) -> None:
        self._buckets[credential] = (self._left(credential) + budget.left, time.monotonic())
        budget.left = 0

    def _left(self, credential: str) -> float:
        limit = settings.METRICS_RESYNC_MAX_RECORDS
        left, then = self._buckets.get(credential, (limit, time.monotonic()))
        return min(limit, left + (time.monotonic() - then) * limit / RESYNC_REFILL_S)

    async def missed(
        self, source: str, page: int, scheduler: int, budget: Budget
    ) -> AsyncGenerator[Frame, None]:
        """Every record of the source stored after the ids `page` and `scheduler`, in pages of
        RESYNC_PAGE, within the ask's `budget` (then `truncated`: reload from the HTTP API).
        The consumer takes the next page only once the socket has taken the last (a slow
        link is paced, not sent more than it may hold)."""
        channel = None if source == WILDCARD else source
        while True:
            size = max(0, min(RESYNC_PAGE, budget.left))
            read = db.run(reads.metrics_after, channel, page, scheduler, size, thread=_resync_thread)
            metrics, more = await _readable(source, read, resync=True) if size else ([], True)
            budget.take(len(metrics))
            message = {"type": "history", "scraperSource": source, "metrics": metrics, "resync": True,
                       "more": more, "truncated": False}  # fmt: skip
            data = orjson.dumps(message)
            truncated = more and budget.left <= 0
            if truncated:
                data = orjson.dumps({**message, "more": False, "truncated": True})
            yield Frame(data)
            if not more or truncated:
                counters.incr("resyncs")
                return
            page = max([page, *(m["id"] for m in metrics if m["type"] != "scheduler_run")])
            scheduler = max([scheduler, *(m["id"] for m in metrics if m["type"] == "scheduler_run")])

    # --- the newest ids ------------------------------------------------------------------

    async def newest_if_quick(self) -> dict[str, int] | None:
        """The newest stored ids, or None when the database cannot say at once (an outage must
        not hold a `subscribed` answer; the client then resyncs from what it holds)."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._newest_ids()), NEWEST_WAIT_S)
        except (TimeoutError, DatabaseError):
            return None

    async def _newest_ids(self) -> dict[str, int]:
        """reads.newest_ids, read at most once a second for every subscriber of the process (a
        reconnect storm subscribes thousands at once)."""
        newest = self._newest
        if (
            newest is None
            or time.monotonic() - newest[0] > 1.0
            or (newest[1].done() and newest[1].exception() is not None)
        ):
            newest = self._newest = (time.monotonic(), asyncio.ensure_future(db.run(reads.newest_ids)))
        return await asyncio.shield(newest[1])


async def _readable(source: str, read: Awaitable[T], resync: bool = False) -> T:
    try:
        return await read
    except DatabaseError:
        counters.incr("history_unavailable")
        raise HistoryUnavailable(source, resync) from None


def _frame(message: dict[str, Any]) -> Frame:
    return Frame(orjson.dumps(message))

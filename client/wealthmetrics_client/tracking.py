"""Tracking helpers: time a navigation, a scrape or a scheduler run and record it, in a few lines.

Every helper records through a sink: a MetricRecorder, such as the collector or a MetricsClient.
Pass `sink=` explicitly, or leave it out and the default sink is used: the one given to
set_sink(); else a MetricsClient built from WEALTHMETRICS_URL and WEALTHMETRICS_API_KEY; else,
inside a wealthmetrics process (metrics_app.tracking), the in-process collector.

A helper that sees an exception records the failure with the exception as its error and
re-raises it: tracking never swallows a scraper's errors.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from wealthmetrics_client.client import MetricsClient
from wealthmetrics_client.recorder import MetricRecorder, run
from wealthmetrics_client.schema import Schema, count_fields

__all__ = [
    "NavigationFailed",
    "Sink",
    "get_sink",
    "goto_with_retries",
    "goto_with_retries_async",
    "run",
    "scrape_page",
    "set_fallback_sink",
    "set_sink",
    "track_navigation",
    "track_scheduler_run",
    "track_scrape",
    "tracked_scheduler_run",
    "tracked_scrape",
]

log = logging.getLogger("wealthmetrics_client")
T = TypeVar("T")
P = ParamSpec("P")
MAX_ERROR = 500


# Anything with the three record methods: the collector, a MetricsClient, or your own.
Sink = MetricRecorder[Any]


# --- choosing the sink ------------------------------------------------------------------------

_sink: Sink | None = None
_fallback: Sink | None = None
_sink_lock = threading.Lock()


def set_sink(sink: Sink | None) -> None:
    """Record through this sink from now on (None: back to configuration)."""
    global _sink
    _sink = sink


def set_fallback_sink(sink: Sink) -> None:
    """The sink used when nothing else is configured (wealthmetrics sets its collector)."""
    global _fallback
    _fallback = sink


def get_sink() -> Sink:
    global _sink
    with _sink_lock:
        if _sink is not None:
            return _sink
        url, key = os.environ.get("WEALTHMETRICS_URL"), os.environ.get("WEALTHMETRICS_API_KEY")
        if url and key:
            _sink = MetricsClient(url, key)
            return _sink
        if _fallback is not None:
            return _fallback
    raise RuntimeError(
        "no metrics sink: set WEALTHMETRICS_URL and WEALTHMETRICS_API_KEY, call set_sink(), or pass sink="
    )


def describe(exc: BaseException) -> str:
    """An exception as a record's error: its type and message, cut to the API's 500 chars."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR]


@contextmanager
def _kept_quiet() -> Iterator[None]:
    """While a scraper's exception is on its way up, a failure to record it (a bad source
    name, a closed client) is logged instead of replacing it."""
    try:
        yield
    except Exception:
        log.exception("wealthmetrics: could not record a failure")


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))


# --- context managers -------------------------------------------------------------------------


@dataclass
class Navigation:
    url: str
    retries: int = 0
    waited_ms: int = 0  # time between attempts, left out of the navigation's duration
    status: int | None = None  # the final response's HTTP status, when there was one

    def retry(self) -> None:
        """Count one more attempt (call it before each retry)."""
        self.retries += 1


@dataclass
class Scrape:
    url: str
    items: int = 0
    bytes: int = 0
    fields: dict[str, dict[str, int]] | None = None  # per field: filled, invalid (count_fields)
    entities: list[str] | None = None  # the entities the page refreshed (ticker symbols)


@dataclass
class SchedulerRun:
    items_processed: int = 0
    run_id: str | None = None  # the runId its records carry


@contextmanager
def _timed(record: Callable[[int, bool, str | None], object]) -> Iterator[None]:
    """Time the block, then record(duration_ms, success, error); an exception is recorded as
    the failure and raised again."""
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        with _kept_quiet():
            record(_elapsed_ms(started), False, describe(exc))
        raise
    record(_elapsed_ms(started), True, None)


@contextmanager
def track_navigation(scraper_source: str, url: str, *, sink: Sink | None = None) -> Iterator[Navigation]:
    """Time the block as one navigation of `url`; count retries on the handle."""
    sink = sink or get_sink()
    navigation = Navigation(url)

    def record(duration_ms: int, success: bool, error: str | None) -> object:
        return sink.record_page_navigation(
            scraper_source=scraper_source, url=navigation.url,
            navigation_duration_ms=max(0, duration_ms - navigation.waited_ms),
            retry_count=navigation.retries, success=success, error=error, http_status=navigation.status,
        )  # fmt: skip

    with _timed(record):
        yield navigation


@contextmanager
def track_scrape(scraper_source: str, url: str, *, sink: Sink | None = None) -> Iterator[Scrape]:
    """Time the block as one scrape of `url`; set `items` and `bytes` on the handle."""
    sink = sink or get_sink()
    scrape = Scrape(url)

    def record(duration_ms: int, success: bool, error: str | None) -> object:
        return sink.record_page_scrape(
            scraper_source=scraper_source, url=scrape.url, scrape_duration_ms=duration_ms,
            items_extracted=scrape.items, data_size=scrape.bytes, success=success, error=error,
            fields=scrape.fields, entities=scrape.entities,
        )  # fmt: skip

    with _timed(record):
        yield scrape


@contextmanager
def track_scheduler_run(
    scheduler_name: str, *, scraper_source: str | None = None, sink: Sink | None = None
) -> Iterator[SchedulerRun]:
    """Time the block as one run of a scheduled job; set `items_processed` on the handle.

    The run gets a new `runId` (on the handle), which every record made inside the block
    carries, its own scheduler_run record last: that record ends the run."""
    sink = sink or get_sink()
    with run() as run_id:
        handle = SchedulerRun(run_id=run_id)

        def record(duration_ms: int, success: bool, error: str | None) -> object:
            return sink.record_scheduler_metric(
                scheduler_name=scheduler_name, scraper_source=scraper_source,
                execution_duration_ms=duration_ms, items_processed=handle.items_processed,
                success=success, error=error,
            )  # fmt: skip

        with _timed(record):
            yield handle


# --- decorators -------------------------------------------------------------------------------


def tracked_scrape(
    scraper_source: str, *, sink: Sink | None = None
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate `parse(url, content, ...)`: one scrape per call; items are len(result), bytes
    len(content)."""

    def decorate(parse: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(parse)
        def wrapper(url: str, content: str | bytes, *args: Any, **kwargs: Any) -> T:
            with track_scrape(scraper_source, url, sink=sink) as scrape:
                scrape.bytes = _size_of(content)
                result = parse(url, content, *args, **kwargs)
                scrape.items = _count_of(result)
            return result

        return wrapper

    return decorate


def tracked_scheduler_run(
    scheduler_name: str, *, scraper_source: str | None = None, sink: Sink | None = None
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate a job: one scheduler run per call; items processed are the int it returns or
    len() of what it returns."""

    def decorate(job: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(job)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with track_scheduler_run(scheduler_name, scraper_source=scraper_source, sink=sink) as run:
                result = job(*args, **kwargs)
                run.items_processed = _count_of(result)
            return result

        return wrapper

    return decorate


# --- a navigation with retries, for any client --------------------------------------------------


class NavigationFailed(Exception):
    """A navigation answered with an HTTP error status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status

    @property
    def retryable(self) -> bool:
        """Server errors, timeouts (408) and rate limits (429) may pass; any other 4xx (404,
        403, …) will be the same on the next try."""
        return self.status >= 500 or self.status in (408, 429)


def _worth_retrying(exc: Exception) -> bool:
    return not isinstance(exc, NavigationFailed) or exc.retryable


def _open(target: Any, url: str, kwargs: dict[str, Any]) -> Any:
    if hasattr(target, "goto"):  # a Playwright (or Pyppeteer) page
        return target.goto(url, **kwargs)
    if hasattr(target, "get"):  # an httpx or requests client/session
        return target.get(url, **kwargs)
    if callable(target):
        return target(url, **kwargs)
    raise TypeError(f"cannot navigate with {type(target).__name__}: give a page, a session or a callable")


def _check(response: Any, navigation: Navigation) -> Any:
    """The response, its status noted on the navigation; an HTTP error status raises."""
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        status = getattr(response, "status", None)
    navigation.status = status if isinstance(status, int) and 100 <= status <= 599 else None
    if isinstance(status, int) and status >= 400:
        raise NavigationFailed(status)
    return response


def goto_with_retries(
    target: Any,
    url: str,
    *,
    scraper_source: str,
    retries: int = 2,
    backoff: float = 0.5,
    sink: Sink | None = None,
    **kwargs: Any,
) -> Any:
    """Open `url` with a Playwright page (`goto`), an httpx/requests session (`get`) or any
    callable taking the URL, up to `retries` more times on an exception, a 5xx, 408 or 429
    (waiting backoff, twice that, …; other 4xx fail at once). Records one navigation with the
    retry count and the time spent navigating (not waiting between tries), and returns the
    response; after the last failure records it and re-raises."""
    with track_navigation(scraper_source, url, sink=sink) as navigation:
        for attempt in range(retries + 1):
            try:
                return _check(_open(target, url, kwargs), navigation)
            except Exception as exc:
                if attempt == retries or not _worth_retrying(exc):
                    raise
                navigation.retry()
                started = time.perf_counter()
                time.sleep(backoff * 2**attempt)
                navigation.waited_ms += _elapsed_ms(started)
    raise AssertionError("unreachable")  # the loop returns or raises


async def goto_with_retries_async(
    target: Any,
    url: str,
    *,
    scraper_source: str,
    retries: int = 2,
    backoff: float = 0.5,
    sink: Sink | None = None,
    **kwargs: Any,
) -> Any:
    """goto_with_retries for async Playwright pages and httpx.AsyncClient (or any coroutine
    function taking the URL)."""
    with track_navigation(scraper_source, url, sink=sink) as navigation:
        for attempt in range(retries + 1):
            try:
                return _check(await _open(target, url, kwargs), navigation)
            except Exception as exc:
                if attempt == retries or not _worth_retrying(exc):
                    raise
                navigation.retry()
                started = time.perf_counter()
                await asyncio.sleep(backoff * 2**attempt)
                navigation.waited_ms += _elapsed_ms(started)
    raise AssertionError("unreachable")


def scrape_page(
    scraper_source: str,
    url: str,
    content: str | bytes,
    parse: Callable[[str | bytes], T],
    *,
    schema: Schema | None = None,
    entity_key: str | None = None,
    sink: Sink | None = None,
) -> T:
    """Run `parse(content)` as one tracked scrape: its time, len() of what it returns as the
    items, the content's size in bytes, and, with a `schema`, how many items have each field
    filled and valid (wealthmetrics_client.schema); with an `entity_key` ("symbol"), the
    entities the page refreshed: that key (or attribute) of each item that has one. Returns
    what parse returned."""
    with track_scrape(scraper_source, url, sink=sink) as scrape:
        scrape.bytes = _size_of(content)
        result = parse(content)
        scrape.items = _count_of(result)
        if schema is not None:
            scrape.fields = count_fields(_items_of(result), schema)
        if entity_key is not None:
            scrape.entities = _entities_of(_items_of(result), entity_key)
    return result


def _entities_of(items: Iterable[Any], key: str) -> list[str]:
    """Each item's `key` (a dict's key or an object's attribute), once, where it is a
    non-empty string."""
    found: dict[str, None] = {}
    for item in items:
        value = item.get(key) if isinstance(item, dict) else getattr(item, key, None)
        if isinstance(value, str) and value:
            found[value] = None
    return list(found)


def _items_of(result: Any) -> Iterable[Any]:
    """The items parse returned, to count fields over: a list (or any sized collection),
    never a generator the caller would then find empty."""
    if (
        isinstance(result, Sized)
        and isinstance(result, Iterable)
        and not isinstance(result, (str, bytes, dict))
    ):
        return result
    raise TypeError(f"to count fields, parse must return a list of items, not {type(result).__name__}")


def _size_of(content: str | bytes) -> int:
    return len(content.encode()) if isinstance(content, str) else len(content)


def _count_of(result: Any) -> int:
    if isinstance(result, bool):
        return 0
    if isinstance(result, int):
        return max(0, result)
    return len(result) if isinstance(result, Sized) else 0

"""The three record methods of the in-process API (docs/integration.md), in one place for every sink.

The in-process collector and MetricsClient both subclass MetricRecorder: the methods turn
keyword arguments into the API's record and hand it to the sink's own `record()`, which
validates and queues it (the collector) or encodes and buffers it (the client).
"""

import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

R = TypeVar("R")

# The run (one crawl) the records being made belong to: set by run() and track_scheduler_run().
# A context variable, so each asyncio task started inside a run carries it, and concurrent runs
# in other tasks or threads keep their own; a thread started inside a run carries it when
# started through contextvars.copy_context().run (as asyncio.to_thread does).
current_run: ContextVar[str | None] = ContextVar("wealthmetrics_run", default=None)


def new_run_id(at: float | None = None) -> str:
    """A run id that sorts by time and will not repeat: 20261207T010000-3fa9c1 (for a run
    starting now, or at `at`, seconds since the epoch)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(at)) + "-" + secrets.token_hex(3)


@contextmanager
def run(run_id: str | None = None) -> Iterator[str]:
    """Every record made inside the block carries `runId` (a new one unless given)."""
    token = current_run.set(run_id or new_run_id())
    try:
        yield current_run.get() or ""
    finally:
        current_run.reset(token)


def _in_run(metric: dict[str, Any]) -> dict[str, Any]:
    if (run_id := current_run.get()) is not None:
        metric["runId"] = run_id
    return metric


class MetricRecorder(ABC, Generic[R]):
    @abstractmethod
    def record(self, metric: dict[str, Any]) -> R:
        """Take one record in the API's JSON shape (camelCase keys)."""

    def record_page_navigation(
        self,
        *,
        scraper_source: str,
        url: str,
        navigation_duration_ms: int,
        retry_count: int = 0,
        success: bool = True,
        error: str | None = None,
        http_status: int | None = None,
    ) -> R:
        metric = {
            "type": "page_navigation", "scraperSource": scraper_source, "url": url,
            "navigationDurationMs": navigation_duration_ms, "retryCount": retry_count,
            "success": success, "error": error,
        }  # fmt: skip
        if http_status is not None:  # left out when unknown: the record is then as it always was
            metric["httpStatus"] = http_status
        return self.record(_in_run(metric))

    def record_page_scrape(
        self,
        *,
        scraper_source: str,
        url: str,
        scrape_duration_ms: int,
        items_extracted: int,
        data_size: int = 0,
        success: bool = True,
        error: str | None = None,
        fields: Mapping[str, Mapping[str, int]] | None = None,
        entities: Iterable[str] | None = None,
    ) -> R:
        """`fields`: per field name, {"filled": n, "invalid": m} over the page's items;
        `entities`: the entities (ticker symbols) whose values the page refreshed."""
        metric = {
            "type": "page_scrape", "scraperSource": scraper_source, "url": url,
            "scrapeDurationMs": scrape_duration_ms, "itemsExtracted": items_extracted,
            "dataSize": data_size, "success": success, "error": error,
        }  # fmt: skip
        if fields is not None:
            metric["fields"] = {name: dict(count) for name, count in fields.items()}
        if entities is not None:
            metric["entities"] = list(dict.fromkeys(entities))  # each once, in order
        return self.record(_in_run(metric))

    def record_scheduler_metric(
        self,
        *,
        scheduler_name: str,
        execution_duration_ms: int,
        items_processed: int = 0,
        scraper_source: str | None = None,
        success: bool = True,
        error: str | None = None,
    ) -> R:
        return self.record(_in_run({
            "type": "scheduler_run", "schedulerName": scheduler_name,
            "executionDurationMs": execution_duration_ms, "itemsProcessed": items_processed,
            "scraperSource": scraper_source, "success": success, "error": error,
        }))  # fmt: skip

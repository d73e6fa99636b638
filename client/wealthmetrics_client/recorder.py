"""The three record methods of the in-process API (docs/integration.md), in one place for every sink.

The in-process collector and MetricsClient both subclass MetricRecorder: the methods turn
keyword arguments into the API's record and hand it to the sink's own `record()`, which
validates and queues it (the collector) or encodes and buffers it (the client).
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

R = TypeVar("R")


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
        record = {
            "type": "page_navigation", "scraperSource": scraper_source, "url": url,
            "navigationDurationMs": navigation_duration_ms, "retryCount": retry_count,
            "success": success, "error": error,
        }  # fmt: skip
        if http_status is not None:  # the optional fields are left out, not sent as null
            record["httpStatus"] = http_status
        return self.record(record)

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
    ) -> R:
        record: dict[str, Any] = {
            "type": "page_scrape", "scraperSource": scraper_source, "url": url,
            "scrapeDurationMs": scrape_duration_ms, "itemsExtracted": items_extracted,
            "dataSize": data_size, "success": success, "error": error,
        }  # fmt: skip
        if fields is not None:  # {"price": {"filled": 18, "invalid": 2}} (wealthmetrics_client.schema)
            record["fields"] = {name: dict(counts) for name, counts in fields.items()}
        return self.record(record)

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
        return self.record({
            "type": "scheduler_run", "schedulerName": scheduler_name,
            "executionDurationMs": execution_duration_ms, "itemsProcessed": items_processed,
            "scraperSource": scraper_source, "success": success, "error": error,
        })  # fmt: skip

"""Valid wire records to start tests from."""

from typing import Any

from metrics_app.records import now_ms


def navigation(**overrides: Any) -> dict[str, Any]:
    return {
        "type": "page_navigation", "scraperSource": "robinhood", "url": "https://robinhood.com/stocks/AAPL",
        "navigationDurationMs": 420, "retryCount": 1, "success": True, "error": None,
        "recordedAt": now_ms(), **overrides,
    }  # fmt: skip


def scrape(**overrides: Any) -> dict[str, Any]:
    return {
        "type": "page_scrape", "scraperSource": "cnbc", "url": "https://www.cnbc.com/quotes/AAPL",
        "scrapeDurationMs": 130, "itemsExtracted": 25, "dataSize": 48_000, "success": True,
        "error": None, "recordedAt": now_ms(), **overrides,
    }  # fmt: skip


def scheduler_run(**overrides: Any) -> dict[str, Any]:
    return {
        "type": "scheduler_run", "schedulerName": "nightly-prices", "executionDurationMs": 5300,
        "itemsProcessed": 120, "scraperSource": None, "success": True, "error": None,
        "recordedAt": now_ms(), **overrides,
    }  # fmt: skip

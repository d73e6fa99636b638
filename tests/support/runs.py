"""Runs of wire records to start tests from (docs/api.md, "Runs")."""

from typing import Any

from tests.support.records import navigation, scheduler_run, scrape


def crawl(
    run_id: str, source: str, at: int, *, pages: int = 10, items: int = 50, failed: int = 0,
    took_ms: int = 60_000, scheduler: str | None = "quotes-refresh", price_filled: float = 1.0,
) -> list[dict[str, Any]]:  # fmt: skip
    """One run's records: a navigation and a scrape per page (the last `failed` navigations
    fail, with no scrape), then the scheduler run that ends it. `items` is spread over the
    scraped pages; `price` is filled on that share of them."""
    records = []
    scraped = pages - failed
    for page in range(pages):
        when = at + page * took_ms // max(1, pages)
        ok = page < scraped
        records.append(navigation(scraperSource=source, runId=run_id, recordedAt=when, success=ok,
                                  httpStatus=200 if ok else 503, error=None if ok else "HTTP 503"))  # fmt: skip
        if ok:
            share = items // scraped + (1 if page < items % scraped else 0)
            filled = round(share * price_filled)
            records.append(scrape(scraperSource=source, runId=run_id, recordedAt=when + 100, itemsExtracted=share,
                                  dataSize=1000, fields={"price": {"filled": filled, "invalid": 0}}))  # fmt: skip
    if scheduler is not None:
        records.append(scheduler_run(schedulerName=scheduler, scraperSource=source, runId=run_id,
                                     recordedAt=at + took_ms, executionDurationMs=took_ms, itemsProcessed=items))  # fmt: skip
    return records

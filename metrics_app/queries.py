"""Reading records back: recent records of a channel, and the dashboard summary."""

import re
from datetime import timedelta
from typing import Any

from django.db.models import Avg, Count, Max, Q, QuerySet, Sum
from django.utils import timezone

from metrics_app.models import PagePerformance, SchedulerMetric
from metrics_app.schema import SOURCE_PATTERN, epoch_ms, to_wire

_SOURCE = re.compile(SOURCE_PATTERN)
SUMMARY_WINDOW = timedelta(hours=24)


def is_source_name(value: str) -> bool:
    return _SOURCE.match(value) is not None


def scheduler_runs_of(channel: str) -> QuerySet[SchedulerMetric]:
    """Scheduler runs broadcast on a channel: those of the source, or a bare scheduler's own."""
    return SchedulerMetric.objects.filter(
        Q(scraper_source=channel) | Q(scraper_source__isnull=True, scheduler_name=channel)
    )


def recent_metrics(channel: str | None, limit: int) -> list[dict[str, Any]]:
    """The last `limit` records of a channel (every channel when None), oldest first."""
    pages = PagePerformance.objects.all()
    runs = SchedulerMetric.objects.all()
    if channel is not None:
        pages = pages.filter(scraper_source=channel)
        runs = scheduler_runs_of(channel)
    newest: list[PagePerformance | SchedulerMetric] = [
        *pages.order_by("-created_at", "-id")[:limit],
        *runs.order_by("-created_at", "-id")[:limit],
    ]
    newest.sort(key=lambda row: (row.created_at, row.id), reverse=True)
    return [to_wire(row.to_metric()) for row in reversed(newest[:limit])]


def dashboard_summary() -> dict[str, Any]:
    """Totals per source over the last 24 hours, from the database."""
    since = timezone.now() - SUMMARY_WINDOW
    sources: dict[str, dict[str, Any]] = {}
    page_totals = (
        PagePerformance.objects.filter(created_at__gte=since)
        .values("scraper_source")
        .annotate(
            records=Count("id"),
            successes=Count("id", filter=Q(success=True)),
            navigations=Count("id", filter=Q(metric_type=PagePerformance.MetricType.NAVIGATION)),
            scrapes=Count("id", filter=Q(metric_type=PagePerformance.MetricType.SCRAPE)),
            avg_navigation_ms=Avg("navigation_duration_ms"),
            avg_scrape_ms=Avg("scrape_duration_ms"),
            items=Sum("items_extracted"),
            retries=Sum("retry_count"),
            last=Max("created_at"),
        )
    )
    for row in page_totals:
        sources[row["scraper_source"]] = {
            "records": row["records"],
            "successCount": row["successes"],
            "navigations": row["navigations"],
            "scrapes": row["scrapes"],
            "schedulerRuns": 0,
            "avgNavigationDurationMs": _round(row["avg_navigation_ms"]),
            "avgScrapeDurationMs": _round(row["avg_scrape_ms"]),
            "itemsExtracted": row["items"] or 0,
            "retries": row["retries"] or 0,
            "lastRecordedAt": epoch_ms(row["last"]),
        }
    run_totals = (
        SchedulerMetric.objects.filter(created_at__gte=since)
        .values("scraper_source", "scheduler_name")
        .annotate(runs=Count("id"), successes=Count("id", filter=Q(success=True)), last=Max("created_at"))
    )
    for row in run_totals:
        channel = row["scraper_source"] or row["scheduler_name"]
        entry = sources.setdefault(channel, _empty_source())
        entry["records"] += row["runs"]
        entry["schedulerRuns"] += row["runs"]
        entry["successCount"] += row["successes"]
        entry["lastRecordedAt"] = max(entry["lastRecordedAt"] or 0, epoch_ms(row["last"]))
    for entry in sources.values():
        entry["successRate"] = _round(100.0 * entry["successCount"] / entry["records"])
    records = sum(e["records"] for e in sources.values())
    successes = sum(e["successCount"] for e in sources.values())
    return {
        "windowSeconds": int(SUMMARY_WINDOW.total_seconds()),
        "totals": {
            "records": records,
            "successCount": successes,
            "successRate": _round(100.0 * successes / records) if records else None,
            "itemsExtracted": sum(e["itemsExtracted"] for e in sources.values()),
            "activeSources": len(sources),
        },
        "sources": dict(sorted(sources.items())),
    }


def _empty_source() -> dict[str, Any]:
    return {
        "records": 0,
        "successCount": 0,
        "navigations": 0,
        "scrapes": 0,
        "schedulerRuns": 0,
        "avgNavigationDurationMs": None,
        "avgScrapeDurationMs": None,
        "itemsExtracted": 0,
        "retries": 0,
        "lastRecordedAt": None,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)

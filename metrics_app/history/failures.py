"""Failed records in a range: newest first, searchable, and grouped by what went wrong
(GET /api/metrics/failures/).

Error messages are grouped once normalised, so that the URL, the numbers and the ids in a
message don't make every failure a group of its own: "HTTP 503 for https://x/quote/AAPL after
3 tries" and "HTTP 503 for https://x/quote/MSFT after 2 tries" are one group. Groups are built
from the newest GROUP_SAMPLE failures of the range (the answer says when there were more).
"""

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from django.db.models import Q, QuerySet

from metrics_app.models import PagePerformance, SchedulerMetric
from metrics_app.records import epoch_ms

PER_PAGE: Final = 50
GROUP_SAMPLE: Final = 5000
TOP_GROUPS: Final = 20

_NOISE: Final = [
    (re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE), "<url>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE), "<id>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{12,}\b", re.IGNORECASE), "<id>"),
    # A number, or a word with a digit in it ("503", "30000ms", "price-93d3fa"); an error code
    # joined by underscores ("ERR_HTTP2_PROTOCOL_ERROR") is one word and stays.
    (re.compile(r"\d+\.\d+|\b(?=[0-9a-z]*\d)[0-9a-z]+\b", re.IGNORECASE), "<n>"),
    (re.compile(r"\s+"), " "),
]


def normalise(error: str | None) -> str:
    """An error message without what varies from one occurrence to the next."""
    text = (error or "").strip() or "failed (no error message)"
    for pattern, replacement in _NOISE:
        text = pattern.sub(replacement, text)
    return text[:200]


@dataclass
class Group:
    source: str
    message: str
    count: int = 0
    first: int = 0
    last: int = 0
    example: dict[str, Any] = field(default_factory=dict)


def failures(
    start: datetime, end: datetime, source: str | None = None, query: str = "", page: int = 1
) -> dict[str, Any]:
    pages, runs = _failed(start, end, source, query)
    total = pages.count() + runs.count()
    newest = _newest(pages, runs, GROUP_SAMPLE)
    groups: dict[tuple[str, str], Group] = {}
    for failure in newest:
        key = (failure["source"], normalise(failure["error"]))
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(
                *key, first=failure["recordedAt"], last=failure["recordedAt"], example=failure
            )
        group.count += 1
        group.first = min(group.first, failure["recordedAt"])
    top = sorted(groups.values(), key=lambda g: (-g.count, -g.last))[:TOP_GROUPS]
    first = (page - 1) * PER_PAGE
    return {
        "total": total,
        "page": page,
        "pages": max(1, -(-total // PER_PAGE)),
        "perPage": PER_PAGE,
        "failures": newest[first : first + PER_PAGE] if first + PER_PAGE <= GROUP_SAMPLE else
        _newest(pages, runs, first + PER_PAGE)[first:],
        "groups": [
            {"source": g.source, "message": g.message, "count": g.count,
             "firstSeen": g.first, "lastSeen": g.last, "example": g.example}
            for g in top
        ],
        "groupedFrom": len(newest),
    }  # fmt: skip


def _failed(
    start: datetime, end: datetime, source: str | None, query: str
) -> tuple[QuerySet[PagePerformance], QuerySet[SchedulerMetric]]:
    pages = PagePerformance.objects.filter(success=False, created_at__gte=start, created_at__lt=end)
    runs = SchedulerMetric.objects.filter(success=False, created_at__gte=start, created_at__lt=end)
    if source is not None:
        pages, runs = pages.filter(scraper_source=source), runs.on_channel(source)
    if query:
        pages = pages.filter(Q(error__icontains=query) | Q(page_url__icontains=query))
        runs = runs.filter(Q(error__icontains=query) | Q(scheduler_name__icontains=query))
    return pages, runs


def _newest(
    pages: QuerySet[PagePerformance], runs: QuerySet[SchedulerMetric], limit: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"source": s, "type": kind, "url": url, "error": error, "recordedAt": epoch_ms(at), "id": pk}
        for pk, s, kind, url, error, at in pages.order_by("-created_at", "-id").values_list(
            "id", "scraper_source", "metric_type", "page_url", "error", "created_at"
        )[:limit]
    ] + [
        {"source": s or name, "type": "scheduler_run", "url": None, "schedulerName": name, "error": error,
         "recordedAt": epoch_ms(at), "id": pk}
        for pk, s, name, error, at in runs.order_by("-created_at", "-id").values_list(
            "id", "scraper_source", "scheduler_name", "error", "created_at"
        )[:limit]
    ]  # fmt: skip
    rows.sort(key=lambda row: row["recordedAt"], reverse=True)
    return rows[:limit]

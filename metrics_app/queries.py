"""Reading records back: recent records of a channel, and the dashboard summary."""

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Case, Count, F, IntegerField, Max, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Ceil, Coalesce, Least, Ln, Trunc, TruncMinute
from django.utils import timezone

from metrics_app import histogram
from metrics_app.livestats import WINDOW_MINUTES, LiveStats
from metrics_app.models import PagePerformance, SchedulerMetric
from metrics_app.schema import SOURCE_PATTERN, epoch_ms, to_wire

_SOURCE = re.compile(SOURCE_PATTERN)


def is_source_name(value: str) -> bool:
    return _SOURCE.match(value) is not None


def scheduler_runs_of(channel: str) -> QuerySet[SchedulerMetric]:
    """Scheduler runs broadcast on a channel: those of the source, or a bare scheduler's own."""
    return SchedulerMetric.objects.filter(_on_channel(channel))


def _on_channel(channel: str) -> Q:
    return Q(scraper_source=channel) | Q(scraper_source__isnull=True, scheduler_name=channel)


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
    return [to_wire(row.to_metric(), row.id) for row in reversed(newest[:limit])]


def _duration_bucket(duration: Any) -> Case:
    """histogram.bucket_of, in SQL (Django provides LN and CEILING on SQLite too)."""
    log_growth = math.log(histogram.GROWTH)
    return Case(
        When(**{f"{duration}__lte": 0}, then=Value(0)),
        default=Least(
            Value(histogram.BUCKETS - 1),
            Value(1) + Ceil(Ln(F(duration)) / Value(log_growth) - Value(1e-9)),
        ),
        output_field=IntegerField(),
    )


def load_live_stats(stats: LiveStats) -> int:
    """Fill a LiveStats with the last hour, aggregated in the database per source, type,
    minute and duration bucket (a few thousand rows, however many records). Returns the
    number of records it covers."""
    since = timezone.now() - timedelta(minutes=WINDOW_MINUTES)
    minute = TruncMinute("created_at", tzinfo=UTC)
    pages = (
        PagePerformance.objects.filter(created_at__gte=since)
        .annotate(duration=Coalesce("navigation_duration_ms", "scrape_duration_ms", 0))
        .annotate(minute=minute, bucket=_duration_bucket("duration"))
        .values("scraper_source", "metric_type", "minute", "bucket")
        .annotate(
            n=Count("id"),
            ok=Count("id", filter=Q(success=True)),
            total=Sum("duration"),
            items=Coalesce(Sum("items_extracted"), 0),
            retries=Coalesce(Sum("retry_count"), 0),
            last=Max("created_at"),
        )
    )
    runs = (
        SchedulerMetric.objects.filter(created_at__gte=since)
        .annotate(channel=Coalesce("scraper_source", "scheduler_name"))
        .annotate(minute=minute, bucket=_duration_bucket("execution_duration_ms"))
        .values("channel", "minute", "bucket")
        .annotate(
            n=Count("id"),
            ok=Count("id", filter=Q(success=True)),
            total=Sum("execution_duration_ms"),
            items=Sum("items_processed"),
            last=Max("created_at"),
        )
    )
    covered = 0
    for row in pages:
        stats.add_aggregate(
            row["scraper_source"], row["metric_type"], epoch_ms(row["minute"]) // 60_000, row["bucket"],
            row["n"], row["ok"], row["total"], row["items"], row["retries"], epoch_ms(row["last"]),
        )  # fmt: skip
        covered += row["n"]
    for row in runs:
        stats.add_aggregate(
            row["channel"], "scheduler_run", epoch_ms(row["minute"]) // 60_000, row["bucket"],
            row["n"], row["ok"], row["total"], row["items"], 0, epoch_ms(row["last"]),
        )  # fmt: skip
        covered += row["n"]
    return covered


def dashboard_snapshot() -> dict[str, Any]:
    """The `metrics:update` data, computed from the database (GET /api/metrics/summary/)."""
    stats = LiveStats()
    load_live_stats(stats)
    return stats.snapshot()


HISTORY_BUCKETS = {"minute": "minute", "hour": "hour", "day": "day"}
MAX_HISTORY_BUCKETS = 20_000


def history(
    channel: str | None, metric_type: str | None, start: datetime, end: datetime, bucket: str
) -> list[dict[str, Any]]:
    """Counts, success, average and p95 duration and items per time bucket, oldest first.

    Read from the detailed rows, aggregated in the database per bucket and duration histogram
    bucket; days are cut in TIME_ZONE, minutes and hours in UTC."""
    tz = timezone.get_current_timezone() if bucket == "day" else UTC
    slot = Trunc("created_at", HISTORY_BUCKETS[bucket], tzinfo=tz)
    merged: dict[datetime, dict[str, Any]] = {}

    def add(rows: Any) -> None:
        for row in rows:
            entry = merged.setdefault(
                row["slot"], {"count": 0, "ok": 0, "total": 0, "items": 0, "histogram": {}}
            )
            entry["count"] += row["n"]
            entry["ok"] += row["ok"]
            entry["total"] += row["total"] or 0
            entry["items"] += row["items"] or 0
            entry["histogram"][row["hb"]] = entry["histogram"].get(row["hb"], 0) + row["n"]

    if metric_type != "scheduler_run":
        pages = PagePerformance.objects.filter(created_at__gte=start, created_at__lt=end)
        if channel is not None:
            pages = pages.filter(scraper_source=channel)
        if metric_type is not None:
            pages = pages.filter(metric_type=metric_type)
        add(
            pages.annotate(duration=Coalesce("navigation_duration_ms", "scrape_duration_ms", 0))
            .annotate(slot=slot, hb=_duration_bucket("duration"))
            .values("slot", "hb")
            .annotate(
                n=Count("id"),
                ok=Count("id", filter=Q(success=True)),
                total=Sum("duration"),
                items=Sum("items_extracted"),
            )
        )
    if metric_type in (None, "scheduler_run"):
        runs = SchedulerMetric.objects.filter(created_at__gte=start, created_at__lt=end)
        if channel is not None:
            runs = runs.filter(_on_channel(channel))
        add(
            runs.annotate(slot=slot, hb=_duration_bucket("execution_duration_ms"))
            .values("slot", "hb")
            .annotate(
                n=Count("id"),
                ok=Count("id", filter=Q(success=True)),
                total=Sum("execution_duration_ms"),
                items=Sum("items_processed"),
            )
        )
    return [
        {
            "start": slot_start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "count": entry["count"],
            "successCount": entry["ok"],
            "avgDurationMs": round(entry["total"] / entry["count"], 1),
            "p95DurationMs": histogram.percentile(entry["histogram"], 0.95),
            "itemsExtracted": entry["items"],
        }
        for slot_start, entry in sorted(merged.items())
    ]

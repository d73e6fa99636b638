"""Reads: a channel's recent records, time-bucketed history, and the channels that exist. The
API views and the live hub call these."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from metrics_app import histogram
from metrics_app.history import rollups
from metrics_app.models import (
    HourlyRollup,
    PagePerformance,
    SchedulerMetric,
    page_duration,
)
from metrics_app.records import DURATION_FIELD, ITEMS_FIELD, epoch_ms, to_wire


def known_channels() -> set[str]:
    """Every channel that has ever stored a record (one index scan of the rollups' key)."""
    return set(HourlyRollup.objects.order_by().values_list("scraper_source", flat=True).distinct())


def recent_metrics(channel: str | None, limit: int) -> list[dict[str, Any]]:
    """The last `limit` records of a channel (every channel when None), oldest first."""
    pages = PagePerformance.objects.all()
    runs = SchedulerMetric.objects.all()
    if channel is not None:
        pages = pages.filter(scraper_source=channel)
        runs = SchedulerMetric.objects.on_channel(channel)
    newest: list[PagePerformance | SchedulerMetric] = [
        *pages.order_by("-created_at", "-id")[:limit],
        *runs.order_by("-created_at", "-id")[:limit],
    ]
    newest.sort(key=lambda row: (row.created_at, row.id), reverse=True)
    return [to_wire(row.to_metric(), row.id) for row in reversed(newest[:limit])]


HISTORY_BUCKETS = ("minute", "hour", "day")
MAX_HISTORY_BUCKETS = 20_000


def history(
    channel: str | None, metric_type: str | None, start: datetime, end: datetime, bucket: str
) -> list[dict[str, Any]]:
    """Counts, success, average and p95 duration and items per time bucket, oldest first.

    Hour and day buckets read the hourly rollups (whole buckets that overlap start … end; days
    and hours cut in TIME_ZONE). Minute buckets read the detailed rows, so they exist only
    inside retention; they are cut in UTC."""
    if bucket == "minute":
        slots = _minute_history(channel, metric_type, start, end)
    else:
        slots = _rollup_history(channel, metric_type, start, end, by_day=bucket == "day")
    return [
        {
            "start": slot_start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "count": slot.count,
            "successCount": slot.ok,
            "avgDurationMs": round(slot.total / slot.count, 1),
            "p95DurationMs": histogram.percentile(slot.histogram, 0.95),
            "itemsExtracted": slot.items,
        }
        for slot_start, slot in sorted(slots.items())
    ]


@dataclass
class _Slot:
    count: int = 0
    ok: int = 0
    total: int = 0
    items: int = 0
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, n: int, ok: int, total: int | None, items: int | None, bucket: int) -> None:
        self.count += n
        self.ok += ok
        self.total += total or 0
        self.items += items or 0
        self.histogram[bucket] = self.histogram.get(bucket, 0) + n


def _rollup_history(
    channel: str | None, metric_type: str | None, start: datetime, end: datetime, by_day: bool
) -> dict[datetime, _Slot]:
    shift_ms = rollups.hour_shift_seconds() * 1000
    first_hour = rollups.hour_start_ms(epoch_ms(start), shift_ms)
    if by_day:
        local_start = timezone.localtime(start)
        first_hour = min(first_hour, epoch_ms(local_start.replace(hour=0, minute=0, second=0, microsecond=0)))
    rows = HourlyRollup.objects.filter(hour__gte=datetime.fromtimestamp(first_hour / 1000, UTC), hour__lt=end)
    if channel is not None:
        rows = rows.filter(scraper_source=channel)
    if metric_type is not None:
        rows = rows.filter(metric_type=metric_type)
    slots: dict[datetime, _Slot] = {}
    day_of: dict[datetime, datetime] = {}
    for row in (
        rows.order_by()
        .values("hour", "duration_bucket")
        .annotate(n=Sum("records"), ok=Sum("successes"), total=Sum("duration_sum"), items=Sum("items_sum"))
    ):
        slot_start = row["hour"]
        if by_day:
            if slot_start not in day_of:
                local = timezone.localtime(slot_start)
                day_of[slot_start] = local.replace(hour=0, minute=0, second=0, microsecond=0)
            slot_start = day_of[slot_start]
        slot = slots.setdefault(slot_start, _Slot())
        slot.add(row["n"], row["ok"], row["total"], row["items"], row["duration_bucket"])
    return slots


def _minute_history(
    channel: str | None, metric_type: str | None, start: datetime, end: datetime
) -> dict[datetime, _Slot]:
    slots: dict[datetime, _Slot] = {}
    per_minute: list[Any] = []
    if metric_type != "scheduler_run":
        pages = PagePerformance.objects.filter(created_at__gte=start, created_at__lt=end)
        if channel is not None:
            pages = pages.filter(scraper_source=channel)
        if metric_type is not None:
            pages = pages.filter(metric_type=metric_type)
        per_minute.append(_per_minute_and_bucket(pages, page_duration(), ITEMS_FIELD["page_scrape"]))
    if metric_type in (None, "scheduler_run"):
        runs = SchedulerMetric.objects.filter(created_at__gte=start, created_at__lt=end)
        if channel is not None:
            runs = runs.on_channel(channel)
        per_minute.append(
            _per_minute_and_bucket(runs, F(DURATION_FIELD["scheduler_run"]), ITEMS_FIELD["scheduler_run"])
        )
    for rows in per_minute:
        for row in rows:
            slots.setdefault(row["slot"], _Slot()).add(
                row["n"], row["ok"], row["total"], row["items"], row["hb"]
            )
    return slots


def _per_minute_and_bucket(rows: QuerySet[Any], duration: Any, items: str) -> QuerySet[Any]:
    """Count, successes, total duration and items per UTC minute and duration bucket."""
    return (
        rows.annotate(duration=duration)
        .annotate(slot=TruncMinute("created_at", tzinfo=UTC), hb=histogram.bucket_expression("duration"))
        .values("slot", "hb")
        .annotate(
            n=Count("id"),
            ok=Count("id", filter=Q(success=True)),
            total=Sum("duration"),
            items=Sum(items),
        )
    )

"""Reads: a channel's recent records, time-bucketed history, and the channels that exist. The
API views and the live hub call these."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.db.models import Count, F, Q, QuerySet, Sum, Value
from django.db.models.functions import TruncMinute
from django.utils import timezone

from metrics_app import histogram
from metrics_app.history import rollups
from metrics_app.models import (
    HourlyRollup,
    PagePerformance,
    SchedulerMetric,
    page_duration,
    scheduler_channel,
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


@dataclass
class Slot:
    """The records of one series in one time bucket: sums, and the duration histogram."""

    count: int = 0
    ok: int = 0
    total: int = 0  # duration
    items: int = 0
    retries: int = 0
    size: int = 0  # bytes
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, n: int, ok: int, total: int | None, items: int | None, retries: int | None,
            size: int | None, bucket: int) -> None:  # fmt: skip
        self.count += n
        self.ok += ok
        self.total += total or 0
        self.items += items or 0
        self.retries += retries or 0
        self.size += size or 0
        self.histogram[bucket] = self.histogram.get(bucket, 0) + n

    def merge(self, other: "Slot") -> None:
        self.count += other.count
        self.ok += other.ok
        self.total += other.total
        self.items += other.items
        self.retries += other.retries
        self.size += other.size
        self.histogram = histogram.merge([self.histogram, other.histogram])

    def as_bucket(self, start: datetime) -> dict[str, Any]:
        """The shape of a history bucket (docs/api.md)."""
        return {
            "start": iso(start),
            "count": self.count,
            "successCount": self.ok,
            "avgDurationMs": round(self.total / self.count, 1) if self.count else None,
            "p50DurationMs": histogram.percentile(self.histogram, 0.50),
            "p95DurationMs": histogram.percentile(self.histogram, 0.95),
            "p99DurationMs": histogram.percentile(self.histogram, 0.99),
            "itemsExtracted": self.items,
            "retries": self.retries,
            "dataSize": self.size,
        }


class SeriesKey(NamedTuple):
    """One series: a channel's records of one type (and, for runs, one scheduler)."""

    channel: str
    type: str
    scheduler: str  # "" for pages


Series = dict[SeriesKey, dict[datetime, Slot]]


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def history(
    channel: str | None, metric_type: str | None, start: datetime, end: datetime, bucket: str
) -> list[dict[str, Any]]:
    """Counts, success, average and percentile durations, items, retries and bytes per time
    bucket, oldest first, over every series that matches.

    Hour and day buckets read the hourly rollups (whole buckets that overlap start … end; days
    and hours cut in TIME_ZONE). Minute buckets read the detailed rows, so they exist only
    inside retention; they are cut in UTC."""
    merged: dict[datetime, Slot] = {}
    for slots in series(start, end, bucket, channel, metric_type).values():
        for slot_start, slot in slots.items():
            merged.setdefault(slot_start, Slot()).merge(slot)
    return [slot.as_bucket(slot_start) for slot_start, slot in sorted(merged.items())]


def series(
    start: datetime, end: datetime, bucket: str, channel: str | None = None, metric_type: str | None = None
) -> Series:
    """Every series' buckets in start … end: from the rollups for hours and days, from the
    detailed rows for minutes."""
    if bucket == "minute":
        return _minute_series(start, end, channel, metric_type)
    return _rollup_series(start, end, channel, metric_type, by_day=bucket == "day")


def _rollup_series(
    start: datetime, end: datetime, channel: str | None, metric_type: str | None, by_day: bool
) -> Series:
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
    found: Series = {}
    day_of: dict[datetime, datetime] = {}
    for row in rows.order_by().values_list(
        "scraper_source", "metric_type", "scheduler_name", "hour", "duration_bucket", "records", "successes",
        "duration_sum", "items_sum", "retry_sum", "bytes_sum",
    ):  # fmt: skip
        source, kind, scheduler, slot_start, bucket, *sums = row
        if by_day:
            if slot_start not in day_of:
                local = timezone.localtime(slot_start)
                day_of[slot_start] = local.replace(hour=0, minute=0, second=0, microsecond=0)
            slot_start = day_of[slot_start]
        n, ok, total, items, retries, size = sums
        slots = found.setdefault(SeriesKey(source, kind, scheduler), {})
        slots.setdefault(slot_start, Slot()).add(n, ok, total, items, retries, size, bucket)
    return found


def _minute_series(start: datetime, end: datetime, channel: str | None, metric_type: str | None) -> Series:
    found: Series = {}
    if metric_type != "scheduler_run":
        pages = PagePerformance.objects.filter(created_at__gte=start, created_at__lt=end)
        if channel is not None:
            pages = pages.filter(scraper_source=channel)
        if metric_type is not None:
            pages = pages.filter(metric_type=metric_type)
        page_keys = {"channel": F("scraper_source"), "kind": F("metric_type"), "scheduler": Value("")}
        page_sums = {"items": ITEMS_FIELD["page_scrape"], "retries": "retry_count", "size": "data_size"}
        _collect(found, _per_minute_and_bucket(pages, page_duration(), page_keys, page_sums))
    if metric_type in (None, "scheduler_run"):
        runs = SchedulerMetric.objects.filter(created_at__gte=start, created_at__lt=end)
        if channel is not None:
            runs = runs.on_channel(channel)
        run_keys = {
            "channel": scheduler_channel(),
            "kind": Value("scheduler_run"),
            "scheduler": F("scheduler_name"),
        }
        run_sums: dict[str, str | None] = {
            "items": ITEMS_FIELD["scheduler_run"],
            "retries": None,
            "size": None,
        }
        _collect(found, _per_minute_and_bucket(runs, F(DURATION_FIELD["scheduler_run"]), run_keys, run_sums))
    return found


def _collect(found: Series, rows: QuerySet[Any]) -> None:
    for row in rows:
        slots = found.setdefault(SeriesKey(row["channel"], row["kind"], row["scheduler"]), {})
        slots.setdefault(row["slot"], Slot()).add(
            row["n"], row["ok"], row["total"], row["items"], row["retries"], row["size"], row["hb"]
        )


def _per_minute_and_bucket(
    rows: QuerySet[Any], duration: Any, keys: Mapping[str, Any], sums: Mapping[str, str | None]
) -> QuerySet[Any]:
    """Count, successes, total duration and `sums` (a column, or None for a constant 0) per
    series (`keys`), UTC minute and duration bucket."""
    totals = {name: Sum(column) if column else Value(0) for name, column in sums.items()}
    return (
        rows.annotate(duration=duration, **keys)
        .annotate(slot=TruncMinute("created_at", tzinfo=UTC), hb=histogram.bucket_expression("duration"))
        .values(*keys, "slot", "hb")
        .annotate(n=Count("id"), ok=Count("id", filter=Q(success=True)), total=Sum("duration"), **totals)
    )

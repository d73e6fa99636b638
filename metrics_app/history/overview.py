"""The analytics page's state for a range, in one read (GET /api/metrics/overview/).

Everything the page draws for "the last 30 minutes / hour / 24 hours / 7 days", for every
channel or one: the whole time axis (every bucket from the start of the range to now, the last
one still filling), each channel's series per type aligned to it (None where nothing came),
each channel's totals over the range and over the range before (the trends compare the two),
every channel seen in the range with when it last reported (a source that went silent stays
listed), and each scheduler's runs, its usual period and its last run.

Hours read the rollups, minutes the detailed rows (metrics_app.history.reads.series).
"""

import itertools
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.db.models import Max
from django.utils import timezone

from metrics_app import rollups
from metrics_app.history.reads import Series, series, totals
from metrics_app.models import PagePerformance, SchedulerMetric
from metrics_app.records import epoch_ms
from metrics_app.tally import Tally, iso, merged


@dataclass(frozen=True)
class Range:
    name: str
    span: timedelta
    bucket: str  # "minute" or "hour"
    label: str  # "last 7 days"

    @property
    def step(self) -> timedelta:
        return timedelta(minutes=1) if self.bucket == "minute" else timedelta(hours=1)

    @property
    def bucket_label(self) -> str:
        return f"per {self.bucket}"


RANGES: Final = {
    r.name: r
    for r in (
        Range("live", timedelta(minutes=30), "minute", "last 30 minutes"),
        Range("1h", timedelta(hours=1), "minute", "last hour"),
        Range("24h", timedelta(hours=24), "hour", "last 24 hours"),
        Range("7d", timedelta(days=7), "hour", "last 7 days"),
    )
}
# A scheduler with more runs than this in the range is drawn from its buckets, not run by run.
MAX_RUN_POINTS: Final = 1000
PERIOD_RUNS: Final = 10  # a scheduler's usual period: the median gap of its last runs


def axis(span: Range, now: datetime) -> list[datetime]:
    """Every bucket start of the range, oldest first; the last bucket holds `now`."""
    if span.bucket == "minute":
        last = now.replace(second=0, microsecond=0)
    else:
        shift_ms = rollups.hour_shift_seconds() * 1000
        last = datetime.fromtimestamp(rollups.hour_start_ms(epoch_ms(now), shift_ms) / 1000, UTC)
    count = int(span.span / span.step)
    return [last - span.step * (count - 1 - n) for n in range(count)]


def overview(range_name: str, source: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    span = RANGES[range_name]
    now = now or timezone.now()
    starts = axis(span, now)
    start, end = starts[0], now + timedelta(microseconds=1)
    found = series(start, end, span.bucket, source)
    before = totals(start - span.span, start, span.bucket, source)
    channels = sorted({key.channel for key in found})
    return {
        "range": {
            "name": span.name,
            "label": span.label,
            "bucket": span.bucket,
            "bucketLabel": span.bucket_label,
            "from": iso(start),
            "to": iso(now),
        },
        "axis": [iso(s) for s in starts],
        "channels": [_channel(name, found) for name in channels],
        "totals": _totals(found.values()),
        "sources": {
            name: {
                **_totals(slots for key, slots in found.items() if key.channel == name),
                "previous": _summed(before.get(name, Tally())),
            }
            for name in channels
        },
        "previous": _totals([before]),
        "series": _aligned(found, starts),
        "schedulers": _schedulers(found, start, end),
    }


def _channel(name: str, found: Series) -> dict[str, Any]:
    """A channel seen in the range: a scraper (it has pages) or a bare scheduler, and when its
    last record was made, to the millisecond (one index lookup per table)."""
    keys = [key for key in found if key.channel == name]
    bare_scheduler = all(key.type == "scheduler_run" and key.scheduler == name for key in keys)
    last = [
        PagePerformance.objects.filter(scraper_source=name).aggregate(last=Max("created_at"))["last"],
        SchedulerMetric.objects.on_channel(name).aggregate(last=Max("created_at"))["last"],
    ]
    seen = [value for value in last if value is not None]
    return {
        "name": name,
        "kind": "scheduler" if bare_scheduler else "scraper",
        "types": sorted({key.type for key in keys}),
        "lastRecordedAt": epoch_ms(max(seen)) if seen else None,
    }


def _totals(groups: Any) -> dict[str, Any]:
    """Sums and percentiles over every bucket of the given series."""
    return _summed(merged(slot for slots in groups for slot in slots.values()))


def _summed(slot: Tally) -> dict[str, Any]:
    return {
        "records": slot.count,
        "successCount": slot.ok,
        "failures": slot.failures,
        "successRate": slot.success_rate,
        "avgDurationMs": slot.avg_duration,
        "p95DurationMs": slot.percentile(0.95),
        "itemsExtracted": slot.items,
        "retries": slot.retries,
        "dataSize": slot.size,
    }


def _aligned(found: Series, starts: list[datetime]) -> dict[str, dict[str, list[Any]]]:
    """Per channel: its types' buckets ("all" of them together, each type, and runs per scheduler
    name under "scheduler_run:<name>"), one entry per axis bucket, None where nothing came."""
    by_channel: dict[str, dict[str, dict[datetime, Tally]]] = {}
    for key, slots in found.items():
        named = by_channel.setdefault(key.channel, {})
        for name in {key.type, f"scheduler_run:{key.scheduler}" if key.scheduler else key.type}:
            for start, slot in slots.items():
                named.setdefault(name, {}).setdefault(start, Tally()).merge(slot)
        for start, slot in slots.items():
            named.setdefault("all", {}).setdefault(start, Tally()).merge(slot)
    return {
        channel: {
            name: [slots[s].as_bucket(s) if s in slots else None for s in starts]
            for name, slots in named.items()
        }
        for channel, named in sorted(by_channel.items())
    }


def _schedulers(found: Series, start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    """Each scheduler seen in the range: its runs (when few enough to draw one by one), its usual
    period (the median gap between its last runs) and when it last ran."""
    names = sorted({key.scheduler for key in found if key.type == "scheduler_run"})
    result = {}
    for name in names:
        runs = SchedulerMetric.objects.filter(scheduler_name=name)
        count = sum(
            slot.count for key, slots in found.items() if key.scheduler == name for slot in slots.values()
        )
        points = None
        if count <= MAX_RUN_POINTS:
            points = [
                {"recordedAt": epoch_ms(at), "durationMs": ms, "items": items, "success": ok, "error": error}
                for at, ms, items, ok, error in runs.filter(created_at__gte=start, created_at__lt=end)
                .order_by("created_at")
                .values_list("created_at", "execution_duration_ms", "items_processed", "success", "error")
            ]
        recent = list(runs.order_by("-created_at").values_list("created_at", flat=True)[: PERIOD_RUNS + 1])
        gaps = [(a - b).total_seconds() for a, b in itertools.pairwise(recent)]
        result[name] = {
            "runs": points,
            "periodSeconds": round(statistics.median(gaps), 1) if gaps else None,
            "lastRunAt": epoch_ms(recent[0]) if recent else None,
        }
    return result

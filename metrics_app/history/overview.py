"""The analytics page's state for a range, in one read (GET /api/metrics/overview/).

Everything the page draws for "the last 30 minutes / hour / 24 hours / 7 days", for every
channel or one: the whole time axis (every bucket from the start of the range to now, the last
one still filling); every channel seen in the range (its name, kind and types, for the source
filter); and for the SHOWN busiest channels, their series per type aligned to the axis (None
where nothing came), their totals over the range and over the range before (the trends
compare the two), when they last reported, and their schedulers' runs counted, drawn (or
their range per bucket), usual period and last run. The channels beyond SHOWN come summed per
kind as `rest` (the page's "others"), so the answer stays the same size, and its reads grouped
in the database, however many sources there are: every read is one query, none per channel
(but a few per scheduler shown).

Hours and minutes read the rollups (metrics_app.history.reads).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from metrics_app import rollups
from metrics_app.history import reads
from metrics_app.history.periods import PERIOD_RUNS, usual_period
from metrics_app.history.reads import Series, series, totals
from metrics_app.models import SchedulerMetric
from metrics_app.records import epoch_ms
from metrics_app.tally import Tally, iso, merged
from metrics_app.trend import Trend, comparable, trend


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
# Channels an overview gives figures and series of, the busiest first; the rest are summed per
# kind ("rest"), so the answer's size and cost stay bounded however many sources report.
SHOWN: Final = 50
# A scheduler with more runs than this in the range is drawn as each bucket's range of single
# runs, and its failed runs (as many again at most) one by one.
MAX_RUN_POINTS: Final = 1000


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
    per_channel = totals(start, end, span.bucket, source)
    ranked = sorted(per_channel, key=lambda name: (-per_channel[name].count, name))
    shown = ranked[:SHOWN]
    found = series(start, end, span.bucket, source, channels=shown)
    before = totals(start - span.span, start, span.bucket, source)
    before_covered = reads.covered(start - span.span, start, span.bucket, source)
    kinds = reads.kinds(start, end, span.bucket, source)
    last = reads.last_recorded(shown)
    answer = {
        "range": {
            "name": span.name,
            "label": span.label,
            "bucket": span.bucket,
            "bucketLabel": span.bucket_label,
            "from": iso(start),
            "to": iso(now),
        },
        "axis": [iso(s) for s in starts],
        # every channel, for the source filter; the figures of the SHOWN busiest only
        "channels": [
            {
                "name": name,
                "kind": kinds[name][0],
                "types": sorted(kinds[name][1]),
                "lastRecordedAt": last.get(name),
            }
            for name in sorted(per_channel)
        ],
        "totals": _summed(merged(per_channel.values())),
        "sources": {
            name: {
                **_summed(per_channel[name]),
                "previous": _summed(before.get(name, Tally())),
                "trend": _records_trend(
                    per_channel[name], before.get(name, Tally()), before_covered.get(name, 0), len(starts)
                ),
            }
            for name in shown
        },
        "previous": _summed(merged(before.values())),
        "series": _aligned(found, starts),
        "schedulers": _schedulers(found, span, start, end, source),
    }
    if len(ranked) > len(shown):
        answer["rest"] = _rest(
            start, end, span.bucket, shown, ranked[len(shown) :], per_channel, kinds, starts
        )
    return answer


def _rest(
    start: datetime, end: datetime, bucket: str, shown: list[str], hidden: list[str],
    per_channel: dict[str, Tally], kinds: dict[str, tuple[str, set[str]]], starts: list[datetime],
) -> dict[str, Any]:  # fmt: skip
    """The channels not shown, per kind: how many, their totals, and their buckets per type
    (the page draws them as "others")."""
    buckets = reads.rest(start, end, bucket, shown)
    found: dict[str, Any] = {}
    for kind in ("scraper", "scheduler"):
        names = [name for name in hidden if kinds[name][0] == kind]
        if not names:
            continue
        found[kind] = {
            "channels": len(names),
            "totals": _summed(merged(per_channel[name] for name in names)),
            "series": {
                metric_type: [slots[s].as_bucket(s) if s in slots else None for s in starts]
                for (of_kind, metric_type), slots in buckets.items()
                if of_kind == kind
            },
        }
    return found


def _records_trend(now: Tally, before: Tally, covered: int, buckets: int) -> Trend:
    """A channel's records in the range against the range before, which held records in
    `covered` of its `buckets` buckets (the page's "vs the previous 7 days")."""
    return trend(now.count, before.count, comparable(before.count, covered, buckets))


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


def _schedulers(
    found: Series, span: Range, start: datetime, end: datetime, source: str | None
) -> dict[str, dict[str, Any]]:
    """Each scheduler seen in the range: its runs and failures counted exactly (from the rollups,
    however many), its runs one by one when few enough to draw, else each bucket's range of
    single runs and its failed runs one by one; its usual period and when it last ran."""
    names = sorted({key.scheduler for key in found if key.type == "scheduler_run"})
    window_s = settings.METRICS_ALERT_WINDOW_S
    result = {}
    for name in names:
        runs = SchedulerMetric.objects.filter(scheduler_name=name)
        counted = merged(slots[at] for key, slots in found.items() if key.scheduler == name for at in slots)
        in_range = runs.on_channel(source) if source else runs
        in_range = in_range.filter(created_at__gte=start, created_at__lt=end)
        many = counted.count > MAX_RUN_POINTS
        recent = list(runs.order_by("-created_at").values_list("created_at", flat=True)[:PERIOD_RUNS])
        period = usual_period(epoch_ms(at) / 1000 for at in recent)
        result[name] = {
            "totals": _summed(counted),
            "runs": None if many else _runs(in_range),
            "ranges": _ranges(in_range, start, span.step) if many else None,
            "failedRuns": (
                _runs(in_range.filter(success=False)) if many and counted.failures <= MAX_RUN_POINTS else None
            ),
            "period": {
                "seconds": period.seconds,
                "state": period.state,
                "runs": period.runs,
                "lateAfterSeconds": period.late_after(window_s),
            },
            "lastRunAt": epoch_ms(recent[0]) if recent else None,
        }
    return result


def _ranges(rows: "QuerySet[SchedulerMetric]", start: datetime, step: timedelta) -> list[dict[str, Any]]:
    """Each bucket's range of single runs, with its runs and failures counted."""
    return [
        {"start": iso(found.start), "runs": found.runs, "failed": found.failed,
         "durationMs": found.duration_ms, "items": found.items}
        for found in reads.run_ranges(rows, start, step)
    ]  # fmt: skip


def _runs(rows: "QuerySet[SchedulerMetric]") -> list[dict[str, Any]]:
    """Single runs, oldest first."""
    return [
        {"recordedAt": epoch_ms(at), "durationMs": ms, "items": items, "success": ok, "error": error}
        for at, ms, items, ok, error in rows.order_by("created_at").values_list(
            "created_at", "execution_duration_ms", "items_processed", "success", "error"
        )
    ]

"""The dashboard's totals and trends (the `metrics:update` data and /api/metrics/summary/).

Kept in memory per process from the live stream, in one-minute slots per source over the
last hour, so producing it costs nothing per second however many rows the tables hold.
A process starts from the last hour of the minute rollups (`load_last_hour`), which is also
how the HTTP summary is computed.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from django.db.models import CharField
from django.db.models.functions import Cast

from metrics_app import histogram
from metrics_app.models import MinuteRollup
from metrics_app.records import DURATION_FIELD, ITEMS_FIELD, camel, epoch_ms, now_ms

WINDOW_MINUTES: Final = 60
TREND_MINUTES: Final = 5  # trends compare the last 5 minutes with the 5 before
STABLE_WITHIN: Final = 0.05  # a relative change under 5 % is "stable"

# Per type: its duration's wire field, and the word the summary's keys use for it
# (avgNavigationDurationMs, avgScrapeDurationMs, avgExecutionDurationMs).
_DURATION_FIELD: Final = {kind: camel(field) for kind, field in DURATION_FIELD.items()}
_KIND: Final = {kind: field.split("_")[0] for kind, field in DURATION_FIELD.items()}
_ITEMS_FIELD: Final = {kind: camel(field) for kind, field in ITEMS_FIELD.items()}


@dataclass
class Slot:
    """One source's records of one minute."""

    records: int = 0
    successes: int = 0
    items: int = 0  # extracted by scrapes
    processed: int = 0  # processed by scheduler runs
    retries: int = 0
    count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duration_sum: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duration_histogram: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    all_durations: dict[int, int] = field(default_factory=dict)
    last_recorded_at: int = 0

    def add(
        self, metric_type: str, bucket: int, count: int, successes: int, duration: int,
        items: int, retries: int, last_recorded_at: int,
    ) -> None:  # fmt: skip
        kind = _KIND[metric_type]
        self.records += count
        self.successes += successes
        if kind == "execution":
            self.processed += items
        else:
            self.items += items
        self.retries += retries
        self.count[kind] += count
        self.duration_sum[kind] += duration
        counts = self.duration_histogram[kind]
        counts[bucket] = counts.get(bucket, 0) + count
        self.all_durations[bucket] = self.all_durations.get(bucket, 0) + count
        self.last_recorded_at = max(self.last_recorded_at, last_recorded_at)


class LiveStats:
    def __init__(self) -> None:
        self._slots: dict[str, dict[int, Slot]] = defaultdict(dict)

    def add(self, record: dict[str, Any], channel: str) -> None:
        """One live record, in its wire shape."""
        metric_type = record["type"]
        duration = record[_DURATION_FIELD[metric_type]]
        items = record.get(_ITEMS_FIELD.get(metric_type, ""), 0)
        self.add_aggregate(
            channel, metric_type, record["recordedAt"] // 60_000, histogram.bucket_of(duration), 1,
            int(record["success"]), duration, items, record.get("retryCount", 0), record["recordedAt"],
        )  # fmt: skip

    def add_aggregate(
        self, channel: str, metric_type: str, minute: int, bucket: int, count: int, successes: int,
        duration: int, items: int, retries: int, last_recorded_at: int,
    ) -> None:  # fmt: skip
        """Records of one source, type, minute and duration bucket, already summed."""
        if minute <= now_ms() // 60_000 - WINDOW_MINUTES:
            return  # older than the window: it changes nothing shown
        slots = self._slots[channel]
        slot = slots.get(minute)
        if slot is None:
            slot = slots[minute] = Slot()
        slot.add(metric_type, bucket, count, successes, duration, items, retries, last_recorded_at)

    def prune(self) -> None:
        oldest = now_ms() // 60_000 - WINDOW_MINUTES
        for channel in list(self._slots):
            slots = self._slots[channel]
            for minute in [m for m in slots if m <= oldest]:
                del slots[minute]
            if not slots:
                del self._slots[channel]

    def snapshot(self, channels: frozenset[str] | None = None) -> dict[str, Any]:
        """The totals and trends of every channel, or of `channels` only."""
        self.prune()
        now_minute = now_ms() // 60_000
        sources = {}
        trends = {}
        shown = {c: s for c, s in self._slots.items() if channels is None or c in channels}
        for channel, slots in sorted(shown.items()):
            sources[channel] = _summarise(slots.values())
            recent = [s for m, s in slots.items() if m > now_minute - TREND_MINUTES]
            before = [
                s
                for m, s in slots.items()
                if now_minute - 2 * TREND_MINUTES < m <= now_minute - TREND_MINUTES
            ]
            trends[channel] = _trends(_summarise(recent), _summarise(before))
        all_slots = [slot for slots in shown.values() for slot in slots.values()]
        totals = _summarise(all_slots)
        return {
            "windowSeconds": WINDOW_MINUTES * 60,
            "totals": {
                "records": totals["records"],
                "successCount": totals["successCount"],
                "successRate": totals["successRate"],
                "avgDurationMs": totals["avgDurationMs"],
                "p95DurationMs": totals["p95DurationMs"],
                "itemsExtracted": totals["itemsExtracted"],
                "activeSources": len(sources),
            },
            "sources": sources,
            "trends": trends,
        }


def _summarise(slots: Any) -> dict[str, Any]:
    slots = list(slots)
    records = sum(s.records for s in slots)
    successes = sum(s.successes for s in slots)
    summary: dict[str, Any] = {
        "records": records,
        "successCount": successes,
        "successRate": round(100.0 * successes / records, 2) if records else None,
        "navigations": sum(s.count["navigation"] for s in slots),
        "scrapes": sum(s.count["scrape"] for s in slots),
        "schedulerRuns": sum(s.count["execution"] for s in slots),
        "itemsExtracted": sum(s.items for s in slots),
        "itemsProcessed": sum(s.processed for s in slots),
        "retries": sum(s.retries for s in slots),
        "errors": records - successes,
        "lastRecordedAt": max((s.last_recorded_at for s in slots), default=None),
    }
    total_duration = 0
    for kind in ("navigation", "scrape", "execution"):
        count = sum(s.count[kind] for s in slots)
        duration = sum(s.duration_sum[kind] for s in slots)
        total_duration += duration
        label = kind.capitalize()
        summary[f"avg{label}DurationMs"] = round(duration / count, 1) if count else None
        merged = histogram.merge(s.duration_histogram[kind] for s in slots)
        summary[f"p95{label}DurationMs"] = histogram.percentile(merged, 0.95)
    summary["avgDurationMs"] = round(total_duration / records, 1) if records else None
    summary["p95DurationMs"] = histogram.percentile(histogram.merge(s.all_durations for s in slots), 0.95)
    return summary


def _trend(now: float | None, before: float | None) -> dict[str, Any]:
    if now is None or before is None:
        return {"direction": "stable", "change": 0.0}
    if before == 0:  # from nothing: any activity is a full rise
        change = 0.0 if now == 0 else 100.0
    else:
        change = round(100.0 * (now - before) / before, 1)
    direction = "stable" if abs(change) < STABLE_WITHIN * 100 else ("up" if change > 0 else "down")
    return {"direction": direction, "change": change}


def _trends(recent: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """Last 5 minutes against the 5 before: volume, success rate and average duration."""
    return {
        "records": _trend(recent["records"], before["records"]),
        "successRate": _trend(recent["successRate"], before["successRate"]),
        "avgDurationMs": _trend(recent["avgDurationMs"], before["avgDurationMs"]),
    }


# --- from the database ------------------------------------------------------------------


def load_last_hour(stats: LiveStats) -> int:
    """Fill a LiveStats with the last hour, from the minute rollups (a few thousand rows,
    however many records). Returns the number of records it covers."""
    since = (now_ms() // 60_000 - WINDOW_MINUTES) * 60_000
    recent = MinuteRollup.objects.filter(minute__gt=datetime.fromtimestamp(since / 1000, UTC))
    # The minute comes as text, each parsed once (Django converts every row's DATETIME otherwise).
    rows = recent.annotate(text=Cast("minute", CharField())).values_list(
        "scraper_source", "metric_type", "text", "duration_bucket", "records", "successes",
        "duration_sum", "items_sum", "retry_sum", "last_recorded_at",
    )  # fmt: skip
    covered = 0
    minutes: dict[str, int] = {}
    for channel, metric_type, text, bucket, n, ok, total, items, retries, last in rows:
        minute = minutes.get(text) or minutes.setdefault(
            text, epoch_ms(datetime.fromisoformat(text).replace(tzinfo=UTC)) // 60_000
        )
        stats.add_aggregate(channel, metric_type, minute, bucket, n, ok, total, items, retries, last)
        covered += n
    return covered


def summary_from_database(channels: frozenset[str] | None = None) -> dict[str, Any]:
    """The `metrics:update` data, computed from the database (GET /api/metrics/summary/), of
    every channel or of `channels` only."""
    stats = LiveStats()
    load_last_hour(stats)
    return stats.snapshot(channels)

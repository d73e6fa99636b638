"""The dashboard's totals and trends (the `metrics:update` data and /api/metrics/summary/).

Kept in memory per process from the live stream, in one-minute slots per source over the
window of the page's live range (30 minutes), so producing it costs nothing per second however
many rows the tables hold, and the live page's tiles and cards show these figures as they are
(p95 included, which the page cannot add up itself). A process starts from the window's minute
rollups (`load_window`), which is also how the HTTP summary is computed.
"""

import heapq
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.db import transaction
from django.db.models import CharField, Max
from django.db.models.functions import Cast

from metrics_app.history.overview import RANGES
from metrics_app.models import MinuteRollup, PagePerformance, SchedulerMetric
from metrics_app.records import DURATION_FIELD, METRIC_TYPES, epoch_ms, now_ms
from metrics_app.tally import Tally, merged
from metrics_app.trend import Trend, comparable, trend

WINDOW_MINUTES: Final = int(RANGES["live"].span / timedelta(minutes=1))
# Sources a snapshot lists one by one (the busiest of the window): a `metrics:update` stays a
# few tens of KB, and a second's work, however many sources report. The totals count them all.
SHOWN: Final = 50
TREND_MINUTES: Final = 5  # trends compare the last 5 minutes with the 5 before (metrics_app.trend)

# The word the summary's keys use for each type's duration: avgNavigationDurationMs,
# avgScrapeDurationMs, avgExecutionDurationMs.
_KIND: Final = {kind: field.split("_")[0].capitalize() for kind, field in DURATION_FIELD.items()}

Minute = dict[str, Tally]  # one channel's records of one minute, per type


class LiveStats:
    """Per channel, per minute of the window, per type: a Tally; and, kept as records come
    and minutes leave, each channel's sum over the window and everyone's, so that a snapshot
    costs the channels it shows (the busiest SHOWN), not every channel there is."""

    def __init__(self) -> None:
        self._slots: dict[str, dict[int, Minute]] = defaultdict(dict)
        self._window: dict[str, Minute] = {}  # channel -> its window, per type
        self._everyone: Minute = {}  # every channel's window, per type
        self._channels_of: dict[int, set[str]] = defaultdict(set)  # minute -> channels with records in it
        self._pruned_to = 0  # minutes up to this one are gone

    def add(self, record: dict[str, Any], channel: str) -> None:
        """One live record, in its wire shape."""
        part = Tally()
        part.add_record(record)
        self._add(channel, record["recordedAt"] // 60_000, record["type"], part)

    def add_aggregate(
        self, channel: str, metric_type: str, minute: int, bucket: int, count: int, successes: int,
        duration: int, items: int, retries: int, last_recorded_at: int,
    ) -> None:  # fmt: skip
        """Records of one source, type, minute and duration bucket, already summed."""
        part = Tally()
        part.add(count, successes, duration, items, retries, 0, bucket, last_recorded_at)
        self._add(channel, minute, metric_type, part)

    def _add(self, channel: str, minute: int, metric_type: str, part: Tally) -> None:
        if minute <= now_ms() // 60_000 - WINDOW_MINUTES:
            return  # older than the window: it changes nothing shown
        self._slots[channel].setdefault(minute, {}).setdefault(metric_type, Tally()).merge(part)
        self._window.setdefault(channel, {}).setdefault(metric_type, Tally()).merge(part)
        self._everyone.setdefault(metric_type, Tally()).merge(part)
        self._channels_of[minute].add(channel)

    def prune(self) -> set[str]:
        """Minutes that left the window leave the sums: only the channels that had records in
        them are touched. Returns the channels silent for the whole window, now gone."""
        gone: set[str] = set()
        oldest = now_ms() // 60_000 - WINDOW_MINUTES
        for minute in sorted(m for m in self._channels_of if m <= oldest):
            for channel in self._channels_of.pop(minute):
                slots = self._slots[channel]
                for metric_type, tally in slots.pop(minute, {}).items():
                    self._window[channel][metric_type].subtract(tally)
                    self._everyone[metric_type].subtract(tally)
                if not slots:
                    del self._slots[channel], self._window[channel]
                    gone.add(channel)
                else:  # the newest record cannot be subtracted: recompute it from what is left
                    for metric_type, tally in self._window[channel].items():
                        kept = (m[metric_type].last_recorded_at for m in slots.values() if metric_type in m)
                        tally.last_recorded_at = max(kept, default=0)
        return gone

    def _records(self, channel: str) -> int:
        return sum(tally.count for tally in self._window[channel].values())

    def snapshot(self, channels: frozenset[str] | None = None) -> dict[str, Any]:
        """The totals, and the busiest SHOWN channels' figures and trends; or, for a caller
        limited to `channels`, theirs only. Minutes that left the window are pruned first."""
        self.prune()
        now_minute = now_ms() // 60_000
        if channels is None:
            shown = heapq.nlargest(SHOWN, self._window, key=self._records)
            totals = _summarise([self._everyone])
            active = len(self._slots)
        else:
            shown = [c for c in channels if c in self._slots]
            totals = _summarise(self._window[c] for c in shown)
            active = len(shown)
        sources = {}
        trends = {}
        for channel in sorted(shown):
            slots = self._slots[channel]
            sources[channel] = _summarise([self._window[channel]])
            recent = [s for m, s in slots.items() if m > now_minute - TREND_MINUTES]
            before = [
                s
                for m, s in slots.items()
                if now_minute - 2 * TREND_MINUTES < m <= now_minute - TREND_MINUTES
            ]
            trends[channel] = _trends(_summarise(recent), _summarise(before), covered=len(before))
        return {
            "windowSeconds": WINDOW_MINUTES * 60,
            "totals": {
                "records": totals["records"],
                "successCount": totals["successCount"],
                "successRate": totals["successRate"],
                "avgDurationMs": totals["avgDurationMs"],
                "p95DurationMs": totals["p95DurationMs"],
                "itemsExtracted": totals["itemsExtracted"],
                "activeSources": active,
            },
            "sources": sources,
            "trends": trends,
            "sourcesShown": len(sources),  # the busiest, when there are more than SHOWN
        }


def _summarise(slots: Any) -> dict[str, Any]:
    minutes: list[Minute] = list(slots)
    by_type = {kind: merged(m[kind] for m in minutes if kind in m) for kind in METRIC_TYPES}
    everything = merged(by_type.values())
    summary: dict[str, Any] = {
        "records": everything.count,
        "successCount": everything.ok,
        "successRate": everything.success_rate,
        "navigations": by_type["page_navigation"].count,
        "scrapes": by_type["page_scrape"].count,
        "schedulerRuns": by_type["scheduler_run"].count,
        "itemsExtracted": by_type["page_scrape"].items,
        "itemsProcessed": by_type["scheduler_run"].items,
        "retries": everything.retries,
        "errors": everything.failures,
        "lastRecordedAt": everything.last_recorded_at if everything.count else None,
    }
    for kind, label in _KIND.items():
        summary[f"avg{label}DurationMs"] = by_type[kind].avg_duration
        summary[f"p95{label}DurationMs"] = by_type[kind].percentile(0.95)
    summary["avgDurationMs"] = everything.avg_duration
    summary["p95DurationMs"] = everything.percentile(0.95)
    return summary


def _trends(recent: dict[str, Any], before: dict[str, Any], covered: int) -> dict[str, Trend]:
    """Last 5 minutes against the 5 before (`covered` of which held records): volume, success
    rate and average duration."""
    period = comparable(before["records"], covered, TREND_MINUTES)
    return {
        "records": trend(recent["records"], before["records"], period),
        "successRate": trend(recent["successRate"], before["successRate"], period),
        "avgDurationMs": trend(recent["avgDurationMs"], before["avgDurationMs"], period),
    }


# --- from the database ------------------------------------------------------------------


def load_window(stats: LiveStats) -> int:
    """Fill a LiveStats with the window, from the minute rollups (a few thousand rows,
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


# The newest stored id of each detail table, read with the window: which live records a
# reloaded window already holds (metrics_app.stream.hub, repairing the totals after a gap).
Marks = dict[str, int]


def load_window_marked(stats: LiveStats) -> Marks:
    """`load_window`, and the newest ids it covers, from one snapshot of the database (the
    rollups are written in the transaction that stores the rows)."""
    with transaction.atomic():
        marks = {
            "scheduler_run": SchedulerMetric.objects.aggregate(newest=Max("id"))["newest"] or 0,
            "page": PagePerformance.objects.aggregate(newest=Max("id"))["newest"] or 0,
        }
        load_window(stats)
    return marks


def covered_by(record: dict[str, Any], marks: Marks) -> bool:
    """Whether a live record is among those a window loaded with `marks` counted."""
    table = "scheduler_run" if record["type"] == "scheduler_run" else "page"
    return int(record.get("id", 0)) <= marks[table]


def summary_from_database(channels: frozenset[str] | None = None) -> dict[str, Any]:
    """The `metrics:update` data, computed from the database (GET /api/metrics/summary/), of
    every channel or of `channels` only."""
    stats = LiveStats()
    load_window(stats)
    return stats.snapshot(channels)

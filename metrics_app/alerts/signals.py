"""What the evaluator reads each cycle: the last window of every channel from the minute rollups
(records and HTTP statuses), the errors of the window's failures,
when each channel last reported, and each scheduler's last runs. Nothing here scans more than
a window of rows, but `last_seen` (one index lookup per channel through the rollups' key) and
`recent_runs` (an index range per scheduler)."""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from django.db.models import Count, Max, Q, Sum

from metrics_app.history import reads
from metrics_app.models import MinuteRollup, PagePerformance, SchedulerMetric, StatusMinute
from metrics_app.records import epoch_ms
from metrics_app.tally import Tally

# The distinct error messages read per window: enough to tell refusals from outages.
MAX_ERROR_TEXTS: Final = 500
RUNS_KEPT: Final = 11
MINUTE_MS: Final = 60_000  # a scheduler's period is learned from the gaps between its last runs


@dataclass
class FieldCounts:
    """One field over a window: the items of the pages that reported it, the filled, the invalid."""

    items: int = 0
    filled: int = 0
    invalid: int = 0


@dataclass
class Window:
    """A channel's records of the last window: per type, and per scheduler for runs."""

    types: dict[str, Tally] = field(default_factory=dict)
    errors: dict[str, Counter[str]] = field(default_factory=dict)  # per type: message → count
    fields: dict[str, FieldCounts] = field(default_factory=dict)  # metrics_app.alerts.field_window
    statuses: Counter[int] = field(default_factory=Counter)  # HTTP status → navigations

    def of(self, metric_type: str) -> Tally:
        return self.types.get(metric_type) or Tally()


def windows(start: datetime, end: datetime, recent: datetime) -> tuple[dict[str, Window], dict[str, Window]]:
    """Every channel with records in start … end (whole minutes from the minute rollups), and
    the error messages of its failed pages; then the same for its minutes from `recent` on
    (the window's last part, where a sudden fault shows before it dominates the window)."""
    whole: dict[str, Window] = {}
    last: dict[str, Window] = {}
    for found, totals in zip((whole, last), reads.totals_by_type(start, end, recent), strict=True):
        for (channel, metric_type), slot in totals.items():
            found.setdefault(channel, Window()).types[metric_type] = slot
    _add_errors(whole, start, end)
    _add_errors(last, recent, end)
    _add_statuses(whole, last, start, recent, end)
    return whole, last


def _add_statuses(
    whole: dict[str, Window], last: dict[str, Window], start: datetime, recent: datetime, end: datetime
) -> None:
    """The HTTP statuses of the whole minutes of start … end, and of those from `recent` on, in
    one scan of their minute rollups (a few rows per source and minute). The field counts are
    read a minute at a time instead (metrics_app.alerts.field_window)."""
    first, first_recent = start.replace(second=0, microsecond=0), recent.replace(second=0, microsecond=0)
    statuses = (
        StatusMinute.objects.filter(minute__gte=first, minute__lt=end)
        .order_by()
        .values_list("scraper_source", "http_status")
        .annotate(whole=Sum("navigations"), late=Sum("navigations", filter=Q(minute__gte=first_recent)))
    )
    for source, status, navigations, navigations_late in statuses:
        whole.setdefault(source, Window()).statuses[status] = navigations
        if navigations_late:
            last.setdefault(source, Window()).statuses[status] = navigations_late


def _add_errors(found: dict[str, Window], start: datetime, end: datetime) -> None:
    """The error messages of the pages that failed in start … end, with their counts."""
    failed = (
        PagePerformance.objects.filter(success=False, created_at__gte=start, created_at__lt=end)
        .values_list("scraper_source", "metric_type", "error")
        .annotate(n=Count("id"))
        .order_by("-n")[:MAX_ERROR_TEXTS]
    )
    for source, metric_type, error, n in failed:
        found.setdefault(source, Window()).errors.setdefault(metric_type, Counter())[error or ""] += n


def newest_minutes(until: datetime, channels: Iterable[str] | None = None) -> dict[str, int]:
    """The start (ms) of each channel's (or each of `channels`') newest minute with records
    before `until`, as far back as the minute rollups go (the detailed rows' retention): one
    index lookup per channel through the rollups' key."""
    rows = MinuteRollup.objects.filter(minute__lt=until)
    if channels is not None:
        rows = rows.filter(scraper_source__in=list(channels))
    return {
        source: epoch_ms(minute)
        for source, minute in rows.order_by()
        .values_list("scraper_source")
        .annotate(newest=Max("minute"))
        .values_list("scraper_source", "newest")
    }


def last_records(newest: dict[str, int]) -> dict[str, int]:
    """The newest record's own time (ms) of each channel given with its newest minute: one
    term per distinct minute (most channels share a few), not one per channel."""
    if not newest:
        return {}
    by_minute: dict[int, list[str]] = {}
    for source, minute_ms in newest.items():
        by_minute.setdefault(minute_ms, []).append(source)
    which = Q()
    for minute_ms, sources in by_minute.items():
        which |= Q(minute=datetime.fromtimestamp(minute_ms / 1000, UTC), scraper_source__in=sources)
    return dict(
        MinuteRollup.objects.filter(which)
        .order_by()
        .values_list("scraper_source")
        .annotate(newest=Max("last_recorded_at"))
        .values_list("scraper_source", "newest")
    )


@dataclass(frozen=True)
class Run:
    at: int  # ms
    duration_ms: int
    items: int
    success: bool
    error: str | None
    source: str | None
    run_id: str | None = None  # the runId it ended (docs/api.md, "Runs")


def recent_runs(since: datetime, until: datetime) -> dict[str, list[Run]]:
    """The last RUNS_KEPT runs before `until` of every scheduler that ran since `since`, newest
    first."""
    newest = (
        SchedulerMetric.objects.filter(created_at__lt=until)
        .order_by()
        .values_list("scheduler_name")
        .annotate(newest=Max("created_at"))  # through the (scheduler_name, created_at) index
        .values_list("scheduler_name", "newest")
    )
    last_runs = [
        SchedulerMetric.objects.filter(scheduler_name=name, created_at__lt=until)
        .order_by("-created_at")
        .values_list(
            "scheduler_name", "created_at", "execution_duration_ms", "items_processed", "success", "error",
            "scraper_source", "run_id",
        )[:RUNS_KEPT]
        for name, at in newest
        if at >= since
    ]  # fmt: skip
    if not last_runs:
        return {}
    # One statement for all of them (a query each was most of this read's time); the union
    # keeps each part's rows, not their order.
    runs: dict[str, list[Run]] = {}
    for name, at, ms, items, ok, error, source, run_id in last_runs[0].union(*last_runs[1:], all=True):
        runs.setdefault(name, []).append(Run(epoch_ms(at), ms, items, ok, error, source, run_id))
    for found in runs.values():
        found.sort(key=lambda run: run.at, reverse=True)
    return runs

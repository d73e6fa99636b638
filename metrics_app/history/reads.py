"""Reads: a channel's recent records, time-bucketed history, and the channels that exist. The
API views and the live hub call these."""

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    Count,
    F,
    IntegerField,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone

from metrics_app import dialect, rollups
from metrics_app.models import (
    HourlyRollup,
    PagePerformance,
    SchedulerMetric,
)
from metrics_app.records import epoch_ms, to_wire
from metrics_app.tally import Tally


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


def newest_ids() -> dict[str, int]:
    """The newest stored ids of both tables: where a client that holds nothing yet of a table
    starts its resyncs (docs/websocket.md)."""
    page = PagePerformance.objects.order_by("-id").values_list("id", flat=True).first()
    run = SchedulerMetric.objects.order_by("-id").values_list("id", flat=True).first()
    return {"page": page or 0, "scheduler": run or 0}


def metrics_after(
    channel: str | None, page_id: int, scheduler_id: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` records of a channel (every channel when None) stored after the given
    ids, in the order they were stored (pages, then scheduler runs), and whether more follow.
    Each table's part is a prefix of its rows by id, so the client asks for the next page from
    the newest ids it got without skipping any."""
    pages, runs = records_after(channel, page_id, scheduler_id)
    rows: list[PagePerformance | SchedulerMetric] = list(pages[: limit + 1])
    if len(rows) <= limit:
        rows += runs[: limit + 1 - len(rows)]
    return [to_wire(row.to_metric(), row.id) for row in rows[:limit]], len(rows) > limit


def records_after(
    channel: str | None, page_id: int, scheduler_id: int
) -> tuple["QuerySet[PagePerformance]", "QuerySet[SchedulerMetric]"]:
    """A channel's pages and runs after the given ids, in id order: read through the
    (source, id) and (scheduler, id) indexes, never the other channels' rows."""
    pages = PagePerformance.objects.filter(id__gt=page_id)
    runs = SchedulerMetric.objects.filter(id__gt=scheduler_id)
    if channel is not None:
        pages = pages.filter(scraper_source=channel)
        runs = runs.on_channel(channel)
    return pages.order_by("id"), runs.order_by("id")


HISTORY_BUCKETS = ("minute", "hour", "day")
# A day of minutes, a year of hours by day, five years of days: more is refused (400 naming
# `bucket`). 7 days of minutes (10,080 buckets) took seconds to build and answer.
MAX_HISTORY_BUCKETS = 2_000


class SeriesKey(NamedTuple):
    """One series: a channel's records of one type (and, for runs, one scheduler)."""

    channel: str
    type: str
    scheduler: str  # "" for pages


Series = dict[SeriesKey, dict[datetime, Tally]]


def history(
    channel: str | None, metric_type: str | None, start: datetime, end: datetime, bucket: str
) -> list[dict[str, Any]]:
    """Counts, success, average and percentile durations, items, retries and bytes per time
    bucket, oldest first, over every series that matches.

    Whole buckets that overlap start … end. Hour and day buckets read the hourly rollups (days
    and hours cut in TIME_ZONE); minute buckets the minute rollups, which are kept as long as
    the detailed rows (UTC minutes)."""
    merged: dict[datetime, Tally] = {}
    for slots in _rollup_series(start, end, bucket, channel, metric_type, apart=False).values():
        for slot_start, slot in slots.items():
            merged.setdefault(slot_start, Tally()).merge(slot)
    return [slot.as_bucket(slot_start) for slot_start, slot in sorted(merged.items())]


def series(
    start: datetime, end: datetime, bucket: str, channel: str | None = None, metric_type: str | None = None,
    channels: Collection[str] | None = None,
) -> Series:  # fmt: skip
    """Every series' buckets in start … end (whole buckets, as `history`), or those of
    `channels` only."""
    return _rollup_series(start, end, bucket, channel, metric_type, channels=channels)


def kinds(
    start: datetime, end: datetime, bucket: str, channel: str | None = None
) -> dict[str, tuple[str, set[str]]]:
    """Each channel in start … end: its kind ("scheduler" when every record of it is a run of
    the scheduler it is named after, else "scraper") and its types; one grouped read."""
    own_runs = Case(When(metric_type="scheduler_run", scheduler_name=F("scraper_source"), then=Value(1)),
                    default=Value(0), output_field=IntegerField())  # fmt: skip
    rows = (
        _rollup_rows(start, end, bucket, channel, None)
        .annotate(own=own_runs)
        .values_list("scraper_source", "metric_type", "own")
        .distinct()
    )
    found: dict[str, tuple[bool, set[str]]] = {}
    for name, metric_type, own in rows:
        bare, types = found.get(name, (True, set()))
        found[name] = (bare and bool(own), types | {metric_type})
    return {name: ("scheduler" if bare else "scraper", types) for name, (bare, types) in found.items()}


def rest(
    start: datetime, end: datetime, bucket: str, shown: Collection[str]
) -> dict[tuple[str, str], dict[datetime, Tally]]:
    """The buckets of every channel not `shown`, per (kind, type), summed in the database:
    what a page lists one by one stays bounded, and "others" still adds up to everything."""
    own_runs = Case(When(metric_type="scheduler_run", scheduler_name=F("scraper_source"), then=Value(1)),
                    default=Value(0), output_field=IntegerField())  # fmt: skip
    rows = (
        _rollup_rows(start, end, bucket, None, None)
        .exclude(scraper_source__in=list(shown))
        .annotate(own=own_runs)
        .values_list("metric_type", "own", "start_text", "duration_bucket")
        .annotate(*(Sum(column) for column in _ROLLUP_SUMS))
        .values_list("metric_type", "own", "start_text", "duration_bucket",
                     *(f"{column}__sum" for column in _ROLLUP_SUMS))
    )  # fmt: skip
    found: dict[tuple[str, str], dict[datetime, Tally]] = {}
    starts: dict[str, datetime] = {}
    for metric_type, own, text, duration_bucket, n, ok, total, items, retries, size in rows:
        slot_start = starts.get(text) or starts.setdefault(text, _slot_start(text, bucket == "day"))
        kind = "scheduler" if own else "scraper"
        for key in ((kind, metric_type), (kind, "all")):
            found.setdefault(key, {}).setdefault(slot_start, Tally()).add(
                n, ok, total, items, retries, size, duration_bucket
            )
    return found


class RunRange(NamedTuple):
    """A time bucket's runs of one scheduler: how many, how many failed, and the range of the
    single runs' durations and items (what the Scheduler tab draws when runs are too many to
    draw one by one: never their sum)."""

    start: datetime
    runs: int
    failed: int
    duration_ms: tuple[int, int]
    items: tuple[int, int]


def run_ranges(runs: "QuerySet[SchedulerMetric]", start: datetime, step: timedelta) -> list[RunRange]:
    """`runs` from `start` on, per bucket of `step` (the overview's axis), grouped in the
    database: a bucket a row, however many runs it holds."""
    step_ms = int(step.total_seconds() * 1000)
    slot = RawSQL(f"FLOOR(({dialect.epoch_ms_sql('created_at')} - %s) / %s)", (epoch_ms(start), step_ms))
    rows = (
        runs.filter(created_at__gte=start)
        .order_by()
        .annotate(slot=slot)
        .values("slot")
        .annotate(n=Count("id"), failed=Count("id", filter=Q(success=False)))
        .annotate(shortest=Min("execution_duration_ms"), longest=Max("execution_duration_ms"))
        .annotate(fewest=Min("items_processed"), most=Max("items_processed"))
        .values_list("slot", "n", "failed", "shortest", "longest", "fewest", "most")
    )
    return sorted(
        RunRange(start + step * int(index), n, failed, (shortest, longest), (fewest, most))
        for index, n, failed, shortest, longest, fewest, most in rows
    )


def last_recorded(channels: Collection[str]) -> dict[str, int]:
    """When each channel's newest record was made (ms), from the detailed rows: a few grouped
    index reads, whatever the number of channels."""
    names = list(channels)
    newest: dict[str, datetime] = dict(
        PagePerformance.objects.filter(scraper_source__in=names).order_by().values_list("scraper_source")
        .annotate(Max("created_at")).values_list("scraper_source", "created_at__max")
    )  # fmt: skip
    runs = SchedulerMetric.objects.order_by()
    for name, at in [
        *runs.filter(scraper_source__in=names).values_list("scraper_source").annotate(Max("created_at"))
        .values_list("scraper_source", "created_at__max"),
        *runs.filter(scraper_source__isnull=True, scheduler_name__in=names).values_list("scheduler_name")
        .annotate(Max("created_at")).values_list("scheduler_name", "created_at__max"),
    ]:  # fmt: skip
        if name is not None and at is not None and (name not in newest or at > newest[name]):
            newest[name] = at
    return {name: epoch_ms(at) for name, at in newest.items() if at is not None}


def totals(start: datetime, end: datetime, bucket: str, channel: str | None = None) -> dict[str, Tally]:
    """Each channel's records in start … end, summed in the database (bucketed as `series`
    would): a week is some 40,000 rollup rows, and its totals a few hundred."""
    found: dict[str, Tally] = {}
    for source, bucket_number, n, ok, total, items, retries, size in (
        _rollup_rows(start, end, bucket, channel, None)
        .values_list("scraper_source", "duration_bucket")
        .annotate(*(Sum(column) for column in _ROLLUP_SUMS))
        .values_list("scraper_source", "duration_bucket", *(f"{column}__sum" for column in _ROLLUP_SUMS))
    ):
        found.setdefault(source, Tally()).add(n, ok, total, items, retries, size, bucket_number)
    return found


def covered(start: datetime, end: datetime, bucket: str, channel: str | None = None) -> dict[str, int]:
    """How many buckets (minutes or hours) of start … end held records, per channel: whether
    a range before holds data to compare with (metrics_app.trend). One grouped read."""
    grain = rollups.MINUTES if bucket == "minute" else rollups.HOURS
    return dict(
        _rollup_rows(start, end, bucket, channel, None)
        .values_list("scraper_source")
        .annotate(Count(grain.time_column, distinct=True))
        .values_list("scraper_source", f"{grain.time_column}__count")
    )


def totals_by_type(
    start: datetime, end: datetime, recent: datetime
) -> tuple[dict[tuple[str, str], Tally], dict[tuple[str, str], Tally]]:
    """Each channel's records per type in the whole minutes of start … end, and in those of
    recent … end (the alert evaluator's window and its last part; either may be the longer),
    summed in the database in one scan: a few rows per channel, whatever the minutes."""

    def since(moment: datetime) -> Case:  # 1 for the rows of the minutes from `moment`'s on
        first = datetime.fromtimestamp(rollups.MINUTES.start_ms(epoch_ms(moment), 0) / 1000, UTC)
        return Case(When(minute__gte=first, then=Value(1)), default=Value(0), output_field=IntegerField())

    # MySQL sums integers as DECIMAL: cast back, so that the rows come as plain ints and need
    # none of Django's per-value conversions (some 10,000 rows a cycle at 1,000 sources: the
    # conversions cost as much as the rest of the read).
    sums = {f"{column}_total": Cast(Sum(column), BigIntegerField()) for column in _ROLLUP_SUMS}
    rows = (
        _rollup_rows(min(start, recent), end, "minute", None, None)
        .annotate(in_whole=since(start), in_last=since(recent))
        .values_list("scraper_source", "metric_type", "duration_bucket", "in_whole", "in_last")
        .annotate(**sums)
        .values_list("scraper_source", "metric_type", "duration_bucket", "in_whole", "in_last", *sums)
    )
    whole: dict[tuple[str, str], Tally] = {}
    last: dict[tuple[str, str], Tally] = {}
    with connection.cursor() as cursor:
        cursor.execute(*rows.query.sql_with_params())
        found_rows = cursor.fetchall()
    for (
        source,
        metric_type,
        bucket_number,
        in_whole,
        in_last,
        n,
        ok,
        total,
        items,
        retries,
        size,
    ) in found_rows:
        for found, counts in ((whole, in_whole), (last, in_last)):
            if counts:
                found.setdefault((source, metric_type), Tally()).add(
                    n, ok, total, items, retries, size, bucket_number
                )
    return whole, last


_ROLLUP_SUMS = ("records", "successes", "duration_sum", "items_sum", "retry_sum", "bytes_sum")


def _rollup_rows(
    start: datetime, end: datetime, bucket: str, channel: str | None, metric_type: str | None,
    channels: Collection[str] | None = None,
) -> QuerySet[Any]:  # fmt: skip
    """The rollup rows of the minutes, hours or local days that overlap start … end."""
    grain = rollups.MINUTES if bucket == "minute" else rollups.HOURS
    first = grain.start_ms(epoch_ms(start), rollups.hour_shift_seconds() * 1000)
    if bucket == "day":
        local_start = timezone.localtime(start)
        first = min(first, epoch_ms(local_start.replace(hour=0, minute=0, second=0, microsecond=0)))
    rows = grain.model._default_manager.filter(
        **{
            f"{grain.time_column}__gte": datetime.fromtimestamp(first / 1000, UTC),
            f"{grain.time_column}__lt": end,
        }
    )
    if channel is not None:
        rows = rows.filter(scraper_source=channel)
    if channels is not None:
        rows = rows.filter(scraper_source__in=list(channels))
    if metric_type is not None:
        rows = rows.filter(metric_type=metric_type)
    return rows.order_by().annotate(start_text=Cast(grain.time_column, CharField()))


def _rollup_series(
    start: datetime,
    end: datetime,
    bucket: str,
    channel: str | None,
    metric_type: str | None,
    apart: bool = True,
    channels: Collection[str] | None = None,
) -> Series:
    """The rollups' buckets, per series (`apart`) or, summed in the database, as one series."""
    rows = _rollup_rows(start, end, bucket, channel, metric_type, channels)
    keys = ("scraper_source", "metric_type", "scheduler_name") if apart else ()
    if apart:
        found_rows = rows.values_list(*keys, "start_text", "duration_bucket", *_ROLLUP_SUMS)
    else:
        found_rows = (
            rows.values_list("start_text", "duration_bucket")
            .annotate(*(Sum(column) for column in _ROLLUP_SUMS))
            .values_list("start_text", "duration_bucket", *(f"{column}__sum" for column in _ROLLUP_SUMS))
        )
    found: Series = {}
    whole = SeriesKey(channel or "", metric_type or "", "")
    # A week holds some 40,000 rows but only 168 hours: the time comes as text and each is
    # parsed once (Django's conversion of every row's DATETIME took a third of the read).
    starts: dict[str, datetime] = {}
    for row in found_rows:
        *key, text, duration_bucket, n, ok, total, items, retries, size = row
        slot_start = starts.get(text) or starts.setdefault(text, _slot_start(text, bucket == "day"))
        slots = found.setdefault(SeriesKey(*key) if apart else whole, {})
        slots.setdefault(slot_start, Tally()).add(n, ok, total, items, retries, size, duration_bucket)
    return found


def _slot_start(text: str, by_day: bool) -> datetime:
    """A rollup's time (naive UTC text) as the start of its bucket: itself, or its local day."""
    start = datetime.fromisoformat(text).replace(tzinfo=UTC)
    if by_day:
        return timezone.localtime(start).replace(hour=0, minute=0, second=0, microsecond=0)
    return start

"""What is usual for a channel, learned from its own hourly rollups of the last 7 days.

Each measure (failure rate per type, items per successful scrape, bytes per page, records per
hour) becomes a spread over the channel's hours: the 10th, 50th and 90th percentile of its
hourly values (robust: one odd hour moves none of them much). Where at least MIN_DAYS_AT_HOUR
days have the current hour of day, only those hours count ("at this hour"), so a source that
is busy by day and quiet by night is judged against the right part of the day. Hours that
overlap one of the channel's alerts are left out, so an outage never becomes the new normal.
Durations use the pooled histogram of the whole week (p50 and p90). Each field's filled share
(of the items) and valid share (of the filled) are learned the same way, from the field
rollups' hours.

Baselines are relearned a few channels per evaluation, so a cycle's cost grows slowly with
the number of channels; each is relearned every REFRESH_AFTER (Baselines.refresh).
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from django.utils import timezone

from metrics_app import histogram, rollups
from metrics_app.history import reads
from metrics_app.history.fields import share_parts
from metrics_app.models import FieldHour
from metrics_app.records import epoch_ms
from metrics_app.tally import Tally

HISTORY: Final = timedelta(days=7)
MIN_HOURS: Final = 3  # fewer hours with records: nothing learned yet
MIN_DAYS_AT_HOUR: Final = 3
MIN_RECORDS_PER_HOUR: Final = 5  # an hour with fewer says little about rates
MIN_ITEMS_PER_HOUR: Final = 10  # …and one with fewer items (or filled) says little of a field's share
# Hourly rollups change once an hour: a source is relearned every REFRESH_AFTER, spread over the
# cycles in between. New sources come first, up to NEW_PER_CYCLE a cycle.
REFRESH_AFTER: Final = timedelta(hours=1)
NEW_PER_CYCLE: Final = 25


@dataclass(frozen=True)
class Spread:
    """A measure's usual range: 10th, 50th and 90th percentile of its hourly values, and which
    hours they came from."""

    low: float
    median: float
    high: float
    basis: str  # "last 7 days at this hour", "last 7 days"

    @classmethod
    def of(cls, values: Sequence[float], basis: str) -> "Spread | None":
        if not values:
            return None
        ordered = sorted(values)
        return cls(_rank(ordered, 0.10), _rank(ordered, 0.50), _rank(ordered, 0.90), basis)


def _rank(ordered: Sequence[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(frozen=True)
class FieldUsual:
    """A field's usual shares: of the items, the filled; of the filled, the valid."""

    filled: Spread | None
    valid: Spread | None


@dataclass
class Usual:
    """A channel's usual, per record type."""

    failure_rate: dict[str, Spread] = field(default_factory=dict)
    duration_p50: dict[str, float] = field(default_factory=dict)
    duration_p90: dict[str, float] = field(default_factory=dict)
    items_per_page: Spread | None = None  # items per successful scrape
    bytes_per_page: Spread | None = None  # dataSize per scrape
    records_per_hour: Spread | None = None
    fields: dict[str, FieldUsual] = field(default_factory=dict)
    hours: int = 0  # hours with records that it was learned from
    learned_at: datetime | None = None


def learn(channel: str, now: datetime, excluded: Iterable[tuple[datetime, datetime]] = ()) -> Usual:
    """The usual of one channel as of `now`, without the hours that overlap `excluded` periods."""
    shift_ms = rollups.hour_shift_seconds() * 1000
    current_start = datetime.fromtimestamp(rollups.hour_start_ms(epoch_ms(now), shift_ms) / 1000, UTC)
    periods = list(excluded)
    by_type: dict[str, dict[datetime, Tally]] = {}
    for key, slots in reads.series(now - HISTORY, current_start, "hour", channel).items():
        if key.type == "scheduler_run":
            continue  # schedulers learn from their runs (metrics_app.alerts.verdicts)
        for start, slot in slots.items():
            if start < current_start and not _overlaps(start, periods):
                by_type.setdefault(key.type, {}).setdefault(start, Tally()).merge(slot)
    usual = Usual(learned_at=now)
    all_hours = {start for slots in by_type.values() for start in slots}
    usual.hours = len(all_hours)
    if usual.hours < MIN_HOURS:
        return usual
    local_hour = timezone.localtime(now).hour
    for metric_type, slots in by_type.items():
        chosen, basis = _at_this_hour(slots, local_hour)
        busy = [slot for slot in chosen if slot.count >= MIN_RECORDS_PER_HOUR]
        if spread := Spread.of([1 - slot.ok / slot.count for slot in busy], basis):
            usual.failure_rate[metric_type] = spread
        pooled = Tally()
        for slot in slots.values():
            pooled.merge(slot)
        p50, p90 = histogram.percentiles(pooled.histogram, (0.50, 0.90))
        if p50 is not None and p90 is not None:
            usual.duration_p50[metric_type], usual.duration_p90[metric_type] = p50, p90
        if metric_type == "page_scrape":
            usual.items_per_page = Spread.of([slot.items / slot.ok for slot in busy if slot.ok], basis)
            usual.bytes_per_page = Spread.of([slot.size / slot.count for slot in busy], basis)
    per_hour: dict[datetime, int] = {}
    for slots in by_type.values():
        for start, slot in slots.items():
            per_hour[start] = per_hour.get(start, 0) + slot.count
    usual.records_per_hour = Spread.of([float(n) for n in per_hour.values()], "last 7 days")
    usual.fields = _learn_fields(channel, now - HISTORY, current_start, periods, local_hour)
    return usual


def _learn_fields(
    channel: str, start: datetime, end: datetime, periods: list[tuple[datetime, datetime]], local_hour: int
) -> dict[str, FieldUsual]:
    """Each field's usual filled and valid shares over the channel's hours in start … end (one
    index range through the field rollups' key)."""
    by_field: dict[str, dict[datetime, tuple[int, int, int]]] = {}
    rows = (
        FieldHour.objects.filter(scraper_source=channel, hour__gte=start, hour__lt=end)
        .order_by()
        .values_list("field", "hour", "items", "filled", "invalid")
    )
    for name, hour, items, filled, invalid in rows:
        if not _overlaps(hour, periods):
            by_field.setdefault(name, {})[hour] = (items, filled, invalid)
    learned = {}
    for name, hours in by_field.items():
        chosen, basis = _at_this_hour(hours, local_hour)
        parts = [share_parts(*counts) for counts in chosen]
        learned[name] = FieldUsual(
            filled=Spread.of(
                [part / whole for (part, whole), _ in parts if whole >= MIN_ITEMS_PER_HOUR], basis
            ),
            valid=Spread.of(
                [part / whole for _, (part, whole) in parts if whole >= MIN_ITEMS_PER_HOUR], basis
            ),
        )
    return learned


Slot = TypeVar("Slot")


def _at_this_hour(slots: dict[datetime, Slot], local_hour: int) -> tuple[list[Slot], str]:
    same = [slot for start, slot in slots.items() if timezone.localtime(start).hour == local_hour]
    if len(same) >= MIN_DAYS_AT_HOUR:
        return same, "last 7 days at this hour"
    return list(slots.values()), "last 7 days"


def _overlaps(hour: datetime, periods: list[tuple[datetime, datetime]]) -> bool:
    end = hour + timedelta(hours=1)
    return any(start < end and hour < stop for start, stop in periods)


class Baselines:
    """Each channel's usual, relearned a few channels per cycle."""

    def __init__(self) -> None:
        self.known: dict[str, Usual] = {}

    def refresh(
        self,
        channels: Iterable[str],
        now: datetime,
        excluded: dict[str, list[tuple[datetime, datetime]]],
        interval: timedelta,
    ) -> int:
        """Learn the channels never learned (up to NEW_PER_CYCLE), then relearn the stalest of
        those due, at the pace that relearns each one every REFRESH_AFTER with a cycle every
        `interval`; returns how many were learned."""
        channels = list(channels)
        new = [channel for channel in channels if channel not in self.known][:NEW_PER_CYCLE]
        stale = sorted(
            (
                channel for channel in channels
                if channel in self.known and now - (self.known[channel].learned_at or now) >= REFRESH_AFTER
            ),
            key=lambda channel: self.known[channel].learned_at or now,
        )  # fmt: skip
        pace = math.ceil(len(channels) * interval / REFRESH_AFTER) + 1
        for channel in [*new, *stale[:pace]]:
            self.known[channel] = learn(channel, now, excluded.get(channel, []))
        return len(new) + min(len(stale), pace)

    def get(self, channel: str) -> Usual:
        return self.known.get(channel) or Usual()

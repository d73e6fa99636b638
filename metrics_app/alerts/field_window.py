"""The window's field counts for every source, read a minute at a time.

A window of 1,000 sources x 20 fields is 100,000 minute rows: summing them every cycle would
cost more than the rest of the cycle (docs/alerts.md, "What a cycle reads"). So the field
window is made of whole minutes, each read once, SETTLE after it ends (the records of its
last seconds stored by then), and summed here; a cycle in between reads nothing. Only the
fields that could be broken are kept for the rule (a share below FIELD_FACTOR, the highest a
broken share can have); the current numbers of one source's fields are read when asked
(`of_source`: an alert that resolves shows them). A sum of minutes has a share below
FIELD_FACTOR only if one of its minutes has, so only the fields with such a minute (few) are
summed: adding up all 100,000 rows took 30-60 ms of the cycle that reads a minute.

Records stored later than SETTLE after their minute ended reach the hours (and the usual) but
not this window.
"""

import math
from datetime import datetime, timedelta
from typing import Final

from django.db.models import Sum

from metrics_app.alerts.field_rules import FIELD_FACTOR
from metrics_app.alerts.signals import FieldCounts
from metrics_app.history.fields import share_parts
from metrics_app.models import FieldMinute

SETTLE: Final = timedelta(seconds=10)
MINUTE: Final = timedelta(minutes=1)
Key = tuple[str, str]  # (source, field)
Counts = tuple[int, int, int]  # items, filled, invalid


class FieldWindow:
    """The whole minutes of the last window and of its last part, for every source."""

    def __init__(self) -> None:
        self.minutes: dict[datetime, dict[Key, Counts]] = {}
        self.suspects: dict[datetime, set[Key]] = {}  # per minute: its fields with a low share
        self.whole: dict[str, dict[str, FieldCounts]] = {}  # source → its fields that may be broken
        self.recent: dict[str, dict[str, FieldCounts]] = {}
        self.start: datetime | None = None
        self.end: datetime | None = None

    def update(self, now: datetime, window_s: float, recent_s: float) -> None:
        """Read the minutes that ended (and settled) since the last update, drop those that left
        the window, and sum the window and its last part again."""
        end = (now - SETTLE).replace(second=0, microsecond=0)
        start = end - math.ceil(window_s / 60) * MINUTE
        if (start, end) == (self.start, self.end):
            return
        self.start, self.end = start, end
        self.minutes = {minute: rows for minute, rows in self.minutes.items() if start <= minute < end}
        self.suspects = {minute: keys for minute, keys in self.suspects.items() if minute in self.minutes}
        newest = max(self.minutes, default=start - MINUTE)
        if newest + MINUTE < end:
            self._read(max(start, newest + MINUTE), end)
        recent = end - max(1, int(recent_s // 60)) * MINUTE
        self.whole = self._candidates(list(self.minutes))
        self.recent = self._candidates([minute for minute in self.minutes if minute >= recent])

    def _read(self, start: datetime, end: datetime) -> None:
        rows = (
            FieldMinute.objects.filter(minute__gte=start, minute__lt=end)
            .order_by()
            .values_list("minute", "scraper_source", "field", "items", "filled", "invalid")
        )
        minute = start
        while minute < end:  # a minute without rows is read too: nothing to read again
            self.minutes[minute], self.suspects[minute] = {}, set()
            minute += MINUTE
        for at, source, name, items, filled, invalid in rows.iterator(chunk_size=5000):
            self.minutes[at][(source, name)] = (items, filled, invalid)
            if _low(items, filled, invalid):
                self.suspects[at].add((source, name))

    def _candidates(self, minutes: list[datetime]) -> dict[str, dict[str, FieldCounts]]:
        """The minutes summed per source and field, keeping the fields whose filled or valid
        share is below FIELD_FACTOR: no other can be broken, and most are not."""
        found: dict[str, dict[str, FieldCounts]] = {}
        for source, name in set().union(*(self.suspects[minute] for minute in minutes)):
            counts = [row for minute in minutes if (row := self.minutes[minute].get((source, name)))]
            items, filled, invalid = (sum(column) for column in zip(*counts, strict=True))
            if _low(items, filled, invalid):
                found.setdefault(source, {})[name] = FieldCounts(items, filled, invalid)
        return found

    def of_source(self, source: str) -> dict[str, FieldCounts]:
        """Every field of one source over the window's minutes (one index range)."""
        if self.start is None or self.end is None:
            return {}
        rows = (
            FieldMinute.objects.filter(scraper_source=source, minute__gte=self.start, minute__lt=self.end)
            .order_by()
            .values_list("field")
            .annotate(Sum("items"), Sum("filled"), Sum("invalid"))
        )
        return {name: FieldCounts(items, filled, invalid) for name, items, filled, invalid in rows}


def _low(items: int, filled: int, invalid: int) -> bool:
    """A filled or a valid share below FIELD_FACTOR."""
    (filled_part, of_items), (valid_part, of_filled) = share_parts(items, filled, invalid)
    return filled_part < FIELD_FACTOR * of_items or valid_part < FIELD_FACTOR * of_filled

"""Trends: a figure against the same figure over the period just before, and whether that
period can say anything.

The one rule behind the live `metrics:update` trends (the last 5 minutes against the 5 before)
and the analytics page's "vs the previous 7 days" (a range against the range before it). A
period before that held only a trickle, or data in a few of its buckets (a source that started
this week, a demo whose past was thinner than its present), turns any change into "+33,305 %":
such a trend is not comparable, and the page says "new" instead of a number. The page only
formats what this module decides (static/js/format.js `formatChange`).
"""

from typing import Final, TypedDict

# The period before is comparable when at least this share of its buckets (minutes or hours)
# held records: a source that reported for a day of last week is "new" this week, not "+600 %".
MIN_COVERED_SHARE: Final = 0.5
# ...and it held at least this many records: against 3, a change of one or two is noise.
MIN_RECORDS: Final = 10
STABLE_WITHIN: Final = 0.05  # a relative change under 5 % is "stable"


class Trend(TypedDict):
    direction: str  # "up", "down" or "stable"
    change: float | None  # per cent against the period before; None when not comparable
    comparable: bool  # False: the period before holds no comparable data (the page says "new")


def comparable(records: int, covered: int, buckets: int) -> bool:
    """Whether a period of `buckets` buckets, `covered` of which held any of its `records`
    records, is something to compare with."""
    return records >= MIN_RECORDS and covered >= MIN_COVERED_SHARE * buckets


def trend(now: float | None, before: float | None, period_comparable: bool) -> Trend:
    """`now` against `before`. The direction says which way the figure went, whatever the
    period before held; the change, only when that period is comparable and the figure was
    not 0 (from nothing, every rise is infinite)."""
    if now is None or before is None:
        return {"direction": "stable", "change": None, "comparable": False}
    if not period_comparable or before == 0:
        direction = "stable" if now == before else ("up" if now > before else "down")
        return {"direction": direction, "change": None, "comparable": False}
    change = round(100.0 * (now - before) / before, 1)
    direction = "stable" if abs(change) < STABLE_WITHIN * 100 else ("up" if change > 0 else "down")
    return {"direction": direction, "change": change, "comparable": True}

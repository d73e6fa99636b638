"""Entity freshness as read (GET /api/entities/): each entity of a source with its age, and
which are stale, by the one rule here.

An entity is stale when it has not been refreshed for 3 times its source's usual refresh
interval, and at least METRICS_ENTITY_STALE_S. A source's usual interval is the median of its
entities' averaged intervals (metrics_app.ingest.freshness), so one symbol refreshed rarely
does not move it.
"""

import bisect
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from django.conf import settings

from metrics_app.data_models import EntitySeen, StaleMinute
from metrics_app.tally import iso

STALE_FACTOR: Final = 3
MAX_LISTED: Final = 1000  # entities in one answer


@dataclass(frozen=True)
class Freshness:
    """One source's entities: their ages, its usual interval, and the age that is stale."""

    entities: list[tuple[str, int, int]]  # entity, last seen (ms), its interval (ms; 0: unknown)
    usual_ms: int | None
    stale_after_ms: int

    def stale(self, now_ms: int) -> list[tuple[str, int, int]]:
        return [e for e in self.entities if now_ms - e[1] >= self.stale_after_ms]


def of_source(source: str) -> Freshness:
    rows = list(
        EntitySeen.objects.filter(scraper_source=source).values_list("entity", "last_seen_at", "interval_ms")
    )
    intervals = [interval for _, _, interval in rows if interval > 0]
    usual = round(statistics.median(intervals)) if intervals else None
    floor = settings.METRICS_ENTITY_STALE_S * 1000
    return Freshness(rows, usual, max(floor, STALE_FACTOR * usual) if usual else floor)


def stale_by_source(now_ms: int, sources: frozenset[str] | None = None) -> dict[str, Freshness | None]:
    """Every source that reports entities: its freshness when it may have stale entities, None
    when it has none. Only sources with an entity older than the floor (METRICS_ENTITY_STALE_S)
    can have stale ones; those few are read whole (their usual interval is theirs), the rest
    is one indexed read of the old entries and one of the sources."""
    known = EntitySeen.objects.order_by().values_list("scraper_source", flat=True).distinct()
    old = known.filter(last_seen_at__lte=now_ms - settings.METRICS_ENTITY_STALE_S * 1000)
    if sources is not None:
        known, old = known.filter(scraper_source__in=sources), old.filter(scraper_source__in=sources)
    found: dict[str, Freshness | None] = dict.fromkeys(known)
    for source in old:
        found[source] = of_source(source)
    return found


def entities(source: str, stale_only: bool, limit: int, now_ms: int) -> dict[str, Any]:
    """GET /api/entities/: the source's entities, stalest first."""
    found = of_source(source)
    stale = found.stale(now_ms)
    shown = sorted(stale if stale_only else found.entities, key=lambda e: (e[1], e[0]))[:limit]
    return {
        "total": len(found.entities),
        "stale": len(stale),
        "staleAfterS": found.stale_after_ms / 1000,
        "usualIntervalS": None if found.usual_ms is None else found.usual_ms / 1000,
        "entities": [
            {
                "entity": entity,
                "lastSeenAt": iso(datetime.fromtimestamp(at / 1000, UTC)),
                "ageS": max(0, now_ms - at) / 1000,
                "usualIntervalS": interval / 1000 if interval else None,
            }
            for entity, at, interval in shown
        ],
    }


def stale_over_time(source: str, starts: Sequence[datetime], end: datetime) -> list[dict[str, Any]]:
    """The most of the source's entities stale in each bucket of an axis (`starts`, up to
    `end`), with how many it had then; 0 of 0 where no minute had a stale one (StaleMinute)."""
    most = [(0, 0)] * len(starts)
    minutes = StaleMinute.objects.filter(scraper_source=source, minute__gte=starts[0], minute__lt=end)
    for minute, stale, total in minutes.values_list("minute", "stale", "total"):
        n = bisect.bisect_right(starts, minute) - 1
        if stale > most[n][0]:
            most[n] = (stale, total)
    return [
        {"start": iso(at), "stale": stale, "total": total}
        for at, (stale, total) in zip(starts, most, strict=True)
    ]

"""Entity freshness as read (GET /api/entities/): each entity of a source with its age, and
which are stale, by the one rule here.

An entity is stale when it has not been refreshed for 3 times its source's usual refresh
interval, and at least METRICS_ENTITY_STALE_S. A source's usual interval is the median of its
entities' averaged intervals (metrics_app.ingest.freshness), so one symbol refreshed rarely
does not move it.

Every source's stale count (the alert, the gauge) must not read every entity of every source:
1,000 sources of 500 symbols are half a million rows. The usual intervals move slowly, so the
caller keeps them (Usuals), reading a few sources' again per call; the counts are then one
grouped read of the stale rows alone, a range of the (source, last seen) index per source.
"""

import bisect
import statistics
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, OuterRef

from metrics_app import dialect
from metrics_app.data_models import EntitySeen, StaleMinute
from metrics_app.models import Source
from metrics_app.tally import iso

STALE_FACTOR: Final = 3
MAX_LISTED: Final = 1000  # entities in one answer
# A source's usual interval is read again after this: it moves slowly, and 1,000 sources are
# then some 8 a cycle (4,000 rows) at the evaluator's 15 s.
USUAL_KEPT_MS: Final = 30 * 60_000
USUALS_READ: Final = 50  # sources whose usual is read per call at most (about 25,000 rows)


def stale_after_ms(usual_ms: int | None) -> int:
    """The age from which an entity of a source with this usual interval is stale."""
    floor = settings.METRICS_ENTITY_STALE_S * 1000
    return max(floor, STALE_FACTOR * usual_ms) if usual_ms else floor


def _usual(intervals: Iterable[int]) -> int | None:
    known = [interval for interval in intervals if interval > 0]
    return round(statistics.median(known)) if known else None


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
    usual = _usual(interval for _, _, interval in rows)
    return Freshness(rows, usual, stale_after_ms(usual))


@dataclass(frozen=True)
class StaleCount:
    """One source's stale entities, counted: how many of how many, from what age."""

    total: int
    stale: int
    stale_after_ms: int


@dataclass(frozen=True)
class Usual:
    """What one read of a source's entities says for a while: its usual interval, how many it
    has, and when the stalest of them was last refreshed."""

    interval_ms: int | None
    total: int
    oldest_at: int
    read_at: int


class Usuals:
    """Each source's Usual, as last read: every call reads again the USUALS_READ sources read
    longest ago (or never), once USUAL_KEPT_MS old."""

    def __init__(self) -> None:
        self._known: dict[str, Usual] = {}
        self._lock = threading.Lock()

    def of(self, sources: Sequence[str], now_ms: int) -> dict[str, Usual]:
        with self._lock:
            known = self._known
            due = [s for s in sources if s not in known or now_ms - known[s].read_at >= USUAL_KEPT_MS]
            due.sort(key=lambda s: known[s].read_at if s in known else 0)
            due = due[:USUALS_READ]
        read: dict[str, list[tuple[int, int]]] = {source: [] for source in due}
        if due:
            for source, at, interval in EntitySeen.objects.filter(scraper_source__in=due).values_list(
                "scraper_source", "last_seen_at", "interval_ms"
            ):
                read[source].append((at, interval))
        with self._lock:
            for source, rows in read.items():
                if rows:
                    usual = _usual(interval for _, interval in rows)
                    self._known[source] = Usual(usual, len(rows), min(at for at, _ in rows), now_ms)
            for source in set(self._known) - set(sources):
                del self._known[source]
            return {s: self._known[s] for s in sources if s in self._known}


def stale_by_source(now_ms: int, kept: Usuals) -> dict[str, StaleCount]:
    """Every source that reports entities, with its stale entities counted: one read of the
    sources, one of the usuals due (`kept` keeps them), and
    one of the stale rows of the sources that may have some. A source whose usual was never
    read yet is left out until it is.

    A source may have a stale entity only if the stalest it had when last read is stale by now:
    entities are only ever refreshed later, and a new one is new. (One first seen through a
    record older than that stalest, a backfill, waits for the next read, USUAL_KEPT_MS.)"""
    usuals = kept.of(reporting(), now_ms)
    after = {source: stale_after_ms(usual.interval_ms) for source, usual in usuals.items()}
    maybe = {
        source: now_ms - age for source, age in after.items() if usuals[source].oldest_at <= now_ms - age
    }
    counted = _stale_counts(maybe) if maybe else {}
    found = {}
    for source, usual in usuals.items():
        found[source] = StaleCount(usual.total, counted.get(source, 0), after[source])
    return found


def reporting() -> list[str]:
    """The sources that report entities: of the registry's names (a row each), those with an
    entity (an index lookup each). MariaDB reads SELECT DISTINCT of a column that leads the
    primary key as a scan of the whole table, half a million rows."""
    entity = EntitySeen.objects.filter(scraper_source=OuterRef("name"))
    return list(Source.objects.filter(Exists(entity)).order_by("name").values_list("name", flat=True))


def _ranges(cutoffs: dict[str, int]) -> tuple[str, list[str | int]]:
    """FROM and WHERE over each source's entities last refreshed at or before its cutoff: one
    range of the (source, last seen) index per source."""
    hint = dialect.force_index("idx_entity_source_seen")
    where = " OR ".join(["(scraper_source = %s AND last_seen_at <= %s)"] * len(cutoffs))
    return f"FROM {EntitySeen._meta.db_table} {hint} WHERE {where}", [
        v for pair in cutoffs.items() for v in pair
    ]


def _stale_counts(cutoffs: dict[str, int]) -> dict[str, int]:
    """Per source, how many of its entities are at or before its cutoff."""
    ranges, params = _ranges(cutoffs)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT scraper_source, COUNT(*) {ranges} GROUP BY scraper_source", params)
        return dict(cursor.fetchall())


def totals(sources: list[str]) -> dict[str, int]:
    """How many entities each of the sources has now."""
    rows = EntitySeen.objects.filter(scraper_source__in=sources).order_by().values_list("scraper_source")
    return dict(rows.annotate(n=Count("*")))


def stalest(cutoffs: dict[str, int], limit: int) -> dict[str, list[tuple[str, int]]]:
    """Per source, its `limit` stalest entities at or before its cutoff, with when each was last
    refreshed: one read for every source."""
    ranges, params = _ranges(cutoffs)
    ranked = (
        "SELECT scraper_source, entity, last_seen_at, "
        f"ROW_NUMBER() OVER (PARTITION BY scraper_source ORDER BY last_seen_at, entity) AS n {ranges}"
    )
    found: dict[str, list[tuple[str, int]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT scraper_source, entity, last_seen_at FROM ({ranked}) ranked WHERE n <= %s "
                       "ORDER BY scraper_source, n", [*params, limit])  # fmt: skip
        for source, entity, at in cursor.fetchall():
            found.setdefault(source, []).append((entity, at))
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


def stale_now(now_ms: int, sources: frozenset[str] | None = None) -> dict[str, int]:
    """Each source reporting entities (of `sources`; None: all) with its stale count as the
    alert evaluator last wrote it (StaleMinute, within the last two minutes; 0 without)."""
    names = reporting()
    recent = StaleMinute.objects.filter(minute__gte=datetime.fromtimestamp((now_ms - 120_000) / 1000, UTC))
    if sources is not None:
        names, recent = [n for n in names if n in sources], recent.filter(scraper_source__in=sources)
    found = dict.fromkeys(names, 0)
    for source, stale in recent.order_by("minute").values_list("scraper_source", "stale"):
        found[source] = stale  # the newest minute's last
    return found

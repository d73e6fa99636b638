"""Runs (docs/api.md, "Runs"): each run's numbers, read from the run rollups
(metrics_app.run_rollups), and the runs each is compared with: its scheduler's last ten
finished before it (the run_degraded rule is metrics_app.alerts.runs).

A run's numbers, defined once here:
- pages: its navigations, or its scrapes when it has more of those (a scraper may record only
  one of the two per page); failedPages: its failed navigations and failed scrapes;
- items: its scrapes' items, or, for a run with no scrapes, its scheduler run's itemsProcessed;
- durationMs: its scheduler run's executionDurationMs once it ended, else first to last record;
- state: finished once a scheduler_run record with its runId arrived; unfinished when it had no
  record for METRICS_RUN_IDLE_S; running otherwise.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from django.conf import settings
from django.db.models import Count, Q

from metrics_app.history.fields import ratios
from metrics_app.run_models import RunEnd, RunEntity, RunField, RunSource, RunStatus
from metrics_app.tally import iso

USUAL_RUNS: Final = 10  # a run is compared with this many of its scheduler's finished runs
MAX_LISTED: Final = 200  # runs in one answer of GET /api/runs/
PAGE_ROWS_PER_RUN: Final = 20  # run sources read per run listed (a run has a row per source)


@dataclass
class Run:
    """One run's numbers (the module's docstring defines each)."""

    run_id: str
    scheduler_name: str | None = None
    sources: set[str] = field(default_factory=set)
    first_at: int | None = None  # ms since the epoch
    last_at: int | None = None
    ended_at: int | None = None
    success: bool | None = None
    end_duration_ms: int | None = None
    items_processed: int | None = None
    navigations: int = 0
    failed_navigations: int = 0
    scrapes: int = 0
    failed_scrapes: int = 0
    scraped_items: int = 0
    bytes: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    fields: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # items, filled, invalid
    entities: int = 0  # distinct (source, entity) pairs its pages refreshed

    @property
    def pages(self) -> int:
        return max(self.navigations, self.scrapes)

    @property
    def failed_pages(self) -> int:
        # a page whose navigation and scrape both failed (a kit's scrape inside its navigation)
        # is one failed page: at most `pages`
        return min(self.pages, self.failed_navigations + self.failed_scrapes)

    @property
    def items(self) -> int:
        if self.scrapes or self.items_processed is None:
            return self.scraped_items
        return self.items_processed

    @property
    def started_at(self) -> int:
        if self.first_at is not None:
            return self.first_at
        assert self.ended_at is not None  # a run is known by a record, a page or its end
        return self.ended_at - (self.end_duration_ms or 0)

    @property
    def duration_ms(self) -> int:
        if self.end_duration_ms is not None:
            return self.end_duration_ms
        return (self.last_at or self.started_at) - self.started_at

    @property
    def last_activity(self) -> int:
        return max(self.last_at or 0, self.ended_at or 0)

    def state(self, now_ms: int) -> str:
        if self.ended_at is not None:
            return "finished"
        if now_ms - self.last_activity >= settings.METRICS_RUN_IDLE_S * 1000:
            return "unfinished"
        return "running"

    def filled_share(self, name: str) -> float | None:
        items, filled, invalid = self.fields.get(name, (0, 0, 0))
        return ratios(items, filled, invalid)[0]


def load(run_ids: Iterable[str]) -> dict[str, Run]:
    """The runs' numbers from the run rollups: five indexed reads, whatever the runs' sizes (the
    entities' is a count of a row per entity, up to a run's distinct entities)."""
    ids = list(dict.fromkeys(run_ids))
    runs = {run_id: Run(run_id) for run_id in ids}
    if not ids:
        return runs
    # MySQL's default collation matches ids without case: rows of another id are skipped.
    for row in RunSource.objects.filter(run_id__in=ids).order_by():
        if (run := runs.get(row.run_id)) is None:
            continue
        run.sources.add(row.scraper_source)
        run.first_at = row.first_at if run.first_at is None else min(run.first_at, row.first_at)
        run.last_at = row.last_at if run.last_at is None else max(run.last_at, row.last_at)
        run.navigations += row.navigations
        run.failed_navigations += row.failed_navigations
        run.scrapes += row.scrapes
        run.failed_scrapes += row.failed_scrapes
        run.scraped_items += row.items
        run.bytes += row.bytes
        run.entities += row.entities  # folded by retention (RunEntity's rows are the rest)
    for end in RunEnd.objects.filter(run_id__in=ids).order_by():
        if (run := runs.get(end.run_id)) is None:
            continue
        run.scheduler_name, run.success, run.ended_at = end.scheduler_name, end.success, end.ended_at
        run.end_duration_ms, run.items_processed = end.duration_ms, end.items_processed
        if end.scraper_source:
            run.sources.add(end.scraper_source)
    for run_id, name, items, filled, invalid in (
        RunField.objects.filter(run_id__in=ids)
        .order_by()
        .values_list("run_id", "field", "items", "filled", "invalid")
    ):
        if run_id in runs:
            runs[run_id].fields[name] = (items, filled, invalid)
    for run_id, n in (
        RunEntity.objects.filter(run_id__in=ids).order_by().values_list("run_id").annotate(n=Count("*"))
    ):
        if run_id in runs:
            runs[run_id].entities += n
    for run_id, code, navigations in (
        RunStatus.objects.filter(run_id__in=ids)
        .order_by()
        .values_list("run_id", "http_status", "navigations")
    ):
        if run_id in runs:
            runs[run_id].statuses[code] = navigations
    return {
        run_id: run for run_id, run in runs.items() if run.first_at is not None or run.ended_at is not None
    }


def ends_before(scheduler: str, key: tuple[int, str], count: int, inclusive: bool = False) -> list[str]:
    """The ids of the scheduler's last `count` runs that ended before `key` (its end and run
    id: runs ending in the same millisecond come in id order), newest first."""
    ended, run_id = key
    same_time = Q(ended_at=ended, run_id__lte=run_id) if inclusive else Q(ended_at=ended, run_id__lt=run_id)
    earlier = Q(ended_at__lt=ended) | same_time
    return list(
        RunEnd.objects.filter(earlier, scheduler_name=scheduler)
        .order_by("-ended_at", "-run_id")
        .values_list("run_id", flat=True)[:count]
    )


# --- The API's answers -------------------------------------------------------------------------


def comparison(usual: Sequence[Run]) -> dict[str, Any]:
    """The range of each number over `usual`, as GET /api/runs/ gives it."""
    if not usual:
        return {"runs": 0}

    def span(values: Sequence[float]) -> dict[str, float]:
        return {"min": min(values), "max": max(values)}

    names = sorted({name for r in usual for name in r.fields})
    fields = {}
    for name in names:
        shares = [s for r in usual if (s := r.filled_share(name)) is not None]
        if shares:
            fields[name] = {"filledRatio": span(shares)}
    return {
        "runs": len(usual),
        "items": span([r.items for r in usual]),
        "pages": span([r.pages for r in usual]),
        "failedPages": span([r.failed_pages for r in usual]),
        "durationMs": span([r.duration_ms for r in usual]),
        "fields": fields,
    }


def as_json(
    run: Run, usual: Sequence[Run], now_ms: int, degraded: str | None, outside: Sequence[str]
) -> dict[str, Any]:
    """A run as GET /api/runs/ gives it; `degraded` is the run_degraded rule's summary if it
    holds, `outside` the measures it found out of range (metrics_app.alerts.runs)."""
    return {
        "runId": run.run_id,
        "schedulerName": run.scheduler_name,
        "sources": sorted(run.sources),
        "startedAt": _iso(run.started_at),
        "endedAt": _ended(run, now_ms),
        "state": run.state(now_ms),
        "success": run.success,
        "durationMs": run.duration_ms,
        "pages": run.pages,
        "failedPages": run.failed_pages,
        "items": run.items,
        "bytes": run.bytes,
        "statuses": {str(code): n for code, n in sorted(run.statuses.items())},
        "fields": {
            name: {"items": items, "filled": filled, "invalid": invalid}
            for name, (items, filled, invalid) in sorted(run.fields.items())
        },
        "entities": run.entities,
        "verdict": None if degraded is None else "run_degraded",
        "summary": degraded,
        "outside": list(outside),
        "comparison": comparison(usual),
    }


def _ended(run: Run, now_ms: int) -> str | None:
    state = run.state(now_ms)
    if state == "finished":
        assert run.ended_at is not None
        return _iso(run.ended_at)
    return _iso(run.last_activity) if state == "unfinished" else None


def _iso(ms: int) -> str:
    return iso(datetime.fromtimestamp(ms / 1000, UTC))


def one(run_id: str, now_ms: int) -> tuple[Run, list[Run]] | None:
    """A run and its usual (its scheduler's last ten finished runs before it, newest first),
    or None for a run the service has no record of."""
    run = load([run_id]).get(run_id)
    if run is None:
        return None
    usual: list[Run] = []
    if run.scheduler_name is not None and run.ended_at is not None:
        ids = ends_before(run.scheduler_name, (run.ended_at, run.run_id), USUAL_RUNS)
        loaded = load(ids)
        usual = [loaded[i] for i in ids if i in loaded]
    return run, usual


def listed(scheduler: str | None, source: str | None, limit: int) -> list[tuple[Run, list[Run]]]:
    """Runs newest first (by their last record or end), each with its usual (as `one`). A run
    is known to belong to a scheduler once it ends, so `scheduler` lists finished runs only."""
    ends = RunEnd.objects.order_by("-ended_at")
    pages = RunSource.objects.order_by("-last_at")
    if scheduler is not None:
        ends = ends.filter(scheduler_name=scheduler)
    if source is not None:
        pages = pages.filter(scraper_source=source)
        ends = ends.filter(Q(scraper_source=source) | Q(run_id__in=pages.values("run_id")))
    latest: dict[str, int] = {}
    candidates = list(ends.values_list("run_id", "ended_at")[:limit])
    if scheduler is None:  # a row per run and source: a crawl of many sites has many
        candidates += pages.values_list("run_id", "last_at")[: limit * PAGE_ROWS_PER_RUN]
    for run_id, at in candidates:
        latest[run_id] = max(at, latest.get(run_id, at))
    newest = sorted(latest, key=lambda run_id: -latest[run_id])[:limit]
    runs = load(newest)
    chosen = [runs[run_id] for run_id in newest if run_id in runs]
    usual = _usual_of(chosen)
    return [(run, usual.get(run.run_id, [])) for run in chosen]


def _usual_of(chosen: Sequence[Run]) -> dict[str, list[Run]]:
    """Each finished run's usual, as `one` finds it: one read per scheduler, of its runs from
    the newest chosen back to ten before the oldest, slid along."""
    by_scheduler: dict[str, list[tuple[int, str]]] = {}
    for run in chosen:
        if run.scheduler_name is not None and run.ended_at is not None:
            by_scheduler.setdefault(run.scheduler_name, []).append((run.ended_at, run.run_id))
    usual: dict[str, list[Run]] = {}
    for scheduler, keys in by_scheduler.items():
        oldest, newest = min(keys), max(keys)
        between = (
            RunEnd.objects.filter(scheduler_name=scheduler, ended_at__gte=oldest[0], ended_at__lte=newest[0])
            .order_by()
            .count()
        )
        ids = ends_before(scheduler, newest, between + USUAL_RUNS, inclusive=True)
        loaded = load(ids)
        history = [loaded[i] for i in ids if i in loaded]  # newest first
        for key in keys:
            earlier = [r for r in history if (r.ended_at or 0, r.run_id) < key]
            usual[key[1]] = earlier[:USUAL_RUNS]
    return usual

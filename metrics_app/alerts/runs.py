"""The run_degraded rule (docs/alerts.md): a finished run far outside its scheduler's last ten
finished runs, judged the same way for GET /api/runs/ and for the alert.

"Far" is measured against the last ten's quartiles, so that a noisy scheduler needs a bigger
change, and one or two bad runs among the ten do not make the next bad run look usual (a
scheduler that stays broken stays alerting until half its last ten are bad):
- items or pages: under half their median and under their lower quartile;
- failed pages: more than twice their upper quartile, plus 2 (a run usually failing 0-1 pages
  is degraded from 5), and a share of its pages that the last ten's failure rate makes
  unlikely (below RUN_FAILURE_CHANCE): 5 of 93 is bad luck for a scheduler failing 2 %;
- duration: more than 3 times their median and over their upper quartile, or under a third of
  the median and under the lower quartile (a run that finishes too fast skipped its work);
- a field's filled share: 20 points under its lower quartile.
Fewer than MIN_USUAL_RUNS finished runs say too little to judge by. The summary gives the
least and most of the ten, as a person compares.
"""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from metrics_app.alerts.findings import Finding, count_text, duration_text, pct, unlikely_rate
from metrics_app.alerts.models import Verdict
from metrics_app.alerts.signals import Run as LastSchedulerRun
from metrics_app.history import runs as run_history
from metrics_app.history.runs import Run

MIN_USUAL_RUNS: Final = 3
# A run is judged once, not every cycle as a window is: a chance of one in a thousand of
# calling a healthy run's failures degraded (findings.unlikely_rate).
RUN_FAILURE_CHANCE: Final = 1e-3
MIN_FAILURE_RATE: Final = 0.001  # the usual rate of a scheduler whose last runs never failed
MEASURE: Final = "run_degraded"  # the rule's key in an alert's `measure`
# A run is judged this long after its end: pages of it that arrive later (a batch retried
# after a 503, another process's) still count.
SETTLE_MS: Final = 30_000


@dataclass(frozen=True)
class Outside:
    """One of a run's numbers outside its usual."""

    measure: str  # "items", "pages", "failedPages", "durationMs" or "fields.<name>"
    value: float
    bound: float  # the quartile it is judged against
    text: str  # "120 items, its last 10 runs 480–520"


@dataclass(frozen=True)
class Usual:
    """One measure over the last runs: its quartiles and median, its least and most."""

    least: float
    low: float  # lower quartile
    median: float
    high: float  # upper quartile
    most: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Usual":
        ordered = sorted(values)
        low, median, high = statistics.quantiles(ordered, n=4, method="inclusive")
        return cls(ordered[0], low, median, high, ordered[-1])


def judged(run: Run, usual: Sequence[Run]) -> list[Outside] | None:
    """Where a finished run is far outside `usual` (the module says how far): items, pages,
    failures, duration, then fields, the emptiest first. None when it is not judged (not
    finished, or too few runs before it)."""
    if run.ended_at is None or len(usual) < MIN_USUAL_RUNS:
        return None
    found = []
    n = len(usual)
    for measure, value in (("items", run.items), ("pages", run.pages)):
        spread = Usual.of([getattr(r, measure) for r in usual])
        if value < spread.median / 2 and value < spread.low:
            text = f"{value:,} {measure}, its last {n} runs {_span(spread, count_text)}"
            found.append(Outside(measure, value, spread.low, text))
    spread = Usual.of([r.failed_pages for r in usual])
    rate = max(sum(r.failed_pages for r in usual) / max(1, sum(r.pages for r in usual)), MIN_FAILURE_RATE)
    unlikely = run.pages > 0 and run.failed_pages / run.pages >= unlikely_rate(
        rate, run.pages, RUN_FAILURE_CHANCE
    )
    if run.failed_pages > 2 * spread.high + 2 and unlikely:
        text = f"{run.failed_pages:,} of {run.pages:,} pages failed, usually {_span(spread, count_text)}"
        found.append(Outside("failedPages", run.failed_pages, spread.high, text))
    spread, took = Usual.of([r.duration_ms for r in usual]), run.duration_ms
    if spread.median and took > 3 * spread.median and took > spread.high:
        text = f"took {duration_text(took)}, too slow: usually {_span(spread, duration_text)}"
        found.append(Outside("durationMs", took, spread.high, text))
    elif spread.median and took < spread.median / 3 and took < spread.low:
        text = f"took {duration_text(took)}, too fast: usually {_span(spread, duration_text)}"
        found.append(Outside("durationMs", took, spread.low, text))
    fields = []
    for name in sorted(run.fields):
        share = run.filled_share(name)
        shares = [s for r in usual if (s := r.filled_share(name)) is not None]
        if share is None or len(shares) < MIN_USUAL_RUNS:
            continue
        spread = Usual.of(shares)
        if share < spread.low - 0.2:
            usually = _span(spread, lambda fraction: f"{100 * fraction:.0f}") + " %"
            text = f"{name} filled on {pct(share)} of items, usually {usually}"
            fields.append(Outside(f"fields.{name}", share, spread.low, text))
    return found + sorted(fields, key=lambda outside: outside.value)


def summary(run: Run, outside: Sequence[Outside]) -> str:
    """One line a person reads: "quotes-refresh run r-0100: 120 items, its last 10 runs 480–520; …"."""
    return f"{run.scheduler_name} run {run.run_id}: " + "; ".join(o.text for o in outside)


def _span(spread: Usual, form: Any) -> str:
    """The least and most of the last runs, as people write a range: "480–520", or "0"."""
    least, most = form(spread.least), form(spread.most)
    return least if least == most else f"{least}–{most}"


# --- The alert ------------------------------------------------------------------------------------


class LastRuns:
    """Each scheduler's last finished run, judged once it has settled: a judgment changes only
    when a new run ends, so an evaluation cycle reads the run rollups only for schedulers whose last run is
    new since the cycle before."""

    def __init__(self) -> None:
        self._judged: dict[str, tuple[str, Finding | None]] = {}  # scheduler → (run id, finding)

    def finding(self, scheduler: str, last: LastSchedulerRun, now_ms: int) -> Finding | None:
        """The run_degraded finding of the scheduler's last run, whether or not it holds; None
        when that run has no id, ended less than SETTLE_MS ago, or too few runs came before it
        to judge by."""
        run_id = last.run_id
        if run_id is None:
            self._judged.pop(scheduler, None)
            return None
        if now_ms - last.at < SETTLE_MS:
            return None
        known = self._judged.get(scheduler)
        if known is not None and known[0] == run_id:
            return known[1]
        found = run_history.one(run_id, now_ms)
        finding = None if found is None else _finding(*found, last.source)
        self._judged[scheduler] = (run_id, finding)
        return finding


def _finding(run: Run, usual: Sequence[Run], source: str | None) -> Finding | None:
    outside = judged(run, usual)
    if outside is None:
        return None
    basis = f"its last {len(usual)} runs"
    if not outside:
        return Finding(
            Verdict.RUN_DEGRADED, source, run.scheduler_name,
            f"{run.scheduler_name} run {run.run_id}: {run.items:,} items, in range of {basis}",
            float(run.items), None, basis, measure=MEASURE, holds=False,
        )  # fmt: skip
    worst = outside[0]
    return Finding(
        Verdict.RUN_DEGRADED, source, run.scheduler_name, summary(run, outside),
        float(worst.value), float(worst.bound), basis, measure=MEASURE, at_once=True,
    )  # fmt: skip


# --- GET /api/runs/ ------------------------------------------------------------------------------


def _answer(run: Run, usual: Sequence[Run], now_ms: int) -> dict[str, Any]:
    outside = judged(run, usual) or []
    degraded = summary(run, outside) if outside else None
    return run_history.as_json(run, usual, now_ms, degraded, [o.measure for o in outside])


def one(run_id: str, now_ms: int, visible: frozenset[str] | None = None) -> dict[str, Any] | None:
    """GET /api/runs/<runId>/, or None for a run the service has no record of, or one with
    records of a source outside `visible` (a key limited to sources)."""
    found = run_history.one(run_id, now_ms)
    if found is None or not _covered(found[0], visible):
        return None
    return _answer(*found, now_ms)


def listed(
    scheduler: str | None, source: str | None, limit: int, now_ms: int, visible: frozenset[str] | None = None
) -> list[dict[str, Any]]:
    """GET /api/runs/: runs newest first, each with its comparison and verdict; only those
    whose every source is `visible`, for a key limited to sources."""
    return [
        _answer(run, usual, now_ms)
        for run, usual in run_history.listed(scheduler, source, limit)
        if _covered(run, visible)
    ]


def _covered(run: Run, visible: frozenset[str] | None) -> bool:
    return visible is None or run.sources <= visible

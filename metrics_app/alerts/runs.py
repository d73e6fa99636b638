"""The run_degraded rule (docs/alerts.md): a finished run far outside its scheduler's last ten
finished runs, judged the same way for GET /api/runs/ and for the alert.

"Far" is relative to the last ten's own spread, so a noisy scheduler needs a bigger change
before it is called degraded:
- items or pages: under half their median and under their least;
- failed pages: more than twice their most, plus 2 (a run usually failing 0-1 pages is degraded
  from 5);
- duration: more than 3 times their median and over their most, or under a third of it and
  under their least (a run that finishes too fast skipped its work);
- a field's filled share: 20 points under its least.
Fewer than MIN_USUAL_RUNS finished runs say too little to judge by.
"""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from metrics_app.alerts.findings import Finding, count_text, duration_text, pct
from metrics_app.alerts.models import Verdict
from metrics_app.alerts.signals import Run as SchedulerRun
from metrics_app.history import runs as run_history
from metrics_app.history.runs import Run

MIN_USUAL_RUNS: Final = 3
MEASURE: Final = "run_degraded"  # the rule's key in an alert's `measure`
MAX_LISTED: Final = 200  # runs in one answer of GET /api/runs/


@dataclass(frozen=True)
class Outside:
    """One of a run's numbers outside its usual."""

    measure: str  # "items", "pages", "failedPages", "durationMs" or "fields.<name>"
    value: float
    low: float
    high: float
    text: str  # "120 items, its last 10 runs 480–520"


def judged(run: Run, usual: Sequence[Run]) -> list[Outside]:
    """Where a finished run is far outside `usual` (the module says how far): items, pages,
    failures, duration, then fields, the emptiest first."""
    if run.ended_at is None or len(usual) < MIN_USUAL_RUNS:
        return []
    found = []
    for measure, value, history in (
        ("items", run.items, [r.items for r in usual]),
        ("pages", run.pages, [r.pages for r in usual]),
    ):
        median, low, high = statistics.median(history), min(history), max(history)
        if value < median / 2 and value < low:
            text = f"{value:,} {measure}, its last {len(usual)} runs {_span(low, high, count_text)}"
            found.append(Outside(measure, value, low, high, text))
    failures = [r.failed_pages for r in usual]
    low, high = min(failures), max(failures)
    if run.failed_pages > 2 * high + 2:
        text = f"{run.failed_pages:,} of {run.pages:,} pages failed, usually {_span(low, high, count_text)}"
        found.append(Outside("failedPages", run.failed_pages, low, high, text))
    durations = [r.duration_ms for r in usual]
    median, low, high = statistics.median(durations), min(durations), max(durations)
    took = run.duration_ms
    if median and ((took > 3 * median and took > high) or (took < median / 3 and took < low)):
        pace = "fast" if took < median else "slow"
        text = f"took {duration_text(took)}, too {pace}: usually {_span(low, high, duration_text)}"
        found.append(Outside("durationMs", took, low, high, text))
    fields = []
    for name in sorted(run.fields):
        share = run.filled_share(name)
        shares = [s for r in usual if (s := r.filled_share(name)) is not None]
        if share is None or len(shares) < MIN_USUAL_RUNS:
            continue
        least, most = min(shares), max(shares)
        if share < least - 0.2:
            usually = _span(least, most, lambda fraction: f"{100 * fraction:.0f}") + " %"
            text = f"{name} filled on {pct(share)} of items, usually {usually}"
            fields.append(Outside(f"fields.{name}", share, least, most, text))
    return found + sorted(fields, key=lambda outside: outside.value)


def summary(run: Run, outside: Sequence[Outside]) -> str:
    """One line a person reads: "quotes-refresh run r-0100: 120 items, its last 10 runs 480–520; …"."""
    return f"{run.scheduler_name} run {run.run_id}: " + "; ".join(o.text for o in outside)


def _span(low: float, high: float, form: Any) -> str:
    low_text, high_text = form(low), form(high)
    return low_text if low_text == high_text else f"{low_text}–{high_text}"


# --- The alert ------------------------------------------------------------------------------------


class LastRuns:
    """Each scheduler's last finished run, judged once: a judgment changes only when a new run
    ends, so an evaluation cycle reads the run rollups only for schedulers whose last run is
    new since the cycle before."""

    def __init__(self) -> None:
        self._judged: dict[str, tuple[str, Finding | None]] = {}  # scheduler → (run id, finding)

    def finding(self, scheduler: str, last: SchedulerRun, now_ms: int) -> Finding | None:
        """The run_degraded finding of the scheduler's last run, whether or not it holds; None
        when that run has no id, or too few runs came before it to judge by."""
        run_id = last.run_id
        if run_id is None:
            self._judged.pop(scheduler, None)
            return None
        known = self._judged.get(scheduler)
        if known is not None and known[0] == run_id:
            return known[1]
        found = run_history.one(run_id, now_ms)
        finding = None if found is None else _finding(*found, last.source)
        self._judged[scheduler] = (run_id, finding)
        return finding


def _finding(run: Run, usual: Sequence[Run], source: str | None) -> Finding | None:
    if run.ended_at is None or len(usual) < MIN_USUAL_RUNS:
        return None
    outside = judged(run, usual)
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
        float(worst.value), float(worst.low if worst.value < worst.low else worst.high), basis,
        measure=MEASURE,
    )  # fmt: skip


# --- GET /api/runs/ ------------------------------------------------------------------------------


def _answer(run: Run, usual: Sequence[Run], now_ms: int) -> dict[str, Any]:
    outside = judged(run, usual)
    degraded = summary(run, outside) if outside else None
    return run_history.as_json(run, usual, now_ms, degraded, [o.measure for o in outside])


def one(run_id: str, now_ms: int) -> dict[str, Any] | None:
    """GET /api/runs/<runId>/, or None for a run the service has no record of."""
    found = run_history.one(run_id, now_ms)
    return None if found is None else _answer(*found, now_ms)


def listed(scheduler: str | None, source: str | None, limit: int, now_ms: int) -> list[dict[str, Any]]:
    """GET /api/runs/: runs newest first, each with its comparison and verdict."""
    return [_answer(run, usual, now_ms) for run, usual in run_history.listed(scheduler, source, limit)]

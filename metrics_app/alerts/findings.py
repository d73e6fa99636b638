"""What every rule gives (Finding), and the words and numbers its summary is written with:
shared by the rules of metrics_app.alerts.verdicts and metrics_app.alerts.field_rules, so a
percentage or a usual range reads the same in every alert."""

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from metrics_app.alerts.models import Verdict
from metrics_app.alerts.usual import Spread

# A rate "far above usual" must also be one that the usual rate would give by chance with a
# probability below FAILURE_CHANCE (unlikely_rate).
FAILURE_CHANCE: Final = 1e-5
MIN_RECORDS: Final = 5  # a window with fewer records of a type is not judged on rates

# A field_broken source delivers wrong data while everything else looks fine: as bad as no data.
CRITICAL: Final = {Verdict.SITE_DOWN, Verdict.BLOCKED, Verdict.EXTRACTION_BROKEN, Verdict.FIELD_BROKEN,
                   Verdict.NO_DATA, Verdict.SCHEDULER_LATE, Verdict.SCHEDULER_FAILED,
                   Verdict.INCIDENT}  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """What a rule measured in one evaluation: what broke (when it `holds`), for whom, and why."""

    verdict: str
    source: str | None
    scheduler: str | None
    summary: str
    value: float | None
    threshold: float | None
    threshold_source: str
    sources: tuple[str, ...] = ()  # an incident's
    # The rule that measured it (a key of SOURCE_RULES or SCHEDULER_RULES, SILENCE, or an
    # incident's "shared:<verdict>"): an alert whose condition is gone is measured by it again,
    # so that it shows the current numbers while it resolves.
    measure: str = ""
    holds: bool = True  # False: only the current numbers of a condition that is gone
    # A fact rather than a measure over the window (a run that ended far out of range): it fires
    # at once instead of after holding for half a window.
    at_once: bool = False

    @property
    def fingerprint(self) -> str:
        return f"{self.verdict}:{self.source or ''}:{self.scheduler or ''}"

    @property
    def severity(self) -> str:
        return "critical" if self.verdict in CRITICAL else "warning"


# Every source's failure rates are judged on each cycle, twice (the window and its last part):
# 40 bisection steps each were half a cycle at 1,000 sources. The usual rates change once an
# hour and the counts little between cycles, so the same few thousand pairs come back.
@lru_cache(maxsize=16_384)
def unlikely_rate(usual: float, n: int, chance: float = FAILURE_CHANCE) -> float:
    """The lowest failure rate among n records whose chance at the usual rate is below
    `chance`, by Chernoff's bound P(rate ≥ q) ≤ exp(-n · KL(q ‖ usual)); 1.0 (every record
    failing) when even that is not unlikely enough."""
    needed = math.log(1 / chance) / n
    if _kl(1.0, usual) < needed:
        return 1.0
    low, high = usual, 1.0
    for _ in range(40):  # bisection: KL(q ‖ usual) grows with q above usual
        middle = (low + high) / 2
        low, high = (middle, high) if _kl(middle, usual) < needed else (low, middle)
    return high


def _kl(q: float, p: float) -> float:
    """Kullback-Leibler divergence of Bernoulli(q) from Bernoulli(p)."""
    total = q * math.log(q / p) if q > 0 else 0.0
    return total + ((1 - q) * math.log((1 - q) / (1 - p)) if q < 1 else 0.0)


# --- words and numbers -------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def top_errors(errors: Counter[str]) -> str:
    if not errors:
        return ""
    top = ", ".join(f"{(message or 'no message')[:80]} x{n}" for message, n in errors.most_common(2))
    return f"; errors: {top}"


def range_text(spread: Spread | None, form: Callable[[float], str]) -> str:
    if spread is None:
        return "unknown"
    low, high = form(spread.low), form(spread.high)
    return low if low == high else f"{low}–{high}"


def pct(fraction: float) -> str:
    return f"{100 * fraction:.0f} %"


def pct_range(spread: Spread) -> str:
    """A usual share as people write it: "97–100 %"."""
    return range_text(spread, lambda fraction: f"{100 * fraction:.0f}") + " %"


def ms_text(value: float) -> str:
    return (
        f"{value:.0f} ms"
        if value < 1000
        else f"{value / 1000:.2g} s"
        if value < 10_000
        else f"{value / 1000:.0f} s"
    )


def count_text(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def bytes_text(value: float) -> str:
    return (
        f"{value:.0f} B"
        if value < 1024
        else f"{value / 1024:.1f} KB"
        if value < 1024**2
        else f"{value / 1024**2:.1f} MB"
    )


def duration_text(ms: float) -> str:
    seconds = int(ms / 1000)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"

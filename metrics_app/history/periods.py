"""A scheduler's usual period, learned from its last runs: the one rule behind the period its
card shows (metrics_app.history.overview) and the `scheduler_late` verdict
(metrics_app.alerts.verdicts), so the page never says "every 10 min" while the alert waits on
another period.

Two runs say nothing about a schedule (4.7 s apart once showed "every 4.7 s"), and a run
started by hand splits a gap in two, so the median of the gaps between consecutive runs moves
with each one. Instead the period is the median gap of the longest chain of runs, each one
period after the one before it (within ±AGREEMENT), skipping the runs in between: a cron job's
next run comes a period after its last scheduled run, whatever was started by hand meanwhile.
It is known once that chain holds at least MIN_AGREEING_GAPS gaps and most of the runs looked
at; until then it is "learning" (or "irregular" once PERIOD_RUNS runs did not agree).
"""

import itertools
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

PERIOD_RUNS: Final = 10  # a period is learned from at most this many of the newest runs
MIN_AGREEING_GAPS: Final = 5  # …of which at least this many gaps (and most of the runs) agree
AGREEMENT: Final = 0.25  # gaps within ±25 % of each other are the same period
GRACE_SPREADS: Final = 3  # late after the period plus this many spreads (or half a window)


@dataclass(frozen=True)
class Period:
    seconds: float | None  # None while learning, or when the runs keep no schedule
    spread_seconds: float  # the median distance of the chain's gaps from the period
    runs: int  # the runs looked at (at most PERIOD_RUNS)
    agreeing: int  # of them, the runs on the schedule

    @property
    def state(self) -> Literal["learned", "learning", "irregular"]:
        if self.seconds is not None:
            return "learned"
        return "learning" if self.runs < PERIOD_RUNS else "irregular"

    def late_after(self, window_seconds: float) -> float | None:
        """Seconds after its last run that a scheduler is late: its period plus a grace of half
        an alert window, or more when its own gaps vary."""
        if self.seconds is None:
            return None
        return self.seconds + max(window_seconds / 2, GRACE_SPREADS * self.spread_seconds)


def usual_period(times: Iterable[float]) -> Period:
    """The period of runs made at `times` (seconds, any order; only the newest PERIOD_RUNS
    count)."""
    newest = sorted(times)[-PERIOD_RUNS:]
    chain = _longest_chain(newest)
    gaps = [later - earlier for earlier, later in itertools.pairwise(chain)]
    if len(gaps) < MIN_AGREEING_GAPS or 2 * len(chain) <= len(newest):
        return Period(None, 0.0, len(newest), len(chain))
    period = statistics.median(gaps)
    spread = statistics.median(abs(gap - period) for gap in gaps)
    return Period(round(period, 1), round(spread, 1), len(newest), len(chain))


def _longest_chain(times: list[float]) -> list[float]:
    """The longest chain of `times` (ascending) whose consecutive gaps all lie within
    ±AGREEMENT of one candidate period, each gap between two of the runs a candidate; on a tie,
    the chain whose gaps vary least. Ten runs make 45 candidates of 45 steps each."""
    best: tuple[int, float, list[float]] = (min(len(times), 1), 0.0, times[:1])
    for candidate in sorted({later - earlier for earlier, later in itertools.combinations(times, 2)}):
        if candidate <= 0:
            continue
        low, high = candidate * (1 - AGREEMENT), candidate * (1 + AGREEMENT)
        length = [1] * len(times)  # the longest chain ending at each run…
        before: list[int | None] = [None] * len(times)  # …and the run before it in that chain
        for j, later in enumerate(times):
            for i in range(j):
                if low <= later - times[i] <= high and length[i] + 1 > length[j]:
                    length[j], before[j] = length[i] + 1, i
        end = max(range(len(times)), key=lambda k: length[k])
        chain: list[float] = []
        at: int | None = end
        while at is not None:
            chain.append(times[at])
            at = before[at]
        chain.reverse()
        gaps = [later - earlier for earlier, later in itertools.pairwise(chain)]
        spread = statistics.median(abs(gap - statistics.median(gaps)) for gap in gaps) if gaps else 0.0
        if (len(chain), -spread) > (best[0], -best[1]):
            best = (len(chain), spread, chain)
    return best[2]

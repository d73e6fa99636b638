"""A scheduler's usual period (metrics_app.history.periods): none until enough runs agree, and
runs started by hand do not move it. Two runs 4.7 s apart once read "every 4.7 s"."""

import random

from metrics_app.history.periods import PERIOD_RUNS, usual_period

TEN_MIN = 600.0


def test_two_runs_are_still_learning() -> None:
    period = usual_period([1000.0, 1004.7])
    assert period.seconds is None and period.state == "learning" and period.runs == 2


def test_no_runs_and_one_run_are_learning() -> None:
    assert usual_period([]).state == "learning" and usual_period([5.0]).runs == 1


def test_five_agreeing_gaps_make_a_period() -> None:
    assert usual_period([n * TEN_MIN for n in range(5)]).seconds is None  # four gaps
    assert usual_period([n * TEN_MIN for n in range(6)]).seconds == TEN_MIN


def test_a_few_hand_started_runs_do_not_change_it() -> None:
    regular = [n * TEN_MIN for n in range(10)]
    for hand in (
        [9 * TEN_MIN + 20, 9 * TEN_MIN + 45, 9 * TEN_MIN + 50],  # three just now
        [3 * TEN_MIN + 60, 5 * TEN_MIN + 200, 8 * TEN_MIN + 330],  # one in each of three gaps
        [7 * TEN_MIN + 290, 8 * TEN_MIN + 10, 8 * TEN_MIN + 420],
    ):
        period = usual_period(regular + hand)
        assert period.seconds == TEN_MIN, hand
        assert period.runs == PERIOD_RUNS and period.agreeing >= 7


def test_jitter_is_the_spread_and_the_period_its_median() -> None:
    rng = random.Random(4)
    times = [n * TEN_MIN + rng.uniform(-5, 5) for n in range(10)]
    period = usual_period(times)
    assert period.seconds is not None and abs(period.seconds - TEN_MIN) < 10
    assert 0 < period.spread_seconds < 10


def test_runs_that_keep_no_schedule_are_irregular() -> None:
    times = [0.0, 30.0, 400.0, 460.0, 1900.0, 2000.0, 4100.0, 4500.0, 4510.0, 9000.0]
    period = usual_period(times)
    assert period.seconds is None and period.state == "irregular"


def test_a_new_schedule_takes_over_without_halfway_periods() -> None:
    """The demo's backfill ran every 10 minutes, its live runs every minute: the period read 10
    min, then 5.5 min, then 1 min."""
    backfill = [n * TEN_MIN for n in range(20)]
    seen = set()
    for live in range(1, 11):
        runs = backfill + [backfill[-1] + 60.0 * n for n in range(1, live + 1)]
        seen.add(usual_period(runs).seconds)
    assert seen <= {TEN_MIN, 60.0, None} and {TEN_MIN, 60.0} <= seen


def test_late_after_is_the_period_and_a_grace() -> None:
    period = usual_period([n * TEN_MIN for n in range(10)])
    assert period.late_after(window_seconds=300) == TEN_MIN + 150
    assert usual_period([0.0, 4.7]).late_after(window_seconds=300) is None

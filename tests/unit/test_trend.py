"""The trend rule (metrics_app.trend): a change is a percentage only against a period before
that held comparable data; otherwise the page says "new"."""

import pytest

from metrics_app.trend import MIN_RECORDS, comparable, trend


def test_a_period_before_with_records_in_few_of_its_buckets_is_not_comparable() -> None:
    # A source that reported for one day of last week: 5,000 records, 24 of 168 hours.
    assert not comparable(records=5000, covered=24, buckets=168)
    assert trend(40_000, 5000, comparable(5000, 24, 168)) == {
        "direction": "up", "change": None, "comparable": False,
    }  # fmt: skip


def test_a_period_before_with_a_trickle_of_records_is_not_comparable() -> None:
    assert not comparable(records=MIN_RECORDS - 1, covered=5, buckets=5)
    assert trend(3, MIN_RECORDS - 1, comparable(MIN_RECORDS - 1, 5, 5))["comparable"] is False


def test_from_nothing_there_is_no_percentage() -> None:
    assert trend(120, 0, True) == {"direction": "up", "change": None, "comparable": False}
    assert trend(None, 80.0, True) == {"direction": "stable", "change": None, "comparable": False}


@pytest.mark.parametrize(
    ("now", "before", "change", "direction"),
    [(1200, 1000, 20.0, "up"), (700, 1000, -30.0, "down"), (1020, 1000, 2.0, "stable")],
)
def test_against_comparable_data_the_change_is_a_percentage(
    now: int, before: int, change: float, direction: str
) -> None:
    assert comparable(records=before, covered=120, buckets=168)
    assert trend(now, before, True) == {"direction": direction, "change": change, "comparable": True}


def test_a_huge_rise_against_comparable_data_is_exact_and_never_new() -> None:
    """The old demo: about 4 records a minute in every hour of the week before, 20 a second
    now. That week is comparable (it held data throughout); the change is the true one, and
    the page writes it as a multiple of 330, never "+33,305 %" (tests/js/trend-format.test.mjs)."""
    before = 4 * 60 * 24 * 7
    now = round(before * 334.05)
    assert comparable(before, covered=168, buckets=168)
    assert trend(now, before, True) == {"direction": "up", "change": 33305.0, "comparable": True}

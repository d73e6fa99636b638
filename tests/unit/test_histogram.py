"""Duration buckets (metrics_app.histogram): edges, bounds and merged percentiles."""

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics_app.histogram import BUCKETS, GROWTH, bucket_of, merge, percentile, percentiles, upper_bound


def test_each_bucket_holds_durations_up_to_its_upper_edge() -> None:
    assert bucket_of(0) == 0 and bucket_of(-5) == 0 and bucket_of(1) == 1
    for duration in [*range(1, 5000), 10**6, 2**31 - 1]:
        bucket = bucket_of(duration)
        assert upper_bound(bucket - 1) < duration <= upper_bound(bucket) or bucket == BUCKETS - 1


def test_durations_past_the_last_edge_share_the_last_bucket() -> None:
    assert bucket_of(10**9) == bucket_of(2**31 - 1) == BUCKETS - 1


def test_a_percentile_is_at_most_one_bucket_above_the_exact_value() -> None:
    rng = random.Random(5)
    durations = [int(rng.lognormvariate(6, 1)) + 1 for _ in range(5000)]
    exact = sorted(durations)[int(0.95 * len(durations)) - 1]
    counts: dict[int, int] = {}
    for duration in durations:
        counts[bucket_of(duration)] = counts.get(bucket_of(duration), 0) + 1
    estimate = percentile(counts, 0.95)
    assert estimate is not None and exact <= estimate <= exact * GROWTH + 0.1


def test_merged_histograms_are_the_histogram_of_the_union() -> None:
    first, second = {1: 2, 5: 1}, {5: 3, 9: 1}
    assert merge([first, second]) == {1: 2, 5: 4, 9: 1}
    assert percentile({}, 0.95) is None


@given(
    st.dictionaries(st.integers(0, BUCKETS - 1), st.integers(1, 1000), min_size=1),
    st.lists(st.sampled_from([0.0, 0.01, 0.5, 0.95, 0.99, 1.0]), min_size=1, max_size=4),
)
def test_percentiles_read_in_one_walk_are_those_of_the_sorted_durations(
    counts: dict[int, int], fractions: list[float]
) -> None:
    ordered = sorted(bucket for bucket, n in counts.items() for _ in range(n))
    expected = [
        round(upper_bound(ordered[max(0, math.ceil(f * len(ordered)) - 1)]), 1) for f in sorted(fractions)
    ]
    assert percentiles(counts, sorted(fractions)) == expected


@pytest.mark.parametrize("bucket", [0, 1, 2, 40, BUCKETS - 1])
def test_upper_edges_grow_by_the_factor(bucket: int) -> None:
    if bucket >= 2:
        assert upper_bound(bucket) == pytest.approx(upper_bound(bucket - 1) * GROWTH)

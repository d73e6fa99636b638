"""Fixed duration buckets, so percentiles can be merged across minutes, hours and processes.

Bucket 0 holds 0 ms; bucket i ≥ 1 holds durations in (GROWTH^(i-2), GROWTH^(i-1)] ms, up to
about 75 minutes (longer ones share the last bucket). A percentile read from the buckets is
the upper edge of its bucket, at most 20 % above the exact value; and adding two histograms
bucket by bucket gives the histogram of the union, which exact percentiles cannot.
"""

import math
from collections.abc import Iterable, Mapping
from typing import Final

GROWTH: Final = 1.2
BUCKETS: Final = 86
_LOG_GROWTH: Final = math.log(GROWTH)


def bucket_of(duration_ms: int) -> int:
    if duration_ms <= 0:
        return 0
    return min(BUCKETS - 1, 1 + max(0, math.ceil(math.log(duration_ms) / _LOG_GROWTH - 1e-9)))


def upper_bound(bucket: int) -> float:
    return 0.0 if bucket == 0 else GROWTH ** (bucket - 1)


def percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """The given percentile (0–1) of a histogram: the upper bound of the bucket it falls in."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return round(upper_bound(bucket), 1)
    return round(upper_bound(max(counts)), 1)


def merge(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for bucket, count in histogram.items():
            merged[bucket] = merged.get(bucket, 0) + count
    return merged

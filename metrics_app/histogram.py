"""Fixed duration buckets, so percentiles can be merged across minutes, hours and processes.

Bucket 0 holds 0 ms; bucket i ≥ 1 holds durations in (GROWTH^(i-2), GROWTH^(i-1)] ms, up to
about 75 minutes (longer ones share the last bucket). A percentile read from the buckets is
the upper edge of its bucket, at most 20 % above the exact value; and adding two histograms
bucket by bucket gives the histogram of the union, which exact percentiles cannot.

The bucket rule is written here once, in Python (`bucket_of`), in raw SQL (`bucket_sql`, for
the rollup rebuild) and as an ORM expression (`bucket_expression`, for reads of detailed rows);
tests/integration/test_histogram_parity.py runs all three over the same durations.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from django.db.models import Case, F, IntegerField, Value, When
from django.db.models.functions import Ceil, Least, Ln

GROWTH: Final = 1.2
BUCKETS: Final = 86
_LOG_GROWTH: Final = math.log(GROWTH)
# A boundary falls on a power of GROWTH only up to float error: without the nudge, a duration
# of exactly 1.2**k ms could land one bucket high in Python and not in SQL.
_NUDGE: Final = 1e-9


def bucket_of(duration_ms: int) -> int:
    if duration_ms <= 0:
        return 0
    return min(BUCKETS - 1, 1 + max(0, math.ceil(math.log(duration_ms) / _LOG_GROWTH - _NUDGE)))


def bucket_sql(duration: str) -> str:
    """bucket_of in SQL, for an expression of either database (Django gives SQLite LN and
    CEILING)."""
    raw = f"1 + CEILING(LN({duration}) / LN({GROWTH}) - {_NUDGE})"
    return f"CASE WHEN {duration} <= 0 THEN 0 WHEN {raw} > {BUCKETS - 1} THEN {BUCKETS - 1} ELSE {raw} END"


def bucket_expression(duration: str) -> Case:
    """bucket_of as an ORM expression over the field or annotation `duration`."""
    return Case(
        When(**{f"{duration}__lte": 0}, then=Value(0)),
        default=Least(
            Value(BUCKETS - 1),
            Value(1) + Ceil(Ln(F(duration)) / Value(_LOG_GROWTH) - Value(_NUDGE)),
        ),
        output_field=IntegerField(),
    )


def upper_bound(bucket: int) -> float:
    return 0.0 if bucket == 0 else GROWTH ** (bucket - 1)


def upper_bound_sql(bucket: str) -> str:
    """upper_bound in SQL, rounded to 0.1 ms as `percentile` rounds it."""
    return f"CASE WHEN {bucket} = 0 THEN 0 ELSE ROUND(POWER({GROWTH}, {bucket} - 1), 1) END"


def percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """The given percentile (0–1) of a histogram: the upper bound of the bucket it falls in."""
    return percentiles(counts, (fraction,))[0]


def percentiles(counts: Mapping[int, int], fractions: Sequence[float]) -> list[float | None]:
    """Several percentiles (ascending fractions) of a histogram in one walk over its buckets."""
    total = sum(counts.values())
    if total == 0:
        return [None] * len(fractions)
    buckets = sorted(counts)
    at, seen = 0, counts[buckets[0]]
    found: list[float | None] = []
    for fraction in fractions:
        while seen < fraction * total and at + 1 < len(buckets):
            at += 1
            seen += counts[buckets[at]]
        found.append(round(upper_bound(buckets[at]), 1))
    return found


def merge(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for bucket, count in histogram.items():
            merged[bucket] = merged.get(bucket, 0) + count
    return merged

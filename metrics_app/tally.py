"""Records summed: the one arithmetic behind every count, rate, average and percentile the
service shows. A history bucket, a channel's live minute, an alert's window and a rollup row
are all a Tally: counts and sums that add, and a duration histogram (metrics_app.histogram)
whose percentiles survive the adding.

The page adds live records to the server's buckets with the same rules, written once in
JavaScript (static/js/tally.js); tests/unit/test_rules_agree.py runs both over the same
records.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from metrics_app import histogram
from metrics_app.records import DURATION_FIELD, ITEMS_FIELD, camel

_DURATION_WIRE = {kind: camel(name) for kind, name in DURATION_FIELD.items()}
_ITEMS_WIRE = {kind: camel(name) for kind, name in ITEMS_FIELD.items()}


@dataclass
class Tally:
    count: int = 0  # records
    ok: int = 0  # of them, successful
    total: int = 0  # their durations, summed (ms)
    items: int = 0  # items extracted (scrapes) or processed (scheduler runs)
    retries: int = 0
    size: int = 0  # bytes scraped
    histogram: dict[int, int] = field(default_factory=dict)  # records per duration bucket
    last_recorded_at: int = 0  # the newest record's recordedAt (ms)

    def add(
        self, n: int, ok: int, total: int | None, items: int | None, retries: int | None, size: int | None,
        bucket: int, last_recorded_at: int = 0,
    ) -> None:  # fmt: skip
        """`n` records already summed (a rollup row), all in one duration bucket."""
        self.count += n
        self.ok += ok
        self.total += total or 0
        self.items += items or 0
        self.retries += retries or 0
        self.size += size or 0
        self.histogram[bucket] = self.histogram.get(bucket, 0) + n
        self.last_recorded_at = max(self.last_recorded_at, last_recorded_at)

    def add_record(self, record: dict[str, Any]) -> None:
        """One record, in its wire shape."""
        kind = record["type"]
        duration = record[_DURATION_WIRE[kind]]
        items = record.get(_ITEMS_WIRE[kind], 0) if kind in _ITEMS_WIRE else 0
        self.add(1, int(record["success"]), duration, items, record.get("retryCount", 0),
                 record.get("dataSize", 0), histogram.bucket_of(duration), record["recordedAt"])  # fmt: skip

    def merge(self, other: "Tally") -> None:
        self.count += other.count
        self.ok += other.ok
        self.total += other.total
        self.items += other.items
        self.retries += other.retries
        self.size += other.size
        for bucket, n in other.histogram.items():
            self.histogram[bucket] = self.histogram.get(bucket, 0) + n
        self.last_recorded_at = max(self.last_recorded_at, other.last_recorded_at)

    def subtract(self, other: "Tally") -> None:
        """Take away a part that was merged in (a minute leaving a window). The newest
        recordedAt cannot be taken away: it stays, an upper bound, until recomputed."""
        self.count -= other.count
        self.ok -= other.ok
        self.total -= other.total
        self.items -= other.items
        self.retries -= other.retries
        self.size -= other.size
        for bucket, n in other.histogram.items():
            left = self.histogram.get(bucket, 0) - n
            if left > 0:
                self.histogram[bucket] = left
            else:
                self.histogram.pop(bucket, None)

    @property
    def failures(self) -> int:
        return self.count - self.ok

    @property
    def success_rate(self) -> float | None:
        """Percent, to 2 places; None for no records."""
        return round(100.0 * self.ok / self.count, 2) if self.count else None

    @property
    def avg_duration(self) -> float | None:
        """ms, to 1 place; None for no records."""
        return round(self.total / self.count, 1) if self.count else None

    def percentile(self, fraction: float) -> float | None:
        return histogram.percentile(self.histogram, fraction)

    def as_bucket(self, start: datetime) -> dict[str, Any]:
        """The shape of a history bucket (docs/api.md)."""
        p50, p95, p99 = histogram.percentiles(self.histogram, (0.50, 0.95, 0.99))
        return {
            "start": iso(start),
            "count": self.count,
            "successCount": self.ok,
            "avgDurationMs": self.avg_duration,
            "p50DurationMs": p50,
            "p95DurationMs": p95,
            "p99DurationMs": p99,
            "itemsExtracted": self.items,
            "retries": self.retries,
            "dataSize": self.size,
        }


def merged(tallies: Any) -> Tally:
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    return total


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

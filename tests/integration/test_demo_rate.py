"""The demo's past has the shape of its present: simulate_scrapers backfills each source at the
rate it then sends live. Its past sent about 4 records a minute and its present 20 a second, so
every card's "vs the previous 7 days" read "+33,305 %"."""

import random
import time
from collections import Counter
from typing import Any

import pytest

from metrics_app.management.commands import simulate_scrapers
from metrics_app.management.commands.simulate_scrapers import (
    SCHEDULER,
    SCHEDULER_PERIOD_S,
    Command,
    SimulatedSource,
)

SOURCES = ("robinhood", "cnbc", "webull", "marketbeat", "yahoo-finance", "seeking-alpha")
RATE = 200.0  # records a second: enough live records in a few seconds to measure each source's rate


class Recorder:
    """Stands in for the HTTP client: what the demo would send, by source and time."""

    def __init__(self, *_: Any, **__: Any) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, metric: dict[str, Any]) -> None:
        self.records.append({"recordedAt": int(time.time() * 1000), **metric})

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float = 10.0) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"sent": len(self.records), "buffered": 0, "dropped": 0, "lastError": None}


def simulated() -> list[SimulatedSource]:
    rng = random.Random(7)
    return [SimulatedSource(name, rng.uniform(250, 1500), rng.uniform(40, 400), 0.5, rng.randint(5, 60))
            for name in SOURCES]  # fmt: skip


def per_source_rate(records: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    counts = Counter(record["scraperSource"] for record in records if record["type"] != "scheduler_run")
    return {name: counts[name] / seconds for name in SOURCES}


@pytest.mark.django_db
def test_the_backfill_sends_each_source_at_its_live_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    backfill = Recorder()
    monkeypatch.setattr(simulate_scrapers, "MetricsClient", lambda *args, **kwargs: backfill)
    days = 0.01  # 14.4 minutes of the past: some 170,000 records at this rate
    Command()._backfill(simulated(), "http://127.0.0.1:1/", "key", random.Random(1), RATE, days)
    live = Recorder()
    started = time.monotonic()
    Command()._run(simulated(), live, random.Random(2), RATE, duration=5)  # type: ignore[arg-type]
    live_seconds = time.monotonic() - started

    times = [record["recordedAt"] for record in backfill.records]
    past = per_source_rate(backfill.records, (max(times) - min(times)) / 1000)
    present = per_source_rate(live.records, live_seconds)
    # Each page goes to a source drawn at random, so 5 s live give each source some 170
    # records, within ±30 % at 4 standard deviations; a factor of 1.5 says "the same rate",
    # where the old demo's past and present differed by a factor of 300.
    for name in SOURCES:
        assert 1 / 1.5 <= past[name] / present[name] <= 1.5, (name, past[name], present[name])
    assert sum(past.values()) == pytest.approx(RATE, rel=0.05)  # and the rate is the one asked for
    # The scheduler runs as often in the past as live: every SCHEDULER_PERIOD_S.
    runs = [
        r["recordedAt"]
        for r in backfill.records
        if r["type"] == "scheduler_run" and r["schedulerName"] == SCHEDULER
    ]
    assert len(runs) == pytest.approx(days * 86_400 / SCHEDULER_PERIOD_S, abs=2)
    # ...and it reaches the minute it ends in, so live traffic follows without a hole.
    assert max(times) >= time.time() * 1000 - 3 * 60_000

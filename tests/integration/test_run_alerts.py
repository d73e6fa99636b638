"""The run_degraded alert (docs/alerts.md): fired by the evaluator when a scheduler's run ends
far outside its last ten, with the numbers; resolved when a later run is back in range. Runs
are stored as ingest stores them (run rollups included), relative to a fixed `now`."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from metrics_app.alerts.evaluator import Evaluator
from metrics_app.alerts.models import Alert
from metrics_app.records import epoch_ms
from tests.support.db import store
from tests.support.runs import crawl

pytestmark = pytest.mark.django_db
WINDOW = timedelta(seconds=300)
EVERY_MS = 20 * 60_000  # a run every 20 minutes, each taking a minute


@pytest.fixture
def now() -> Any:
    return timezone.now().replace(microsecond=0)


def runs(now_ms: int, first: int, *options: dict[str, Any]) -> None:
    """Runs qr-<first>, qr-<first+1>, …, the last one ending a minute before now."""
    for n, given in enumerate(options):
        start = now_ms - (len(options) - n) * EVERY_MS + EVERY_MS - 2 * 60_000
        store(*crawl(f"qr-{first + n:04}", "cnbc", start, **{"pages": 20, "items": 500, **given}))


def test_a_degraded_run_fires_with_its_numbers_and_a_run_back_in_range_resolves(now: Any) -> None:
    now_ms = epoch_ms(now)
    runs(now_ms, 0, *[{"items": 490 + 2 * n} for n in range(10)], {"items": 120, "failed": 9})
    evaluator = Evaluator("test")
    fired = evaluator.run_once(now)[1]  # at once: the run has ended, there is nothing to wait for
    (event,) = [e for e in fired if e.alert.verdict == "run_degraded"]
    alert = event.alert
    assert (event.status, alert.scheduler_name, alert.scraper_source, alert.severity) == (
        "firing", "quotes-refresh", "cnbc", "warning"
    )  # fmt: skip
    assert alert.summary == (
        "quotes-refresh run qr-0010: 120 items, its last 10 runs 490–508; 9 of 20 pages failed, usually 0"
    )
    assert (alert.value, alert.threshold) == (120, 494.5)  # the lower quartile of 490–508

    runs(now_ms + EVERY_MS, 11, {"items": 497})  # the next run, ending a minute before `later`
    later = now + timedelta(milliseconds=EVERY_MS)
    resolved = evaluator.run_once(later)[1] + evaluator.run_once(later + WINDOW / 2)[1]
    # (its failed pages also fired site_down, which resolves as well)
    assert [e.status for e in resolved if e.alert.verdict == "run_degraded"] == ["resolved"]
    assert (
        Alert.objects.get(pk=alert.pk).summary
        == "quotes-refresh run qr-0011: 497 items, in range of its last 10 runs"
    )


def test_healthy_noisy_runs_never_fire(now: Any) -> None:
    now_ms = epoch_ms(now)
    evaluator = Evaluator("test")
    noisy = [{"items": 500 + (45 if n % 3 else -50), "took_ms": 60_000 + (6_000 if n % 2 else -6_000)}
             for n in range(16)]  # fmt: skip
    runs(now_ms, 0, *noisy)
    for step in range(4):
        events = evaluator.run_once(now + step * WINDOW / 2)[1]
        assert not [e for e in events if e.alert.verdict == "run_degraded"]

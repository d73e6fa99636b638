"""`field_broken` (issue 24): a field of a source's items empties, or fails its check, on far
more items than its usual, learned from the source's own field rollups; noisy healthy fields
and fields that are usually half empty stay quiet.

Records are stored as ingest stores them (rows and rollups), relative to a fixed `now`, and
the evaluator runs at chosen times, as in test_alerts.py."""

import random
import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from metrics_app.alerts.evaluator import Evaluator
from metrics_app.alerts.models import Alert, AlertEvent
from metrics_app.records import epoch_ms
from tests.integration.test_alerts import WINDOW, evaluate_until_firing, in_window
from tests.support.db import store
from tests.support.records import navigation, scrape

pytestmark = pytest.mark.django_db

HOUR_MS = 3_600_000
# The field window holds whole minutes, each read once it has ended and settled: records of the
# last minute are in it a minute later.
SETTLED = timedelta(seconds=70)
ITEMS = 25
# Per field, the range of items (of 25) a healthy page has it filled on.
USUAL = {"price": (23, 25), "name": (25, 25), "change": (13, 17)}  # ~96 %, 100 %, ~60 %


@pytest.fixture
def now() -> Any:
    return timezone.now().replace(microsecond=0)


def fields(**filled: int | tuple[int, int]) -> dict[str, dict[str, int]]:
    """Field counts of a page: filled, or (filled, invalid)."""
    return {
        name: {"filled": n[0], "invalid": n[1]} if isinstance(n, tuple) else {"filled": n, "invalid": 0}
        for name, n in filled.items()
    }


def field_history(source: str, now_ms: int, hours: int = 12, per_hour: int = 6) -> None:
    """`hours` of healthy pages before the window, each field filled as USUAL says, at random."""
    rng = random.Random(24)
    records = []
    for hour in range(1, hours + 1):
        for n in range(per_hour):
            at = now_ms - hour * HOUR_MS + n * 60_000
            counts = fields(**{name: rng.randint(*bounds) for name, bounds in USUAL.items()})
            records.append(navigation(scraperSource=source, recordedAt=at, httpStatus=200))
            records.append(
                scrape(scraperSource=source, recordedAt=at + 1000, itemsExtracted=ITEMS, fields=counts)
            )
    store(*records)


def pages(now_ms: int, source: str, **filled: int | tuple[int, int]) -> None:
    """12 pages over the last minute before now_ms, each with these field counts."""
    in_window(now_ms, navigation, scraperSource=source, httpStatus=200)
    in_window(now_ms, scrape, scraperSource=source, itemsExtracted=ITEMS, fields=fields(**filled))


def test_a_field_that_empties_fires_naming_it_with_its_numbers_then_resolves(now: Any) -> None:
    now_ms = epoch_ms(now)
    field_history("cnbc", now_ms)
    pages(now_ms, "cnbc", price=3, name=25, change=15)
    evaluator = Evaluator("test")

    assert [e.status for e in evaluate_until_firing(evaluator, now + SETTLED)] == ["firing"]

    alert = Alert.objects.get()
    assert (alert.verdict, alert.scraper_source, alert.severity) == ("field_broken", "cnbc", "critical")
    # the usual's spread depends on how the history's pages fall into hours at this minute
    fired = re.fullmatch(
        r"cnbc: price filled on 12 % of items over the last 5 min \(36 of 300\), "
        r"usual 9\d–(9\d|100) % \(last 7 days\); items per page normal \(25\)",
        alert.summary,
    )
    assert fired, alert.summary
    assert "name" not in alert.summary and "change" not in alert.summary  # the healthy ones
    assert alert.value == pytest.approx(36 / 300)

    recovered = now + WINDOW + timedelta(seconds=61)
    pages(epoch_ms(recovered), "cnbc", price=24, name=25, change=15)
    assert evaluator.run_once(recovered + SETTLED)[1] == []  # gone for less than half a window
    alert.refresh_from_db()
    assert alert.summary.startswith("cnbc: fields as usual over the last 5 min: ")  # the current numbers
    assert re.search(r"price filled on 96 % of items \(288 of 300\), usual 9\d–(9\d|100) %", alert.summary)
    assert [e.status for e in evaluator.run_once(recovered + SETTLED + WINDOW / 2)[1]] == ["resolved"]
    assert AlertEvent.objects.filter(status="firing").get().summary == fired[0]  # its numbers at firing


def test_every_broken_field_is_named_worst_first_and_invalid_values_count(now: Any) -> None:
    now_ms = epoch_ms(now)
    field_history("cnbc", now_ms)
    pages(now_ms, "cnbc", price=(25, 13), name=5, change=15)

    evaluate_until_firing(Evaluator("test"), now + SETTLED)

    alert = Alert.objects.get(state="firing")
    assert alert.verdict == "field_broken"
    assert alert.summary.startswith(
        "cnbc: name filled on 20 % of items over the last 5 min (60 of 300), usual 100 % (last 7 days); "
        "price valid on 48 % of filled items (144 of 300), usual 100 % (last 7 days)"
    )
    assert alert.value == pytest.approx(0.2)


def test_noisy_healthy_fields_and_a_usually_60_percent_field_stay_quiet(now: Any) -> None:
    """price at the bottom of its noise (92 %), change at 52 % where it is usually 52–68 %: the
    usual is learned for each, and neither fires over several windows."""
    evaluator = Evaluator("test")
    now_ms = epoch_ms(now)
    field_history("cnbc", now_ms)
    for step in range(4):
        at = now + step * WINDOW
        pages(epoch_ms(at), "cnbc", price=23, name=25, change=13)
        evaluator.run_once(at + SETTLED)
        evaluator.run_once(at + SETTLED + WINDOW / 2)

    learned = evaluator.baselines.get("cnbc").fields
    assert set(learned) == {"price", "name", "change"}
    assert learned["change"].filled is not None and 0.5 < learned["change"].filled.low < 0.6
    assert not Alert.objects.exists()


def test_a_source_that_extracts_nothing_is_extraction_broken_not_field_broken(now: Any) -> None:
    now_ms = epoch_ms(now)
    field_history("cnbc", now_ms)
    in_window(now_ms, navigation, scraperSource="cnbc", httpStatus=200)
    in_window(
        now_ms, scrape, scraperSource="cnbc", itemsExtracted=0, fields=fields(price=0, name=0, change=0)
    )

    evaluate_until_firing(Evaluator("test"), now + SETTLED)

    assert list(Alert.objects.values_list("verdict", flat=True)) == ["extraction_broken"]

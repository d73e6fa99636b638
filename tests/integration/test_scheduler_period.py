"""A scheduler's card and its `scheduler_late` alert go by one period: the one the card shows
(metrics_app.history.periods). The card read "every 4.7 s" after two runs, and "Last run 12 min
ago · ok" beside a period the alert did not use."""

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from metrics_app.alerts.evaluator import Evaluator
from metrics_app.alerts.models import AlertEvent
from metrics_app.history.overview import overview
from metrics_app.records import epoch_ms
from tests.support.db import store
from tests.support.records import scheduler_run

pytestmark = pytest.mark.django_db

TEN_MIN_MS = 600_000
HALF_WINDOW = timedelta(seconds=150)


@pytest.fixture
def now() -> datetime:
    return timezone.now().replace(microsecond=0)


def card(name: str, now: datetime) -> dict[str, Any]:
    period: dict[str, Any] = overview("24h", now=now)["schedulers"][name]["period"]
    return period


def late_alerts(at: datetime) -> list[AlertEvent]:
    """The scheduler_late alerts that fire when evaluated at `at` and half a window later."""
    evaluator = Evaluator("test")
    events = evaluator.run_once(at)[1] + evaluator.run_once(at + HALF_WINDOW)[1]
    return [e for e in events if e.alert.verdict == "scheduler_late" and e.status == "firing"]


def test_hand_started_runs_move_neither_the_card_nor_the_alert(now: datetime) -> None:
    last = epoch_ms(now) - 60_000
    regular = [last - n * TEN_MIN_MS for n in range(10)]
    hand = [last - TEN_MIN_MS + 45_000, last - 3 * TEN_MIN_MS + 200_000, last - 5 * TEN_MIN_MS + 330_000]
    store(*[scheduler_run(schedulerName="quotes-refresh", recordedAt=at) for at in regular + hand])

    shown = card("quotes-refresh", now)

    assert shown["seconds"] == 600 and shown["state"] == "learned"
    late_after = timedelta(seconds=shown["lateAfterSeconds"])
    ran = now - timedelta(minutes=1)
    assert late_alerts(ran + late_after - HALF_WINDOW - timedelta(seconds=5)) == []  # not late yet
    [fired] = late_alerts(ran + late_after + timedelta(seconds=1))
    assert fired.alert.threshold == shown["lateAfterSeconds"]  # the card's period, and its grace
    assert "it runs every 10 min" in fired.alert.summary


def test_no_period_on_the_card_and_no_late_alert_until_runs_agree(now: datetime) -> None:
    last = epoch_ms(now) - 60_000
    store(*[scheduler_run(schedulerName="new-job", recordedAt=last - n * 60_000) for n in range(3)])

    shown = card("new-job", now)

    assert shown == {"seconds": None, "state": "learning", "runs": 3, "lateAfterSeconds": None}
    assert late_alerts(now + timedelta(hours=1)) == []  # three runs a minute apart are no schedule

"""A resolving alert shows its current numbers (issue 23, point 7): once the fault is over, each
evaluation measures the alert's rule again over the current window, while the numbers it fired
with stay on its firing event, in its webhook, and nobody is told of a change of numbers alone.

Records are stored as ingest stores them, relative to a fixed `now`, as in test_alerts.py."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from metrics_app.alerts import lifecycle, notify
from metrics_app.alerts.evaluator import Evaluator
from metrics_app.alerts.models import Alert, AlertEvent, Notification
from metrics_app.records import epoch_ms
from tests.integration.test_alerts import WINDOW, evaluate_until_firing, healthy_history, in_window
from tests.support.db import store
from tests.support.records import navigation, scheduler_run

pytestmark = pytest.mark.django_db

OUTAGE: dict[str, Any] = {"success": False, "error": "net::ERR_CONNECTION_REFUSED"}


@pytest.fixture
def now() -> Any:
    return timezone.now().replace(microsecond=0)


def fire_and_recover(now: Any) -> tuple[Evaluator, Any]:
    """robinhood fails 12 of 20 page loads and fires; then the errors stop, and 12 page loads
    succeed in a window that no longer holds the failures. Returns the evaluator and that time."""
    now_ms = epoch_ms(now)
    healthy_history("robinhood", now_ms)
    in_window(now_ms, navigation, scraperSource="robinhood", **OUTAGE)
    in_window(now_ms, navigation, scraperSource="robinhood", count=8)
    evaluator = Evaluator("test")
    assert [e.status for e in evaluate_until_firing(evaluator, now)] == ["firing"]
    recovered = now + WINDOW + timedelta(seconds=61)
    in_window(epoch_ms(recovered), navigation, scraperSource="robinhood")
    return evaluator, recovered


def test_the_next_evaluation_gives_the_current_numbers_and_the_firing_ones_stay_in_its_history(
    now: Any, settings: Any
) -> None:
    settings.METRICS_ALERT_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]
    evaluator, recovered = fire_and_recover(now)

    assert evaluator.run_once(recovered)[1] == []  # not resolved yet: gone for less than half a window

    alert = Alert.objects.get()
    assert alert.state == "firing"
    assert alert.summary.startswith(
        "robinhood: 0 % of page loads failed over the last 5 min (0 of 12), usual"
    )
    assert (alert.value, alert.measure) == (0.0, "page_loads_failed")
    fired = AlertEvent.objects.select_related("alert").get()
    assert "60 % of page loads failed over the last 5 min (12 of 20)" in fired.summary
    assert fired.value == pytest.approx(0.6)
    # the firing webhook tells the transition's numbers, whenever it is delivered
    sent = notify.payload(fired)
    assert sent["alert"]["summary"] == fired.summary and sent["alert"]["value"] == pytest.approx(0.6)
    assert "(12 of 20)" in sent["text"]
    # a change of numbers alone is no transition: nothing more to send
    assert Notification.objects.count() == 1

    _, events = evaluator.run_once(recovered + WINDOW / 2)

    assert [e.status for e in events] == ["resolved"]
    assert "(0 of 12)" in events[0].summary  # the numbers it resolved with
    assert "(0 of 12)" in lifecycle.as_dict(events[0].alert)["summary"]  # what the WebSocket says
    assert Notification.objects.count() == 2
    assert list(AlertEvent.objects.order_by("at").values_list("status", "value")) == [
        ("firing", pytest.approx(0.6)),
        ("resolved", 0.0),
    ]


def test_the_api_gives_a_resolving_alert_its_current_numbers(reader: Any, now: Any) -> None:
    evaluator, recovered = fire_and_recover(now)
    evaluator.run_once(recovered)

    (alert,) = reader.get("/api/alerts/").json()["alerts"]

    assert alert["state"] == "firing"
    assert "0 % of page loads failed over the last 5 min (0 of 12)" in alert["summary"]
    assert alert["value"] == 0.0


def test_a_source_reporting_again_says_so_while_its_no_data_alert_resolves(now: Any, settings: Any) -> None:
    now_ms = epoch_ms(now)
    healthy_history("robinhood", now_ms, per_hour=60)
    in_window(now_ms, navigation, scraperSource="robinhood")
    evaluator = Evaluator("test")
    evaluator.run_once(now)
    quiet = now + timedelta(seconds=settings.METRICS_ALERT_NO_DATA_S)
    assert [e.alert.verdict for e in evaluate_until_firing(evaluator, quiet)] == ["no_data"]
    back = quiet + WINDOW
    store(navigation(scraperSource="robinhood", recordedAt=epoch_ms(back) - 5000))

    evaluator.run_once(back)

    alert = Alert.objects.get()
    assert alert.state == "firing" and alert.value == 5.0
    last = f"{back - timedelta(seconds=5):%Y-%m-%d %H:%M:%S}"
    assert alert.summary == f"robinhood: reporting again (the last record at {last} UTC)"
    assert AlertEvent.objects.get().summary.startswith("robinhood: no records for 1")


def test_a_scheduler_that_runs_again_shows_its_last_run_while_its_late_alert_resolves(now: Any) -> None:
    now_ms = epoch_ms(now)
    store(*[scheduler_run(schedulerName="hourly", recordedAt=now_ms - n * 3_600_000) for n in range(1, 11)])
    evaluator = Evaluator("test")
    later = now + timedelta(minutes=20)
    assert [e.alert.verdict for e in evaluate_until_firing(evaluator, later)] == ["scheduler_late"]
    back = later + WINDOW
    store(scheduler_run(schedulerName="hourly", recordedAt=epoch_ms(back) - 60_000))

    evaluator.run_once(back)

    alert = Alert.objects.get()
    assert alert.state == "firing"
    assert alert.summary.startswith("hourly: the last run 60 s ago; it runs every")
    assert AlertEvent.objects.get().summary.startswith("hourly: no run for 82 min")

"""The evaluator on the real database: each verdict fires for its fault, with a summary that says
why, and resolves after it; a noisy but healthy source stays quiet; silences and the lease hold.

Records are stored the way ingest stores them (rollups included), relative to a fixed `now`,
and the evaluator runs at chosen times, so the default window (300 s) is tested as shipped."""

import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from metrics_app.alerts.evaluator import Evaluator
from metrics_app.alerts.models import Alert, AlertEvent, Notification, Silence
from metrics_app.records import epoch_ms
from tests.support.asgi import AsgiClient
from tests.support.db import store
from tests.support.records import navigation, scheduler_run, scrape

HOUR_MS = 3_600_000
WINDOW = timedelta(seconds=300)
pytestmark = pytest.mark.django_db


def healthy_history(source: str, now_ms: int, hours: int = 12, per_hour: int = 6) -> None:
    """`hours` of normal traffic before the window: pages load in ~420 ms, 25 items, 48 KB."""
    records = []
    for hour in range(1, hours + 1):
        for n in range(per_hour):
            at = now_ms - hour * HOUR_MS + n * 60_000
            records.append(navigation(scraperSource=source, recordedAt=at, navigationDurationMs=400 + 10 * n))
            records.append(scrape(scraperSource=source, recordedAt=at + 1000, scrapeDurationMs=120 + n))
    store(*records)


def in_window(now_ms: int, make: Callable[..., dict[str, Any]], count: int = 12, **fields: Any) -> None:
    """`count` records over the last minute before now."""
    store(*[make(recordedAt=now_ms - 60_000 + n * 4000, **fields) for n in range(count)])


def evaluate_until_firing(evaluator: Evaluator, now: Any) -> list[AlertEvent]:
    """Evaluate now and half a window later; the transitions of both."""
    return evaluator.run_once(now)[1] + evaluator.run_once(now + WINDOW / 2)[1]


@pytest.fixture
def now() -> Any:
    return timezone.now().replace(microsecond=0)


FAULTS: dict[str, tuple[Callable[..., dict[str, Any]], dict[str, Any], str]] = {
    "site_down": (
        navigation,
        {"success": False, "error": "net::ERR_CONNECTION_REFUSED"},
        "of page loads failed",
    ),
    "blocked": (navigation, {"success": False, "error": "HTTP 403 Forbidden"}, "HTTP 403 Forbidden"),
    "extraction_broken": (scrape, {"itemsExtracted": 0}, "0 items per page"),
    "slow": (navigation, {"navigationDurationMs": 9000}, "median page load 9"),
    "error_rate": (navigation, {"success": False, "error": "unexpected end of script"}, "failed"),
}


@pytest.mark.parametrize("verdict", FAULTS)
def test_each_fault_fires_its_verdict_with_the_numbers_then_resolves(verdict: str, now: Any) -> None:
    make, fields, words = FAULTS[verdict]
    now_ms = epoch_ms(now)
    healthy_history("cnbc", now_ms)
    if verdict == "error_rate":  # half fail: a clear rise, but not an outage
        in_window(now_ms, make, scraperSource="cnbc", count=6)
    in_window(now_ms, make, scraperSource="cnbc", **fields)
    evaluator = Evaluator("test")

    events = evaluate_until_firing(evaluator, now)

    assert [(e.status, e.alert.verdict, e.alert.scraper_source) for e in events] == [
        ("firing", verdict, "cnbc")
    ]
    alert = events[0].alert
    assert words in alert.summary and "cnbc" in alert.summary
    assert alert.threshold is not None and alert.threshold_source
    # the fault is over: the window no longer holds it; gone for half a window, it resolves
    later = now + WINDOW + timedelta(seconds=61)
    assert evaluator.run_once(later)[1] == []
    _, events = evaluator.run_once(later + WINDOW / 2)
    assert [(e.status, e.alert.verdict) for e in events] == [("resolved", verdict)]


def test_small_pages_are_a_ban_even_when_answered_with_200(now: Any) -> None:
    now_ms = epoch_ms(now)
    healthy_history("webull", now_ms)
    in_window(now_ms, scrape, scraperSource="webull", dataSize=900)

    events = evaluate_until_firing(Evaluator("test"), now)

    assert [e.alert.verdict for e in events] == ["blocked"]
    assert "pages are 900 B over the last 5 min, usual 46.9 KB" in events[0].alert.summary


def test_extraction_summary_gives_the_usual_range_and_that_pages_load(now: Any) -> None:
    now_ms = epoch_ms(now)
    healthy_history("marketbeat", now_ms)
    in_window(now_ms, navigation, scraperSource="marketbeat")
    in_window(now_ms, scrape, scraperSource="marketbeat", itemsExtracted=0)

    (event,) = evaluate_until_firing(Evaluator("test"), now)

    assert event.alert.summary.startswith(
        "marketbeat: 0 items per page over the last 5 min, usual 25 (last 7 days"
    )
    assert "pages load normally (" in event.alert.summary and "100 % ok" in event.alert.summary


def test_a_noisy_but_healthy_source_stays_quiet(now: Any) -> None:
    """5 % failures and a long tail of durations, in history and in the window alike."""
    rng = random.Random(7)
    now_ms = epoch_ms(now)
    records = []
    for minute in range(12 * 60, 0, -1):
        at = now_ms - minute * 60_000
        ms = int(rng.lognormvariate(6, 0.8))
        failed = rng.random() < 0.05
        records.append(navigation(scraperSource="noisy", recordedAt=at, navigationDurationMs=ms, success=not failed,
                                  error="HTTP 503" if failed else None))  # fmt: skip
        records.append(scrape(scraperSource="noisy", recordedAt=at + 500, itemsExtracted=rng.randint(15, 30)))
    store(*records)
    evaluator = Evaluator("test")
    for step in range(8):  # 8 quarter windows: not yet long enough a silence to be no_data
        evaluator.run_once(now + step * WINDOW / 4)
        assert not Alert.objects.filter(state="firing").exists()


def test_a_source_that_goes_quiet_is_no_data(now: Any, settings: Any) -> None:
    now_ms = epoch_ms(now)
    healthy_history("robinhood", now_ms, per_hour=60)
    in_window(now_ms, navigation, scraperSource="robinhood")
    evaluator = Evaluator("test")
    evaluator.run_once(now)
    quiet = now + timedelta(seconds=settings.METRICS_ALERT_NO_DATA_S)

    events = evaluate_until_firing(evaluator, quiet)

    assert [e.alert.verdict for e in events] == ["no_data"]
    assert events[0].alert.summary.startswith("robinhood: no records for 1")


def test_schedulers_late_and_failed(now: Any) -> None:
    now_ms = epoch_ms(now)
    store(
        *[scheduler_run(schedulerName="hourly", recordedAt=now_ms - n * HOUR_MS - 1000) for n in range(1, 11)]
    )
    store(*[scheduler_run(schedulerName="prices", recordedAt=now_ms - n * 60_000) for n in range(1, 11)])
    store(
        scheduler_run(
            schedulerName="prices", recordedAt=now_ms - 1000, success=False, error="HTTP 500 from upstream"
        )
    )
    evaluator = Evaluator("test")

    events = evaluate_until_firing(evaluator, now + timedelta(seconds=30))

    found = {e.alert.scheduler_name: e.alert for e in events}
    assert found["prices"].verdict == "scheduler_failed"
    assert "HTTP 500 from upstream" in found["prices"].summary
    later = now + timedelta(minutes=20)  # an hour and 20 minutes after "hourly" last ran
    events = evaluate_until_firing(evaluator, later)
    late = {e.alert.scheduler_name: e.alert for e in events if e.status == "firing"}
    assert late["hourly"].verdict == "scheduler_late"
    assert "it runs every 60 min" in late["hourly"].summary


def test_many_sources_failing_the_same_way_are_one_incident(now: Any) -> None:
    now_ms = epoch_ms(now)
    names = [f"site{n}" for n in range(8)]
    for name in names:
        in_window(now_ms, navigation, scraperSource=name, success=False, error="connect ETIMEDOUT")

    events = evaluate_until_firing(Evaluator("test"), now)

    assert [e.alert.verdict for e in events] == ["incident"]
    assert events[0].alert.sources == names
    assert events[0].alert.summary.startswith("8 of 8 sources site down at once")


def test_a_silenced_alert_is_recorded_but_not_notified(now: Any, settings: Any) -> None:
    settings.METRICS_ALERT_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]
    now_ms = epoch_ms(now)
    for name in ("cnbc", "webull"):
        in_window(now_ms, navigation, scraperSource=name, success=False, error="connection refused")
    Silence.objects.create(
        scraper_source="cnbc", ends_at=now + timedelta(hours=1), created_by="ops", reason="maintenance"
    )

    events = evaluate_until_firing(Evaluator("test"), now)

    by_source = {e.alert.scraper_source: e for e in events}
    assert by_source["cnbc"].alert.silenced and not by_source["webull"].alert.silenced
    assert list(Notification.objects.values_list("event__alert__scraper_source", flat=True)) == ["webull"]


def test_only_one_evaluator_holds_the_lease_and_another_takes_over_when_it_stops(now: Any) -> None:
    first, second = Evaluator("first"), Evaluator("second")
    assert first.acquire(now)
    assert not second.acquire(now)
    assert first.acquire(now + timedelta(seconds=10))  # renewed
    assert second.acquire(now + timedelta(minutes=5))  # the first stopped renewing
    assert not first.acquire(now + timedelta(minutes=5))


def test_a_flapping_source_stays_one_alert_and_holds_longer(now: Any) -> None:
    """The condition goes away and comes back while firing: one alert, flaps counted, and each
    flap holds the resolution half a window longer."""
    now_ms = epoch_ms(now)
    in_window(now_ms, navigation, scraperSource="flappy", success=False, error="connection reset")
    evaluator = Evaluator("test")
    assert [e.status for e in evaluate_until_firing(evaluator, now)] == ["firing"]
    t = now + WINDOW / 2
    for _ in range(2):  # gone for a moment (records outside the window), then back
        t += WINDOW + timedelta(seconds=61)
        assert evaluator.run_once(t)[1] == []
        t += timedelta(seconds=30)
        in_window(epoch_ms(t), navigation, scraperSource="flappy", success=False, error="connection reset")
        assert evaluator.run_once(t)[1] == []
    alert = Alert.objects.get()
    assert (alert.state, alert.flaps) == ("firing", 2)
    t += WINDOW + timedelta(seconds=61)  # gone for good
    assert evaluator.run_once(t)[1] == []
    assert evaluator.run_once(t + WINDOW / 2)[1] == []  # held: 2 flaps, 1.5 windows
    _, events = evaluator.run_once(t + WINDOW * 3 / 2)
    assert [e.status for e in events] == ["resolved"]
    assert AlertEvent.objects.filter(status="firing").count() == 1


def test_email_goes_out_through_djangos_backend(now: Any, settings: Any) -> None:
    from django.core import mail

    from metrics_app.alerts import notify

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.METRICS_ALERT_EMAILS = ["ops@example.com", "oncall@example.com"]
    in_window(epoch_ms(now), navigation, scraperSource="cnbc", success=False, error="connection refused")
    evaluate_until_firing(Evaluator("test"), now)

    assert notify.deliver_due(now + WINDOW) == (1, 0)  # the transition happened half a window on
    (message,) = mail.outbox
    assert message.to == ["ops@example.com", "oncall@example.com"]
    assert message.subject.startswith("[FIRING] site down: cnbc: ")
    assert "/analytics/source/cnbc/" in message.body
    assert Notification.objects.get().state == "sent"


def test_an_error_text_with_a_newline_still_goes_out_by_email(now: Any, settings: Any) -> None:
    """Playwright's errors are several lines ("Timeout\nCall log: …"): a subject is one."""
    from django.core import mail

    from metrics_app.alerts import notify

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.METRICS_ALERT_EMAILS = ["ops@example.com"]
    error = "Timeout 30000ms exceeded.\nCall log:\n  - navigating to https://cnbc.com/"
    in_window(epoch_ms(now), navigation, scraperSource="cnbc", success=False, error=error)
    evaluate_until_firing(Evaluator("test"), now)
    assert notify.deliver_due(now + WINDOW) == (1, 0)
    (message,) = mail.outbox
    assert "\n" not in message.subject and message.subject.startswith("[FIRING] site down: cnbc: ")
    assert "Call log:" in message.body


def test_a_webhook_text_shows_an_error_as_words_not_chat_markup() -> None:
    from metrics_app.alerts.notify import chat_text

    hostile = (
        "blocked: <!channel> <https://evil.example/|Sign in again> @here [Sign in](https://evil.example/)"
    )
    text = chat_text(hostile)
    assert "<" not in text and ">" not in text  # Slack reads its markup only between < and >
    assert "&lt;!channel&gt;" in text and "&lt;https://evil.example/|Sign in again&gt;" in text
    assert "@here" not in text and "@\u200bhere" in text  # no broadcast mention
    assert "](" not in text and "[Sign in]\\(https://evil.example/)" in text  # no Markdown link


def test_the_watchdog_says_when_evaluation_stopped(now: Any, settings: Any) -> None:
    from metrics_app.alerts import evaluator

    assert evaluator.health()["stale"] is True  # never ran
    watcher = Evaluator("test")
    assert watcher.acquire()
    watcher.run_once()
    health = evaluator.health()
    assert health["stale"] is False and health["lastRunAt"] is not None
    settings.METRICS_ALERT_EVAL_INTERVAL_S = 0.001
    time.sleep(0.01)
    assert evaluator.health()["stale"] is True


def test_the_api_lists_alerts_and_refuses_bad_parameters(reader: Any, now: Any) -> None:
    in_window(epoch_ms(now), navigation, scraperSource="cnbc", success=False, error="connection refused")
    evaluate_until_firing(Evaluator("test"), now)

    (alert,) = reader.get("/api/alerts/").json()["alerts"]
    assert (alert["verdict"], alert["scraperSource"], alert["severity"], alert["endsAt"]) == (
        "site_down", "cnbc", "critical", None,
    )  # fmt: skip
    assert reader.get("/api/alerts/?state=resolved").json() == {"alerts": []}
    assert reader.get("/api/alerts/?source=webull").json() == {"alerts": []}
    bad = reader.get("/api/alerts/?state=open")
    assert bad.status_code == 400 and bad.json()["field"] == "state"
    assert AsgiClient().get("/api/alerts/").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"minutes": 60}, "scraperSource"),
        ({"scraperSource": "Not A Name", "minutes": 60}, "scraperSource"),
        ({"verdict": "broken", "minutes": 60}, "verdict"),
        ({"scraperSource": "cnbc", "minutes": 0}, "minutes"),
        ({"scraperSource": "cnbc", "minutes": "60"}, "minutes"),
        ({"scraperSource": "cnbc", "minutes": 60, "reason": "x" * 501}, "reason"),
    ],
)
def test_a_bad_silence_is_refused_naming_the_field(reader: Any, body: dict[str, Any], field: str) -> None:
    response = reader.post("/api/alerts/silences/", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["field"] == field
    assert not Silence.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_strangers_cannot_silence(asgi: AsgiClient) -> None:
    response = asgi.post(
        "/api/alerts/silences/", {"scraperSource": "cnbc", "minutes": 5}, content_type="application/json"
    )
    assert response.status_code == 401
    assert not Silence.objects.exists()

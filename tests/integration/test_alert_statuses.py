"""`blocked` and `site_down` read the navigations' HTTP statuses (issue 24) from the status
rollups, beside the error texts, and their summaries name the codes.

Records are stored as ingest stores them, relative to a fixed `now`, and the evaluator runs at
chosen times, as in test_alerts.py."""

from typing import Any

import pytest
from django.utils import timezone

from metrics_app.alerts.evaluator import Evaluator
from metrics_app.alerts.models import Alert
from metrics_app.records import epoch_ms
from tests.integration.test_alerts import evaluate_until_firing, healthy_history, in_window
from tests.support.records import navigation

pytestmark = pytest.mark.django_db


@pytest.fixture
def now() -> Any:
    return timezone.now().replace(microsecond=0)


def fired(now: Any, **failing: Any) -> Alert:
    """robinhood, healthy for 12 hours, answers 12 of 20 page loads so; the alert that fires."""
    now_ms = epoch_ms(now)
    healthy_history("robinhood", now_ms)
    in_window(now_ms, navigation, scraperSource="robinhood", **failing)
    in_window(now_ms, navigation, scraperSource="robinhood", count=8, httpStatus=200)
    assert [e.status for e in evaluate_until_firing(Evaluator("test"), now)] == ["firing"]
    return Alert.objects.get()


def test_blocked_with_403s_names_the_code(now: Any) -> None:
    alert = fired(now, success=False, error="HTTP 403 Forbidden", httpStatus=403)
    assert alert.verdict == "blocked"
    assert alert.summary.startswith(
        "robinhood: 60 % of page loads failed over the last 5 min (12 of 20), usual"
    )
    assert "; 60 % of pages answered 403; errors: HTTP 403 Forbidden x12" in alert.summary


def test_403s_are_a_ban_whatever_the_error_text_says(now: Any) -> None:
    """The text says nothing of a refusal (it was error_rate before the statuses counted)."""
    alert = fired(now, success=False, error="request failed", httpStatus=403)
    assert alert.verdict == "blocked"
    assert "60 % of pages answered 403" in alert.summary


def test_429s_recorded_as_loaded_pages_are_still_a_ban(now: Any) -> None:
    alert = fired(now, success=True, httpStatus=429)
    assert alert.verdict == "blocked"
    assert "60 % of page loads failed over the last 5 min (12 of 20)" in alert.summary
    assert "60 % of pages answered 429" in alert.summary


def test_site_down_names_the_5xx_codes(now: Any) -> None:
    alert = fired(now, success=False, error="upstream answered badly", httpStatus=503)
    assert alert.verdict == "site_down"
    assert "; 60 % of pages answered 503; errors: upstream answered badly x12" in alert.summary


def test_a_few_404s_and_429s_of_a_healthy_source_stay_quiet(now: Any) -> None:
    now_ms = epoch_ms(now)
    healthy_history("robinhood", now_ms)
    in_window(now_ms, navigation, scraperSource="robinhood", count=1, httpStatus=429)
    in_window(
        now_ms,
        navigation,
        scraperSource="robinhood",
        count=1,
        success=False,
        error="HTTP 404",
        httpStatus=404,
    )
    in_window(now_ms, navigation, scraperSource="robinhood", count=18, httpStatus=200)
    evaluate_until_firing(Evaluator("test"), now)
    assert not Alert.objects.exists()

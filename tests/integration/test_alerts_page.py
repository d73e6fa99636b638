"""Alerts on the page, in real Chromium: a firing alert appears at the top of the Alerts tab
without a reload (the WebSocket `alert` message), its source's card says so, a person can
silence it from there, and the source's page marks the alert period on its timeline."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from metrics_app.alerts.evaluator import Evaluator
from metrics_app.alerts.models import Silence
from metrics_app.records import epoch_ms
from tests.support.browser import open_dashboard, screenshot
from tests.support.db import store
from tests.support.records import navigation
from tests.support.servers import DaphneServer

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_a_firing_alert_shows_live_on_the_tab_the_card_and_the_source_page(
    browser: Any, daphne: DaphneServer, login: dict[str, str]
) -> None:
    source = f"al-{uuid.uuid4().hex[:8]}"
    now = timezone.now()
    store(*[navigation(scraperSource=source, recordedAt=epoch_ms(now) - 230_000 + n * 4000, success=False,
                       error="net::ERR_NAME_NOT_RESOLVED") for n in range(12)])  # fmt: skip
    page, errors = open_dashboard(browser, daphne, login)
    page.wait_for_selector('#connection[data-connection-state="live"]', timeout=5000)
    page.click('[data-tab="alerts"]')
    assert page.inner_text("#no-firing") == "No alerts are firing."

    evaluator = Evaluator("test")  # this process evaluates; the page hears of it through Redis
    evaluator.run_once(now - timedelta(minutes=3))
    _, events = evaluator.run_once(now)
    evaluator.announce(events)

    page.wait_for_selector("#firing-alerts li", timeout=10_000)
    text = page.inner_text("#firing-alerts")
    assert "site down" in text and f"{source}: 100 % of page loads failed" in text
    assert "ERR_NAME_NOT_RESOLVED" in text and "firing since" in text
    assert page.is_hidden("#no-firing")
    screenshot(page, "alerts-firing")
    page.click('[data-tab="overview"]')
    card = page.locator("#scraper-grid article", has_text=source)
    assert card.locator('[data-field="state"]').inner_text() == "critical: site down"

    page.click('[data-tab="alerts"]')
    page.click("#firing-alerts button.silence")  # a form: how long, and why (no prompt)
    page.select_option("#firing-alerts select[name=minutes]", "240")
    page.fill("#firing-alerts input[name=reason]", "deploying a fix")
    screenshot(page, "alerts-silence-form")
    page.click("#firing-alerts form button[type=submit]")
    page.wait_for_selector("#firing-alerts li:has-text('silenced')", timeout=5000)
    silence = Silence.objects.get()
    assert (silence.scraper_source, silence.verdict, silence.reason) == (
        source,
        "site_down",
        "deploying a fix",
    )
    assert silence.created_by == login["username"]
    assert timedelta(minutes=239) < silence.ends_at - silence.starts_at <= timedelta(minutes=240)

    page.goto(f"{daphne.url}/analytics/source/{source}/?range=live")
    page.wait_for_selector("#firing-alerts li", timeout=10_000)
    page.wait_for_function(
        """() => Chart.getChart(document.querySelector('[data-chart="volume"]'))?.data.datasets
              .find((d) => d.label === 'alert firing')?.data.some((v) => v === 1)""",
        timeout=10_000,
    )
    band = page.evaluate(
        """() => {
            const chart = Chart.getChart(document.querySelector('[data-chart="volume"]'));
            const i = chart.data.datasets.findIndex((d) => d.label === 'alert firing');
            const shaded = chart.getDatasetMeta(i).data.filter((_, k) => chart.data.datasets[i].data[k] === 1);
            return {area: chart.chartArea, bars: shaded.map((b) => ({top: b.y, bottom: b.base, width: b.width})),
                    colour: chart.data.datasets[i].backgroundColor};
        }"""
    )
    assert band["bars"], band  # a shaded column for each bucket the alert fired in: from foot to top
    for bar in band["bars"]:
        assert abs(bar["top"] - band["area"]["top"]) < 2 and abs(bar["bottom"] - band["area"]["bottom"]) < 2
        assert bar["width"] >= 3
    last_point = page.evaluate(
        """() => {
            const chart = Chart.getChart(document.querySelector('[data-chart="percentiles"]'));
            const points = chart.getDatasetMeta(0).data.filter((_, k) => chart.data.datasets[0].data[k] !== null);
            return {x: points.at(-1).x, right: chart.chartArea.right};
        }"""
    )
    assert last_point["right"] - last_point["x"] >= 4, last_point  # inside its slot, not on the edge
    screenshot(page, "alerts-source-page")
    assert errors == []


def test_a_resolving_alert_shows_its_current_numbers_without_a_reload(
    browser: Any, daphne: DaphneServer, login: dict[str, str]
) -> None:
    """The errors stop: the next evaluation's numbers reach the page, though no WebSocket
    message comes (nothing fired or resolved)."""
    source = f"al-{uuid.uuid4().hex[:8]}"
    now = timezone.now().replace(microsecond=0)
    store(*[navigation(scraperSource=source, recordedAt=epoch_ms(now) - 60_000 + n * 4000, success=False,
                       error="net::ERR_CONNECTION_RESET") for n in range(12)])  # fmt: skip
    evaluator = Evaluator("test")
    evaluator.run_once(now)
    evaluator.announce(evaluator.run_once(now + timedelta(minutes=3))[1])
    page, errors = open_dashboard(browser, daphne, login)
    page.wait_for_selector('#connection[data-connection-state="live"]', timeout=5000)
    page.click('[data-tab="alerts"]')
    page.wait_for_selector(
        f"#firing-alerts li:has-text('{source}: 100 % of page loads failed')", timeout=10_000
    )

    recovered = now + timedelta(minutes=6)
    store(*[navigation(scraperSource=source, recordedAt=epoch_ms(recovered) - 60_000 + n * 4000)
            for n in range(12)])  # fmt: skip
    assert evaluator.run_once(recovered)[1] == []  # still firing: only its numbers changed

    page.wait_for_selector(
        f"#firing-alerts li:has-text('{source}: 0 % of page loads failed over the last 5 min (0 of 12)')",
        timeout=25_000,
    )
    assert "clear since" in page.inner_text("#firing-alerts")  # firing, but recovering: it says so
    screenshot(page, "alerts-resolving-current-numbers")
    assert errors == []

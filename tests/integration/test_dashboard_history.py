"""The page answers questions about the past, in Debian's Chromium: a week backfilled through
the API, with a source that stopped three hours ago and an hourly scheduler. Each test reads
what the charts were given to draw (Chart.js' own data) and what the page says."""

import itertools
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from metrics_app.records import now_ms
from tests.support.browser import open_dashboard, screenshot
from tests.support.records import navigation, scheduler_run, scrape
from tests.support.servers import DaphneServer

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]

HOUR = 3_600_000


@pytest.fixture
def week(daphne: DaphneServer, committed_api_key: str) -> dict[str, str]:
    """Names of a steady source, one that stopped 3 hours ago, an hourly scheduler, and a
    failure's unique text; a week of their records stored through the HTTP API."""
    key = committed_api_key
    tag = uuid.uuid4().hex[:6]
    names = {"steady": f"steady-{tag}", "stopped": f"stopped-{tag}", "scheduler": f"hourly-{tag}",
             "needle": f"selector #price-{tag} not found"}  # fmt: skip
    now = now_ms()
    records: list[dict[str, Any]] = []
    for hour in range(1, 7 * 24):
        at = now - hour * HOUR
        records += [
            navigation(scraperSource=names["steady"], recordedAt=at, url=f"https://s/{hour}"),
            scrape(scraperSource=names["steady"], recordedAt=at, url=f"https://s/{hour}", itemsExtracted=20),
            scheduler_run(schedulerName=names["scheduler"], recordedAt=at + 120_000, success=hour % 10 != 0,
                          error=None if hour % 10 else "timed out"),
        ]  # fmt: skip
        if hour >= 3:
            records.append(navigation(scraperSource=names["stopped"], recordedAt=at, url=f"https://t/{hour}"))
    records.append(
        scrape(scraperSource=names["steady"], success=False, error=names["needle"], recordedAt=now - 2 * HOUR)
    )
    for start in range(0, len(records), 500):
        body = orjson.dumps({"metrics": records[start : start + 500]})
        response = httpx.post(
            f"{daphne.url}/api/metrics/", content=body, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 202, response.text
    return names


def chart(page: Any, name: str) -> dict[str, Any]:
    """What a chart was given to draw."""
    data: dict[str, Any] = page.evaluate(
        """(name) => {
            const chart = Chart.getChart(document.querySelector(`canvas[data-chart="${name}"]`));
            return {labels: chart.data.labels, title: chart.options.plugins.title.text,
                    datasets: Object.fromEntries(chart.data.datasets.map((d) => [d.label, d.data]))};
        }""",
        name,
    )
    return data


def choose_range(page: Any, value: str, label: str) -> None:
    page.select_option("#range", value)
    page.wait_for_function(
        f"document.querySelector('#window').textContent.startsWith('{label}')", timeout=10_000
    )


def drawn_share(values: list[Any]) -> float:
    return sum(1 for v in values if v) / len(values)


@pytest.fixture
def page(browser: Any, daphne: DaphneServer, login: dict[str, str]) -> Iterator[Any]:
    opened, errors = open_dashboard(browser, daphne, login)
    opened.wait_for_selector('#connection[data-connection-state="live"]')
    yield opened
    assert errors == []


def test_a_week_and_a_day_draw_across_the_plot(page: Any, week: dict[str, str]) -> None:
    for value, label, buckets in (("7d", "last 7 days", 168), ("24h", "last 24 hours", 24)):
        choose_range(page, value, label)
        timeline = chart(page, "timeline")
        assert len(timeline["labels"]) == buckets
        assert drawn_share(timeline["datasets"][week["steady"]]) >= 0.9, value
        assert timeline["title"].endswith(f"({label})")
        screenshot(page, f"history-{value}-overview")


def test_a_source_that_went_silent_is_offered_and_draws(page: Any, week: dict[str, str]) -> None:
    choose_range(page, "7d", "last 7 days")
    page.wait_for_selector(f'#source-filter option[value="{week["stopped"]}"]', state="attached")
    all_records = page.inner_text('[data-stat="records"]')
    page.select_option("#source-filter", week["stopped"])
    page.wait_for_function(
        f"document.querySelector('[data-stat=\"records\"]').textContent !== '{all_records}'"
    )
    assert page.inner_text('[data-stat="records"]') == "165"  # the tiles follow the filter
    timeline = chart(page, "timeline")
    assert list(timeline["datasets"]) == [week["stopped"], "error rate %"]
    assert drawn_share(timeline["datasets"][week["stopped"]][:-3]) >= 0.9  # and then nothing
    card = page.locator(f'.scraper:has-text("{week["stopped"]}")')
    assert "3 h ago" in card.inner_text() and "stopped" in (card.get_attribute("class") or "")
    screenshot(page, "history-silent-source")


def test_the_scheduler_tab_draws_each_run(page: Any, week: dict[str, str]) -> None:
    choose_range(page, "7d", "last 7 days")
    page.click('[data-tab="scheduler"]')
    page.wait_for_function("Chart.getChart(document.querySelector('canvas[data-chart=\"schedulerRuns\"]'))")
    runs = chart(page, "schedulerRuns")["datasets"][week["scheduler"]]
    assert len(runs) == 167
    assert sum(1 for run in runs if run["failed"]) == 16
    card = page.locator(f'.scraper:has-text("{week["scheduler"]}")')
    assert "every 1 h" in card.inner_text()
    assert week["scheduler"] not in page.inner_text("#scraper-grid")  # scraper cards hold scrapers only
    screenshot(page, "history-scheduler")


def drawn_ticks(page: Any, name: str) -> list[dict[str, Any]]:
    """The x axis labels a chart drew: each one's text, centre and width in px."""
    ticks: list[dict[str, Any]] = page.evaluate(
        """(name) => {
            const chart = Chart.getChart(document.querySelector(`canvas[data-chart="${name}"]`));
            const x = chart.scales.x;
            chart.ctx.save();
            chart.ctx.font = Chart.helpers.toFont(x.options.ticks.font).string;
            const drawn = x.ticks.flatMap((tick, i) => tick.label ? [{label: tick.label, at: x.getPixelForTick(i),
                width: chart.ctx.measureText(tick.label).width}] : []);
            chart.ctx.restore();
            return drawn;
        }""",
        name,
    )
    return ticks


def assert_readable_time_axis(ticks: list[dict[str, Any]], *, dates: bool | None) -> None:
    """Labels on round times ("Dec 1", "14:30"), the date where the axis spans days (None:
    it may, as 30 live minutes do at midnight), none touching the next."""
    labels = [tick["label"] for tick in ticks]
    assert len(ticks) >= 2, labels
    for tick in ticks:
        assert re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}|\d\d:[0-5][05]", tick["label"]), labels
    if dates is not None:
        assert any(re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}", label) for label in labels) == dates, labels
    for before, after in itertools.pairwise(ticks):
        assert after["at"] - before["at"] >= (before["width"] + after["width"]) / 2 + 4, labels


def test_time_axes_name_the_day_and_never_run_together(page: Any, week: dict[str, str]) -> None:
    choose_range(page, "7d", "last 7 days")
    assert_readable_time_axis(drawn_ticks(page, "timeline"), dates=True)
    page.click('[data-tab="scheduler"]')
    page.wait_for_function("Chart.getChart(document.querySelector('canvas[data-chart=\"schedulerRuns\"]'))")
    assert_readable_time_axis(drawn_ticks(page, "schedulerRuns"), dates=True)
    screenshot(page, "axes-7d-scheduler")
    for value in ("7d", "live"):
        page.goto(f"{page.url.split('/analytics/')[0]}/analytics/source/{week['steady']}/?range={value}")
        page.wait_for_function("Chart.getChart(document.querySelector('canvas[data-chart=\"percentiles\"]'))")
        for name in ("volume", "percentiles", "itemsPerScrape"):  # full and half width
            assert_readable_time_axis(drawn_ticks(page, name), dates=True if value == "7d" else None)
        screenshot(page, f"axes-source-{value}")


@pytest.fixture
def busy_scheduler(daphne: DaphneServer, committed_api_key: str) -> str:
    """A scheduler that ran every 5 minutes for 6.6 days (1,900 runs, 7 failed), each run 40–60
    items, stored through the HTTP API; its name."""
    name = f"every-5-min-{uuid.uuid4().hex[:6]}"
    now = now_ms()
    records = [
        scheduler_run(schedulerName=name, recordedAt=now - n * 300_000 - 1000, itemsProcessed=40 + n % 21,
                      executionDurationMs=1000 + 10 * (n % 200), success=n not in BUSY_FAILURES,
                      error="upstream timed out" if n in BUSY_FAILURES else None)
        for n in range(1900)
    ]  # fmt: skip
    for start in range(0, len(records), 500):
        body = orjson.dumps({"metrics": records[start : start + 500]})
        response = httpx.post(
            f"{daphne.url}/api/metrics/",
            content=body,
            headers={"Authorization": f"Bearer {committed_api_key}"},
        )
        assert response.status_code == 202, response.text
    return name


BUSY_FAILURES = {3, 100, 101, 555, 1200, 1500, 1899}


def test_the_scheduler_tab_counts_many_runs_and_draws_their_ranges(page: Any, busy_scheduler: str) -> None:
    """Over 7 days it read "Runs: many, Failed: –", drew hourly sums (100–700 items) under
    "items processed", and a ✕ for every hour holding a failed run."""
    choose_range(page, "7d", "last 7 days")
    page.click('[data-tab="scheduler"]')
    card = page.locator(f'.scraper:has-text("{busy_scheduler}")')
    card.locator('[data-field="runs"]', has_text="1,900").wait_for()
    assert card.locator('[data-field="failed"]').inner_text() == "7"
    assert card.locator('[data-field="period"]').inner_text() == "every 5 min"
    for name, low, high in (("schedulerItems", 40, 60), ("schedulerRuns", 1000, 2990)):
        drawn = chart(page, name)
        ranges = drawn["datasets"][busy_scheduler]
        assert len(ranges) >= 158 and "lowest to highest run" in drawn["title"], name
        # each hour's lowest to highest single run, never a sum of them
        assert all(isinstance(r["y"], list) and low <= r["y"][0] <= r["y"][1] <= high for r in ranges), name
        assert sum(r["runs"] for r in ranges) == 1900
        failed = drawn["datasets"][f"{busy_scheduler}: failed"]
        # a ✕ a failed run
        assert len(failed) == len(BUSY_FAILURES) and all(p["failed"] is True for p in failed)
    screenshot(page, "history-scheduler-many-runs")


def test_a_card_opens_the_source_and_its_page_draws(page: Any, week: dict[str, str]) -> None:
    choose_range(page, "7d", "last 7 days")
    page.click(f'.scraper a:text-is("{week["steady"]}")')
    page.wait_for_url(f"**/analytics/source/{week['steady']}/?range=7d")
    page.wait_for_function("Chart.getChart(document.querySelector('canvas[data-chart=\"percentiles\"]'))")
    percentiles = chart(page, "percentiles")
    assert set(percentiles["datasets"]) == {"p50", "p95", "p99"}
    assert drawn_share(percentiles["datasets"]["p95"]) >= 0.9
    assert drawn_share(chart(page, "itemsPerScrape")["datasets"]["items per scrape"]) >= 0.9
    page.wait_for_selector("#failure-groups tbody tr")
    assert "selector #price-" in page.inner_text("#failure-groups")  # its own failures, grouped
    screenshot(page, "history-drill-down")


def test_the_failures_view_finds_a_failure_by_its_text(page: Any, week: dict[str, str]) -> None:
    choose_range(page, "7d", "last 7 days")
    page.click('[data-tab="alerts"]')
    page.wait_for_selector("#alerts li")
    page.fill("#failure-query", week["needle"])
    page.click("#failure-search button")
    page.wait_for_function("document.querySelector('#failure-total').textContent.startsWith('1 failure ')")
    assert week["needle"] in page.inner_text("#alerts")
    badge = page.get_attribute("#alert-count", "title")
    assert badge == "" or badge.endswith("firing now")  # the badge counts alerts, never failures
    screenshot(page, "history-failures")

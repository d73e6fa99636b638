"""/analytics/ in a real headless Chromium (Debian's package, driven by Playwright)."""

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from django.utils import timezone

from metrics_app.alerts.models import Alert
from tests.support.browser import open_dashboard, screenshot
from tests.support.records import navigation, scrape
from tests.support.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)


def ingest(server: DaphneServer, key: str, records: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{server.url}/api/metrics/", content=orjson.dumps({"metrics": records}),
                          headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert response.status_code == 202


def state_of(page: Any) -> str:
    return str(page.get_attribute("#connection", "data-connection-state"))


def test_goes_live_and_shows_records_as_text(
    browser: Any, daphne: DaphneServer, login: dict[str, str], committed_api_key: str
) -> None:
    source = f"br-{uuid.uuid4().hex[:8]}"
    ingest(daphne, committed_api_key, [scrape(scraperSource=source)])
    page, errors = open_dashboard(browser, daphne, login)
    started = time.monotonic()
    page.wait_for_selector('#connection[data-connection-state="live"]', timeout=5000)
    assert time.monotonic() - started < 2

    hostile = '<img src=x onerror="window.__xss=1"><b>bold</b>'
    ingest(
        daphne,
        committed_api_key,
        [navigation(scraperSource=source, success=False, error=hostile, url="https://x/" + hostile)],
    )
    page.wait_for_function(
        f"document.querySelector('#scraper-grid').textContent.includes('{source}')", timeout=5000
    )
    page.click('[data-tab="alerts"]')
    page.wait_for_selector("#alerts li", timeout=5000)
    alert_text = page.inner_text("#alerts")
    assert hostile in alert_text  # shown as text...
    assert page.evaluate("window.__xss") is None  # ...never run
    assert page.query_selector("#alerts img") is None
    assert page.locator("canvas").count() >= 10
    screenshot(page, "dashboard-alerts")
    page.click('[data-tab="overview"]')
    screenshot(page, "dashboard-overview")
    assert errors == []


def test_every_tab_draws_its_charts(browser: Any, daphne: DaphneServer, login: dict[str, str]) -> None:
    page, errors = open_dashboard(browser, daphne, login)
    page.wait_for_selector('#connection[data-connection-state="live"]')
    for tab in ("scrapers", "navigation", "scraping", "scheduler", "alerts", "overview"):
        page.click(f'[data-tab="{tab}"]')
        page.wait_for_function(
            f"[...document.querySelectorAll('#tab-{tab} canvas')].every(c => c.width > 0)", timeout=5000
        )
    for choice in ("1h", "24h", "7d", "live"):
        page.select_option("#range", choice)
        page.wait_for_timeout(300)
    assert errors == []


def test_mobile_layout_has_no_horizontal_scroll(
    browser: Any, daphne: DaphneServer, login: dict[str, str]
) -> None:
    page, errors = open_dashboard(
        browser, daphne, login, viewport={"width": 375, "height": 740}, is_mobile=True
    )
    page.wait_for_selector('#connection[data-connection-state="live"]')
    for tab in ("overview", "scrapers", "alerts"):
        page.click(f'[data-tab="{tab}"]')
        page.wait_for_timeout(200)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), tab
    screenshot(page, "dashboard-mobile")
    assert errors == []


def test_survives_a_server_restart(
    browser: Any, live_server_env: dict[str, str], login: dict[str, str], committed_api_key: str
) -> None:
    server = DaphneServer(live_server_env)
    server.start()
    try:
        page, errors = open_dashboard(browser, server, login)
        page.wait_for_selector('#connection[data-connection-state="live"]')
        server.stop()
        page.wait_for_function(
            "['reconnecting', 'polling'].includes(document.querySelector('#connection').dataset.connectionState)",
            timeout=10000,
        )
        server = DaphneServer(live_server_env, port=server.port)
        server.start()
        page.wait_for_selector('#connection[data-connection-state="live"]', timeout=40000)
        source = f"back-{uuid.uuid4().hex[:6]}"
        ingest(server, committed_api_key, [navigation(scraperSource=source)])
        page.wait_for_function(
            f"document.querySelector('#scraper-grid').textContent.includes('{source}')", timeout=10000
        )
        # The browser reports the refused reconnects itself; nothing else may go wrong.
        assert [e for e in errors if "WebSocket" not in e and "Failed to load resource" not in e] == []
    finally:
        server.stop()


def test_the_page_works_under_its_own_content_security_policy(
    browser: Any, daphne: DaphneServer, login: dict[str, str], committed_api_key: str
) -> None:
    source = f"csp-{uuid.uuid4().hex[:8]}"
    ingest(daphne, committed_api_key, [scrape(scraperSource=source)])
    page, errors = open_dashboard(browser, daphne, login, bypass_csp=False)
    policy = page.evaluate("fetch('/analytics/').then(r => [r.headers.get('content-security-policy'), "
                           "r.headers.get('cache-control')])")  # fmt: skip
    assert "script-src 'self'" in policy[0] and "unsafe-inline" not in policy[0]
    assert "no-store" in policy[1]  # a logged-in page is never cached
    page.wait_for_selector('#connection[data-connection-state="live"]', timeout=5000)
    page.wait_for_selector(f"#scraper-grid >> text={source}", timeout=5000)  # drawn by our scripts
    assert page.evaluate("Object.values(Chart.instances).length") >= 1  # the charts of the open tab
    assert errors == []  # no script, style or socket refused by the policy


def cie76(a: str, b: str) -> float:
    """The distance a person sees between two colours (#rrggbb), in CIELAB."""

    def lab(hex_colour: str) -> tuple[float, float, float]:
        def linear(c: float) -> float:
            return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (linear(int(hex_colour[i : i + 2], 16) / 255) for i in (1, 3, 5))
        x, y, z = ((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b,
                   (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883)  # fmt: skip
        fx, fy, fz = (t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116 for t in (x, y, z))
        return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)

    return float(sum((p - q) ** 2 for p, q in zip(lab(a), lab(b), strict=True)) ** 0.5)


DEMO_SOURCES = ["robinhood", "cnbc", "webull", "marketbeat", "yahoo-finance", "example-quotes", "newcomer-shop",
                "quotes-refresh"]  # fmt: skip


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_eight_sources_drawn_together_are_told_apart(
    browser: Any, daphne: DaphneServer, login: dict[str, str], committed_api_key: str, scheme: str
) -> None:
    """The timeline's and the bars' colours, as Chart.js holds them: any two sources at least
    12 apart (CIE76), each source the same colour in both charts, the error rate dashed."""
    ingest(daphne, committed_api_key, [navigation(scraperSource=name, success=i % 3 > 0)
                                       for i, name in enumerate(DEMO_SOURCES * 3)])  # fmt: skip
    page, errors = open_dashboard(browser, daphne, login, color_scheme=scheme)
    page.wait_for_function(
        "() => { const c = Chart.getChart(document.querySelector('canvas[data-chart=timeline]'));"
        " return c && c.data.datasets.length >= 9; }",
        timeout=10000,
    )
    timeline = page.evaluate(
        "Chart.getChart(document.querySelector('canvas[data-chart=timeline]')).data.datasets"
        ".map(d => ({label: d.label, colour: d.borderColor, dash: d.borderDash || []}))"
    )
    bars = page.evaluate(
        "(() => { const c = Chart.getChart(document.querySelector('canvas[data-chart=recordsBySource]'));"
        " return Object.fromEntries(c.data.labels.map((l, i) => [l, c.data.datasets[0].backgroundColor[i]])); })()"
    )
    sources = {d["label"]: d["colour"] for d in timeline if d["label"] in DEMO_SOURCES}
    assert sorted(sources) == sorted(DEMO_SOURCES)
    (rate,) = [d for d in timeline if d["label"].startswith("error rate")]
    colours = [*sources.values(), rate["colour"]]
    closest = min(cie76(a, b) for i, a in enumerate(colours) for b in colours[i + 1 :])
    assert closest >= 12, (closest, sources)
    assert rate["dash"]  # a style no source has
    assert all(bars[name] == colour for name, colour in sources.items() if name in bars)
    screenshot(page, f"dashboard-colours-{scheme}")
    assert errors == []


def test_the_alerts_badge_counts_firing_alerts_and_follows_the_filter(
    browser: Any, daphne: DaphneServer, login: dict[str, str], committed_api_key: str
) -> None:
    """The badge counts the alerts firing now (not the failures, which have their own count),
    and agrees with /api/alerts/; with the filter on one source, another's alert is not listed."""
    now = timezone.now()
    Alert.objects.create(fingerprint="site_down:robinhood:", verdict="site_down", scraper_source="robinhood",
                         severity="critical", state="firing", summary="robinhood: every page failed",
                         pending_since=now, starts_at=now, last_held_at=now)  # fmt: skip
    ingest(
        daphne,
        committed_api_key,
        [navigation(scraperSource=name, success=False) for name in ("robinhood", "cnbc")] * 5,
    )
    page, errors = open_dashboard(browser, daphne, login)
    page.wait_for_function("document.querySelector('#alert-count').textContent === '1'", timeout=10000)
    firing = httpx.get(
        f"{daphne.url}/api/alerts/", headers={"Authorization": f"Bearer {committed_api_key}"}
    ).json()
    assert len(firing["alerts"]) == 1
    assert page.get_attribute("#alert-count", "title") == "1 alert firing now"
    page.click('[data-tab="alerts"]')
    page.wait_for_selector("#firing-alerts li")
    assert "robinhood: every page failed" in page.inner_text("#firing-alerts")
    page.wait_for_function(
        "[...document.querySelectorAll('#source-filter option')].some(o => o.value === 'cnbc')"
    )
    page.select_option("#source-filter", "cnbc")
    page.wait_for_function("document.querySelectorAll('#firing-alerts li').length === 0", timeout=10000)
    assert page.inner_text("#alert-count") == ""
    screenshot(page, "dashboard-alerts-filtered")
    assert errors == []


def test_the_csv_export_names_each_bucket_by_its_time(
    browser: Any, daphne: DaphneServer, login: dict[str, str], committed_api_key: str
) -> None:
    """The timeline's CSV, as downloaded: ISO 8601 times (not "12:37 AM"), rounded values, and
    the still-filling bucket marked."""
    ingest(daphne, committed_api_key, [navigation(scraperSource="cnbc", success=i % 3 > 0) for i in range(3)])
    page, errors = open_dashboard(browser, daphne, login)
    page.wait_for_function(
        "Chart.getChart(document.querySelector('canvas[data-chart=timeline]'))?.data.datasets.length >= 2"
    )
    with page.expect_download() as download:
        page.click("#export-csv")
    assert download.value.suggested_filename == "timeline.csv"
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0] == "time,cnbc,error rate %,partial"
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row.split(",")[0]) for row in rows[1:])
    assert rows[-1].endswith(",true") and all(not row.endswith(",true") for row in rows[1:-1])
    assert [row for row in rows if ",3,33.33," in row]  # the minute of the 3 records, 1 in 3 failed
    assert errors == []


def test_a_login_leaves_no_lines_of_the_throttle_in_the_log(
    browser: Any, start_daphne: Callable[..., DaphneServer], login: dict[str, str]
) -> None:
    """django-axes wrote four INFO lines a login, each with the whole user agent."""
    server = start_daphne()
    page, errors = open_dashboard(browser, server, login)
    page.wait_for_selector('#connection[data-connection-state="live"]')
    user_agent = page.evaluate("navigator.userAgent")
    assert "AXES" not in server.log() and user_agent not in server.log()
    assert errors == []


def test_on_a_phone_every_tab_is_in_sight_and_no_error_is_cut_mid_token(
    browser: Any, daphne: DaphneServer, login: dict[str, str], committed_api_key: str
) -> None:
    """At 375 px: the tab bar scrolled sideways with no hint (Scheduler, Alerts and the badge
    off-screen), and the errors table broke words mid-token ("net::E RR_NA ME_N…")."""
    token = "net::ERR_NAME_NOT_RESOLVED"
    ingest(daphne, committed_api_key, [navigation(scraperSource="marketbeat", success=False, error=token)])
    page, errors = open_dashboard(
        browser, daphne, login, viewport={"width": 375, "height": 740}, is_mobile=True
    )
    page.wait_for_selector('#connection[data-connection-state="live"]')
    outside = page.evaluate(
        "[...document.querySelectorAll('.tabs button')].filter(b => b.getBoundingClientRect().right > innerWidth)"
        ".map(b => b.textContent.trim())"
    )
    assert outside == []
    page.click('[data-tab="alerts"]')
    page.wait_for_function(f"document.querySelector('#failure-groups').textContent.includes('{token}')")
    lines = page.evaluate(
        """(token) => { const cell = [...document.querySelectorAll('#failure-groups td')]
             .find(td => td.textContent.includes(token));
           const text = [...cell.childNodes].find(n => n.nodeType === 3 && n.textContent.includes(token))
             ?? cell.firstChild.firstChild ?? cell.firstChild;
           const range = document.createRange(); const at = text.textContent.indexOf(token);
           range.setStart(text, at); range.setEnd(text, at + token.length);
           return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size; }""",
        token,
    )
    assert lines == 1  # the whole token on one line
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "dashboard-mobile-alerts")
    assert errors == []


def test_cards_hold_their_text_at_1440_px(
    browser: Any, daphne: DaphneServer, login: dict[str, str], committed_api_key: str
) -> None:
    """A card whose state reads "critical: extraction broken" pushed its values 9 px past its edge."""
    now = timezone.now()
    Alert.objects.create(fingerprint="extraction_broken:robinhood:", verdict="extraction_broken",
                         scraper_source="robinhood", severity="critical", state="firing", summary="robinhood: 0 items",
                         pending_since=now, starts_at=now, last_held_at=now)  # fmt: skip
    ingest(daphne, committed_api_key, [scrape(scraperSource="robinhood", itemsExtracted=0)] * 3)
    page, errors = open_dashboard(browser, daphne, login, viewport={"width": 1440, "height": 900})
    card = page.locator("#scraper-grid article", has_text="robinhood")
    card.locator('[data-field="state"]', has_text="critical: extraction broken").wait_for(state="attached")
    overflowing = page.evaluate(
        """[...document.querySelectorAll('#scraper-grid article')].flatMap(card => {
             const edge = card.getBoundingClientRect().right;
             return [...card.querySelectorAll('dd, dt, h3')]
               .filter(e => e.getBoundingClientRect().right > edge + 0.5 || e.scrollWidth > e.clientWidth + 1)
               .map(e => `${card.querySelector('h3').textContent}: ${e.textContent}`); })"""
    )
    assert overflowing == []
    screenshot(page, "dashboard-cards-1440")
    assert errors == []


def test_success_bars_read_their_differences_and_the_error_rate_is_seen(
    browser: Any, daphne: DaphneServer, login: dict[str, str], committed_api_key: str
) -> None:
    """98.3 % and 100 % looked the same on a 0–100 % axis without values, and an error rate of
    a few percent lay flat on 0."""
    records = [navigation(scraperSource="cnbc", success=i > 0) for i in range(60)]
    ingest(daphne, committed_api_key, records + [navigation(scraperSource="webull") for _ in range(10)])
    page, errors = open_dashboard(browser, daphne, login)
    page.wait_for_function(
        "Chart.getChart(document.querySelector('canvas[data-chart=successRate]'))?.data.labels.length === 2"
    )
    bars = page.evaluate(
        """(() => { const c = Chart.getChart(document.querySelector('canvas[data-chart=successRate]'));
             return {min: c.scales.x.min, max: c.scales.x.max, values: c.data.datasets[0].data,
                     labelled: c.config.plugins.some(p => p.id === 'barValues')}; })()"""
    )
    assert bars["values"] == [pytest.approx(98.33, abs=0.01), 100] and bars["labelled"]
    assert (bars["min"], bars["max"]) == (95, 100)
    rate_axis = page.evaluate(
        "Chart.getChart(document.querySelector('canvas[data-chart=timeline]')).scales.y2.max"
    )
    assert rate_axis <= 5  # 1 failure in 70: 1.4 % reads against 5 %, not 100 %
    screenshot(page, "dashboard-success-bars")
    assert errors == []


def duration_ms(text: str) -> float:
    """A duration as the page writes it ("412 ms", "5.4 s", "2 min") in ms."""
    number, unit = text.replace(",", "").split()
    return float(number) * {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}[unit]


def test_live_p95_moves_with_the_counts_and_never_reads_below_the_average(
    browser: Any, daphne: DaphneServer, login: dict[str, str], committed_api_key: str
) -> None:
    """400 quick scrapes, then 400 of 5 s: within seconds (not at the next reload, a minute
    later) the tiles and the card say p95 ≈ 5 s beside the new average, as the server does."""
    source = f"p95-{uuid.uuid4().hex[:8]}"
    ingest(daphne, committed_api_key, [scrape(scraperSource=source, scrapeDurationMs=100)] * 400)
    page, errors = open_dashboard(browser, daphne, login)
    page.wait_for_function(
        f"[...document.querySelectorAll('#source-filter option')].some(o => o.value === '{source}')"
    )
    page.select_option("#source-filter", source)
    page.wait_for_function("document.querySelector('[data-stat=\"records\"]').textContent === '400'")
    assert duration_ms(page.inner_text('[data-stat="p95DurationMs"]')) <= 200

    ingest(daphne, committed_api_key, [scrape(scraperSource=source, scrapeDurationMs=5000)] * 400)
    page.wait_for_function(  # the counts, average and p95 come together, with the next update
        "document.querySelector('[data-stat=\"records\"]').textContent === '800'", timeout=5000
    )
    card = page.locator(f'.scraper:has-text("{source}")')
    for p95, avg in (
        ('[data-stat="p95DurationMs"]', '[data-stat="avgDurationMs"]'),
        ('[data-field="p95DurationMs"]', '[data-field="avgDurationMs"]'),
    ):
        root = page if p95.startswith("[data-stat") else card
        shown_p95, shown_avg = (duration_ms(root.locator(field).inner_text()) for field in (p95, avg))
        assert 2500 <= shown_avg <= 2600 and 5000 <= shown_p95 <= 6000, (shown_avg, shown_p95)
    summary = httpx.get(
        f"{daphne.url}/api/metrics/summary/", headers={"Authorization": f"Bearer {committed_api_key}"}
    ).json()
    assert summary["windowSeconds"] == 30 * 60  # the live range's
    assert summary["sources"][source]["p95DurationMs"] == pytest.approx(shown_p95, rel=0.05)
    screenshot(page, "dashboard-live-p95")
    assert errors == []


def test_a_card_over_7_days_reads_new_or_the_change_from_the_records_sent(
    browser: Any, daphne: DaphneServer, login: dict[str, str], committed_api_key: str
) -> None:
    """The demo's past sent 4 records a minute and its present 20 a second: every card read
    "+33,305 %" against a week before that held nothing comparable."""
    tag = uuid.uuid4().hex[:6]
    fresh, steady = f"fresh-{tag}", f"steady-{tag}"
    hour = 3_600_000
    now = int(time.time() * 1000)
    # steady: one record in each of 166 hours of the week before the week, two in each of 150
    # hours of this week; fresh: this week only, and a trickle of 5 the week before.
    before = [navigation(scraperSource=steady, recordedAt=now - (168 + h) * hour) for h in range(1, 167)]
    this_week = [
        navigation(scraperSource=steady, recordedAt=now - h * hour - n) for h in range(1, 151) for n in (0, 1)
    ]
    fresh_records = [navigation(scraperSource=fresh, recordedAt=now - h * hour) for h in range(1, 100)]
    trickle = [navigation(scraperSource=fresh, recordedAt=now - (200 + h) * hour) for h in range(5)]
    records = before + this_week + fresh_records + trickle
    for start in range(0, len(records), 500):
        ingest(daphne, committed_api_key, records[start : start + 500])
    page, errors = open_dashboard(browser, daphne, login)
    page.wait_for_selector('#connection[data-connection-state="live"]')
    page.select_option("#range", "7d")
    page.wait_for_function("document.querySelector('#window').textContent.startsWith('last 7 days')")

    def card(name: str) -> Any:
        return page.locator("#scraper-grid article", has_text=name)

    card(steady).wait_for()
    change = 100 * (len(this_week) - len(before)) / len(before)  # +80.7 %
    assert card(steady).locator('[data-field="trend"]').inner_text() == f"+{change:.1f} %"
    assert card(steady).locator('[data-field="trendLabel"]').inner_text() == "vs the previous 7 days"
    assert card(fresh).locator('[data-field="trend"]').inner_text() == "new"
    screenshot(page, "dashboard-trends-7d")
    assert errors == []

"""The Data section (contract section 13) in a real headless Chromium: a field whose filled
share dropped for one minute shows as that minute's cell, with the share of the records sent;
the status mix, and on every source each one's; text that fits its box; the source page's grid."""

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from metrics_app.data_models import StaleMinute
from metrics_app.records import now_ms
from tests.support.browser import open_dashboard, screenshot
from tests.support.records import navigation, scrape
from tests.support.servers import DaphneServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MINUTE = 60_000


def ingest(server: DaphneServer, key: str, records: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{server.url}/api/metrics/", content=orjson.dumps({"metrics": records}),
                          headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert response.status_code == 202, response.text


def minute_of(at: int) -> str:
    return datetime.fromtimestamp(at // MINUTE * MINUTE / 1000, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def broken_minute(daphne: DaphneServer, committed_api_key: str) -> tuple[str, str]:
    """A source scraping 20 items a minute for 40 minutes; its price filled on 2 of them in
    one minute ten minutes ago, on all of them otherwise. Its navigations: 30 answered 200,
    5 429 and 2 503. Returns the source and the broken minute's start."""
    source = f"prices-{uuid.uuid4().hex[:6]}"
    now = now_ms()
    broken = now - 10 * MINUTE
    records = []
    for n in range(1, 41):
        at = now - n * MINUTE
        price = 2 if at == broken else 20
        fields = {"price": {"filled": price, "invalid": 0}, "name": {"filled": 20, "invalid": 0},
                  "change_pct": {"filled": 18, "invalid": 3}}  # fmt: skip
        records.append(scrape(scraperSource=source, recordedAt=at, itemsExtracted=20, fields=fields))
    statuses = [200] * 30 + [429] * 5 + [503] * 2
    records += [navigation(scraperSource=source, recordedAt=now - n * MINUTE, httpStatus=code)
                for n, code in enumerate(statuses, 1)]  # fmt: skip
    ingest(daphne, committed_api_key, records)
    return source, minute_of(broken)


def cells(page: Any, grid: str, field: str) -> list[dict[str, Any]]:
    return list(
        page.evaluate(
            """([grid, field]) => [...document.querySelectorAll(
                 `[data-grid="${grid}"] .field-row[data-field="${field}"] .cell`)].map(c => ({
                   start: c.dataset.start, share: c.dataset.share ?? null, title: c.title,
                   colour: getComputedStyle(c).backgroundColor }))""",
            [grid, field],
        )
    )


OVERFLOWING = """root => {
  const box = root.getBoundingClientRect();
  const texts = [...root.querySelectorAll('.field-name, .field-total, .tick, .status-legend span, .source-mix-head > *, h2, p')]
    .filter(e => e.offsetParent !== null);
  const out = texts.filter(e => e.scrollWidth > e.clientWidth + 1 && !e.classList.contains('tick')
                           || e.getBoundingClientRect().right > box.right + 0.5)
    .map(e => `${e.className}: ${e.textContent}`);
  for (const grid of root.querySelectorAll('.field-grid')) {
    const ticks = [...grid.querySelectorAll('.tick')].map(t => t.getBoundingClientRect());
    ticks.slice(1).forEach((t, i) => { if (t.left < ticks[i].right) out.push(`ticks overlap at ${i}`); });
  }
  return out;
}"""


def test_the_grid_shows_the_minute_a_field_broke(
    browser: Any, daphne: DaphneServer, login: dict[str, str], broken_minute: tuple[str, str]
) -> None:
    source, broken = broken_minute
    # under the page's own Content-Security-Policy: the cells' colours are set through CSSOM
    page, errors = open_dashboard(
        browser, daphne, login, viewport={"width": 1440, "height": 1000}, bypass_csp=False
    )
    page.wait_for_selector('#connection[data-connection-state="live"]')
    page.select_option("#range", "1h")
    page.click('[data-tab="data"]')
    # every source: the section asks for one and offers the busiest
    choose = page.locator("#tab-data .data-choose")
    choose.wait_for(state="visible")
    assert "choose a source" in choose.inner_text()
    page.locator("#tab-data .data-busiest button", has_text=source).click()
    page.locator('#tab-data [data-grid="filled"] .field-row[data-field="price"]').wait_for()
    assert page.input_value("#source-filter") == source

    price = cells(page, "filled", "price")
    assert len(price) == 60  # the 1h axis, a cell per minute
    drawn = {cell["start"]: cell for cell in price if cell["share"] is not None}
    assert len(drawn) == 40
    assert drawn[broken]["share"] == "0.1000" and "10 % (2 of 20 items)" in drawn[broken]["title"]
    assert {cell["share"] for start, cell in drawn.items() if start != broken} == {"1.0000"}
    assert drawn[broken]["colour"] != drawn[next(s for s in drawn if s != broken)]["colour"]  # red, not green
    rows = page.eval_on_selector_all(
        '#tab-data [data-grid="filled"] .field-row', "rs => rs.map(r => r.dataset.field)"
    )
    assert rows == ["change_pct", "name", "price"]
    valid = {c["share"] for c in cells(page, "valid", "change_pct") if c["share"] is not None}
    assert valid == {f"{15 / 18:.4f}"}
    totals = page.eval_on_selector_all(
        '#tab-data [data-grid="filled"] .field-total', "ts => ts.map(t => t.textContent)"
    )
    assert totals[2] == f"{100 * (39 * 20 + 2) / 800:.1f} %"  # price over the hour: 782 of 800

    mix = page.eval_on_selector_all(
        "#tab-data .status-mix .status-bar span", "ss => ss.map(s => [s.dataset.status, s.title])"
    )
    assert mix == [["2xx", "2xx: 30 navigations (200: 30)"], ["429", "429: 5 navigations"],
                   ["5xx", "5xx: 2 navigations (503: 2)"]]  # fmt: skip

    assert page.eval_on_selector("#tab-data", OVERFLOWING) == []
    screenshot(page, "dashboard-data-1h")
    page.set_viewport_size({"width": 375, "height": 900})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.eval_on_selector("#tab-data", OVERFLOWING) == []  # the axis ticked again for the width
    screenshot(page, "dashboard-data-phone")
    assert errors == []


# Two sources' navigations in the last hour: one mostly refused, one mostly answered.
STATUSES = {
    "refused": {200: 10, 403: 6, 429: 4, 404: 2},
    "answered": {200: 40, 301: 3, 503: 1},
}


def test_every_source_shows_its_status_mix(
    browser: Any, daphne: DaphneServer, committed_api_key: str, login: dict[str, str]
) -> None:
    tag = uuid.uuid4().hex[:4]
    sent = {f"{name}-{tag}": codes for name, codes in STATUSES.items()}
    now = now_ms()
    ingest(daphne, committed_api_key, [
        navigation(scraperSource=source, recordedAt=now - (n % 50 + 1) * MINUTE, httpStatus=code)
        for source, codes in sent.items() for code, count in codes.items() for n in range(count)
    ])  # fmt: skip
    page, errors = open_dashboard(browser, daphne, login, viewport={"width": 1280, "height": 900})
    page.wait_for_selector('#connection[data-connection-state="live"]')
    page.select_option("#range", "1h")
    page.click('[data-tab="data"]')
    page.locator("#tab-data .source-mix .status-bar").first.wait_for()
    assert page.inner_text("#tab-data .data-all-window") == "(all sources, last hour)"

    drawn = page.eval_on_selector_all(
        "#tab-data .source-mix",
        """items => items.map(item => ({
        source: item.dataset.source,
        head: [...item.querySelectorAll('.source-mix-head > *')].map(e => e.textContent),
        legend: [...item.querySelectorAll('.status-legend span')].map(e => e.textContent),
        titles: [...item.querySelectorAll('.status-bar span')].map(e => e.title),
        widths: [...item.querySelectorAll('.status-bar span')].map(e => e.getBoundingClientRect().width),
        bar: item.querySelector('.status-bar').getBoundingClientRect().width }))""",
    )
    refused, answered = f"refused-{tag}", f"answered-{tag}"
    assert [item["source"] for item in drawn] == [answered, refused]  # busiest first: 44, then 22
    by_source = {item["source"]: item for item in drawn}
    assert by_source[answered]["head"] == [answered, "44 navigations"]
    assert by_source[answered]["legend"] == ["2xx 40 (90.9 %)", "3xx 3 (6.8 %)", "5xx 1 (2.3 %)"]
    assert by_source[refused]["head"] == [refused, "22 navigations"]
    assert by_source[refused]["legend"] == [
        "2xx 10 (45.5 %)", "403 6 (27.3 %)", "429 4 (18.2 %)", "other 4xx 2 (9.1 %)",
    ]  # fmt: skip
    assert by_source[refused]["titles"] == [
        "2xx: 10 navigations (200: 10)", "403: 6 navigations", "429: 4 navigations",
        "other 4xx: 2 navigations (404: 2)",
    ]  # fmt: skip
    for source, counts in ((answered, [40, 3, 1]), (refused, [10, 6, 4, 2])):  # as wide as its share
        shares = [width / by_source[source]["bar"] for width in by_source[source]["widths"]]
        assert shares == pytest.approx([n / sum(counts) for n in counts], abs=0.01)

    assert page.eval_on_selector("#tab-data", OVERFLOWING) == []
    screenshot(page, "dashboard-data-sources")
    page.set_viewport_size({"width": 375, "height": 900})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.eval_on_selector("#tab-data", OVERFLOWING) == []
    screenshot(page, "dashboard-data-sources-phone")

    page.locator("#tab-data .source-mix-head button", has_text=refused).click()  # its fields
    page.locator("#tab-data .status-mix .status-bar").wait_for()
    assert page.input_value("#source-filter") == refused
    assert errors == []


def test_the_source_page_shows_its_fields(
    browser: Any, daphne: DaphneServer, login: dict[str, str], broken_minute: tuple[str, str]
) -> None:
    source, broken = broken_minute
    page, errors = open_dashboard(browser, daphne, login, viewport={"width": 1280, "height": 1000})
    page.goto(f"{daphne.url}/analytics/source/{source}/?range=1h")
    page.locator('#source-data [data-grid="filled"] .field-row[data-field="price"]').wait_for()
    shares = {c["start"]: c["share"] for c in cells(page, "filled", "price")}
    assert shares[broken] == "0.1000"
    assert page.eval_on_selector("#source-data", OVERFLOWING) == []
    screenshot(page, "source-data-1h")
    assert errors == []


def test_the_source_page_shows_its_entities_freshness(
    browser: Any, daphne: DaphneServer, committed_api_key: str, login: dict[str, str]
) -> None:
    """Three symbols refreshed now, one last 40 minutes ago: stale past the 15-minute floor,
    named with its age under the count."""
    source = f"fresh-{uuid.uuid4().hex[:6]}"
    now = now_ms()
    ingest(daphne, committed_api_key, [
        scrape(scraperSource=source, recordedAt=now - 40 * MINUTE, itemsExtracted=4, entities=["AAPL", "MSFT", "KO", "V"]),
        scrape(scraperSource=source, recordedAt=now - MINUTE, itemsExtracted=3, entities=["AAPL", "MSFT", "V"]),
    ])  # fmt: skip
    auth = {"Authorization": f"Bearer {committed_api_key}"}

    def written() -> bool:  # behind the records, within METRICS_ENTITY_FLUSH_S
        answer = httpx.get(f"{daphne.url}/api/entities/", params={"source": source}, headers=auth).json()
        return bool(answer["total"] == 4)

    assert wait_for(written, timeout=15, interval=0.2)
    # KO's minutes stale, as the alert evaluator writes them: the last 25 minutes, 1 of 4
    stale_minutes = [now // MINUTE * MINUTE - n * MINUTE for n in range(1, 26)]
    StaleMinute.objects.bulk_create(
        StaleMinute(scraper_source=source, minute=datetime.fromtimestamp(at / 1000, UTC), stale=1, total=4)
        for at in stale_minutes
    )
    page, errors = open_dashboard(browser, daphne, login, viewport={"width": 1280, "height": 1000})
    page.goto(f"{daphne.url}/analytics/source/{source}/?range=1h")
    freshness = page.locator("#source-data .data-freshness")
    freshness.wait_for(state="visible")
    assert (
        freshness.locator(".freshness-summary")
        .inner_text()
        .startswith("4 entities, 1 stale (not refreshed for 15 min or more")
    )
    assert freshness.locator(".stalest li").all_inner_texts() == ["KO: 40 min ago"]
    drawn = page.eval_on_selector_all(
        '#source-data [data-grid="stale"] .cell',
        "cells => cells.map(c => [c.dataset.start, c.dataset.stale, c.title, getComputedStyle(c).backgroundColor])",
    )
    assert len(drawn) == 60  # the hour's minutes
    stale = {minute_of(at) for at in stale_minutes}
    for start, count, title, colour in drawn:
        red, green, _ = (int(n) for n in colour[colour.index("(") + 1 : -1].split(","))
        if start in stale:  # a quarter stale: amber, redder than green
            assert (count, title.endswith(": 1 of 4 stale"), red > green) == ("1", True, True), (start, title)
        else:
            assert (count, title.endswith(": none stale"), green > red) == ("0", True, True), (start, title)
    assert freshness.locator('[data-grid="stale"] .field-total').inner_text() == "1"
    assert page.eval_on_selector("#source-data", OVERFLOWING) == []
    screenshot(page, "source-data-freshness")
    assert errors == []

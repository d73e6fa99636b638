"""Runs on the page (contract section 14) in a real headless Chromium: the Scheduler section
lists the runs newest first with their numbers and verdict, and a run's page shows it against
its scheduler's last 10 with the measures out of range marked; text fits its box."""

import uuid
from typing import Any

import httpx
import orjson
import pytest

from metrics_app.records import now_ms
from tests.support.browser import open_dashboard, screenshot
from tests.support.runs import crawl
from tests.support.servers import DaphneServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MINUTE = 60_000
OVERFLOWING = """root => [...root.querySelectorAll('td, th, h1, h2, p, .badge')]
  .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible')
  .map(e => e.textContent)"""


@pytest.fixture
def degraded_run(daphne: DaphneServer, committed_api_key: str) -> tuple[str, str]:
    """A scheduler's 10 healthy runs (500–509 items of 20 pages, none failed), then one that
    brought 120 items with 9 of its 20 pages failed. Returns its source and the run's id."""
    tag = uuid.uuid4().hex[:6]
    source, scheduler = f"quotes-{tag}", f"refresh-{tag}"
    start = now_ms() - 12 * 5 * MINUTE
    runs = [{"items": 500 + n} for n in range(10)] + [{"items": 120, "failed": 9}]
    auth = {"Authorization": f"Bearer {committed_api_key}"}
    for n, options in enumerate(runs):
        records = crawl(
            f"{tag}-r{n:02}", source, start + n * 5 * MINUTE, pages=20, scheduler=scheduler, **options
        )
        for page, record in enumerate(r for r in records if r["type"] == "page_scrape"):
            record["entities"] = ["AAPL", "MSFT", "KO"][: 1 + page % 3]  # the run refreshed 3 symbols
        response = httpx.post(f"{daphne.url}/api/metrics/", content=orjson.dumps({"metrics": records}),
                              headers=auth)  # fmt: skip
        assert response.status_code == 202, response.text

    def counted() -> bool:  # a run's entities are written behind, within METRICS_ENTITY_FLUSH_S
        return bool(httpx.get(f"{daphne.url}/api/runs/{tag}-r10/", headers=auth).json()["entities"] == 3)

    assert wait_for(counted, timeout=15, interval=0.2)
    return source, f"{tag}-r10"


def test_the_scheduler_section_lists_runs_and_a_run_page_compares_it(
    browser: Any, daphne: DaphneServer, login: dict[str, str], degraded_run: tuple[str, str]
) -> None:
    source, run_id = degraded_run
    page, errors = open_dashboard(browser, daphne, login, viewport={"width": 1280, "height": 900})
    page.wait_for_selector('#connection[data-connection-state="live"]')
    page.click('[data-tab="scheduler"]')
    row = page.locator(f'#runs tr[data-run-id="{run_id}"]')
    row.wait_for()
    cells = row.evaluate(
        "tr => Object.fromEntries([...tr.cells].map(td => [td.dataset.cell, td.textContent]))"
    )
    assert cells | {"started": "", "duration": ""} == {
        "run": run_id, "scheduler": f"refresh-{run_id[:6]}", "state": "degraded", "started": "",
        "duration": "", "pages": "20", "failed": "9", "items": "120",
    }  # fmt: skip
    assert cells["duration"] == "1 min"
    ids = page.eval_on_selector_all("#runs tbody tr", "rows => rows.map(r => r.dataset.runId)")
    ours = [i for i in ids if i.startswith(run_id[:6])]
    assert ours == [f"{run_id[:6]}-r{n:02}" for n in range(10, -1, -1)]  # newest first
    assert row.evaluate("tr => tr.classList.contains('degraded')")
    assert page.eval_on_selector("#tab-scheduler", OVERFLOWING) == []
    screenshot(page, "dashboard-runs")

    row.locator("a").click()
    page.wait_for_url(f"**/analytics/run/{run_id}/")
    page.wait_for_selector('body[data-loaded="true"]')
    assert page.inner_text("#run-state") == "degraded"
    assert page.inner_text("#run-verdict") == (
        f"refresh-{run_id[:6]} run {run_id}: 120 items, its last 10 runs 500–509; 9 of 20 pages failed, usually 0"
    )
    assert page.inner_text("#run-basis") == "Against the range of its scheduler's last 10 finished runs."
    table = page.eval_on_selector_all(
        "#run-comparison tbody tr",
        "rows => rows.map(r => [...[...r.cells].map(c => c.textContent), r.classList.contains('outside')])",
    )
    assert table == [
        ["Items", "120", "500 – 509", True],
        ["Pages", "20", "20", False],
        ["Failed pages", "9", "0", True],
        ["Duration", "1 min", "1 min", False],
        ["price filled", "100 %", "100 %", False],
    ]
    assert page.eval_on_selector_all("#run-statuses li", "ls => ls.map(l => l.textContent)") == [
        "200: 11",
        "503: 9",
    ]
    meta = page.inner_text("#run-meta")
    assert source in meta
    assert meta.endswith(" · 3 entities refreshed")
    assert page.eval_on_selector("main", OVERFLOWING) == []
    screenshot(page, "run-page")
    page.set_viewport_size({"width": 375, "height": 800})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "run-page-phone")
    assert errors == []


def test_a_run_page_of_an_unknown_run_says_so_and_a_bad_id_is_404(
    browser: Any, daphne: DaphneServer, login: dict[str, str]
) -> None:
    page, _ = open_dashboard(browser, daphne, login)
    assert page.goto(f"{daphne.url}/analytics/run/-bad/").status == 404
    page.goto(f"{daphne.url}/analytics/run/never-sent/")
    page.wait_for_selector('body[data-loaded="true"]')
    assert page.inner_text("#run-meta") == "No record of this run has arrived."

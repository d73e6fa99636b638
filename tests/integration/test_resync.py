"""Lossless resync on a real page: Redis goes away under load and comes back, or the page's
own server process restarts while another one keeps storing, and the page catches up from the
database until what it shows equals what is stored."""

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from metrics_app.models import PagePerformance
from tests.support.browser import open_dashboard, screenshot
from tests.support.records import navigation
from tests.support.servers import DaphneServer, RedisServer
from tests.support.ws import unique_source

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def shown_records(page: Any) -> str:
    return str(page.inner_text('[data-stat="records"]'))


def send_one(server: DaphneServer, key: str, source: str, n: int) -> None:
    body = orjson.dumps({"metrics": [navigation(scraperSource=source, url=f"https://x/{n}")]})
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.post(f"{server.url}/api/metrics/", content=body, headers=headers).status_code == 202


def wait_until_shown(page: Any, count: int) -> None:
    page.wait_for_function(
        f"document.querySelector('[data-stat=\"records\"]').textContent === '{count}'", timeout=30_000
    )


def test_the_page_shows_what_the_database_holds_after_redis_restarts(
    browser: Any, start_daphne: Callable[..., DaphneServer], private_redis: RedisServer,
    login: dict[str, str], committed_api_key: str,
) -> None:  # fmt: skip
    server = start_daphne(REDIS_URL=private_redis.url)
    source = unique_source()

    def post(n: int) -> None:
        send_one(server, committed_api_key, source, n)

    post(0)
    page, errors = open_dashboard(browser, server, login)
    page.goto(f"{server.url}/analytics/source/{source}/?range=live")
    page.wait_for_selector('#connection[data-connection-state="live"]', timeout=10_000)
    wait_until_shown(page, 1)

    sent = 1

    def fleet() -> None:  # 50 records a second for 6 s, through the outage
        nonlocal sent
        started = time.monotonic()
        while time.monotonic() - started < 6:
            post(sent)
            sent += 1
            time.sleep(0.02)

    sending = threading.Thread(target=fleet)
    sending.start()
    time.sleep(1.5)
    private_redis.stop()  # the live stream is cut; storage goes on
    time.sleep(2.5)
    private_redis.start()
    sending.join()

    stored = PagePerformance.objects.filter(scraper_source=source).count()
    assert stored == sent
    wait_until_shown(page, stored)
    assert page.get_attribute("#connection", "data-catching-up") == "false"
    assert shown_records(page) == str(stored)  # every record, none twice
    counters = server.stats(committed_api_key)["counters"]
    assert counters["resyncs"] >= 1  # the page caught up through a resync
    assert counters["live_totals_repairs"] >= 1  # and the server's totals read the window again
    screenshot(page, "resync-after-redis-restart")
    assert [e for e in errors if "gap" not in e] == []


def test_the_page_gets_what_was_stored_while_its_server_restarted(
    browser: Any, start_daphne: Callable[..., DaphneServer], private_redis: RedisServer,
    login: dict[str, str], committed_api_key: str,
) -> None:  # fmt: skip
    env = {"REDIS_URL": private_redis.url}
    pages_server, other = start_daphne(**env), start_daphne(**env)
    source = unique_source()
    sent = 0

    def post_through_the_other(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            send_one(other, committed_api_key, source, sent)
            sent += 1

    post_through_the_other(1)
    page, errors = open_dashboard(browser, pages_server, login)
    page.goto(f"{pages_server.url}/analytics/source/{source}/?range=live")
    page.wait_for_selector('#connection[data-connection-state="live"]', timeout=10_000)
    wait_until_shown(page, 1)

    pages_server.stop()  # the page's socket drops; the other process goes on storing
    post_through_the_other(20)
    restarted = start_daphne(port=pages_server.port, **env)
    page.wait_for_selector('#connection[data-connection-state="live"]', timeout=40_000)
    post_through_the_other(5)  # the first batch after the restart shows the 20 were missed

    stored = PagePerformance.objects.filter(scraper_source=source).count()
    assert stored == sent == 26
    wait_until_shown(page, stored)  # the 20 came as a resync, none twice
    assert restarted.stats(committed_api_key)["counters"]["resyncs"] >= 1
    assert [e for e in errors if "gap" not in e and "WebSocket" not in e and "Failed to load" not in e] == []

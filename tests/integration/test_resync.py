"""Lossless resync on a real page: Redis goes away under load and comes back, and the page
catches up from the database until what it shows equals what is stored."""

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


def test_the_page_shows_what_the_database_holds_after_redis_restarts(
    browser: Any, start_daphne: Callable[..., DaphneServer], private_redis: RedisServer,
    login: dict[str, str], committed_api_key: str,
) -> None:  # fmt: skip
    server = start_daphne(REDIS_URL=private_redis.url)
    source = unique_source()
    headers = {"Authorization": f"Bearer {committed_api_key}"}

    def post(n: int) -> None:
        body = orjson.dumps({"metrics": [navigation(scraperSource=source, url=f"https://x/{n}")]})
        assert httpx.post(f"{server.url}/api/metrics/", content=body, headers=headers).status_code == 202

    post(0)
    page, errors = open_dashboard(browser, server, login)
    page.goto(f"{server.url}/analytics/source/{source}/?range=live")
    page.wait_for_selector('#connection[data-connection-state="live"]', timeout=10_000)
    page.wait_for_function(
        "document.querySelector('[data-stat=\"records\"]').textContent === '1'", timeout=10_000
    )

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
    page.wait_for_function(
        f"document.querySelector('[data-stat=\"records\"]').textContent === '{stored}'", timeout=30_000
    )
    assert page.get_attribute("#connection", "data-catching-up") == "false"
    assert shown_records(page) == str(stored)  # every record, none twice
    assert server.stats(committed_api_key)["counters"]["resyncs"] >= 1  # caught up through a resync
    screenshot(page, "resync-after-redis-restart")
    assert [e for e in errors if "gap" not in e] == []

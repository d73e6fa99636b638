"""GET /api/metrics/recent/, /summary/, /api/stats/, /api/health/websocket (docs/api.md)."""

from typing import Any

import orjson
import pytest

from tests.support.asgi import AsgiClient
from tests.support.db import store
from tests.support.records import navigation, scheduler_run, scrape

pytestmark = pytest.mark.django_db(transaction=True)


def test_recent_returns_the_last_n_of_a_source_oldest_first(reader: AsgiClient) -> None:
    store(*(navigation(url=f"https://r/{i}", recordedAt=1_795_000_000_000 + i) for i in range(10)))
    store(scrape(scraperSource="robinhood", recordedAt=1_795_000_000_020), scrape())
    response = reader.get("/api/metrics/recent/", {"source": "robinhood", "limit": "3"})
    assert response.status_code == 200
    metrics = response.json()["metrics"]
    assert [m["recordedAt"] for m in metrics] == [1_795_000_000_008, 1_795_000_000_009, 1_795_000_000_020]
    assert metrics[-1]["type"] == "page_scrape"
    assert all(m["scraperSource"] == "robinhood" for m in metrics)


def test_recent_includes_scheduler_runs_on_their_channel(reader: AsgiClient) -> None:
    store(scheduler_run(schedulerName="hourly"), scheduler_run(schedulerName="daily", scraperSource="cnbc"))
    hourly = reader.get("/api/metrics/recent/", {"source": "hourly"}).json()["metrics"]
    cnbc = reader.get("/api/metrics/recent/", {"source": "cnbc"}).json()["metrics"]
    assert [m["schedulerName"] for m in hourly] == ["hourly"]
    assert [m["schedulerName"] for m in cnbc] == ["daily"]


def test_recent_without_source_covers_every_source(reader: AsgiClient) -> None:
    store(navigation(), scrape(), scheduler_run())
    assert len(reader.get("/api/metrics/recent/").json()["metrics"]) == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"source": "Bad!"}, "source"),
    ],
)
def test_recent_rejects_bad_parameters(reader: AsgiClient, params: dict[str, Any], field: str) -> None:
    response = reader.get("/api/metrics/recent/", params)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_summary_totals_per_source(reader: AsgiClient) -> None:
    store(
        navigation(navigationDurationMs=100),
        navigation(navigationDurationMs=300, success=False, error="x"),
        scrape(itemsExtracted=7),
        scheduler_run(scraperSource="cnbc", itemsProcessed=120),
    )
    data = reader.get("/api/metrics/summary/").json()
    robinhood, cnbc = data["sources"]["robinhood"], data["sources"]["cnbc"]
    assert (robinhood["records"], robinhood["successRate"], robinhood["errors"]) == (2, 50.0, 1)
    assert robinhood["avgNavigationDurationMs"] == 200.0
    assert 300 <= robinhood["p95NavigationDurationMs"] <= 360  # histogram bucket edge, within 20 %
    assert (cnbc["records"], cnbc["scrapes"], cnbc["schedulerRuns"]) == (2, 1, 1)
    assert (cnbc["itemsExtracted"], cnbc["itemsProcessed"]) == (7, 120)
    assert data["totals"]["records"] == 4
    assert data["totals"]["successRate"] == 75.0
    assert data["totals"]["activeSources"] == 2
    assert data["trends"]["robinhood"]["records"]["direction"] == "up"


def test_stats_report_counters_and_memory(reader: AsgiClient, api_key: str) -> None:
    body = orjson.dumps({"metrics": [navigation()]})
    reader.post(
        "/api/metrics/", body, content_type="application/json", headers={"Authorization": f"Bearer {api_key}"}
    )
    stats = reader.get("/api/stats/").json()
    assert stats["counters"]["records_stored"] >= 1
    assert stats["rssBytes"] > 1_000_000
    assert set(stats["collector"]) >= {"queued", "flushed", "dropped"}


def test_readers_may_use_a_key(asgi: AsgiClient, api_key: str) -> None:
    response = asgi.get("/api/metrics/summary/", headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/api/metrics/recent/", "/api/metrics/summary/", "/api/stats/"])
def test_strangers_are_refused(asgi: AsgiClient, path: str) -> None:
    assert asgi.get(path).status_code == 401


def test_inactive_users_are_refused(asgi: AsgiClient, django_user_model: Any) -> None:
    asgi.force_login(django_user_model.objects.create_user("gone", password="pw-123456!", is_active=False))
    assert asgi.get("/api/metrics/summary/").status_code == 401


def test_websocket_health_is_public(asgi: AsgiClient) -> None:
    data = asgi.get("/api/health/websocket").json()
    assert set(data) >= {"connected", "clients", "subscriptions", "uptime"}

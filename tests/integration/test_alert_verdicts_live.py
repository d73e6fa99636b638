"""Each verdict over a real daphne with short windows (METRICS_ALERT_WINDOW_S=10,
METRICS_ALERT_NO_DATA_S=10, an evaluation a second): the fault goes in through the HTTP API,
the alert fires (GET /api/alerts/), the fault ends, the alert resolves."""

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from metrics_app.records import now_ms
from tests.integration.test_alerts import healthy_history
from tests.support.records import navigation, scheduler_run, scrape
from tests.support.servers import DaphneServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
SHORT = {"METRICS_ALERT_EVALUATOR": "1", "METRICS_ALERT_EVAL_INTERVAL_S": "1", "METRICS_ALERT_WINDOW_S": "10",
         "METRICS_ALERT_NO_DATA_S": "10"}  # fmt: skip

FAULTS: dict[str, tuple[Callable[..., dict[str, Any]], dict[str, Any]]] = {
    "site_down": (navigation, {"success": False, "error": "net::ERR_CONNECTION_REFUSED"}),
    "blocked": (navigation, {"success": False, "error": "HTTP 403 Forbidden"}),
    "extraction_broken": (scrape, {"itemsExtracted": 0}),
    "slow": (navigation, {"navigationDurationMs": 9000}),
}


@pytest.fixture
def server(start_daphne: Callable[..., DaphneServer]) -> DaphneServer:
    return start_daphne(**SHORT)


def post(server: DaphneServer, key: str, records: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{server.url}/api/metrics/", content=orjson.dumps({"metrics": records}),
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
    assert response.status_code == 202, response.text


def alert_of(server: DaphneServer, key: str, who: str, state: str) -> dict[str, Any] | None:
    alerts = httpx.get(
        f"{server.url}/api/alerts/?state={state}", headers={"Authorization": f"Bearer {key}"}
    ).json()
    found = [a for a in alerts["alerts"] if who in (a["scraperSource"], a["schedulerName"])]
    return found[0] if found else None


@pytest.mark.parametrize("verdict", FAULTS)
def test_a_fault_through_the_api_fires_its_verdict_and_resolves(
    verdict: str, server: DaphneServer, committed_api_key: str
) -> None:
    source = f"v-{uuid.uuid4().hex[:8]}"
    healthy_history(source, now_ms())
    make, fields = FAULTS[verdict]
    deadline = time.monotonic() + 30
    while alert_of(server, committed_api_key, source, "firing") is None:
        assert time.monotonic() < deadline, f"{verdict} did not fire"
        post(server, committed_api_key, [make(scraperSource=source, **fields) for _ in range(3)])
        time.sleep(0.5)
    assert alert_of(server, committed_api_key, source, "firing")["verdict"] == verdict  # type: ignore[index]
    # over: healthy records outnumber the fault's in every window it is judged on
    post(server, committed_api_key, [navigation(scraperSource=source) for _ in range(300)]
         + [scrape(scraperSource=source) for _ in range(300)])  # fmt: skip
    assert wait_for(lambda: alert_of(server, committed_api_key, source, "resolved") is not None, timeout=40)


def test_silence_and_a_late_scheduler(server: DaphneServer, committed_api_key: str) -> None:
    source, scheduler = f"q-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    started = now_ms()
    for n in range(7):  # a steady source, and a scheduler that runs every second (six agreeing gaps)
        post(
            server,
            committed_api_key,
            [navigation(scraperSource=source)] * 3
            + [scheduler_run(schedulerName=scheduler, recordedAt=started + n * 1000)],
        )
        time.sleep(1)
    # both stop
    assert wait_for(lambda: alert_of(server, committed_api_key, source, "firing") is not None, timeout=40)
    assert wait_for(lambda: alert_of(server, committed_api_key, scheduler, "firing") is not None, timeout=20)
    assert alert_of(server, committed_api_key, source, "firing")["verdict"] == "no_data"  # type: ignore[index]
    assert alert_of(server, committed_api_key, scheduler, "firing")["verdict"] == "scheduler_late"  # type: ignore[index]

    # both come back, and keep going (a scheduler of 1 s that ran once is late again at once)
    def back() -> bool:
        post(
            server,
            committed_api_key,
            [navigation(scraperSource=source)] * 3 + [scheduler_run(schedulerName=scheduler)],
        )
        return all(
            alert_of(server, committed_api_key, name, "resolved") is not None for name in (source, scheduler)
        )

    assert wait_for(back, timeout=40, interval=1.0)  # a run a second, as before

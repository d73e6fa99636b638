"""Alerts across real processes: two daphnes elect one evaluator, each transition reaches a
webhook receiver exactly once (after a failed first attempt, on retry), and every open page on
either process is told through the WebSocket `alert` message."""

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.records import navigation
from tests.support.servers import DaphneServer, free_port
from tests.support.ws import ingest, next_of, open_socket, unique_source


class Receiver:
    """A webhook receiver on a real socket. It answers 500 to its first `failures` posts."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []  # bodies answered with 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.attempts.append(body)
                ok = len(receiver.attempts) > receiver.failures
                if ok:
                    receiver.received.append(body)
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def statuses(self, source: str) -> list[str]:
        return [body["status"] for body in self.received if body["alert"]["scraperSource"] == source]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(failures=1)
    yield found
    found.server.shutdown()


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_two_processes_notify_each_transition_once_and_tell_every_page(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str, receiver: Receiver
) -> None:
    env = {
        "METRICS_ALERT_EVALUATOR": "1",
        "METRICS_ALERT_EVAL_INTERVAL_S": "1",
        "METRICS_ALERT_WINDOW_S": "10",
        "METRICS_ALERT_WEBHOOK_URLS": receiver.url,
    }
    servers = [start_daphne(**env), start_daphne(**env)]
    source = unique_source()

    async def scenario() -> list[dict[str, Any]]:
        pages = [await open_socket(server, key=committed_api_key) for server in servers]
        failing = navigation(scraperSource=source, success=False, error="net::ERR_CONNECTION_REFUSED")
        for _ in range(12):  # the site is down: every page load fails, for more than half a window
            await ingest(servers[0], committed_api_key, [failing] * 2)
            await asyncio.sleep(0.7)
        told = [await next_of(page, "alert", timeout=30) for page in pages]
        # it recovers: healthy loads bring the window's failures far below the threshold
        await ingest(servers[1], committed_api_key, [navigation(scraperSource=source)] * 200)
        told += [await next_of(page, "alert", timeout=30) for page in pages]
        for page in pages:
            await page.close()
        return told

    told = asyncio.run(scenario())

    assert [(m["status"], m["alert"]["verdict"], m["alert"]["scraperSource"]) for m in told] == [
        ("firing", "site_down", source), ("firing", "site_down", source),
        ("resolved", "site_down", source), ("resolved", "site_down", source),
    ]  # fmt: skip
    assert (
        "of page loads failed" in told[0]["alert"]["summary"]
        and "ERR_CONNECTION_REFUSED" in told[0]["alert"]["summary"]
    )
    assert wait_until(lambda: receiver.statuses(source) == ["firing", "resolved"], timeout=30), (
        receiver.attempts
    )
    time.sleep(3)  # a few more cycles of both processes: nothing is sent twice
    assert receiver.statuses(source) == ["firing", "resolved"]
    assert len(receiver.attempts) == 3  # the firing one failed once and was retried
    firing = receiver.received[0]
    assert firing["text"].startswith(f"[FIRING] site down: {source}: ")  # the verdict, said once
    assert firing["link"].endswith(f"/analytics/source/{source}/")

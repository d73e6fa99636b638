"""The remote client (wealthmetrics_client.MetricsClient) against a real daphne."""

import asyncio
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.conf import settings

from metrics_app.models import PagePerformance
from tests.support.servers import DaphneServer, TcpProxy, database_url_for_subprocess, free_port
from tests.support.waiting import wait_for
from wealthmetrics_client import InvalidRecord, MetricsClient
from wealthmetrics_client import client as client_module

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def make_client() -> Iterator[Callable[..., MetricsClient]]:
    made: list[MetricsClient] = []

    def make(url: str, key: str, **options: object) -> MetricsClient:
        options = {
            "flush_interval": 0.1,
            "backoff_base": 0.05,
            "backoff_max": 0.5,
            "flush_at_exit": False,
        } | options
        client = MetricsClient(url, key, **options)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=0)


def navigate(client: MetricsClient, source: str, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        client.record_page_navigation(scraper_source=source, url=f"https://x/{i}", navigation_duration_ms=i)


def urls(source: str) -> list[str]:
    return list(PagePerformance.objects.filter(scraper_source=source).values_list("page_url", flat=True))


def test_records_arrive_in_batches(
    daphne: DaphneServer, committed_api_key: str, make_client: Callable[..., MetricsClient]
) -> None:
    client = make_client(daphne.url, committed_api_key, batch_size=100)
    navigate(client, "remote", 250)
    assert client.flush(timeout=20)
    assert sorted(urls("remote")) == sorted(f"https://x/{i}" for i in range(250))
    stats = client.stats()
    assert (stats["sent"], stats["buffered"], stats["rejected"], stats["dropped"]) == (250, 0, 0, 0)


def test_server_down_then_up_delivers_everything_once(
    live_server_env: dict[str, str], committed_api_key: str, make_client: Callable[..., MetricsClient]
) -> None:
    port = free_port()
    client = make_client(f"http://127.0.0.1:{port}", committed_api_key, batch_size=20)
    navigate(client, "outage", 50)
    assert wait_for(lambda: client.stats()["retries"] >= 3)
    assert client.stats()["buffered"] == 50 and "Connection" in (client.stats()["lastError"] or "")

    server = DaphneServer(live_server_env, port=port)
    server.start()
    try:
        navigate(client, "outage", 10, start=50)
        assert client.flush(timeout=30)
    finally:
        server.stop()
    assert sorted(urls("outage")) == sorted(f"https://x/{i}" for i in range(60))  # none twice
    assert client.stats()["sent"] == 60


def test_4xx_is_not_retried_and_only_the_named_records_are_dropped(
    daphne: DaphneServer, committed_api_key: str, make_client: Callable[..., MetricsClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    client = make_client(daphne.url, committed_api_key)
    navigate(client, "mixed", 2)
    # A record the client cannot foresee being refused (a server with stricter rules).
    monkeypatch.setattr(client_module, "checked", lambda metric: metric)
    client.record_page_navigation(scraper_source="Not A Source!", url="https://x/", navigation_duration_ms=1)
    monkeypatch.undo()
    navigate(client, "mixed", 2, start=2)
    assert client.flush(timeout=10)
    stats = client.stats()
    assert (stats["rejected"], stats["sent"], stats["retries"]) == (1, 4, 0)
    assert "scraperSource" in stats["lastError"]
    assert sorted(urls("mixed")) == [f"https://x/{i}" for i in range(4)]

    unauthorised = make_client(daphne.url, "wm_wrong")
    navigate(unauthorised, "nokey", 3)
    assert unauthorised.flush(timeout=10)
    assert (unauthorised.stats()["rejected"], unauthorised.stats()["retries"]) == (3, 0)


def test_what_the_server_would_refuse_fails_in_the_scraper(make_client: Callable[..., MetricsClient]) -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", "wm_x")
    with pytest.raises(InvalidRecord, match="url"):
        client.record(
            {"type": "page_navigation", "scraperSource": "x", "url": object(), "navigationDurationMs": 1}
        )
    client.close(timeout=0)
    with pytest.raises(RuntimeError, match="closed"):
        navigate(client, "late", 1)


def test_close_counts_what_it_could_not_deliver(make_client: Callable[..., MetricsClient]) -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", "wm_x")
    navigate(client, "undelivered", 7)
    client.close(timeout=0.3)
    assert (client.stats()["dropped"], client.stats()["buffered"], client.stats()["sent"]) == (7, 0, 0)


def test_the_buffer_is_bounded_and_counts_what_it_drops(make_client: Callable[..., MetricsClient]) -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", "wm_x", max_buffer=10, batch_size=5)
    navigate(client, "bounded", 25)
    stats = client.stats()
    assert stats["buffered"] == 10 and stats["dropped"] == 15
    assert not client.flush(timeout=0.3)


def test_asyncio_code_awaits_the_flush(
    daphne: DaphneServer, committed_api_key: str, make_client: Callable[..., MetricsClient]
) -> None:
    client = make_client(daphne.url, committed_api_key)

    async def scraper() -> bool:
        navigate(client, "async", 5)  # recording never blocks the loop
        return await client.aflush(timeout=10)

    assert asyncio.run(scraper())
    assert len(urls("async")) == 5


@pytest.mark.mysql
def test_a_503_during_a_database_outage_is_retried(
    live_server_env: dict[str, str], committed_api_key: str, make_client: Callable[..., MetricsClient]
) -> None:
    db = settings.DATABASES["default"]
    with TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 3306)) as proxy:
        env = {
            **live_server_env,
            "DATABASE_URL": database_url_for_subprocess(db, host="127.0.0.1", port=proxy.port),
        }
        server = DaphneServer(env)
        server.start()
        try:
            client = make_client(server.url, committed_api_key, batch_size=10)
            proxy.cut()
            navigate(client, "db-outage", 10)
            assert wait_for(lambda: "HTTP 503" in (client.stats()["lastError"] or ""), timeout=20)
            assert client.stats()["buffered"] == 10
            proxy.restore()
            assert client.flush(timeout=30)
        finally:
            server.stop()
    assert sorted(urls("db-outage")) == sorted(f"https://x/{i}" for i in range(10))


class StubServer(BaseHTTPRequestHandler):
    """Stands in for a server that fails: answers `statuses` in turn (202 once they run out),
    and always 500 to a batch from the source `poison`."""

    statuses: list[int] = []
    posts: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.posts.append(body)
        status = 500 if b'"poison"' in body else (self.statuses.pop(0) if self.statuses else 202)
        self.send_response(status)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    StubServer.statuses, StubServer.posts = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_batch_that_keeps_failing_with_500_is_given_up_and_counted(
    stub: str, make_client: Callable[..., MetricsClient]
) -> None:
    client = make_client(stub, "wm_x", batch_size=2, max_server_errors=3)
    navigate(client, "poison", 2)
    navigate(client, "fine", 2)
    assert client.flush(timeout=10)
    stats = client.stats()
    assert (stats["failed"], stats["sent"], stats["buffered"]) == (2, 2, 0)
    assert sum(b'"poison"' in body for body in StubServer.posts) == 3


def test_503_and_429_are_retried_for_as_long_as_it_takes(
    stub: str, make_client: Callable[..., MetricsClient]
) -> None:
    StubServer.statuses = [503, 429, 503, 503, 429, 503, 502, 504]
    client = make_client(stub, "wm_x", max_server_errors=3)
    navigate(client, "patient", 5)
    assert client.flush(timeout=20)
    stats = client.stats()
    assert (stats["sent"], stats["failed"], stats["retries"]) == (5, 0, 8)


class AnswerEater(BaseHTTPRequestHandler):
    """Forwards each POST to a real server, and for the first `eat` of them throws the answer
    away and cuts the connection: the server stored the batch, the client never heard."""

    target = ""
    eat = 0
    keys: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.keys.append(self.headers["Idempotency-Key"])
        forwarded = {
            name: self.headers[name] for name in ("Authorization", "Content-Type", "Idempotency-Key")
        }
        answer = httpx.post(f"{self.target}/api/metrics/", content=body, headers=forwarded, timeout=30)
        if AnswerEater.eat > 0:
            AnswerEater.eat -= 1
            self.close_connection = True
            return  # no answer at all
        self.send_response(answer.status_code)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args: object) -> None:
        pass


def test_a_batch_whose_answer_was_lost_is_stored_once(
    daphne: DaphneServer, committed_api_key: str, make_client: Callable[..., MetricsClient]
) -> None:
    AnswerEater.target, AnswerEater.eat, AnswerEater.keys = daphne.url, 2, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), AnswerEater)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = make_client(f"http://127.0.0.1:{server.server_address[1]}", committed_api_key, batch_size=10)
        navigate(client, "lost-answer", 10)
        assert client.flush(timeout=20)
    finally:
        server.shutdown()
    assert len(AnswerEater.keys) == 3 and len(set(AnswerEater.keys)) == 1  # one key, kept across retries
    assert sorted(urls("lost-answer")) == sorted(f"https://x/{i}" for i in range(10))  # stored once
    assert client.stats()["sent"] == 10

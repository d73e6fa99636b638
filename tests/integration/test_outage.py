"""A real database outage: the link to MariaDB is cut on the wire by a TCP proxy.

Nothing accepted is lost: the collector re-queues and stores after recovery; the HTTP API
answers 503 with Retry-After while the database is away and 202 again once it is back.
"""

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import dj_database_url
import httpx
import MySQLdb
import orjson
import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from metrics_app.collector import MetricsCollector
from tests.support.records import navigation
from tests.support.servers import DaphneServer, TcpProxy, database_url_for_subprocess
from tests.support.waiting import wait_for
from tests.support.ws import next_of, open_socket, send

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]


def count_rows(source: str) -> int:
    """Counted over a direct connection of its own, never through the proxy."""
    direct = dj_database_url.parse(os.environ["DATABASE_URL"])
    conn = MySQLdb.connect(
        host=direct["HOST"] or "127.0.0.1",
        port=int(direct["PORT"] or 3306),
        user=direct["USER"] or "root",
        passwd=direct["PASSWORD"] or "",
        db=settings.DATABASES["default"]["NAME"],
    )
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM scraper_page_performance WHERE scraper_source = %s", (source,))
        return int(cursor.fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    db = settings.DATABASES["default"]
    with TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 3306)) as running:
        yield running


@pytest.fixture
def database_through(proxy: TcpProxy) -> Iterator[None]:
    """New connections of this process (such as the collector thread's) go through the proxy."""
    db = settings.DATABASES["default"]
    saved = db["HOST"], db["PORT"]
    db["HOST"], db["PORT"] = "127.0.0.1", proxy.port
    yield
    db["HOST"], db["PORT"] = saved


def test_collector_keeps_every_record_through_an_outage(proxy: TcpProxy, database_through: None) -> None:
    collector = MetricsCollector(batch_size=10, interval_ms=200)
    try:
        for i in range(10):
            collector.record_page_navigation(scraper_source="outage", url=f"u{i}", navigation_duration_ms=i)
        assert wait_for(lambda: count_rows("outage") == 10)

        proxy.cut()
        for i in range(10, 40):
            collector.record_page_navigation(scraper_source="outage", url=f"u{i}", navigation_duration_ms=i)
        assert wait_for(lambda: collector.stats()["flushFailures"] >= 2)
        assert count_rows("outage") == 10
        assert collector.stats()["pending"] == 30

        proxy.restore()
        assert wait_for(lambda: count_rows("outage") == 40, timeout=15)
        assert wait_for(lambda: collector.stats()["pending"] == 0 and collector.stats()["flushed"] == 40)
        stats = collector.stats()
        assert (stats["pending"], stats["dropped"], stats["flushed"]) == (0, 0, 40)
    finally:
        collector.close()


@pytest.fixture
def daphne_via_proxy(proxy: TcpProxy, live_server_env: dict[str, str]) -> Iterator[DaphneServer]:
    env = {
        **live_server_env,
        "DATABASE_URL": database_url_for_subprocess(settings.DATABASES["default"], port=proxy.port),
    }
    server = DaphneServer(env)
    server.start()
    yield server
    server.stop()


def post_batch(server: DaphneServer, key: str, source: str, count: int) -> httpx.Response:
    body = orjson.dumps({"metrics": [navigation(scraperSource=source, url=f"u{i}") for i in range(count)]})
    return httpx.post(
        f"{server.url}/api/metrics/",
        content=body,
        timeout=30,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )


def test_api_answers_503_while_the_database_is_away(
    proxy: TcpProxy, daphne_via_proxy: DaphneServer, committed_api_key: str
) -> None:
    assert post_batch(daphne_via_proxy, committed_api_key, "http-outage", 50).status_code == 202

    proxy.cut()
    for _ in range(3):
        response = post_batch(daphne_via_proxy, committed_api_key, "http-outage", 50)
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["error"] == "database_unavailable"

    proxy.restore()
    assert wait_for(lambda: post_batch(daphne_via_proxy, committed_api_key, "probe", 1).status_code == 202)
    assert post_batch(daphne_via_proxy, committed_api_key, "http-outage", 50).status_code == 202
    assert count_rows("http-outage") == 100


def test_a_request_whole_in_one_packet_gets_one_answer_while_the_database_is_away(
    proxy: TcpProxy, daphne_via_proxy: DaphneServer
) -> None:
    """Headers and body in one packet, with a key the process must look up: one 503, no 500
    after it, no traceback in the log, and no driver error shown to strangers."""
    assert post_batch(daphne_via_proxy, "wm_warm-up", "x", 1).status_code == 401  # the key copy is loaded
    proxy.cut()
    time.sleep(2.5)  # the copy is stale: the next key needs the database
    body = orjson.dumps({"metrics": [navigation(scraperSource="one-packet")]})
    request = (
        b"POST /api/metrics/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wm_never-seen\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", daphne_via_proxy.port), timeout=15) as sock:
        sock.sendall(request)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1
    health = httpx.get(f"{daphne_via_proxy.url}/api/health/websocket", timeout=10).text
    assert "Can't connect" not in health and "2003" not in health
    proxy.restore()
    log = daphne_via_proxy.log()
    assert "Traceback" not in log and "Exception inside application" not in log


def test_a_client_sending_faster_than_it_is_answered_is_dropped(
    proxy: TcpProxy, daphne_via_proxy: DaphneServer, committed_api_key: str
) -> None:
    """While a resync hangs on the database, a client's further messages wait for the consumer:
    past 64 of them the client is dropped, not held in memory."""

    async def flood() -> bool:
        ws = await open_socket(daphne_via_proxy, key=committed_api_key)
        await next_of(ws, "connected")
        proxy.frozen = True  # the resync's read hangs
        await send(
            ws, {"type": "subscribe", "scraperSource": "flooded", "since": {"page": 0, "scheduler": 0}}
        )
        try:
            for _ in range(200):
                await send(ws, {"type": "ping"})
            await asyncio.wait_for(ws.wait_closed(), 10)
        except ConnectionClosed:
            pass
        finally:
            proxy.frozen = False
        return ws.state.name == "CLOSED"

    assert asyncio.run(flood())
    assert wait_for(
        lambda: daphne_via_proxy.stats(committed_api_key)["counters"].get("clients_dropped_flooding", 0) >= 1
    )


def test_a_202_survives_the_server_being_killed(
    daphne_via_proxy: DaphneServer, committed_api_key: str
) -> None:
    assert post_batch(daphne_via_proxy, committed_api_key, "killed", 500).status_code == 202
    assert daphne_via_proxy.process is not None
    daphne_via_proxy.process.send_signal(signal.SIGKILL)
    daphne_via_proxy.process.wait(10)
    assert count_rows("killed") == 500


def test_reads_pages_and_sockets_answer_503_or_1013_while_the_database_is_away(
    proxy: TcpProxy,
    daphne_via_proxy: DaphneServer,
    committed_api_key: str,
    client: Any,
    django_user_model: Any,
) -> None:
    client.force_login(django_user_model.objects.create_user("outage-reader", password="pw-123456!"))
    session = client.cookies["sessionid"].value
    server = daphne_via_proxy
    source = f"outage-{uuid.uuid4().hex[:8]}"
    assert post_batch(server, committed_api_key, source, 1).status_code == 202

    async def open_and_subscribe_then_cut() -> None:
        async with await open_socket(server, key=committed_api_key) as ws:
            await next_of(ws, "connected")
            proxy.cut()
            await send(ws, {"type": "subscribe", "scraperSource": source})
            await next_of(ws, "subscribed")
            error = await next_of(ws, "error", timeout=15)
            assert (error["code"], error["scraperSource"], "resync" in error) == (
                "history_unavailable",
                source,
                False,
            )
            # a resync that cannot be read says so: the client asks again later
            await send(
                ws, {"type": "subscribe", "scraperSource": source, "since": {"page": 0, "scheduler": 0}}
            )
            error = await next_of(ws, "error", timeout=15)
            assert (error["code"], error["resync"]) == ("history_unavailable", True)
            await send(ws, {"type": "ping"})
            await next_of(ws, "pong")  # the socket stays open

    asyncio.run(open_and_subscribe_then_cut())
    time.sleep(3)  # past the key cache's freshness: the next handshake needs the database
    auth = {"Authorization": f"Bearer {committed_api_key}"}
    for path, headers in [("/api/stats/", auth), ("/analytics/", {"Cookie": f"sessionid={session}"}),
                          ("/api/metrics/recent/?source=x", auth)]:  # fmt: skip
        response = httpx.get(f"{server.url}{path}", headers=headers, timeout=30)
        assert response.status_code == 503, (path, response.text)
        assert int(response.headers["Retry-After"]) > 0

    async def handshake_during_the_cut() -> None:
        for options in ({"key": committed_api_key}, {"session": session, "origin": server.url}):
            async with await open_socket(server, **options) as ws:
                assert (await next_of(ws, "error", timeout=15))["code"] == "unavailable"
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013

    asyncio.run(handshake_during_the_cut())
    proxy.restore()
    assert wait_for(lambda: server.health()["clients"] == 0)
    assert "Traceback" not in server.log()


def test_a_socket_that_closes_while_its_history_hangs_leaves_no_ghost(
    proxy: TcpProxy, live_server_env: dict[str, str], committed_api_key: str
) -> None:
    env = {
        **live_server_env,
        "DATABASE_URL": database_url_for_subprocess(settings.DATABASES["default"], port=proxy.port),
    }
    # daphne kills a consumer that has not finished 1 s after its socket closed
    server = DaphneServer(env, args=("--application-close-timeout", "1"))
    server.start()
    source = f"hang-{uuid.uuid4().hex[:8]}"
    try:
        assert post_batch(server, committed_api_key, source, 1).status_code == 202

        async def subscribe_then_leave() -> None:
            ws = await open_socket(server, key=committed_api_key)
            await next_of(ws, "connected")
            proxy.frozen = True  # queries hang now
            await send(ws, {"type": "subscribe", "scraperSource": source})
            await next_of(ws, "subscribed")
            await ws.close()

        asyncio.run(subscribe_then_leave())
        assert wait_for(lambda: server.health()["clients"] == 0, 10), server.health()
        assert server.health()["subscriptionCount"] == 0
    finally:
        proxy.frozen = False
        server.stop()

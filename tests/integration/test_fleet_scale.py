"""Fleet scale on real daphnes: reconnect storms absorbed, revocation within its bound on every
process, and honest overload (an answer at once, with Retry-After, and nothing of it stored)."""

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from django.db import connection

from metrics_app.api.ingest_route import LoopPressure
from metrics_app.models import ApiKey, PagePerformance, hash_key
from tests.support.records import navigation
from tests.support.servers import ROOT, DaphneServer, free_port
from tests.support.waiting import wait_for
from tests.support.ws import ingest, next_of, open_socket, send, unique_source

pytestmark = pytest.mark.django_db(transaction=True)


async def subscribe_all(server: DaphneServer, count: int, **credentials: str) -> list[str]:
    """`count` sockets at once, each subscribing to '*' and waiting for its history; the
    failures, as text (empty: all subscribed)."""

    async def one() -> None:
        ws = await open_socket(server, **credentials)
        try:
            await next_of(ws, "connected", timeout=30)
            await send(ws, {"type": "subscribe", "scraperSource": "*"})
            await next_of(ws, "subscribed", timeout=30)
            await next_of(ws, "history", timeout=30)
        finally:
            await ws.close()

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    return [repr(result) for result in results if isinstance(result, BaseException)]


def test_a_storm_of_1000_handshakes_is_absorbed(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    server = start_daphne(METRICS_MAX_CLIENTS="2000", METRICS_MAX_CLIENTS_PER_CREDENTIAL="2000")  # one key
    asyncio.run(ingest(server, committed_api_key, [navigation(scraperSource=unique_source())]))
    loads_before = server.stats(committed_api_key)["counters"].get("history_loads", 0)
    assert asyncio.run(subscribe_all(server, 1000, key=committed_api_key)) == []
    assert server.stats(committed_api_key)["counters"]["history_loads"] - loads_before <= 5


def test_a_storm_from_one_session_looks_it_up_once(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str, session: str
) -> None:
    server = start_daphne(METRICS_KEY_CACHE_SECONDS="30")
    failures = asyncio.run(subscribe_all(server, 100, session=session, origin=server.url))
    assert failures == []
    assert server.stats(committed_api_key)["counters"]["session_lookups"] == 1


def test_a_revoked_key_stops_working_on_every_process_within_the_bound(
    start_daphne: Callable[..., DaphneServer],
) -> None:
    bound = 2  # METRICS_KEY_CACHE_SECONDS, the documented bound
    servers = [start_daphne(METRICS_KEY_CACHE_SECONDS=str(bound)) for _ in range(2)]
    api_key, token = ApiKey.issue("soon revoked")
    body = orjson.dumps({"metrics": [navigation(scraperSource="revocation")]})
    headers = {"Authorization": f"Bearer {token}"}
    for server in servers:  # each process has the key in its copy
        assert httpx.post(f"{server.url}/api/metrics/", content=body, headers=headers).status_code == 202

    api_key.revoke()  # by a third process: neither daphne hears of it but through its copy
    revoked_at = time.monotonic()
    refused_after = []
    for server in servers:
        while httpx.post(f"{server.url}/api/metrics/", content=body, headers=headers).status_code == 202:
            time.sleep(0.05)
        refused_after.append(time.monotonic() - revoked_at)
    assert max(refused_after) <= bound + 1.0, refused_after
    assert PagePerformance.objects.filter(scraper_source="revocation").count() >= 2
    assert not ApiKey.objects.filter(key_hash=hash_key(token), revoked_at__isnull=True).exists()


@contextlib.contextmanager
def writes_held() -> Iterator[None]:
    """Hold the detailed table so that no ingest transaction can finish until the block ends."""
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute("LOCK TABLES scraper_page_performance WRITE")
        else:
            cursor.execute("BEGIN IMMEDIATE")  # readers go on, writers wait
        try:
            yield
        finally:
            cursor.execute("UNLOCK TABLES" if connection.vendor == "mysql" else "COMMIT")


def test_an_overloaded_process_answers_at_once_with_retry_after(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    server = start_daphne(
        METRICS_DB_WRITERS="1", METRICS_INGEST_QUEUE_MS="300", METRICS_MAX_WAITING_REQUESTS="8"
    )
    source = unique_source()
    headers = {"Authorization": f"Bearer {committed_api_key}"}

    async def post(client: httpx.AsyncClient, n: int) -> tuple[int, float, httpx.Headers]:
        body = orjson.dumps({"metrics": [navigation(scraperSource=source, url=f"u{n}")]})
        started = time.monotonic()
        response = await client.post("/api/metrics/", content=body, headers=headers)
        return response.status_code, time.monotonic() - started, response.headers

    async def burst() -> list[tuple[int, float, httpx.Headers]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            stuck = asyncio.ensure_future(post(client, 0))  # the writer takes it, then waits
            await asyncio.sleep(0.5)
            others = await asyncio.gather(*(post(client, n) for n in range(1, 25)))
            release.set()
            return [await stuck, *others]

    release, locked = asyncio.Event(), threading.Event()

    async def hold_then_burst() -> list[tuple[int, float, httpx.Headers]]:
        loop = asyncio.get_running_loop()
        held = loop.run_in_executor(None, hold_until, release, loop)
        await loop.run_in_executor(None, locked.wait)
        answers = await burst()
        await held
        return answers

    def hold_until(event: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        try:
            with writes_held():
                locked.set()
                asyncio.run_coroutine_threadsafe(event.wait(), loop).result()
        finally:
            connection.close()  # this thread's own

    server.health()  # up, and the key is known
    answers = asyncio.run(hold_then_burst())
    stuck, others = answers[0], answers[1:]
    assert stuck[0] == 202  # taken by the writer before the burst: stored once the table is free
    assert {status for status, _, _ in others} == {503}
    assert all(elapsed < 1.0 for _, elapsed, _ in others), [round(e, 2) for _, e, _ in others]
    assert all(int(h["Retry-After"]) >= 1 for _, _, h in others)
    counters = server.stats(committed_api_key)["counters"]
    assert counters["requests_overloaded"] == 24
    assert PagePerformance.objects.filter(scraper_source=source).count() == 1  # nothing of the 503s


def test_a_late_event_loop_refuses_new_ingest_until_it_catches_up(settings: Any) -> None:
    settings.METRICS_MAX_LOOP_LAG_MS = 200

    async def scenario() -> list[bool]:
        pressure = LoopPressure()
        seen = [pressure.overloaded()]  # starts watching
        await asyncio.sleep(0.01)
        time.sleep(0.4)  # a loop that runs late: every callback waits this long
        await asyncio.sleep(0.02)  # the late tick runs; the next is not due yet
        seen.append(pressure.overloaded())
        await asyncio.sleep(0.2)
        seen.append(pressure.overloaded())
        return seen

    assert asyncio.run(scenario()) == [False, True, False]


@pytest.mark.redis  # several processes share their live stream through Redis
def test_two_daphnes_share_one_port_for_ingest_and_sockets(
    live_server_env: dict[str, str], committed_api_key: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "daphnes.log"  # a file, not a pipe no one reads (a full pipe stops daphne)
    group = subprocess.Popen(
        [sys.executable, "bin/daphnes", "--processes", "2", "--port", str(port)],
        cwd=ROOT, env=live_server_env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {committed_api_key}"}
    source = unique_source()
    try:
        assert wait_for(lambda: _answers(url), 30), "bin/daphnes did not start"

        async def fleet() -> tuple[list[int], set[int]]:
            async def one(n: int) -> tuple[int, int]:
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:  # a connection each
                    body = orjson.dumps({"metrics": [navigation(scraperSource=source, url=f"u{n}")]})
                    stored = await client.post("/api/metrics/", content=body, headers=headers)
                    pid = (await client.get("/api/stats/", headers=headers)).json()["pid"]
                    return stored.status_code, pid

            answers = await asyncio.gather(*(one(n) for n in range(64)))
            return [status for status, _ in answers], {pid for _, pid in answers}

        statuses, pids = asyncio.run(fleet())
        assert statuses == [202] * 64
        assert len(pids) == 2  # the kernel spread the connections over both processes
        assert PagePerformance.objects.filter(scraper_source=source).count() == 64
    except BaseException:
        print(log.read_text()[-6000:])  # shown with the failure
        raise
    finally:
        group.send_signal(signal.SIGTERM)
        assert group.wait(30) == 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health/websocket", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_a_revoked_key_or_an_ended_session_closes_its_open_sockets(
    start_daphne: Callable[..., DaphneServer], session: str, client: Any
) -> None:
    server = start_daphne(METRICS_KEY_CACHE_SECONDS="1")
    api_key, token = ApiKey.issue("soon revoked")

    async def closed_after(end: Callable[[], None], **credentials: str) -> tuple[int | None, float]:
        ws = await open_socket(server, **credentials)
        await next_of(ws, "connected")
        await send(ws, {"type": "subscribe", "scraperSource": "*"})
        await next_of(ws, "subscribed")
        await asyncio.get_running_loop().run_in_executor(None, end)
        ended = time.monotonic()
        with contextlib.suppress(Exception):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code, time.monotonic() - ended

    code, took = asyncio.run(closed_after(api_key.revoke, key=token))
    assert code == 4401 and took <= 2 * 1 + 1.0, (code, took)
    code, took = asyncio.run(closed_after(client.logout, session=session, origin=server.url))
    assert code == 4401 and took <= 2 * 1 + 1.0, (code, took)

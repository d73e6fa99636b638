"""The live stream under stress: slow clients, several processes, Redis restarts, shutdown."""

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.records import navigation, scrape
from tests.support.servers import DaphneServer, RedisServer
from tests.support.waiting import wait_for
from tests.support.ws import (
    collect_batches,
    ingest,
    next_of,
    open_socket,
    records_in,
    send,
    subscribe,
    unique_source,
)

pytestmark = pytest.mark.django_db(transaction=True)


def stats(server: DaphneServer, key: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/stats/", headers={"Authorization": f"Bearer {key}"})
    return dict(response.json())


def test_a_client_that_stops_reading_is_dropped_and_others_carry_on(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    server = start_daphne(METRICS_CLIENT_BUFFER_BYTES=str(64 * 1024), METRICS_BATCH_INTERVAL_MS="100")
    source = unique_source()

    async def scenario() -> None:
        stuck = await open_socket(server, key=committed_api_key, max_queue=1)
        await subscribe(stuck, "*")
        reader = await open_socket(server, key=committed_api_key, max_size=None)
        await subscribe(reader, "*")
        received = 0
        sent = 0

        async def read() -> None:
            nonlocal received
            while True:
                message = orjson.loads(await reader.recv())
                if message["type"] == "metrics_batch" and message["scraperSource"] == source:
                    received += message["count"]

        reading = asyncio.ensure_future(read())
        deadline = time.monotonic() + 30
        while "clients_dropped_slow" not in stats(server, committed_api_key)["counters"]:
            assert time.monotonic() < deadline, "the stuck client was never dropped"
            batch = [
                scrape(scraperSource=source, url=f"https://x/{sent + i}" + "p" * 300) for i in range(1000)
            ]
            await ingest(server, committed_api_key, batch)
            sent += len(batch)
        assert await asyncio.to_thread(wait_for, lambda: received == sent, 15)
        reading.cancel()
        assert stats(server, committed_api_key)["counters"]["clients_dropped_slow"] == 1
        with pytest.raises(ConnectionClosed):
            await drain(stuck)
        await reader.close()

    asyncio.run(scenario())


async def drain(ws: Any) -> None:
    """Read until the server's close shows; a dropped client gets no more than its backlog."""
    while True:
        await asyncio.wait_for(ws.recv(), 5)


@pytest.mark.redis
def test_two_processes_share_one_stream(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    first, second = start_daphne(), start_daphne()
    source = unique_source()

    async def scenario() -> None:
        async with await open_socket(first, key=committed_api_key) as ws:
            await subscribe(ws, source)
            await ingest(
                second, committed_api_key, [navigation(scraperSource=source, url=f"u{i}") for i in range(30)]
            )
            batches = await collect_batches(ws, lambda got: sum(b["count"] for b in got) >= 30)
            assert sorted(m["url"] for m in records_in(batches)) == sorted(f"u{i}" for i in range(30))

    asyncio.run(scenario())


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.redis
def test_redis_restart_storage_continues_and_streaming_recovers(
    start_daphne: Callable[..., DaphneServer], private_redis: RedisServer, committed_api_key: str
) -> None:
    server = start_daphne(REDIS_URL=private_redis.url)
    source = unique_source()

    def healthy() -> bool:
        return bool(httpx.get(f"{server.url}/api/health/websocket").json()["connected"])

    async def scenario() -> None:
        async with await open_socket(server, key=committed_api_key) as ws:
            await subscribe(ws, source)
            await ingest(
                server,
                committed_api_key,
                [navigation(scraperSource=source, url=f"before{i}") for i in range(10)],
            )
            (batch,) = await collect_batches(ws, lambda got: len(got) == 1)
            seen = {m["id"] for m in batch["metrics"]}
            last_seq = batch["seq"] + batch["count"] - 1

            private_redis.stop()
            await ingest(
                server,
                committed_api_key,
                [navigation(scraperSource=source, url=f"during{i}") for i in range(10)],
            )
            assert await asyncio.to_thread(wait_for, lambda: not healthy(), 10)

            private_redis.start()
            assert await asyncio.to_thread(wait_for, healthy, 15)
            await ingest(
                server,
                committed_api_key,
                [navigation(scraperSource=source, url=f"after{i}") for i in range(5)],
            )
            (batch,) = await collect_batches(ws, lambda got: len(got) == 1)
            seen |= {m["id"] for m in batch["metrics"]}
            assert batch["seq"] != last_seq + 1  # the client can tell it missed records...
            history = await subscribe(ws, source)  # ...and resyncs from the database
            seen |= {m["id"] for m in history["metrics"]}
            assert len(seen) == 25
            assert {m["url"] for m in history["metrics"]} >= {f"during{i}" for i in range(10)}

    asyncio.run(scenario())


def test_shutdown_sends_pending_batches_then_closes_cleanly(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    server = start_daphne(METRICS_BATCH_INTERVAL_MS="5000")
    source = unique_source()

    async def scenario() -> None:
        ws = await open_socket(server, key=committed_api_key)
        await subscribe(ws, source)
        await ingest(server, committed_api_key, [navigation(scraperSource=source) for _ in range(7)])
        await asyncio.sleep(0.3)  # the hub has them, the interval has not passed
        stopping = asyncio.ensure_future(asyncio.to_thread(server.stop))
        (batch,) = await collect_batches(ws, lambda got: len(got) == 1, timeout=5)
        assert batch["count"] == 7
        with pytest.raises(ConnectionClosed) as closed:
            await drain(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert await stopping == 0

    asyncio.run(scenario())


def test_ping_keeps_working_while_records_flow(daphne: DaphneServer, committed_api_key: str) -> None:
    source = unique_source()

    async def scenario() -> None:
        async with await open_socket(daphne, key=committed_api_key) as ws:
            await subscribe(ws, source)
            started = time.monotonic()
            await ingest(daphne, committed_api_key, [navigation(scraperSource=source)] * 500)
            await send(ws, {"type": "ping"})
            await next_of(ws, "pong")
            assert time.monotonic() - started < 5

    asyncio.run(scenario())

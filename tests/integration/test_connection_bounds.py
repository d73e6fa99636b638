"""A process holds a fixed number of database connections, whatever the number of senders.

Counted on the wire: the daphne process's TCP connections to MariaDB, sampled while 64
senders post small batches at once. Before the bound, each request thread kept a connection
of its own: hundreds, until MariaDB answered "Too many connections" to everyone.
"""

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import orjson
import psutil
import pytest
from django.conf import settings

from tests.support.records import navigation
from tests.support.servers import DaphneServer

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]

REQUEST_CONNECTIONS = 4
# group commit's writers (metrics_app.ingest.writer): kept open, a fixed number
WRITER_CONNECTIONS = 2
# the live stream's two threads, the in-process collector, Channels' session lookups
OTHER_CONNECTIONS = 4


def database_connections(pid: int) -> int:
    port = int(settings.DATABASES["default"]["PORT"] or 3306)
    return sum(
        1
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    )


def test_64_senders_share_a_fixed_number_of_connections(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    server = start_daphne(
        METRICS_DB_CONNECTIONS=str(REQUEST_CONNECTIONS), METRICS_DB_WRITERS=str(WRITER_CONNECTIONS)
    )
    assert server.process is not None
    pid = server.process.pid
    peak = 0
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, database_connections(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()

    async def sender(client: httpx.AsyncClient, n: int, until: float) -> list[int]:
        statuses = []
        while time.monotonic() < until:
            body = orjson.dumps(
                {"metrics": [navigation(scraperSource=f"fleet-{n}", url=f"u{i}") for i in range(5)]}
            )
            response = await client.post("/api/metrics/", content=body)
            statuses.append(response.status_code)
        return statuses

    async def fleet() -> list[int]:
        headers = {"Authorization": f"Bearer {committed_api_key}"}
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(
            base_url=server.url, headers=headers, limits=limits, timeout=30
        ) as client:
            until = time.monotonic() + 4
            results = await asyncio.gather(*(sender(client, n, until) for n in range(64)))
        return [status for statuses in results for status in statuses]

    try:
        statuses = asyncio.run(fleet())
    finally:
        sampling = False
        sampler.join()
    assert len(statuses) > 200
    assert set(statuses) == {202}
    assert 1 <= peak <= REQUEST_CONNECTIONS + WRITER_CONNECTIONS + OTHER_CONNECTIONS
    time.sleep(0.5)  # no idle hoarding: what requests opened is closed; the writers keep theirs
    assert database_connections(pid) <= WRITER_CONNECTIONS + OTHER_CONNECTIONS

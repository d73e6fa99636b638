"""A WebSocket client for tests, speaking to a real daphne over a real socket."""

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from tests.support.servers import DaphneServer

Message = dict[str, Any]


def unique_source() -> str:
    """A source name no other test uses, so tests sharing a server cannot see each other."""
    return f"t-{uuid.uuid4().hex[:12]}"


def ws_url(server: DaphneServer) -> str:
    return server.url.replace("http://", "ws://") + "/ws/metrics/"


async def open_socket(
    server: DaphneServer, *, key: str | None = None, session: str | None = None, origin: str | None = None,
    **options: Any,
) -> ClientConnection:  # fmt: skip
    headers = {}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if session is not None:
        headers["Cookie"] = f"sessionid={session}"
    return await connect(
        ws_url(server),
        additional_headers=headers,
        origin=Origin(origin) if origin else None,
        open_timeout=10,
        **options,
    )


async def next_of(ws: ClientConnection, kind: str, timeout: float = 5.0) -> Message:
    """The next message of a type, skipping heartbeats, updates and the like."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {kind!r} message within {timeout}s")
        message: Message = orjson.loads(await asyncio.wait_for(ws.recv(), remaining))
        if message["type"] == kind:
            return message


async def send(ws: ClientConnection, message: Message) -> None:
    await ws.send(orjson.dumps(message).decode())


async def subscribe(ws: ClientConnection, source: str) -> Message:
    """Subscribe and return the history that follows."""
    await send(ws, {"type": "subscribe", "scraperSource": source})
    await next_of(ws, "subscribed")
    return await next_of(ws, "history")


async def ingest(server: DaphneServer, key: str, records: list[Message]) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post("/api/metrics/", content=orjson.dumps({"metrics": records}),
                                     headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert response.status_code == 202, response.text


async def collect_batches(
    ws: ClientConnection, until: Callable[[list[Message]], bool], timeout: float = 10.0
) -> list[Message]:
    batches: list[Message] = []
    deadline = time.monotonic() + timeout
    while not until(batches):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {sum(b['count'] for b in batches)} records in {len(batches)} batches")
        batches.append(await next_of(ws, "metrics_batch", remaining))
    return batches


def records_in(batches: list[Message]) -> list[Message]:
    return [record for batch in batches for record in batch["metrics"]]

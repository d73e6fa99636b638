"""The baseline for bench/fanout.py: a plain asyncio `websockets` broadcast server,
and the baseline of bench/connect.py.

It reads the same Redis stream as wealthmetrics' hub (metrics_app.stream.bus), batches records per
source on the same interval and size, serialises each batch once and sends it to every
connected client with `websockets.broadcast`. No Django, no auth, no subscriptions: the
least a server can do to deliver the same messages, so the comparison is fair to it.

    python bench/baseline_server.py --fd N | --port P  [--interval-ms 1000] [--max-batch 100]
"""

import argparse
import asyncio
import os
import socket
import time
from typing import Any

import orjson
import redis.asyncio
from websockets.asyncio.server import ServerConnection, broadcast, serve

CHANNEL = "wealthmetrics:metrics"
# What bench/connect.py waits for after subscribing: the same two messages wealthmetrics sends,
# built once (a 100-record history, the size of wealthmetrics' first page).
SUBSCRIBED = orjson.dumps({"type": "subscribed", "scraperSource": "*", "subscriptions": ["*"]}).decode()
HISTORY = orjson.dumps(
    {
        "type": "history",
        "scraperSource": "*",
        "metrics": [
            {
                "type": "page_navigation",
                "scraperSource": "storm",
                "url": f"https://example.com/{i}",
                "navigationDurationMs": 100 + i,
                "recordedAt": 0,
            }
            for i in range(100)
        ],
    }
).decode()


class Broadcaster:
    def __init__(self, interval: float, max_batch: int) -> None:
        self.clients: set[ServerConnection] = set()
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.interval = interval
        self.max_batch = max_batch

    async def handler(self, ws: ServerConnection) -> None:
        self.clients.add(ws)
        try:
            async for message in ws:  # everyone gets everything: a subscribe is only answered
                if b'"subscribe"' in (message.encode() if isinstance(message, str) else message):
                    await ws.send(SUBSCRIBED)
                    await ws.send(HISTORY)
        finally:
            self.clients.discard(ws)

    def receive(self, message: bytes) -> None:
        _, _, payload = message.partition(b"\n")
        for record in orjson.loads(payload):
            source = record.get("scraperSource") or record["schedulerName"]
            batch = self.pending.setdefault(source, [])
            batch.append(record)
            if len(batch) >= self.max_batch:
                self.flush(source)

    def flush(self, source: str) -> None:
        records = self.pending.pop(source)
        text = orjson.dumps(
            {
                "type": "metrics_batch",
                "scraperSource": source,
                "count": len(records),
                "timestamp": int(time.time() * 1000),
                "metrics": records,
            }
        ).decode()
        broadcast(self.clients, text)

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for source in list(self.pending):
                self.flush(source)

    async def listen(self, url: str) -> None:
        client = redis.asyncio.Redis.from_url(url)
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(CHANNEL)
            async for message in pubsub.listen():
                if message["type"] == "message":
                    self.receive(message["data"])


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, help="a listening socket inherited from the parent")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--max-batch", type=int, default=100)
    args = parser.parse_args()
    broadcaster = Broadcaster(args.interval_ms / 1000, args.max_batch)
    sock = socket.socket(fileno=args.fd) if args.fd is not None else None
    options: dict[str, Any] = {"sock": sock} if sock else {"host": "127.0.0.1", "port": args.port}
    async with serve(broadcaster.handler, compression=None, max_queue=4, **options):
        await asyncio.gather(broadcaster.ticker(), broadcaster.listen(os.environ["REDIS_URL"]))


if __name__ == "__main__":
    asyncio.run(main())

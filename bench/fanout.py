"""Fan-out benchmark: N WebSocket clients subscribed to '*' while records are ingested steadily.

    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics \\
        .venv/bin/python bench/fanout.py --clients 1000 --rate 1000 --duration 30

Topology, all on this machine: one daphne takes the HTTP ingest; --servers daphne processes
share one listening socket (daphne --fd) and serve the WebSocket clients; the same number of
plain `websockets` broadcast processes (bench/baseline_server.py) read the same Redis stream.
Each target gets the same clients, rate and duration in turn, and the script prints connect
time, delivery latency (record time to client receipt), loss, server CPU per delivered
message, RSS per idle connection, and our/baseline ratios.
"""

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, prepare  # noqa: E402
from tests.support.servers import DaphneServer, free_port  # noqa: E402

COUNT = re.compile(rb'"count":(\d+)')
LOADGEN_PROCESSES = 2
SAMPLE_CLIENTS = 100  # per load generator: these parse every record for latency and duplicates


# --- load generator (runs in its own processes) -----------------------------------------


@dataclass
class ClientResult:
    connect_seconds: list[float] = field(default_factory=list)
    failed: int = 0
    records: int = 0
    messages: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    duplicates: int = 0


async def run_clients(url: str, key: str, count: int, prefix: bytes, conn: Any) -> None:
    from websockets.asyncio.client import connect

    result = ClientResult()
    sockets = []
    gate = asyncio.Semaphore(64)  # handshakes in flight at once

    async def open_one(index: int) -> None:
        async with gate:
            started = time.perf_counter()
            try:
                ws = await connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {key}"},
                    compression=None,
                    max_size=None,
                    open_timeout=60,
                    ping_interval=None,
                )
                await ws.send('{"type":"subscribe","scraperSource":"*"}')
            except Exception:
                result.failed += 1
                return
            result.connect_seconds.append(time.perf_counter() - started)
            sockets.append((ws, index < SAMPLE_CLIENTS))

    await asyncio.gather(*(open_one(i) for i in range(count)))
    conn.send(("connected", len(sockets)))

    async def read(ws: Any, sample: bool) -> None:
        seen: set[int] = set()
        try:
            async for message in ws:
                data = message.encode() if isinstance(message, str) else message
                if not data.startswith(b'{"type":"metrics_batch","scraperSource":"' + prefix):
                    continue
                result.messages += 1
                if not sample:
                    found = COUNT.search(data, 0, 200)
                    result.records += int(found.group(1)) if found else 0
                    continue
                received_ms = time.time() * 1000
                batch = orjson.loads(data)
                result.records += batch["count"]
                for record in batch["metrics"]:
                    result.latencies_ms.append(received_ms - record["recordedAt"])
                    marker = int(record["url"].rsplit("/", 1)[-1])
                    if marker in seen:
                        result.duplicates += 1
                    seen.add(marker)
        except Exception:
            pass

    readers = [asyncio.ensure_future(read(ws, sample)) for ws, sample in sockets]
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
    for ws, _ in sockets:
        ws.transport.abort()
    await asyncio.gather(*readers, return_exceptions=True)
    conn.send(("result", result))


def loadgen(url: str, key: str, count: int, prefix: bytes, conn: Any) -> None:
    asyncio.run(run_clients(url, key, count, prefix, conn))


# --- the orchestrator -------------------------------------------------------------------


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", free_port()))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def start_shared(
    command: list[str], sock: socket.socket, count: int, env: dict[str, str], log: str
) -> list[subprocess.Popen[bytes]]:
    out = open(ROOT / "var" / log, "wb")  # noqa: SIM115 - kept open for the children
    return [
        subprocess.Popen(
            [*command], cwd=ROOT, env=env, pass_fds=[sock.fileno()], stdout=out, stderr=subprocess.STDOUT
        )
        for _ in range(count)
    ]


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def rss(pids: list[int]) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


class Sender(threading.Thread):
    """Posts `rate` records a second to the ingest daphne, in ten batches a second."""

    def __init__(self, url: str, key: str, rate: int, prefix: str, sources: int) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.rate, self.prefix, self.sources = url, key, rate, prefix, sources
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        per_tick = max(1, self.rate // 10)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            next_tick = time.monotonic()
            while not self.stop.is_set():
                now = int(time.time() * 1000)
                records = [
                    {
                        "type": "page_navigation",
                        "scraperSource": f"{self.prefix}{(self.sent + i) % self.sources}",
                        "url": f"https://example.com/{self.sent + i}",
                        "navigationDurationMs": 100 + i % 700,
                        "recordedAt": now,
                    }
                    for i in range(per_tick)
                ]
                response = client.post(
                    "/api/metrics/",
                    content=orjson.dumps({"metrics": records}),
                    headers={"Authorization": f"Bearer {self.key}"},
                )
                if response.status_code == 202:
                    self.sent += per_tick
                next_tick += 0.1
                time.sleep(max(0.0, next_tick - time.monotonic()))


def warm_up(ws_url: str, key: str, clients: int) -> None:
    """Open and close a few sockets first, so one-time costs (imports, the hub's first load,
    caches) are not counted as per-connection memory."""
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=loadgen, args=(ws_url, key, clients, b"warm-up", child))
    proc.start()
    parent.recv()
    time.sleep(2)
    parent.send("stop")
    parent.recv()
    proc.join(30)
    time.sleep(1)


def measure(
    name: str, ws_url: str, pids: list[int], args: argparse.Namespace, key: str, ingest_url: str
) -> dict[str, Any]:
    prefix = f"fan-{uuid.uuid4().hex[:6]}-"
    warm_up(ws_url, key, 50 * len(pids))
    idle_before = rss(pids)
    pipes = []
    procs = []
    share = args.clients // LOADGEN_PROCESSES
    started = time.monotonic()
    for index in range(LOADGEN_PROCESSES):
        parent, child = multiprocessing.Pipe()
        count = share if index < LOADGEN_PROCESSES - 1 else args.clients - share * index
        proc = multiprocessing.Process(target=loadgen, args=(ws_url, key, count, prefix.encode(), child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    connected = sum(pipe.recv()[1] for pipe in pipes)
    connect_wall = time.monotonic() - started
    time.sleep(3)  # let subscriptions, histories and the first update settle
    if name == "wealthmetrics":  # the numbers mean little if sockets went the slow way
        health = httpx.get(
            ws_url.replace("ws://", "http://").replace("/ws/metrics/", "/api/health/websocket")
        ).json()
        print(f"fast path: {health.get('fastPath')}, {health.get('fastPathClients')} of one process's "
              f"{health['clients']} sockets")  # fmt: skip
    idle_after = rss(pids)

    sender = Sender(ingest_url, key, args.rate, prefix, args.sources)
    cpu_before = cpu_seconds(pids)
    window_start = time.monotonic()
    sender.start()
    time.sleep(args.duration)
    sender.stop.set()
    sender.join()
    time.sleep(args.batch_interval_ms / 1000 + 2)  # the last batches
    cpu_used = cpu_seconds(pids) - cpu_before
    window = time.monotonic() - window_start

    results: list[ClientResult] = []
    for pipe in pipes:
        pipe.send("stop")
    for pipe in pipes:
        results.append(pipe.recv()[1])
    for proc in procs:
        proc.join(30)

    latencies = sorted(x for r in results for x in r.latencies_ms)
    connects = sorted(x for r in results for x in r.connect_seconds)
    expected = sender.sent * connected
    received = sum(r.records for r in results)
    messages = sum(r.messages for r in results)

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")

    return {
        "name": name,
        "clients": connected,
        "failed": sum(r.failed for r in results),
        "connect_wall_s": connect_wall,
        "connect_p99_s": pct(connects, 0.99),
        "sent": sender.sent,
        "lost": expected - received,
        "duplicates": sum(r.duplicates for r in results),
        "p50": pct(latencies, 0.5),
        "p95": pct(latencies, 0.95),
        "p99": pct(latencies, 0.99),
        "max": latencies[-1] if latencies else float("nan"),
        "messages": messages,
        "cpu_s": cpu_used,
        "cpu_ms_per_message": 1000 * cpu_used / messages if messages else float("nan"),
        "cpu_share": cpu_used / window,
        "rss_per_conn_kb": (idle_after - idle_before) / max(1, connected) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=1000, help="records per second")
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--servers", type=int, default=1, help="WebSocket processes per target")
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--batch-interval-ms", type=int, default=1000)
    parser.add_argument("--only", choices=["wealthmetrics", "baseline"], help="measure one target")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        sys.exit("bench/fanout.py needs REDIS_URL (the stream between processes)")

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wealthmetrics.settings",
        "PYTHONUNBUFFERED": "1",
        "METRICS_BATCH_INTERVAL_MS": str(args.batch_interval_ms),
        "METRICS_MAX_CLIENTS": "100000",
    }
    key = prepare(env, "bench-fanout")

    ingest = DaphneServer(env)
    ingest.start()
    ours_sock, base_sock = listening_socket(), listening_socket()
    daphne = [
        sys.executable,
        "-m",
        "daphne",
        "--fd",
        str(ours_sock.fileno()),
        "--access-log",
        "/dev/null",
        "wealthmetrics.asgi:application",
    ]
    baseline = [
        sys.executable,
        "bench/baseline_server.py",
        "--fd",
        str(base_sock.fileno()),
        "--interval-ms",
        str(args.batch_interval_ms),
    ]
    ours = start_shared(daphne, ours_sock, args.servers, env, "fanout-daphne.log")
    base = start_shared(baseline, base_sock, args.servers, env, "fanout-baseline.log")
    time.sleep(3)
    try:
        print(f"machine: {machine()}")
        print(
            f"clients: {args.clients} subscribed to '*', "
            f"rate: {args.rate} records/s over {args.sources} sources, "
            f"duration: {args.duration:.0f}s, batch interval: {args.batch_interval_ms} ms, "
            f"{args.servers} process(es) per target, load generator on the same machine"
        )
        rows = []
        targets = [("wealthmetrics", ours, ours_sock), ("baseline", base, base_sock)]
        for name, procs, sock in targets:
            if args.only and args.only != name:
                continue
            port = sock.getsockname()[1]
            path = "/ws/metrics/" if name == "wealthmetrics" else "/"
            rows.append(
                measure(name, f"ws://127.0.0.1:{port}{path}", [p.pid for p in procs], args, key, ingest.url)
            )
        header = (
            f"{'target':<14}{'clients':>8}{'failed':>7}{'connect s':>10}{'p50 ms':>8}{'p95 ms':>8}"
            f"{'p99 ms':>8}{'max ms':>8}{'lost':>6}{'dup':>5}{'msgs':>9}{'cpu ms/msg':>11}"
            f"{'cpu %':>7}{'KB/conn':>9}"
        )
        print(header)
        for r in rows:
            print(
                f"{r['name']:<14}{r['clients']:>8}{r['failed']:>7}{r['connect_wall_s']:>10.1f}{r['p50']:>8.0f}"
                f"{r['p95']:>8.0f}{r['p99']:>8.0f}{r['max']:>8.0f}{r['lost']:>6}{r['duplicates']:>5}"
                f"{r['messages']:>9}{r['cpu_ms_per_message']:>11.4f}{100 * r['cpu_share']:>7.0f}"
                f"{r['rss_per_conn_kb']:>9.1f}"
            )
        if len(rows) == 2:
            ratio = rows[0]["cpu_ms_per_message"] / rows[1]["cpu_ms_per_message"]
            print(f"CPU per delivered message, wealthmetrics / baseline: {ratio:.2f}x")
    finally:
        for proc in [*ours, *base]:
            proc.terminate()
        for proc in [*ours, *base]:
            proc.wait(15)
        ingest.stop()


if __name__ == "__main__":
    main()

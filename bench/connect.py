"""Reconnect storm: N WebSocket clients connect at once, subscribe to '*' and wait for their
`subscribed` and `history` messages, the way every open dashboard comes back after a restart.

    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics \\
        .venv/bin/python bench/connect.py --clients 3000 [--servers 2] [--runs 3]

Topology, all on this machine: --servers daphne processes share one listening socket (daphne
--fd, backlog 4096), and the same number of plain `websockets` processes
(bench/baseline_server.py, which answers a subscribe with `subscribed` and a 100-record
history, nothing else) share another. The clients come from LOADGEN_PROCESSES processes,
released together; each target gets the same storm in turn, --runs times. A client that
does not get both messages within --timeout seconds, or whose handshake fails, counts as
failed. The script prints, per run, the time until the last client had its history, the
failures and their reasons, and the ratio to the baseline of the same run.
"""

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, prepare  # noqa: E402
from bench.fanout import listening_socket, start_shared  # noqa: E402

LOADGEN_PROCESSES = 2


async def storm(url: str, key: str, count: int, timeout: float, conn: Any) -> None:
    """Open `count` sockets at once when the orchestrator says go; report when each had both
    messages (seconds after go) and why the others failed."""
    from websockets.asyncio.client import connect

    sockets: list[Any] = []
    done: list[float] = []
    failures: Counter[str] = Counter()
    conn.send("ready")
    go_at = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await asyncio.sleep(max(0.0, go_at - time.time()))
    started = time.perf_counter()

    async def one() -> None:
        try:
            ws = await connect(
                url,
                additional_headers={"Authorization": f"Bearer {key}"},
                compression=None,
                max_size=None,
                open_timeout=None,
                ping_interval=None,
            )
            sockets.append(ws)
            await ws.send('{"type":"subscribe","scraperSource":"*"}')
            waiting = {"subscribed", "history"}
            while waiting:
                message = orjson.loads(await ws.recv())
                if message["type"] == "error":
                    raise RuntimeError(f"error {message.get('code')}")
                waiting.discard(message["type"])
            done.append(time.perf_counter() - started)
        except Exception as exc:  # every failure is counted, by kind
            failures[type(exc).__name__ + (f": {exc}"[:60] if isinstance(exc, RuntimeError) else "")] += 1

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        failures["timeout"] += len(pending)
    for ws in sockets:
        ws.transport.abort()
    conn.send((done, failures))


def loadgen(url: str, key: str, count: int, timeout: float, conn: Any) -> None:
    asyncio.run(storm(url, key, count, timeout, conn))


def measure(url: str, key: str, clients: int, timeout: float) -> dict[str, Any]:
    pipes, procs = [], []
    share = clients // LOADGEN_PROCESSES
    for index in range(LOADGEN_PROCESSES):
        parent, child = multiprocessing.Pipe()
        count = share if index < LOADGEN_PROCESSES - 1 else clients - share * index
        proc = multiprocessing.Process(target=loadgen, args=(url, key, count, timeout, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for pipe in pipes:
        pipe.recv()  # "ready": imports done, nothing connected yet
    go_at = time.time() + 0.5
    for pipe in pipes:
        pipe.send(go_at)
    done: list[float] = []
    failures: Counter[str] = Counter()
    for pipe in pipes:
        times, failed = pipe.recv()
        done += times
        failures.update(failed)
    for proc in procs:
        proc.join(30)
    done.sort()
    return {
        "subscribed": len(done),
        "failed": sum(failures.values()),
        "reasons": dict(failures),
        "all_s": done[-1] if done else float("nan"),
        "p50_s": done[len(done) // 2] if done else float("nan"),
    }


def seed_history(ingest_url: str, key: str) -> None:
    """100 stored records, so every history message carries a full page."""
    now = int(time.time() * 1000)
    records = [
        {
            "type": "page_navigation",
            "scraperSource": f"storm-{i % 4}",
            "url": f"https://example.com/{i}",
            "navigationDurationMs": 100 + i,
            "recordedAt": now - i,
        }
        for i in range(100)
    ]
    response = httpx.post(
        f"{ingest_url}/api/metrics/",
        content=orjson.dumps({"metrics": records}),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    response.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=3000)
    parser.add_argument("--servers", type=int, default=1, help="processes per target on one socket")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60, help="seconds a client may take")
    parser.add_argument("--only", choices=["wealthmetrics", "baseline"], help="measure one target")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        sys.exit("bench/connect.py needs REDIS_URL (the stream between processes)")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wealthmetrics.settings",
        "PYTHONUNBUFFERED": "1",
        "METRICS_MAX_CLIENTS": "100000",
        "METRICS_ALERT_EVALUATOR": "0",
    }
    key = prepare(env, "bench-connect")
    ours_sock, base_sock = listening_socket(), listening_socket()
    daphne = [sys.executable, "-m", "daphne", "--fd", str(ours_sock.fileno()), "--access-log", "/dev/null",
              "wealthmetrics.asgi:application"]  # fmt: skip
    baseline = [sys.executable, "bench/baseline_server.py", "--fd", str(base_sock.fileno())]
    ours = start_shared(daphne, ours_sock, args.servers, env, "connect-daphne.log")
    base = start_shared(baseline, base_sock, args.servers, env, "connect-baseline.log")
    ours_url = f"http://127.0.0.1:{ours_sock.getsockname()[1]}"
    targets = {
        "wealthmetrics": f"ws://127.0.0.1:{ours_sock.getsockname()[1]}/ws/metrics/",
        "baseline": f"ws://127.0.0.1:{base_sock.getsockname()[1]}/",
    }
    try:
        time.sleep(3)
        seed_history(ours_url, key)
        print(f"machine: {machine()}")
        print(
            f"storm: {args.clients} clients at once from {LOADGEN_PROCESSES} processes, subscribe '*', "
            f"wait for subscribed + history; {args.servers} process(es) per target on one socket; "
            f"load generator on the same machine"
        )
        print(f"{'run':>4} {'target':<14}{'subscribed':>11}{'failed':>7}{'p50 s':>7}{'all s':>7}  reasons")
        ratios: list[float] = []
        for run in range(1, args.runs + 1):
            rows = {}
            for name, url in targets.items():
                if args.only and args.only != name:
                    continue
                row = rows[name] = measure(url, key, args.clients, args.timeout)
                print(f"{run:>4} {name:<14}{row['subscribed']:>11}{row['failed']:>7}{row['p50_s']:>7.2f}"
                      f"{row['all_s']:>7.2f}  {row['reasons'] or ''}")  # fmt: skip
                time.sleep(2)  # the sockets' close handshakes drain
            if len(rows) == 2:
                ratios.append(rows["wealthmetrics"]["all_s"] / rows["baseline"]["all_s"])
                print(f"     time until all subscribed, wealthmetrics / baseline: {ratios[-1]:.2f}x")
        if ratios:
            print(f"median ratio over {len(ratios)} runs: {statistics.median(ratios):.2f}x (target <= 3x)")
        stats = httpx.get(f"{ours_url}/api/stats/", headers={"Authorization": f"Bearer {key}"}).json()
        loads = stats["counters"].get("history_loads")
        print(f"history loads from the database, one process, all runs: {loads}")
    finally:
        for proc in [*ours, *base]:
            proc.terminate()
        for proc in [*ours, *base]:
            proc.wait(15)


if __name__ == "__main__":
    main()

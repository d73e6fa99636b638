"""Cardinality benchmark: what grows with the number of sources.

    DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics_bench_card .venv/bin/python bench/cardinality.py

Recreates that database (its name must contain "bench"), starts one daphne on it, then, for
10 sources, 1,000, 10,000 (cumulative) and one more than METRICS_MAX_SOURCES (10,000): sends one
record per new source through the API, keeps one dashboard socket open (subscribed to '*', as
the page is), and measures, each the median of --repeat runs:
  - GET /api/metrics/overview/?range=live and ?range=24h, and GET /metrics: seconds and bytes;
  - the `metrics:update` frame the open socket receives: bytes;
  - one alert evaluation (`manage.py watch_alerts --once`): milliseconds, and in the database;
  - the fleet shape of ingest (--senders x 10 known records, closed loop, --duration s): p99;
  - daphne's RSS; and any 5xx.
The 10-source row is the limit each other row is compared with (the issue's targets: at
10,000 sources, ingest p99 ≤ 2 times its 10-source value, overview ≤ 1 s, /metrics ≤ 2 s, an
evaluation ≤ 1 s, metrics:update ≤ 64 KB, no 5xx).
"""

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, recreate_database  # noqa: E402
from bench.ingest import Sender  # noqa: E402
from tests.support.servers import DaphneServer  # noqa: E402

LIMIT = 10_000


def records(names: list[str], now_ms: int) -> list[dict[str, Any]]:
    return [{"type": "page_navigation", "scraperSource": name, "url": f"https://{name}.example/q",
             "navigationDurationMs": 100 + i % 400, "recordedAt": now_ms - i % 60_000}
            for i, name in enumerate(names)]  # fmt: skip


def post_all(url: str, key: str, names: list[str]) -> dict[int, int]:
    """One record per name, 1,000 to a request; the answers' statuses."""
    statuses: dict[int, int] = {}
    now = int(time.time() * 1000)
    with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {key}"}) as client:
        for start in range(0, len(names), 1000):
            answer = client.post(
                "/api/metrics/", content=orjson.dumps({"metrics": records(names[start : start + 1000], now)})
            )
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    return statuses


def timed_get(url: str, key: str, path: str, repeat: int) -> tuple[float, int, int]:
    """Median seconds, bytes and the worst status of `repeat` GETs."""
    times, size, worst = [], 0, 0
    with httpx.Client(base_url=url, timeout=300, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(repeat):
            started = time.perf_counter()
            answer = client.get(path)
            times.append(time.perf_counter() - started)
            size, worst = len(answer.content), max(worst, answer.status_code)
    return statistics.median(times), size, worst


class Dashboard(threading.Thread):
    """One socket subscribed to '*': the size of each metrics:update it gets."""

    def __init__(self, server: DaphneServer, key: str) -> None:
        super().__init__(daemon=True)
        self.server, self.key = server, key
        self.updates: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from websockets.asyncio.client import connect

        async def watch() -> None:
            url = self.server.url.replace("http://", "ws://") + "/ws/metrics/"
            async with connect(
                url, additional_headers={"Authorization": f"Bearer {self.key}"}, max_size=None
            ) as ws:
                await ws.send(orjson.dumps({"type": "subscribe", "scraperSource": "*"}).decode())
                while not self.stop.is_set():
                    try:
                        message = await asyncio.wait_for(ws.recv(), 1)
                    except TimeoutError:
                        continue
                    if isinstance(message, str) and message.startswith('{"type":"metrics:update"'):
                        self.updates.append(len(message.encode()))

        asyncio.run(watch())


def evaluation(env: dict[str, str]) -> tuple[float, float]:
    """One evaluation: wall and database milliseconds, as watch_alerts --once reports them."""
    out = subprocess.run([sys.executable, "manage.py", "watch_alerts", "--once"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    found = re.search(r"([\d.]+) ms in the database, ([\d.]+) ms in all", out)
    assert found, out
    return float(found[2]), float(found[1])


def fleet(
    server: DaphneServer, key: str, names: list[str], senders: int, duration: float
) -> tuple[float, dict[int, int]]:
    """The fleet shape to known sources: p99 (s) and the statuses."""
    now = int(time.time() * 1000)
    bodies = [orjson.dumps({"metrics": records([names[(b * 10 + i) % len(names)] for i in range(10)], now)})
              for b in range(200)]  # fmt: skip
    until = time.monotonic() + duration
    threads = [Sender("127.0.0.1", server.port, key, bodies, until) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = sorted(latency for thread in threads for latency in thread.latencies)
    statuses: dict[int, int] = {}
    for thread in threads:
        for status, n in thread.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return latencies[int(0.99 * (len(latencies) - 1))], statuses


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--steps", default=f"10,1000,{LIMIT},{LIMIT + 1}", help="source counts, growing")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    name = url.rsplit("/", 1)[-1]
    if not url.startswith("mysql://") or "bench" not in name:
        sys.exit("set DATABASE_URL=mysql://…/<a database whose name contains 'bench'>; it is recreated")
    recreate_database(url, name)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wealthmetrics.settings", "PYTHONUNBUFFERED": "1",
           "METRICS_MAX_SOURCES": str(LIMIT), "METRICS_NEW_SOURCES_PER_KEY": "1000000",
           "METRICS_ALERT_EVALUATOR": "0", "METRICS_EMBEDDED_BEAT": "0"}  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    made = subprocess.run([sys.executable, "manage.py", "create_api_key", "bench-cardinality"], cwd=ROOT,
                          env=env, check=True, capture_output=True, text=True)  # fmt: skip
    key = made.stdout.strip().splitlines()[-1]
    server = DaphneServer(env)
    server.start()
    assert server.process is not None
    process = psutil.Process(server.process.pid)
    dashboard = Dashboard(server, key)
    dashboard.start()
    print(f"machine: {machine()}; one daphne, MariaDB and the load on one machine; medians of {args.repeat}")
    print(f"{'sources':>8} {'new':>12} {'overview live':>14} {'overview 24h':>13} {'/metrics':>14} "
          f"{'update':>8} {'evaluation':>16} {'ingest p99':>11} {'RSS':>7}  5xx")  # fmt: skip
    names: list[str] = []
    for step in (int(s) for s in args.steps.split(",")):
        fresh = [f"card-{n:06d}" for n in range(len(names), step)]
        statuses = post_all(server.url, key, fresh)
        names += fresh if step <= LIMIT else []
        time.sleep(2)  # a second or two of updates with every source in them
        dashboard.updates.clear()
        live = timed_get(server.url, key, "/api/metrics/overview/?range=live", args.repeat)
        day = timed_get(server.url, key, "/api/metrics/overview/?range=24h", args.repeat)
        exposition = timed_get(server.url, key, "/metrics", args.repeat)
        evaluations = [evaluation(env) for _ in range(args.repeat)]
        wall, in_db = (
            statistics.median(e[0] for e in evaluations),
            statistics.median(e[1] for e in evaluations),
        )
        p99, fleet_statuses = fleet(server, key, names, args.senders, args.duration)
        update = max(dashboard.updates, default=0)
        server_errors = sum(n for s, n in {**statuses, **fleet_statuses}.items() if s >= 500)
        server_errors += sum(1 for answer in (live, day, exposition) if answer[2] >= 500)
        refused = {s: n for s, n in statuses.items() if s != 202}
        sent = f"{len(fresh)} {refused}" if refused else str(len(fresh))
        rss = process.memory_info().rss / 2**20
        print(f"{step:>8} {sent:>12} {live[0] * 1000:>10.0f} ms {day[0] * 1000:>9.0f} ms "
              f"{exposition[0] * 1000:>7.0f} ms {exposition[1] / 1e6:4.1f}MB {update / 1024:>6.1f}KB "
              f"{wall:>7.0f} ({in_db:.0f}) ms {p99 * 1000:>8.0f} ms {rss:>5.0f}MB  {server_errors}",
              flush=True)  # fmt: skip
    dashboard.stop.set()
    server.stop()


if __name__ == "__main__":
    main()

"""Ingest benchmark: concurrent senders of 1000-record batches against running daphne(s).

    DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics .venv/bin/python bench/ingest.py

Starts --servers daphne processes on that database (or uses --url), creates an API key,
then --senders threads POST pre-serialised batches for --duration seconds. It prints the
records per second that were answered 202, then counts the rows in the database: a 202
means stored, so the two must agree (0 lost). Run it several times; the machine is noisy.
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, prepare  # noqa: E402
from tests.support.servers import DaphneServer  # noqa: E402


def make_bodies(run: str, batches: int, size: int) -> list[bytes]:
    """Distinct, realistic batches, serialised before the clock starts."""
    now = int(time.time() * 1000)
    bodies = []
    for b in range(batches):
        records = []
        for i in range(size):
            source = f"bench-{run}-{i % 8}"
            if i % 2:
                records.append(
                    {
                        "type": "page_scrape",
                        "scraperSource": source,
                        "url": f"https://example.com/q/{b}/{i}",
                        "scrapeDurationMs": 50 + i % 400,
                        "itemsExtracted": i % 40,
                        "dataSize": 20_000 + i,
                        "success": i % 17 != 0,
                        "error": None if i % 17 else "selector not found",
                        "recordedAt": now + i,
                    }
                )
            else:
                records.append(
                    {
                        "type": "page_navigation",
                        "scraperSource": source,
                        "url": f"https://example.com/p/{b}/{i}",
                        "navigationDurationMs": 200 + i % 900,
                        "retryCount": i % 3,
                        "success": True,
                        "recordedAt": now + i,
                    }
                )
        bodies.append(orjson.dumps({"metrics": records}))
    return bodies


class Sender(threading.Thread):
    def __init__(self, host: str, port: int, key: str, bodies: list[bytes], until: float) -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.key, self.bodies, self.until = host, port, key, bodies, until
        self.accepted = 0
        self.statuses: dict[int, int] = {}
        self.latencies: list[float] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        i = 0
        while time.monotonic() < self.until:
            body = self.bodies[i % len(self.bodies)]
            i += 1
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/metrics/", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                self.statuses[0] = self.statuses.get(0, 0) + 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                continue
            self.latencies.append(time.perf_counter() - started)
            self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
            if response.status == 202:
                self.accepted += orjson.loads(payload)["accepted"]


def count_rows(env: dict[str, str], run: str) -> int:
    code = (
        "import django; django.setup()\n"
        "from metrics_app.models import PagePerformance as P\n"
        f"print(P.objects.filter(scraper_source__startswith='bench-{run}-').count())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip())


DELETE_SCRIPT = """
import sys, django
django.setup()
from django.db import connection
pattern = sys.argv[1]
limit = " LIMIT 50000" if connection.vendor == "mysql" else ""
with connection.cursor() as cursor:
    while True:
        cursor.execute("DELETE FROM scraper_page_performance WHERE scraper_source LIKE %s" + limit, [pattern])
        if not limit or cursor.rowcount == 0:
            break
"""


def delete_rows(env: dict[str, str], run: str) -> None:
    """Remove the run's rows in chunks (one huge DELETE would hold locks for minutes)."""
    subprocess.run([sys.executable, "-c", DELETE_SCRIPT, f"bench-{run}-%"], cwd=ROOT, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", type=int, default=1, help="daphne processes to start (default 1)")
    parser.add_argument("--senders", type=int, default=4, help="concurrent sending threads (default 4)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sending (default 20)")
    parser.add_argument("--batch", type=int, default=1000, help="records per request (default 1000)")
    parser.add_argument("--keep", action="store_true", help="keep the rows afterwards")
    args = parser.parse_args()

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wealthmetrics.settings", "PYTHONUNBUFFERED": "1"}
    if not env.get("DATABASE_URL", "").startswith("mysql"):
        print("note: DATABASE_URL is not MySQL; the target is for MariaDB", file=sys.stderr)
    key = prepare(env, "bench-ingest")

    servers = [DaphneServer(env) for _ in range(args.servers)]
    for server in servers:
        server.start()
    run = uuid.uuid4().hex[:8]
    try:
        bodies = make_bodies(run, batches=40, size=args.batch)
        print(f"machine: {machine()}")
        print(
            f"servers: {args.servers} daphne, senders: {args.senders}, batch: {args.batch}, "
            f"duration: {args.duration:.0f}s, body: {len(bodies[0]) / 1024:.0f} KiB"
        )
        until = time.monotonic() + args.duration
        senders = [
            Sender("127.0.0.1", servers[i % len(servers)].port, key, bodies, until)
            for i in range(args.senders)
        ]
        started = time.monotonic()
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        elapsed = time.monotonic() - started
    finally:
        for server in servers:
            server.stop()

    accepted = sum(s.accepted for s in senders)
    statuses: dict[int, int] = {}
    for sender in senders:
        for status, n in sender.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    latencies = sorted(x for s in senders for x in s.latencies)
    in_db = count_rows(env, run)
    print(f"requests: {sum(statuses.values())} by status {dict(sorted(statuses.items()))}")
    if latencies:
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(f"request latency: p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    print(f"accepted (202): {accepted} records in {elapsed:.1f}s = {accepted / elapsed:,.0f} records/s")
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    print(f"rows in database: {in_db}  lost: {accepted - in_db}  5xx: {server_errors}")
    if not args.keep:
        delete_rows(env, run)
    if in_db != accepted:
        sys.exit(1)


if __name__ == "__main__":
    main()

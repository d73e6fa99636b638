"""Ingest benchmark: concurrent senders of batches against running daphne(s).

    DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics .venv/bin/python bench/ingest.py
    DATABASE_URL=… .venv/bin/python bench/ingest.py --senders 32 --batch 10 --limits   # the fleet shape
    DATABASE_URL=… .venv/bin/python bench/ingest.py --senders 4 --fields 10 --duration 10  # the fields' cost
    DATABASE_URL=… .venv/bin/python bench/ingest.py --senders 4 --entities 20 --duration 10  # with runs

Starts --servers daphne processes on that database, creates an API key, then --senders
threads POST pre-serialised batches of --batch records for --duration seconds. It prints the
records per second that were answered 202, the latencies, and the peak database connections
of the run, then counts the rows in the database: a 202 means stored, so the two must agree
(0 lost). Run it several times; the machine is noisy.

With --limits it measures, in the same run and with the same senders and batch size, the two
ceilings it is compared with:
  - the server's: a bare ASGI app (bench/bare_app.py) on the same daphne, answering 202 with
    no framework, key check, validation or database;
  - the database's: --senders threads, each with its own connection, committing one
    --batch-row INSERT per transaction into a copy of the detailed table.
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
from typing import Any
from urllib.parse import urlparse

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import django_output, machine, prepare  # noqa: E402
from bench.open_loop import offer  # noqa: E402
from tests.support.servers import DaphneServer  # noqa: E402

FIELD_NAMES = ("price", "change", "change_pct", "volume", "market_cap", "pe_ratio", "name", "currency",
               "exchange", "quote.time", *(f"extra_{n}" for n in range(40)))  # fmt: skip
STATUSES = (200, 200, 200, 200, 200, 200, 200, 404, 429, 503)
ENTITIES_PER_SOURCE = 500


def make_bodies(run: str, batches: int, size: int, fields: int = 0, entities: int = 0) -> list[bytes]:
    """Distinct, realistic batches, serialised before the clock starts. With `fields`, each
    scrape carries that many field counts and each navigation an HTTP status. With `entities`,
    every record carries a runId (a crawl per source, 4 of them) and each scrape that many
    entities of its source's ENTITIES_PER_SOURCE symbols."""
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
        if fields:
            for i, record in enumerate(records):
                if record["type"] == "page_scrape":
                    items = i % 40  # its itemsExtracted; every other field misses one item
                    record["fields"] = {name: {"filled": max(0, items - (n + i) % 2), "invalid": 0}
                                        for n, name in enumerate(FIELD_NAMES[:fields])}  # fmt: skip
                else:
                    record["httpStatus"] = STATUSES[(b + i) % len(STATUSES)]
        if entities:
            for i, record in enumerate(records):
                record["runId"] = f"bench-{run}-{i % 8}-{b % 4}"
                if record["type"] == "page_scrape":
                    first = (b * size + i) * entities
                    record["entities"] = [f"S{(first + k) % ENTITIES_PER_SOURCE}" for k in range(entities)]
        bodies.append(orjson.dumps({"metrics": records}))
    return bodies


def compare_fields(
    servers: list[DaphneServer], key: str, run: str, args: argparse.Namespace
) -> tuple[list["Sender"], float]:
    """--rounds rounds of the same records without and with the optional fields (--fields
    field counts, or --entities entities and a runId), alternating (the order flips each round,
    so neither variant always runs on a warmer server): their cost, measured on the same
    servers in the same run. Each round also says the records per group-commit transaction and
    the CPU time per record of the servers and of the database (when it runs on this machine),
    which vary less than throughput."""
    ports = [server.port for server in servers]
    cpu = CpuMeter([server.process.pid for server in servers if server.process])
    label = f"with {args.fields} fields" if args.fields else f"with a runId and {args.entities} entities"
    variants = {
        "without them": make_bodies(run, batches=40, size=args.batch),
        label: make_bodies(run, batches=40, size=args.batch, fields=args.fields, entities=args.entities),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    everyone: list[Sender] = []
    total = 0.0
    for round_ in range(args.rounds):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        for name in order:
            commits, before = group_commits(ports, key), cpu.seconds()
            written = group_commits(ports, key, "entity_rows_written")
            senders, elapsed = send_all(ports, key, variants[name], args)
            accepted = sum(s.accepted for s in senders)
            rate = accepted / elapsed
            rates[name].append(rate)
            per_group = accepted / max(1, group_commits(ports, key) - commits)
            after = cpu.seconds()
            servers_us, database_us = (1e6 * (after[i] - before[i]) / max(1, accepted) for i in (0, 1))
            print(f"  round {round_ + 1}, {name}: {rate:,.0f} records/s, {per_group:,.0f} records per "
                  f"transaction; CPU per record: servers {servers_us:.0f} µs, "
                  f"database {database_us:.0f} µs")  # fmt: skip
            if args.entities and name != "without them":
                # written behind every METRICS_ENTITY_FLUSH_S, so this round's may show in the next
                rows = group_commits(ports, key, "entity_rows_written") - written
                print(f"    entity rows written: {rows:,} ({rows / elapsed:,.0f}/s) for {accepted:,} records "
                      f"carrying {accepted // 2 * args.entities:,} entity keys")  # fmt: skip
            everyone += senders
            total += elapsed
    medians = {name: statistics.median(values) for name, values in rates.items()}
    without, with_them = medians.values()
    print("medians: " + ", ".join(f"{name} {rate:,.0f} records/s" for name, rate in medians.items())
          + f"; they cost {100 * (1 - with_them / without):.1f} % of the throughput")  # fmt: skip
    return everyone, total


class CpuMeter:
    """CPU seconds used so far by the servers and by the database server on this machine
    (0 when it runs elsewhere)."""

    def __init__(self, server_pids: list[int]) -> None:
        self.servers = [psutil.Process(pid) for pid in server_pids]
        names = {"mariadbd", "mysqld"}
        self.database = [p for p in psutil.process_iter(["name"]) if p.info["name"] in names]

    def seconds(self) -> tuple[float, float]:
        def used(processes: list[psutil.Process]) -> float:
            return sum(sum(p.cpu_times()[:2]) for p in processes)

        return used(self.servers), used(self.database)


def group_commits(ports: list[int], key: str, counter: str = "group_commits") -> int:
    """The servers' group-commit transactions so far, or another of their /api/stats/ counters."""
    total = 0
    for port in ports:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/stats/", headers={"Authorization": f"Bearer {key}"})
        total += orjson.loads(conn.getresponse().read())["counters"].get(counter, 0)
        conn.close()
    return total


class Sender(threading.Thread):
    """Posts batches one after another, or (`interval`) one every `interval` seconds whatever
    the answers take: an open loop, as a fleet that does not slow down for the server."""

    def __init__(
        self, host: str, port: int, key: str, bodies: list[bytes], until: float, interval: float | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.key, self.bodies, self.until = host, port, key, bodies, until
        self.interval = interval
        self.accepted = 0
        self.statuses: dict[int, int] = {}
        self.latencies: list[float] = []
        self.without_retry_after = 0  # 429/503 answers that do not say when to retry

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        i = 0
        next_at = time.monotonic()
        while time.monotonic() < self.until:
            if self.interval:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + self.interval, time.monotonic() - self.interval)
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
            if response.status in (429, 503) and not response.getheader("Retry-After"):
                self.without_retry_after += 1
            if response.status == 202:
                self.accepted += orjson.loads(payload)["accepted"]


def send_all(
    ports: list[int], key: str, bodies: list[bytes], args: argparse.Namespace, rate: float | None = None
) -> tuple[list[Sender], float]:
    """--senders threads for --duration seconds; with `rate`, together that many requests a second."""
    until = time.monotonic() + args.duration
    interval = args.senders / rate if rate else None
    senders = [
        Sender("127.0.0.1", ports[i % len(ports)], key, bodies, until, interval) for i in range(args.senders)
    ]
    started = time.monotonic()
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    return senders, time.monotonic() - started


class ConnectionWatcher(threading.Thread):
    """The peak number of connections to the benchmark's database (MySQL), sampled every 50 ms,
    less the watcher's own."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url = urlparse(env.get("DATABASE_URL", ""))
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        if self.url.scheme != "mysql":
            return
        import MySQLdb

        db = MySQLdb.connect(host=self.url.hostname or "127.0.0.1", port=self.url.port or 3306,
                             user=self.url.username or "root", password=self.url.password or "")  # fmt: skip
        cursor = db.cursor()
        name = self.url.path.lstrip("/")
        while not self._done.wait(0.05):
            cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s", [name])
            self.peak = max(self.peak, int(cursor.fetchone()[0]))
        db.close()

    def stop(self) -> None:
        self._done.set()
        self.join()


class MemoryWatcher(threading.Thread):
    """The servers' summed RSS, sampled every 200 ms: first, peak and last."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.processes = [psutil.Process(pid) for pid in pids]
        self.samples: list[int] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            self.samples.append(sum(p.memory_info().rss for p in self.processes))

    def stop(self) -> str:
        self._done.set()
        self.join()
        first, peak, last = (x / 2**20 for x in (self.samples[0], max(self.samples), self.samples[-1]))
        return f"{first:.0f} MB at the start, peak {peak:.0f} MB, {last:.0f} MB at the end"


def overload(servers: list[DaphneServer], key: str, bodies: list[bytes], args: argparse.Namespace,
             sustainable: float) -> int:  # fmt: skip
    """--overload times the sustainable request rate, open loop (bench/open_loop.py): every
    request must be answered within 1 s (202, or 429/503 with Retry-After) and memory must stay
    bounded. Returns the records accepted."""
    rate = args.overload * sustainable
    memory = MemoryWatcher([server.process.pid for server in servers if server.process])
    memory.start()
    ports = [server.port for server in servers]
    result = offer("127.0.0.1", ports, key, bodies, rate=rate, duration=args.duration,
                   processes=max(2, len(ports)), max_connections=args.overload_connections)  # fmt: skip
    print(f"overload: {args.overload:g} x {sustainable:,.0f} = {rate:,.0f} requests/s offered, open loop, "
          f"over at most {args.overload_connections} connections (the fleet's size); "
          f"memory of the server(s): {memory.stop()}")  # fmt: skip
    latencies = sorted(result.latencies)
    answered = len(latencies)
    within = sum(1 for x in latencies if x <= 1.0)
    p99, worst = latencies[int(answered * 0.99) - 1] * 1000, latencies[-1] * 1000
    statuses = dict(sorted(result.statuses.items()))
    print(f"  answered {answered / result.elapsed:,.0f} requests/s; by status {statuses}; "
          f"not sent (client limit): {result.not_sent}; errors: {dict(result.errors) or 0}")  # fmt: skip
    print(f"  answered within 1 s: {within} of {answered} ({100 * within / max(1, answered):.2f} %), "
          f"p99 {p99:.0f} ms, max {worst:.0f} ms; 429/503 without Retry-After: "
          f"{result.without_retry_after}")  # fmt: skip
    return result.accepted


def bare_ceiling(env: dict[str, str], key: str, bodies: list[bytes], args: argparse.Namespace) -> float:
    """Requests per second of the same senders against bench/bare_app.py on the same daphne."""
    servers = [DaphneServer(env, application="bench.bare_app:application") for _ in range(args.servers)]
    for server in servers:
        server.start()
    try:
        senders, elapsed = send_all([server.port for server in servers], key, bodies, args)
    finally:
        for server in servers:
            server.stop()
    return sum(sum(sender.statuses.values()) for sender in senders) / elapsed


def database_limit(env: dict[str, str], args: argparse.Namespace) -> float:
    """Transactions per second of --senders threads each committing one --batch-row INSERT into a
    copy of the detailed table (MySQL), for --duration seconds."""
    url = urlparse(env.get("DATABASE_URL", ""))
    if url.scheme != "mysql":
        return float("nan")
    import MySQLdb

    def connect() -> Any:
        return MySQLdb.connect(
            host=url.hostname or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
            password=url.password or "", database=url.path.lstrip("/"),
        )  # fmt: skip

    setup = connect()
    cursor = setup.cursor()
    cursor.execute("SELECT @@max_connections")
    # the server refuses connections past max_connections: leave room for the others
    threads = min(args.senders, int(cursor.fetchone()[0]) - 20)
    if threads < args.senders:
        print(
            f"  (the database allows {threads + 20} connections: {threads} threads instead of {args.senders})"
        )
    cursor.execute("DROP TABLE IF EXISTS bench_insert_limit")
    cursor.execute("CREATE TABLE bench_insert_limit LIKE scraper_page_performance")
    columns = ("scraper_source", "metric_type", "page_url", "navigation_duration_ms", "retry_count",
               "success", "error", "created_at")  # fmt: skip
    sql = (f"INSERT INTO bench_insert_limit ({', '.join(columns)}) VALUES "
           + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, NOW(6))"] * args.batch))  # fmt: skip
    until = time.monotonic() + args.duration
    counts = [0] * threads

    def work(n: int) -> None:
        db = connect()
        cur = db.cursor()
        row = ["bench-limit", "page_navigation", "https://example.com/p", 420, 1, True, None]
        while time.monotonic() < until:
            cur.execute(sql, row * args.batch)
            db.commit()
            counts[n] += 1
        db.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    cursor.execute("DROP TABLE bench_insert_limit")
    setup.close()
    return sum(counts) / elapsed


def count_rows(env: dict[str, str], run: str) -> int:
    code = (
        "from metrics_app.models import PagePerformance as P\n"
        f"print(P.objects.filter(scraper_source__startswith='bench-{run}-').count())\n"
    )
    return int(django_output(env, code))


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
    parser.add_argument("--limits", action="store_true", help="also measure the bare server and the database")
    parser.add_argument("--overload", type=float, metavar="F",
                        help="then offer F times the measured request rate, open loop")  # fmt: skip
    parser.add_argument("--overload-connections", type=int, default=256, metavar="N",
                        help="the overload's senders, one request in flight each (default 256)")  # fmt: skip
    parser.add_argument("--fields", type=int, default=0, metavar="N",
                        help="compare the same records without and with N field counts per scrape "
                             "(and an HTTP status per navigation), alternately")  # fmt: skip
    parser.add_argument("--entities", type=int, default=0, metavar="N",
                        help="compare the same records without and with a runId on each and N entities "
                             "per scrape, alternately")  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=3, help="--fields, --entities: rounds of each (default 3)"
    )
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
        watcher = ConnectionWatcher(env)
        watcher.start()
        if args.fields or args.entities:
            senders, elapsed = compare_fields(servers, key, run, args)
        else:
            senders, elapsed = send_all([server.port for server in servers], key, bodies, args)
        watcher.stop()
        accepted = sum(s.accepted for s in senders)
        if args.overload:
            sustainable = sum(sum(s.statuses.values()) for s in senders) / elapsed
            accepted += overload(servers, key, bodies, args, sustainable)
    finally:
        for server in servers:
            server.stop()

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
    print(f"accepted (202): {sum(s.accepted for s in senders)} records in {elapsed:.1f}s = "
          f"{sum(s.accepted for s in senders) / elapsed:,.0f} records/s")  # fmt: skip
    requests_per_s = sum(statuses.values()) / elapsed
    print(f"requests/s: {requests_per_s:,.0f}; peak database connections of the server(s): {watcher.peak}")
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    print(f"rows in database: {in_db}  lost: {accepted - in_db}  5xx: {server_errors}")
    if args.limits:
        bare = bare_ceiling(env, key, bodies, args)
        print(f"bare ASGI app on the same daphne: {bare:,.0f} requests/s; wealthmetrics: "
              f"{requests_per_s / bare:.2f} of it")  # fmt: skip
        transactions = database_limit(env, args)
        print(f"database: up to {args.senders} threads committing {args.batch}-row INSERTs: "
              f"{transactions:,.0f} transactions/s ({transactions * args.batch:,.0f} rows/s); wealthmetrics: "
              f"{requests_per_s / transactions:.2f} of it")  # fmt: skip
    if not args.keep:
        delete_rows(env, run)
    if in_db != accepted:
        sys.exit(1)


if __name__ == "__main__":
    main()

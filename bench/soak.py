"""Soak: hours of a steady fleet and open dashboards, watching for what grows.

    DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics_bench \\
        .venv/bin/python bench/soak.py --minutes 60 [--senders 32] [--clients 500]

Runs `bin/daphnes --processes 2` on one port with a Redis of its own, --senders scraper-kit
clients
(wealthmetrics_client.MetricsClient, each recording 10 records a second and flushing every
second, with an Idempotency-Key per batch) and --clients WebSocket clients subscribed to '*'
(bench/fanout.py's load generator). Every minute it prints the servers' summed RSS, their open
files and the database connections; at the end, records acknowledged against stored, and the
growth of each. Targets: RSS growth <= 10 % (after the first minute's warm-up), open files and
connections flat.
"""

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "client"))

from bench.common import django_output, machine, prepare  # noqa: E402
from bench.fanout import loadgen  # noqa: E402
from tests.support.servers import RedisServer, free_port  # noqa: E402
from wealthmetrics_client import MetricsClient  # noqa: E402


def database_connections(url: str) -> int:
    import MySQLdb

    parts = urlparse(url)
    db = MySQLdb.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                         user=parts.username or "root", password=parts.password or "")  # fmt: skip
    cursor = db.cursor()
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s", [parts.path.lstrip("/")]
    )
    count = int(cursor.fetchone()[0]) - 1  # not this one
    db.close()
    return count


def fleet(url: str, key: str, run: str, senders: int, seconds: float, conn: object) -> None:
    """`senders` scraper-kit clients in this process, 10 records a second each."""
    clients = [MetricsClient(url, key, batch_size=100, flush_interval=1.0, flush_at_exit=False)
               for _ in range(senders)]  # fmt: skip
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        tick = time.monotonic()
        for index, client in enumerate(clients):
            for _ in range(10):
                source, page = f"soak-{run}-{index % 8}", f"https://example.com/{n}"
                client.record_page_navigation(
                    scraper_source=source, url=page, navigation_duration_ms=100 + n % 900
                )
                n += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    recorded = sent = 0
    for client in clients:
        client.flush(timeout=120)
        stats = client.stats()
        recorded += stats["recorded"]
        sent += stats["sent"]
        client.close(timeout=1)
    conn.send((recorded, sent))  # type: ignore[attr-defined]


def stored(env: dict[str, str], run: str) -> int:
    code = ("from metrics_app.models import PagePerformance as P\n"
            f"print(P.objects.filter(scraper_source__startswith='soak-{run}-').count())\n")  # fmt: skip
    return int(django_output(env, code))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--clients", type=int, default=500)
    args = parser.parse_args()
    # A Redis of its own: records published by anything else on the machine (a test suite on
    # the shared Redis) would reach the soak's clients and skew what it measures.
    private_redis = RedisServer()
    private_redis.start()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wealthmetrics.settings", "PYTHONUNBUFFERED": "1",
           "METRICS_MAX_CLIENTS": "100000", "METRICS_ALERT_EVALUATOR": "0",
           "REDIS_URL": private_redis.url}  # fmt: skip
    if not env.get("DATABASE_URL", "").startswith("mysql"):
        sys.exit("bench/soak.py needs DATABASE_URL=mysql://…")
    key = prepare(env, "bench-soak")
    port = free_port()
    log = open(ROOT / "var" / "soak-daphnes.log", "wb")  # noqa: SIM115 - kept open for the children
    command = [sys.executable, "bin/daphnes", "--processes", "2", "--port", str(port)]
    group = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(6)
    servers = [psutil.Process(child.pid) for child in psutil.Process(group.pid).children()]
    url = f"http://127.0.0.1:{port}"
    run = uuid.uuid4().hex[:6]
    seconds = args.minutes * 60
    print(f"machine: {machine()}")
    print(f"soak: {args.minutes:g} min, 2 daphne processes on one port, {args.senders} scraper-kit senders x "
          f"10 records/s, {args.clients} WebSocket clients on '*'; everything on this machine")  # fmt: skip

    ws_parent, ws_child = multiprocessing.Pipe()
    sockets = multiprocessing.Process(target=loadgen, args=(url.replace("http", "ws") + "/ws/metrics/", key,
                                                            args.clients, b"soak-", ws_child))  # fmt: skip
    sockets.start()
    print(f"WebSocket clients connected: {ws_parent.recv()[1]}")
    fleet_parent, fleet_child = multiprocessing.Pipe()
    senders = multiprocessing.Process(target=fleet, args=(url, key, run, args.senders, seconds, fleet_child))
    senders.start()

    samples = []
    print(f"{'minute':>6}{'RSS MB':>9}{'open files':>12}{'DB conns':>10}")
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        time.sleep(min(60.0, max(1.0, seconds - (time.monotonic() - started))))
        rss = sum(p.memory_info().rss for p in servers) / 2**20
        files = sum(p.num_fds() for p in servers)
        conns = database_connections(env["DATABASE_URL"])
        samples.append((rss, files, conns))
        print(f"{len(samples):>6}{rss:>9.1f}{files:>12}{conns:>10}", flush=True)

    recorded, sent = fleet_parent.recv()
    senders.join()
    ws_parent.send("stop")
    result = ws_parent.recv()[1]
    sockets.join(30)
    group.terminate()
    group.wait(30)
    private_redis.stop()
    in_db = stored(env, run)
    print(f"records recorded {recorded}, acknowledged {sent}, stored {in_db}: "
          f"lost {sent - in_db if in_db <= sent else 0}, duplicated {max(0, in_db - sent)}")  # fmt: skip
    print(f"WebSocket: {result.messages} batches delivered, {result.failed} failed connections")
    if len(samples) > 2:
        base = samples[0]
        last = samples[-1]
        growth = 100 * (last[0] / base[0] - 1)
        print(f"RSS {base[0]:.1f} -> {last[0]:.1f} MB ({growth:+.1f} % after the first minute); "
              f"open files {base[1]} -> {last[1]} (max {max(s[1] for s in samples)}); "
              f"DB connections {base[2]} -> {last[2]} (max {max(s[2] for s in samples)})")  # fmt: skip


if __name__ == "__main__":
    main()

"""The red team's attacks of issue 22, rerun against one daphne while honest senders send.

    DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics_bench_attacks .venv/bin/python bench/attacks.py

Recreates that database (its name must contain "bench") and starts one daphne on it. Honest
senders (--senders closed loops of 10 records to 20 known sources) send throughout. First a
quiet phase gives the limits compared with: the process's idle RSS and the honest p99 without
an attack. Then each attack runs for --duration seconds with the honest senders, and the
process rests until its RSS is back within 10 % of idle, or for REST_S (it gives freed memory
back every 30 s); sockets that are dropped or refused try again a second later:
  - names: an ingest key sends 1,000-record batches, each record under a new source name;
  - inbound: 20 read-key sockets send 1 MiB text frames, reconnecting when dropped;
  - resync: 20 sockets ask for 50 sources' records since 0, again and again, reading nothing;
  - one key: one read key opens METRICS_MAX_CLIENTS sockets; another key then tries one;
  - slow: 300 sockets subscribe to '*' and never read while records flow.
Each attack runs in a process of its own (as on a machine of its own). First a reference that
is no attack: an honest sender of 1,000-record batches to known sources, the names attack's
shape. For each: the process's peak RSS during it and its RSS after the rest, and how long
that took (targets: ≤ 2 times idle, and back within 10 % of idle), the honest senders' p99
during it (target: ≤ 2 times the quiet p99), the 5xx the honest senders saw, and the attacking
clients' own CPU: on 2 cores it weighs on the honest senders' p99 too.
"""

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, recreate_database  # noqa: E402
from bench.ingest import Sender  # noqa: E402
from tests.support.servers import DaphneServer  # noqa: E402

FORK = multiprocessing.get_context("fork")
KNOWN = [f"honest-{n:02d}" for n in range(20)]
REST_S = 40.0


def key(env: dict[str, str], name: str, *options: str) -> str:
    made = subprocess.run([sys.executable, "manage.py", "create_api_key", name, *options], cwd=ROOT, env=env,
                          check=True, capture_output=True, text=True)  # fmt: skip
    return made.stdout.strip().splitlines()[-1]


def bodies() -> list[bytes]:
    now = int(time.time() * 1000)
    return [orjson.dumps({"metrics": [
        {"type": "page_navigation", "scraperSource": KNOWN[(b + i) % len(KNOWN)], "url": f"https://x/{b}/{i}",
         "navigationDurationMs": 100 + i, "recordedAt": now}
        for i in range(10)]}) for b in range(100)]  # fmt: skip


class Phase:
    """Honest senders for `seconds`, the process's peak RSS meanwhile."""

    def __init__(self, server: DaphneServer, key: str, senders: int, seconds: float) -> None:
        assert server.process is not None
        self.process = psutil.Process(server.process.pid)
        until = time.monotonic() + seconds
        self.senders = [Sender("127.0.0.1", server.port, key, bodies(), until) for _ in range(senders)]
        self.peak = 0
        self.until = until
        self.seconds = seconds
        self.probed = ""
        self.attacker_cpu_s = 0.0

    def run(
        self, attack: Callable[[float], None] | None = None, probe: Callable[[], str] | None = None
    ) -> tuple[float, int, int]:
        """p99 (s), 5xx count and peak RSS of the phase; `probe` runs once, halfway through."""
        for sender in self.senders:
            sender.start()
        # The attacker in a process of its own, as on a machine of its own: in this one, its
        # event loop would hold the honest senders' threads off the GIL, a wait no server causes.
        attacker = FORK.Process(target=attack, args=(self.until,), daemon=True) if attack else None
        if attacker:
            attacker.start()
            self.attacker_cpu = psutil.Process(attacker.pid)
        while time.monotonic() < self.until:
            self.peak = max(self.peak, self.process.memory_info().rss)
            if probe and not self.probed and time.monotonic() > self.until - self.seconds / 2:
                self.probed = probe()
            time.sleep(0.1)
        for sender in self.senders:
            sender.join()
        if attacker:
            with contextlib.suppress(psutil.Error):
                self.attacker_cpu_s = sum(self.attacker_cpu.cpu_times()[:2])
            attacker.join(30)
            attacker.kill()
        latencies = sorted(lat for sender in self.senders for lat in sender.latencies)
        errors = sum(n for sender in self.senders for status, n in sender.statuses.items() if status >= 500)
        return latencies[int(0.99 * (len(latencies) - 1))], errors, self.peak


def names_attack(url: str, token: str, new_names: bool = True) -> Callable[[float], None]:
    """1,000-record batches in a closed loop, each record under a new name; or (`new_names`
    False) under the known ones: an honest sender of the same shape, the reference."""
    import httpx

    def attack(until: float) -> None:
        n = 0
        with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
            while time.monotonic() < until:
                records = [{"type": "page_navigation", "url": "u", "navigationDurationMs": 1,
                            "scraperSource": f"typo-{n}-{i}" if new_names else KNOWN[i % len(KNOWN)]}
                           for i in range(1000)]  # fmt: skip
                client.post("/api/metrics/", content=orjson.dumps({"metrics": records}))
                n += 1

    return attack


def sockets_attack(url: str, token: str, sockets: int, act: str) -> Callable[[float], None]:
    from websockets.asyncio.client import connect

    ws_url = url.replace("http://", "ws://") + "/ws/metrics/"
    headers = {"Authorization": f"Bearer {token}"}

    async def one(until: float) -> None:
        while time.monotonic() < until:
            try:
                async with connect(ws_url, additional_headers=headers, max_size=None, open_timeout=5) as ws:
                    if act == "inbound":
                        while time.monotonic() < until:
                            await ws.send("x" * (1024 * 1024))
                    elif act == "resync":
                        sources = KNOWN + [f"typo-0-{i}" for i in range(30)]
                        while time.monotonic() < until:  # asks, never reads
                            ask = {
                                "type": "subscribe",
                                "scraperSources": sources,
                                "since": {"page": 0, "scheduler": 0},
                            }
                            await ws.send(orjson.dumps(ask).decode())
                            await ws.send(
                                orjson.dumps({"type": "unsubscribe", "scraperSources": sources}).decode()
                            )
                            await asyncio.sleep(0.05)
                    else:  # "hold", "slow": subscribe to everything, then read nothing
                        await ws.send(orjson.dumps({"type": "subscribe", "scraperSource": "*"}).decode())
                        await asyncio.sleep(max(0.0, until - time.monotonic()))
            except Exception:
                await asyncio.sleep(1.0)  # dropped or refused: try again a second later, as clients do

    def attack(until: float) -> None:
        async def all_of_them() -> None:
            await asyncio.gather(*(one(until) for _ in range(sockets)))

        asyncio.run(all_of_them())

    return attack


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--duration", type=float, default=15.0)
    attack_names = "big, names, inbound, resync, one-key, slow"
    parser.add_argument(
        "--only", action="append", metavar="ATTACK", help=f"this attack only (repeatable): {attack_names}"
    )
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    name = url.rsplit("/", 1)[-1]
    if not url.startswith("mysql://") or "bench" not in name:
        sys.exit("set DATABASE_URL=mysql://…/<a database whose name contains 'bench'>; it is recreated")
    recreate_database(url, name)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wealthmetrics.settings", "PYTHONUNBUFFERED": "1",
           "METRICS_ALERT_EVALUATOR": "0", "METRICS_EMBEDDED_BEAT": "0"}  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    honest, scraper = key(env, "honest"), key(env, "typo-prone", "--scope", "ingest")
    reader, other = key(env, "reader", "--scope", "read"), key(env, "other", "--scope", "read")
    server = DaphneServer(env)
    server.start()
    assert server.process is not None
    process = psutil.Process(server.process.pid)
    Phase(server, honest, args.senders, 5).run()  # warm up: every honest source known
    time.sleep(2)
    idle = process.memory_info().rss
    quiet_p99, quiet_errors, _ = Phase(server, honest, args.senders, args.duration).run()
    print(f"machine: {machine()}; one daphne, MariaDB and the load on one machine; {args.senders} senders")
    print(f"quiet: honest p99 {quiet_p99 * 1000:.0f} ms, 5xx {quiet_errors}; idle RSS {idle / 2**20:.0f} MB")
    print(
        f"{'attack':<10} {'peak RSS':>14} {'RSS after':>22} {'honest p99':>16} {'5xx':>4} {'attackers':>14}"
    )
    attacks = {
        "big (ref)": names_attack(
            server.url, honest, new_names=False
        ),  # not an attack: the same shape, honest
        "names": names_attack(server.url, scraper),
        "inbound": sockets_attack(server.url, reader, 20, "inbound"),
        "resync": sockets_attack(server.url, reader, 20, "resync"),
        "one key": sockets_attack(server.url, reader, 1000, "hold"),
        "slow": sockets_attack(server.url, other, 300, "slow"),
    }
    for label, attack in attacks.items():
        if args.only and label.split(" (")[0].replace(" ", "-") not in args.only:
            continue
        phase = Phase(server, honest, args.senders, args.duration)
        probe = (lambda: other_gets_in(server.url, other)) if label == "one key" else None
        p99, errors, peak = phase.run(attack, probe)
        rested = time.monotonic()
        while process.memory_info().rss > 1.1 * idle and time.monotonic() - rested < REST_S:
            time.sleep(1)
        after, took = process.memory_info().rss, time.monotonic() - rested
        rss = (f"{peak / 2**20:>6.0f} MB ({peak / idle:.2f}x) "
               f"{after / 2**20:>6.0f} MB ({after / idle - 1:+.0%}, {took:.0f} s)")  # fmt: skip
        cpu = phase.attacker_cpu_s / args.duration  # the attacking clients' own share of the cores
        seen = f"{p99 * 1000:>7.0f} ms ({p99 / quiet_p99:.2f}x) {errors:>4}"
        print(f"{label:<10} {rss} {seen} {cpu:>8.2f} cores", flush=True)
        if phase.probed:
            print(f"           another key's socket during it: {phase.probed}")
    server.stop()


def other_gets_in(url: str, token: str) -> str:
    from websockets.asyncio.client import connect

    async def try_once() -> str:
        try:
            ws_url = url.replace("http://", "ws://") + "/ws/metrics/"
            async with connect(
                ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5
            ):
                return "accepted"
        except Exception as exc:
            return f"refused ({exc})"

    return asyncio.run(try_once())


if __name__ == "__main__":
    main()

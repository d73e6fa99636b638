"""Chaos: the fleet keeps sending while daphnes are killed, the database is cut and Redis
freezes and restarts; afterwards every acknowledged record must be stored exactly once, and
every careful dashboard client must hold exactly what the database holds.

    REDIS_URL is not used (a private Redis is started); DATABASE_URL=mysql://…/wealthmetrics_bench \\
        .venv/bin/python bench/chaos.py [--seconds 120] [--senders 32] [--clients 500]

Topology, all on this machine: 2 daphne processes on one port (a SO_REUSEPORT socket each, as
bin/daphnes), reaching MySQL through a TCP relay that can be cut; a private redis-server.
Load: --senders scraper-kit clients (10 records a second each, an Idempotency-Key per batch),
a probe posting one record every 100 ms and timing each acknowledgement (the longest stall), and
--clients WebSocket clients on '*': 20 careful ones that follow the page's resync rules (a gap
in `seq`, a `subscribed` whose `seq` moved on, `history_unavailable`: docs/websocket.md) and
keep every record, the rest reconnecting readers.
Faults: SIGKILL one daphne every 30 s (it is restarted at once), the database cut for 20 s
from 40 s, Redis frozen for 8 s at 95 s and then restarted.
"""

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "client"))

from bench.common import django_output, machine, prepare  # noqa: E402
from bench.soak import fleet  # noqa: E402
from tests.support.servers import RedisServer, TcpProxy, free_port  # noqa: E402

CAREFUL = 20


class DatabaseRelay(TcpProxy):
    """TcpProxy whose cut keeps the port: links are dropped and new ones refused until restore()
    (closing the listener would let the kernel hand the port to one of the run's own sockets)."""

    refusing = False

    def cut(self) -> None:
        self.refusing = True
        self._call(self._drop_links())

    def restore(self) -> None:
        self.refusing = False
        self._call(self._listen())

    async def _drop_links(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        await super()._relay(reader, writer)


class Daphnes:
    """N daphnes on one port, each on its own SO_REUSEPORT socket; kill() and respawn."""

    def __init__(self, count: int, port: int, env: dict[str, str]) -> None:
        self.port, self.env = port, env
        self.log = open(ROOT / "var" / "chaos-daphnes.log", "wb")  # noqa: SIM115 - for the children
        self.processes = [self._spawn() for _ in range(count)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        sock = socket.create_server(("127.0.0.1", self.port), backlog=4096, reuse_port=True)
        sock.set_inheritable(True)
        command = [
            sys.executable,
            "-m",
            "daphne",
            "--fd",
            str(sock.fileno()),
            "wealthmetrics.asgi:application",
        ]
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, pass_fds=[sock.fileno()], stdout=self.log,
                                   stderr=subprocess.STDOUT)  # fmt: skip
        sock.close()
        return process

    def kill_one(self, index: int) -> None:
        victim = self.processes[index]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.processes[index] = self._spawn()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(20)


class Probe(threading.Thread):
    """One record every 100 ms, retried until acknowledged: how long each took."""

    def __init__(self, url: str, key: str, run: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.run_id = url, key, run
        self.stop = threading.Event()
        self.waits: list[tuple[float, float]] = []  # (when asked, seconds until acknowledged)
        self.sent = 0

    def run(self) -> None:
        while not self.stop.is_set():
            asked = time.monotonic()
            record = {"type": "page_navigation", "scraperSource": f"soak-{self.run_id}-probe",
                      "url": f"https://probe/{self.sent}", "navigationDurationMs": 1}  # fmt: skip
            body = orjson.dumps({"metrics": [record]})
            headers = {
                "Authorization": f"Bearer {self.key}",
                "Idempotency-Key": f"probe-{self.run_id}-{self.sent}",
            }
            while True:
                try:
                    if (
                        httpx.post(
                            f"{self.url}/api/metrics/", content=body, headers=headers, timeout=5
                        ).status_code
                        == 202
                    ):
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            self.waits.append((asked, time.monotonic() - asked))
            self.sent += 1
            time.sleep(max(0.0, 0.1 - (time.monotonic() - asked)))


Key = tuple[str, int]  # (table, id): ids are per table ("page" or "scheduler")
Ids = dict[str, int]  # {"page": id, "scheduler": id}


def table_of(record: dict[str, Any]) -> str:
    return "scheduler" if record["type"] == "scheduler_run" else "page"


def oldest(marks: list[Ids]) -> Ids:
    return {table: min(mark[table] for mark in marks) for table in ("page", "scheduler")}


def newest(marks: list[Ids]) -> Ids:
    return {table: max(mark[table] for mark in marks) for table in ("page", "scheduler")}


class CarefulClient:
    """The page's client, ported line for line where it matters (static/js/metrics-websocket-
    client.js; docs/websocket.md, "Gaps and resync"), subscribed to '*'. It counts what the page
    would show: every stored record of the run once is the target; `shown_twice` is what the page
    would count twice, `truncated` how often it would have reloaded from the HTTP API instead."""

    RECENT = 100  # the page's recentLimit: the last records per source it keeps
    MARK_WINDOW_S = 2.0  # a source's mark: its records that came in the 2 s before its newest
    LINGER_S = 5.0  # what came while catching up is remembered this long after

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.shown: set[int] = set()  # the run's page records passed on to the page
        self.shown_twice = self.truncated = 0
        self.recent: dict[str, dict[Key, float]] = {}  # source -> last records held: when they came
        self.next_seq: dict[str, int] = {}
        self.start: Ids | None = None  # the newest stored when '*' was first answered
        self.catching_up: dict[str, Any] | None = None  # {"since": Ids, "asks": n}
        self.since_ask: dict[str, set[Key]] = {}  # what came (live or resynced) while catching up
        self.forget_at = 0.0  # when since_ask is forgotten, after catching up ended
        self.held_at_ask: dict[str, tuple[dict[str, int], set[Key]]] = {}  # source -> (floor, keys)
        self.retry_delay, self.retry_at = 1.0, 0.0
        self.answered = self.resubscribed = self.sampling = False
        self.ws: Any = None

    async def run(self, url: str, key: str, stop: asyncio.Event) -> None:
        from websockets.asyncio.client import connect

        while not stop.is_set():
            try:
                async with connect(url, additional_headers={"Authorization": f"Bearer {key}"},
                                   open_timeout=10, max_size=None, ping_interval=None) as ws:  # fmt: skip
                    self.ws, self.resubscribed = ws, self.answered
                    await ws.send('{"type":"subscribe","scraperSource":"*"}')
                    if self.catching_up:  # answers still to come were lost with the old socket
                        self.catching_up["asks"] = 0
                        await self.ask(self.catching_up["since"])
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):  # wakes every 0.5 s for a due retry
                            await self.handle(orjson.loads(await asyncio.wait_for(ws.recv(), 0.5)))
                        if self.retry_at and time.monotonic() >= self.retry_at and self.catching_up:
                            self.retry_at = 0.0
                            await self.ask(self.catching_up["since"])
            except (OSError, Exception):  # a killed server: reconnect, as the page does (jittered)
                await asyncio.sleep(random.uniform(0, 1))

    async def ask(self, since: Ids) -> None:
        """Ask for what came after `since`; a retry or reconnect asks from the oldest asked."""
        if self.catching_up is None:
            self.held_at_ask = {source: self.held_of(source) for source in self.recent}
            self.forget_at = 0.0
        asked = self.catching_up
        merged = since if asked is None else oldest([asked["since"], since])
        self.catching_up = {"since": merged, "asks": (asked or {"asks": 0})["asks"] + 1}
        self.retry_at = 0.0
        await self.ws.send(orjson.dumps({"type": "subscribe", "scraperSource": "*", "since": since}).decode())

    def start_of(self) -> Ids:
        return self.start or {"page": 0, "scheduler": 0}

    def held_of(self, source: str) -> tuple[dict[str, int], set[Key]]:
        """Per table, the mark (the oldest id among what came in the window before the newest),
        and the keys held."""
        recent = self.recent.get(source, {})
        latest: dict[str, float] = {}
        for (table, _), at in recent.items():
            latest[table] = max(latest.get(table, 0.0), at)
        floor: dict[str, int] = {}
        for (table, id_), at in recent.items():
            if at >= latest[table] - self.MARK_WINDOW_S:
                floor[table] = min(floor.get(table, id_), id_)
        return floor, set(recent)

    def floor_of(self, source: str) -> Ids | None:
        floor, _ = self.held_of(source)
        return {**self.start_of(), **floor} if floor else None

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "metrics_batch":
            source = message["scraperSource"]
            expected = self.next_seq.get(source)
            self.next_seq[source] = message["seq"] + message["count"]
            if expected is not None and message["seq"] != expected:
                await self.ask(self.floor_of(source) or self.start_of())
            self.deliver(message["metrics"], "live")
        elif kind == "subscribed":
            again, self.resubscribed = self.resubscribed, False
            if not self.answered:
                self.answered = self.sampling = True
                self.start = message.get("newest")
            elif again:
                self.sampling = False
            missed = []
            for source, seq in message.get("seq", {}).items():
                expected = self.next_seq.get(source)
                if again if expected is None else expected != seq:
                    missed.append(source)
                self.next_seq[source] = seq
            if missed:
                marks = [mark for source in missed if (mark := self.floor_of(source))]
                held = [mark for source in self.recent if (mark := self.floor_of(source))]
                await self.ask(oldest(marks) if marks else newest(held) if held else self.start_of())
        elif kind == "history" and not message.get("resync"):
            if self.sampling:
                self.sampling = False
                self.deliver(message["metrics"], "history")
        elif kind == "history":
            self.deliver(message["metrics"], "resync")
            if not message["more"] and self.catching_up:
                self.catching_up["asks"] -= 1
                self.truncated += bool(message["truncated"])
                if self.catching_up["asks"] <= 0:
                    self.catching_up, self.retry_delay, self.retry_at = None, 1.0, 0.0
                    self.held_at_ask.clear()
                    self.forget_at = time.monotonic() + self.LINGER_S
        elif kind == "error" and message["code"] == "history_unavailable":
            if not message.get("resync"):
                self.sampling = False
            elif self.catching_up:  # ask again from the same ids, later and later
                self.catching_up["asks"] -= 1
                self.retry_at = time.monotonic() + self.retry_delay
                self.retry_delay = min(30.0, self.retry_delay * 2)

    def held_before(self, source: str, key: Key) -> bool:
        table, id_ = key
        if key in self.recent.get(source, {}) or key in self.since_ask.get(source, set()):
            return True
        if self.start is not None and id_ <= self.start[table]:
            return True  # came with the page's first load
        floor, keys = self.held_at_ask.get(source, ({}, set()))
        return id_ < floor.get(table, -1) or key in keys

    def deliver(self, records: list[dict[str, Any]], origin: str) -> None:
        catching = self.catching_up is not None
        if not catching and self.forget_at and time.monotonic() >= self.forget_at:
            self.since_ask.clear()
            self.forget_at = 0.0
        for record in records:
            source = record.get("scraperSource") or record["schedulerName"]
            key = (table_of(record), record["id"])
            if origin == "resync" and self.held_before(source, key):
                continue
            if origin == "live" and key in self.since_ask.get(source, set()):
                continue  # a resync brought it
            if catching and origin in ("live", "resync"):
                self.since_ask.setdefault(source, set()).add(key)
            recent = self.recent.setdefault(source, {})
            if key in recent:
                continue
            later = origin == "history" and self.start is not None and key[1] > self.start[key[0]]
            if not later:
                recent[key] = time.monotonic()
                if len(recent) > self.RECENT:  # the lowest id of the table goes: below the mark
                    del recent[min((k for k in recent if k[0] == key[0]), key=lambda k: k[1])]
            if source.startswith(self.prefix) and key[0] == "page" and origin != "history":
                self.shown_twice += key[1] in self.shown
                self.shown.add(key[1])


async def passive_client(url: str, key: str, stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    while not stop.is_set():
        try:
            async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=10,
                               max_size=None, ping_interval=None) as ws:  # fmt: skip
                await ws.send('{"type":"subscribe","scraperSource":"*"}')
                while not stop.is_set():
                    await asyncio.wait_for(ws.recv(), 1)
        except (TimeoutError, OSError, Exception):  # reconnect
            await asyncio.sleep(0.3 + 2 * (hash(id(stop)) % 10) / 10)


def clients_process(url: str, key: str, prefix: str, count: int, conn: Any) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        careful = [CarefulClient(prefix) for _ in range(CAREFUL)]
        tasks = [asyncio.ensure_future(client.run(url, key, stop)) for client in careful]
        tasks += [asyncio.ensure_future(passive_client(url, key, stop)) for _ in range(count - CAREFUL)]
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        conn.send([(sorted(client.shown), client.shown_twice, client.truncated) for client in careful])

    asyncio.run(main())


def stored_ids(env: dict[str, str], run: str) -> tuple[dict[int, float], int]:
    """The run's stored page ids with their recordedAt (epoch seconds), and how many urls were
    stored more than once."""
    code = ("import json\nfrom django.db.models import Count\n"
            "from metrics_app.models import PagePerformance as P\n"
            f"rows = P.objects.filter(scraper_source__startswith='soak-{run}-')\n"
            "ids = {i: t.timestamp() for i, t in rows.values_list('id', 'created_at')}\n"
            "twice = rows.values('page_url').annotate(n=Count('id')).filter(n__gt=1).count()\n"
            "print(json.dumps([ids, twice]))\n")  # fmt: skip
    ids, twice = orjson.loads(django_output(env, code))
    return {int(i): t for i, t in ids.items()}, twice


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--clients", type=int, default=500)
    args = parser.parse_args()
    database = os.environ.get("DATABASE_URL", "")
    if not database.startswith("mysql://"):
        sys.exit("bench/chaos.py needs DATABASE_URL=mysql://…")
    host_port = database.split("@", 1)[1].split("/", 1)[0]
    db_host, _, db_port = host_port.partition(":")
    run = f"c{uuid.uuid4().hex[:6]}"  # the fleet's and the probe's sources: soak-<run>-…
    with RedisServer() as redis_server, DatabaseRelay(db_host, int(db_port or 3306)) as relay:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wealthmetrics.settings", "PYTHONUNBUFFERED": "1",
               "REDIS_URL": redis_server.url, "METRICS_MAX_CLIENTS": "100000", "METRICS_ALERT_EVALUATOR": "0",
               "DATABASE_URL": database.replace(host_port, f"127.0.0.1:{relay.port}")}  # fmt: skip
        key = prepare(env, "bench-chaos")
        port = free_port()
        daphnes = Daphnes(2, port, env)
        url = f"http://127.0.0.1:{port}"
        time.sleep(6)
        print(f"machine: {machine()}")
        print(f"chaos: {args.seconds:g} s, 2 daphnes on one port, {args.senders} scraper-kit senders "
              f"x 10 records/s, "
              f"{args.clients} WebSocket clients ({CAREFUL} careful), a probe every 100 ms")  # fmt: skip
        ws_parent, ws_child = multiprocessing.Pipe()
        ws_url = url.replace("http", "ws") + "/ws/metrics/"
        clients = multiprocessing.Process(target=clients_process, args=(
            ws_url, key, f"soak-{run}-", args.clients, ws_child))  # fmt: skip
        clients.start()
        time.sleep(3)
        fleet_parent, fleet_child = multiprocessing.Pipe()
        senders = multiprocessing.Process(
            target=fleet, args=(url, key, run, args.senders, args.seconds, fleet_child)
        )
        senders.start()
        probe = Probe(url, key, run)
        probe.start()

        started, wall_start = time.monotonic(), time.time()
        faults: list[tuple[str, float, float]] = []
        events = [(30.0 * k, "kill", k % 2) for k in range(1, int(args.seconds // 30) + 1)]
        events += [
            (40.0, "cut_db", 0),
            (60.0, "restore_db", 0),
            (95.0, "freeze_redis", 0),
            (103.0, "restart_redis", 0),
        ]
        for at, what, which in sorted(events):
            if at >= args.seconds:
                continue
            time.sleep(max(0.0, started + at - time.monotonic()))
            moment = time.monotonic() - started
            if what == "kill":
                daphnes.kill_one(which)
                faults.append((f"SIGKILL daphne {which}", moment, moment))
            elif what == "cut_db":
                relay.cut()
            elif what == "restore_db":
                relay.restore()
                faults.append(("database cut 20 s", 40.0, moment))
            elif what == "freeze_redis":
                redis_server.freeze()
            else:
                redis_server.stop()
                redis_server.start()
                faults.append(("Redis frozen 8 s, restarted", 95.0, moment))
            print(f"  {moment:6.1f} s  {what}", flush=True)
        time.sleep(max(0.0, started + args.seconds - time.monotonic()))

        _, acknowledged = fleet_parent.recv()
        senders.join()
        probe.stop.set()
        probe.join(60)
        time.sleep(10)  # the careful clients' last resyncs
        ws_parent.send("stop")
        shown: list[tuple[list[int], int, int]] = ws_parent.recv()
        clients.join(30)
        daphnes.stop()

    ids, twice = stored_ids(env | {"DATABASE_URL": database}, run)
    acknowledged += probe.sent
    print(f"records acknowledged {acknowledged} (fleet {acknowledged - probe.sent}, probe {probe.sent}), "
          f"stored {len(ids)}: lost {max(0, acknowledged - len(ids))}, "
          f"urls stored twice {twice}")  # fmt: skip
    expected = set(ids)
    complete = [len(expected & set(held)) / max(1, len(expected)) for held, _, _ in shown]
    extra = [len(set(held) - expected) for held, _, _ in shown]
    low, high = min(complete) * 100, max(complete) * 100
    print(f"careful clients: show {low:.2f}–{high:.2f} % of the stored records; "
          f"records shown twice: {max(twice for _, twice, _ in shown)}; "
          f"resyncs truncated (the page would reload): {sum(cut for _, _, cut in shown)}; "
          f"shown but not stored: {max(extra)}")  # fmt: skip
    missed = Counter(
        int((ids[i] - wall_start) // 5) * 5 for held, _, _ in shown for i in expected - set(held)
    )
    if missed:
        print("  records the careful clients missed, by when they were recorded (s into the run): "
              + ", ".join(f"{at}–{at + 5} s: {n}" for at, n in sorted(missed.items())))  # fmt: skip
    longest = max(probe.waits, key=lambda wait: wait[1])
    print(f"longest ingest stall: {longest[1]:.1f} s (asked at {longest[0] - started:.0f} s)")
    waits = [(at - started, wait) for at, wait in probe.waits]  # (seconds into the run, wait)
    for name, begin, end in faults:
        worst = max((wait for at, wait in waits if begin - 1 <= at <= end + 5), default=float("nan"))
        back = next((at + wait - end for at, wait in waits if at + wait >= end and wait < 0.5), float("nan"))
        print(f"  {name:<30} {begin:5.0f}–{end:5.0f} s: longest wait {worst:4.1f} s, "
              f"acknowledgements fast again {back:+.1f} s after it ended")  # fmt: skip


if __name__ == "__main__":
    main()

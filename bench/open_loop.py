"""An open-loop HTTP load generator: requests leave on a schedule, whatever the answers take.

A fleet of scrapers does not slow down because the server is slow, so an overload test must
not either (closed-loop senders wait for each answer and quietly offer less). Each request is
sent at its scheduled time on an idle keep-alive connection, or on a new one when all are
busy (up to `max_connections`; past that it counts as not sent). Its latency runs from the
scheduled time to the whole answer, so waiting for a connection counts too.

Raw asyncio streams with pre-built requests keep the generator's own CPU low (the server runs
on the same machine); `offer()` spreads the rate over several processes.
"""

import asyncio
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Offered:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0  # records answered 202
    without_retry_after: int = 0  # 429/503 answers that do not say when to retry
    not_sent: int = 0  # no connection could be had (client-side limit)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    def merge(self, other: "Offered") -> None:
        self.statuses.update(other.statuses)
        self.latencies += other.latencies
        self.accepted += other.accepted
        self.without_retry_after += other.without_retry_after
        self.not_sent += other.not_sent
        self.errors.update(other.errors)
        self.elapsed = max(self.elapsed, other.elapsed)


def _request(host: str, port: int, key: str, body: bytes) -> bytes:
    head = (
        f"POST /api/metrics/ HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _run(
    host: str, port: int, key: str, bodies: list[bytes], rate: float, duration: float, max_connections: int
) -> Offered:
    requests = [_request(host, port, key, body) for body in bodies]
    result = Offered()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened = 0

    async def one(index: int, scheduled: float) -> None:
        nonlocal opened
        if idle:
            reader, writer = idle.pop()
        elif opened < max_connections:
            opened += 1
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                opened -= 1
                result.errors[type(exc).__name__] += 1
                return
        else:
            result.not_sent += 1
            return
        try:
            writer.write(requests[index % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {
                name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            result.errors[type(exc).__name__] += 1
            writer.close()
            opened -= 1
            return
        result.latencies.append(time.monotonic() - scheduled)
        result.statuses[status] += 1
        if status == 202:
            result.accepted += orjson.loads(body)["accepted"]
        elif status in (429, 503) and "retry-after" not in headers:
            result.without_retry_after += 1
        if headers.get("connection", "").lower() == "close":
            writer.close()
            opened -= 1
        else:
            idle.append((reader, writer))

    tasks: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    index = 0
    while (scheduled := started + index / rate) < started + duration:
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(one(index, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        index += 1
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    result.elapsed = time.monotonic() - started
    for _, writer in idle:
        writer.close()
    return result


def _process(args: tuple[Any, ...], conn: Any) -> None:
    conn.send(asyncio.run(_run(*args)))


def offer(
    host: str, ports: list[int], key: str, bodies: list[bytes], *, rate: float, duration: float,
    processes: int = 2, max_connections: int = 1000,
) -> Offered:  # fmt: skip
    """`rate` requests a second for `duration` seconds from `processes` processes, each sending
    to one of `ports` in turn."""
    pipes, children = [], []
    for n in range(processes):
        parent, child = multiprocessing.Pipe()
        port = ports[n % len(ports)]
        args = (host, port, key, bodies, rate / processes, duration, max_connections // processes)
        proc = multiprocessing.Process(target=_process, args=(args, child))
        proc.start()
        pipes.append(parent)
        children.append(proc)
    total = Offered()
    for pipe in pipes:
        total.merge(pipe.recv())
    for proc in children:
        proc.join(30)
    return total

"""What request bodies can make a daphne process hold: memory and temporary files.

    .venv/bin/python bench/bodies.py [--limit-mib 4] [--clients 10]

Starts daphne (DATABASE_URL, or SQLite) and runs each shape with --clients connections
at once and samples the process's RSS and the size of its temporary files (Twisted spools a
body over 100 KB to an unlinked file) every 10 ms:
  - strangers: no key, declaring an 800 MB body and starting to send it;
  - strangers sending a METRICS_MAX_BODY_BYTES body whole, whatever the answer, to a path that
    needs a person (/api/alerts/silences/), and to the ingest path spelled otherwise
    (/api/%6detrics/): the red team's 300 at once took RSS from 177 MB to 1,295 MB before the
    door judged every path (`--clients 300`);
  - a key holder streaming a chunked body far past the limit;
  - a key holder sending the largest body accepted (METRICS_MAX_BODY_BYTES of valid JSON):
    what is left once everything refusable is refused before it is read.
Each shape runs on a fresh daphne (memory one left to the allocator would hide the next's). Each
peak is printed beside the bound it is compared with: a small multiple of
METRICS_MAX_BODY_BYTES for all clients together.
"""

import argparse
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, prepare  # noqa: E402
from tests.support.servers import DaphneServer  # noqa: E402

MIB = 1024 * 1024


class Peak(threading.Thread):
    """The highest RSS and temporary-file total of a process while it runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.rss = self.files = self.after = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.rss = max(self.rss, self.process.memory_info().rss)
            self.files = max(self.files, spooled_bytes(self.process.pid))
            time.sleep(0.01)


def spooled_bytes(pid: int) -> int:
    """Bytes in the process's deleted (temporary) files."""
    total = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else ():
        try:
            if os.readlink(fd).endswith("(deleted)"):
                total += os.stat(fd).st_size
        except OSError:
            continue
    return total


def post(port: int, head: bytes, body_chunks: int, chunk: bytes, *, anyway: bool = False) -> bytes:
    """Send headers, then chunks until the server answers or closes (`anyway`: all of them,
    whatever the answer, as long as the connection is open); returns its answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head)
    sock.setblocking(False)
    answer = b""
    try:
        for _ in range(body_chunks):
            try:
                answer += sock.recv(65536)
                if answer and not anyway:
                    break
            except BlockingIOError:
                pass
            sock.setblocking(True)
            sock.sendall(chunk)
            sock.setblocking(False)
        sock.setblocking(True)
        sock.settimeout(30)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except OSError:
        pass
    finally:
        sock.close()
    return answer


def shape(server: DaphneServer, clients: int, send: Callable[[], bytes]) -> tuple[Peak, list[bytes], int]:
    assert server.process is not None
    time.sleep(0.5)
    peak = Peak(server.process.pid)
    base = peak.process.memory_info().rss
    peak.start()
    answers: list[bytes] = []
    threads = [threading.Thread(target=lambda: answers.append(send())) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.3)
    peak.stop.set()
    peak.join()
    time.sleep(1.0)
    peak.after = peak.process.memory_info().rss  # what stays once the shape is over
    return peak, answers, base


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit-mib", type=int, default=4, help="METRICS_MAX_BODY_BYTES in MiB (default 4)")
    parser.add_argument("--clients", type=int, default=10, help="connections at once (default 10)")
    args = parser.parse_args()
    limit = args.limit_mib * MIB
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wealthmetrics.settings", "PYTHONUNBUFFERED": "1",
           "METRICS_MAX_BODY_BYTES": str(limit)}  # fmt: skip
    key = prepare(env, "bench-bodies")
    print(f"machine: {machine()}")
    bound = args.clients * 3 * args.limit_mib
    print(
        f"limit: METRICS_MAX_BODY_BYTES = {args.limit_mib} MiB, {args.clients} clients at once; "
        f"bound compared with: {args.clients} x 3 x limit = {bound} MiB; each shape on a fresh daphne"
    )
    megabyte = b"x" * MIB
    record = {"type": "page_navigation", "scraperSource": "bench-bodies", "url": "https://x/",
              "navigationDurationMs": 1}  # fmt: skip
    core = orjson.dumps({"metrics": [record] * 1000})
    largest = core[:-1] + b" " * (limit - len(core) - 1) + b"}"  # valid JSON, padded to the limit
    chunk = b"%x\r\n%s\r\n" % (len(megabyte), megabyte)
    shapes: dict[str, Callable[[int], bytes]] = {
        "strangers, 800 MB declared, no key": lambda port: post(port, head(800_000_000, None), 50, megabyte),
        "strangers, the limit's body sent whole to /api/alerts/silences/": lambda port: post(
            port, head(limit, None, "/api/alerts/silences/"), args.limit_mib, megabyte, anyway=True
        ),
        "strangers, the limit's body sent whole to /api/%6detrics/": lambda port: post(
            port, head(limit, None, "/api/%6detrics/"), args.limit_mib, megabyte, anyway=True
        ),
        "key holder, chunked body past the limit": lambda port: post(port, head(None, key), 50, chunk),
        "key holder, the largest body accepted": lambda port: post(
            port, head(len(largest), key) + largest, 0, b""
        ),
    }
    for name, send in shapes.items():
        # A fresh process per shape: memory one shape left to the allocator would hide the next's.
        server = DaphneServer(env)
        server.start()
        try:
            peak, answers, base = shape(server, args.clients, lambda: send(server.port))  # noqa: B023
        finally:
            server.stop()
        statuses = Counter(answer.split(b" ", 2)[1].decode() if answer else "none" for answer in answers)
        answered = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        print(
            f"{name}: answers {answered}; peak RSS +{(peak.rss - base) / MIB:.1f} MiB "
            f"(+{(peak.after - base) / MIB:.1f} a second later), "
            f"peak temporary files {peak.files / MIB:.1f} MiB "
            f"({(peak.rss - base + peak.files) / (args.clients * limit):.2f} x limit per client)"
        )


def head(length: int | None, key: str | None, path: str = "/api/metrics/") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


if __name__ == "__main__":
    main()

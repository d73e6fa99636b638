"""What request bodies can make a daphne process hold: memory and temporary files.

    .venv/bin/python bench/bodies.py [--limit-mib 4] [--clients 10]

Starts a daphne (DATABASE_URL, or SQLite), then runs each shape with --clients connections
at once and samples the process's RSS and the size of its temporary files (Twisted spools a
body over 100 KB to an unlinked file) every 10 ms:
  - strangers: no key, declaring an 800 MB body and starting to send it;
  - a key holder streaming a chunked body far past the limit;
  - a key holder sending the largest body accepted (METRICS_MAX_BODY_BYTES of valid JSON):
    what is left once everything refusable is refused before it is read.
Each peak is printed beside the bound it is compared with: a small multiple of
METRICS_MAX_BODY_BYTES for all clients together.
"""

import argparse
import os
import socket
import sys
import threading
import time
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
        self.rss = self.files = 0
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


def post(port: int, head: bytes, body_chunks: int, chunk: bytes) -> bytes:
    """Send headers, then chunks until the server answers or closes; returns its answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head)
    sock.setblocking(False)
    answer = b""
    try:
        for _ in range(body_chunks):
            try:
                answer += sock.recv(65536)
                if answer:
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
    server = DaphneServer(env)
    server.start()
    print(f"machine: {machine()}")
    bound = args.clients * 3 * args.limit_mib
    print(f"limit: METRICS_MAX_BODY_BYTES = {args.limit_mib} MiB, {args.clients} clients at once; "
          f"bound compared with: {args.clients} x 3 x limit = {bound} MiB")  # fmt: skip
    try:
        megabyte = b"x" * MIB
        record = {"type": "page_navigation", "scraperSource": "bench-bodies", "url": "https://x/",
                  "navigationDurationMs": 1}  # fmt: skip
        core = orjson.dumps({"metrics": [record] * 1000})
        largest = core[:-1] + b" " * (limit - len(core) - 1) + b"}"  # valid JSON, padded to the limit
        chunk = b"%x\r\n%s\r\n" % (len(megabyte), megabyte)
        shapes = {
            "strangers, 800 MB declared, no key": lambda: post(
                server.port, head(800_000_000, None), 50, megabyte
            ),
            "key holder, chunked body past the limit": lambda: post(server.port, head(None, key), 50, chunk),
            "key holder, the largest body accepted": lambda: post(
                server.port, head(len(largest), key) + largest, 0, b""
            ),
        }
        for name, send in shapes.items():
            peak, answers, base = shape(server, args.clients, send)
            statuses = sorted({answer.split(b" ", 2)[1].decode() if answer else "none" for answer in answers})
            print(
                f"{name}: answers {', '.join(statuses)}; peak RSS +{(peak.rss - base) / MIB:.1f} MiB, "
                f"peak temporary files {peak.files / MIB:.1f} MiB "
                f"({(peak.rss - base + peak.files) / (args.clients * limit):.2f} x limit per client)"
            )
    finally:
        server.stop()


def head(length: int | None, key: str | None) -> bytes:
    lines = ["POST /api/metrics/ HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


if __name__ == "__main__":
    main()

"""Real processes for tests: daphne on a free port, and a TCP proxy that can cut a link."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
# Each daphne a test starts logs here; the directory is emptied when a test session starts, so
# it holds the last run's logs only.
LOG_DIR = ROOT / "var" / "test-logs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_available() -> bool:
    url = os.environ.get("REDIS_URL")
    if not url:
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def database_url_for_subprocess(
    db: Mapping[str, Any], *, host: str | None = None, port: int | None = None
) -> str:
    """A DATABASE_URL naming the (test) database this process uses, optionally via a proxy."""
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "root"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = host or db.get("HOST") or "127.0.0.1"
    port = port or int(db.get("PORT") or 3306)
    return f"mysql://{user}{password}@{host}:{port}/{db['NAME']}"


class DaphneServer:
    """`daphne wealthmetrics.asgi:application` as a child process, stopped with SIGTERM."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        application: str = "wealthmetrics.asgi:application",
        port: int | None = None,
        args: tuple[str, ...] = (),
        backlog: int = 4096,
    ) -> None:
        self.env = env
        self.application = application
        self.args = args
        self.backlog = backlog
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = LOG_DIR / f"daphne-{self.port}.log"

    def start(self, timeout: float = 20) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-e",  # as `make run` starts it: daphne's own endpoint, with a listen backlog
                f"tcp:port={self.port}:interface=127.0.0.1:backlog={self.backlog}",
                *self.args,
                self.application,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.log()}")
            try:
                httpx.get(f"{self.url}/api/health/websocket", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not start in {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, the way a process manager stops it; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stats(self, key: str) -> dict[str, Any]:
        """/api/stats/ of this process, read with an API key."""
        response = httpx.get(f"{self.url}/api/stats/", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def health(self, key: str | None = None) -> dict[str, Any]:
        """/api/health/websocket: counts only, or with a key the watched sources too."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        result: dict[str, Any] = httpx.get(
            f"{self.url}/api/health/websocket", headers=headers, timeout=10
        ).json()
        return result


class RedisServer:
    """A Redis of the test's own (redis-server on a free port, keeping nothing), which the test
    may stop and start again, or freeze (SIGSTOP) and thaw, without touching the shared one."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "RedisServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            self.process.wait(10)

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


class TcpProxy:
    """A TCP relay in a background thread: `cut()` drops every link and refuses new ones,
    `restore()` listens again on the same port. It makes a database outage real, on the wire."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.frozen = False  # links stay open but nothing passes: a server that hangs
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> "TcpProxy":
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self._call(self._cancel_relays())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _cancel_relays(self) -> None:
        current = asyncio.current_task()
        relays = [task for task in asyncio.all_tasks() if task is not current]
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def restore(self) -> None:
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._close())

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    while self.frozen:
                        await asyncio.sleep(0.02)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update({writer, up_writer})

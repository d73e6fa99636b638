"""`make stack`: daphne, a celery worker and beat under honcho, in one command."""

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ROOT, free_port


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_make_stack_runs_web_worker_and_beat(live_server_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {**live_server_env, "HOST": "127.0.0.1", "PORT": str(port), "VAR_DIR": str(tmp_path)}
    stack = subprocess.Popen(
        ["make", "-s", "stack"], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stack.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 60
        ready = {"web": False, "worker": False, "beat": False}
        while not all(ready.values()):
            assert time.monotonic() < deadline, f"the stack did not come up: {ready}\n{''.join(lines)}"
            assert stack.poll() is None, "".join(lines)
            output = "".join(lines)
            ready["worker"] = " ready." in output
            ready["beat"] = "beat: Starting" in output
            with contextlib.suppress(httpx.TransportError):
                ready["web"] = httpx.get(f"http://127.0.0.1:{port}/api/health/websocket").status_code == 200
            time.sleep(0.3)
        assert f"Dashboard: http://127.0.0.1:{port}/analytics/" in "".join(lines)
        assert "DatabaseScheduler" in "".join(lines)
    finally:
        os.killpg(stack.pid, signal.SIGTERM)
        stack.wait(timeout=30)
        reader.join(timeout=5)

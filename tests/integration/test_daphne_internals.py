"""The daphne-specific paths (wealthmetrics.daphne_internals) check out against the installed
daphne, Twisted and autobahn, and are the ones in use under a real daphne."""

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.servers import DaphneServer
from tests.support.ws import next_of, open_socket
from wealthmetrics import daphne_internals

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_installed_versions_pass_the_self_checks() -> None:
    assert daphne_internals._check_guard() is None
    assert daphne_internals._check_sockets() is None


def test_under_daphne_both_fast_paths_are_in_use(daphne: DaphneServer, committed_api_key: str) -> None:
    stats = daphne.stats(committed_api_key)
    assert (stats["server"], stats["requestGuard"], stats["fastSockets"]) == ("daphne", True, True)

    async def three_sockets() -> None:
        sockets = [await open_socket(daphne, key=committed_api_key) for _ in range(3)]
        for ws in sockets:
            await next_of(ws, "connected")
        health = daphne.health()
        assert health["fastPath"] is True
        assert health["fastPathClients"] == health["clients"] >= 3
        for ws in sockets:
            await ws.close()

    asyncio.run(three_sockets())


def test_daphne_listens_with_a_backlog_for_reconnect_storms(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    server = start_daphne(METRICS_LISTEN_BACKLOG="1234")  # started with -b/-p, as `make run` does
    assert server.stats(committed_api_key)["listenBacklog"] == 1234
    listening = subprocess.run(
        ["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    # For a listening socket, ss's Send-Q column is the backlog (capped by net.core.somaxconn).
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert int(listening[2]) == min(1234, somaxconn)

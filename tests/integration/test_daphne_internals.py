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


def test_the_installed_versions_pass_every_check() -> None:
    assert {part: check() for part, (check, _) in daphne_internals.CHECKS.items()} == dict.fromkeys(
        daphne_internals.CHECKS
    )


def test_under_daphne_every_part_is_in_use(daphne: DaphneServer, committed_api_key: str) -> None:
    stats = daphne.stats(committed_api_key)
    assert (stats["server"], stats["requestGuard"], stats["fastSockets"], stats["idleTimeout"]) == (
        "daphne",
        True,
        True,
        True,
    )
    assert stats["uncheckedServerParts"] == []

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


BROKEN_DAPHNE = """
import daphne.http_protocol, daphne.server
# a daphne whose server no longer builds its HTTP factory from http_protocol.HTTPFactory
daphne.server.HTTPFactory = type("HTTPFactory", (daphne.http_protocol.HTTPFactory,), {})
"""


def test_a_server_that_fails_a_check_refuses_to_start(
    tmp_path: Path, start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    """A changed daphne: the process stops, naming the part, the packages and their versions;
    with METRICS_ACCEPT_UNCHECKED_SERVER=1 it runs without that part, and says so."""
    (tmp_path / "sitecustomize.py").write_text(BROKEN_DAPHNE)
    with pytest.raises(RuntimeError, match="exited early") as refused:
        start_daphne(PYTHONPATH=str(tmp_path))
    message = str(refused.value)
    assert "idle timeout" in message and "daphne 4.2.3" in message and "Twisted 26.10.0" in message
    assert "METRICS_ACCEPT_UNCHECKED_SERVER" in message
    accepted = start_daphne(PYTHONPATH=str(tmp_path), METRICS_ACCEPT_UNCHECKED_SERVER="1")
    stats = accepted.stats(committed_api_key)
    assert stats["uncheckedServerParts"] == ["idle timeout"] and stats["idleTimeout"] is False
    assert stats["requestGuard"] is True and stats["fastSockets"] is True
    assert accepted.health(committed_api_key)["uncheckedServerParts"] == ["idle timeout"]


def test_daphne_listens_with_the_backlog_of_its_endpoint(start_daphne: Callable[..., DaphneServer]) -> None:
    """daphne's own endpoint option sets the backlog (`make run` and bin/daphnes give 4096)."""
    server = start_daphne()
    listening = subprocess.run(
        ["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    # For a listening socket, ss's Send-Q column is the backlog (capped by net.core.somaxconn).
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert int(listening[2]) == min(server.backlog, somaxconn)

"""Shared fixtures: real services, a real daphne, real API keys.

Tests marked `mysql` or `redis` need that service. Without it they skip, except under
REQUIRE_SERVICES=1 (CI), where a missing service is a failure.
"""

import os
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings

from metrics_app.models import ApiKey
from tests.support.servers import DaphneServer, database_url_for_subprocess, redis_available

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def uses_mysql() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("mysql")


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _require_marked_services(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("mysql") and not uses_mysql():
        _missing("this test needs MySQL/MariaDB: set DATABASE_URL=mysql://…")
    if request.node.get_closest_marker("redis") and not redis_available():
        _missing("this test needs Redis: set REDIS_URL=redis://… and start it")


@pytest.fixture
def api_key(db: None) -> str:
    """A plain, valid API key (the row is stored; the test gets the secret)."""
    return ApiKey.issue("test scraper")[1]


@pytest.fixture
def committed_api_key(transactional_db: None) -> str:
    """A key another process (a daphne under test) can see."""
    return ApiKey.issue("live test scraper")[1]


@pytest.fixture(scope="session")
def live_server_env(django_db_setup: None, django_db_blocker: object) -> dict[str, str]:
    """Environment for subprocesses that must use the test database."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    env["DATABASE_URL"] = database_url_for_subprocess(settings.DATABASES["default"])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def start_daphne(live_server_env: dict[str, str]) -> Iterator[Callable[..., DaphneServer]]:
    """Start daphnes with settings of the test's own; all are stopped afterwards."""
    started: list[DaphneServer] = []

    def start(**env: str) -> DaphneServer:
        server = DaphneServer({**live_server_env, **env})
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def daphne(live_server_env: dict[str, str]) -> Iterator[DaphneServer]:
    """One daphne for the session, on the test database, reached over real sockets."""
    server = DaphneServer(live_server_env)
    server.start()
    yield server
    server.stop()

"""Shared fixtures: real services, a real daphne, real API keys.

Tests marked `mysql` or `redis` need that service. Without it they skip, except under
REQUIRE_SERVICES=1 (CI), where a missing service is a failure.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; Django's ORM, used by the
    # fixtures, refuses to run beside one unless told it is deliberate (as Django's docs say).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield launched
            launched.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for a module's tests; its event loop stays in the thread until the end."""
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="session")
def daphne(live_server_env: dict[str, str]) -> Iterator[DaphneServer]:
    """One daphne for the session, on the test database, reached over real sockets."""
    server = DaphneServer(live_server_env)
    server.start()
    yield server
    server.stop()

"""Fixtures for every test. tests/unit needs no database, socket or browser; tests/integration
talks to real MariaDB, Redis, daphne and Chromium (its own conftest)."""

import shutil

import pytest

from tests.support.servers import LOG_DIR, redis_available
from tests.support.services import missing, uses_mysql


def pytest_sessionstart(session: pytest.Session) -> None:
    shutil.rmtree(LOG_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _require_marked_services(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("mysql") and not uses_mysql():
        missing("this test needs MySQL/MariaDB: set DATABASE_URL=mysql://…")
    if request.node.get_closest_marker("redis") and not redis_available():
        missing("this test needs Redis: set REDIS_URL=redis://… and start it")

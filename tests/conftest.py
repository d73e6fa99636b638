"""Fixtures for every test. tests/unit needs no database, socket or browser; tests/integration
talks to real MariaDB, Redis, daphne and Chromium (its own conftest)."""

import shutil
import time
from collections.abc import Generator

import pytest

from tests.support.servers import LOG_DIR, redis_available
from tests.support.services import missing, uses_mysql


def pytest_sessionstart(session: pytest.Session) -> None:
    shutil.rmtree(LOG_DIR, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report ends with what the daphnes it talked to logged meanwhile: a
    failure seen only in CI (a hang, a 5xx) is read from the servers' side too."""
    if call.when == "setup":
        item.stash[_STARTED] = time.time() - 1
    report = yield
    if report.failed and LOG_DIR.exists():
        started = item.stash.get(_STARTED, 0.0)
        for path in sorted(LOG_DIR.glob("*.log")):
            if path.stat().st_mtime >= started:
                tail = path.read_text(errors="replace").splitlines()[-60:]
                report.sections.append((f"{path.name} (last {len(tail)} lines)", "\n".join(tail)))
    return report


_STARTED = pytest.StashKey[float]()


@pytest.fixture(autouse=True)
def _require_marked_services(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("mysql") and not uses_mysql():
        missing("this test needs MySQL/MariaDB: set DATABASE_URL=mysql://…")
    if request.node.get_closest_marker("redis") and not redis_available():
        missing("this test needs Redis: set REDIS_URL=redis://… and start it")

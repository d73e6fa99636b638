"""Shared fixtures of the integration tests: real services, a real daphne, real API keys and
a logged-in reader (tests/support/db.py stores and counts records)."""

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from metrics_app.collector import MetricsCollector
from metrics_app.ingest.sources import registry
from metrics_app.models import ApiKey
from tests.support.asgi import AsgiClient
from tests.support.browser import chromium
from tests.support.servers import DaphneServer, database_url_for_subprocess


@pytest.fixture(autouse=True)
def _forget_registered_names() -> None:
    """Each test's database starts empty, so this process must not remember names registered
    in another test's (metrics_app.ingest.sources, as after FORGET_SEEN_S)."""
    registry._seen.clear()


@pytest.fixture
def api_key(db: None) -> str:
    """A plain, valid API key (the row is stored; the test gets the secret)."""
    return ApiKey.issue("test scraper")[1]


@pytest.fixture
def committed_api_key(transactional_db: None) -> str:
    """A key another process (a daphne under test) can see."""
    return ApiKey.issue("live test scraper")[1]


@pytest.fixture
def reader(transactional_db: None, django_user_model: Any) -> AsgiClient:
    """A logged-in person, through the application as daphne serves it (the door first)."""
    client = AsgiClient()
    client.force_login(django_user_model.objects.create_user("reader", password="pw-123456!"))
    return client


@pytest.fixture
def session(client: Client, django_user_model: Any) -> str:
    """A logged-in browser session a daphne under test accepts (needs a transactional test)."""
    client.force_login(
        django_user_model.objects.create_user(f"u{uuid.uuid4().hex[:6]}", password="pw-123456!")
    )
    return client.cookies["sessionid"].value


@pytest.fixture
def login(client: Client, django_user_model: Any) -> dict[str, str]:
    """A person's username and password, for logging in through the page."""
    user = django_user_model.objects.create_user(f"viewer{uuid.uuid4().hex[:6]}", password="pw-123456!")
    return {"username": user.username, "password": "pw-123456!"}


@pytest.fixture(scope="session")
def live_server_env(django_db_setup: None, django_db_blocker: object) -> dict[str, str]:
    """Environment for subprocesses that must use the test database."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    env["DATABASE_URL"] = database_url_for_subprocess(settings.DATABASES["default"])
    env["PYTHONUNBUFFERED"] = "1"
    # The alert tests start evaluators of their own; the others' daphnes stay out of the election.
    env["METRICS_ALERT_EVALUATOR"] = "0"
    env["METRICS_EMBEDDED_BEAT"] = "0"  # the nightly jobs are the Celery tests' (test_celery.py)
    return env


@pytest.fixture
def start_daphne(live_server_env: dict[str, str]) -> Iterator[Callable[..., DaphneServer]]:
    """Start daphnes with settings of the test's own; all are stopped afterwards."""
    started: list[DaphneServer] = []

    def start(port: int | None = None, **env: str) -> DaphneServer:
        server = DaphneServer({**live_server_env, **env}, port=port)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


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


@pytest.fixture
def asgi(transactional_db: None) -> AsgiClient:
    """The application as daphne serves it (door first), in this process; nobody logged in."""
    return AsgiClient()


@pytest.fixture
def make_collector() -> Iterator[Callable[..., MetricsCollector]]:
    """In-process collectors with the test's options; all are closed afterwards."""
    made: list[MetricsCollector] = []

    def make(**options: Any) -> MetricsCollector:
        made.append(MetricsCollector(**options))
        return made[-1]

    yield make
    for collector in made:
        collector.close()

"""Maintenance runs on connections with timeouts that fit its work, requests fail fast."""

import contextlib
import time
import uuid

import pytest
from django.db import OperationalError, connection

from metrics_app import db

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def one_second_requests() -> object:
    """This thread's connections time out after a second, as request paths would with
    METRICS_DB_TIMEOUT_S=1."""
    db.close_connection()
    usual = connection.settings_dict
    connection.settings_dict = {**usual, "OPTIONS": {**usual["OPTIONS"], "read_timeout": 1}}
    yield
    db.close_connection()
    connection.settings_dict = usual


def test_a_long_statement_outlives_the_request_timeout_only_as_maintenance(
    one_second_requests: object, settings: object
) -> None:
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT SLEEP(2)")
    db.close_connection()
    settings.METRICS_MAINTENANCE_TIMEOUT_S = 10  # type: ignore[attr-defined]
    with db.long_queries(), connection.cursor() as cursor:
        cursor.execute("SELECT SLEEP(2)")
        assert cursor.fetchone() == (0,)
    assert connection.settings_dict["OPTIONS"]["read_timeout"] == 1  # requests fail fast again


def test_the_server_stops_a_statement_its_caller_gave_up_on() -> None:
    """A client that times out leaves its query running on the server unless the server has a
    limit of its own (a 500 s query outlived the evaluator that gave up on it)."""
    from django.db import connections

    impatient = connections.create_connection("default")
    impatient.settings_dict = {**impatient.settings_dict,
                               "OPTIONS": {**impatient.settings_dict["OPTIONS"], "read_timeout": 1}}  # fmt: skip
    marker = f"SELECT SLEEP(4) /* {uuid.uuid4().hex} */"
    with contextlib.suppress(OperationalError), impatient.cursor() as cursor:
        cursor.execute(marker)  # the client gives up after a second, or the server stops it
    time.sleep(1.5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = %s", [marker])
        assert cursor.fetchone()[0] == 0
    with contextlib.suppress(Exception):
        impatient.close()

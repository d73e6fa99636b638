"""Maintenance runs on connections with timeouts that fit its work, requests fail fast."""

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

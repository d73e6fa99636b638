from typing import Any

from django.core.management.commands.migrate import Command as DjangoMigrate

from metrics_app import db


class Command(DjangoMigrate):
    """Django's migrate, on a connection with the maintenance timeouts (METRICS_MAINTENANCE_TIMEOUT_S):
    a migration that fills or reorganises a table of millions of rows outlasts a request's
    METRICS_DB_TIMEOUT_S, and the client would give up on it mid-statement."""

    def handle(self, *args: Any, **options: Any) -> None:
        with db.long_queries():
            super().handle(*args, **options)

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from metrics_app import db, retention


class Command(BaseCommand):
    help = (
        "Delete detailed page and scheduler rows older than N days (default "
        "METRICS_RETENTION_DAYS). Hourly rollups and daily summaries are kept."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help=f"keep this many days of detailed rows (default: {settings.METRICS_RETENTION_DAYS})",
        )

    def handle(self, *args: Any, days: int | None, **options: Any) -> None:
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1")
        with db.long_queries():
            report = retention.cleanup(days, progress=self.stdout.write)
        for table in [*report.tables, report.minute_rollups]:
            self.stdout.write(str(table))
        self.stdout.write(
            f"Deleted {report.deleted} detailed rows recorded before {report.cutoff:%Y-%m-%d %H:%M:%S %Z}."
        )

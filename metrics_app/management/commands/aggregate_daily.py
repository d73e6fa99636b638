import time
from argparse import ArgumentParser
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from metrics_app import db, rollups
from metrics_app.history import summaries


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"not a date (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    help = (
        "Build the daily summaries of a day (default yesterday, in TIME_ZONE) from the hourly "
        "rollups. Running it again gives the same rows."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--date", help="the day to summarise, YYYY-MM-DD (default: yesterday)")
        parser.add_argument("--from", dest="start", help="backfill: first day, YYYY-MM-DD")
        parser.add_argument("--to", dest="end", help="backfill: last day, YYYY-MM-DD (default: yesterday)")
        parser.add_argument(
            "--catch-up",
            action="store_true",
            help="what the nightly task does: yesterday and every earlier day without summaries",
        )
        parser.add_argument(
            "--rebuild-rollups",
            action="store_true",
            help="first recompute the days' hourly rollups from the detailed rows "
            "(a repair; only days still inside retention have detailed rows)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with db.long_queries():
            self._aggregate(options)

    def _aggregate(self, options: dict[str, Any]) -> None:
        days = self._days(options)
        if options["rebuild_rollups"]:
            self._check_inside_retention(days)
        if not days:
            self.stdout.write("Nothing to aggregate.")
            return
        for day in days:
            began = time.perf_counter()
            if options["rebuild_rollups"]:
                start, end = summaries.day_bounds(day)
                rolled = rollups.rebuild(start, end)
                self.stdout.write(f"{day}: rollups rebuilt from {rolled} detailed records")
            result = summaries.aggregate_day(day)
            self.stdout.write(f"{result} ({time.perf_counter() - began:.2f} s)")
        if len(days) > 1:
            self.stdout.write(f"Aggregated {len(days)} days, {days[0]} to {days[-1]}.")

    def _check_inside_retention(self, days: list[date]) -> None:
        """Rebuilding replaces a day's rollups with what its detailed rows say; past retention
        (or across the cutoff) those rows are gone, and so would the rollups be."""
        cutoff = timezone.now() - timedelta(days=settings.METRICS_RETENTION_DAYS)
        too_old = [day for day in days if summaries.day_bounds(day)[0] < cutoff]
        if too_old:
            raise CommandError(
                f"--rebuild-rollups works on days whose detailed rows are all still kept "
                f"(from {timezone.localtime(cutoff):%Y-%m-%d %H:%M} on); {too_old[0]} is older"
            )

    def _days(self, options: dict[str, Any]) -> list[date]:
        yesterday = timezone.localdate() - timedelta(days=1)
        if options["catch_up"]:
            if options["date"] or options["start"] or options["end"]:
                raise CommandError("--catch-up picks the days itself; drop --date/--from/--to")
            return summaries.days_to_aggregate()
        if options["date"] and (options["start"] or options["end"]):
            raise CommandError("give either --date or --from/--to, not both")
        if options["start"]:
            first = _day(options["start"])
            last = _day(options["end"]) if options["end"] else yesterday
            if last < first:
                raise CommandError(f"--to {last} is before --from {first}")
            return [first + timedelta(days=n) for n in range((last - first).days + 1)]
        if options["end"]:
            raise CommandError("--to needs --from")
        return [_day(options["date"]) if options["date"] else yesterday]

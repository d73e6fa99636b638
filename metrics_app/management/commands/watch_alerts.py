"""Evaluate alerts once, now: `manage.py watch_alerts --once`. The evaluation on a clock runs
inside the daphne processes (wealthmetrics.serving, "What runs where"), never here."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from metrics_app.alerts import evaluator


class Command(BaseCommand):
    help = "Evaluate alerts once, now, and print what it did (daphne evaluates them on a clock)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="evaluate once now (the only mode)")

    def handle(self, *args: Any, once: bool = False, **options: Any) -> None:
        if not once:
            raise CommandError(
                "alerts are evaluated on a clock by the daphne processes (README, 'What runs where'); "
                "use --once to evaluate once now"
            )
        watcher = evaluator.Evaluator()
        if not watcher.acquire():
            self.stdout.write(
                "another process holds the evaluator's lease; evaluating anyway, without notifying"
            )
        cycle, events = watcher.run_once()
        self.stdout.write(
            f"{cycle.channels} channels, {cycle.schedulers} schedulers: {cycle.findings} findings, "
            f"{cycle.events} transitions; {cycle.queries} queries, {cycle.db_ms:.1f} ms in the database, "
            f"{cycle.wall_ms:.1f} ms in all"
        )
        for event in events:
            self.stdout.write(f"  {event.status}: {event.summary}")

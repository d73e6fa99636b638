"""Run the alert evaluator outside daphne: `manage.py watch_alerts` (a loop that takes part in
the election like every daphne process), or `--once` for a single evaluation now."""

import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from metrics_app.alerts import evaluator


class Command(BaseCommand):
    help = "Evaluate alerts: in a loop, elected like the daphne processes, or --once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="evaluate once now and print what it did")

    def handle(self, *args: Any, once: bool = False, **options: Any) -> None:
        if not once:
            self.stdout.write(
                "watching: evaluating alerts whenever this process holds the lease (Ctrl-C stops)"
            )
            asyncio.run(evaluator.watch())
            return
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

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from metrics_app.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key for a scraper. The key is printed once, alone on the last line."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name", help="who will use the key, e.g. 'robinhood-scraper'")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        if not name.strip():
            raise CommandError("NAME must not be empty")
        api_key, key = ApiKey.issue(name.strip())
        self.stdout.write(f"Created API key #{api_key.pk} '{api_key.name}'.")
        self.stdout.write(
            "Send it as 'Authorization: Bearer <key>'. It is not stored and cannot be shown again:"
        )
        self.stdout.write(key)

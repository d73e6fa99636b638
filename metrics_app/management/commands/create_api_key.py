from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from metrics_app.models import ApiKey, Scope
from metrics_app.records import is_source_name


class Command(BaseCommand):
    help = "Create an API key for a scraper. The key is printed once, alone on the last line."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name", help="who will use the key, e.g. 'robinhood-scraper'")
        scopes = [scope.value for scope in Scope]
        parser.add_argument(
            "--scope", choices=scopes, default=Scope.ALL.value, help="ingest, read, or all (the default)"
        )
        parser.add_argument(
            "--sources", default="", metavar="A,B", help="the only sources it may use (default: all)"
        )

    def handle(self, *args: Any, name: str, scope: str, sources: str, **options: Any) -> None:
        if not name.strip():
            raise CommandError("NAME must not be empty")
        listed = [source.strip() for source in sources.split(",") if source.strip()]
        if bad := [source for source in listed if not is_source_name(source)]:
            raise CommandError(f"--sources: not a source name: {', '.join(bad)}")
        api_key, key = ApiKey.issue(name.strip(), scope=scope, sources=listed)
        limits = f" for {', '.join(sorted(listed))}" if listed else " for every source"
        self.stdout.write(
            f"Created API key #{api_key.pk} '{api_key.name}' ({api_key.get_scope_display()}{limits})."
        )
        self.stdout.write(
            "Send it as 'Authorization: Bearer <key>'. It is not stored and cannot be shown again:"
        )
        self.stdout.write(key)

import re
import secrets
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import connection


class Command(BaseCommand):
    help = (
        "Print where the dashboard is and how to log in. On a database with no users it "
        "creates an 'admin' superuser with a random password, kept in var/ in a file named for "
        "the database (so SQLite and MySQL each keep their own)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="the server's base URL")

    def handle(self, *args: Any, url: str, **options: Any) -> None:
        User = get_user_model()
        login_file = Path(settings.VAR_DIR) / login_file_name()
        if not User.objects.exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", email="", password=password)
            login_file.parent.mkdir(exist_ok=True)
            login_file.write_text(f"admin {password}\n")
            login_file.chmod(0o600)
        dashboard = url.rstrip("/") + "/analytics/"
        self.stdout.write(f"Dashboard: {dashboard}")
        if login_file.exists():
            username, password = login_file.read_text().split()
            user = User.objects.filter(username=username).first()
            if user is not None and user.check_password(password):
                self.stdout.write(f"Log in as: {username} / {password}  (kept in {login_file})")
                return
        self.stdout.write(
            "Log in with your account; create one with: .venv/bin/python manage.py createsuperuser"
        )


def login_file_name() -> str:
    """first-login-<vendor>-<where>.txt: one per database, so `make run` on SQLite and
    `make stack` on MySQL don't overwrite each other's login."""
    db = connection.settings_dict
    where = (
        Path(db["NAME"]).stem if connection.vendor == "sqlite" else f"{db['HOST']}-{db['PORT']}-{db['NAME']}"
    )
    return f"first-login-{connection.vendor}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', where)}.txt"

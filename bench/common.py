"""What the benchmarks share: the machine's description and a migrated database with a key."""

import os
import platform
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return f"{os.cpu_count()} cores {model}, {platform.python_implementation()} {platform.python_version()}"


def manage(env: dict[str, str], *args: str) -> str:
    """Run a management command against the benchmark's database; returns its output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return result.stdout


def django_output(env: dict[str, str], code: str) -> str:
    """What `code` prints, run with Django set up in a child process on the benchmark's
    database (its env), so the bench's own process stays free of Django."""
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout.strip()


def prepare(env: dict[str, str], key_name: str) -> str:
    """Migrate, then create an API key for the run; returns the key."""
    (ROOT / "var").mkdir(exist_ok=True)
    manage(env, "migrate", "-v0")
    return manage(env, "create_api_key", key_name).strip().splitlines()[-1]


def rows_present() -> tuple[int, int]:
    """Rows in the benchmark's database: detailed records (navigations, scrapes and scheduler
    runs), and hourly rollups."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wealthmetrics.settings")
    import django

    django.setup()
    from metrics_app.models import HourlyRollup, PagePerformance, SchedulerMetric

    return PagePerformance.objects.count() + SchedulerMetric.objects.count(), HourlyRollup.objects.count()


def recreate_database(url: str, name: str) -> None:
    import MySQLdb

    parts = urlparse(url)
    db = MySQLdb.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                         user=parts.username or "root", password=parts.password or "")  # fmt: skip
    cursor = db.cursor()
    cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    db.close()


def fresh_bench_database() -> None:
    """Drop and create the MySQL database named in DATABASE_URL (its name must contain "bench"),
    set Django up on it and migrate; exits with a message otherwise."""
    url = os.environ.get("DATABASE_URL", "")
    name = urlparse(url).path.lstrip("/")
    if not url.startswith("mysql://") or "bench" not in name:
        sys.exit("set DATABASE_URL=mysql://…/<a database whose name contains 'bench'>; it is recreated")
    recreate_database(url, name)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

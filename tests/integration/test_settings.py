"""Settings come from the environment and a bad value stops start-up, naming the variable."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.support.servers import ROOT
from wealthmetrics.env import env_bool, env_int, env_list


def test_env_int_reads_and_checks_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_MS", "250")
    assert env_int("X_MS", 1000, minimum=100, maximum=5000) == 250
    monkeypatch.setenv("X_MS", "50")
    with pytest.raises(ImproperlyConfigured, match="X_MS must be at least 100"):
        env_int("X_MS", 1000, minimum=100)
    monkeypatch.setenv("X_MS", "fast")
    with pytest.raises(ImproperlyConfigured, match="X_MS must be an integer"):
        env_int("X_MS", 1000)
    monkeypatch.delenv("X_MS")
    assert env_int("X_MS", 1000) == 1000


def test_env_bool_and_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAG", "yes")
    assert env_bool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "perhaps")
    with pytest.raises(ImproperlyConfigured, match="FLAG"):
        env_bool("FLAG", False)
    monkeypatch.setenv("HOSTS", "a.example, b.example,")
    assert env_list("HOSTS", []) == ["a.example", "b.example"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("METRICS_BATCH_INTERVAL_MS", "50"),
        ("METRICS_BATCH_INTERVAL_MS", "9000"),
        ("METRICS_MAX_CLIENTS", "many"),
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "nosuchdb://x"),
        ("DATABASE_URL", "postgres://user@db.example/wealthmetrics"),
        ("METRICS_DB_CONNECTIONS", "0"),
        ("METRICS_ALERT_EVAL_INTERVAL_S", "0"),
        ("METRICS_ALERT_EVAL_INTERVAL_S", "301"),
        ("METRICS_ALERT_WINDOW_S", "soon"),
        ("METRICS_ALERT_WEBHOOK_URLS", "hooks.slack.com/services/x"),
        ("METRICS_ALERT_EMAILS", "ops"),
    ],
)
def test_bad_value_stops_start_up_in_one_line_naming_the_variable(name: str, value: str) -> None:
    env = {**os.environ, name: value}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert name in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr  # one line, no traceback


def test_the_database_url_names_what_is_supported() -> None:
    env = {**os.environ, "DATABASE_URL": "postgres://user@db.example/wealthmetrics"}
    for command in (
        [sys.executable, "manage.py", "check"],
        [sys.executable, "-m", "daphne", "wealthmetrics.asgi:application"],
    ):
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert result.stderr.strip().splitlines()[-1] == (
            "wealthmetrics: DATABASE_URL must be mysql://user:password@host:3306/name (MySQL or MariaDB) "
            "or sqlite:///path, got postgres://…"
        )


def settings_of(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_without_secret_key_one_is_made_once_for_this_installation(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"} | {"VAR_DIR": str(tmp_path)}
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first, again = (settings_of(env, code).stdout.strip().splitlines()[-1] for _ in range(2))
    kept = tmp_path / "secret_key"
    assert first == again == kept.read_text().strip()  # sessions survive restarts
    assert len(first) >= 50
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600  # only the service's user reads it
    other = settings_of(env | {"VAR_DIR": str(tmp_path / "elsewhere")}, code).stdout.strip().splitlines()[-1]
    assert other != first  # never a key shared between installations


def test_check_deploy_is_clean_under_the_documented_production_settings(tmp_path: Path) -> None:
    env = os.environ | {
        "VAR_DIR": str(tmp_path),
        "DEBUG": "0",
        "ALLOWED_HOSTS": "metrics.example.com",
        "SECURE_SSL_REDIRECT": "1",
        "SESSION_COOKIE_SECURE": "1",
        "CSRF_COOKIE_SECURE": "1",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
        "SECURE_HSTS_PRELOAD": "1",
        "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    }
    env.pop("SECRET_KEY", None)  # the generated one is strong enough for the check
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout

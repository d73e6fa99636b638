"""Small typed readers for environment variables.

Each one raises BadSetting naming the variable, so a typo in a deployment stops start-up with
a message instead of surfacing later as odd behaviour. The entry points (manage.py, the ASGI
and Celery apps) print that message as one line, without a traceback.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key


class BadSetting(ImproperlyConfigured):
    """An environment variable with a value the service cannot use."""


@contextmanager
def bad_settings_in_one_line() -> Iterator[None]:
    try:
        yield
    except BadSetting as exc:
        raise SystemExit(f"wealthmetrics: {exc}") from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadSetting(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        value = default
    else:
        try:
            value = int(raw.strip())
        except ValueError:
            raise BadSetting(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise BadSetting(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise BadSetting(f"{name} must be at most {maximum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def stored_secret_key(path: Path) -> str:
    """The key kept in `path`, made (random, readable by this user only) the first time.

    Processes starting together may race to make it: each writes a complete file of its own
    and links it into place, which only the first link wins; the others read the winner's."""
    for _ in range(50):
        try:
            key = path.read_text().strip()
        except FileNotFoundError:
            key = ""
        if key:
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(get_random_secret_key() + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: read theirs
        finally:
            draft.unlink()
    raise BadSetting(f"SECRET_KEY is not set and {path} stays empty; set SECRET_KEY")

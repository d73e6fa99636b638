"""Which real services a test may rely on. Tests marked `mysql` or `redis` need that service:
without it they skip, except under REQUIRE_SERVICES=1 (CI), where a missing one fails."""

import os
from pathlib import Path

import pytest
from django.conf import settings

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def uses_mysql() -> bool:
    return bool(settings.DATABASES["default"]["ENGINE"].endswith("mysql"))


def missing(reason: str) -> None:
    """Skip for want of a service, or fail when CI says every service is there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is not installed (apt-get install chromium)")

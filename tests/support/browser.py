"""Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.services import CHROMIUM, require_chromium

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


@contextmanager
def chromium() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; Django's ORM, used by the
    # fixtures, refuses to run beside one unless told it is deliberate (as Django's docs say).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield launched
            launched.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def open_dashboard(browser: Any, server: Any, login: dict[str, str], **context: Any) -> tuple[Any, list[str]]:
    """A logged-in page on /analytics/, and the console errors it will collect.

    Playwright runs wait_for_function's predicates with eval inside the page, which the
    page's Content-Security-Policy forbids; tests open it with bypass_csp unless they ask
    otherwise (test_dashboard_browser checks the page under its real policy)."""
    page = browser.new_context(**{"bypass_csp": True, **context}).new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server.url}/analytics/")
    page.fill("#id_username", login["username"])
    page.fill("#id_password", login["password"])
    page.click("button[type=submit]")
    page.wait_for_url("**/analytics/")
    return page, errors


def screenshot(page: Any, name: str) -> None:
    """Into test-artifacts/ (not committed), to be looked at."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

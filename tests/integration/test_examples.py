"""The integration guide's example scraper, and `make run`'s demo, end to end."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from metrics_app.models import PagePerformance, SchedulerMetric
from tests.support.servers import ROOT, DaphneServer, free_port


@pytest.mark.django_db(transaction=True)
def test_the_example_scraper_reports_what_it_did(daphne: DaphneServer, committed_api_key: str) -> None:
    port = free_port()
    site = subprocess.Popen([sys.executable, "examples/quotes_site.py", "--port", str(port)], cwd=ROOT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/quotes?page=1")
        env = {**os.environ, "WEALTHMETRICS_URL": daphne.url, "WEALTHMETRICS_API_KEY": committed_api_key}
        run = subprocess.run(
            [sys.executable, "examples/quotes_scraper.py", "--site", f"http://127.0.0.1:{port}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        site.terminate()
    assert run.returncode == 0, run.stderr
    assert "scraped 40 quotes; sent 10 records" in run.stdout
    navigations = PagePerformance.objects.filter(
        scraper_source="example-quotes", metric_type="page_navigation"
    )
    by_page = {row.page_url.rsplit("=", 1)[1]: (row.retry_count, row.success) for row in navigations}
    assert by_page == {"1": (0, True), "2": (0, True), "3": (1, True), "4": (0, True), "5": (2, False)}
    scrapes = PagePerformance.objects.filter(scraper_source="example-quotes", metric_type="page_scrape")
    assert [row.items_extracted for row in scrapes] == [10, 10, 10, 10]
    run_row = SchedulerMetric.objects.get(scheduler_name="example-quotes-run")
    assert (run_row.scraper_source, run_row.items_processed, run_row.success) == ("example-quotes", 40, True)


def test_make_run_shows_a_live_demo_with_a_past(tmp_path: Path) -> None:
    """A newcomer's first `make run` on the embedded default: the login, a week of history sent
    through the API, then live demo records."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEMO"}}
    env |= {"HOST": "127.0.0.1", "PORT": str(port), "VAR_DIR": str(tmp_path)}
    run = subprocess.Popen(
        ["make", "-s", "run"], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # As from a terminal: a suite started in the background inherits SIGINT ignored, and a
        # non-interactive shell could not undo that for the Ctrl-C this test sends.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        database = tmp_path / "wealthmetrics.sqlite3"
        deadline = time.monotonic() + 180  # the week's backfill is about 2 minutes of it
        while (
            time.monotonic() < deadline and stored(database, "created_at > datetime('now', '-1 minute')") < 20
        ):
            assert run.poll() is None, run.stdout.read() if run.stdout else ""
            time.sleep(0.5)
        assert stored(database, "created_at > datetime('now', '-1 minute')") >= 20  # live
        assert stored(database, "created_at < datetime('now', '-6 days')") > 1000  # and a past
        assert stored(database, "scraper_source = 'cnbc' AND success = 0") > 40  # a broken night
    finally:
        os.killpg(run.pid, signal.SIGINT)
        output, _ = run.communicate(timeout=30)
    assert f"Dashboard: http://127.0.0.1:{port}/analytics/" in output
    assert "Log in as: admin / " in output
    assert "Demo: simulated scrapers send live traffic" in output


def stored(database: Path, where: str = "true") -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=1) as db:
            return int(
                db.execute(f"SELECT COUNT(*) FROM scraper_page_performance WHERE {where}").fetchone()[0]
            )
    except sqlite3.OperationalError:  # not migrated yet, or busy
        return 0


def wait_until_up(url: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} did not come up"
            time.sleep(0.1)

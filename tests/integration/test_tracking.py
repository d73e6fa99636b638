"""The scraper kit's tracking helpers record the right fields on success, failure and retry."""

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from metrics_app import tracking
from metrics_app.collector import collector
from metrics_app.models import PagePerformance, SchedulerMetric
from tests.support.browser import chromium
from wealthmetrics_client import Field, MetricRecorder, MetricsClient, NavigationFailed, get_sink, set_sink


class ListSink(MetricRecorder[None]):
    """Keeps what the helpers record, as the keyword arguments they passed."""

    def __init__(self) -> None:
        self.navigations: list[dict[str, Any]] = []
        self.scrapes: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []

    def record_page_navigation(self, **fields: Any) -> None:
        self.navigations.append(fields)

    def record_page_scrape(self, **fields: Any) -> None:
        self.scrapes.append(fields)

    def record_scheduler_metric(self, **fields: Any) -> None:
        self.runs.append(fields)

    def record(self, metric: dict[str, Any]) -> None:
        raise AssertionError("the helpers record through the three record_* methods")


@pytest.fixture
def sink() -> Iterator[ListSink]:
    kept = ListSink()
    set_sink(kept)
    yield kept
    set_sink(None)


class FlakySite(BaseHTTPRequestHandler):
    """Answers an error (503 unless `errors` says otherwise) to the first `failures` requests
    of a path, then a page."""

    failures: dict[str, int] = {}
    errors: dict[str, int] = {}

    def do_GET(self) -> None:
        left = self.failures.get(self.path, 0)
        self.failures[self.path] = left - 1
        page = b"<table><tr><td>AAPL</td></tr></table>"
        status, body = (self.errors.get(self.path, 503), b"no") if left > 0 else (200, page)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakySite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_navigation_that_succeeds_after_retries(sink: ListSink, site: str) -> None:
    FlakySite.failures["/twice"] = 2
    with httpx.Client() as session:
        response = tracking.goto_with_retries(session, f"{site}/twice", scraper_source="cnbc", backoff=0.25)
    assert response.status_code == 200
    [navigation] = sink.navigations
    assert navigation["scraper_source"] == "cnbc" and navigation["url"] == f"{site}/twice"
    assert (navigation["retry_count"], navigation["success"], navigation["error"]) == (2, True, None)
    assert navigation["http_status"] == 200  # the final response's
    # three quick attempts; the waits between them (250 and 500 ms) are not navigation time
    assert navigation["navigation_duration_ms"] < 250


@pytest.mark.parametrize(("status", "tries"), [(404, 1), (403, 1), (408, 2), (429, 2), (500, 2)])
def test_only_errors_that_may_pass_are_retried(sink: ListSink, site: str, status: int, tries: int) -> None:
    path = f"/status-{status}"
    FlakySite.failures[path], FlakySite.errors[path] = 1, status
    with httpx.Client() as session:
        if tries == 1:
            with pytest.raises(NavigationFailed, match=f"HTTP {status}"):
                tracking.goto_with_retries(session, f"{site}{path}", scraper_source="cnbc", backoff=0.01)
        else:
            tracking.goto_with_retries(session, f"{site}{path}", scraper_source="cnbc", backoff=0.01)
    [navigation] = sink.navigations
    assert (navigation["retry_count"], navigation["success"]) == (tries - 1, tries > 1)


def test_a_navigation_that_never_succeeds_is_recorded_and_raised(sink: ListSink, site: str) -> None:
    FlakySite.failures["/down"] = 99
    with httpx.Client() as session, pytest.raises(NavigationFailed, match="HTTP 503"):
        tracking.goto_with_retries(session, f"{site}/down", scraper_source="cnbc", retries=1, backoff=0.01)
    [navigation] = sink.navigations
    assert (navigation["retry_count"], navigation["success"]) == (1, False)
    assert navigation["error"] == "NavigationFailed: HTTP 503"
    assert navigation["http_status"] == 503


def test_goto_takes_a_page_or_any_callable(sink: ListSink, site: str) -> None:
    FlakySite.failures["/page"] = 1  # a real Chromium page: goto() answers 503 once, then 200
    with chromium() as browser:  # its own, so its event loop is gone before the asyncio tests
        page = browser.new_page()
        response = tracking.goto_with_retries(
            page, f"{site}/page", scraper_source="webull", backoff=0.01, wait_until="load"
        )
        assert response.status == 200 and "AAPL" in page.content()
    calls: Iterator[Exception | str] = iter([ConnectionError("reset"), "ok"])

    def fetch(url: str) -> str:
        result = next(calls)
        if isinstance(result, Exception):
            raise result
        return result

    assert tracking.goto_with_retries(fetch, "https://x/fn", scraper_source="webull", backoff=0) == "ok"
    assert [(n["url"], n["retry_count"], n["success"]) for n in sink.navigations] == [
        (f"{site}/page", 1, True),
        ("https://x/fn", 1, True),
    ]
    with pytest.raises(TypeError, match="cannot navigate"):
        tracking.goto_with_retries(42, "https://x/", scraper_source="webull")


def test_async_goto_with_an_async_client(sink: ListSink, site: str) -> None:
    FlakySite.failures["/async"] = 1

    async def main() -> int:
        async with httpx.AsyncClient() as session:
            response = await tracking.goto_with_retries_async(
                session, f"{site}/async", scraper_source="marketbeat", backoff=0.01
            )
            return int(response.status_code)

    assert asyncio.run(main()) == 200
    assert sink.navigations[0]["retry_count"] == 1


def test_scrapes_count_items_and_bytes(sink: ListSink) -> None:
    quotes = tracking.scrape_page("cnbc", "https://x/q", "<td>é</td>", lambda html: ["AAPL", "MSFT"])
    assert quotes == ["AAPL", "MSFT"]
    with tracking.track_scrape("cnbc", "https://x/manual") as scrape:
        scrape.items, scrape.bytes = 7, 1234

    def broken_scrape() -> None:
        with tracking.track_scrape("cnbc", "https://x/broken") as scrape:
            scrape.bytes = 10
            raise KeyError("price")

    with pytest.raises(KeyError):
        broken_scrape()

    @tracking.tracked_scrape("cnbc")
    def parse(url: str, content: bytes) -> list[int]:
        return [1, 2, 3]

    parse("https://x/decorated", b"12345")
    fields = [
        (s["url"], s["items_extracted"], s["data_size"], s["success"], s["error"]) for s in sink.scrapes
    ]
    assert fields == [
        ("https://x/q", 2, 11, True, None),  # bytes of the UTF-8 text
        ("https://x/manual", 7, 1234, True, None),
        ("https://x/broken", 0, 10, False, "KeyError: 'price'"),
        ("https://x/decorated", 3, 5, True, None),
    ]


def test_a_scrape_with_a_schema_counts_each_field(sink: ListSink) -> None:
    def parse(html: str | bytes) -> list[dict[str, Any]]:
        return [
            {"symbol": "AAPL", "price": 191.2},
            {"symbol": "MSFT", "price": "—"},
            {"symbol": "?", "price": -3},
        ]

    schema = {"symbol": Field(str, pattern=r"[A-Z]+"), "price": Field(float, min=0)}
    tracking.scrape_page("cnbc", "https://x/q", "<td/>", parse, schema=schema)
    [scraped] = sink.scrapes
    assert scraped["items_extracted"] == 3
    # "?" and "—" are placeholders (empty); -3 is filled but out of range
    assert scraped["fields"] == {"symbol": {"filled": 2, "invalid": 0}, "price": {"filled": 2, "invalid": 1}}
    with pytest.raises(TypeError, match="list of items"):
        tracking.scrape_page(
            "cnbc", "https://x/q", "<td/>", lambda html: (q for q in parse(html)), schema=schema
        )


def test_scheduler_runs(sink: ListSink) -> None:
    @tracking.tracked_scheduler_run("nightly-prices", scraper_source="robinhood")
    def refresh() -> int:
        return 120

    assert refresh() == 120

    def failing_run() -> None:
        with tracking.track_scheduler_run("hourly") as run:
            run.items_processed = 3
            raise RuntimeError("lock held")

    with pytest.raises(RuntimeError):
        failing_run()
    assert [
        (r["scheduler_name"], r["scraper_source"], r["items_processed"], r["success"]) for r in sink.runs
    ] == [
        ("nightly-prices", "robinhood", 120, True),
        ("hourly", None, 3, False),
    ]
    assert sink.runs[1]["error"] == "RuntimeError: lock held"


def test_a_failure_to_record_never_hides_the_scrapers_own_exception() -> None:
    closed = MetricsClient("http://127.0.0.1:9", "wm_x", flush_at_exit=False)
    closed.close(timeout=0)
    with pytest.raises(KeyError, match="price"), tracking.track_scrape("cnbc", "https://x/", sink=closed):
        raise KeyError("price")


def test_errors_are_cut_to_the_api_limit(sink: ListSink) -> None:
    with pytest.raises(ValueError), tracking.track_navigation("cnbc", "https://x/"):
        raise ValueError("x" * 2000)
    assert len(sink.navigations[0]["error"]) == 500


@pytest.mark.django_db(transaction=True)
def test_in_process_the_helpers_record_through_the_collector() -> None:
    assert get_sink() is collector
    with tracking.track_navigation("robinhood", "https://robinhood.com/stocks/AAPL") as navigation:
        navigation.retry()
    with tracking.track_scheduler_run("every-minute"):
        pass
    collector.flush()
    row = PagePerformance.objects.get()
    assert (row.scraper_source, row.retry_count, row.success) == ("robinhood", 1, True)
    assert SchedulerMetric.objects.get().scheduler_name == "every-minute"


def test_configuration_picks_the_remote_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEALTHMETRICS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WEALTHMETRICS_API_KEY", "wm_test")
    remote = get_sink()
    set_sink(None)
    assert isinstance(remote, MetricsClient)
    remote.close(timeout=0)
    assert remote.endpoint == "http://127.0.0.1:9/api/metrics/"

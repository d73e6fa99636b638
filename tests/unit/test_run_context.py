"""The scraper kit's runs (docs/integration.md, "Runs"): every record made inside
track_scheduler_run() or run() carries the run's id, in asyncio tasks and context-copying
threads alike, and concurrent runs keep their own."""

import asyncio
import contextvars
import threading
from typing import Any

import pytest

from metrics_app import records
from wealthmetrics_client.recorder import MetricRecorder
from wealthmetrics_client.tracking import run, track_navigation, track_scheduler_run, track_scrape


class Kept(MetricRecorder[None]):
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, metric: dict[str, Any]) -> None:
        self.records.append(metric)


def test_a_scheduler_run_gives_its_records_one_new_id_and_ends_with_it() -> None:
    sink = Kept()
    with track_scheduler_run("quotes-refresh", sink=sink) as handle:
        with track_navigation("cnbc", "https://cnbc.com/q/AAPL", sink=sink):
            pass
        with track_scrape("cnbc", "https://cnbc.com/q/AAPL", sink=sink) as scrape:
            scrape.items = 3
        handle.items_processed = 3
    with track_scrape("cnbc", "https://cnbc.com/q/MSFT", sink=sink):
        pass  # after the run: no runId

    assert handle.run_id is not None
    records.validate_records(sink.records)  # the ids are ones the server accepts
    assert [r.get("runId") for r in sink.records] == [handle.run_id] * 3 + [None]
    assert sink.records[2]["type"] == "scheduler_run"  # the run's own record comes last, and ends it
    with track_scheduler_run("quotes-refresh", sink=sink) as again:
        pass
    assert again.run_id != handle.run_id


def test_a_failed_run_still_ends_with_its_id() -> None:
    sink = Kept()
    with pytest.raises(RuntimeError), track_scheduler_run("quotes-refresh", sink=sink) as handle:
        raise RuntimeError("the site moved")
    assert sink.records[0]["runId"] == handle.run_id and sink.records[0]["success"] is False


def test_tasks_and_context_copying_threads_carry_the_run_and_concurrent_runs_keep_their_own() -> None:
    sink = Kept()

    async def crawl(run_id: str) -> None:
        with run(run_id):

            async def page(n: int) -> None:
                await asyncio.sleep(0.001 * n)
                with track_scrape("webull", f"https://webull.com/{run_id}/{n}", sink=sink):
                    pass

            await asyncio.gather(*(asyncio.create_task(page(n)) for n in range(3)))
            await asyncio.to_thread(_scrape, sink, f"https://webull.com/{run_id}/thread")

    async def both() -> None:
        await asyncio.gather(crawl("crawl-a"), crawl("crawl-b"))

    asyncio.run(both())
    by_run: dict[str, set[str]] = {}
    for record in sink.records:
        by_run.setdefault(record["runId"], set()).add(record["url"].split("/")[3])
    assert by_run == {"crawl-a": {"crawl-a"}, "crawl-b": {"crawl-b"}}
    assert len(sink.records) == 8

    with run("threaded"):
        worker = threading.Thread(target=contextvars.copy_context().run, args=(_record_one, sink))
        worker.start()
        worker.join()
    assert sink.records[-1]["runId"] == "threaded"


def _scrape(sink: Kept, url: str) -> None:
    with track_scrape("webull", url, sink=sink):
        pass


def _record_one(sink: Kept) -> None:
    _scrape(sink, "https://webull.com/t")


def test_runs_nest_and_the_outer_one_comes_back() -> None:
    sink = Kept()
    with run("outer"):
        with run("inner"):
            _record_one(sink)
        _record_one(sink)
    _record_one(sink)
    assert [r.get("runId") for r in sink.records] == ["inner", "outer", None]

"""Group commit (metrics_app.ingest.writer): requests waiting together share one transaction;
each gets its own records' ids, and a failed transaction fails exactly the requests in it."""

import threading
import time
from concurrent.futures import Future
from typing import Any

import pytest
from django.db import OperationalError

from metrics_app.ingest import writer as writer_module
from metrics_app.ingest.writer import GroupWriter, Stored
from metrics_app.models import PagePerformance
from metrics_app.records import validate_records
from tests.support.records import navigation

pytestmark = pytest.mark.django_db(transaction=True)


def batch(source: str, n: int) -> list[Any]:
    return validate_records([navigation(scraperSource=source, url=f"https://x/{i}") for i in range(n)])


def ids(stored: "Future[Stored]") -> list[int]:
    result = stored.result(timeout=10)
    assert isinstance(result, list)
    return result


def test_waiting_requests_share_a_transaction_and_each_gets_its_own_ids() -> None:
    writer = GroupWriter(autostart=False)  # all three wait together
    futures = [writer.submit(batch(f"g{n}", n + 1)) for n in range(3)]
    writer.start()

    for n, found in enumerate(ids(future) for future in futures):
        rows = PagePerformance.objects.filter(pk__in=found)
        assert len(found) == n + 1 and {row.scraper_source for row in rows} == {f"g{n}"}
    assert PagePerformance.objects.count() == 6


def test_a_failed_transaction_fails_exactly_the_requests_in_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = writer_module.store_batches

    def store(batches: Any) -> Any:
        if any(record.scraper_source == "poison" for records, _ in batches for record in records):
            raise OperationalError("the transaction failed")
        return real(batches)

    monkeypatch.setattr(writer_module, "store_batches", store)
    writer = GroupWriter(autostart=False)
    failing = [writer.submit(batch("a", 2)), writer.submit(batch("poison", 1))]
    writer.start()
    for future in failing:
        with pytest.raises(OperationalError):
            future.result(timeout=10)
    later = writer.submit(batch("b", 3))  # the writer goes on
    assert len(ids(later)) == 3
    assert list(PagePerformance.objects.values_list("scraper_source", flat=True)) == ["b"] * 3


def test_records_withdrawn_before_a_writer_took_them_are_not_stored() -> None:
    writer = GroupWriter(autostart=False)
    withdrawn, kept = writer.submit(batch("gave-up", 2)), writer.submit(batch("waited", 1))
    assert withdrawn.cancel()  # what an overloaded request does after METRICS_INGEST_QUEUE_MS
    writer.start()
    assert len(ids(kept)) == 1
    assert list(PagePerformance.objects.values_list("scraper_source", flat=True)) == ["waited"]
    assert len(ids(writer.submit(batch("late", 1)))) == 1  # the writer goes on


def test_small_groups_wait_for_the_first_writer_and_big_ones_go_beside_it(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """While the first writer commits, small batches gather into one group for after it (side
    by side they would upsert the same rollup rows); PARALLEL_RECORDS waiting go at once, on
    another writer."""
    settings.METRICS_DB_WRITERS = 2
    monkeypatch.setattr(writer_module, "HELP_AFTER_S", 10.0)  # not held up for long, here
    groups, release = slow_store(monkeypatch)
    writer = GroupWriter()
    slow = writer.submit(batch("slow", 1))
    while not groups:
        time.sleep(0.001)
    small = [writer.submit(batch(f"small{n}", 2)) for n in range(3)]
    time.sleep(0.05)  # far past MAX_WAIT_S: the small ones still wait for the slow group
    assert groups == [["slow"]]
    big = writer.submit(batch("big", writer_module.PARALLEL_RECORDS - 6))
    assert len(ids(big)) == writer_module.PARALLEL_RECORDS - 6  # beside the slow one, which still waits
    assert not slow.done()
    release.set()
    assert all(len(ids(future)) == 2 for future in small) and len(ids(slow)) == 1
    assert groups == [["slow"], ["small0", "small1", "small2", "big"]]


def test_a_held_up_first_writer_is_helped_with_small_requests(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """While the first writer is held up (a slow commit, a lock wait), small requests do not
    wait for it beyond HELP_AFTER_S: another writer takes them."""
    settings.METRICS_DB_WRITERS = 2
    groups, release = slow_store(monkeypatch)
    writer = GroupWriter()
    slow = writer.submit(batch("slow", 1))
    while not groups:
        time.sleep(0.001)
    started = time.monotonic()
    small = [writer.submit(batch(f"small{n}", 2)) for n in range(3)]
    assert all(len(ids(future)) == 2 for future in small)
    assert writer_module.HELP_AFTER_S <= time.monotonic() - started < 1
    assert not slow.done()
    release.set()
    assert len(ids(slow)) == 1
    assert groups == [["slow"], ["small0", "small1", "small2"]]


def slow_store(monkeypatch: pytest.MonkeyPatch) -> tuple[list[list[str]], threading.Event]:
    """store_batches, noting each group's sources; a group of "slow" waits for the event."""
    real, release = writer_module.store_batches, threading.Event()
    groups: list[list[str]] = []

    def store(batches: Any) -> Any:
        groups.append([records[0].scraper_source for records, _ in batches])
        if groups[-1] == ["slow"]:
            assert release.wait(10)
        return real(batches)

    monkeypatch.setattr(writer_module, "store_batches", store)
    return groups, release


def test_every_request_of_a_burst_is_answered(settings: Any) -> None:
    """Bursts of concurrent small and big batches, ending at once: none is left waiting."""
    settings.METRICS_DB_WRITERS = 2
    writer = GroupWriter()
    for burst in range(5):
        futures = [writer.submit(batch(f"b{burst}-{n}", 600 if n % 16 == 0 else 3)) for n in range(64)]
        for future in futures:
            assert ids(future)
    assert PagePerformance.objects.count() == 5 * (4 * 600 + 60 * 3)

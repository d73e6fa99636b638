"""Group commit (metrics_app.ingest.writer): requests waiting together share one transaction;
each gets its own records' ids, and a failed transaction fails exactly the requests in it."""

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

"""Every validation rule of a metric record (docs/api.md, "A metric record"), and the wire round trip."""

from typing import Any

import orjson
import pytest

from metrics_app.records import (
    InvalidMetrics,
    PageNavigation,
    SchedulerRun,
    channel_of,
    decode_batch,
    now_ms,
    to_wire,
    validate_record,
)
from tests.support.records import navigation, scheduler_run, scrape


def errors_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(InvalidMetrics) as caught:
        decode_batch(orjson.dumps({"metrics": [record]}))
    return [e.as_dict() for e in caught.value.errors]


def the_field(record: dict[str, Any]) -> str:
    (error,) = errors_of(record)
    assert error["index"] == 0
    assert error["message"]
    return str(error["field"])


def test_accepts_each_record_type() -> None:
    records = decode_batch(orjson.dumps({"metrics": [navigation(), scrape(), scheduler_run()]}))
    assert [r.__class__.__name__ for r in records] == ["PageNavigation", "PageScrape", "SchedulerRun"]


def test_defaults_success_error_and_recorded_at() -> None:
    minimal = {"type": "page_navigation", "scraperSource": "webull", "url": "u", "navigationDurationMs": 5}
    (record,) = decode_batch(orjson.dumps({"metrics": [minimal]}))
    assert isinstance(record, PageNavigation)
    assert record.success is True and record.error is None and record.retry_count == 0
    assert record.recorded_at > 1_700_000_000_000


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (navigation(type="page_view"), "type"),
        ({k: v for k, v in navigation().items() if k != "type"}, "type"),
        (navigation(scraperSource="Robinhood"), "scraperSource"),
        (navigation(scraperSource="-robinhood"), "scraperSource"),
        (navigation(scraperSource="a" * 51), "scraperSource"),
        (navigation(scraperSource="rob hood"), "scraperSource"),
        ({k: v for k, v in navigation().items() if k != "scraperSource"}, "scraperSource"),
        (navigation(url="x" * 501), "url"),
        (navigation(url=""), "url"),
        ({k: v for k, v in navigation().items() if k != "url"}, "url"),
        (navigation(navigationDurationMs=-1), "navigationDurationMs"),
        (navigation(navigationDurationMs=1.5), "navigationDurationMs"),
        (navigation(navigationDurationMs="120"), "navigationDurationMs"),
        (navigation(navigationDurationMs=True), "navigationDurationMs"),
        (navigation(navigationDurationMs=2**31), "navigationDurationMs"),
        ({k: v for k, v in navigation().items() if k != "navigationDurationMs"}, "navigationDurationMs"),
        (navigation(retryCount=-2), "retryCount"),
        (navigation(success="yes"), "success"),
        (navigation(success=None), "success"),
        (navigation(error="e" * 501), "error"),
        (navigation(error=42), "error"),
        (navigation(recordedAt=1_700_000_000), "recordedAt"),  # seconds, not milliseconds
        (navigation(recordedAt="2026-01-01T00:00:00Z"), "recordedAt"),
        (navigation(scrapeDurationMs=5), "scrapeDurationMs"),  # another type's field
        (navigation(colour="red"), "colour"),
        (scrape(itemsExtracted=-1), "itemsExtracted"),
        (scrape(dataSize=-1), "dataSize"),
        (scrape(dataSize=2**30 + 1), "dataSize"),  # no page is a gigabyte: the sums stay safe
        (navigation(scraperSource="abc\n"), "scraperSource"),  # the whole string must match
        (navigation(recordedAt=now_ms() + 3 * 3_600_000), "recordedAt"),  # ahead of the clock
        ({k: v for k, v in scrape().items() if k != "itemsExtracted"}, "itemsExtracted"),
        ({k: v for k, v in scrape().items() if k != "scrapeDurationMs"}, "scrapeDurationMs"),
        ({k: v for k, v in scheduler_run().items() if k != "schedulerName"}, "schedulerName"),
        (scheduler_run(schedulerName="Nightly Prices"), "schedulerName"),
        (scheduler_run(executionDurationMs=-5), "executionDurationMs"),
        (scheduler_run(itemsProcessed=-5), "itemsProcessed"),
        (scheduler_run(scraperSource="CNBC"), "scraperSource"),
    ],
)
def test_rejects_breaking_a_rule_and_names_the_field(record: dict[str, Any], field: str) -> None:
    assert the_field(record) == field


def test_error_of_500_characters_and_url_of_500_are_accepted() -> None:
    decode_batch(orjson.dumps({"metrics": [navigation(error="e" * 500, url="u" * 500, success=False)]}))


def test_reports_every_bad_record_with_its_index() -> None:
    body = {"metrics": [navigation(), navigation(retryCount=-1), scrape(), scrape(colour=1)]}
    with pytest.raises(InvalidMetrics) as caught:
        decode_batch(orjson.dumps(body))
    assert [(e.index, e.field) for e in caught.value.errors] == [(1, "retryCount"), (3, "colour")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "body"),
        (b"{", "body"),
        (b"not json", "body"),
        (b"\xff\xfe", "body"),
        (b'{"metrics": "\\ud800"}', "body"),
        (b"0\x00", "body"),
        (b"[]", "metrics"),
        (b"{}", "metrics"),
        (b'{"metrics": {}}', "metrics"),
        (b'{"metrics": [1]}', "metrics"),
        (b'{"metrics": [], "extra": 1}', "extra"),
        (b'{"metrics": ' + b"[" * 5000 + b"]" * 5000 + b"}", "body"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "body"),
    ],
)
def test_rejects_malformed_bodies(body: bytes, field: str) -> None:
    with pytest.raises(InvalidMetrics) as caught:
        decode_batch(body)
    assert caught.value.errors[0].field == field


def test_deep_nesting_is_named_as_such() -> None:
    with pytest.raises(InvalidMetrics, match="nested too deeply"):
        decode_batch(b'{"metrics": ' + b"[" * 5000 + b"]" * 5000 + b"}")


def test_the_in_process_path_refuses_future_records_too() -> None:
    with pytest.raises(InvalidMetrics, match="recordedAt"):
        validate_record(navigation(recordedAt=now_ms() + 2 * 3_600_000))
    validate_record(navigation(recordedAt=now_ms() + 3_600_000 - 1000))


def test_channel_is_source_or_bare_scheduler_name() -> None:
    assert channel_of(validate_record(navigation(scraperSource="marketbeat"))) == "marketbeat"
    bare = validate_record(scheduler_run(schedulerName="hourly"))
    assert isinstance(bare, SchedulerRun)
    assert channel_of(bare) == "hourly"
    assert channel_of(validate_record(scheduler_run(scraperSource="cnbc"))) == "cnbc"


def test_wire_shape_round_trips() -> None:
    for record in (navigation(), scrape(), scheduler_run(), scheduler_run(scraperSource="cnbc")):
        assert to_wire(validate_record(record)) == record

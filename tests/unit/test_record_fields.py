"""The optional record fields `fields` and `httpStatus` (docs/api.md, "Fields and HTTP
statuses"): their rules, and their round trip through the wire shape and the stored row."""

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics_app.models import PagePerformance
from metrics_app.records import (
    FIELD_NAME_MAX_LENGTH,
    MAX_FIELDS,
    InvalidMetrics,
    PageScrape,
    decode_batch,
    fields_json,
    to_wire,
    validate_record,
)
from metrics_app.rollups import FIELD_HOURS, FIELD_MINUTES, STATUS_MINUTES, data_rows
from tests.support.records import navigation, scrape

names = st.from_regex(rf"\A[A-Za-z_][A-Za-z0-9_.]{{0,{FIELD_NAME_MAX_LENGTH - 1}}}\Z")


@st.composite
def scrapes_with_fields(draw: st.DrawFn) -> dict[str, Any]:
    items = draw(st.integers(0, 2**31 - 1))
    fields = {}
    for name in draw(st.lists(names, max_size=MAX_FIELDS, unique=True)):
        filled = draw(st.integers(0, items))
        fields[name] = {"filled": filled, "invalid": draw(st.integers(0, filled))}
    return scrape(itemsExtracted=items, fields=fields)


@given(scrapes_with_fields(), st.integers(100, 599))
def test_records_round_trip_through_the_wire_and_the_row(record: dict[str, Any], status: int) -> None:
    nav = navigation(httpStatus=status)
    decoded = decode_batch(orjson.dumps({"metrics": [record, nav]}))
    assert [to_wire(r) for r in decoded] == [record, nav]
    scraped = decoded[0]
    assert isinstance(scraped, PageScrape) and isinstance(scraped.fields, dict)
    row = PagePerformance(
        scraper_source="cnbc", metric_type="page_scrape", page_url=record["url"],
        scrape_duration_ms=record["scrapeDurationMs"], items_extracted=record["itemsExtracted"],
        data_size=record["dataSize"], created_at=datetime.fromtimestamp(record["recordedAt"] / 1000, UTC),
        field_counts=orjson.loads(fields_json(scraped.fields)),
    )  # fmt: skip
    assert to_wire(row.to_metric()) == record


def test_a_record_without_them_has_no_new_keys() -> None:
    for record in (navigation(), scrape()):
        assert to_wire(validate_record(record)) == record


def test_the_in_process_path_names_the_field_too() -> None:
    with pytest.raises(InvalidMetrics) as caught:
        validate_record(scrape(fields={"price": {"filled": 3, "invalid": 4}}))
    assert [e.field for e in caught.value.errors] == ["fields.price.invalid"]
    with pytest.raises(InvalidMetrics) as caught:
        validate_record(scrape(fields={"price": {"filled": 3}}))
    assert [e.field for e in caught.value.errors] == ["fields.price.invalid"]


def test_a_batch_is_summed_in_memory_per_source_field_and_bucket() -> None:
    at = 1_795_000_000_000 // 3_600_000 * 3_600_000
    batch = [scrape(recordedAt=at + i, fields={f"f{n}": {"filled": 20, "invalid": 1} for n in range(10)})
             for i in range(1000)] + [navigation(recordedAt=at, httpStatus=403), navigation(recordedAt=at)]  # fmt: skip
    rows = data_rows(decode_batch(orjson.dumps({"metrics": batch})))
    assert len(rows[FIELD_MINUTES]) == len(rows[FIELD_HOURS]) == 10
    assert {row[3:] for row in rows[FIELD_MINUTES]} == {(25_000, 20_000, 1000)}
    assert [row[2:] for row in rows[STATUS_MINUTES]] == [(403, 1)]


def test_records_without_them_add_no_rows() -> None:
    assert data_rows(decode_batch(orjson.dumps({"metrics": [navigation(), scrape()]}))) == {}

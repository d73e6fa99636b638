"""The scraper kit checks records by the server's rules: what it lets through, the server
accepts; what it refuses, the server would have refused."""

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics_app import records
from tests.support.records import navigation, scheduler_run, scrape
from wealthmetrics_client import records as client_rules
from wealthmetrics_client.records import InvalidRecord, checked


def test_the_limits_are_the_servers() -> None:
    assert client_rules.SOURCE_PATTERN == records.SOURCE_PATTERN
    assert client_rules.MAX_INT == records.MAX_INT
    assert client_rules.MAX_DATA_SIZE == records.MAX_DATA_SIZE
    assert client_rules.MAX_CLOCK_AHEAD_MS == records.MAX_CLOCK_AHEAD_MS
    assert client_rules.MIN_RECORDED_AT == records.MIN_RECORDED_AT
    assert client_rules.MAX_TEXT == 500
    assert client_rules.RUN_ID_PATTERN == records.RUN_ID_PATTERN
    assert client_rules.ENTITY_PATTERN == records.ENTITY_PATTERN
    assert client_rules.MAX_ENTITIES == records.MAX_ENTITIES


def server_accepts(record: dict[str, Any]) -> bool:
    try:
        records.decode_batch(orjson.dumps({"metrics": [record]}))
    except records.InvalidMetrics:
        return False
    return True


names = st.sampled_from(["cnbc", "CNBC", "cnbc\n", "", "a" * 50, "a" * 51, "yahoo-finance", "x y"])
numbers = st.one_of(
    st.integers(-5, 2**31 + 5), st.sampled_from([2**30, 2**30 + 1, 2**31 - 1]),
    st.floats(-2.0, 1e6, allow_nan=False), st.booleans(), st.none(),
)  # fmt: skip
texts = st.one_of(st.none(), st.text(max_size=3), st.text(min_size=498, max_size=502))
fields = st.sampled_from(
    ["scraperSource", "schedulerName", "url", "error", "navigationDurationMs", "retryCount",
     "scrapeDurationMs", "itemsExtracted", "dataSize", "executionDurationMs", "itemsProcessed",
     "recordedAt", "success", "httpStatus", "fields", "runId", "entities", "extra"]
)  # fmt: skip


def value_for(field: str) -> st.SearchStrategy[Any]:
    if field in ("scraperSource", "schedulerName"):
        return names
    if field in ("url", "error", "extra"):
        return texts
    if field == "success":
        return st.one_of(st.booleans(), st.integers(0, 1))
    if field == "httpStatus":
        return st.one_of(numbers, st.sampled_from([99, 100, 200, 403, 599, 600, 200.0]))
    if field == "runId":
        run_ids = [
            "r-1",
            "2026-12-07T01:00:00Z",
            "run.1:a_b",
            "R" * 64,
            "R" * 65,
            "-r",
            "r 1",
            "r/1",
            "r-1\n",
            "",
        ]
        return st.one_of(st.none(), st.sampled_from(run_ids), st.integers(0, 5), st.text(max_size=3))
    if field == "fields":
        counts = st.fixed_dictionaries({"filled": st.integers(-1, 30), "invalid": st.integers(-1, 30)})
        odd = st.sampled_from([{"filled": 1}, {"filled": 1, "invalid": 0, "x": 0}, [1, 0], None])
        return st.one_of(
            st.dictionaries(st.sampled_from(["price", "symbol", "9x", "a-b", "p" * 64, "p" * 65]), counts | odd,
                            max_size=3),
            st.sampled_from([None, [], "price", {f"f{n}": {"filled": 0, "invalid": 0} for n in range(51)}]),
        )  # fmt: skip
    if field == "entities":
        keys = st.sampled_from(
            ["AAPL", "BRK.B", "^GSPC", "EURUSD=X", "a/b", "", "-x", "a b", "A" * 64, "A" * 65, 7]
        )
        return st.one_of(
            st.lists(keys, max_size=4),
            st.sampled_from([None, "AAPL", {"AAPL": 1}, ["A"] * 1000, ["A"] * 1001]),
        )
    if field == "recordedAt":
        return st.one_of(st.integers(0, 2**43), st.just(records.now_ms() + 2 * 3_600_000))
    return numbers


MISSING = object()
changes = fields.flatmap(lambda field: st.tuples(st.just(field), value_for(field) | st.just(MISSING)))


@settings(max_examples=400, deadline=None)
@given(base=st.sampled_from([navigation, scrape, scheduler_run]), change=changes)
def test_the_client_refuses_exactly_what_the_server_refuses(base: Any, change: tuple[str, Any]) -> None:
    field, value = change
    record = {**base(), field: value}
    if value is MISSING:
        del record[field]
    try:
        cleaned = checked(record)
    except InvalidRecord:
        assert not server_accepts(record), record
    else:
        assert server_accepts(cleaned), (record, cleaned)


@pytest.mark.parametrize(
    ("change", "coerced"),
    [
        ({"navigationDurationMs": 412.6}, {"navigationDurationMs": 413}),
        ({"url": "u" * 600}, {"url": "u" * 500}),
        ({"error": "e" * 700}, {"error": "e" * 500}),
    ],
)
def test_values_with_one_safe_reading_are_coerced(change: dict[str, Any], coerced: dict[str, Any]) -> None:
    assert checked({**navigation(), **change}).items() >= coerced.items()

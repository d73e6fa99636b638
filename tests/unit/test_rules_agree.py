"""The page's JavaScript follows the server's rules: static/js/records.js against
metrics_app/records.py, static/js/tally.js against metrics_app/tally.py, and the refusals
static/js/data.js sets apart against the `blocked` verdict's, run in node."""

import json
import shutil
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from metrics_app import records
from metrics_app.alerts import verdicts
from metrics_app.tally import Tally
from tests.support.records import navigation, scheduler_run, scrape
from tests.support.servers import ROOT
from tests.support.services import REQUIRE_SERVICES

NAMES = ["cnbc", "yahoo-finance", "a" * 50, "a" * 51, "abc\n", "CNBC", "-cnbc", "x y", "", "s.b_c-d"]
RECORDS = [navigation(), scrape(), scheduler_run(), scheduler_run(scraperSource="cnbc")]
# Records to sum: every type, failures, retries, bytes, durations of every size.
SUMMED = [
    navigation(navigationDurationMs=120, retryCount=2, success=False, error="timeout"),
    navigation(navigationDurationMs=0),
    scrape(scrapeDurationMs=3301, itemsExtracted=17, dataSize=48_123),
    scrape(scrapeDurationMs=7, itemsExtracted=0, success=False, error="empty"),
    scheduler_run(executionDurationMs=61_000, itemsProcessed=500),
]

SCRIPT = """
import * as rules from "./static/js/records.js";
import * as tally from "./static/js/tally.js";
import * as data from "./static/js/data.js";
const [names, records, summed] = JSON.parse(process.argv[1]);
const bucketOf = (some) => some.reduce((b, r) => tally.addRecord(b, r), tally.emptyBucket("t"));
console.log(JSON.stringify({
  wildcard: rules.WILDCARD,
  pattern: rules.SOURCE_PATTERN.source,
  duration: rules.DURATION_FIELD,
  items: rules.ITEMS_FIELD,
  channelFields: rules.CHANNEL_FIELDS,
  refusals: data.REFUSAL_STATUSES,
  names: names.map(rules.isSourceName),
  channels: records.map(rules.channelOf),
  durations: records.map(rules.durationOf),
  itemCounts: records.map(rules.itemsOf),
  bucket: bucketOf(summed),
  totals: summed.reduce((t, r) => tally.addRecord(t, r, "records"), tally.emptyTotals()),
  merged: tally.mergeBuckets([bucketOf(summed.slice(0, 2)), null, bucketOf(summed.slice(2))]),
  mergedTotals: tally.mergeTotals([summed.slice(0, 2), summed.slice(2)].map(
    (some) => some.reduce((t, r) => tally.addRecord(t, r, "records"), tally.emptyTotals()))),
}));
"""


@pytest.fixture(scope="module")
def javascript() -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        if REQUIRE_SERVICES:
            pytest.fail("REQUIRE_SERVICES=1 but node is missing")
        pytest.skip("node is not installed")
    result = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, json.dumps([NAMES, RECORDS, SUMMED])],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_the_constants_are_the_servers(javascript: dict[str, Any]) -> None:
    assert javascript["wildcard"] == records.WILDCARD
    assert javascript["pattern"] == records.SOURCE_PATTERN
    assert javascript["duration"] == {kind: records.camel(f) for kind, f in records.DURATION_FIELD.items()}
    assert javascript["items"] == {kind: records.camel(f) for kind, f in records.ITEMS_FIELD.items()}
    assert javascript["channelFields"] == [records.camel(f) for f in records.CHANNEL_FIELDS]
    assert javascript["refusals"] == list(verdicts.REFUSAL_STATUSES)


def test_the_functions_decide_as_the_server_does(javascript: dict[str, Any]) -> None:
    assert javascript["names"] == [records.is_source_name(name) for name in NAMES]
    assert javascript["channels"] == [records.channel_of_wire(record) for record in RECORDS]
    parsed = [records.validate_record(record) for record in RECORDS]
    assert javascript["durations"] == [records.duration_of(record) for record in parsed]
    assert javascript["itemCounts"] == [records.items_of(record) for record in parsed]


def _sums(sums: dict[str, Any], counted: str = "count") -> tuple[Any, ...]:
    average = sums["avgDurationMs"]
    return (sums[counted], sums["successCount"], round(average, 1) if average is not None else None,
            sums["itemsExtracted"], sums["retries"], sums["dataSize"])  # fmt: skip


def test_the_page_sums_records_as_the_server_does(javascript: dict[str, Any]) -> None:
    server = Tally()
    for record in SUMMED:
        server.add_record(records.to_wire(records.validate_record(record)))
    bucket = server.as_bucket(datetime.now(UTC))
    assert _sums(javascript["bucket"]) == _sums(bucket)
    assert _sums(javascript["merged"]) == _sums(bucket)  # merging buckets adds what one bucket would
    totals = javascript["totals"]
    assert _sums(totals, "records") == _sums(bucket)
    assert (totals["failures"], round(totals["successRate"], 2)) == (server.failures, server.success_rate)
    merged = javascript["mergedTotals"]  # the page's "others": totals of several channels as one
    assert _sums(merged, "records") == _sums(bucket)
    assert (merged["failures"], round(merged["successRate"], 2)) == (server.failures, server.success_rate)

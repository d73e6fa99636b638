"""The page's JavaScript follows the server's record rules: static/js/records.js against
metrics_app/records.py, run in node."""

import json
import shutil
import subprocess
from typing import Any

import pytest

from metrics_app import records
from tests.support.records import navigation, scheduler_run, scrape
from tests.support.servers import ROOT
from tests.support.services import REQUIRE_SERVICES

NAMES = ["cnbc", "yahoo-finance", "a" * 50, "a" * 51, "abc\n", "CNBC", "-cnbc", "x y", "", "s.b_c-d"]
RECORDS = [navigation(), scrape(), scheduler_run(), scheduler_run(scraperSource="cnbc")]

SCRIPT = """
import * as rules from "./static/js/records.js";
const [names, records] = JSON.parse(process.argv[1]);
console.log(JSON.stringify({
  wildcard: rules.WILDCARD,
  pattern: rules.SOURCE_PATTERN.source,
  duration: rules.DURATION_FIELD,
  items: rules.ITEMS_FIELD,
  channelFields: rules.CHANNEL_FIELDS,
  names: names.map(rules.isSourceName),
  channels: records.map(rules.channelOf),
  durations: records.map(rules.durationOf),
  itemCounts: records.map(rules.itemsOf),
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
        [node, "--input-type=module", "-e", SCRIPT, json.dumps([NAMES, RECORDS])],
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


def test_the_functions_decide_as_the_server_does(javascript: dict[str, Any]) -> None:
    assert javascript["names"] == [records.is_source_name(name) for name in NAMES]
    assert javascript["channels"] == [records.channel_of_wire(record) for record in RECORDS]
    parsed = [records.validate_record(record) for record in RECORDS]
    assert javascript["durations"] == [records.duration_of(record) for record in parsed]
    assert javascript["itemCounts"] == [records.items_of(record) for record in parsed]

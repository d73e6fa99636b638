"""GET /api/fields/ (contract section 13): one source's fields and HTTP statuses over a range,
the sums of the records sent, along the page's axis; every source's statuses; who may read
it; bad parameters."""

import random
from bisect import bisect_right
from collections import Counter
from datetime import datetime
from io import StringIO
from typing import Any

import orjson
import pytest
from django.core.management import call_command

from metrics_app.records import now_ms
from tests.support.asgi import AsgiClient
from tests.support.records import navigation, scrape

pytestmark = pytest.mark.django_db(transaction=True)

MINUTE, HOUR = 60_000, 3_600_000


def send(asgi: AsgiClient, key: str, records: list[dict[str, Any]]) -> None:
    for first in range(0, len(records), 1000):
        body = orjson.dumps({"metrics": records[first : first + 1000]})
        answer = asgi.post("/api/metrics/", data=body, content_type="application/json",
                           headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert answer.status_code == 202, answer.content


def read(asgi: AsgiClient, key: str | None, **params: str) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return asgi.get("/api/fields/", params, headers=headers)


def sent_records(rng: random.Random, now: int, span_ms: int, step_ms: int) -> list[dict[str, Any]]:
    """Pages of two sources over the range (all but its first bucket and a minute: the axis's
    first bucket starts up to a bucket after now minus the range), with some fields on some
    pages and statuses on most navigations."""
    records = []
    for _ in range(400):
        source = rng.choice(["cnbc", "yahoo"])
        at = now - rng.randrange(0, span_ms - step_ms - MINUTE)
        if rng.random() < 0.4:
            status = rng.choice([200, 200, 200, 301, 404, 429, 503, None])
            records.append(navigation(scraperSource=source, recordedAt=at,
                                      **({"httpStatus": status} if status else {})))  # fmt: skip
            continue
        items = rng.randrange(0, 30)
        fields = {}
        for name in rng.sample(["price", "change", "volume"], rng.randrange(0, 4)):
            filled = rng.randrange(0, items + 1)
            fields[name] = {"filled": filled, "invalid": rng.randrange(0, filled + 1)}
        records.append(scrape(scraperSource=source, recordedAt=at, itemsExtracted=items,
                              **({"fields": fields} if fields else {})))  # fmt: skip
    return records


def expected(
    records: list[dict[str, Any]], source: str, starts: list[int]
) -> tuple[dict[Any, Any], Counter[int]]:
    """Per (field, bucket index): items, filled, invalid; and navigations per status."""
    sums: dict[tuple[str, int], list[int]] = {}
    statuses: Counter[int] = Counter()
    for record in records:
        if record["scraperSource"] != source:
            continue
        bucket = bisect_right(starts, record["recordedAt"]) - 1
        for name, count in record.get("fields", {}).items():
            found = sums.setdefault((name, bucket), [0, 0, 0])
            found[0] += record["itemsExtracted"]
            found[1] += count["filled"]
            found[2] += count["invalid"]
        if record.get("httpStatus"):
            statuses[record["httpStatus"]] += 1
    return sums, statuses


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@pytest.mark.parametrize(
    ("range_name", "span_ms", "step_ms", "buckets"), [("1h", HOUR, MINUTE, 60), ("24h", 24 * HOUR, HOUR, 24)]
)
def test_the_answer_is_the_sums_of_the_records_sent(
    asgi: AsgiClient, committed_api_key: str, range_name: str, span_ms: int, step_ms: int, buckets: int
) -> None:
    records = sent_records(random.Random(range_name), now_ms(), span_ms, step_ms)
    send(asgi, committed_api_key, records)

    answer = read(asgi, committed_api_key, source="cnbc", range=range_name)

    assert answer.status_code == 200, answer.content
    found = answer.json()
    starts = [ms(bucket["start"]) for bucket in found["fields"][0]["buckets"]]
    assert len(starts) == buckets  # the whole axis, every field alike
    sums, statuses = expected(records, "cnbc", starts)
    assert [field["field"] for field in found["fields"]] == sorted({name for name, _ in sums})
    for field in found["fields"]:
        assert [ms(bucket["start"]) for bucket in field["buckets"]] == starts
        got = {(field["field"], n): [b["items"], b["filled"], b["invalid"]]
               for n, b in enumerate(field["buckets"]) if b["items"] or b["filled"]}  # fmt: skip
        want = {
            key: value for key, value in sums.items() if key[0] == field["field"] and (value[0] or value[1])
        }
        assert got == want
        items, filled, invalid = (
            sum(v[n] for k, v in sums.items() if k[0] == field["field"]) for n in range(3)
        )
        assert (field["items"], field["filled"], field["invalid"]) == (items, filled, invalid)
        assert field["filledRatio"] == (pytest.approx(filled / items) if items else None)
        assert field["validRatio"] == (pytest.approx((filled - invalid) / filled) if filled else None)
    assert {s["code"]: s["navigations"] for s in found["statuses"]} == dict(statuses)
    navigations = [s["navigations"] for s in found["statuses"]]
    assert navigations == sorted(navigations, reverse=True)  # commonest first


def test_every_source_answers_each_ones_statuses(asgi: AsgiClient, committed_api_key: str) -> None:
    records = sent_records(random.Random("every"), now_ms(), 24 * HOUR, HOUR)
    send(asgi, committed_api_key, records)

    answer = read(asgi, committed_api_key, range="24h")

    assert answer.status_code == 200, answer.content
    assert read(asgi, committed_api_key, source="*", range="24h").json() == answer.json()
    want = {source: expected(records, source, [0])[1] for source in ("cnbc", "yahoo")}
    found = answer.json()["sources"]
    assert [s["source"] for s in found] == sorted(want, key=lambda s: -want[s].total())  # busiest first
    for source in found:
        statuses = want[source["source"]]
        assert {s["code"]: s["navigations"] for s in source["statuses"]} == dict(statuses)
        assert source["navigations"] == statuses.total()
        navigations = [s["navigations"] for s in source["statuses"]]
        assert navigations == sorted(navigations, reverse=True)  # commonest first


def test_a_source_without_fields_answers_empty_lists(reader: AsgiClient) -> None:
    answer = reader.get("/api/fields/", {"source": "quiet", "range": "live"})
    assert answer.status_code == 200
    found = answer.json()
    stale = found.pop("staleEntities")
    assert found == {"fields": [], "statuses": []}
    # the live range's minutes, none stale
    assert len(stale) == 30 and {(b["stale"], b["total"]) for b in stale} == {(0, 0)}
    every = reader.get("/api/fields/", {"range": "live"})
    assert every.status_code == 200 and every.json() == {"sources": []}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"source": "Not A Source", "range": "1h"}, "source"),
        ({"source": "cnbc", "range": "2h"}, "range"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(
    reader: AsgiClient, params: dict[str, str], field: str
) -> None:
    answer = reader.get("/api/fields/", params)
    assert answer.status_code == 400
    assert answer.json()["field"] == field


def create(*options: str) -> str:
    out = StringIO()
    call_command("create_api_key", "fields reader", *options, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_who_may_read_it(asgi: AsgiClient, reader: AsgiClient) -> None:
    limited, ingest = create("--sources", "cnbc", "--scope", "read"), create("--scope", "ingest")
    assert read(asgi, limited, source="cnbc", range="1h").status_code == 200
    assert read(asgi, limited, source="yahoo", range="1h").status_code == 403
    assert read(asgi, limited, source="*", range="1h").status_code == 403
    assert read(asgi, limited, range="1h").status_code == 403
    assert read(asgi, ingest, source="cnbc", range="1h").status_code == 403
    assert read(asgi, None, source="cnbc", range="1h").status_code == 401
    assert read(asgi, "not-a-key", source="cnbc", range="1h").status_code == 401
    assert reader.get("/api/fields/", {"source": "cnbc", "range": "7d"}).status_code == 200

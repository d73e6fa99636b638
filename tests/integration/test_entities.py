"""Entity freshness (docs/api.md, "Entities"): `entities` on page_scrape, validated naming the
entry; when each source last refreshed each entity, written behind (under a server, within
METRICS_ENTITY_FLUSH_S) and read back stalest first by GET /api/entities/, with the source's
usual refresh interval learned and the stale ones counted; forgotten after the retention."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from django.core.management import call_command
from django.utils import timezone

from metrics_app import retention
from metrics_app.alerts.evaluator import Evaluator
from metrics_app.models import ApiKey, EntitySeen, StaleMinute
from metrics_app.records import epoch_ms, now_ms
from metrics_app.tally import iso
from tests.support.asgi import AsgiClient
from tests.support.db import store, stored
from tests.support.records import scrape
from tests.support.servers import DaphneServer
from tests.support.waiting import wait_for
from tests.support.ws import unique_source

pytestmark = pytest.mark.django_db(transaction=True)
MINUTE = 60_000


def send(client: AsgiClient, key: str, *metrics: dict[str, Any]) -> Any:
    return client.post(
        "/api/metrics/", data={"metrics": list(metrics)}, headers={"Authorization": f"Bearer {key}"}
    )


@pytest.mark.parametrize(
    ("entities", "field"),
    [(["AAPL", "bad symbol"], "entities[1]"), (["AAPL", ""], "entities[1]"), (["-AAPL"], "entities[0]"),
     (["A" * 65], "entities[0]"), ([17], "entities[0]"), ("AAPL", "entities"), (["AAPL"] * 1001, "entities")],
)  # fmt: skip
def test_bad_entities_are_refused_naming_the_entry(
    asgi: AsgiClient, api_key: str, entities: Any, field: str
) -> None:
    response = send(asgi, api_key, scrape(entities=["MSFT"]), scrape(entities=entities))
    assert response.status_code == 400
    assert [(d["index"], d["field"]) for d in response.json()["details"]] == [(1, field)]
    assert stored() == 0 and not EntitySeen.objects.exists()


def test_the_widest_entities_are_accepted(asgi: AsgiClient, api_key: str) -> None:
    widest = ["AAPL", "BRK.B", "^GSPC", "EURUSD=X", "BTC-USD", "NYSE:IBM", "a/b", "9" * 64]
    assert send(asgi, api_key, scrape(scraperSource="cnbc", entities=widest)).status_code == 202
    assert sorted(EntitySeen.objects.values_list("entity", flat=True)) == sorted(widest)


def entities_of(client: AsgiClient, key: str, **params: str) -> Any:
    return client.get("/api/entities/", params, headers={"Authorization": f"Bearer {key}"}).json()


def test_stale_entities_are_counted_by_the_usual_interval_learned(
    asgi: AsgiClient, api_key: str, settings: Any
) -> None:
    """Ten symbols refreshed every 2 minutes for 20 minutes; one of them stopped 10 minutes
    ago. The usual interval is 2 minutes, so stale is 6 minutes or more (the floor set to 1)."""
    settings.METRICS_ENTITY_STALE_S = 1
    symbols = [f"SYM{n}" for n in range(10)]
    now = now_ms()
    for minutes_ago in range(20, -1, -2):
        refreshed = [s for s in symbols if s != "SYM3" or minutes_ago >= 10]
        page = scrape(scraperSource="cnbc", entities=refreshed, recordedAt=now - minutes_ago * MINUTE)
        assert send(asgi, api_key, page).status_code == 202
    answer = entities_of(asgi, api_key, source="cnbc", stale="1")
    assert (answer["total"], answer["stale"], answer["usualIntervalS"], answer["staleAfterS"]) == (
        10,
        1,
        120,
        360,
    )
    (stalest,) = answer["entities"]
    assert stalest["entity"] == "SYM3" and 600 <= stalest["ageS"] < 660
    everything = entities_of(asgi, api_key, source="cnbc", limit="3")
    assert [e["entity"] for e in everything["entities"]] == ["SYM3", "SYM0", "SYM1"]  # stalest first
    assert everything["entities"][1]["usualIntervalS"] == 120


def test_the_floor_keeps_a_fast_source_from_crying_wolf(asgi: AsgiClient, api_key: str) -> None:
    """Refreshed every minute, one symbol missing for 5 minutes: under METRICS_ENTITY_STALE_S
    (15 minutes by default), so nothing is stale yet."""
    now = now_ms()
    for minutes_ago in range(10, -1, -1):
        refreshed = ["AAPL", "MSFT"] if minutes_ago >= 5 else ["AAPL"]
        assert (
            send(asgi, api_key, scrape(entities=refreshed, recordedAt=now - minutes_ago * MINUTE)).status_code
            == 202
        )
    answer = entities_of(asgi, api_key, source="cnbc", stale="1")
    assert (answer["total"], answer["stale"], answer["staleAfterS"]) == (2, 0, 900)


def test_under_a_server_freshness_is_written_behind_within_the_flush(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    server = start_daphne(METRICS_ENTITY_FLUSH_S="1")
    source = unique_source()
    auth = {"Authorization": f"Bearer {committed_api_key}"}
    pages = [
        scrape(scraperSource=source, entities=[f"S{n}", "SPY"], recordedAt=now_ms() - n) for n in range(50)
    ]
    response = httpx.post(
        f"{server.url}/api/metrics/", content=orjson.dumps({"metrics": pages}), headers=auth
    )
    assert response.status_code == 202

    def seen() -> int:
        return int(
            httpx.get(f"{server.url}/api/entities/", params={"source": source}, headers=auth).json()["total"]
        )

    assert wait_for(lambda: seen() == 51, timeout=10, interval=0.2)
    newest = max(page["recordedAt"] for page in pages)
    assert EntitySeen.objects.get(scraper_source=source, entity="SPY").last_seen_at == newest

    # the writes are bounded by the distinct pairs per flush, not the records: 100 entity keys
    # in 50 records, twice, are 51 rows each time
    def written() -> int:
        counters = httpx.get(f"{server.url}/api/stats/", headers=auth).json()["counters"]
        return int(counters.get("entity_rows_written", 0))

    assert written() == 51
    again = [{**page, "recordedAt": page["recordedAt"] + 1000} for page in pages]
    response = httpx.post(
        f"{server.url}/api/metrics/", content=orjson.dumps({"metrics": again}), headers=auth
    )
    assert response.status_code == 202
    assert wait_for(lambda: written() == 102, timeout=10, interval=0.2)


@pytest.mark.parametrize(("params", "field"), [({}, "source"), ({"source": "Bad"}, "source"),
                                               ({"source": "cnbc", "stale": "yes"}, "stale"),
                                               ({"source": "cnbc", "limit": "0"}, "limit")])  # fmt: skip
def test_bad_parameters_are_refused_naming_them(
    asgi: AsgiClient, api_key: str, params: dict[str, str], field: str
) -> None:
    response = asgi.get("/api/entities/", params, headers={"Authorization": f"Bearer {api_key}"})
    assert (response.status_code, response.json()["field"]) == (400, field)


def test_strangers_and_other_sources_keys_are_refused(asgi: AsgiClient) -> None:
    assert asgi.get("/api/entities/", {"source": "cnbc"}).status_code == 401
    limited = {
        "Authorization": f"Bearer {ApiKey.issue('webull reader', scope='read', sources=['webull'])[1]}"
    }
    assert asgi.get("/api/entities/", {"source": "cnbc"}, headers=limited).status_code == 403
    assert asgi.get("/api/entities/", {"source": "webull"}, headers=limited).status_code == 200


def test_entities_not_refreshed_within_the_retention_are_forgotten(asgi: AsgiClient, api_key: str) -> None:
    old, recent = now_ms() - int(timedelta(days=8).total_seconds() * 1000), now_ms() - MINUTE
    assert (
        send(
            asgi,
            api_key,
            scrape(entities=["OLD"], recordedAt=old),
            scrape(entities=["NEW"], recordedAt=recent),
        ).status_code
        == 202
    )
    call_command("cleanup_metrics", days=7, verbosity=0)
    assert list(EntitySeen.objects.values_list("entity", flat=True)) == ["NEW"]


def test_a_source_that_stops_refreshing_a_fifth_of_its_symbols_fires_stale_entities(
    settings: Any, asgi: AsgiClient, api_key: str
) -> None:
    """100 symbols refreshed every minute for half an hour; 20 of them stopped 20 minutes ago:
    stale_entities names how many of how many, the usual, and the stalest; the gauge counts them."""
    settings.METRICS_ENTITY_STALE_S = 60
    symbols = [f"SYM{n:02}" for n in range(100)]
    now = timezone.now().replace(microsecond=0)
    for minutes_ago in range(30, -1, -1):
        refreshed = symbols[20:] if minutes_ago < 20 else symbols
        at = epoch_ms(now) - minutes_ago * MINUTE
        store(scrape(scraperSource="cnbc", entities=refreshed, recordedAt=at))
    evaluator = Evaluator("test")
    events = evaluator.run_once(now)[1] + evaluator.run_once(now + timedelta(seconds=150))[1]
    (event,) = [e for e in events if e.alert.verdict == "stale_entities"]
    assert (event.status, event.alert.scraper_source, event.alert.value) == ("firing", "cnbc", 20)
    assert event.alert.summary == (
        "cnbc: 20 of 100 entities not refreshed for 3 min or more, usual 0; "
        "stalest: SYM00 (22 min), SYM01 (22 min), SYM02 (22 min)"
    )
    exposition = asgi.get("/metrics", headers={"Authorization": f"Bearer {api_key}"}).text
    assert 'wealthmetrics_entities_stale{source="cnbc"} 20.0' in exposition


def test_the_stale_count_is_written_each_minute_and_read_along_the_ranges_axis(
    settings: Any, asgi: AsgiClient, api_key: str
) -> None:
    """The evaluator writes each minute's stale count of each source with stale entities (once,
    however often it runs); GET /api/fields/ gives the most of each bucket along the range's
    axis, 0 of 0 where none was stale; retention forgets the minutes past it."""
    settings.METRICS_ENTITY_STALE_S = 60
    now = (timezone.now() - timedelta(minutes=5)).replace(second=10, microsecond=0)
    at = epoch_ms(now)
    store(scrape(scraperSource="cnbc", entities=["MSFT", "KO", "V"], recordedAt=at - 10 * MINUTE))
    store(scrape(scraperSource="cnbc", entities=["AAPL"], recordedAt=at - 60_000))
    store(scrape(scraperSource="cnbc", entities=["AAPL"], recordedAt=at - 30_000))
    # AAPL's interval (30 s) is the usual: stale after 90 s, which AAPL itself passes at :01
    evaluator = Evaluator("test")
    for seconds in (0, 15, 30, 75):  # three cycles in the minute, one in the next
        evaluator.run_once(now + timedelta(seconds=seconds))
    minute = now.replace(second=0)
    assert list(StaleMinute.objects.order_by("minute").values_list("minute", "stale", "total")) == [
        (minute, 3, 4),
        (minute + timedelta(minutes=1), 4, 4),
    ]
    answer = asgi.get(
        "/api/fields/",
        {"source": "cnbc", "range": "1h"},
        headers={"Authorization": f"Bearer {api_key}"},
    ).json()
    buckets = {b["start"]: (b["stale"], b["total"]) for b in answer["staleEntities"]}
    assert len(buckets) == 60
    assert [buckets[iso(minute + timedelta(minutes=n))] for n in (-1, 0, 1)] == [(0, 0), (3, 4), (4, 4)]
    retention.cleanup(now=now + timedelta(days=7, seconds=30))  # the first minute is past it
    assert list(StaleMinute.objects.values_list("stale", flat=True)) == [4]

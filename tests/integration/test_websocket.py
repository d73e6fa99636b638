"""/ws/metrics/ (docs/websocket.md) over real sockets against a running daphne."""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus

from metrics_app.models import ApiKey, PagePerformance, Scope
from tests.support.records import navigation, scheduler_run, scrape
from tests.support.servers import DaphneServer
from tests.support.strategies import client_messages
from tests.support.ws import (
    collect_batches,
    ingest,
    next_of,
    open_socket,
    records_in,
    send,
    subscribe,
    unique_source,
)

pytestmark = pytest.mark.django_db(transaction=True)


# --- handshakes ------------------------------------------------------------------------


def refused(server: DaphneServer, **options: Any) -> int:
    async def attempt() -> int:
        try:
            ws = await open_socket(server, **options)
        except InvalidStatus as exc:
            return int(exc.response.status_code)
        await ws.close()
        return 101

    return asyncio.run(attempt())


def test_refuses_strangers(daphne: DaphneServer) -> None:
    assert refused(daphne) == 403
    assert refused(daphne, key="wm_not-a-key") == 403
    assert refused(daphne, origin=daphne.url) == 403


def test_accepts_a_key_without_origin(daphne: DaphneServer, committed_api_key: str) -> None:
    assert refused(daphne, key=committed_api_key) == 101


def test_accepts_a_session_from_our_origin(daphne: DaphneServer, session: str) -> None:
    assert refused(daphne, session=session, origin=daphne.url) == 101


def test_refuses_a_session_from_a_foreign_origin(daphne: DaphneServer, session: str) -> None:
    assert refused(daphne, session=session, origin="https://evil.example") == 403
    assert refused(daphne, session=session) == 403  # no Origin: not a browser, and no key


def test_the_origin_must_match_scheme_host_and_port(daphne: DaphneServer, session: str) -> None:
    assert refused(daphne, session=session, origin="http://127.0.0.1:9") == 403  # another port
    assert refused(daphne, session=session, origin="http://127.0.0.1") == 403  # port 80
    assert refused(daphne, session=session, origin=daphne.url.replace("http:", "https:")) == 403
    assert refused(daphne, session=session, origin=daphne.url.replace("127.0.0.1", "localhost")) == 403


def test_without_origin_only_a_valid_key_counts(
    daphne: DaphneServer, session: str, committed_api_key: str
) -> None:
    # a session cookie with a made-up key is a browser's credentials without a browser's Origin
    assert refused(daphne, session=session, key="wm_made-up") == 403
    assert refused(daphne, session=session, key=committed_api_key) == 101


def test_trusted_origins_are_accepted(start_daphne: Callable[..., DaphneServer], session: str) -> None:
    server = start_daphne(CSRF_TRUSTED_ORIGINS="https://metrics.example.com")
    assert refused(server, session=session, origin="https://metrics.example.com") == 101
    assert refused(server, session=session, origin="https://metrics.example.com:8443") == 403


def test_refuses_a_key_from_a_foreign_origin(daphne: DaphneServer, committed_api_key: str) -> None:
    assert refused(daphne, key=committed_api_key, origin="https://evil.example") == 403


def test_refuses_clients_beyond_the_limit(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    server = start_daphne(METRICS_MAX_CLIENTS="2")

    async def scenario() -> None:
        first = await open_socket(server, key=committed_api_key)
        second = await open_socket(server, key=committed_api_key)
        await next_of(second, "connected")
        with pytest.raises(InvalidStatus):
            await open_socket(server, key=committed_api_key)
        await first.close()
        await asyncio.sleep(0.3)
        third = await open_socket(server, key=committed_api_key)  # room again
        await next_of(third, "connected")
        await asyncio.gather(second.close(), third.close())

    asyncio.run(scenario())


def test_the_limit_holds_while_a_process_starts(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    """A reconnect storm arrives as the process starts, while the first sockets wait for the
    hub's first load: a place is held before anything is awaited."""
    server = start_daphne(METRICS_MAX_CLIENTS="3")

    async def storm() -> int:
        async def one() -> Any:
            try:
                ws = await open_socket(server, key=committed_api_key)
                await next_of(ws, "connected")
                return ws
            except InvalidStatus:
                return None

        opened = [ws for ws in await asyncio.gather(*(one() for _ in range(12))) if ws is not None]
        await asyncio.gather(*(ws.close() for ws in opened))
        return len(opened)

    assert asyncio.run(storm()) == 3


def test_one_credential_cannot_take_every_place(start_daphne: Callable[..., DaphneServer]) -> None:
    """One key holds at most METRICS_MAX_CLIENTS_PER_CREDENTIAL sockets: the others still get in.
    Past its share, a handshake is answered 429 with Retry-After before a socket is built."""
    server = start_daphne(METRICS_MAX_CLIENTS="20", METRICS_MAX_CLIENTS_PER_CREDENTIAL="5")
    greedy, other = ApiKey.issue("greedy")[1], ApiKey.issue("other")[1]

    async def scenario() -> tuple[int, list[tuple[int, str | None, str]]]:
        held, refused = [], []
        for _ in range(8):
            try:
                held.append(await open_socket(server, key=greedy))
            except InvalidStatus as no:
                answer = no.response
                refused.append((answer.status_code, answer.headers.get("Retry-After"),
                                orjson.loads(answer.body or b"{}").get("error", "")))  # fmt: skip
        late = await open_socket(server, key=other)
        await next_of(late, "connected")
        await asyncio.gather(*(ws.close() for ws in [*held, late]))
        return len(held), refused

    assert asyncio.run(scenario()) == (5, [(429, "5", "too_many_connections")] * 3)
    assert server.stats(other)["counters"]["websocket_refused_share"] == 3


# --- the protocol ----------------------------------------------------------------------


def test_connected_then_update_then_history(daphne: DaphneServer, committed_api_key: str) -> None:
    source = unique_source()

    async def scenario() -> None:
        await ingest(
            daphne, committed_api_key, [navigation(scraperSource=source, url=f"u{i}") for i in range(150)]
        )
        async with await open_socket(daphne, key=committed_api_key) as ws:
            connected = orjson.loads(await ws.recv())
            assert connected["type"] == "connected"
            assert connected["clientId"].startswith("client-")
            assert (connected["heartbeatIntervalMs"], connected["batchIntervalMs"]) == (30000, 1000)
            update = orjson.loads(await ws.recv())
            assert update["type"] == "metrics:update"
            assert set(update["data"]) >= {"totals", "sources", "trends"}
            await send(ws, {"type": "subscribe", "scraperSource": source})
            subscribed = await next_of(ws, "subscribed")
            newest = subscribed.pop("newest")  # where this subscription starts (docs/websocket.md)
            assert set(newest) == {"page", "scheduler"}
            seq = subscribed.pop("seq")  # where its batches start (the 150 went by before)
            assert list(seq) == [source] and isinstance(seq[source], int)
            assert subscribed == {"type": "subscribed", "scraperSource": source, "subscriptions": [source]}
            history = await next_of(ws, "history")
            assert history["scraperSource"] == source
            assert [m["url"] for m in history["metrics"]] == [f"u{i}" for i in range(50, 150)]

    asyncio.run(scenario())


def test_subscribe_to_several_and_unsubscribe(daphne: DaphneServer, committed_api_key: str) -> None:
    a, b = unique_source(), unique_source()

    async def scenario() -> None:
        async with await open_socket(daphne, key=committed_api_key) as ws:
            await send(ws, {"type": "subscribe", "scraperSources": [a, b]})
            assert (await next_of(ws, "subscribed"))["subscriptions"] == sorted([a, b])
            await send(ws, {"type": "unsubscribe", "scraperSource": a})
            assert (await next_of(ws, "unsubscribed")) == {
                "type": "unsubscribed", "scraperSource": a, "subscriptions": [b],
            }  # fmt: skip
            await ingest(
                daphne, committed_api_key, [navigation(scraperSource=a), navigation(scraperSource=b)]
            )
            (batch,) = await collect_batches(ws, lambda got: len(got) == 1)
            assert batch["scraperSource"] == b
            with pytest.raises(TimeoutError):
                await next_of(ws, "metrics_batch", timeout=1.5)

    asyncio.run(scenario())


def test_ping_pong(daphne: DaphneServer, committed_api_key: str) -> None:
    async def scenario() -> None:
        async with await open_socket(daphne, key=committed_api_key) as ws:
            await send(ws, {"type": "ping"})
            assert (await next_of(ws, "pong"))["timestamp"] > 0

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "subscribe"}', "invalid_source"),
        ('{"type": "subscribe", "scraperSource": "Not Valid"}', "invalid_source"),
        ('{"type": "subscribe", "scraperSources": []}', "invalid_source"),
        ('{"type": "subscribe", "scraperSources": [' + ",".join(f'"s{i}"' for i in range(51)) + "]}", "too_many_subscriptions"),
        ('{"type": "ping", "pad": "' + "x" * 20_000 + '"}', "message_too_large"),
    ],
)  # fmt: skip
def test_bad_messages_get_an_error_and_the_socket_stays_open(
    daphne: DaphneServer, committed_api_key: str, message: str, code: str
) -> None:
    async def scenario() -> None:
        async with await open_socket(daphne, key=committed_api_key) as ws:
            await ws.send(message)
            error = await next_of(ws, "error")
            assert error["code"] == code
            assert error["message"]
            await send(ws, {"type": "ping"})
            await next_of(ws, "pong")

    asyncio.run(scenario())


def test_batches_carry_every_record_once_in_order(daphne: DaphneServer, committed_api_key: str) -> None:
    source, other = unique_source(), unique_source()
    base = 1_795_000_000_000

    async def scenario() -> None:
        async with (
            await open_socket(daphne, key=committed_api_key) as both,
            await open_socket(daphne, key=committed_api_key) as elsewhere,
        ):
            await send(both, {"type": "subscribe", "scraperSources": [source, "*"]})
            await subscribe(elsewhere, other)
            records = [
                scrape(scraperSource=source, url=f"u{i}", recordedAt=base + (i * 7919) % 250)
                for i in range(250)
            ]
            await ingest(daphne, committed_api_key, records[:120])
            await ingest(daphne, committed_api_key, [*records[120:], scheduler_run(scraperSource=source)])
            batches = await collect_batches(
                both, lambda got: sum(b["count"] for b in got if b["scraperSource"] == source) >= 251
            )
            mine = [b for b in batches if b["scraperSource"] == source]
            received = records_in(mine)
            assert len(received) == 251
            assert len({(m["type"], m["id"]) for m in received}) == 251  # once, though subscribed twice
            assert all(b["count"] == len(b["metrics"]) <= 100 for b in mine)
            for batch in mine:
                times = [m["recordedAt"] for m in batch["metrics"]]
                assert times == sorted(times)
            expected_seq = mine[0]["seq"]
            for batch in mine:  # contiguous numbering: no gap
                assert batch["seq"] == expected_seq
                expected_seq += batch["count"]
            with pytest.raises(TimeoutError):
                await next_of(elsewhere, "metrics_batch", timeout=1.5)

    asyncio.run(scenario())


def test_a_full_batch_goes_out_before_the_interval(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    server = start_daphne(METRICS_BATCH_INTERVAL_MS="5000", METRICS_MAX_BATCH_SIZE="10")
    source = unique_source()

    async def scenario() -> None:
        async with await open_socket(server, key=committed_api_key) as ws:
            await subscribe(ws, source)
            await ingest(
                server, committed_api_key, [navigation(scraperSource=source, url=f"u{i}") for i in range(25)]
            )
            first_two = await collect_batches(ws, lambda got: len(got) == 2, timeout=2)
            assert [b["count"] for b in first_two] == [10, 10]
            (rest,) = await collect_batches(ws, lambda got: len(got) == 1, timeout=7)
            assert rest["count"] == 5

    asyncio.run(scenario())


def test_heartbeats_arrive(start_daphne: Callable[..., DaphneServer], committed_api_key: str) -> None:
    server = start_daphne(METRICS_HEARTBEAT_INTERVAL_MS="1000")

    async def scenario() -> None:
        async with await open_socket(server, key=committed_api_key) as ws:
            assert (await next_of(ws, "connected"))["heartbeatIntervalMs"] == 1000
            assert (await next_of(ws, "heartbeat", timeout=3))["timestamp"] > 0

    asyncio.run(scenario())


def test_updates_follow_the_records(daphne: DaphneServer, committed_api_key: str) -> None:
    """An update lists the 50 busiest sources of a process that has seen many (this test
    server has): a key limited to the source sees its own."""
    source = unique_source()
    watcher = ApiKey.issue("watcher", Scope.READ, (source,))[1]

    async def scenario() -> None:
        async with await open_socket(daphne, key=watcher) as ws:
            await next_of(ws, "metrics:update")
            await ingest(
                daphne, committed_api_key, [navigation(scraperSource=source, success=False, error="x")] * 4
            )
            while True:
                update = await next_of(ws, "metrics:update", timeout=3)
                if source in update["data"]["sources"]:
                    break
            mine = update["data"]["sources"][source]
            assert (mine["records"], mine["successRate"], mine["errors"]) == (4, 0.0, 4)
            assert update["data"]["trends"][source]["records"]["direction"] in {"up", "down", "stable"}
            summary = httpx.get(
                f"{daphne.url}/api/metrics/summary/", headers={"Authorization": f"Bearer {watcher}"}
            )
            assert summary.json()["sources"][source] == mine

    asyncio.run(scenario())


def test_health_counts_clients_and_subscriptions(daphne: DaphneServer, committed_api_key: str) -> None:
    source = unique_source()

    async def scenario() -> None:
        async with await open_socket(daphne, key=committed_api_key) as ws:
            await subscribe(ws, source)
            public = daphne.health()
            assert public["connected"] is True
            assert public["clients"] >= 1 and public["subscriptionCount"] >= 1
            assert public["subscriptions"] == {}  # strangers see counts only
            assert daphne.health(committed_api_key)["subscriptions"][source] == 1
            stats = httpx.get(
                f"{daphne.url}/api/stats/", headers={"Authorization": f"Bearer {committed_api_key}"}
            )
            assert stats.json()["websocket"]["clients"] >= 1

    asyncio.run(scenario())


def newest_page_id() -> int:
    return PagePerformance.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_a_resync_brings_every_record_after_the_newest_held_in_pages(
    daphne: DaphneServer, committed_api_key: str
) -> None:
    source = unique_source()
    records = [navigation(scraperSource=source, url=f"https://x/{i}") for i in range(2500)]

    async def scenario() -> list[dict[str, Any]]:
        for start in range(0, 2500, 1000):
            await ingest(daphne, committed_api_key, records[start : start + 1000])
        async with await open_socket(daphne, key=committed_api_key) as ws:
            assert len((await subscribe(ws, source))["metrics"]) == 100  # without since: the newest 100
            # a page that held none of the source's records: all 2,500 were missed
            since = {"page": 0, "scheduler": 0}
            await send(ws, {"type": "subscribe", "scraperSource": source, "since": since})
            subscribed = await next_of(ws, "subscribed")
            stored_newest = await asyncio.to_thread(newest_page_id)
            assert 0 <= subscribed["newest"]["page"] <= stored_newest  # never ahead of what is stored
            pages = [await next_of(ws, "history")]
            while pages[-1]["more"]:
                pages.append(await next_of(ws, "history"))
            return pages

    pages = asyncio.run(scenario())
    assert [len(page["metrics"]) for page in pages] == [1000, 1000, 500]
    assert all(page["resync"] for page in pages) and not pages[-1]["truncated"]
    urls = [record["url"] for page in pages for record in page["metrics"]]
    assert urls == [f"https://x/{i}" for i in range(2500)]  # every one, once, in the order stored


def test_subscribed_says_where_the_batches_start_so_a_returning_client_sees_what_it_missed(
    daphne: DaphneServer, committed_api_key: str
) -> None:
    source = unique_source()

    async def scenario() -> None:
        async with await open_socket(daphne, key=committed_api_key) as ws:
            await subscribe(ws, source)
            await ingest(daphne, committed_api_key, [navigation(scraperSource=source)] * 2)
            (first,) = await collect_batches(ws, lambda got: len(got) == 1)
        expected = first["seq"] + first["count"]
        # away: 3 records were stored meanwhile
        await ingest(daphne, committed_api_key, [navigation(scraperSource=source)] * 3)
        await asyncio.sleep(1.5)  # published and batched without us
        async with await open_socket(daphne, key=committed_api_key) as ws:
            await send(ws, {"type": "subscribe", "scraperSource": "*"})
            starts = (await next_of(ws, "subscribed"))["seq"]
            assert starts[source] == expected + 3  # 3 missed: the client resyncs them
            await ingest(daphne, committed_api_key, [navigation(scraperSource=source)])
            batch = await next_of(ws, "metrics_batch")
            while batch["scraperSource"] != source:
                batch = await next_of(ws, "metrics_batch")
            assert batch["seq"] == starts[source]  # the next batch starts there

    asyncio.run(scenario())


def test_a_resync_is_paced_by_the_socket_not_cut_by_its_bound(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    """Pages larger than what a socket may hold (64 KiB here) all come, one once the socket
    has taken the last, and the resync is whole."""
    server = start_daphne(METRICS_CLIENT_BUFFER_BYTES=str(64 * 1024))
    source = unique_source()

    async def scenario() -> list[dict[str, Any]]:
        for _ in range(2):
            await ingest(server, committed_api_key, [navigation(scraperSource=source) for _ in range(750)])
        async with await open_socket(server, key=committed_api_key) as ws:
            await send(
                ws, {"type": "subscribe", "scraperSource": source, "since": {"page": 0, "scheduler": 0}}
            )
            pages = [await next_of(ws, "history")]
            while pages[-1]["more"]:
                await asyncio.sleep(0.5)  # a slow reader
                pages.append(await next_of(ws, "history"))
            return pages

    pages = asyncio.run(scenario())
    assert [(len(page["metrics"]), page["truncated"]) for page in pages] == [(1000, False), (500, False)]
    assert server.stats(committed_api_key)["counters"].get("clients_dropped_slow", 0) == 0


def test_a_socket_sending_faster_than_a_page_does_is_refused_politely(
    daphne: DaphneServer, committed_api_key: str
) -> None:
    """A page sends a message every few seconds; past a burst of 100 (twice the subscriptions
    a socket may hold), at 10 a second, a message is answered rate_limited and not handled:
    the socket stays open. A subscribe costs one for each source it names."""

    async def scenario() -> tuple[int, str, str]:
        async with await open_socket(daphne, key=committed_api_key) as ws:
            answers = []
            for _ in range(2):  # in two rounds: 64 waiting messages would be a flood
                for _ in range(50):
                    await send(ws, {"type": "ping"})
                answers += [await next_of(ws, "pong", timeout=5) for _ in range(50)]
            for _ in range(5):  # (the rounds took a moment: a ping or two more may have refilled)
                await send(ws, {"type": "ping"})
            refused = await next_of(ws, "error", timeout=5)
        async with await open_socket(daphne, key=committed_api_key) as ws:
            sources = [unique_source() for _ in range(50)]
            await send(ws, {"type": "subscribe", "scraperSources": sources})  # 50
            await send(ws, {"type": "unsubscribe", "scraperSources": sources})  # 100
            await send(ws, {"type": "subscribe", "scraperSources": sources[:5]})  # past it
            dearer = await next_of(ws, "error", timeout=5)
        return len(answers), refused["code"], dearer["code"]

    assert asyncio.run(scenario()) == (100, "rate_limited", "rate_limited")


def test_a_malformed_since_is_an_error_naming_it(daphne: DaphneServer, committed_api_key: str) -> None:
    async def scenario() -> dict[str, Any]:
        async with await open_socket(daphne, key=committed_api_key) as ws:
            await send(ws, {"type": "subscribe", "scraperSource": "*", "since": {"page": -1}})
            return await next_of(ws, "error")

    assert asyncio.run(scenario())["code"] == "invalid_since"


@given(st.lists(client_messages, min_size=20, max_size=60))
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_client_messages_never_crash_a_live_socket(
    daphne: DaphneServer, committed_api_key: str, texts: list[str]
) -> None:
    async def scenario() -> dict[str, Any]:
        async with await open_socket(daphne, key=committed_api_key) as ws:
            for text in texts:
                await ws.send(text)
            await asyncio.sleep(0.5)  # past 20 at once, messages are refused rate_limited: let some come back
            await send(ws, {"type": "ping"})
            return await next_of(ws, "pong", timeout=10)  # still answering

    log_before = len(daphne.log())
    assert asyncio.run(scenario())["type"] == "pong"
    assert "Traceback" not in daphne.log()[log_before:]

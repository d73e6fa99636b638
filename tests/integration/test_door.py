"""The one way in, walked around as the red team did (issue 21, points 8-13): over real
sockets against a real daphne, checking the answer, the process's memory, and what the
caller got to see."""

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import psutil
import pytest
from websockets.exceptions import InvalidStatus

from metrics_app.admission.door import FORM_BODY_BYTES, Head, checked, identify_now, is_own_origin, normalised
from metrics_app.models import ApiKey, PagePerformance, SchedulerMetric, Scope
from tests.support.records import navigation, scheduler_run
from tests.support.servers import DaphneServer
from tests.support.ws import next_of, open_socket, send, unique_source

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 1024 * 1024


def head(method: str, path: str, length: int, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer_before_body(server: DaphneServer, data: bytes, timeout: float = 5) -> bytes:
    """Send a request's head only; what comes back, without a byte of the body sent."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def key(scope: str = Scope.ALL, sources: tuple[str, ...] = ()) -> tuple[ApiKey, str]:
    return ApiKey.issue("door test", scope, sources)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- 8. no spelling of a path around the guard; no stranger's body anywhere ---------------------


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/api/%6detrics/", "/api/metrics/"),
        ("//api/metrics/", "/api/metrics/"),
        ("/api/metrics/.", "/api/metrics/"),
        ("/api/metrics/#x", "/api/metrics/"),
        ("/api/./metrics/../metrics//", "/api/metrics/"),
        ("/static/../api/alerts/silences/", "/api/alerts/silences/"),
        ("/api/%2e%2e/api/metrics", "/api/metrics"),
        ("/api/%ff/", None),
    ],
)
def test_every_spelling_of_a_path_is_judged_as_the_path_it_names(target: str, path: str | None) -> None:
    assert normalised(target.encode()) == path


@pytest.mark.parametrize("target", ["/api/%6detrics/", "//api/metrics/", "/api/metrics/.", "/api/metrics/#x"])
def test_ingest_spelled_otherwise_is_refused_before_the_body(daphne: DaphneServer, target: str) -> None:
    reply = answer_before_body(daphne, head("POST", target, 4 * MiB, Content_Type="application/json"))
    assert reply.startswith(b"HTTP/1.1 401 ")
    assert b"Bearer" in reply


@pytest.mark.parametrize(
    "path",
    ["/api/alerts/silences/", "/api/stats/", "/api/health/websocket", "/analytics/", "/nowhere/", "/admin/"],
)
def test_no_path_takes_a_strangers_body(daphne: DaphneServer, path: str) -> None:
    reply = answer_before_body(daphne, head("POST", path, 4 * MiB))
    assert reply.startswith(b"HTTP/1.1 401 "), reply[:100]
    assert b"a request with a body needs" in reply or b"log in" in reply


def test_the_login_form_takes_a_strangers_few_kilobytes_and_no_more(daphne: DaphneServer) -> None:
    small = answer_before_body(daphne, head("POST", "/accounts/login/", 2 * FORM_BODY_BYTES))
    assert small.startswith(b"HTTP/1.1 413 ")
    form = b"username=nobody&password=wrong"
    response = httpx.post(f"{daphne.url}/accounts/login/", content=form,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert response.status_code == 403  # through the door to Django, which wants its CSRF token


def test_strangers_bodies_cost_no_memory(start_daphne: Callable[..., DaphneServer]) -> None:
    """300 concurrent anonymous POSTs of 4 MiB to a path that needs a person (the red team's
    took RSS from 177 MB to 1,295 MB): each is answered before its body, and the bodies that
    come anyway are thrown away."""
    server = start_daphne()
    assert server.process is not None
    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss
    peak = before
    body = b"x" * (4 * MiB)

    async def stranger() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head("POST", "/api/alerts/silences/", len(body), Content_Type="application/json"))
        reply = await asyncio.wait_for(reader.read(65536), 30)
        try:  # a client that sends its body all the same
            writer.write(body)
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()
        return reply

    async def three_hundred() -> list[bytes]:
        nonlocal peak
        sending = asyncio.gather(*(stranger() for _ in range(300)))
        while not sending.done():
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.05)
        return await sending

    replies = asyncio.run(three_hundred())
    assert all(reply.startswith(b"HTTP/1.1 401 ") for reply in replies)
    assert peak - before < 60 * MiB, f"RSS {before / MiB:.0f} → {peak / MiB:.0f} MiB"


# --- 9. every answer and every message cut to the caller's scope --------------------------------


def test_an_ingest_key_reads_no_counters(daphne: DaphneServer) -> None:
    _, ingest_only = key(Scope.INGEST)
    assert httpx.post(f"{daphne.url}/api/metrics/", content=orjson.dumps({"metrics": [navigation()]}),
                      headers=bearer(ingest_only)).status_code == 202  # fmt: skip
    for path in ("/metrics", "/api/stats/", "/api/metrics/summary/"):
        refused = httpx.get(f"{daphne.url}{path}", headers=bearer(ingest_only))
        assert refused.status_code == 403, path
        assert refused.json()["error"] == "forbidden"
    health = httpx.get(f"{daphne.url}/api/health/websocket", headers=bearer(ingest_only)).json()
    assert health["subscriptions"] == {}


def test_a_key_limited_to_a_source_sees_only_its_figures(daphne: DaphneServer) -> None:
    mine, theirs = unique_source(), unique_source()
    _, writer = key()
    _, limited = key(Scope.READ, (mine,))
    body = orjson.dumps({"metrics": [navigation(scraperSource=mine), navigation(scraperSource=theirs)]})
    assert httpx.post(f"{daphne.url}/api/metrics/", content=body, headers=bearer(writer)).status_code == 202

    async def watch_both() -> None:
        watchers = [await open_socket(daphne, key=writer) for _ in range(2)]
        for ws, source in zip(watchers, (mine, theirs), strict=True):
            await send(ws, {"type": "subscribe", "scraperSource": source})
            await next_of(ws, "subscribed")
        exposition = httpx.get(f"{daphne.url}/metrics", headers=bearer(limited)).text
        assert mine in exposition and theirs not in exposition
        stats = httpx.get(f"{daphne.url}/api/stats/", headers=bearer(limited)).json()
        assert set(stats["websocket"]["subscriptions"]) == {mine}
        health = httpx.get(f"{daphne.url}/api/health/websocket", headers=bearer(limited)).json()
        assert set(health["subscriptions"]) == {mine}
        summary = httpx.get(f"{daphne.url}/api/metrics/summary/", headers=bearer(limited)).json()
        assert set(summary["sources"]) == {mine}
        for ws in watchers:
            await ws.close()

    asyncio.run(watch_both())


def test_a_limited_keys_socket_gets_updates_of_its_sources_only(daphne: DaphneServer) -> None:
    mine, theirs = unique_source(), unique_source()
    _, writer = key()
    _, limited = key(Scope.READ, (mine,))

    async def watch() -> dict[str, Any]:
        ws = await open_socket(daphne, key=limited)
        await next_of(ws, "connected")
        body = orjson.dumps({"metrics": [navigation(scraperSource=mine), navigation(scraperSource=theirs)]})
        async with httpx.AsyncClient() as client:
            await client.post(f"{daphne.url}/api/metrics/", content=body, headers=bearer(writer))
        while True:
            update = await next_of(ws, "metrics:update", timeout=10)
            if update["data"]["sources"]:
                await ws.close()
                return dict(update["data"])

    data = asyncio.run(watch())
    assert set(data["sources"]) == {mine}
    assert data["totals"]["records"] == 1


def test_reads_of_every_kind_are_rate_limited(start_daphne: Callable[..., DaphneServer]) -> None:
    server = start_daphne(METRICS_KEY_RATE_LIMIT="1", METRICS_KEY_RATE_BURST="1")
    _, reader = key(Scope.READ)
    for path in ("/metrics", "/api/stats/"):
        answers = [httpx.get(f"{server.url}{path}", headers=bearer(reader)).status_code for _ in range(3)]
        assert 429 in answers, (path, answers)


# --- 10. a limited key speaks only for its own names ---------------------------------------------


def test_a_limited_key_cannot_write_as_another_scheduler(daphne: DaphneServer) -> None:
    _, limited = key(Scope.INGEST, ("srca",))
    forged = scheduler_run(schedulerName="sched-srcb", scraperSource="srca", success=False, error="forged")
    refused = httpx.post(f"{daphne.url}/api/metrics/", content=orjson.dumps({"metrics": [forged]}),
                         headers=bearer(limited))  # fmt: skip
    assert refused.status_code == 403
    assert refused.json()["details"] == [
        {"index": 0, "field": "schedulerName", "message": "this key may not write 'sched-srcb'"}
    ]
    assert not SchedulerMetric.objects.filter(scheduler_name="sched-srcb").exists()


# --- 11. narrowing a key reaches its open sockets ------------------------------------------------


def test_narrowing_a_key_reaches_its_open_socket(start_daphne: Callable[..., DaphneServer]) -> None:
    server = start_daphne(METRICS_KEY_CACHE_SECONDS="1")
    mine, theirs = unique_source(), unique_source()
    api_key, token = key()

    async def narrowed() -> None:
        ws = await open_socket(server, key=token)
        await next_of(ws, "connected")
        await send(ws, {"type": "subscribe", "scraperSources": [mine, theirs, "*"]})
        for _ in range(3):
            await next_of(ws, "subscribed")
        api_key.sources = mine
        await asyncio.to_thread(api_key.save)
        started = time.monotonic()
        gone = {(await next_of(ws, "unsubscribed", timeout=5))["scraperSource"] for _ in range(2)}
        assert gone == {theirs, "*"}
        assert time.monotonic() - started < 2 * 1 + 1
        await send(ws, {"type": "subscribe", "scraperSource": theirs})
        error = await next_of(ws, "error")
        assert (error["code"], error["scraperSource"]) == ("forbidden", theirs)
        body = orjson.dumps({"metrics": [navigation(scraperSource=theirs), navigation(scraperSource=mine)]})
        _, writer = await asyncio.to_thread(key)
        async with httpx.AsyncClient() as client:
            await client.post(f"{server.url}/api/metrics/", content=body, headers=bearer(writer))
        batch = await next_of(ws, "metrics_batch", timeout=5)
        assert batch["scraperSource"] == mine
        await ws.close()

    asyncio.run(narrowed())


# --- 13. bad input is a 4xx naming the field, never a 500 -----------------------------------------


def test_a_page_number_of_other_digits_is_400(daphne: DaphneServer) -> None:
    _, reader = key(Scope.READ)
    response = httpx.get(f"{daphne.url}/api/metrics/failures/?page=%C2%B2", headers=bearer(reader))
    assert response.status_code == 400
    assert response.json()["field"] == "page"


@pytest.mark.parametrize("value", [["srca"], {"a": 1}, 7])
def test_a_silence_naming_a_source_of_the_wrong_type_is_400(reader: Any, value: Any) -> None:
    response = reader.post("/api/alerts/silences/", {"scraperSource": value, "minutes": 5})
    assert response.status_code == 400
    assert response.json()["field"] == "scraperSource"


def test_a_handshake_to_another_path_is_refused_cleanly(daphne: DaphneServer) -> None:
    _, reader = key(Scope.READ)
    before = daphne.log()

    async def handshake(path: str) -> int:
        from websockets.asyncio.client import connect

        try:
            async with connect(f"ws://127.0.0.1:{daphne.port}{path}", additional_headers=bearer(reader)):
                return 101
        except InvalidStatus as exc:
            return int(exc.response.status_code)

    assert asyncio.run(handshake("/ws/metrics")) == 403
    assert asyncio.run(handshake("/ws/nothing/")) == 403
    assert asyncio.run(handshake("/ws/%6detrics/")) == 101  # the same path, spelled otherwise
    assert "Traceback" not in daphne.log()[len(before) :]


def test_a_spelling_of_the_ingest_path_is_served_as_ingest(asgi: Any) -> None:
    """The path that is served is the path that was judged: a POST to a spelling of the
    ingest path is ingest, with its key and scope."""
    _, token = key(Scope.INGEST)
    body = {"metrics": [navigation(scraperSource="spelled")]}
    response = asgi.post("/api//metrics/.", body, headers=bearer(token))
    assert response.status_code == 202
    assert PagePerformance.objects.filter(scraper_source="spelled").count() == 1


def test_the_guard_and_the_door_agree_on_a_head() -> None:
    """The same checks judge a head under daphne (before the body) and in front of the app."""
    stranger = Head.of("http", "POST", b"/api/metrics/", {b"content-length": b"10"})
    caller = identify_now(stranger)
    assert caller is not None  # nobody: no key, no session
    refusal = checked(stranger, caller)
    assert (refusal.status, refusal.code) == (401, "unauthorized")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "method", "target", "asks"),
    [
        ("websocket", "GET", b"/ws/metrics/", True),  # the page's socket: who is logged in?
        ("http", "GET", b"/api/metrics/overview/", True),
        ("http", "POST", b"/analytics/", True),  # a body: who sends it?
        ("http", "GET", b"/static/js/boot.js", False),  # no lookup for a made-up cookie here
        ("http", "GET", b"/analytics/", False),  # Django's own authentication serves pages
    ],
)
def test_a_session_cookie_is_looked_up_where_it_matters(
    kind: str, method: str, target: bytes, asks: bool
) -> None:
    headers = {b"cookie": b"sessionid=never-seen-before"}
    if method == "POST":
        headers[b"content-length"] = b"10"
    head_ = Head.of(kind, method, target, headers)
    assert (identify_now(head_) is None) is asks  # None: the session must be looked up


# --- found in review ------------------------------------------------------------------------------


def test_a_root_path_header_does_not_move_a_path_past_the_door(daphne: DaphneServer) -> None:
    """daphne takes a root path from any client's Daphne-Root-Path header, and Django routes
    on the path without it: /x/metrics would have been judged a page and served as /metrics."""
    for path in ("/x/metrics", "/x/api/stats/", "/x/api/metrics/recent/"):
        response = httpx.get(f"{daphne.url}{path}", headers={"Daphne-Root-Path": "/x"})
        assert response.status_code in (401, 404), (path, response.status_code)
        assert "wealthmetrics_records" not in response.text and '"pid"' not in response.text


def test_a_refusal_after_a_lookup_is_answered_and_the_body_drained(daphne: DaphneServer) -> None:
    """A made-up key needs a lookup: the socket is paused meanwhile, and once refused, the
    body a client sends anyway is read and thrown away (well before the linger closes the
    connection), so a client is never left writing into a socket nobody reads."""
    body = b"x" * (4 * MiB)
    sent: list[float] = []

    def send() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(head("POST", "/api/metrics/", len(body), Authorization="Bearer wm_made-up") + body)
            sent.append(time.monotonic())

    with socket.create_connection(("127.0.0.1", daphne.port), timeout=10) as sock:
        sender = threading.Thread(target=send)
        sender.start()
        reply = sock.recv(65536)
        answered = time.monotonic()
        sender.join(10)
    assert reply.startswith(b"HTTP/1.1 401 ")
    assert sent and sent[0] - answered < 1.0  # all of it was taken (the linger would cut it at 2 s)


def test_a_body_that_came_while_its_caller_was_looked_up_keeps_to_the_callers_limit(
    daphne: DaphneServer,
) -> None:
    """A stranger's form with a made-up session cookie, sent whole in one burst: the cookie needs
    a lookup, the body arrives meanwhile, and it is judged against the form's limit after."""
    body = b"a=" + b"x" * (6 * FORM_BODY_BYTES)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    request = (b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
               b"Cookie: sessionid=never-issued-anywhere\r\n\r\n" + chunked)  # fmt: skip
    with socket.create_connection(("127.0.0.1", daphne.port), timeout=10) as sock:
        sock.sendall(request)
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413 ")


def test_a_limited_key_sees_no_process_wide_counters(daphne: DaphneServer) -> None:
    _, limited = key(Scope.READ, ("srca",))
    stats = httpx.get(f"{daphne.url}/api/stats/", headers=bearer(limited)).json()
    assert stats["counters"] == {} and "collector" not in stats and "alertNotifications" not in stats


def test_a_browser_behind_a_tls_proxy_opens_its_socket(settings: Any) -> None:
    """The proxy says https in SECURE_PROXY_SSL_HEADER's header, as Django's CSRF check reads it."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    behind = Head.of(
        "websocket", "GET", b"/ws/metrics/", {b"host": b"127.0.0.1", b"x-forwarded-proto": b"https"}
    )
    assert is_own_origin("https://127.0.0.1", behind)
    assert not is_own_origin("http://127.0.0.1", behind)
    direct = Head.of("websocket", "GET", b"/ws/metrics/", {b"host": b"127.0.0.1"})
    assert not is_own_origin("https://127.0.0.1", direct)

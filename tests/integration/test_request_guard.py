"""Bodies are checked before daphne reads them: size and key, over real sockets.

daphne reads a whole body before the application sees it, so without the guard a stranger's
800 MB body sat in a process's memory. Each test writes raw HTTP to a real daphne and reads
what comes back before (or instead of) sending the body.
"""

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

import httpx
import orjson
import psutil
import pytest

from metrics_app.admission.door import BEFORE_BODY, Head, checked, identify_now
from tests.support.records import navigation
from tests.support.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)


def head(length: int | None, key: str | None = None, path: str = "/api/metrics/", **extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer_to(server: DaphneServer, data: bytes, timeout: float = 5) -> tuple[bytes, socket.socket]:
    """Send `data` (headers, perhaps no body) and read what comes back within `timeout`."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.sendall(data)
    return sock.recv(65536), sock


def closed(sock: socket.socket, timeout: float = 5) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def judge(method: str, target: str, authorization: str | None, length: int | None) -> object:
    """What the guard does with a head: refuse it (its status), let it through (a caller), or
    look the caller up first (None)."""
    headers = {b"content-length": str(length).encode()} if length is not None else {}
    if authorization is not None:
        headers[b"authorization"] = authorization.encode()
    head_ = Head.of("http", method, target.encode(), headers)
    known = identify_now(head_)
    if known is None:
        return None
    verdict = checked(head_, known, BEFORE_BODY)
    return getattr(verdict, "status", verdict)


def test_judges_on_the_headers_alone(settings: object) -> None:
    settings.METRICS_MAX_BODY_BYTES = 1000  # type: ignore[attr-defined]
    assert judge("POST", "/api/metrics/?a=1", None, 10) == 401
    assert judge("POST", "/api/metrics", "Basic x", 10) == 401
    assert judge("POST", "/api/metrics/", "Bearer wm_unknown", 10) is None  # look it up
    assert judge("POST", "/accounts/login/", None, 1000) is not None  # people log in without a key…
    assert judge("POST", "/accounts/login/", None, 100_000) == 413  # …with a form, not more
    assert judge("POST", "/api/alerts/silences/", None, 10) == 401  # no stranger's body elsewhere
    assert judge("GET", "/api/metrics/recent/", None, None) == 401


def test_the_guard_is_in_place_under_daphne(daphne: DaphneServer, committed_api_key: str) -> None:
    assert daphne.stats(committed_api_key)["requestGuard"] is True


def test_a_declared_oversized_body_is_refused_unread(daphne: DaphneServer, committed_api_key: str) -> None:
    reply, sock = answer_to(daphne, head(800_000_000, committed_api_key))
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b'"too_large"' in reply
    assert closed(sock)


@pytest.mark.parametrize("key", [None, "wm_made-up-key"])
def test_no_valid_key_is_refused_before_the_body(daphne: DaphneServer, key: str | None) -> None:
    reply, sock = answer_to(daphne, head(100_000, key))  # the body is never sent
    assert reply.startswith(b"HTTP/1.1 401 ")
    assert b"WWW-Authenticate: Bearer" in reply
    sock.sendall(b"x" * 100_000)  # a client that sends the body anyway is read to the end…
    assert closed(sock)  # …then closed


def test_no_100_continue_for_a_refused_request(daphne: DaphneServer) -> None:
    reply, sock = answer_to(daphne, head(1000, "wm_made-up", Expect="100-continue"))
    assert reply.startswith(b"HTTP/1.1 401 ")
    assert closed(sock)


def test_a_valid_key_waiting_for_100_continue_gets_it(daphne: DaphneServer, committed_api_key: str) -> None:
    body = orjson.dumps({"metrics": [navigation(scraperSource="guard-continue")]})
    reply, sock = answer_to(daphne, head(len(body), committed_api_key, Expect="100-continue"))
    assert reply.startswith(b"HTTP/1.1 100 Continue")
    sock.sendall(body)
    assert sock.recv(65536).startswith(b"HTTP/1.1 202 ")
    sock.close()


def test_a_key_issued_after_start_works_at_once(
    daphne: DaphneServer, committed_api_key: str, django_db_blocker: object
) -> None:
    from metrics_app.models import ApiKey

    daphne.stats(committed_api_key)  # the server has its copy of the keys now
    fresh = ApiKey.issue("issued later")[1]
    body = orjson.dumps({"metrics": [navigation(scraperSource="guard-new-key")]})
    response = httpx.post(
        f"{daphne.url}/api/metrics", content=body, headers={"Authorization": f"Bearer {fresh}"}
    )
    assert response.status_code == 202  # without the trailing slash, too


def test_a_streamed_body_is_cut_at_the_limit_and_memory_stays_bounded(
    start_daphne: Callable[..., DaphneServer], committed_api_key: str
) -> None:
    limit = 1024 * 1024
    server = start_daphne(METRICS_MAX_BODY_BYTES=str(limit))
    assert server.process is not None
    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)

    async def stream() -> bytes:
        """Send up to 30 MB, stopping as soon as an answer comes (as curl does)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head(None, committed_api_key))
        answer = asyncio.ensure_future(reader.read(65536))
        for _ in range(30 * 16):
            if answer.done():
                break
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.001)  # let the answer in
        reply = await asyncio.wait_for(answer, 10)
        writer.close()
        return reply

    async def ten_at_once() -> list[bytes]:
        return await asyncio.gather(*(stream() for _ in range(10)))

    started = time.monotonic()
    replies = asyncio.run(ten_at_once())
    assert all(reply.startswith(b"HTTP/1.1 413 ") for reply in replies), replies
    assert time.monotonic() - started < 20
    assert process.memory_info().rss - before < 10 * 3 * limit  # ≤ 3 times the limit per request
    assert server.stats(committed_api_key)["counters"]["requests_too_large"] == 10


def test_slow_clients_are_not_held(start_daphne: Callable[..., DaphneServer], committed_api_key: str) -> None:
    server = start_daphne(METRICS_HTTP_IDLE_TIMEOUT_S="1", METRICS_HTTP_READ_TIMEOUT_S="1")
    assert server.stats(committed_api_key)["idleTimeout"] is True
    silent = socket.create_connection(("127.0.0.1", server.port))
    trickling = socket.create_connection(("127.0.0.1", server.port))
    trickling.sendall(
        b"POST /api/metrics/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + committed_api_key.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )  # fmt: skip
    started = time.monotonic()
    for _ in range(4):  # a byte now and then: each would reset an idle timeout
        time.sleep(0.4)
        with contextlib.suppress(OSError):
            trickling.sendall(b" ")
    trickling.settimeout(5)
    answer = b"".join(iter(lambda: trickling.recv(4096), b""))
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    silent.settimeout(5)
    assert silent.recv(1) == b""  # closed by the server
    assert time.monotonic() - started < 5

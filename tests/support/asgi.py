"""The application as daphne serves it (the door, the ingest route, Django), called in this
process: what users hit, without a socket. Like Django's test Client in use (`get`, `post`,
`force_login`), but through `wealthmetrics.asgi.application`, so every request is judged by
the door first. The door and the group writer read the database on threads of their own, so
tests using it must be transactional (what they store must be committed to be seen).

Network behaviour (the request guard, memory, slow clients) is tested against a real daphne
over real sockets instead (tests/support/servers.py).
"""

import asyncio
import secrets
import threading
from collections.abc import Mapping
from typing import Any

import httpx
import orjson
from django.test import Client

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _event_loop() -> asyncio.AbstractEventLoop:
    """One loop for every in-process request of the test session, on a thread of its own, as
    daphne's is: the hub, the bus and the loop-pressure watch live on it between requests."""
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="asgi-test-loop", daemon=True).start()
    return _loop


class Answer:
    """A response: status, headers (by name, any case), body."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = response.content

    def __getitem__(self, name: str) -> str:
        return self.headers[name]

    def has_header(self, name: str) -> bool:
        return name in self.headers

    def json(self) -> Any:
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode()

    def __repr__(self) -> str:
        return f"<Answer {self.status_code} {self.content[:200]!r}>"


class AsgiClient:
    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        from wealthmetrics.asgi import application

        self.application = application
        self.headers = dict(headers or {})
        self.cookies: dict[str, str] = {}

    def force_login(self, user: Any) -> None:
        """Log a person in: a real session, stored (committed) in the database."""
        django_client = Client()
        django_client.force_login(user)
        self.cookies["sessionid"] = django_client.cookies["sessionid"].value
        # Django's CSRF check compares the cookie's token with the header's
        self.cookies["csrftoken"] = token = secrets.token_hex(16)
        self.headers["X-CSRFToken"] = token

    def get(self, path: str, data: Mapping[str, Any] | None = None, **options: Any) -> Answer:
        return self.request("GET", path, params=data, **options)

    def post(
        self, path: str, data: Any = None, content_type: str = "application/json", **options: Any
    ) -> Answer:
        if data is not None and not isinstance(data, bytes | str):
            data = orjson.dumps(data)
        return self.request("POST", path, content=data, content_type=content_type, **options)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        content: bytes | str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
        **meta: str,
    ) -> Answer:
        """`meta` as Django's test client takes it: HTTP_AUTHORIZATION="…" is a header."""
        named = {
            key[5:].replace("_", "-").title(): value for key, value in meta.items() if key.startswith("HTTP_")
        }
        sent = {**self.headers, **named, **(headers or {})}
        if content_type is not None and content is not None:
            sent.setdefault("Content-Type", content_type)
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())

        encoded = {
            name.encode(): value.encode() for name, value in sent.items()
        }  # any text, as a client may send

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.application, client=("127.0.0.1", 40000))  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                return await client.request(
                    method, path, params=params, content=content, headers=list(encoded.items())
                )

        response = asyncio.run_coroutine_threadsafe(call(), _event_loop()).result(timeout)
        return Answer(response)

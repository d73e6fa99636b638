"""The ceiling for bench/ingest.py: a bare ASGI app on the project's own daphne that reads the
request body and answers 202, with no framework, key check, validation or database. What
wealthmetrics' ingest costs above this is the cost of its own work.

    .venv/bin/daphne -p 8001 bench.bare_app:application
"""

from typing import Any

ANSWER = b'{"accepted": 0}'


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")]})  # fmt: skip
    await send({"type": "http.response.body", "body": ANSWER})

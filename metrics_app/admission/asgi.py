"""The door as ASGI middleware, in front of everything the process serves.

Every request and every WebSocket handshake is judged (metrics_app.admission.door) before
any application sees it. What passes goes on with `scope["caller"]` set, `scope["path"]`
normalised and `scope["root_path"]` empty, so what is routed is exactly what was judged; what is
refused is answered here.

The service is served at the root of its host. daphne takes a `root_path` from its
`--root-path` option and from any client's `Daphne-Root-Path` header, and Django and Channels
route on the path with that prefix removed: a stranger's `GET /x/metrics` with
`Daphne-Root-Path: /x` would be judged as a page and served as `/metrics`. So it is dropped.
"""

import logging
from typing import Any

import orjson

from metrics_app import counters
from metrics_app.admission import refusals
from metrics_app.admission.door import NOBODY, Caller, Head, judge
from metrics_app.admission.refusals import Refusal
from metrics_app.stream.sockets import Frame, writer_for

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 1013


class Door:
    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.application(scope, receive, send)
        head = Head.of_scope(scope)
        verdict = await judge(head)
        if isinstance(verdict, Caller):
            admitted = {**scope, "path": head.path, "root_path": "", "caller": verdict}
            return await self.application(admitted, receive, send)
        if scope["type"] == "http":
            return await verdict.send_asgi(send)
        return await refuse_socket(verdict, receive, send)


async def refuse_socket(refusal: Refusal, receive: Any, send: Any) -> None:
    """A refused handshake is closed before it is accepted (the client sees 403). When the
    database cannot say who it is, the socket is accepted only to say so and close with 1013
    (try again later), which the page's client retries with backoff."""
    await receive()  # websocket.connect
    if refusal is not refusals.DATABASE_UNAVAILABLE:
        counters.incr("websocket_refused_auth")
        return await send({"type": "websocket.close"})
    counters.incr("websocket_refused_unavailable")
    await send({"type": "websocket.accept"})
    message = {"type": "error", "code": "unavailable", "message": refusal.message}
    # Through a socket writer: daphne refuses 1013 from an application (autobahn allows only
    # 1000 and 3000-4999 there); its writer sends the close frame itself.
    writer = writer_for(send)
    writer.send(Frame(orjson.dumps(message)))
    writer.close(CLOSE_TRY_AGAIN_LATER)


def caller_of(request: Any) -> Caller:
    """The caller the door admitted a Django request as (nobody, had it not come through it)."""
    caller = getattr(request, "scope", {}).get("caller")
    return caller if isinstance(caller, Caller) else NOBODY

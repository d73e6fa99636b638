"""Open sockets keep to their credentials' current rights.

Who may open /ws/metrics/ is judged by the door before the consumer exists
(metrics_app.admission.door). A socket stays open for hours; meanwhile its key may be
revoked or narrowed in the admin, or its person may log out. `CredentialWatch` re-reads every
open socket's rights every METRICS_KEY_CACHE_SECONDS (so a change counts within twice that):
- a key revoked, or no longer allowed to read, or a session ended (logout, expiry): the socket
  is closed with CLOSE_CREDENTIALS_ENDED, and the page goes to the login;
- a key narrowed to fewer sources: the socket keeps what the key still covers and is
  unsubscribed from the rest (the consumer's `rights_changed`).
A user made inactive is refused at the next handshake.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

from django.conf import settings
from django.db import DatabaseError

from metrics_app import counters, db
from metrics_app.admission.door import Caller
from metrics_app.admission.keys import KeyInfo, keys
from metrics_app.admission.people import live_sessions
from metrics_app.stream.sockets import SocketWriter

log = logging.getLogger(__name__)

# Close code for a socket whose key was revoked or whose session ended (docs/websocket.md);
# in the application's range, which every server lets an application send.
CLOSE_CREDENTIALS_ENDED: Final = 4401


class Watched(Protocol):
    """What the watch needs of a socket (the consumer)."""

    caller: Caller

    @property
    def writer(self) -> SocketWriter: ...

    def rights_changed(self, key: KeyInfo) -> None: ...


class CredentialWatch:
    """One task per process, started with its first socket."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self, clients: Callable[[], Iterable[Any]]) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(clients))

    async def _run(self, clients: Callable[[], Iterable[Any]]) -> None:
        while True:
            await asyncio.sleep(settings.METRICS_KEY_CACHE_SECONDS)
            try:
                await self.check(list(clients()))
            except DatabaseError:  # cannot tell now; the sockets stay until it can
                counters.incr("credential_checks_failed")
            except Exception:  # the watch must outlive any one pass
                log.exception("checking the credentials of open sockets failed")

    async def check(self, clients: list[Watched]) -> None:
        session_keys = {
            c.caller.session_key for c in clients if c.caller.key is None and c.caller.session_key
        }
        current = await db.run(keys.by_id)
        live = await db.run(live_sessions, session_keys) if session_keys else set()
        for client in clients:
            held = client.caller.key
            if held is None:
                ended = client.caller.session_key not in live
            else:
                now = current.get(held.id)
                ended = now is None or not now.reads
                if not ended and now != held:
                    assert now is not None
                    counters.incr("websocket_rights_changed")
                    client.rights_changed(now)
            if ended:
                counters.incr("websocket_closed_credentials")
                client.writer.close(CLOSE_CREDENTIALS_ENDED)


credentials = CredentialWatch()

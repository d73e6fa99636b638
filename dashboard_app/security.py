"""Who may open /ws/metrics/, decided before the consumer starts.

- A handshake without an Origin header is not from a browser: it must carry a valid API key,
  and the socket acts as that key (a session cookie beside it counts for nothing).
- A handshake with an Origin is from a browser: the Origin must be this site's own (scheme,
  host and port, as the browser reached us) or listed in CSRF_TRUSTED_ORIGINS, and the
  session must belong to an active user (or the request carry a valid key).

Anything else is refused with 403 before the consumer exists. When the database cannot say
(an outage), the socket is accepted only to send an error and close with 1013 (try again
later), which the page's client retries with backoff.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from channels.auth import get_user
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError
from django.http.request import split_domain_port, validate_host
from django.utils import timezone

from metrics_app import counters, db
from metrics_app.api.auth import KeyInfo, bearer_token, keys
from metrics_app.stream.sockets import Frame, writer_for

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER: Final = 1013
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Identity:
    """The key or the person a socket acts for."""

    key: KeyInfo | None = None
    user: AbstractBaseUser | None = None


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, with the scheme's default port filled in."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname.lower(), port


def is_own_origin(origin: str, scope: dict[str, Any], host: str) -> bool:
    """The page that opens the socket was served by us: same scheme, host and port as the
    handshake reached (Host header, ws → http, wss → https), or a trusted origin."""
    claimed = _origin(origin)
    if claimed is None:
        return False
    if any(_origin(trusted) == claimed for trusted in settings.CSRF_TRUSTED_ORIGINS):
        return True
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    return claimed == _origin(f"{scheme}://{host}")


async def identify(scope: dict[str, Any]) -> Identity | None:
    """The socket's identity, or None for a stranger. Raises DatabaseError in an outage."""
    headers = dict(scope.get("headers", []))
    token = bearer_token(headers.get(b"authorization", b"").decode("latin-1") or None)
    key: KeyInfo | None = None
    if token is not None:
        peeked = keys.peek(token)
        key = peeked if isinstance(peeked, KeyInfo) else await db.run(keys.lookup, token)
    if key is not None and not key.reads:  # an ingest-only key reads nothing, live or not
        return None
    origin = headers.get(b"origin")
    if origin is None:  # not a browser: a key or nothing
        return Identity(key=key) if key else None
    if not is_own_origin(origin.decode("latin-1"), scope, headers.get(b"host", b"").decode("latin-1")):
        return None
    if key:
        return Identity(key=key)
    user = await sessions.user(scope)
    return Identity(user=user) if user is not None else None


class SessionCache:
    """The person behind each session key seen lately, so that a storm of reconnecting pages
    costs one session lookup per session, not one per socket (concurrent handshakes of one
    session share one lookup). A session that ended (logout, expiry, a deactivated user)
    stops opening sockets within METRICS_KEY_CACHE_SECONDS."""

    MAX_ENTRIES: Final = 10_000

    def __init__(self) -> None:
        self._users: dict[str, tuple[float, AbstractBaseUser | None]] = {}
        self._lookups: dict[str, asyncio.Future[AbstractBaseUser | None]] = {}

    async def user(self, scope: dict[str, Any]) -> AbstractBaseUser | None:
        """The session's active user, or None. Raises DatabaseError in an outage."""
        session = scope.get("session")
        session_key = session.session_key if session is not None else None
        if not session_key:
            return None
        seen = self._users.get(session_key)
        if seen is not None and time.monotonic() - seen[0] < settings.METRICS_KEY_CACHE_SECONDS:
            return seen[1]
        lookup = self._lookups.get(session_key)
        if lookup is None:
            lookup = self._lookups[session_key] = asyncio.ensure_future(self._lookup(scope, session_key))
            lookup.add_done_callback(lambda _: self._lookups.pop(session_key, None))
        # shielded: one handshake going away must not cancel the lookup the others wait for
        return await asyncio.shield(lookup)

    async def _lookup(self, scope: dict[str, Any], session_key: str) -> AbstractBaseUser | None:
        counters.incr("session_lookups")
        started = time.monotonic()
        # A session object of its own: the socket's keeps what it read at the handshake, and a
        # check of a socket that is open must see a logout since.
        fresh = {**scope, "session": import_module(settings.SESSION_ENGINE).SessionStore(session_key)}
        found = await get_user(fresh)
        user = found if found.is_authenticated and found.is_active else None
        if len(self._users) >= self.MAX_ENTRIES:
            self._users.clear()  # a rare, cheap reset beats tracking ages
        self._users[session_key] = (started, user)
        return user


sessions = SessionCache()

# Close code for a socket whose key was revoked or whose session ended (docs/websocket.md);
# in the application's range, which every server lets an application send.
CLOSE_CREDENTIALS_ENDED: Final = 4401


class CredentialWatch:
    """Open sockets whose key was revoked, or whose session ended (logout, expiry), are closed
    with CLOSE_CREDENTIALS_ENDED: checked every METRICS_KEY_CACHE_SECONDS against the key copy
    and, in one query, the stored sessions, so within twice that. (A user made inactive is
    refused at the next handshake.) One task per process, started with its first socket."""

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

    async def check(self, clients: list[Any]) -> None:
        identities = [(client, client.scope.get("identity")) for client in clients]
        session_keys = {client.scope["session"].session_key for client, identity in identities
                        if identity is not None and identity.key is None}  # fmt: skip
        active = await db.run(keys.active_ids)
        live = await db.run(_live_sessions, session_keys) if session_keys else set()
        for client, identity in identities:
            if identity is None:
                continue
            if identity.key is not None:
                ended = identity.key.id not in active
            else:
                ended = client.scope["session"].session_key not in live
            if ended:
                counters.incr("websocket_closed_credentials")
                client.writer.close(CLOSE_CREDENTIALS_ENDED)


def _live_sessions(session_keys: set[str]) -> set[str]:
    """Which of these sessions still exist and have not expired (one query)."""
    from django.contrib.sessions.models import Session

    rows = Session.objects.filter(session_key__in=session_keys, expire_date__gt=timezone.now())
    return set(rows.values_list("session_key", flat=True))


credentials = CredentialWatch()


class IdentifiedSockets:
    """ASGI middleware: only identified sockets reach the application, with
    scope["identity"] (and scope["user"]) set."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        try:
            identity = await identify(scope)
        except DatabaseError as exc:
            counters.problem("websocket_refused_unavailable", log, "refusing sockets: database away: %s", exc)
            return await _try_again_later(receive, send)
        if identity is None:
            counters.incr("websocket_refused_auth")
            await receive()  # websocket.connect
            return await send({"type": "websocket.close"})  # before accept: 403
        user = identity.user or AnonymousUser()
        return await self.application({**scope, "identity": identity, "user": user}, receive, send)


async def _try_again_later(receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    message = {"type": "error", "code": "unavailable", "message": "the database is unreachable; retry later"}
    # Through a socket writer: daphne refuses 1013 from an application (autobahn allows only
    # 1000 and 3000-4999 there), its writer sends the close frame itself.
    writer = writer_for(send)
    writer.send(Frame(orjson.dumps(message)))
    writer.close(CLOSE_TRY_AGAIN_LATER)

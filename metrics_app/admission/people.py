"""People as the door sees them: the active user behind a session cookie.

Looked up once per session and kept METRICS_KEY_CACHE_SECONDS, so that a storm of
reconnecting pages, or a page's many requests, cost one lookup per session, not one per
request (concurrent lookups of one session share one). A session that ended (logout,
expiry, a deactivated user) stops counting within METRICS_KEY_CACHE_SECONDS.
"""

import asyncio
import time
from importlib import import_module
from types import SimpleNamespace
from typing import Final

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from metrics_app import counters, db
from metrics_app.admission.keys import UNKNOWN, Unknown

MAX_ENTRIES: Final = 10_000


class People:
    def __init__(self) -> None:
        self._users: dict[str, tuple[float, AbstractBaseUser | None]] = {}
        self._lookups: dict[str, asyncio.Future[AbstractBaseUser | None]] = {}

    def peek(self, session_key: str) -> AbstractBaseUser | Unknown | None:
        """Without the database: the session's user (or None: nobody) if known lately."""
        seen = self._users.get(session_key)
        if seen is not None and time.monotonic() - seen[0] < settings.METRICS_KEY_CACHE_SECONDS:
            return seen[1]
        return UNKNOWN

    async def lookup(self, session_key: str) -> AbstractBaseUser | None:
        """The session's active user, or None. Raises DatabaseError in an outage."""
        seen = self.peek(session_key)
        if seen is not UNKNOWN:
            return seen
        lookup = self._lookups.get(session_key)
        if lookup is None:
            lookup = self._lookups[session_key] = asyncio.ensure_future(self._lookup(session_key))
            lookup.add_done_callback(lambda _: self._lookups.pop(session_key, None))
        # shielded: one request going away must not cancel the lookup the others wait for
        return await asyncio.shield(lookup)

    async def _lookup(self, session_key: str) -> AbstractBaseUser | None:
        counters.incr("session_lookups")
        started = time.monotonic()
        user = await db.run(person_of, session_key)
        if len(self._users) >= MAX_ENTRIES:
            self._users.clear()  # a rare, cheap reset beats tracking ages
        self._users[session_key] = (started, user)
        return user


def person_of(session_key: str) -> AbstractBaseUser | None:
    """The active user of a stored session, as Django's own authentication finds it (the
    session's hash of the password included), or None. Blocks: call it from a thread."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = auth.get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
    return user if user.is_authenticated and user.is_active else None


def live_sessions(session_keys: set[str]) -> set[str]:
    """Which of these sessions still exist and have not expired (one query; blocking)."""
    from django.contrib.sessions.models import Session

    rows = Session.objects.filter(session_key__in=session_keys, expire_date__gt=timezone.now())
    return set(rows.values_list("session_key", flat=True))


people = People()

"""Who may call the API: machines with a bearer key, people with a logged-in session.

API keys are checked against a process-local copy of the active keys (`keys`), so a request
costs no database round trip for its key; see KeyCache for how long a revocation takes.
"""

import contextlib
import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Final

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from metrics_app import counters, db
from metrics_app.models import ApiKey, Scope, hash_key

View = Callable[..., HttpResponse]

MISSING_KEY: Final = "send a valid API key as 'Authorization: Bearer <key>'"
# last_used_at is a courtesy for the admin; writing it on every request would double the
# writes of a busy scraper, so each process refreshes it at most once a minute per key.
_LAST_USED_RESOLUTION: Final = timedelta(minutes=1)
# A key missing from the copy may be new: the copy is reloaded, but for misses at most this
# often, so made-up keys cannot become a stream of queries.
MISS_RELOAD_SECONDS: Final = 0.25


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    scope: str = Scope.ALL
    sources: frozenset[str] | None = None  # None: every source

    @classmethod
    def of(cls, api_key: ApiKey) -> "KeyInfo":
        return cls(api_key.pk, api_key.name, api_key.scope, api_key.source_list)

    @property
    def ingests(self) -> bool:
        return self.scope in (Scope.ALL, Scope.INGEST)

    @property
    def reads(self) -> bool:
        return self.scope in (Scope.ALL, Scope.READ)

    def covers(self, source: str | None) -> bool:
        """May it touch this source (None or '*': every source)?"""
        if self.sources is None:
            return True
        return source is not None and source in self.sources


class Unknown(Enum):
    UNKNOWN = "unknown"


UNKNOWN: Final = Unknown.UNKNOWN


class KeyCache:
    """The active API keys of this process, by hash, reloaded from the database every
    METRICS_KEY_CACHE_SECONDS (on the first lookup after that).

    A revoked key stops working on every process within METRICS_KEY_CACHE_SECONDS (at once on
    the process that revoked it). A key missing from the copy (new, or never issued) makes a
    lookup wait for a reload that starts after it asked; such reloads happen at most every
    MISS_RELOAD_SECONDS, shared by every lookup waiting."""

    def __init__(self) -> None:
        self._keys: dict[str, KeyInfo] = {}
        self._loaded_at = float("-inf")  # monotonic time the copy's reload started
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}  # key hash -> when this process last wrote last_used_at

    def peek(self, token: str) -> KeyInfo | Unknown:
        """Without the database: the key if the copy is fresh and holds it, else UNKNOWN (a
        lookup must tell). Never None: a miss may be a key issued a moment ago."""
        info = self._keys.get(hash_key(token))
        fresh = time.monotonic() - self._loaded_at < settings.METRICS_KEY_CACHE_SECONDS
        return info if info is not None and fresh else UNKNOWN

    def lookup(self, token: str) -> KeyInfo | None:
        """The active key for a plain token, or None. Blocks (database), so call it from a
        thread. Raises DatabaseError when a reload is due and the database is away."""
        asked = time.monotonic()
        if asked - self._loaded_at >= settings.METRICS_KEY_CACHE_SECONDS:
            self._reload(since=asked - settings.METRICS_KEY_CACHE_SECONDS)
        key_hash = hash_key(token)
        info = self._keys.get(key_hash)
        if info is None:
            self._reload(since=asked, spacing=MISS_RELOAD_SECONDS)
            info = self._keys.get(key_hash)
        if info is not None:
            self._mark_used(key_hash, info, asked)
        return info

    def active_ids(self) -> set[int]:
        """The ids of the active keys, from a copy at most METRICS_KEY_CACHE_SECONDS old
        (blocking: reloads when it is older)."""
        asked = time.monotonic()
        if asked - self._loaded_at >= settings.METRICS_KEY_CACHE_SECONDS:
            self._reload(since=asked - settings.METRICS_KEY_CACHE_SECONDS)
        return {info.id for info in self._keys.values()}

    def _reload(self, *, since: float, spacing: float = 0.0) -> None:
        """Reload unless a reload that started after `since` has finished meanwhile."""
        with self._lock:
            if self._loaded_at >= since:
                return
            time.sleep(max(0.0, self._loaded_at + spacing - time.monotonic()))
            started = time.monotonic()
            self._keys = {api_key.key_hash: KeyInfo.of(api_key) for api_key in ApiKey.objects.active()}
            self._loaded_at = started

    def _mark_used(self, key_hash: str, info: KeyInfo, now: float) -> None:
        # On a thread of its own, never waited for: a write must not hold up a request's key
        # check (SQLite has one writer at a time, and a long ingest transaction may be it).
        if now - self._used.get(key_hash, float("-inf")) > _LAST_USED_RESOLUTION.total_seconds():
            self._used[key_hash] = now
            _marker.submit(db.call, _write_last_used, info.id, timezone.now())

    def saved(self, instance: ApiKey, **kwargs: object) -> None:
        """post_save of ApiKey: a key issued or revoked by this process counts here at once."""
        if instance.is_active:
            self._keys[instance.key_hash] = KeyInfo.of(instance)
        else:
            self._keys.pop(instance.key_hash, None)


def _write_last_used(pk: int, at: datetime) -> None:
    with contextlib.suppress(DatabaseError):  # a courtesy for the admin, written again later
        ApiKey.objects.filter(pk=pk).update(last_used_at=at)


_marker = db.own_thread("key-marks")
keys = KeyCache()


class RateLimits:
    """Per-key request rates of this process, off unless METRICS_KEY_RATE_LIMIT is set: a
    token bucket per key holding METRICS_KEY_RATE_BURST requests, refilled at the limit per
    second. A key over it is answered 429 with Retry-After (whole seconds until a token)."""

    def __init__(self) -> None:
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, when counted)
        self._lock = threading.Lock()

    def wait(self, key_id: int) -> int:
        """0 if the key may go on now (a token is taken), else the seconds to wait."""
        rate = settings.METRICS_KEY_RATE_LIMIT
        if not rate:
            return 0
        burst = max(1, settings.METRICS_KEY_RATE_BURST or rate)
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key_id, (burst, now))
            tokens = min(burst, tokens + (now - then) * rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0
            self._buckets[key_id] = (tokens, now)
        counters.incr("requests_rate_limited")
        return max(1, math.ceil((1 - tokens) / rate))


rates = RateLimits()


def rate_limit_message(wait: int) -> str:
    return f"too many requests for this key; retry in {wait} s"


def rate_limited(wait: int) -> JsonResponse:
    response = JsonResponse({"error": "rate_limited", "message": rate_limit_message(wait)}, status=429)
    response["Retry-After"] = str(wait)
    return response


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def find_api_key(token: str | None) -> KeyInfo | None:
    """The active key matching a plain token, or None (blocking: see KeyCache.lookup)."""
    return keys.lookup(token) if token else None


def unauthorized(message: str) -> JsonResponse:
    response = JsonResponse({"error": "unauthorized", "message": message}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="wealthmetrics"'
    return response


def require_api_key(view: View) -> View:
    """Machines only: a valid `Authorization: Bearer <key>`."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if find_api_key(bearer_token(request.headers.get("Authorization"))) is None:
            return unauthorized(MISSING_KEY)
        return view(request, *args, **kwargs)

    return wrapper


def is_reader(request: HttpRequest) -> bool:
    """People (logged-in, active) or machines (a valid key) may read."""
    user = request.user
    if user.is_authenticated and user.is_active:
        return True
    return find_api_key(bearer_token(request.headers.get("Authorization"))) is not None


def forbidden(message: str, field: str | None = None) -> JsonResponse:
    extra = {"field": field} if field else {}
    return JsonResponse({"error": "forbidden", "message": message, **extra}, status=403)


def read_refusal(key: KeyInfo, source: str | None) -> str | None:
    """Why a key may not read `source` (None or '*': every source), or None if it may."""
    if not key.reads:
        return "this key may only send records"
    if not key.covers(None if source == "*" else source):
        return f"this key may read only {', '.join(sorted(key.sources or ()))}"
    return None


def require_reader(view: View) -> View:
    """People, or keys with the read scope, for the `source` they ask about (a key limited to
    sources must name one of them)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        user = request.user
        if not (user.is_authenticated and user.is_active):
            key = find_api_key(bearer_token(request.headers.get("Authorization")))
            if key is None:
                return unauthorized("log in or send a valid API key")
            if refusal := read_refusal(key, request.GET.get("source") or None):
                return forbidden(refusal, "source" if key.reads else None)
            if wait := rates.wait(key.id):
                return rate_limited(wait)
        return view(request, *args, **kwargs)

    return wrapper

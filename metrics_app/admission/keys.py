"""API keys as the door sees them: what a key may do, a process-local copy of the active keys,
and per-key request rates.

Keys are checked against the copy (`keys`), so a request costs no database round trip for
its key; see KeyCache for how long a revocation or a narrowing takes to count.
"""

import contextlib
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Final

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from metrics_app import counters, db
from metrics_app.models import ApiKey, Scope, hash_key

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

    def covers(self, name: str | None) -> bool:
        """May it speak for, or read, this source or scheduler (None or '*': every one)?"""
        if self.sources is None:
            return True
        return name is not None and name in self.sources


class Unknown(Enum):
    UNKNOWN = "unknown"


UNKNOWN: Final = Unknown.UNKNOWN


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class KeyCache:
    """The active API keys of this process, by hash, reloaded from the database every
    METRICS_KEY_CACHE_SECONDS (on the first lookup after that).

    A revoked or narrowed key counts on every process within METRICS_KEY_CACHE_SECONDS (at
    once on the process that changed it). A key missing from the copy (new, or never issued)
    makes a lookup wait for a reload that starts after it asked; such reloads happen at most
    every MISS_RELOAD_SECONDS, shared by every lookup waiting."""

    def __init__(self) -> None:
        self._keys: dict[str, KeyInfo] = {}
        self._loaded_at = float("-inf")  # monotonic time the copy's reload started
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}  # key hash -> when this process last wrote last_used_at

    def peek(self, token: str) -> KeyInfo | Unknown:
        """Without the database: the key if the copy is fresh and holds it, else UNKNOWN (a
        lookup must tell). Never None: a miss may be a key issued a moment ago."""
        key_hash = hash_key(token)
        info = self._keys.get(key_hash)
        now = time.monotonic()
        if info is None or now - self._loaded_at >= settings.METRICS_KEY_CACHE_SECONDS:
            return UNKNOWN
        self._mark_used(key_hash, info, now)
        return info

    def lookup(self, token: str) -> KeyInfo | None:
        """The active key for a plain token, or None. Blocks (database), so call it from a
        thread. Raises DatabaseError when a reload is due and the database is away."""
        asked = time.monotonic()
        self._refresh(asked)
        key_hash = hash_key(token)
        info = self._keys.get(key_hash)
        if info is None:
            self._reload(since=asked, spacing=MISS_RELOAD_SECONDS)
            info = self._keys.get(key_hash)
        if info is not None:
            self._mark_used(key_hash, info, asked)
        return info

    def by_id(self) -> dict[int, KeyInfo]:
        """The active keys by id, from a copy at most METRICS_KEY_CACHE_SECONDS old (blocking:
        reloads when it is older). Open sockets re-read their key's rights from it."""
        self._refresh(time.monotonic())
        return {info.id: info for info in self._keys.values()}

    def _refresh(self, asked: float) -> None:
        if asked - self._loaded_at >= settings.METRICS_KEY_CACHE_SECONDS:
            self._reload(since=asked - settings.METRICS_KEY_CACHE_SECONDS)

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
        """post_save of ApiKey: a key issued, changed or revoked by this process counts here at
        once."""
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
    second. A key over it is refused (429 with Retry-After: whole seconds until a token)."""

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

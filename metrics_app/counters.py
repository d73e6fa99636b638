"""Process-wide counters behind /api/stats/ (queued, flushed, broadcast, dropped, …).

Plain integers under a lock: increments come from request threads, the collector's flush
thread and the event loop alike.
"""

import threading
from collections import Counter

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def incr(name: str, amount: int = 1) -> None:
    with _lock:
        _counts[name] += amount


def snapshot() -> dict[str, int]:
    with _lock:
        return dict(_counts)

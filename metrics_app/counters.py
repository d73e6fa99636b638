"""Process-wide counters behind /api/stats/ (queued, flushed, broadcast, dropped, …).

Plain integers under a lock: increments come from request threads, the collector's flush
thread and the event loop alike.
"""

import logging
import threading
import time
from collections import Counter
from typing import Final

# A problem counted many times a second (an outage, a flood of refusals) is logged once per
# this many seconds, with the count since.
LOG_EVERY_SECONDS: Final = 10.0

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_logged: dict[str, tuple[float, int]] = {}  # name -> (when last logged, count then)


def incr(name: str, amount: int = 1) -> None:
    with _lock:
        _counts[name] += amount


def snapshot() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def problem(name: str, log: logging.Logger, message: str, *args: object) -> None:
    """Count a problem under `name`, and log it as a warning unless it was logged in the last
    LOG_EVERY_SECONDS; the line says how many happened since."""
    now = time.monotonic()
    with _lock:
        _counts[name] += 1
        last, count_then = _logged.get(name, (float("-inf"), 0))
        if now - last < LOG_EVERY_SECONDS:
            return
        _logged[name] = (now, _counts[name])
        since = _counts[name] - count_then
    log.warning(message + " (%s: %d since last logged)", *args, name, since)

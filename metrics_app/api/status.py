"""What this server process reports about itself: /api/stats/ and /api/health/websocket.

Both are read on the event loop, where the live hub lives, so the numbers are consistent.
"""

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import psutil
from django.conf import settings
from django.db import DatabaseError

from metrics_app import counters, db
from metrics_app.admission.refusals import DATABASE_UNAVAILABLE
from metrics_app.alerts import evaluator, notify
from metrics_app.ingest.collector import collector
from metrics_app.server import features
from metrics_app.stream.hub import get_hub

log = logging.getLogger(__name__)

STARTED = time.monotonic()
_process = psutil.Process()


async def websocket_health() -> dict[str, Any]:
    hub = get_hub()
    if features.serving:
        await hub.start()  # a health check is often a fresh process's first request
    # The watchdog: an evaluator that stopped is itself an alert, shown here.
    return {
        **hub.health(),
        "fastPath": features.fast_sockets,
        "uncheckedServerParts": features.unchecked,
        "alertEvaluator": await _watchdog(),
    }


# The watchdog's last reading. A health check must answer while the database hangs (a load
# balancer asks it), so it waits for a fresh reading at most WATCHDOG_WAIT_S, and at most one
# reading is in flight however many checks come.
WATCHDOG_WAIT_S = 1.0
_reading: dict[str, Any] = {"lastRunAt": None, "lastRunMs": None, "stale": True}
_refresh: "asyncio.Future[None] | None" = None


async def _watchdog() -> dict[str, Any]:
    global _refresh
    if _refresh is None or _refresh.done():
        _refresh = asyncio.ensure_future(_read_watchdog())
    with contextlib.suppress(TimeoutError, DatabaseError):
        await asyncio.wait_for(asyncio.shield(_refresh), WATCHDOG_WAIT_S)
    return _reading


async def _read_watchdog() -> None:
    global _reading
    try:
        _reading = await db.run(evaluator.health)
    except DatabaseError as exc:  # the driver's words are for the log, not for strangers
        log.warning("the alert watchdog cannot read the evaluator's lease: %s", exc)
        _reading = {**_reading, "stale": True, "error": DATABASE_UNAVAILABLE.message}


async def server_stats(sources: frozenset[str] | None = None) -> dict[str, Any]:
    """This process's figures. A caller limited to `sources` sees their subscriptions and the
    process's own state, not the counters, the collector or the outbox, which are every
    source's together."""
    health = await websocket_health()
    if sources is not None:
        health["subscriptions"] = {name: n for name, n in health["subscriptions"].items() if name in sources}
        return {"pid": os.getpid(), "uptime": round(time.monotonic() - STARTED, 3), **features.as_dict(),
                "websocket": health, "counters": {}}  # fmt: skip
    return {
        "pid": os.getpid(),
        "uptime": round(time.monotonic() - STARTED, 3),
        "rssBytes": _process.memory_info().rss,
        "channelLayer": str(settings.CHANNEL_LAYERS["default"]["BACKEND"]).rsplit(".", 1)[-1],
        **features.as_dict(),
        "websocket": health,
        "counters": counters.snapshot(),
        "collector": collector.stats(),
        "alertNotifications": await db.run(notify.outbox_counts),
    }

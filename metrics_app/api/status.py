"""What this server process reports about itself: /api/stats/ and /api/health/websocket.

Both are read on the event loop, where the live hub lives, so the numbers are consistent.
"""

import os
import time
from typing import Any

import psutil
from django.conf import settings
from django.db import DatabaseError

from metrics_app import counters, db
from metrics_app.alerts import evaluator, notify
from metrics_app.ingest.collector import collector
from metrics_app.server import features
from metrics_app.stream.hub import get_hub

STARTED = time.monotonic()
_process = psutil.Process()


async def websocket_health() -> dict[str, Any]:
    hub = get_hub()
    if features.serving:
        await hub.start()  # a health check is often a fresh process's first request
    try:
        watchdog = await db.run(evaluator.health)
    except DatabaseError as exc:
        watchdog = {"stale": True, "error": str(exc)[:200]}
    # The watchdog: an evaluator that stopped is itself an alert, shown here.
    return {**hub.health(), "fastPath": features.fast_sockets, "alertEvaluator": watchdog}


async def server_stats() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "uptime": round(time.monotonic() - STARTED, 3),
        "rssBytes": _process.memory_info().rss,
        "channelLayer": str(settings.CHANNEL_LAYERS["default"]["BACKEND"]).rsplit(".", 1)[-1],
        **features.as_dict(),
        "websocket": await websocket_health(),
        "counters": counters.snapshot(),
        "collector": collector.stats(),
        "alertNotifications": await db.run(notify.outbox_counts),
    }

"""What this server process reports about itself: /api/stats/ and /api/health/websocket.

Both are read on the event loop, where the live hub lives, so the numbers are consistent.
"""

import os
import time
from typing import Any

import psutil
from django.conf import settings

from metrics_app import counters

STARTED = time.monotonic()
_process = psutil.Process()


def serving() -> bool:
    """True inside a running daphne, whose event loop outlives the request."""
    try:
        from twisted.internet import reactor
    except ImportError:
        return False
    return bool(reactor.running)


async def websocket_health() -> dict[str, Any]:
    from dashboard_app.live import get_hub

    hub = get_hub()
    if serving():
        await hub.start()  # a health check is often a fresh process's first request
    return hub.health()


async def server_stats() -> dict[str, Any]:
    from metrics_app.collector import collector  # imports storage and the models
    from wealthmetrics import daphne_internals

    return {
        "pid": os.getpid(),
        "uptime": round(time.monotonic() - STARTED, 3),
        "rssBytes": _process.memory_info().rss,
        "channelLayer": str(settings.CHANNEL_LAYERS["default"]["BACKEND"]).rsplit(".", 1)[-1],
        "requestGuard": daphne_internals.active(),
        "websocket": await websocket_health(),
        "counters": counters.snapshot(),
        "collector": collector.stats(),
    }

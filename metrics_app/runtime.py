"""What this server process reports about itself: /api/stats/ and /api/health/websocket."""

import os
import time
from typing import Any

import psutil
from django.conf import settings

from metrics_app import counters

STARTED = time.monotonic()
_process = psutil.Process()


def uptime_seconds() -> float:
    return round(time.monotonic() - STARTED, 3)


def websocket_health() -> dict[str, Any]:
    return {
        "connected": True,
        "clients": 0,
        "subscriptions": {},
        "uptime": uptime_seconds(),
    }


def server_stats() -> dict[str, Any]:
    from metrics_app.collector import collector  # the collector imports storage and Django models

    return {
        "pid": os.getpid(),
        "uptime": uptime_seconds(),
        "rssBytes": _process.memory_info().rss,
        "channelLayer": str(settings.CHANNEL_LAYERS["default"]["BACKEND"]).rsplit(".", 1)[-1],
        "counters": counters.snapshot(),
        "collector": collector.stats(),
    }

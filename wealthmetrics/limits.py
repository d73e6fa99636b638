"""A bound on the requests Django serves at once in this process.

Under daphne each request runs in a thread of its own and opens its own database connection
(closed when it ends), so the number of requests in Django is the number of connections. At
most METRICS_DB_CONNECTIONS run at once; up to METRICS_MAX_WAITING_REQUESTS more wait their
turn in order; beyond that a request is answered at once with 503 and Retry-After, which the
scraper kit honours. Without the bound, 64 concurrent senders opened hundreds of connections
and MySQL answered "Too many connections" to every tenant.

Health checks pass without waiting: a load balancer should see the process alive under load.
"""

import asyncio
from typing import Any, Final

from django.conf import settings

from metrics_app.admission import refusals

Scope = dict[str, Any]

EXEMPT_PREFIXES: Final = ("/api/health/",)


class RequestLimit:
    def __init__(self, application: Any) -> None:
        self.application = application
        self._running = asyncio.Semaphore(settings.METRICS_DB_CONNECTIONS)
        self._waiting = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PREFIXES):
            return await self.application(scope, receive, send)
        if self._running.locked() and self._waiting >= settings.METRICS_MAX_WAITING_REQUESTS:
            return await refusals.OVERLOADED.send_asgi(send)
        self._waiting += 1
        try:
            await self._running.acquire()
        finally:
            self._waiting -= 1
        try:
            return await self.application(scope, receive, send)
        finally:
            self._running.release()

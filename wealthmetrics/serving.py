"""A serving process's life, in one place: what starts with it, what stops with it, and what
runs on a clock where (README, "What runs where").

wealthmetrics.asgi calls `start()` once the application is built. Under daphne's command line:
1. the server integration is checked and switched on (wealthmetrics.daphne_internals); a
   server that fails its checks stops the process here;
2. once the reactor runs, this process's share of the periodic work starts;
3. before the reactor stops, the live hub sends what is pending and closes its sockets with
   1001 (going away).
Anywhere else (a management command, Celery, a test's in-process client) nothing starts.

Periodic work, each job in exactly one place per deployment:
- alert evaluation, every METRICS_ALERT_EVAL_INTERVAL_S: under `make run`, the daphne
  process; under `make stack` and in production, every daphne process offers and one,
  elected by a lease (metrics_app.alerts.evaluator), evaluates;
- `aggregate_daily` at 02:00 and `cleanup_metrics` at 03:30 (TIME_ZONE), as django-celery-beat's
  tables say: under `make run`, Celery beat embedded in the daphne process runs them (there
  is no broker to send them to a worker); under `make stack` and in production, the
  `celery beat` process sends them to a worker.
METRICS_EMBEDDED_BEAT says whether daphne runs the beat itself: by default when there is no
REDIS_URL, i.e. when no separate beat could send a worker anything.
"""

import asyncio
import ctypes
import logging
import sys
from typing import Any

from celery.beat import EmbeddedService
from django.conf import settings

from metrics_app.alerts import evaluator
from metrics_app.server import features
from metrics_app.stream.hub import get_hub
from wealthmetrics import daphne_internals
from wealthmetrics.celery import app as celery_app

log = logging.getLogger(__name__)


def start() -> None:
    if "daphne.cli" not in sys.modules:  # daphne imports the application once its reactor is in
        return
    daphne_internals.install()
    features.name, features.serving = "daphne", True
    from twisted.internet import reactor

    reactor.callWhenRunning(start_periodic_work)
    _before_shutdown(reactor, get_hub().shutdown)


def start_periodic_work() -> None:
    """This process's share of the periodic work (the table above)."""
    evaluator.start_watching()  # unless METRICS_ALERT_EVALUATOR=0 keeps it out of the election
    _trimming.append(asyncio.ensure_future(_give_memory_back()))
    if settings.METRICS_EMBEDDED_BEAT:
        # beat's own tables, as `celery beat` reads them (Celery's default would be a shelve file)
        beat = EmbeddedService(celery_app, thread=True, scheduler_cls=settings.CELERY_BEAT_SCHEDULER)
        beat.start()
        log.info("celery beat runs inside this process (METRICS_EMBEDDED_BEAT): nightly jobs run here")


_trimming: list["asyncio.Future[None]"] = []
TRIM_EVERY_S = 30.0


async def _give_memory_back() -> None:
    """glibc keeps what the process freed (a burst of requests, a storm of sockets) for its
    own reuse; every TRIM_EVERY_S its malloc_trim gives the free pages back to the system, so
    the process's memory returns to its idle size once a burst is over. Elsewhere, nothing."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return
    while True:
        await asyncio.sleep(TRIM_EVERY_S)
        trim(0)


def _before_shutdown(reactor: Any, action: Any) -> None:
    """Run `action` before the reactor stops, then give the writes half a second to leave."""
    from twisted.internet.task import deferLater

    def before_shutdown() -> Any:
        try:
            action()
        except Exception:  # Twisted would swallow it silently
            log.exception("live hub shutdown failed")
        return deferLater(reactor, 0.5, lambda: None)

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)

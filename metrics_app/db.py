"""Database work started from the event loop, on a fixed number of threads and connections.

Code on the event loop (the live hub, the WebSocket consumers, the request guard) may not
block it, nor open a connection per call: a reconnect storm would open thousands. It hands
its queries to `run()`, which runs them on BACKGROUND_THREADS threads. Each keeps its
connection between jobs (checked when it has been idle, closed when a job broke it), so the
process holds at most that many for this work, whatever the load.

Requests served by Django have connections of their own, bounded by the request limit in
front of Django (wealthmetrics.limits): README, "Database connections".

Maintenance (management commands, Celery tasks) runs statements that take far longer than
any request should: `long_queries()` gives its thread a connection with timeouts to match.
"""

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection

T = TypeVar("T")

BACKGROUND_THREADS: Final = 2
# A connection idle this long is pinged before use: the server may have dropped it
# (wait_timeout) while nothing needed it.
IDLE_CHECK_SECONDS: Final = 30.0

_executor = ThreadPoolExecutor(max_workers=BACKGROUND_THREADS, thread_name_prefix="wealthmetrics-db")
_last_used = threading.local()


async def run(function: Callable[..., T], *args: Any, thread: ThreadPoolExecutor | None = None) -> T:
    """Run `function(*args)` on one of the background threads (or on `thread`, a work's own,
    see `own_thread`) and return what it returns."""
    return await asyncio.get_running_loop().run_in_executor(thread or _executor, _call, function, args)


def own_thread(name: str) -> ThreadPoolExecutor:
    """One thread (and so one connection) for a slow background job, such as the alert
    evaluator's, that must not hold up the shared threads' short queries."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wealthmetrics-{name}")


def call(function: Callable[..., T], *args: Any) -> T:
    """Run `function(*args)` here, on a long-lived thread of its own (the group writer's), with
    the same care for its connection as the background threads take."""
    return _call(function, args)


def _call(function: Callable[..., T], args: tuple[Any, ...]) -> T:
    idle = time.monotonic() - getattr(_last_used, "at", 0.0)
    if idle > IDLE_CHECK_SECONDS and connection.connection is not None and not connection.is_usable():
        close_connection()
    try:
        return function(*args)
    except DatabaseError:
        close_connection()  # the link may be broken: the next job opens a fresh one
        raise
    finally:
        _last_used.at = time.monotonic()


def limit_statements(connection: Any, **kwargs: Any) -> None:
    """connection_created: the server stops a statement that runs longer than the connection's
    read timeout (METRICS_DB_TIMEOUT_S; METRICS_MAINTENANCE_TIMEOUT_S for maintenance), so
    that no query outlives the caller that gave up on it (MariaDB's max_statement_time, or
    MySQL's max_execution_time, which stops reads only)."""
    if connection.vendor != "mysql":
        return
    seconds = int(connection.settings_dict.get("OPTIONS", {}).get("read_timeout") or 0)
    if not seconds:
        return
    with connection.cursor() as cursor:
        if connection.mysql_is_mariadb:
            cursor.execute("SET SESSION max_statement_time = %s", [seconds])
        else:
            cursor.execute("SET SESSION max_execution_time = %s", [seconds * 1000])


def close_connection() -> None:
    """Close this thread's connection, even a broken one."""
    with contextlib.suppress(DatabaseError):
        connection.close()


@contextlib.contextmanager
def long_queries() -> Iterator[None]:
    """Run the block on a connection whose read and write timeouts are
    METRICS_MAINTENANCE_TIMEOUT_S instead of the request paths' METRICS_DB_TIMEOUT_S (MySQL;
    SQLite has no such timeouts). Inside a transaction the block keeps the connection it has,
    whose work it must see."""
    if connection.vendor != "mysql" or connection.in_atomic_block:
        yield
        return
    usual = connection.settings_dict
    timeout = settings.METRICS_MAINTENANCE_TIMEOUT_S
    close_connection()
    # A copy for this thread's connection object only: the dict itself is shared by all.
    connection.settings_dict = {
        **usual, "OPTIONS": {**usual["OPTIONS"], "read_timeout": timeout, "write_timeout": timeout}
    }  # fmt: skip
    try:
        yield
    finally:
        close_connection()
        connection.settings_dict = usual

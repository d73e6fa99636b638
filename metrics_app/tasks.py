"""Celery tasks: each calls one plain function, which the management commands call too.

Their names are pinned: django-celery-beat's table stores them (migration 0004), so moving
this module must not rename them.

Both are idempotent (the aggregation upserts, the cleanup deletes what is expired), so a
second beat or a duplicate delivery does no harm; a deadlock with a concurrent run is retried.
"""

from typing import Any

from celery import shared_task
from django.db import OperationalError

from metrics_app import db, retention
from metrics_app.history import summaries


@shared_task(name="metrics_app.tasks.aggregate_daily", autoretry_for=(OperationalError,), max_retries=3,
             retry_backoff=True)  # fmt: skip
def aggregate_daily() -> list[str]:
    """Summarise yesterday and every earlier day that has no summary yet."""
    with db.long_queries():
        return [str(result) for result in summaries.catch_up()]


@shared_task(name="metrics_app.tasks.cleanup_metrics", autoretry_for=(OperationalError,), max_retries=3,
             retry_backoff=True)  # fmt: skip
def cleanup_metrics() -> dict[str, Any]:
    """Delete detailed rows older than METRICS_RETENTION_DAYS."""
    with db.long_queries():
        return retention.cleanup().as_dict()

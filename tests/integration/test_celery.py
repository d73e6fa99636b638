"""The nightly jobs: a real celery worker runs them from Redis; beat's schedule is in the database."""

import subprocess
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from metrics_app import tasks
from metrics_app.ingest.storage import store_metrics
from metrics_app.models import AggregatedDay, DailySummary, PagePerformance
from metrics_app.records import epoch_ms, validate_records
from tests.support.records import navigation
from tests.support.servers import ROOT


@pytest.mark.django_db
def test_beat_schedule_is_registered_by_migrate(admin_client: Client) -> None:
    aggregate = PeriodicTask.objects.get(task="metrics_app.tasks.aggregate_daily")
    cleanup = PeriodicTask.objects.get(task="metrics_app.tasks.cleanup_metrics")
    assert aggregate.enabled and cleanup.enabled
    assert (aggregate.crontab.hour, aggregate.crontab.minute) == ("2", "0")
    assert (cleanup.crontab.hour, cleanup.crontab.day_of_week) == ("3", "*")
    page = admin_client.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert aggregate.name in page and cleanup.name in page


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_nightly_tasks(live_server_env: dict[str, str]) -> None:
    yesterday = timezone.now() - timedelta(days=1)
    store_metrics(validate_records([navigation(recordedAt=epoch_ms(yesterday))]))
    expired = timezone.now() - timedelta(days=30)
    store_metrics(validate_records([navigation(recordedAt=epoch_ms(expired))]))
    queue = f"test-{uuid.uuid4().hex[:8]}"  # no other worker takes these tasks
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "wealthmetrics", "worker", "--pool", "solo", "-Q", queue,
         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        cwd=ROOT, env=live_server_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        tasks.aggregate_daily.apply_async(queue=queue)
        tasks.cleanup_metrics.apply_async(queue=queue)
        # twice: a duplicate delivery does no harm
        tasks.aggregate_daily.apply_async(queue=queue)
        wait_for(lambda: AggregatedDay.objects.filter(metric_date=timezone.localdate(yesterday)).exists())
        wait_for(lambda: DailySummary.objects.filter(metric_date=timezone.localdate(expired)).exists())
        wait_for(lambda: PagePerformance.objects.count() == 1)
        time.sleep(1)
        assert DailySummary.objects.get(metric_date=timezone.localdate(yesterday)).total_navigations == 1
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=20)
    assert "metrics_app.tasks.aggregate_daily" in output and "succeeded" in output, output


def wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the worker did not do it in time"
        time.sleep(0.2)

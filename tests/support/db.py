"""Storing and counting records in tests, the way ingest stores them (rollups included)."""

from typing import Any

from metrics_app.ingest.storage import store_metrics
from metrics_app.models import PagePerformance, SchedulerMetric
from metrics_app.records import validate_records


def store(*records: dict[str, Any]) -> list[int]:
    """Validate and store wire-shaped records in one transaction; returns their ids."""
    return store_metrics(validate_records(records))


def stored() -> int:
    """Detailed rows in both tables."""
    return PagePerformance.objects.count() + SchedulerMetric.objects.count()

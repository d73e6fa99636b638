"""Records as the rows of their tables, for the multi-row INSERTs of metrics_app.ingest.storage.

The column lists are the models' own fields, in their order; the row builders put each
record's values in that order (tests/integration/test_models.py checks that they agree).
"""

from typing import Any, Final

from msgspec import UNSET, UnsetType

from metrics_app.dialect import db_datetime
from metrics_app.models import PagePerformance, SchedulerMetric
from metrics_app.records import PageNavigation, PageScrape, SchedulerRun, fields_json

PAGE_TABLE: Final = PagePerformance._meta.db_table
SCHEDULER_TABLE: Final = SchedulerMetric._meta.db_table


def _columns(model: Any) -> tuple[str, ...]:
    return tuple(field.column for field in model._meta.concrete_fields if not field.primary_key)


PAGE_COLUMNS: Final = _columns(PagePerformance)
SCHEDULER_COLUMNS: Final = _columns(SchedulerMetric)


def page_row(record: PageNavigation | PageScrape) -> tuple[Any, ...]:
    created = db_datetime(record.recorded_at)
    run = None if record.run_id is UNSET else record.run_id
    if isinstance(record, PageNavigation):
        status = None if record.http_status is UNSET else record.http_status
        return (
            record.scraper_source, "page_navigation", record.url,
            record.navigation_duration_ms, record.retry_count, None, None, None,
            record.success, record.error, created, status, None, run,
        )  # fmt: skip
    fields = None if isinstance(record.fields, UnsetType) else fields_json(record.fields)
    return (
        record.scraper_source, "page_scrape", record.url,
        None, None, record.scrape_duration_ms, record.items_extracted, record.data_size,
        record.success, record.error, created, None, fields, run,
    )  # fmt: skip


def scheduler_row(record: SchedulerRun) -> tuple[Any, ...]:
    return (
        record.scheduler_name, record.scraper_source, record.execution_duration_ms,
        record.items_processed, record.success, record.error,
        db_datetime(record.recorded_at), None if record.run_id is UNSET else record.run_id,
    )  # fmt: skip

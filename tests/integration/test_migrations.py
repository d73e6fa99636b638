"""Migrations that fill tables from the records already stored: what they write is what ingest
would have written."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from metrics_app import rollups
from metrics_app.models import FieldHour, FieldMinute, MinuteRollup, PagePerformance, StatusHour, StatusMinute
from metrics_app.records import now_ms, to_wire
from tests.support.db import store
from tests.support.records import navigation, scheduler_run, scrape

BEFORE_MINUTE_ROLLUPS = [("metrics_app", "0006_failure_indexes")]


def minute_rollups() -> list[tuple[Any, ...]]:
    return sorted(MinuteRollup.objects.values_list(*rollups.MINUTES.columns))


def migrate(target: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


@pytest.mark.django_db(transaction=True)
def test_the_minute_rollups_of_records_stored_before_them_are_filled(settings: Any) -> None:
    now = now_ms()
    day = int(timedelta(days=1).total_seconds() * 1000)
    store(
        *[navigation(navigationDurationMs=100 + 37 * n, recordedAt=now - n * 20_000, success=n % 4 > 0) for n in range(30)],
        *[scrape(recordedAt=now - n * 45_000, dataSize=1000 * n) for n in range(10)],
        scheduler_run(recordedAt=now - 61_000),
        scheduler_run(scraperSource="cnbc", recordedAt=now - 3 * 60_000),
        navigation(scraperSource="expired", recordedAt=now - (settings.METRICS_RETENTION_DAYS + 1) * day),
    )  # fmt: skip
    kept_by_ingest = [row for row in minute_rollups() if row[1] != "expired"]
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("metrics_app")
    try:
        migrate(BEFORE_MINUTE_ROLLUPS)
        migrate(latest)
        assert minute_rollups() == kept_by_ingest  # and nothing past retention
    finally:
        migrate(latest)


@pytest.mark.django_db(transaction=True)
def test_field_counts_stored_as_objects_are_rewritten_as_arrays_and_back() -> None:
    fields = {"price": {"filled": 18, "invalid": 2}, "name": {"filled": 20, "invalid": 0}}
    store(scrape(itemsExtracted=20, fields=fields), scrape(itemsExtracted=3))
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("metrics_app")
    try:
        migrate([("metrics_app", "0015_field_broken_verdict")])
        assert stored_field_counts() == [
            {"name": {"filled": 20, "invalid": 0}, "price": {"filled": 18, "invalid": 2}},
            None,
        ]
        migrate(latest)
        assert stored_field_counts() == [{"name": [20, 0], "price": [18, 2]}, None]
        assert (
            to_wire(PagePerformance.objects.get(field_counts__isnull=False).to_metric())["fields"] == fields
        )
    finally:
        migrate(latest)


def stored_field_counts() -> list[Any]:
    return list(PagePerformance.objects.order_by("id").values_list("field_counts", flat=True))


@pytest.mark.django_db(transaction=True)
def test_field_and_status_rollups_keep_their_rows_when_keyed_and_back() -> None:
    now = now_ms()
    store(
        scrape(itemsExtracted=20, recordedAt=now - 120_000, fields={"price": {"filled": 18, "invalid": 2}}),
        scrape(itemsExtracted=10, recordedAt=now, fields={"price": {"filled": 10, "invalid": 0}}),
        navigation(httpStatus=403, recordedAt=now),
        navigation(httpStatus=200, recordedAt=now - 60_000),
    )
    tables = (FieldMinute, FieldHour, StatusMinute, StatusHour)
    rows = {model: sorted(model.objects.values_list(*data_columns(model))) for model in tables}
    assert all(rows.values())
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("metrics_app")
    try:
        migrate([("metrics_app", "0016_compact_field_counts")])
        migrate(latest)
        assert {model: sorted(model.objects.values_list(*data_columns(model))) for model in tables} == rows
        store(navigation(httpStatus=403, recordedAt=now))  # and the upserts add to the rows copied over
        assert StatusMinute.objects.filter(http_status=403).get().navigations == 2
    finally:
        migrate(latest)


def data_columns(model: Any) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields]

"""The tables that keep each run's numbers (docs/api.md, "Runs"): per run, its records summed
per source, its field counts, its HTTP statuses, its end, and the entities it refreshed.

Written by metrics_app.run_rollups in the transaction that stores the records, like the other
rollups, so a run's numbers never need its detailed rows; the entities are written behind with
their freshness (metrics_app.ingest.freshness). Not trimmed by retention: a run's summary
outlives its records (a run is a handful of rows, whatever its size). Only its entities, a row
each, are folded into a count once the run is past the retention.
"""

from typing import ClassVar

from django.db import models

from metrics_app import records


class RunSource(models.Model):
    """One run's page records from one source, summed."""

    # The upsert's key is the primary key, as with the field rollups (data_models.FieldMinute).
    pk = models.CompositePrimaryKey("run_id", "scraper_source")
    run_id = models.CharField("run", max_length=records.RUN_ID_MAX_LENGTH)
    scraper_source = models.CharField(max_length=records.NAME_MAX_LENGTH)
    first_at = models.BigIntegerField(help_text="recordedAt of the run's first record (ms since the epoch).")
    last_at = models.BigIntegerField(help_text="recordedAt of the run's last record (ms since the epoch).")
    navigations = models.BigIntegerField()
    failed_navigations = models.BigIntegerField()
    scrapes = models.BigIntegerField()
    failed_scrapes = models.BigIntegerField()
    items = models.BigIntegerField(help_text="Items extracted by the run's scrapes.")
    bytes = models.BigIntegerField(help_text="Bytes scraped by the run's scrapes.")
    entities = models.BigIntegerField(
        db_default=0,
        help_text="Entities it refreshed, folded in from RunEntity by retention once the run is past it.",
    )

    class Meta:
        db_table = "scraper_run_sources"
        verbose_name = "run source"
        ordering: ClassVar = ["-last_at"]
        indexes: ClassVar = [
            # the newest runs, and runs gone idle
            models.Index(fields=["last_at"], name="idx_run_source_last"),
            # one source's newest runs
            models.Index(fields=["scraper_source", "last_at"], name="idx_run_source_source"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} {self.scraper_source}"


class RunField(models.Model):
    """One run's counts of one field, summed over its pages (as data_models.FieldRow)."""

    pk = models.CompositePrimaryKey("run_id", "field")
    run_id = models.CharField("run", max_length=records.RUN_ID_MAX_LENGTH)
    field = models.CharField(max_length=records.FIELD_NAME_MAX_LENGTH)
    items = models.BigIntegerField(help_text="Items extracted by the pages that reported the field.")
    filled = models.BigIntegerField()
    invalid = models.BigIntegerField()

    class Meta:
        db_table = "scraper_run_fields"
        verbose_name = "run field"

    def __str__(self) -> str:
        return f"{self.run_id} {self.field}"


class RunStatus(models.Model):
    """One run's navigations that ended in one HTTP status."""

    pk = models.CompositePrimaryKey("run_id", "http_status")
    run_id = models.CharField("run", max_length=records.RUN_ID_MAX_LENGTH)
    http_status = models.SmallIntegerField("HTTP status")
    navigations = models.BigIntegerField()

    class Meta:
        db_table = "scraper_run_statuses"
        verbose_name = "run status"
        verbose_name_plural = "run statuses"

    def __str__(self) -> str:
        return f"{self.run_id} {self.http_status}"


class RunEnd(models.Model):
    """The scheduler_run record that ended a run and named its scheduler."""

    run_id = models.CharField("run", max_length=records.RUN_ID_MAX_LENGTH, primary_key=True)
    scheduler_name = models.CharField(max_length=records.NAME_MAX_LENGTH)
    scraper_source = models.CharField(
        max_length=records.NAME_MAX_LENGTH, blank=True, help_text="Empty when the record named none."
    )
    success = models.BooleanField()
    duration_ms = models.BigIntegerField(help_text="The scheduler run's executionDurationMs.")
    items_processed = models.BigIntegerField()
    ended_at = models.BigIntegerField(help_text="Its recordedAt (ms since the epoch).")

    class Meta:
        db_table = "scraper_run_ends"
        verbose_name = "run end"
        ordering: ClassVar = ["-ended_at"]
        indexes: ClassVar = [
            # a scheduler's last runs (its usual, the Scheduler section), newest first
            models.Index(fields=["scheduler_name", "ended_at"], name="idx_run_end_scheduler"),
            models.Index(fields=["ended_at"], name="idx_run_end_ended"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} ({self.scheduler_name})"


class RunEntity(models.Model):
    """One entity a run refreshed from one source: the run's distinct entities, counted."""

    pk = models.CompositePrimaryKey("run_id", "scraper_source", "entity")
    run_id = models.CharField("run", max_length=records.RUN_ID_MAX_LENGTH)
    scraper_source = models.CharField(max_length=records.NAME_MAX_LENGTH)
    entity = models.CharField(max_length=records.ENTITY_MAX_LENGTH)

    class Meta:
        db_table = "scraper_run_entities"
        verbose_name = "run entity"
        verbose_name_plural = "run entities"

    def __str__(self) -> str:
        return f"{self.run_id} {self.scraper_source} {self.entity}"

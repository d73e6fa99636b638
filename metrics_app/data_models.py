"""The tables that watch the data itself (docs/api.md, "Fields and HTTP statuses"): per source,
each field's counts and each HTTP status's navigations, per minute, per hour and per day.

Written by metrics_app.data_rollups in the transaction that stores the records, like the other
rollups. Minutes are kept DATA_MINUTES_KEPT (the alert window, the live and 1-hour ranges),
hours METRICS_RETENTION_DAYS (the usual of a field at this hour), days forever.
"""

from typing import ClassVar

from django.db import models

from metrics_app import records


class FieldRow(models.Model):
    """One field of one source's pages over a time bucket: what the pages that reported it
    said of it, summed."""

    scraper_source = models.CharField(max_length=records.NAME_MAX_LENGTH)
    field = models.CharField(max_length=records.FIELD_NAME_MAX_LENGTH)
    items = models.BigIntegerField(help_text="Items extracted by the pages that reported the field.")
    filled = models.BigIntegerField(
        help_text="Of those items, the ones with the field present and non-empty."
    )
    invalid = models.BigIntegerField(help_text="Of the filled, the ones that failed the field's check.")

    class Meta:
        abstract = True


class StatusRow(models.Model):
    """One source's navigations that ended in one HTTP status, over a time bucket."""

    scraper_source = models.CharField(max_length=records.NAME_MAX_LENGTH)
    http_status = models.SmallIntegerField("HTTP status")
    navigations = models.BigIntegerField()

    class Meta:
        abstract = True


class FieldMinute(FieldRow):
    # The upsert's key is the primary key: every ingest transaction adds to these rows, and
    # InnoDB finds a duplicate on the clustered index at once, where a unique secondary key
    # first inserts a row under a new id, then undoes it (a third more work per row).
    pk = models.CompositePrimaryKey("scraper_source", "minute", "field")
    minute = models.DateTimeField(help_text="Start of the minute (UTC).")

    class Meta:
        db_table = "scraper_fields_minute"
        verbose_name = "field minute"
        ordering: ClassVar = ["-minute", "scraper_source", "field"]
        indexes: ClassVar = [
            # every source's fields over a range, and retention
            models.Index(fields=["minute"], name="idx_field_minute_minute"),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.field} {self.minute:%Y-%m-%d %H:%M}"


class FieldHour(FieldRow):
    pk = models.CompositePrimaryKey("scraper_source", "hour", "field")  # as FieldMinute's
    hour = models.DateTimeField(help_text="Start of the hour, in TIME_ZONE's hours.")

    class Meta:
        db_table = "scraper_fields_hourly"
        verbose_name = "field hour"
        ordering: ClassVar = ["-hour", "scraper_source", "field"]
        indexes: ClassVar = [
            # every source's fields over a range, the daily summaries, and retention
            models.Index(fields=["hour"], name="idx_field_hour_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.field} {self.hour:%Y-%m-%d %H:%M}"


class FieldDay(FieldRow):
    metric_date = models.DateField(help_text="The day, cut in TIME_ZONE.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "scraper_fields_daily"
        verbose_name = "field daily summary"
        verbose_name_plural = "field daily summaries"
        ordering: ClassVar = ["-metric_date", "scraper_source", "field"]
        constraints: ClassVar = [
            # re-running the aggregation upserts into it
            models.UniqueConstraint(
                fields=["scraper_source", "metric_date", "field"], name="uniq_field_day_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.field} {self.metric_date}"


class StatusMinute(StatusRow):
    pk = models.CompositePrimaryKey("scraper_source", "minute", "http_status")  # as FieldMinute's
    minute = models.DateTimeField(help_text="Start of the minute (UTC).")

    class Meta:
        db_table = "scraper_status_minute"
        verbose_name = "status minute"
        ordering: ClassVar = ["-minute", "scraper_source", "http_status"]
        indexes: ClassVar = [
            # every source's statuses over a range, and retention
            models.Index(fields=["minute"], name="idx_status_minute_minute"),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.http_status} {self.minute:%Y-%m-%d %H:%M}"


class StatusHour(StatusRow):
    pk = models.CompositePrimaryKey("scraper_source", "hour", "http_status")  # as FieldMinute's
    hour = models.DateTimeField(help_text="Start of the hour, in TIME_ZONE's hours.")

    class Meta:
        db_table = "scraper_status_hourly"
        verbose_name = "status hour"
        ordering: ClassVar = ["-hour", "scraper_source", "http_status"]
        indexes: ClassVar = [
            # every source's statuses over a range, the daily summaries, and retention
            models.Index(fields=["hour"], name="idx_status_hour_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.http_status} {self.hour:%Y-%m-%d %H:%M}"


class StatusDay(StatusRow):
    metric_date = models.DateField(help_text="The day, cut in TIME_ZONE.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "scraper_status_daily"
        verbose_name = "status daily summary"
        verbose_name_plural = "status daily summaries"
        ordering: ClassVar = ["-metric_date", "scraper_source", "http_status"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["scraper_source", "metric_date", "http_status"], name="uniq_status_day_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.http_status} {self.metric_date}"


class EntitySeen(models.Model):
    """When one source last refreshed one entity (a ticker symbol), and how often it usually
    does: written behind by metrics_app.ingest.freshness, forgotten after the retention."""

    # The upsert's key is the primary key (as FieldMinute's).
    pk = models.CompositePrimaryKey("scraper_source", "entity")
    scraper_source = models.CharField(max_length=records.NAME_MAX_LENGTH)
    entity = models.CharField(max_length=records.ENTITY_MAX_LENGTH)
    last_seen_at = models.BigIntegerField(help_text="recordedAt of the newest page that refreshed it (ms).")
    interval_ms = models.BigIntegerField(
        help_text="Its refresh interval, averaged (ms); 0 until it is refreshed a second time."
    )

    class Meta:
        db_table = "scraper_entities"
        verbose_name = "entity"
        verbose_name_plural = "entities"
        indexes: ClassVar = [
            # each source's stale entities, counted without reading its fresh ones. Retention's
            # daily delete of the entities not refreshed for METRICS_RETENTION_DAYS scans the
            # table instead of keeping an index on last_seen_at alone: every flush rewrites
            # each entry of both, and half a million pairs must stay in the buffer pool.
            models.Index(fields=["scraper_source", "last_seen_at"], name="idx_entity_source_seen"),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.entity}"


class StaleMinute(models.Model):
    """How many of one source's entities were stale in one minute, sampled by the alert
    evaluator (metrics_app.alerts.entity_rules): the stale count over time on the page. Only
    minutes with a stale entity have a row; kept METRICS_RETENTION_DAYS."""

    pk = models.CompositePrimaryKey("scraper_source", "minute")
    scraper_source = models.CharField(max_length=records.NAME_MAX_LENGTH)
    minute = models.DateTimeField(help_text="Start of the minute (UTC).")
    stale = models.IntegerField(help_text="Its entities stale then.")
    total = models.IntegerField(help_text="Its entities then.")

    class Meta:
        db_table = "scraper_entities_stale"
        verbose_name = "stale entities minute"
        indexes: ClassVar = [
            # retention
            models.Index(fields=["minute"], name="idx_entity_stale_minute"),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.minute:%Y-%m-%d %H:%M}: {self.stale} of {self.total} stale"

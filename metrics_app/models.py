"""The tables (docs/api.md and the README describe them), plus API keys.

Detailed rows are written in bulk by metrics_app.ingest.storage with raw multi-row inserts,
whose column lists are these models' fields (metrics_app.ingest.rows). The record rules that
reads and rollups need in SQL (a record's channel, a page's duration) are built here from
their one definition in metrics_app.records.
"""

import hashlib
import secrets
from collections.abc import Iterable
from typing import ClassVar, Final

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from msgspec import UNSET

from metrics_app import records
from metrics_app.records import CHANNEL_FIELDS, DURATION_FIELD, PAGE_TYPES

# A page row's duration is in the column of its type; the other is NULL.
PAGE_DURATION_SQL: Final = f"COALESCE({', '.join(DURATION_FIELD[kind] for kind in PAGE_TYPES)}, 0)"
# A scheduler run's channel: its source, else its own name.
SCHEDULER_CHANNEL_SQL: Final = f"COALESCE({', '.join(CHANNEL_FIELDS)})"


class PagePerformance(models.Model):
    """One page navigation or page scrape, as recorded by a scraper. Kept 7 days."""

    class MetricType(models.TextChoices):
        NAVIGATION = "page_navigation", "page navigation"
        SCRAPE = "page_scrape", "page scrape"

    scraper_source = models.CharField(
        max_length=records.NAME_MAX_LENGTH, help_text="Scraper that recorded it."
    )
    metric_type = models.CharField(max_length=50, choices=MetricType.choices)  # the seed's width
    page_url = models.CharField("URL", max_length=records.URL_MAX_LENGTH, blank=True, default="")
    navigation_duration_ms = models.IntegerField(null=True, blank=True)
    retry_count = models.IntegerField(null=True, blank=True)
    scrape_duration_ms = models.IntegerField(null=True, blank=True)
    items_extracted = models.IntegerField(null=True, blank=True)
    data_size = models.BigIntegerField(null=True, blank=True, help_text="Bytes scraped.")
    success = models.BooleanField(default=True)
    error = models.CharField(max_length=records.ERROR_MAX_LENGTH, null=True, blank=True)
    created_at = models.DateTimeField(help_text="The record's recordedAt, in UTC.")
    # The optional record fields (docs/api.md): NULL when not sent, so a record without them
    # costs two NULLs. The counts are also summed into metrics_app.data_models' rollups.
    http_status = models.SmallIntegerField("HTTP status", null=True, blank=True)
    field_counts = models.JSONField(
        null=True, blank=True, help_text='A scrape\'s fields: {"price": [filled, invalid], …}.'
    )
    run_id = models.CharField("run", max_length=records.RUN_ID_MAX_LENGTH, null=True, blank=True)

    class Meta:
        db_table = "scraper_page_performance"
        verbose_name = "page metric"
        ordering: ClassVar = ["-created_at", "-id"]
        indexes: ClassVar = [
            # recent records of one source: the dashboard's history and /api/metrics/recent/
            models.Index(fields=["scraper_source", "created_at"], name="idx_source_time"),
            # one type of one source over time: charts and daily aggregation
            models.Index(fields=["metric_type", "scraper_source", "created_at"], name="idx_type_source_time"),
            # retention deletes and "everything since" scans
            models.Index(fields=["created_at"], name="idx_page_created"),
            # the failures of a range (the page's failures view)
            models.Index(fields=["success", "created_at"], name="idx_page_failures"),
            # a resync: a source's records after an id, in id order, without reading the others'
            models.Index(fields=["scraper_source", "id"], name="idx_page_source_id"),
            # a run's records, without a scan
            models.Index(fields=["run_id", "created_at"], name="idx_page_run"),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.metric_type} {self.created_at:%Y-%m-%d %H:%M:%S}"

    def to_metric(self) -> records.PageNavigation | records.PageScrape:
        recorded_at = records.epoch_ms(self.created_at)
        if self.metric_type == self.MetricType.NAVIGATION:
            return records.PageNavigation(
                scraper_source=self.scraper_source,
                url=self.page_url,
                navigation_duration_ms=self.navigation_duration_ms or 0,
                retry_count=self.retry_count or 0,
                http_status=UNSET if self.http_status is None else self.http_status,
                success=self.success,
                error=self.error,
                recorded_at=recorded_at,
                run_id=UNSET if self.run_id is None else self.run_id,
            )
        return records.PageScrape(
            scraper_source=self.scraper_source,
            url=self.page_url,
            scrape_duration_ms=self.scrape_duration_ms or 0,
            items_extracted=self.items_extracted or 0,
            data_size=self.data_size or 0,
            fields=UNSET if self.field_counts is None else records.fields_of(self.field_counts),
            success=self.success,
            error=self.error,
            recorded_at=recorded_at,
            run_id=UNSET if self.run_id is None else self.run_id,
        )


class SchedulerMetricQuerySet(models.QuerySet["SchedulerMetric"]):
    def on_channel(self, channel: str) -> "SchedulerMetricQuerySet":
        """Runs broadcast on a channel: those of the source, or a bare scheduler's own."""
        source, name = CHANNEL_FIELDS
        own_name = models.Q(**{f"{source}__isnull": True, name: channel})
        return self.filter(models.Q(**{source: channel}) | own_name)


class SchedulerMetric(models.Model):
    """One run of a scheduled job. Kept 7 days."""

    scheduler_name = models.CharField(max_length=records.NAME_MAX_LENGTH)
    scraper_source = models.CharField(max_length=records.NAME_MAX_LENGTH, null=True, blank=True)
    execution_duration_ms = models.IntegerField()
    items_processed = models.IntegerField(default=0)
    success = models.BooleanField(default=True)
    error = models.CharField(max_length=records.ERROR_MAX_LENGTH, null=True, blank=True)
    created_at = models.DateTimeField(help_text="The record's recordedAt, in UTC.")
    run_id = models.CharField("run", max_length=records.RUN_ID_MAX_LENGTH, null=True, blank=True)

    objects = SchedulerMetricQuerySet.as_manager()

    class Meta:
        db_table = "scheduler_metrics"
        verbose_name = "scheduler run"
        ordering: ClassVar = ["-created_at", "-id"]
        indexes: ClassVar = [
            # runs of one scheduler over time
            models.Index(fields=["scheduler_name", "created_at"], name="idx_scheduler_time"),
            # runs attributed to a source: the source's channel history
            models.Index(fields=["scraper_source", "created_at"], name="idx_sched_source_time"),
            # retention deletes
            models.Index(fields=["created_at"], name="idx_sched_created"),
            # the failures of a range
            models.Index(fields=["success", "created_at"], name="idx_sched_failures"),
            # a resync: a channel's runs after an id (by source, or a bare scheduler's by name)
            models.Index(fields=["scraper_source", "id"], name="idx_sched_source_id"),
            models.Index(fields=["scheduler_name", "id"], name="idx_sched_name_id"),
            # the run a scheduler_run record ends
            models.Index(fields=["run_id", "created_at"], name="idx_sched_run"),
        ]

    def __str__(self) -> str:
        return f"{self.scheduler_name} {self.created_at:%Y-%m-%d %H:%M:%S}"

    def to_metric(self) -> records.SchedulerRun:
        return records.SchedulerRun(
            scheduler_name=self.scheduler_name,
            scraper_source=self.scraper_source,
            execution_duration_ms=self.execution_duration_ms,
            items_processed=self.items_processed,
            success=self.success,
            error=self.error,
            recorded_at=records.epoch_ms(self.created_at),
            run_id=UNSET if self.run_id is None else self.run_id,
        )


class DailySummary(models.Model):
    """One source's day, rolled up from the detailed rows. Kept forever."""

    scraper_source = models.CharField(max_length=records.NAME_MAX_LENGTH)
    metric_date = models.DateField(help_text="The day, cut in TIME_ZONE.")
    total_navigations = models.BigIntegerField(default=0)
    successful_navigations = models.BigIntegerField(default=0)
    avg_navigation_duration_ms = models.FloatField(null=True, blank=True)
    min_navigation_duration_ms = models.IntegerField(null=True, blank=True)
    max_navigation_duration_ms = models.IntegerField(null=True, blank=True)
    avg_retry_count = models.FloatField(null=True, blank=True)
    total_scrapes = models.BigIntegerField(default=0)
    successful_scrapes = models.BigIntegerField(default=0)
    avg_scrape_duration_ms = models.FloatField(null=True, blank=True)
    total_items_extracted = models.BigIntegerField(default=0)
    p95_navigation_duration_ms = models.FloatField("p95 navigation duration (ms)", null=True, blank=True)
    min_scrape_duration_ms = models.IntegerField(null=True, blank=True)
    max_scrape_duration_ms = models.IntegerField(null=True, blank=True)
    p95_scrape_duration_ms = models.FloatField("p95 scrape duration (ms)", null=True, blank=True)
    total_data_size = models.BigIntegerField(default=0, help_text="Bytes scraped.")
    error_count = models.BigIntegerField(default=0, help_text="Navigations and scrapes that failed.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "scraper_daily_summary"
        verbose_name = "daily summary"
        verbose_name_plural = "daily summaries"
        ordering: ClassVar = ["-metric_date", "scraper_source"]
        constraints: ClassVar = [
            # one row per source and day; re-running the aggregation upserts into it
            models.UniqueConstraint(
                fields=["scraper_source", "metric_date"], name="uniq_summary_source_date"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.metric_date}"


class SchedulerDailySummary(models.Model):
    """One scheduler's day, rolled up from its runs. Kept forever."""

    scheduler_name = models.CharField(max_length=records.NAME_MAX_LENGTH)
    metric_date = models.DateField(help_text="The day, cut in TIME_ZONE.")
    total_runs = models.BigIntegerField(default=0)
    successful_runs = models.BigIntegerField(default=0)
    error_count = models.BigIntegerField(default=0, help_text="Runs that failed.")
    avg_execution_duration_ms = models.FloatField(null=True, blank=True)
    min_execution_duration_ms = models.IntegerField(null=True, blank=True)
    max_execution_duration_ms = models.IntegerField(null=True, blank=True)
    p95_execution_duration_ms = models.FloatField("p95 execution duration (ms)", null=True, blank=True)
    total_items_processed = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "scheduler_daily_summary"
        verbose_name = "scheduler daily summary"
        verbose_name_plural = "scheduler daily summaries"
        ordering: ClassVar = ["-metric_date", "scheduler_name"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["scheduler_name", "metric_date"], name="uniq_sched_summary_name_date"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scheduler_name} {self.metric_date}"


class RollupRow(models.Model):
    """What both rollup grains keep per channel, type (and scheduler), time bucket and duration
    bucket (metrics_app.rollups); each grain adds its time column."""

    scraper_source = models.CharField(
        max_length=records.NAME_MAX_LENGTH,
        help_text="The channel: the source, or a bare scheduler's own name.",
    )
    metric_type = models.CharField(max_length=20)  # wider than any of METRIC_TYPES
    scheduler_name = models.CharField(max_length=records.NAME_MAX_LENGTH, default="", blank=True)
    duration_bucket = models.SmallIntegerField()
    # Counters are BIGINT: with every record's values bounded (metrics_app.records), no number
    # of valid records can overflow a row and make later batches fail.
    records = models.BigIntegerField()
    successes = models.BigIntegerField()
    duration_sum = models.BigIntegerField()
    duration_min = models.IntegerField()
    duration_max = models.IntegerField()
    retry_sum = models.BigIntegerField()
    items_sum = models.BigIntegerField()
    bytes_sum = models.BigIntegerField()

    class Meta:
        abstract = True


class HourlyRollup(RollupRow):
    """Records of one channel, type (and scheduler) and hour that fell in one duration bucket.

    Kept current by the same transaction that stores the records (metrics_app.rollups), and
    kept forever: hour and day history read these rows, and the daily summaries are built from
    them. One row per histogram bucket (metrics_app.histogram) is what lets percentiles be
    merged across hours and days. Hours are cut in TIME_ZONE, so its days are whole hours.
    """

    hour = models.DateTimeField(help_text="Start of the hour, in TIME_ZONE's hours.")

    class Meta:
        db_table = "scraper_metrics_hourly"
        verbose_name = "hourly rollup"
        ordering: ClassVar = ["-hour", "scraper_source"]
        constraints: ClassVar = [
            # the upsert's key, and the index of one channel's history over time
            models.UniqueConstraint(
                fields=["scraper_source", "hour", "metric_type", "scheduler_name", "duration_bucket"],
                name="uniq_hourly_key",
            ),
        ]
        indexes: ClassVar = [
            # every source's history, and the daily summaries
            models.Index(fields=["hour"], name="idx_hourly_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.metric_type} {self.hour:%Y-%m-%d %H:%M}"


class MinuteRollup(RollupRow):
    """Records of one channel, type (and scheduler) and UTC minute that fell in one duration
    bucket: HourlyRollup's rows at minute grain, kept by the same transaction, and kept as long
    as the detailed rows. The live and 1-hour ranges, minute history and each process's live
    totals read these rows, so their cost does not grow with the records per second."""

    minute = models.DateTimeField(help_text="Start of the minute (UTC).")
    last_recorded_at = models.BigIntegerField(
        help_text="The newest record's recordedAt (ms since the epoch)."
    )

    class Meta:
        db_table = "scraper_metrics_minute"
        verbose_name = "minute rollup"
        ordering: ClassVar = ["-minute", "scraper_source"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["scraper_source", "minute", "metric_type", "scheduler_name", "duration_bucket"],
                name="uniq_minute_key",
            ),
        ]
        indexes: ClassVar = [
            # the live ranges of every source, live totals, retention
            models.Index(fields=["minute"], name="idx_minute_minute"),
        ]

    def __str__(self) -> str:
        return f"{self.scraper_source} {self.metric_type} {self.minute:%Y-%m-%d %H:%M}"


class AggregatedDay(models.Model):
    """A day whose summaries were built, so the nightly task can catch up on missed nights."""

    metric_date = models.DateField(unique=True)
    sources = models.IntegerField(help_text="Sources and schedulers summarised.")
    aggregated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "metrics_aggregated_days"
        verbose_name = "aggregated day"
        ordering: ClassVar = ["-metric_date"]

    def __str__(self) -> str:
        return str(self.metric_date)


class Source(models.Model):
    """A name records have been sent under: a scraper's source, or a scheduler's. Counted
    against METRICS_MAX_SOURCES when a record would add one (metrics_app.admission.sources);
    forgotten by the cleanup once nothing of it is left in the retention window."""

    name = models.CharField(max_length=records.NAME_MAX_LENGTH, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "metrics_sources"
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name


KEY_PREFIX = "wm_"


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> "ApiKeyQuerySet":
        return self.filter(revoked_at__isnull=True)


class Scope(models.TextChoices):
    """What a key may do (docs/api.md, "Keys")."""

    ALL = "all", "ingest and read"
    INGEST = "ingest", "ingest only"
    READ = "read", "read only"


class ApiKey(models.Model):
    """A machine's credential. Only a hash is stored; the key itself is shown once."""

    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'robinhood scraper'.")
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.ALL)
    sources = models.TextField(
        blank=True, default="", help_text="Comma-separated sources it may write and read; empty: all."
    )
    prefix = models.CharField(
        max_length=12, editable=False, help_text="First characters, to tell keys apart."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        db_table = "api_keys"
        verbose_name = "API key"
        ordering: ClassVar = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def clean(self) -> None:
        """Sources, as the admin's form gives them: names (not `*`, not a blank line), each once."""
        listed = [part.strip() for part in self.sources.split(",") if part.strip()]
        bad = ", ".join(repr(name) for name in listed if not records.is_source_name(name))
        if bad:
            raise ValidationError(
                {"sources": f"not a source or scheduler name: {bad} ({records.SOURCE_PATTERN})"}
            )
        self.sources = ",".join(sorted(set(listed)))

    @property
    def source_list(self) -> frozenset[str] | None:
        """The sources it is limited to, or None for every source."""
        listed = frozenset(part.strip() for part in self.sources.split(",") if part.strip())
        return listed or None

    @classmethod
    def issue(cls, name: str, scope: str = Scope.ALL, sources: Iterable[str] = ()) -> tuple["ApiKey", str]:
        """Create a key; returns the row and the plain key, which is not kept anywhere."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        api_key = cls.objects.create(
            name=name, prefix=key[:10], key_hash=hash_key(key), scope=scope, sources=",".join(sorted(sources))
        )
        return api_key, key

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])


class IdempotencyKey(models.Model):
    """A batch stored under an `Idempotency-Key` (docs/api.md): written in the batch's own
    transaction, so a batch resent after a lost answer finds it and is not stored again.
    Kept IDEMPOTENCY_HOURS (metrics_app.ingest.idempotency), then removed by the cleanup."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, db_constraint=False)
    key = models.CharField(max_length=64)  # sha256 of the Idempotency-Key: exact on every database
    body_hash = models.CharField(max_length=64)  # sha256 of the request body
    accepted = models.PositiveIntegerField()  # the first answer: {"accepted": n}
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "metrics_idempotency_keys"
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["api_key", "key"], name="one_use_per_api_key")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.accepted} records)"


# The field, status and run rollups live in their own modules; Django finds them through this one.
# The alerts' tables live with the alerts; Django finds an app's models through this module.
from metrics_app.alerts.models import (  # noqa: E402, F401
    Alert,
    AlertEvent,
    EvaluatorLease,
    Notification,
    Silence,
    Threshold,
    Verdict,
)
from metrics_app.data_models import (  # noqa: E402, F401
    EntitySeen,
    FieldDay,
    FieldHour,
    FieldMinute,
    StaleMinute,
    StatusDay,
    StatusHour,
    StatusMinute,
)
from metrics_app.run_models import RunEnd, RunEntity, RunField, RunSource, RunStatus  # noqa: E402, F401

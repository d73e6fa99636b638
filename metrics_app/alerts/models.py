"""The alerts' tables (docs/alerts.md): alerts and their transitions, the outbox of
notifications, silences, fixed thresholds, and the evaluator's lease."""

from typing import ClassVar

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from metrics_app.records import NAME_MAX_LENGTH, SOURCE_PATTERN, is_source_name


class Verdict(models.TextChoices):
    """What broke (docs/alerts.md says how each is decided)."""

    SITE_DOWN = "site_down"
    BLOCKED = "blocked"
    EXTRACTION_BROKEN = "extraction_broken"
    FIELD_BROKEN = "field_broken"
    SLOW = "slow"
    ERROR_RATE = "error_rate"
    NO_DATA = "no_data"
    SCHEDULER_LATE = "scheduler_late"
    SCHEDULER_FAILED = "scheduler_failed"
    RUN_DEGRADED = "run_degraded"
    STALE_ENTITIES = "stale_entities"
    INCIDENT = "incident"


def visible_to(sources: frozenset[str]) -> models.Q:
    """Alerts a caller limited to `sources` may see: every name the alert gives (its source,
    its scheduler) is one of them, and it gives one (an incident of many sources gives none).
    The live stream applies the same rule to alert events (metrics_app.stream.hub)."""
    named = ~models.Q(scraper_source__isnull=True, scheduler_name__isnull=True)
    source = models.Q(scraper_source__isnull=True) | models.Q(scraper_source__in=sources)
    scheduler = models.Q(scheduler_name__isnull=True) | models.Q(scheduler_name__in=sources)
    return named & source & scheduler


class Alert(models.Model):
    """One episode of one condition (a verdict for a source or scheduler): pending while it
    has not held for half a window, firing, then resolved. A condition that comes back later
    is a new alert; one that comes back while its alert is still firing counts a flap."""

    class State(models.TextChoices):
        PENDING = "pending"
        FIRING = "firing"
        RESOLVED = "resolved"

    class Severity(models.TextChoices):
        WARNING = "warning"
        CRITICAL = "critical"

    fingerprint = models.CharField(
        max_length=160, help_text="What the alert is about: verdict, source and scheduler."
    )
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    scraper_source = models.CharField(max_length=NAME_MAX_LENGTH, null=True, blank=True)
    scheduler_name = models.CharField(max_length=NAME_MAX_LENGTH, null=True, blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    # The current numbers: of the last evaluation, also while the condition is gone and the
    # alert resolves (its events keep the numbers of each transition).
    summary = models.CharField(max_length=500)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    threshold_source = models.CharField(
        max_length=200, blank=True, help_text="Where the threshold came from (learned, fixed, a default)."
    )
    measure = models.CharField(
        max_length=40, blank=True,
        help_text="The rule that measured it (verdicts.py), measured again while it resolves.",
    )  # fmt: skip
    sources = models.JSONField(default=list, blank=True, help_text="An incident's sources.")
    pending_since = models.DateTimeField()
    starts_at = models.DateTimeField(null=True, blank=True, help_text="When it started firing.")
    ends_at = models.DateTimeField(null=True, blank=True)
    last_held_at = models.DateTimeField(help_text="The last evaluation that found the condition.")
    clear_since = models.DateTimeField(
        null=True, blank=True, help_text="Since when the condition has been gone (while firing)."
    )
    flaps = models.IntegerField(
        default=0, help_text="Times the condition went away and came back while firing."
    )
    silenced = models.BooleanField(default=False, help_text="Matched a silence when it fired: not notified.")

    class Meta:
        db_table = "metrics_alerts"
        ordering: ClassVar = ["-pending_since"]
        indexes: ClassVar = [
            models.Index(fields=["state", "fingerprint"], name="idx_alert_state"),
            models.Index(fields=["scraper_source", "pending_since"], name="idx_alert_source"),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} {self.scraper_source or self.scheduler_name or ''} ({self.state})"


class AlertEvent(models.Model):
    """A change of an alert's state that people are told about: firing or resolved, with the
    numbers at that moment (the alert itself moves on to the current ones)."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=10)  # "firing" or "resolved"
    at = models.DateTimeField()
    summary = models.CharField(max_length=500)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)

    class Meta:
        db_table = "metrics_alert_events"
        ordering: ClassVar = ["-at"]

    def __str__(self) -> str:
        return f"{self.alert} {self.status} at {self.at:%Y-%m-%d %H:%M:%S}"


class Notification(models.Model):
    """One event to one receiver (a webhook URL, or the email list): the outbox. Written in the
    transaction that records the event, delivered after it, retried with backoff until sent."""

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"  # gave up after MAX_ATTEMPTS (metrics_app.alerts.notify)

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="notifications")
    target = models.CharField(max_length=500, help_text="A webhook URL, or 'email'.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.IntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "metrics_alert_notifications"
        ordering: ClassVar = ["-next_attempt_at"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["event", "target"], name="uniq_notification"),
        ]
        indexes: ClassVar = [models.Index(fields=["state", "next_attempt_at"], name="idx_notification_due")]

    def __str__(self) -> str:
        return f"{self.event} → {self.target} ({self.state})"


class Silence(models.Model):
    """Mutes alerts that match every field given (an empty field matches anything) until
    `ends_at`. A silenced alert is still recorded; it is not notified."""

    scraper_source = models.CharField(max_length=NAME_MAX_LENGTH, blank=True)
    scheduler_name = models.CharField(max_length=NAME_MAX_LENGTH, blank=True)
    verdict = models.CharField(max_length=20, choices=Verdict.choices, blank=True)
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    created_by = models.CharField(max_length=150, blank=True)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        db_table = "metrics_alert_silences"
        ordering: ClassVar = ["-ends_at"]

    def __str__(self) -> str:
        what = (
            " ".join(filter(None, [self.verdict, self.scraper_source, self.scheduler_name])) or "everything"
        )
        return f"silence {what} until {self.ends_at:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        """What a form (the admin's) must not save: a silence of everything, a source or a
        scheduler that is no name, a silence that ends before it starts."""
        if not (self.scraper_source or self.scheduler_name or self.verdict):
            raise ValidationError(
                "Name a source, a scheduler or a verdict: a silence of everything mutes every alert."
            )
        for field in ("scraper_source", "scheduler_name"):
            value = getattr(self, field)
            if value and not is_source_name(value):
                raise ValidationError(
                    {field: f"{value!r} is not a source or scheduler name ({SOURCE_PATTERN})."}
                )
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "A silence must end after it starts."})

    def matches(self, verdict: str, source: str | None, scheduler: str | None) -> bool:
        return (
            (not self.verdict or self.verdict == verdict)
            and (not self.scraper_source or self.scraper_source == source)
            and (not self.scheduler_name or self.scheduler_name == scheduler)
        )


class Threshold(models.Model):
    """A fixed threshold, set in the admin, in force beside the learned ones: either can fire."""

    class Signal(models.TextChoices):
        MIN_SUCCESS_PERCENT = "min_success_percent", "success % below"
        MAX_P50_MS = "max_p50_ms", "median duration (ms) above"
        MIN_ITEMS_PER_SCRAPE = "min_items_per_scrape", "items per scrape below"

    scraper_source = models.CharField(
        max_length=NAME_MAX_LENGTH, blank=True, help_text="Empty: every source."
    )
    signal = models.CharField(max_length=30, choices=Signal.choices)
    value = models.FloatField()

    class Meta:
        db_table = "metrics_alert_thresholds"

    def __str__(self) -> str:
        return f"{self.scraper_source or 'every source'}: {self.get_signal_display()} {self.value:g}"


class EvaluatorLease(models.Model):
    """The one row that elects the evaluator: whoever holds an unexpired lease evaluates; a
    holder that dies stops renewing, and another process takes over when it expires."""

    holder = models.CharField(max_length=100)
    expires_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_run_ms = models.FloatField(null=True, blank=True)
    runs = models.BigIntegerField(default=0)

    class Meta:
        db_table = "metrics_alert_evaluator"

    def __str__(self) -> str:
        return f"evaluator {self.holder} until {self.expires_at:%H:%M:%S}"

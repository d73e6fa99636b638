"""pending → firing → resolved, stored with every transition (Alert, AlertEvent), and the
outbox rows that tell people (Notification), all in one transaction per evaluation.

- A condition found for the first time opens a pending alert. It fires once it has held for
  half a window (METRICS_ALERT_WINDOW_S / 2); gone before that, the pending alert is dropped.
  A finding that is a fact rather than a measure over the window (`at_once`: a run that ended
  far out of range) fires at once.
- Each evaluation gives an open alert the current numbers: those of its finding while the
  condition holds, and once it is gone, those of the same rule measured again (`current`), so
  a resolving alert does not go on showing the numbers it fired with. Its events keep the
  numbers of each transition; a change of numbers alone is neither an event nor notified.
- A firing alert resolves once its condition has been gone for half a window. A condition
  that comes back before that counts a flap, and each flap (up to MAX_HOLD_FLAPS) holds the
  next resolution half a window longer: a flapping source stays one firing alert instead of
  a storm of firing/resolved pairs.
- An alert that fires while a silence matches it is recorded and shown as silenced, and its
  transitions are not notified.
"""

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from metrics_app.alerts.models import Alert, AlertEvent, Notification, Silence, Verdict
from metrics_app.alerts.verdicts import Finding
from metrics_app.records import SOURCE_PATTERN, is_source_name
from metrics_app.tally import iso

MAX_HOLD_FLAPS: Final = 3
# what an evaluation changes in an alert whose condition still holds
NUMBER_FIELDS: Final = ["summary", "value", "threshold", "threshold_source", "measure"]
HELD_FIELDS: Final = [*NUMBER_FIELDS, "sources", "last_held_at", "flaps", "clear_since"]
# what an evaluation changes in a firing alert whose condition is gone
CLEARING_FIELDS: Final = [*NUMBER_FIELDS, "clear_since"]
RULES: Final = {
    "site_down": "navigation_failures",
    "blocked": "refusals_or_small_pages",
    "extraction_broken": "items_per_page",
    "field_broken": "field_shares",
    "slow": "duration",
    "error_rate": "failure_rate",
    "no_data": "silence",
    "scheduler_late": "scheduler_period",
    "scheduler_failed": "scheduler_runs",
    "run_degraded": "last_ten_runs",
    "stale_entities": "entity_freshness",
    "incident": "shared_verdict",
}


def as_dict(alert: Alert, silences: Iterable[Silence] = ()) -> dict[str, Any]:
    """An alert as the API, the WebSocket and the webhooks give it (docs/alerts.md); `silenced`
    when it fired under a silence or one of `silences` (those in force) matches it now."""
    # a firing alert whose condition is gone: its numbers are the recovery's, not a fault's
    clearing = alert.clear_since if alert.state == Alert.State.FIRING else None
    return {
        "id": alert.pk,
        "rule": RULES.get(alert.verdict, alert.verdict),
        "verdict": alert.verdict,
        "scraperSource": alert.scraper_source,
        "schedulerName": alert.scheduler_name,
        "severity": alert.severity,
        "summary": alert.summary,
        "value": alert.value,
        "threshold": alert.threshold,
        "thresholdSource": alert.threshold_source,
        "state": alert.state,
        "startsAt": iso(alert.starts_at) if alert.starts_at else None,
        "endsAt": iso(alert.ends_at) if alert.ends_at else None,
        "clearSince": iso(clearing) if clearing else None,
        "flaps": alert.flaps,
        "silenced": alert.silenced or _silenced(alert, silences),
        "sources": alert.sources,
    }


def apply(
    findings: Sequence[Finding],
    now: datetime,
    current: Callable[[Alert], Finding | None] = lambda alert: None,
) -> list[AlertEvent]:
    """Move every open alert on by this evaluation's findings; returns the new events.
    `current` measures again a firing alert whose condition is gone (None: nothing to measure,
    its numbers stay)."""
    half = timedelta(seconds=settings.METRICS_ALERT_WINDOW_S / 2)
    events: list[AlertEvent] = []
    with transaction.atomic():
        open_alerts = {
            alert.fingerprint: alert
            for alert in Alert.objects.select_for_update().filter(
                state__in=[Alert.State.PENDING, Alert.State.FIRING]
            )
        }
        silences = list(Silence.objects.filter(starts_at__lte=now, ends_at__gt=now))
        held: list[Alert] = []  # open alerts whose condition still holds, state unchanged
        for finding in findings:
            alert = open_alerts.pop(finding.fingerprint, None) or _opened(finding, now)
            _describe(alert, finding, now)
            if alert.state == Alert.State.FIRING and alert.clear_since is not None:
                alert.flaps += 1
                alert.clear_since = None
            if alert.state == Alert.State.PENDING and (finding.at_once or now - alert.pending_since >= half):
                alert.state, alert.starts_at = Alert.State.FIRING, now
                alert.silenced = _silenced(alert, silences)
                alert.save()
                events.append(_event(alert, "firing", now, silences))
            elif alert.pk is None:
                alert.save()
            else:
                held.append(alert)
        # one statement for all of them: a long outage updates its alerts every cycle
        Alert.objects.bulk_update(held, HELD_FIELDS, batch_size=500)
        for alert in open_alerts.values():  # their conditions are gone
            if alert.state == Alert.State.PENDING:
                alert.delete()
                continue
            alert.clear_since = alert.clear_since or now
            if (reading := current(alert)) is not None:
                _numbers(alert, reading)
            if now - alert.clear_since >= half * (1 + min(alert.flaps, MAX_HOLD_FLAPS)):
                alert.state, alert.ends_at = Alert.State.RESOLVED, now
                alert.save()
                events.append(_event(alert, "resolved", now, silences))
            else:
                alert.save(update_fields=CLEARING_FIELDS)
    return events


def _opened(finding: Finding, now: datetime) -> Alert:
    return Alert(
        fingerprint=finding.fingerprint,
        verdict=finding.verdict,
        scraper_source=finding.source,
        scheduler_name=finding.scheduler,
        severity=finding.severity,
        pending_since=now,
    )


def _describe(alert: Alert, finding: Finding, now: datetime) -> None:
    _numbers(alert, finding)
    alert.sources = list(finding.sources)
    alert.last_held_at = now


def _numbers(alert: Alert, finding: Finding) -> None:
    alert.summary = finding.summary[:500]
    alert.value, alert.threshold = finding.value, finding.threshold
    alert.threshold_source = finding.threshold_source[:200]
    alert.measure = finding.measure


def _silenced(alert: Alert, silences: Iterable[Silence]) -> bool:
    return any(
        silence.matches(alert.verdict, alert.scraper_source, alert.scheduler_name) for silence in silences
    )


def _event(alert: Alert, status: str, now: datetime, silences: Iterable[Silence]) -> AlertEvent:
    """Record a transition, and queue its notifications unless the alert is silenced."""
    event = AlertEvent.objects.create(
        alert=alert,
        status=status,
        at=now,
        summary=alert.summary,
        value=alert.value,
        threshold=alert.threshold,
    )
    if not (alert.silenced or _silenced(alert, silences)):
        targets = [
            *settings.METRICS_ALERT_WEBHOOK_URLS,
            *(["email"] if settings.METRICS_ALERT_EMAILS else []),
        ]
        Notification.objects.bulk_create(
            [Notification(event=event, target=target, next_attempt_at=now) for target in targets]
        )
    return event


def periods(since: datetime, now: datetime) -> dict[str, list[tuple[datetime, datetime]]]:
    """Per source: when it had alerts (from a window before each started to its end), so the
    usual is learned without them."""
    window = timedelta(seconds=settings.METRICS_ALERT_WINDOW_S)
    found: dict[str, list[tuple[datetime, datetime]]] = {}
    for source, sources, starts_at, ends_at in Alert.objects.filter(
        starts_at__isnull=False, pending_since__gte=since - window
    ).values_list("scraper_source", "sources", "starts_at", "ends_at"):
        for name in {source, *(sources or [])} - {None}:
            found.setdefault(name, []).append(((starts_at or now) - window, ends_at or now))
    return found


STATES: Final = ("firing", "resolved", "all")
MAX_LISTED: Final = 500


def listed(state: str, source: str | None) -> list[dict[str, Any]]:
    """Alerts for GET /api/alerts/: firing, resolved or all (pending ones are not alerts yet),
    newest first, at most MAX_LISTED."""
    alerts = Alert.objects.exclude(state=Alert.State.PENDING)
    if state != "all":
        alerts = alerts.filter(state=state)
    if source is not None:  # a source's alerts, or a scheduler's: the page's filter names either
        alerts = alerts.filter(models.Q(scraper_source=source) | models.Q(scheduler_name=source))
    now = timezone.now()
    silences = list(Silence.objects.filter(starts_at__lte=now, ends_at__gt=now))
    return [as_dict(alert, silences) for alert in alerts.order_by("-starts_at", "-id")[:MAX_LISTED]]


MAX_SILENCE_MINUTES: Final = 7 * 24 * 60


def silence(fields: dict[str, Any], by: str, now: datetime) -> Silence:
    """A silence from the page's JSON ({scraperSource, schedulerName, verdict, minutes, reason});
    ValueError(message, field) names what is wrong."""
    for name in ("scraperSource", "schedulerName", "verdict"):
        if not isinstance(fields.get(name) or "", str):
            raise ValueError(f"{name} must be text", name)
    source, scheduler, verdict = (
        fields.get(name) or "" for name in ("scraperSource", "schedulerName", "verdict")
    )
    for name, value in (("scraperSource", source), ("schedulerName", scheduler)):
        if value and not is_source_name(value):
            raise ValueError(f"{name} must match {SOURCE_PATTERN}", name)
    if verdict and verdict not in Verdict.values:
        raise ValueError(f"verdict must be one of {', '.join(Verdict.values)}", "verdict")
    if not (source or scheduler or verdict):
        raise ValueError("name a scraperSource, a schedulerName or a verdict to silence", "scraperSource")
    minutes = fields.get("minutes")
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= MAX_SILENCE_MINUTES:
        raise ValueError(f"minutes must be an integer from 1 to {MAX_SILENCE_MINUTES}", "minutes")
    reason = fields.get("reason") or ""
    if not isinstance(reason, str) or len(reason) > 500:
        raise ValueError("reason must be text of at most 500 characters", "reason")
    return Silence.objects.create(
        scraper_source=source, scheduler_name=scheduler, verdict=verdict, starts_at=now,
        ends_at=now + timedelta(minutes=minutes), created_by=by[:150], reason=reason,
    )  # fmt: skip

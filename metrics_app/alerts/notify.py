"""Delivering the outbox: each transition to each webhook, and to the email list.

A Notification row is written in the transaction that records the transition, once per
receiver (a unique key), so two evaluators can never queue the same one twice. Delivery
happens after that transaction: a receiver that fails (an error, a non-2xx answer, a timeout)
is tried again after RETRY_BASE_S, doubling up to RETRY_MAX_S, and given up after
MAX_ATTEMPTS (state "failed", shown in the admin and counted in /api/stats/). Delivery is at
least once: a process that dies between sending and marking the row sent sends it again.
"""

import re
from datetime import datetime, timedelta
from typing import Any, Final

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q

from metrics_app import counters
from metrics_app.alerts.lifecycle import as_dict
from metrics_app.alerts.models import AlertEvent, Notification

RETRY_BASE_S: Final = 5
RETRY_MAX_S: Final = 900
MAX_ATTEMPTS: Final = 12  # about two hours of retries
TIMEOUT_S: Final = 5.0
PER_CYCLE: Final = 50


def payload(event: AlertEvent) -> dict[str, Any]:
    """The webhook body: `text` makes it a valid Slack or Mattermost incoming-webhook message,
    with the summary's words shown as words (`chat_text`)."""
    alert = event.alert
    # The numbers of the transition told, not those the alert has moved on to since (a retried
    # "firing" would otherwise carry the numbers of its recovery).
    numbers = {"summary": event.summary, "value": event.value, "threshold": event.threshold}
    return {
        "status": event.status,
        "alert": {**as_dict(alert), **numbers},
        "text": chat_text(headline(event)),
        "link": link(alert.scraper_source),
    }


def headline(event: AlertEvent) -> str:
    """ "[FIRING] site down: robinhood: 92 % of page loads failed …": the verdict, then the summary."""
    verdict = event.alert.verdict.replace("_", " ")
    return f"[{'FIRING' if event.status == 'firing' else 'RESOLVED'}] {verdict}: {event.summary}"


# A summary quotes scrapers' error texts, which anyone with an ingest key writes: in a chat
# message, Slack's `<!channel>` or `<https://x|label>` and Mattermost's `@channel` or
# `[label](https://x)` would ping people or disguise a link.
_CHAT_ESCAPES: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_MENTION: Final = re.compile(r"@(?=(channel|here|all|everyone)\b)", re.IGNORECASE)


def chat_text(text: str) -> str:
    """Text as Slack and Mattermost show it literally: `&`, `<` and `>` as Slack's entities,
    a Markdown link's `](` escaped, and broadcast mentions broken with a zero-width space."""
    return _MENTION.sub("@\u200b", text.translate(_CHAT_ESCAPES).replace("](", "]\\("))


def subject(text: str) -> str:
    """An email subject: one line (a header cannot hold a newline), at most 150 characters."""
    return " ".join(text.split())[:150]


def link(source: str | None) -> str:
    base = settings.METRICS_PUBLIC_URL
    return f"{base}/analytics/source/{source}/" if source else f"{base}/analytics/#alerts"


def deliver_due(now: datetime) -> tuple[int, int]:
    """Send what is due; returns (sent, failed attempts)."""
    due = list(
        Notification.objects.filter(state=Notification.State.PENDING, next_attempt_at__lte=now)
        .select_related("event__alert")
        .order_by("next_attempt_at")[:PER_CYCLE]
    )
    sent = failed = 0
    for notification in due:
        try:
            _send(notification)
        except Exception as exc:
            failed += 1
            _failed(notification, now, exc)
            continue
        sent += 1
        counters.incr("alert_notifications_sent")
        Notification.objects.filter(pk=notification.pk).update(
            state=Notification.State.SENT, sent_at=now, attempts=notification.attempts + 1, last_error=""
        )
    return sent, failed


def _send(notification: Notification) -> None:
    body = payload(notification.event)
    if notification.target == "email":
        send_mail(
            subject=subject(headline(notification.event)),
            message=f"{headline(notification.event)}\n\n{body['link']}\n",
            from_email=None,
            recipient_list=settings.METRICS_ALERT_EMAILS,
        )
        return
    response = httpx.post(notification.target, json=body, timeout=TIMEOUT_S)
    response.raise_for_status()


def _failed(notification: Notification, now: datetime, exc: Exception) -> None:
    counters.incr("alert_notification_failures")
    attempts = notification.attempts + 1
    delay = min(RETRY_BASE_S * 2 ** (attempts - 1), RETRY_MAX_S)
    Notification.objects.filter(pk=notification.pk).update(
        attempts=attempts,
        last_error=f"{type(exc).__name__}: {exc}"[:500],
        next_attempt_at=now + timedelta(seconds=delay),
        state=Notification.State.FAILED if attempts >= MAX_ATTEMPTS else Notification.State.PENDING,
    )


def outbox_counts() -> dict[str, int]:
    """Notifications waiting and given up (for /api/stats/)."""
    return {
        "pending": Notification.objects.filter(state=Notification.State.PENDING).count(),
        "failed": Notification.objects.filter(Q(state=Notification.State.FAILED)).count(),
    }

"""The evaluator: one cycle every METRICS_ALERT_EVAL_INTERVAL_S, in exactly one process.

Every daphne process runs `watch()` (wealthmetrics.daphne_internals starts it), and so may
`manage.py watch_alerts`; each tries, every interval, to take or renew the lease, one row
(EvaluatorLease) changed by a single conditional UPDATE, which the database serialises: the
holder renews it, anyone may take it once it has expired (LEASE_INTERVALS intervals without a
renewal: the holder died or hangs). Only the holder evaluates and delivers notifications.

A cycle reads the last window (metrics_app.alerts.signals), relearns a few channels' usual
(metrics_app.alerts.usual), judges every channel and scheduler (metrics_app.alerts.verdicts),
moves the alerts on (metrics_app.alerts.lifecycle), then announces each transition to every
page through the live stream and delivers the outbox (metrics_app.alerts.notify).
"""

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from metrics_app import counters, db
from metrics_app.alerts import lifecycle, notify, signals, verdicts
from metrics_app.alerts.entity_rules import MEASURE as STALE_ENTITIES
from metrics_app.alerts.entity_rules import StaleEntities
from metrics_app.alerts.field_window import FieldWindow
from metrics_app.alerts.models import Alert, AlertEvent, EvaluatorLease, Threshold
from metrics_app.alerts.runs import MEASURE as RUN_DEGRADED
from metrics_app.alerts.runs import LastRuns
from metrics_app.alerts.usual import HISTORY, Baselines, Usual
from metrics_app.records import epoch_ms
from metrics_app.stream.bus import get_bus

log = logging.getLogger(__name__)

LEASE_INTERVALS: Final = 3
STALE_INTERVALS: Final = 4  # the watchdog: an evaluator silent this long is itself an alert
LEASE_ID: Final = 1
FULL_SCAN_EVERY: Final = timedelta(minutes=5)
MINUTE_MS: Final = 60_000
Reading = Callable[[Alert], verdicts.Finding | None]  # an open alert's numbers, measured again
# What a scraper was judged on (its window, the window's last part, its usual, the thresholds
# that apply to it, the words for both spans), and its finding.
Judged = tuple[
    tuple[signals.Window, signals.Window | None, Usual, list[tuple[str, float]], tuple[str, str]],
    verdicts.Finding | None,
]


@dataclass
class Cycle:
    """What one evaluation did and cost."""

    channels: int = 0
    schedulers: int = 0
    findings: int = 0
    events: int = 0
    learned: int = 0
    queries: int = 0
    db_ms: float = 0.0
    wall_ms: float = 0.0


class Evaluator:
    def __init__(self, holder: str | None = None) -> None:
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.baselines = Baselines()
        # Channels seen sending steadily (records per window), so that their silence is news.
        self.steady: set[str] = set()
        self.newest: dict[str, int] = {}  # channel → start of its newest minute (ms), see _last_seen
        self.fields = FieldWindow()
        self._scanned_at: datetime | None = None
        self._verdicts: dict[str, Judged] = {}  # each scraper's last finding, see _verdict
        self.last_runs = LastRuns()  # each scheduler's last run, judged (run_degraded)
        self.stale_entities = StaleEntities()  # each source's stale counts (stale_entities)

    # --- the lease ------------------------------------------------------------------------

    def acquire(self, now: datetime | None = None) -> bool:
        """Take or renew the lease; True when this evaluator holds it."""
        now = now or timezone.now()
        expires = now + timedelta(seconds=LEASE_INTERVALS * settings.METRICS_ALERT_EVAL_INTERVAL_S)
        leases = EvaluatorLease.objects.filter(pk=LEASE_ID)
        taken = leases.filter(holder=self.holder).update(expires_at=expires) or leases.filter(
            expires_at__lt=now
        ).update(holder=self.holder, expires_at=expires)
        if taken:
            return True
        try:
            with transaction.atomic():  # a savepoint, should the caller be in a transaction
                EvaluatorLease.objects.create(pk=LEASE_ID, holder=self.holder, expires_at=expires)
        except IntegrityError:
            return False  # someone else holds it
        return True

    def release(self) -> None:
        EvaluatorLease.objects.filter(pk=LEASE_ID, holder=self.holder).update(expires_at=timezone.now())

    # --- one cycle ------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> tuple[Cycle, list[AlertEvent]]:
        """Evaluate every channel and scheduler once; returns the cost and the new events."""
        now = now or timezone.now()
        cycle = Cycle()
        started = time.perf_counter()
        with _timed_queries(cycle):
            findings, current = self._judge(now, cycle)
            events = lifecycle.apply(findings, now, current)
        cycle.findings, cycle.events = len(findings), len(events)
        cycle.wall_ms = (time.perf_counter() - started) * 1000
        EvaluatorLease.objects.filter(pk=LEASE_ID, holder=self.holder).update(
            last_run_at=now, last_run_ms=round(cycle.wall_ms, 1), runs=F("runs") + 1
        )
        return cycle, events

    def _judge(self, now: datetime, cycle: Cycle) -> tuple[list[verdicts.Finding], Reading]:
        """This cycle's findings, and how to measure again an alert whose condition is gone."""
        window_s = settings.METRICS_ALERT_WINDOW_S
        no_data_ms = settings.METRICS_ALERT_NO_DATA_S * 1000
        span = f"over the last {verdicts.duration_text(window_s * 1000)}"
        recent_span = f"over the last {verdicts.duration_text(max(60, window_s / 2) * 1000)}"
        until = now + timedelta(microseconds=1)
        recent = now - timedelta(seconds=max(60, window_s / 2))
        windows, lately = signals.windows(now - timedelta(seconds=window_s), until, recent)
        self.fields.update(now, window_s, max(60, window_s / 2))
        for name, window in windows.items():
            window.fields = self.fields.whole.get(name, {})
        for name, window in lately.items():
            window.fields = self.fields.recent.get(name, {})
        seen = self._last_seen(now, until, windows)
        runs = signals.recent_runs(now - HISTORY, until)
        fixed = list(Threshold.objects.all())
        open_silent = set(
            lifecycle.Alert.objects.filter(verdict="no_data")
            .exclude(state=lifecycle.Alert.State.RESOLVED)
            .values_list("scraper_source", flat=True)
        )
        bare_schedulers = {name for name, found in runs.items() if found and found[0].source is None}
        scrapers = {name for name, window in windows.items() if set(window.types) - {"scheduler_run"}}
        interval = timedelta(seconds=settings.METRICS_ALERT_EVAL_INTERVAL_S)
        cycle.learned = self.baselines.refresh(scrapers, now, lifecycle.periods(now - HISTORY, now), interval)
        for name, window in windows.items():  # steady: records in most minutes of the window
            if sum(slot.count for slot in window.types.values()) * no_data_ms >= 4 * window_s * 1000:
                self.steady.add(name)
        findings: list[verdicts.Finding] = []
        now_ms = epoch_ms(now)
        judged, self._verdicts = self._verdicts, {}
        for name in sorted(scrapers):
            rules = [rule for rule in fixed if rule.scraper_source in ("", name)]
            spans = (span, recent_span)
            if finding := self._verdict(
                name, windows[name], lately.get(name), rules, spans, judged.get(name)
            ):
                findings.append(finding)
        for name, last in sorted(seen.items()):
            if name in bare_schedulers:
                continue  # a scheduler's silence is scheduler_late, judged on its period
            usual = self.baselines.get(name)
            reporting = name in self.steady or name in open_silent or _steady_by_usual(usual, no_data_ms)
            if finding := verdicts.judge_silence(name, last, now_ms, no_data_ms, reporting):
                findings.append(finding)
        for name, found in sorted(runs.items()):
            if finding := verdicts.judge_scheduler(name, found, now_ms, window_s * 1000):
                findings.append(finding)
            degraded = self.last_runs.finding(name, found[0], now_ms)
            if degraded is not None and degraded.holds:
                findings.append(degraded)
        stale = self.stale_entities.findings(now_ms)
        findings += [finding for _, finding in sorted(stale.items()) if finding.holds]
        cycle.channels, cycle.schedulers = len(seen), len(runs)
        watched = max(1, len(scrapers | (set(seen) & self.steady)))

        def current(alert: Alert) -> verdicts.Finding | None:
            """The same rule over this window (the whole window: the numbers it fired with
            were of it, or of its last part)."""
            measure, name = alert.measure, alert.scraper_source or ""
            if alert.scheduler_name:
                found = runs.get(alert.scheduler_name, [])
                if measure == RUN_DEGRADED:
                    return self.last_runs.finding(alert.scheduler_name, found[0], now_ms) if found else None
                return verdicts.measure_scheduler(
                    measure, alert.scheduler_name, found, now_ms, window_s * 1000
                )
            if measure == STALE_ENTITIES:
                return stale.get(name)
            if measure == verdicts.SILENCE:  # reporting again: when exactly (`seen` may be a bound)
                last = signals.last_records(signals.newest_minutes(until, [name])).get(name)
                return verdicts.measure_silence(name, last, now_ms, no_data_ms) if last else None
            if measure.startswith(verdicts.SHARED):
                return verdicts.measure_incident(measure.removeprefix(verdicts.SHARED), findings, watched)
            rules = [rule for rule in fixed if rule.scraper_source in ("", name)]
            window = windows.get(name, signals.Window())
            if measure == "field_shares":  # every field's numbers, not only those that may be broken
                window = replace(window, fields=self.fields.of_source(name))
            return verdicts.measure_source(measure, name, window, self.baselines.get(name), rules, span)

        return verdicts.incidents(findings, watched), current

    def _verdict(
        self, name: str, window: signals.Window, last: signals.Window | None, rules: list[Threshold],
        spans: tuple[str, str], before: Judged | None,
    ) -> verdicts.Finding | None:  # fmt: skip
        """A scraper's finding over the window, or else over its last part (where a sudden fault
        shows before it dominates the window); the last cycle's when nothing it was judged on has
        changed. Most have not: a window moves once a minute, and a source reporting every
        minute brings records to one cycle in four (judging them all took a quarter of a cycle
        at 1,000 sources)."""
        usual = self.baselines.get(name)  # the same object until relearned
        # thresholds by their numbers: model instances compare by their pk alone
        read = (window, last, usual, [(rule.signal, rule.value) for rule in rules], spans)
        if before is not None and before[0] == read:
            finding = before[1]
        else:
            finding = verdicts.judge_source(name, window, usual, rules, spans[0])
            if finding is None and last is not None:
                finding = verdicts.judge_source(name, last, usual, rules, spans[1])
        self._verdicts[name] = (read, finding)
        return finding

    def _last_seen(
        self, now: datetime, until: datetime, windows: dict[str, signals.Window]
    ) -> dict[str, int]:
        """When each channel last reported (ms): exact for the quiet ones, whose silence may be
        news, and otherwise a bound that is enough to know they are not quiet. Every channel's
        newest minute is read every FULL_SCAN_EVERY; in between, a channel in the window has
        reported within it, and one that is not has not reported since."""
        now_ms = epoch_ms(now)
        if self._scanned_at is None or not timedelta(0) <= now - self._scanned_at < FULL_SCAN_EVERY:
            self.newest, self._scanned_at = signals.newest_minutes(until), now
        window_start = now_ms - settings.METRICS_ALERT_WINDOW_S * 1000
        for name in windows:
            self.newest[name] = max(self.newest.get(name, 0), window_start - window_start % MINUTE_MS)
        no_data_ms = settings.METRICS_ALERT_NO_DATA_S * 1000
        maybe_quiet = [name for name, minute in self.newest.items() if now_ms - minute >= no_data_ms]
        exact = signals.last_records(signals.newest_minutes(until, maybe_quiet)) if maybe_quiet else {}
        return {**{name: minute + MINUTE_MS for name, minute in self.newest.items()}, **exact}

    # --- after a cycle --------------------------------------------------------------------

    def announce(self, events: list[AlertEvent]) -> None:
        """Tell every open page (every process, through the live stream)."""
        for event in events:
            message = {"type": "alert", "status": event.status, "alert": lifecycle.as_dict(event.alert)}
            get_bus().publish_event(orjson.dumps(message))


def _steady_by_usual(usual: Usual, no_data_ms: int) -> bool:
    """A source whose usual hour holds records enough to expect several per no-data span."""
    per_hour = usual.records_per_hour
    return per_hour is not None and per_hour.low * no_data_ms >= 4 * 3_600_000


@contextmanager
def _timed_queries(cycle: Cycle) -> Iterator[None]:
    """Count the cycle's queries and the time the database took for them."""

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            cycle.queries += 1
            cycle.db_ms += (time.perf_counter() - started) * 1000

    with connection.execute_wrapper(wrapper):
        yield


# --- the loop --------------------------------------------------------------------------------


def health() -> dict[str, Any]:
    """The watchdog, for /api/health/websocket: when the evaluator last ran, and whether that is
    too long ago (then `stale` is true, and the health check's status says so)."""
    lease = EvaluatorLease.objects.filter(pk=LEASE_ID).first()
    interval = settings.METRICS_ALERT_EVAL_INTERVAL_S
    last = lease.last_run_at if lease else None
    stale = last is None or timezone.now() - last > timedelta(seconds=STALE_INTERVALS * interval)
    return {
        "lastRunAt": lifecycle.iso(last) if last else None,
        "lastRunMs": lease.last_run_ms if lease else None,
        "stale": stale,
    }


_watching: "asyncio.Task[None] | None" = None


def start_watching() -> None:
    """Start the loop in this process's event loop, once."""
    global _watching
    if _watching is None and settings.METRICS_ALERT_EVALUATOR:
        _watching = asyncio.ensure_future(watch())


async def watch(evaluator: Evaluator | None = None) -> None:
    """Every interval: take the lease, and if held, evaluate and deliver. Never raises."""
    evaluator = evaluator or Evaluator()
    thread = db.own_thread("alerts")
    while True:
        try:
            if await db.run(evaluator.acquire, thread=thread):
                _, events = await db.run(evaluator.run_once, thread=thread)
                evaluator.announce(events)
                counters.incr("alert_evaluations")
                if events:
                    log.info("alerts: %s", ", ".join(f"{e.alert} {e.status}" for e in events))
                await db.run(notify.deliver_due, timezone.now(), thread=thread)
        except DatabaseError as exc:
            log.warning("alert evaluation skipped: %s", exc)
        except Exception:
            log.exception("alert evaluation failed")
        await asyncio.sleep(settings.METRICS_ALERT_EVAL_INTERVAL_S)

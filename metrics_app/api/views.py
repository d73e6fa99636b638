"""The HTTP API (docs/api.md). Thin: parse, call one function, answer.

Who may call each view, and for which sources, was judged by the door before the request got
here (metrics_app.admission.door); a view reads its caller with `caller_of` only to cut an
answer to the caller's sources. POST /api/metrics/ is not here: it is served in front of
Django (metrics_app.api.ingest_route).
"""

import contextlib
import functools
import re
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from prometheus_client import CONTENT_TYPE_LATEST

from metrics_app.admission import refusals
from metrics_app.admission.asgi import caller_of
from metrics_app.admission.ingest import MAX_RECORDS_PER_REQUEST
from metrics_app.alerts import lifecycle
from metrics_app.alerts import runs as run_answers
from metrics_app.api import prometheus, status
from metrics_app.history import entities as entity_freshness
from metrics_app.history import failures as failed
from metrics_app.history import fields as data_fields
from metrics_app.history import overview, reads
from metrics_app.history import runs as run_history
from metrics_app.records import (
    MAX_RECORDED_AT,
    METRIC_TYPES,
    MIN_RECORDED_AT,
    RUN_ID_PATTERN,
    SOURCE_PATTERN,
    WILDCARD,
    epoch_ms,
    is_run_id,
    is_source_name,
)
from metrics_app.stream import totals
from metrics_app.tally import iso

View = Any


def error(message: str, field: str | None) -> HttpResponse:
    """400 naming the request field at fault."""
    return refusals.invalid_request(message, field).response()


def allow(*methods: str) -> Any:
    """Like require_http_methods, but answers 405 in JSON."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if request.method not in methods:
                return refusals.method_not_allowed(*methods).response()
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


@allow("GET")
def recent(request: HttpRequest) -> HttpResponse:
    source = request.GET.get("source") or None
    if source is not None and not is_source_name(source):
        return error(f"source must match {SOURCE_PATTERN}", field="source")
    try:
        limit = int(request.GET.get("limit", "100"))
    except ValueError:
        return error("limit must be an integer", field="limit")
    if not 1 <= limit <= MAX_RECORDS_PER_REQUEST:
        return error("limit must be between 1 and 1000", field="limit")
    return JsonResponse({"metrics": reads.recent_metrics(source, limit)})


@allow("GET")
def history(request: HttpRequest) -> HttpResponse:
    params = request.GET
    source = params.get("source") or None
    if source is not None and not is_source_name(source):
        return error(f"source must match {SOURCE_PATTERN}", field="source")
    metric_type = params.get("type") or None
    if metric_type is not None and metric_type not in METRIC_TYPES:
        return error(f"type must be one of {', '.join(METRIC_TYPES)}", field="type")
    bucket = params.get("bucket", "hour")
    if bucket not in reads.HISTORY_BUCKETS:
        return error("bucket must be minute, hour or day", field="bucket")
    now = timezone.now()
    try:
        end = _instant(params, "to", now)
        start = _instant(params, "from", end - timedelta(hours=24))
    except ValueError as exc:
        return error(exc.args[0], field=exc.args[1])
    if start >= end:
        return error("from must be before to", field="from")
    if (end - start) / BUCKET_LENGTH[bucket] > reads.MAX_HISTORY_BUCKETS:
        wider = (
            f"more than {reads.MAX_HISTORY_BUCKETS} {bucket} buckets; use a wider bucket or a shorter range"
        )
        return error(wider, field="bucket")
    with _history_readers.turn(caller_of(request).client) as allowed:
        if not allowed:
            return refusals.busy(
                f"at most {HISTORY_AT_ONCE} history reads at once per client", "bucket"
            ).response()
        return JsonResponse({"buckets": reads.history(source, metric_type, start, end, bucket)})


HISTORY_AT_ONCE: Final = 2  # history reads one client may have running in this process


class Turns:
    """At most `limit` calls at once per client in this process; the rest are refused."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def turn(self, client: str) -> Iterator[bool]:
        with self._lock:
            allowed = self._running[client] < self.limit
            if allowed:
                self._running[client] += 1
        try:
            yield allowed
        finally:
            if allowed:
                with self._lock:
                    self._running[client] -= 1
                    if not self._running[client]:
                        del self._running[client]


_history_readers = Turns(HISTORY_AT_ONCE)


BUCKET_LENGTH = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def _instant(params: Any, name: str, default: datetime) -> datetime:
    """An ISO 8601 time from the query string; without an offset it is taken as UTC.
    A '+' in an offset arrives as a space when the client did not encode it."""
    value = params.get(name)
    if not value:
        return default
    try:
        parsed = parse_datetime(value.replace(" ", "+")) or _date(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"{name} must be an ISO 8601 time, got {value!r}", name)
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    # the years records may carry (schema.RecordedAt); beyond them time zone arithmetic overflows
    if not HISTORY_FIRST <= parsed <= HISTORY_LAST:
        raise ValueError(f"{name} must be between 2000 and 2100, got {value!r}", name)
    return parsed


HISTORY_FIRST = datetime.fromtimestamp(MIN_RECORDED_AT / 1000, UTC)
HISTORY_LAST = datetime.fromtimestamp(MAX_RECORDED_AT / 1000, UTC)


def _date(value: str) -> datetime | None:
    day = parse_date(value)
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)


def _source_and_range(params: Any) -> tuple[str | None, str]:
    """The page's two choices: a source (or every one) and a range; ValueError names the field."""
    source = params.get("source") or None
    if source == WILDCARD:
        source = None
    if source is not None and not is_source_name(source):
        raise ValueError(f"source must match {SOURCE_PATTERN} or be {WILDCARD}", "source")
    range_name = params.get("range", "live")
    if range_name not in overview.RANGES:
        raise ValueError(f"range must be one of {', '.join(overview.RANGES)}", "range")
    return source, range_name


@allow("GET")
def page_overview(request: HttpRequest) -> HttpResponse:
    """The analytics page's state for a range, in one request (docs/api.md)."""
    try:
        source, range_name = _source_and_range(request.GET)
    except ValueError as exc:
        return error(exc.args[0], field=exc.args[1])
    return JsonResponse(overview.overview(range_name, source))


@allow("GET")
def fields(request: HttpRequest) -> HttpResponse:
    """One source's fields and HTTP statuses over a range; for every source, each one's HTTP
    statuses only (docs/api.md): fields are named by each source's scraper, so one source's
    `price` is not another's and they are not summed."""
    try:
        source, range_name = _source_and_range(request.GET)
    except ValueError as exc:
        return error(exc.args[0], field=exc.args[1])
    if source is None:
        return JsonResponse(data_fields.statuses_by_source(range_name))
    return JsonResponse(data_fields.fields(source, range_name))


PAGE_NUMBER: Final = re.compile(r"[0-9]{1,5}")  # ASCII digits: str.isdigit() takes "²" too


@allow("GET")
def failures(request: HttpRequest) -> HttpResponse:
    """Failed records of a range: newest first, searchable, grouped by message (docs/api.md)."""
    try:
        source, range_name = _source_and_range(request.GET)
    except ValueError as exc:
        return error(exc.args[0], field=exc.args[1])
    page = request.GET.get("page", "1")
    if not PAGE_NUMBER.fullmatch(page) or not 1 <= int(page) <= 10_000:
        return error("page must be between 1 and 10000", field="page")
    query = request.GET.get("q", "").strip()[:200]
    now = timezone.now()
    start = now - overview.RANGES[range_name].span
    return JsonResponse({"range": range_name, **failed.failures(start, now, source, query, int(page))})


@allow("GET")
def runs(request: HttpRequest) -> HttpResponse:
    """Runs, newest first, each against its scheduler's last ten (docs/api.md, "Runs")."""
    params = request.GET
    names = {}
    for name in ("scheduler", "source"):
        value = names[name] = params.get(name) or None
        if value is not None and not is_source_name(value):
            return error(f"{name} must match {SOURCE_PATTERN}", field=name)
    limit = params.get("limit", "50")
    if not PAGE_NUMBER.fullmatch(limit) or not 1 <= int(limit) <= run_history.MAX_LISTED:
        return error(f"limit must be between 1 and {run_history.MAX_LISTED}", field="limit")
    now_ms, visible = epoch_ms(timezone.now()), caller_of(request).sources
    runs = run_answers.listed(names["scheduler"], names["source"], int(limit), now_ms, visible)
    return JsonResponse({"runs": runs})


@allow("GET")
def run(request: HttpRequest, run_id: str) -> HttpResponse:
    """One run against its scheduler's last ten. A key limited to sources names one of the
    run's as `source` (the door checks it is the key's), and sees only runs of its sources."""
    if not is_run_id(run_id):
        return error(f"a run id must match {RUN_ID_PATTERN}", field="runId")
    answer = run_answers.one(run_id, epoch_ms(timezone.now()), caller_of(request).sources)
    source = request.GET.get("source") or None
    if answer is None or (source is not None and source not in answer["sources"]):
        return refusals.NOT_FOUND.response()
    return JsonResponse(answer)


@allow("GET")
def entities(request: HttpRequest) -> HttpResponse:
    """A source's entities and their freshness, stalest first (docs/api.md, "Entities")."""
    params = request.GET
    source = params.get("source") or None
    if source is None or not is_source_name(source):
        return error(f"source is required and must match {SOURCE_PATTERN}", field="source")
    stale = params.get("stale", "0")
    if stale not in ("0", "1"):
        return error("stale must be 0 or 1", field="stale")
    limit = params.get("limit", "100")
    if not PAGE_NUMBER.fullmatch(limit) or not 1 <= int(limit) <= entity_freshness.MAX_LISTED:
        return error(f"limit must be between 1 and {entity_freshness.MAX_LISTED}", field="limit")
    now_ms = epoch_ms(timezone.now())
    return JsonResponse(entity_freshness.entities(source, stale == "1", int(limit), now_ms))


@allow("GET")
def alerts(request: HttpRequest) -> HttpResponse:
    """Alerts, newest first: firing (the default), resolved or all (docs/alerts.md)."""
    state = request.GET.get("state", "firing")
    if state not in lifecycle.STATES:
        return error(f"state must be one of {', '.join(lifecycle.STATES)}", field="state")
    source = request.GET.get("source") or None
    if source is not None and not is_source_name(source):
        return error(f"source must match {SOURCE_PATTERN}", field="source")
    return JsonResponse({"alerts": lifecycle.listed(state, source)})


@allow("POST")
def silence(request: HttpRequest) -> HttpResponse:
    """Silence alerts from the page: a logged-in person (the door), with Django's CSRF check."""
    try:
        fields = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        fields = None
    if not isinstance(fields, dict):
        return error("the body must be a JSON object", field=None)
    try:
        created = lifecycle.silence(fields, request.user.get_username(), timezone.now())
    except ValueError as exc:
        return error(exc.args[0], field=exc.args[1])
    return JsonResponse({"id": created.pk, "endsAt": iso(created.ends_at)}, status=201)


@allow("GET")
def summary(request: HttpRequest) -> HttpResponse:
    return JsonResponse(totals.summary_from_database(caller_of(request).sources))


@allow("GET")
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """GET /metrics for Prometheus: a key that reads, or a logged-in staff user (the door);
    a key limited to sources sees only theirs."""
    return HttpResponse(prometheus.exposition(caller_of(request).sources), content_type=CONTENT_TYPE_LATEST)


async def stats(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return refusals.method_not_allowed("GET").response()
    return JsonResponse(await status.server_stats(caller_of(request).sources))


async def websocket_health(request: HttpRequest) -> HttpResponse:
    """Public, for load balancers: to strangers counts only; which sources are watched is for
    people and keys that read, cut to the sources a key may see."""
    if request.method != "GET":
        return refusals.method_not_allowed("GET").response()
    caller = caller_of(request)
    health = await status.websocket_health()
    subscriptions = health["subscriptions"]
    health["subscriptionCount"] = sum(subscriptions.values())
    health["subscriptions"] = {
        source: count for source, count in subscriptions.items() if caller.reads and caller.covers(source)
    }
    if not caller.reads:  # which protections are off is for operators, not strangers
        del health["uncheckedServerParts"]
    return JsonResponse(health)


OPENAPI_DOCUMENT: Final = settings.BASE_DIR / "docs" / "openapi.yaml"


@allow("GET")
def schema(request: HttpRequest) -> HttpResponse:
    """GET /api/schema/: the OpenAPI document of this API (docs/openapi.yaml), public."""
    return HttpResponse(OPENAPI_DOCUMENT.read_bytes(), content_type="application/yaml")

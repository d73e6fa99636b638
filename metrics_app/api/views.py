"""The HTTP API (docs/api.md). Thin: parse, check, call one function, answer."""

import contextlib
import functools
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from metrics_app.alerts import lifecycle
from metrics_app.api import prometheus, status
from metrics_app.api.auth import (
    View,
    bearer_token,
    find_api_key,
    is_reader,
    rate_limited,
    rates,
    require_api_key,
    require_reader,
    unauthorized,
)
from metrics_app.api.ingest_route import (
    READ_ONLY,
    Answer,
    answered,
    checked_batch,
    declared_size,
    idempotency_claim,
    outside_sources,
    too_large,
)
from metrics_app.history import failures as failed
from metrics_app.history import overview, reads
from metrics_app.ingest.writer import store_and_publish
from metrics_app.records import (
    MAX_RECORDED_AT,
    METRIC_TYPES,
    MIN_RECORDED_AT,
    SOURCE_PATTERN,
    WILDCARD,
    is_source_name,
)
from metrics_app.stream import totals

log = logging.getLogger(__name__)

MAX_RECORDS_PER_REQUEST = 1000


def error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": code, "message": message, **extra}, status=status)


def allow(*methods: str) -> Any:
    """Like require_http_methods, but answers 405 in JSON."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if request.method not in methods:
                response = error(405, "method_not_allowed", f"use {' or '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


@csrf_exempt
@allow("POST")
@require_api_key
def ingest(request: HttpRequest) -> HttpResponse:
    """POST /api/metrics/ where Django serves it (its test client, a WSGI server); under ASGI the
    same steps run in front of Django (metrics_app.api.ingest_route)."""
    if refused := declared_size(request.headers.get("Content-Length")):
        return _answer(refused)
    try:
        body = request.body
    except RequestDataTooBig:
        return _answer(too_large(f"body exceeds the limit of {settings.METRICS_MAX_BODY_BYTES} bytes"))
    records = checked_batch(body)
    if isinstance(records, Answer):
        return _answer(records)
    api_key = find_api_key(bearer_token(request.headers.get("Authorization")))
    assert api_key is not None  # require_api_key let it through
    refused = READ_ONLY if not api_key.ingests else outside_sources(records, api_key)
    if refused:
        return _answer(refused)
    if wait := rates.wait(api_key.id):
        return rate_limited(wait)
    claim = idempotency_claim(request.headers.get("Idempotency-Key"), api_key, body)
    if isinstance(claim, Answer):
        return _answer(claim)
    accepted = answered(store_and_publish(records, claim), len(records))
    if isinstance(accepted, Answer):
        return _answer(accepted)
    return JsonResponse({"accepted": accepted}, status=202)


def _answer(answer: Answer) -> JsonResponse:
    response = JsonResponse(
        {"error": answer.code, "message": answer.message, **answer.extra}, status=answer.status
    )
    for name, value in answer.headers:
        response[name] = value
    return response


@allow("GET")
@require_reader
def recent(request: HttpRequest) -> HttpResponse:
    source = request.GET.get("source") or None
    if source is not None and not is_source_name(source):
        return error(400, "invalid_request", f"source must match {SOURCE_PATTERN}", field="source")
    try:
        limit = int(request.GET.get("limit", "100"))
    except ValueError:
        return error(400, "invalid_request", "limit must be an integer", field="limit")
    if not 1 <= limit <= MAX_RECORDS_PER_REQUEST:
        return error(400, "invalid_request", "limit must be between 1 and 1000", field="limit")
    return JsonResponse({"metrics": reads.recent_metrics(source, limit)})


@allow("GET")
@require_reader
def history(request: HttpRequest) -> HttpResponse:
    params = request.GET
    source = params.get("source") or None
    if source is not None and not is_source_name(source):
        return error(400, "invalid_request", f"source must match {SOURCE_PATTERN}", field="source")
    metric_type = params.get("type") or None
    if metric_type is not None and metric_type not in METRIC_TYPES:
        return error(400, "invalid_request", f"type must be one of {', '.join(METRIC_TYPES)}", field="type")
    bucket = params.get("bucket", "hour")
    if bucket not in reads.HISTORY_BUCKETS:
        return error(400, "invalid_request", "bucket must be minute, hour or day", field="bucket")
    now = timezone.now()
    try:
        end = _instant(params, "to", now)
        start = _instant(params, "from", end - timedelta(hours=24))
    except ValueError as exc:
        return error(400, "invalid_request", exc.args[0], field=exc.args[1])
    if start >= end:
        return error(400, "invalid_request", "from must be before to", field="from")
    if (end - start) / BUCKET_LENGTH[bucket] > reads.MAX_HISTORY_BUCKETS:
        wider = (
            f"more than {reads.MAX_HISTORY_BUCKETS} {bucket} buckets; use a wider bucket or a shorter range"
        )
        return error(400, "invalid_request", wider, field="bucket")
    with _history_readers.turn(_client_of(request)) as allowed:
        if not allowed:
            busy = f"at most {HISTORY_AT_ONCE} history reads at once per client"
            response = error(429, "too_many_requests", busy, field="bucket")
            response["Retry-After"] = "1"
            return response
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


def _client_of(request: HttpRequest) -> str:
    """Who asks: the person, else the key, else the address."""
    if request.user.is_authenticated:
        return f"user:{request.user.pk}"
    key = find_api_key(bearer_token(request.headers.get("Authorization")))
    return f"key:{key.id}" if key else f"addr:{request.META.get('REMOTE_ADDR', '')}"


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
@require_reader
def page_overview(request: HttpRequest) -> HttpResponse:
    """The analytics page's state for a range, in one request (docs/api.md)."""
    try:
        source, range_name = _source_and_range(request.GET)
    except ValueError as exc:
        return error(400, "invalid_request", exc.args[0], field=exc.args[1])
    return JsonResponse(overview.overview(range_name, source))


@allow("GET")
@require_reader
def failures(request: HttpRequest) -> HttpResponse:
    """Failed records of a range: newest first, searchable, grouped by message (docs/api.md)."""
    try:
        source, range_name = _source_and_range(request.GET)
    except ValueError as exc:
        return error(400, "invalid_request", exc.args[0], field=exc.args[1])
    page = request.GET.get("page", "1")
    if not page.isdigit() or not 1 <= int(page) <= 10_000:
        return error(400, "invalid_request", "page must be between 1 and 10000", field="page")
    query = request.GET.get("q", "").strip()[:200]
    now = timezone.now()
    start = now - overview.RANGES[range_name].span
    return JsonResponse({"range": range_name, **failed.failures(start, now, source, query, int(page))})


@allow("GET")
@require_reader
def alerts(request: HttpRequest) -> HttpResponse:
    """Alerts, newest first: firing (the default), resolved or all (docs/alerts.md)."""
    state = request.GET.get("state", "firing")
    if state not in lifecycle.STATES:
        return error(
            400, "invalid_request", f"state must be one of {', '.join(lifecycle.STATES)}", field="state"
        )
    source = request.GET.get("source") or None
    if source is not None and not is_source_name(source):
        return error(400, "invalid_request", f"source must match {SOURCE_PATTERN}", field="source")
    return JsonResponse({"alerts": lifecycle.listed(state, source)})


@allow("POST")
def silence(request: HttpRequest) -> HttpResponse:
    """Silence alerts from the page: a logged-in person, with Django's CSRF check."""
    user = request.user
    if not (user.is_authenticated and user.is_active):
        return unauthorized("log in to silence alerts")
    try:
        fields = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return error(400, "invalid_request", "the body must be a JSON object", field=None)
    if not isinstance(fields, dict):
        return error(400, "invalid_request", "the body must be a JSON object", field=None)
    try:
        created = lifecycle.silence(fields, user.get_username(), timezone.now())
    except ValueError as exc:
        return error(400, "invalid_request", exc.args[0], field=exc.args[1])
    return JsonResponse({"id": created.pk, "endsAt": reads.iso(created.ends_at)}, status=201)


@allow("GET")
@require_reader
def summary(request: HttpRequest) -> HttpResponse:
    return JsonResponse(totals.summary_from_database())


def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """GET /metrics for Prometheus: an API key, or a logged-in staff user."""
    if request.method != "GET":
        return error(405, "method_not_allowed", "use GET")
    user = request.user
    if (
        not (user.is_authenticated and user.is_active and user.is_staff)
        and find_api_key(bearer_token(request.headers.get("Authorization"))) is None
    ):
        return unauthorized("send a valid API key, or log in as staff")
    return HttpResponse(generate_latest(prometheus.registry()), content_type=CONTENT_TYPE_LATEST)


async def stats(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return error(405, "method_not_allowed", "use GET")
    if not await sync_to_async(is_reader)(request):
        return unauthorized("log in or send a valid API key")
    return JsonResponse(await status.server_stats())


async def websocket_health(request: HttpRequest) -> HttpResponse:
    """Public, for load balancers: to strangers counts only; which sources are watched is for
    people and keys."""
    if request.method != "GET":
        return error(405, "method_not_allowed", "use GET")
    health = await status.websocket_health()
    subscriptions = health["subscriptions"]
    health["subscriptionCount"] = sum(subscriptions.values())
    if not await sync_to_async(is_reader)(request):
        health["subscriptions"] = {}
    return JsonResponse(health)


OPENAPI_DOCUMENT: Final = settings.BASE_DIR / "docs" / "openapi.yaml"


@allow("GET")
def schema(request: HttpRequest) -> HttpResponse:
    """GET /api/schema/: the OpenAPI document of this API (docs/openapi.yaml), public."""
    return HttpResponse(OPENAPI_DOCUMENT.read_bytes(), content_type="application/yaml")

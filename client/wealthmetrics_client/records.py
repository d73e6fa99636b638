"""The server's rules for a record, checked where the scraper records it.

A record the server would refuse is better refused in the scraper, with the field named, than
sent, rejected with a 400 and dropped with a log line. Where a value has one safe reading it
is coerced instead, and the docstring of `checked()` says which. The limits are the server's
(metrics_app.records); the project's tests check that the two agree.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, Final

SOURCE_PATTERN: Final = "^[a-z0-9][a-z0-9_.-]{0,49}$"
MAX_TEXT: Final = 500  # url and error
MAX_INT: Final = 2**31 - 1  # durations and counts
MAX_DATA_SIZE: Final = 2**30
MAX_CLOCK_AHEAD_MS: Final = 3_600_000
MIN_RECORDED_AT: Final = 946_684_800_000  # 2000-01-01: anything earlier is seconds, not ms

_SOURCE: Final = re.compile(r"\A[a-z0-9][a-z0-9_.-]{0,49}\Z")
_COMMON: Final = {"type", "scraperSource", "success", "error", "recordedAt", "runId"}
RUN_ID_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_RUN_ID: Final = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
MAX_FIELDS: Final = 50
MAX_ENTITIES: Final = 1000
ENTITY_PATTERN: Final = "^[A-Za-z0-9^][A-Za-z0-9_.:/^=-]{0,63}$"
_ENTITY: Final = re.compile(r"\A[A-Za-z0-9^][A-Za-z0-9_.:/^=-]{0,63}\Z")
_FIELD_NAME: Final = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.]{0,63}\Z")
_FIELDS: Final = {
    "page_navigation": _COMMON | {"url", "navigationDurationMs", "retryCount", "httpStatus"},
    "page_scrape": _COMMON | {"url", "scrapeDurationMs", "itemsExtracted", "dataSize", "fields", "entities"},
    "scheduler_run": _COMMON | {"schedulerName", "executionDurationMs", "itemsProcessed"},
}
_REQUIRED: Final = {
    "page_navigation": ("scraperSource", "url", "navigationDurationMs"),
    "page_scrape": ("scraperSource", "url", "scrapeDurationMs", "itemsExtracted"),
    "scheduler_run": ("schedulerName", "executionDurationMs"),
}
_NUMBERS: Final = {
    "navigationDurationMs": MAX_INT, "retryCount": MAX_INT, "scrapeDurationMs": MAX_INT,
    "itemsExtracted": MAX_INT, "dataSize": MAX_DATA_SIZE, "executionDurationMs": MAX_INT,
    "itemsProcessed": MAX_INT,
}  # fmt: skip


class InvalidRecord(ValueError):
    """A record the server would refuse; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def checked(metric: dict[str, Any]) -> dict[str, Any]:
    """The record as the server will accept it, or InvalidRecord naming the field.

    Coerced, because each has one safe reading: a whole float (a duration from time.time()
    arithmetic) becomes the nearest int; a url or error longer than 500 characters is cut to
    500. Refused: unknown fields, a source or scheduler name off the pattern (upper case
    included: two spellings would split one source in two), negative or oversized numbers,
    booleans as numbers, a recordedAt before 2000 or more than an hour ahead of this machine's
    clock."""
    kind = metric.get("type")
    if kind not in _FIELDS:
        raise InvalidRecord("type", f"must be one of {', '.join(_FIELDS)}")
    record = dict(metric)
    for name in sorted(record.keys() - _FIELDS[kind]):
        raise InvalidRecord(name, f"is not a field of {kind}")
    for name in _REQUIRED[kind]:
        if name not in record:
            raise InvalidRecord(name, "is required")
    for name in ("scraperSource", "schedulerName"):
        if name in record and (record[name] is not None or name in _REQUIRED[kind]):
            _check_name(name, record[name])
    for name, limit in _NUMBERS.items():
        if name in record:
            record[name] = _whole(name, record[name], limit)
    if kind != "scheduler_run":
        if not isinstance(record.get("url"), str) or not record["url"]:
            raise InvalidRecord("url", "must be a non-empty string")
        record["url"] = record["url"][:MAX_TEXT]
    if record.get("error") is not None:
        if not isinstance(record["error"], str):
            raise InvalidRecord("error", "must be a string or null")
        record["error"] = record["error"][:MAX_TEXT]
    if not isinstance(record.get("success", True), bool):
        raise InvalidRecord("success", "must be true or false")
    if record.get("httpStatus") is not None:
        status = record["httpStatus"]
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise InvalidRecord("httpStatus", f"must be an HTTP status (100-599) or null, got {status!r}")
    if record.get("runId") is not None:
        run = record["runId"]
        if not isinstance(run, str) or not _RUN_ID.match(run):
            raise InvalidRecord("runId", f"must match {RUN_ID_PATTERN} or be null, got {run!r}")
    if "fields" in record:
        record["fields"] = _checked_fields(record["fields"], record["itemsExtracted"])
    if "entities" in record:
        _check_entities(record["entities"])
    if "recordedAt" in record:
        record["recordedAt"] = at = _whole("recordedAt", record["recordedAt"], None)
        if at < MIN_RECORDED_AT:
            raise InvalidRecord("recordedAt", f"is milliseconds since the epoch, after 2000; got {at}")
        if at > time.time_ns() // 1_000_000 + MAX_CLOCK_AHEAD_MS:
            raise InvalidRecord("recordedAt", "is more than an hour ahead of this machine's clock")
    return record


def _check_entities(entities: Any) -> None:
    if not isinstance(entities, list) or len(entities) > MAX_ENTITIES:
        raise InvalidRecord("entities", f"must be a list of at most {MAX_ENTITIES} entities")
    for n, entity in enumerate(entities):
        if not isinstance(entity, str) or not _ENTITY.match(entity):
            raise InvalidRecord(f"entities[{n}]", f"an entity must match {ENTITY_PATTERN}, got {entity!r}")


def _checked_fields(fields: Any, items: int) -> dict[str, dict[str, int]]:
    """The counts, whole numbers within their bounds (0 <= invalid <= filled <= items)."""
    if not isinstance(fields, dict) or len(fields) > MAX_FIELDS:
        raise InvalidRecord("fields", f"must be an object of at most {MAX_FIELDS} fields")
    for name, count in fields.items():
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            raise InvalidRecord(f"fields.{name}", f"field name must match {_FIELD_NAME.pattern}")
        if not isinstance(count, dict) or set(count) != {"filled", "invalid"}:
            raise InvalidRecord(f"fields.{name}", 'must be {"filled": n, "invalid": m}')
    checked = {}
    for name, count in fields.items():
        filled = _whole(f"fields.{name}.filled", count["filled"], items)
        checked[name] = {
            "filled": filled,
            "invalid": _whole(f"fields.{name}.invalid", count["invalid"], filled),
        }
    return checked


def _check_name(field: str, value: Any) -> None:
    if not isinstance(value, str) or not _SOURCE.match(value):
        raise InvalidRecord(field, f"{value!r} does not match {SOURCE_PATTERN}")


def _whole(field: str, value: Any, limit: int | None) -> int:
    if isinstance(value, float) and math.isfinite(value):
        value = round(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord(field, f"must be a whole number, got {value!r}")
    if value < 0 or (limit is not None and value > limit):
        raise InvalidRecord(field, f"must be between 0 and {limit}, got {value}")
    return value

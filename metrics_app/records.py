"""A metric record: its rules, its wire format and its validation (docs/api.md, "A metric record").

Every entry path (HTTP ingest, the in-process collector) goes through this module, so a record
means the same thing wherever it came from. Validation is done by msgspec in C while decoding:
a 1000-record batch costs about a millisecond, which is what lets one daphne process store
tens of thousands of records a second.

The rules every other layer follows are defined here once: the source-name pattern and the
wildcard, a record's channel, which field holds each type's duration and items, and the bounds
of every value. SQL and ORM expressions are built from them (metrics_app.history), the scraper
kit and the page's JavaScript (static/js/records.js) repeat them and are tested against them.
"""

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

import msgspec
import orjson
from msgspec import UNSET, Meta, Struct, UnsetType

# The longest source or scheduler name, URL and error text: the tables' columns are this wide.
NAME_MAX_LENGTH: Final = 50
URL_MAX_LENGTH: Final = 500
ERROR_MAX_LENGTH: Final = 500
SOURCE_NAME: Final = rf"[a-z0-9][a-z0-9_.-]{{0,{NAME_MAX_LENGTH - 1}}}"
SOURCE_PATTERN: Final = f"^{SOURCE_NAME}$"  # as the docs (and JavaScript) write it
# Python's `$` also matches before a final newline ("abc\n"): match the whole string instead.
_WHOLE_SOURCE_NAME: Final = rf"\A{SOURCE_NAME}\Z"
_SOURCE_RE: Final = re.compile(_WHOLE_SOURCE_NAME)
# Every count and duration fits the INT columns. Sums live in BIGINT columns, so with values
# this size a rollup row would need 2^32 records in one hour and duration bucket to overflow.
MAX_INT: Final = 2**31 - 1
# A scraped page larger than this is a unit mistake or an attack, not a page.
MAX_DATA_SIZE: Final = 2**30
# Records dated further ahead than this are refused: they would fill future hours' rollups.
MAX_CLOCK_AHEAD_MS: Final = 3_600_000
# recordedAt is milliseconds since the epoch; anything outside 2000–2100 is a unit mistake
# (seconds or microseconds), which would otherwise be stored silently.
MIN_RECORDED_AT: Final = 946_684_800_000
MAX_RECORDED_AT: Final = 4_102_444_800_000

WILDCARD: Final = "*"  # a subscription to every channel

METRIC_TYPES: Final = ("page_navigation", "page_scrape", "scheduler_run")
PAGE_TYPES: Final = ("page_navigation", "page_scrape")
# What each type measures, by field: the struct attribute and the database column have this
# name, the wire field is its camelCase (`camel()`).
DURATION_FIELD: Final = {
    "page_navigation": "navigation_duration_ms",
    "page_scrape": "scrape_duration_ms",
    "scheduler_run": "execution_duration_ms",
}
ITEMS_FIELD: Final = {"page_scrape": "items_extracted", "scheduler_run": "items_processed"}
# A record's channel is the first of these fields that is set: its source, or a scheduler
# run's own name when it names no source.
CHANNEL_FIELDS: Final = ("scraper_source", "scheduler_name")

SourceName = Annotated[str, Meta(pattern=_WHOLE_SOURCE_NAME)]
Url = Annotated[str, Meta(min_length=1, max_length=URL_MAX_LENGTH)]
ErrorText = Annotated[str, Meta(max_length=ERROR_MAX_LENGTH)] | None
Count = Annotated[int, Meta(ge=0, le=MAX_INT)]
Bytes = Annotated[int, Meta(ge=0, le=MAX_DATA_SIZE)]
RecordedAt = Annotated[int, Meta(ge=MIN_RECORDED_AT, le=MAX_RECORDED_AT)]
HttpStatus = Annotated[int, Meta(ge=100, le=599)]
# A run (one crawl) the record belongs to (docs/api.md, "Runs"): records sharing it form the run.
RUN_ID_MAX_LENGTH: Final = 64
RUN_ID: Final = rf"[A-Za-z0-9][A-Za-z0-9_.:-]{{0,{RUN_ID_MAX_LENGTH - 1}}}"
RUN_ID_PATTERN: Final = f"^{RUN_ID}$"
_WHOLE_RUN_ID: Final = rf"\A{RUN_ID}\Z"
_RUN_ID_RE: Final = re.compile(_WHOLE_RUN_ID)
RunId = Annotated[str, Meta(pattern=_WHOLE_RUN_ID)]
# The entities a page refreshed (docs/api.md, "Entities"): ticker symbols and the like, at most
# MAX_ENTITIES a page, each as wide as the freshness table's key column.
MAX_ENTITIES: Final = 1000
ENTITY_MAX_LENGTH: Final = 64
ENTITY: Final = rf"[A-Za-z0-9^][A-Za-z0-9_.:/^=-]{{0,{ENTITY_MAX_LENGTH - 1}}}"
ENTITY_PATTERN: Final = f"^{ENTITY}$"
# Keys are checked against the pattern after decoding, as field names are (below).
Entities = Annotated[list[str], Meta(max_length=MAX_ENTITIES)]
# A page's field counts (docs/api.md, "Fields"): at most MAX_FIELDS names, each at most 64
# characters, so a source's fields stay a short list and fit the rollups' key column.
MAX_FIELDS: Final = 50
FIELD_NAME_MAX_LENGTH: Final = 64
FIELD_NAME: Final = rf"[A-Za-z_][A-Za-z0-9_.]{{0,{FIELD_NAME_MAX_LENGTH - 1}}}"
FIELD_PATTERN: Final = f"^{FIELD_NAME}$"


class _Remembered:
    """Names checked against a pattern after decoding (`_cross_checks`), not by a msgspec
    pattern: that is a regex search per name and page, two thirds of decoding a batch of pages
    with 10 fields (four fifths with 20 entities), while a fleet sends the same few field names
    and the same symbols again and again. Names found valid are remembered, up to a bound (a
    typo minting a name per page must not grow it without end)."""

    def __init__(self, pattern: str, kept: int) -> None:
        self._pattern = re.compile(rf"\A(?:{pattern})\Z")
        self._kept = kept
        self.known: set[str] = set()

    def __call__(self, name: str) -> bool:
        if name in self.known:
            return True
        if self._pattern.match(name) is None:
            return False
        if len(self.known) >= self._kept:
            self.known.clear()
        self.known.add(name)
        return True


is_field_name: Final = _Remembered(FIELD_NAME, 10_000)
is_entity: Final = _Remembered(ENTITY, 100_000)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def is_source_name(value: str) -> bool:
    return _SOURCE_RE.match(value) is not None


def is_run_id(value: str) -> bool:
    return _RUN_ID_RE.match(value) is not None


class _Record(Struct, tag_field="type", rename="camel", forbid_unknown_fields=True, kw_only=True):
    success: bool = True
    error: ErrorText = None
    recorded_at: RecordedAt = msgspec.field(default_factory=now_ms)
    # null says the same as leaving it out, and is stored and sent back as left out
    run_id: RunId | UnsetType | None = UNSET


# gc=False: it holds two ints, so the collector need not track the thousands a batch brings.
class FieldCount(Struct, forbid_unknown_fields=True, gc=False):
    """Of a page's items, how many had the field present and non-empty, and how many of those
    failed its check; checked against each other and itemsExtracted by `_cross_checks`."""

    filled: Count
    invalid: Count


Fields = Annotated[dict[str, FieldCount], Meta(max_length=MAX_FIELDS)]  # names: is_field_name


# The optional fields default to UNSET, which msgspec leaves out when encoding: a record sent
# without them goes out on the stream and in history exactly as before.
class PageNavigation(_Record, tag="page_navigation"):
    scraper_source: SourceName
    url: Url
    navigation_duration_ms: Count
    retry_count: Count = 0
    # null says the same as leaving it out, and is stored and sent back as left out
    http_status: HttpStatus | UnsetType | None = UNSET


class PageScrape(_Record, tag="page_scrape"):
    scraper_source: SourceName
    url: Url
    scrape_duration_ms: Count
    items_extracted: Count
    data_size: Bytes = 0
    fields: Fields | UnsetType = UNSET
    entities: Entities | UnsetType = UNSET


class SchedulerRun(_Record, tag="scheduler_run"):
    scheduler_name: SourceName
    execution_duration_ms: Count
    items_processed: Count = 0
    scraper_source: SourceName | None = None


Metric = PageNavigation | PageScrape | SchedulerRun


class IngestBody(Struct, forbid_unknown_fields=True):
    metrics: list[Metric]


def camel(field: str) -> str:
    """A field's wire name: navigation_duration_ms -> navigationDurationMs."""
    first, *rest = field.split("_")
    return first + "".join(word.title() for word in rest)


def type_of(record: Metric) -> str:
    return str(record.__struct_config__.tag)


def channel_of(record: Metric) -> str:
    """The channel a record is broadcast on: the first of CHANNEL_FIELDS that is set."""
    if isinstance(record, SchedulerRun):
        return record.scraper_source or record.scheduler_name
    return record.scraper_source


def names_of(record: Metric) -> dict[str, str]:
    """Every source and scheduler a record speaks for, by wire field: its source, and a run's
    scheduler (which alerts speak of). A key limited to sources must cover each."""
    names = {"scraperSource": record.scraper_source} if record.scraper_source else {}
    if isinstance(record, SchedulerRun):
        names["schedulerName"] = record.scheduler_name
    return names


def channel_of_wire(record: dict[str, Any]) -> str:
    """channel_of for a record in its wire shape."""
    return str(record.get("scraperSource") or record["schedulerName"])


def duration_of(record: Metric) -> int:
    return int(getattr(record, DURATION_FIELD[type_of(record)]))


def items_of(record: Metric) -> int:
    field = ITEMS_FIELD.get(type_of(record))
    return int(getattr(record, field)) if field else 0


# --- Errors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    index: int | None
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class InvalidMetrics(ValueError):
    """One or more records broke a rule; `errors` names each record, field and rule."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED_FIELD = re.compile(r"field `(?P<field>[^`]+)`")
_INDEX = re.compile(r"\[(\d+)\]")


def _field_error(exc: msgspec.ValidationError, index: int | None = None) -> FieldError:
    """Turn msgspec's "Expected `int` >= 0 - at `$.metrics[3].retryCount`" into parts."""
    match = _PATH.match(str(exc))
    assert match is not None  # the pattern matches any string
    message, path = match["message"], match["path"] or ""
    if index is None and (found := _INDEX.search(path)):
        index = int(found.group(1))
    named = _NAMED_FIELD.search(message)
    if named:  # missing or unknown field: the path stops at the object
        field = named["field"]
    else:
        # "$.metrics[3].retryCount" -> "retryCount", "$.metrics[3].entities[2]" -> "entities[2]";
        # a record that is not an object -> "metrics"
        last = path.rsplit(".", 1)[-1]
        field = (
            "metrics" if last.startswith("metrics[") else last or ("metrics" if index is not None else "body")
        )
    if message.startswith("Invalid value") and field == "type":
        message = f"{message}; expected one of {', '.join(METRIC_TYPES)}"
    return FieldError(index=index, field=field, message=message)


# --- Validation -----------------------------------------------------------------------------

_decoder = msgspec.json.Decoder(IngestBody)
_generic_decoder = msgspec.json.Decoder()


def decode_batch(body: bytes) -> list[Metric]:
    """Parse and validate a POST body. Raises InvalidMetrics naming every bad record."""
    try:
        records = _decoder.decode(body).metrics
    except msgspec.ValidationError:
        pass  # slow path below: find every bad record, not just the first
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise _malformed(exc) from None
    else:
        if errors := _cross_checks(records):
            raise InvalidMetrics(errors)
        return records
    try:
        raw = _generic_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        # The typed decoder can fail on the first value before it reaches a syntax error.
        raise _malformed(exc) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("metrics"), list):
        raise InvalidMetrics([FieldError(None, "metrics", 'body must be {"metrics": [...]}')])
    extra = sorted(set(raw) - {"metrics"})
    errors = [FieldError(None, name, "unknown field") for name in extra]
    for index, item in enumerate(raw["metrics"]):
        try:
            record = msgspec.convert(item, Metric)
        except msgspec.ValidationError as exc:
            errors.append(_fields_error(item, index) or _field_error(exc, index))
        else:
            errors += _cross_checks([record], first_index=index)
    raise InvalidMetrics(errors)


def _malformed(exc: Exception) -> InvalidMetrics:
    if isinstance(exc, RecursionError):  # msgspec's C decoder stops at its depth limit
        return InvalidMetrics([FieldError(None, "body", "JSON nested too deeply")])
    return InvalidMetrics([FieldError(None, "body", f"malformed JSON: {exc}")])


def _cross_checks(records: list[Metric], first_index: int = 0) -> list[FieldError]:
    """The rules msgspec cannot check while decoding: recordedAt may not lie more than
    MAX_CLOCK_AHEAD_MS ahead of the server's clock (a bound that moves with time), a page's
    field names match FIELD_PATTERN and its field counts are bounded by each other and by its
    items (0 <= invalid <= filled <= itemsExtracted), and its entities match ENTITY_PATTERN.
    A navigation's `httpStatus: null` and any record's `runId: null` become UNSET here, so they
    are streamed as they will be read back from the database: left out.

    One pass over the batch, and nothing more for a record without the optional fields."""
    now = now_ms()
    latest = now + MAX_CLOCK_AHEAD_MS
    errors: list[FieldError] = []
    for index, record in enumerate(records, start=first_index):
        if record.recorded_at > latest:
            errors.append(
                FieldError(
                    index, "recordedAt", f"is more than an hour ahead of the server's clock ({now} ms)"
                )
            )
        if type(record) is PageScrape:
            if record.fields is not UNSET:
                errors += _fields_errors(record, index)
            if record.entities is not UNSET:
                errors += _entities_errors(record, index)
        elif type(record) is PageNavigation and record.http_status is None:
            record.http_status = UNSET
        if record.run_id is None:
            record.run_id = UNSET
    return errors


def _entities_errors(record: "PageScrape", index: int | None) -> list[FieldError]:
    assert not isinstance(record.entities, UnsetType)
    known = is_entity.known
    return [
        FieldError(index, f"entities[{n}]", f"an entity must match {ENTITY_PATTERN}")
        for n, entity in enumerate(record.entities)
        if entity not in known and not is_entity(entity)
    ]


def _fields_errors(record: "PageScrape", index: int | None) -> list[FieldError]:
    assert not isinstance(record.fields, UnsetType)
    errors = []
    items, known = record.items_extracted, is_field_name.known
    for name, count in record.fields.items():
        # The usual case, a known name and sound counts, costs two comparisons and a lookup.
        if name not in known and not is_field_name(name):
            errors.append(_field_name_error(name, index))
        if count.invalid > count.filled:
            errors.append(
                FieldError(index, f"fields.{name}.invalid", f"must be at most filled ({count.filled})")
            )
        if count.filled > items:
            errors.append(
                FieldError(index, f"fields.{name}.filled", f"must be at most itemsExtracted ({items})")
            )
    return errors


def _fields_error(item: Any, index: int | None) -> FieldError | None:
    """The error of a record's `fields`, with its path (`fields.price.invalid`), when that is
    what failed: msgspec's paths name no object key (`fields[...]`), so each entry is checked
    again on its own, by the same types."""
    fields = item.get("fields") if isinstance(item, dict) else None
    if not isinstance(fields, dict) or len(fields) > MAX_FIELDS:
        return None  # msgspec's own error names `fields` well enough
    for name, count in fields.items():
        if not isinstance(name, str) or not is_field_name(name):
            return _field_name_error(name, index)
        try:
            msgspec.convert(count, FieldCount)
        except msgspec.ValidationError as exc:
            inner = _field_error(exc, index)
            at = "" if inner.field in ("metrics", "body") else f".{inner.field}"
            return FieldError(index, f"fields.{name}{at}", inner.message)
    return None


def _field_name_error(name: str, index: int | None) -> FieldError:
    return FieldError(index, f"fields.{name}", f"field name must match {FIELD_PATTERN}")


def validate_record(data: dict[str, Any]) -> Metric:
    """Validate one record given as a wire-shaped dict (camelCase keys)."""
    try:
        record = msgspec.convert(data, Metric)
    except msgspec.ValidationError as exc:
        raise InvalidMetrics([_fields_error(data, None) or _field_error(exc, None)]) from None
    if errors := _cross_checks([record]):
        raise InvalidMetrics([FieldError(None, e.field, e.message) for e in errors])
    return record


def validate_records(items: Iterable[dict[str, Any]]) -> list[Metric]:
    return [validate_record(item) for item in items]


def fields_json(fields: dict[str, FieldCount]) -> str:
    """A page's field counts as stored: `{"price": [filled, invalid], …}`, half the bytes of
    the wire's objects (the detail table's largest column for a page with fields)."""
    return orjson.dumps({name: (count.filled, count.invalid) for name, count in fields.items()}).decode()


def fields_of(stored: dict[str, Any]) -> dict[str, FieldCount]:
    """Stored field counts (already valid when stored) back as a record's."""
    return {name: FieldCount(filled=filled, invalid=invalid) for name, (filled, invalid) in stored.items()}


def to_wire(record: Metric, row_id: int | None = None) -> dict[str, Any]:
    """The JSON-ready shape of a record, as clients send it; with its database id once stored.

    Ids are per table, so a client tells records apart by (type is scheduler_run, id)."""
    wire: dict[str, Any] = msgspec.to_builtins(record)
    if row_id is not None:
        wire["id"] = row_id
    return wire


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(value: datetime) -> int:
    """An aware datetime as whole milliseconds since the epoch, without float rounding."""
    return (value - _EPOCH) // timedelta(milliseconds=1)

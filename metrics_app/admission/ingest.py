"""Admitting a batch: the checks of POST /api/metrics/ that need its body.

The whole order, for the one ingest path that production serves (metrics_app.api.ingest_route):
1. key, 2. scope, 3. rate, 4. size: the door's, on the head (metrics_app.admission.door);
5. decode and 6. validate: one pass through the record rules (metrics_app.records);
   1 to MAX_RECORDS_PER_REQUEST records;
7. sources: a key limited to sources must cover every name each record speaks for;
8. idempotency: a well-formed Idempotency-Key becomes the batch's claim;
9. new names: a batch that would add a source or scheduler stays within METRICS_MAX_SOURCES
   and its key's METRICS_NEW_SOURCES_PER_KEY (metrics_app.admission.sources), and one that
   would add a field to a source within METRICS_MAX_FIELDS_PER_SOURCE
   (metrics_app.admission.field_names).
Then the batch goes to the group writer, and `answered` says what its answer is.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from django.db import DatabaseError

from metrics_app import counters, db
from metrics_app.admission import refusals, sources
from metrics_app.admission.door import Caller
from metrics_app.admission.field_names import field_names
from metrics_app.admission.refusals import Refusal
from metrics_app.ingest.idempotency import Claim, Earlier, key_problem
from metrics_app.records import InvalidMetrics, Metric, decode_batch, names_of

log = logging.getLogger(__name__)

MAX_RECORDS_PER_REQUEST: Final = 1000


@dataclass(frozen=True)
class Batch:
    records: Sequence[Metric]
    claim: Claim | None


def admit(caller: Caller, body: bytes, idempotency_key: str | None) -> Batch | Refusal:
    """Checks 5 to 8 on a body the door let in: the batch to store, or the refusal."""
    records = decoded(body)
    if isinstance(records, Refusal):
        return records
    if refused := outside_sources(records, caller):
        return refused
    claim = claimed(idempotency_key, caller, body)
    if isinstance(claim, Refusal):
        return claim
    return Batch(records, claim)


async def new_names(batch: Batch, caller: Caller) -> Refusal | None:
    """Check 9, for a batch that names a source, scheduler or field this process has not seen:
    within METRICS_MAX_SOURCES and the key's METRICS_NEW_SOURCES_PER_KEY
    (metrics_app.admission.sources), and within METRICS_MAX_FIELDS_PER_SOURCE
    (metrics_app.admission.field_names). Known names cost no database round trip."""
    if caller.key is None:
        return None
    new_sources = sources.new_names.unknown(batch.records)
    new_fields = field_names.unknown(batch.records)
    if not (new_sources or new_fields):
        return None
    try:
        if new_sources and (refused := await db.run(sources.new_names.admit, batch.records, caller.key.id)):
            return refused
        return await db.run(field_names.admit, batch.records, new_fields) if new_fields else None
    except DatabaseError as exc:
        counters.problem("database_unavailable", log, "database unavailable (new names): %s", exc)
        return refusals.DATABASE_UNAVAILABLE


def decoded(body: bytes) -> Sequence[Metric] | Refusal:
    """The body's records, valid, 1 to MAX_RECORDS_PER_REQUEST of them."""
    try:
        records = decode_batch(body)
    except InvalidMetrics as exc:
        return refusals.invalid_metrics(
            "some records are invalid; none were stored", [e.as_dict() for e in exc.errors]
        )
    if not records:
        details = [{"index": None, "field": "metrics", "message": "must not be empty"}]
        return refusals.invalid_metrics(f"send 1 to {MAX_RECORDS_PER_REQUEST} records", details)
    if len(records) > MAX_RECORDS_PER_REQUEST:
        return refusals.too_large(f"{len(records)} records; at most {MAX_RECORDS_PER_REQUEST} per request")
    return records


def outside_sources(records: Sequence[Metric], caller: Caller) -> Refusal | None:
    """403 naming each record that speaks for a source or scheduler the key may not write."""
    allowed = caller.sources
    if allowed is None:
        return None
    details = [
        {"index": index, "field": field, "message": f"this key may not write {name!r}"}
        for index, record in enumerate(records)
        for field, name in names_of(record).items()
        if name not in allowed
    ]
    return refusals.writes_outside_sources(allowed, details) if details else None


def claimed(value: str | None, caller: Caller, body: bytes) -> Claim | Refusal | None:
    """The request's Idempotency-Key as a claim on its body, none, or the refusal of a bad one."""
    if value is None or caller.key is None:
        return None
    if problem := key_problem(value):
        return refusals.invalid_header("Idempotency-Key", problem)
    return Claim.of(caller.key.id, value, body)


def answered(stored: list[int] | Earlier, count: int) -> int | Refusal:
    """How many records a stored request may report (202), or 409 for a reused key."""
    if isinstance(stored, Earlier):
        counters.incr("idempotent_replays")
        return stored.accepted if stored.same_body else refusals.KEY_REUSED
    counters.incr("records_stored", count)
    return count

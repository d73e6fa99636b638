"""Idempotency keys: a batch sent again under the same `Idempotency-Key` is stored once.

The scraper kit sends one key per batch and keeps it across retries, so a batch whose 202
was lost on the way back (a crash, a cut connection) is answered, the second time, with the
first answer, and nothing of it is stored again: neither rows nor rollup counts.

The key's row is written in the same transaction as the batch's records, so the two are
committed together or not at all. Checking and remembering happen inside that transaction
too (`settle`); a key used in two transactions at once (two processes) meets the unique
index, and the later transaction fails and is run again, finding the key then.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from django.utils import timezone

from metrics_app.models import IdempotencyKey

IDEMPOTENCY_HOURS: Final = 24
MAX_KEY_LENGTH: Final = 100


@dataclass(frozen=True)
class Claim:
    """A request's key: whose, which, and the body it came with."""

    api_key_id: int
    key: str  # sha256 of the Idempotency-Key
    body_hash: str

    @classmethod
    def of(cls, api_key_id: int, key: str, body: bytes) -> "Claim":
        # Kept as a hash: exact on every database (MySQL's default collation would take "abc"
        # and "ABC" for one key), and the same length whatever the client sends.
        return cls(api_key_id, hashlib.sha256(key.encode()).hexdigest(), hashlib.sha256(body).hexdigest())


@dataclass(frozen=True)
class Earlier:
    """The key was used before: with the same body (answer `accepted` again) or not (409)."""

    accepted: int
    same_body: bool


def key_problem(value: str) -> str | None:
    """What is wrong with an Idempotency-Key header's value, or None."""
    if not 1 <= len(value) <= MAX_KEY_LENGTH:
        return f"must be 1 to {MAX_KEY_LENGTH} characters"
    if not all(" " <= char <= "~" for char in value):
        return "must be printable ASCII"
    return None


def settle(claims: Sequence[Claim | None], sizes: Sequence[int]) -> list[Earlier | None]:
    """Inside the storing transaction: for each batch, its key's earlier use (then its records
    must not be stored), or None (store them; its key is remembered with `sizes[i]` records).
    A key repeated among the batches counts its first one as the earlier use."""
    wanted = [claim for claim in claims if claim is not None]
    if not wanted:
        return [None] * len(claims)
    now = timezone.now()
    rows = IdempotencyKey.objects.filter(
        api_key_id__in={claim.api_key_id for claim in wanted}, key__in={claim.key for claim in wanted}
    )
    known: dict[tuple[int, str], tuple[str, int]] = {}
    expired = []
    for row in rows:
        if row.created_at < now - timedelta(hours=IDEMPOTENCY_HOURS):
            expired.append(row.pk)  # its key may be used afresh
        else:
            known[(row.api_key_id, row.key)] = (row.body_hash, row.accepted)
    if expired:
        IdempotencyKey.objects.filter(pk__in=expired).delete()
    outcomes: list[Earlier | None] = []
    remembered = []
    for claim, size in zip(claims, sizes, strict=True):
        if claim is None:
            outcomes.append(None)
            continue
        earlier = known.get((claim.api_key_id, claim.key))
        if earlier is not None:
            outcomes.append(Earlier(accepted=earlier[1], same_body=earlier[0] == claim.body_hash))
            continue
        known[(claim.api_key_id, claim.key)] = (claim.body_hash, size)
        remembered.append(
            IdempotencyKey(
                api_key_id=claim.api_key_id,
                key=claim.key,
                body_hash=claim.body_hash,
                accepted=size,
                created_at=now,
            )
        )
        outcomes.append(None)
    IdempotencyKey.objects.bulk_create(remembered)
    return outcomes


def forget_expired() -> int:
    """Remove keys past IDEMPOTENCY_HOURS (the cleanup runs it); how many went."""
    cutoff = timezone.now() - timedelta(hours=IDEMPOTENCY_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted

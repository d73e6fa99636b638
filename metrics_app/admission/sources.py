"""New names: a bound on the sources and schedulers an installation holds.

Every structure that serves the page, `/metrics` and alerting grows with the names records
are sent under, and any ingest key can mint one per record (a typo in a source name can mint
one per URL). So a batch that would add names (metrics_app.ingest.sources keeps the registry)
is admitted only while the installation holds fewer than METRICS_MAX_SOURCES, and while its
key has added fewer than METRICS_NEW_SOURCES_PER_KEY in the last hour; else it is refused,
naming the record, the name and the limit, and nothing of it is stored.

The count is the registry's, read before the batch is stored: two processes admitting new
names at the same moment may pass the bound by what they add together, never more.
"""

import math
import threading
import time
from collections.abc import Sequence
from typing import Final

from django.conf import settings

from metrics_app.admission import refusals
from metrics_app.admission.refusals import Refusal
from metrics_app.ingest.sources import names_in, registry
from metrics_app.models import Source
from metrics_app.records import Metric, names_of

HOUR_S: Final = 3600.0


class NewNames:
    def __init__(self) -> None:
        self._left: dict[int, tuple[float, float]] = {}  # key id -> (names it may still add, when)
        self._lock = threading.Lock()

    def unknown(self, records: Sequence[Metric]) -> bool:
        """Whether the batch names anything this process has not seen (no database)."""
        return bool(registry.unknown(names_in(records)))

    def admit(self, records: Sequence[Metric], key_id: int) -> Refusal | None:
        """None, or the refusal of a batch whose new names pass a bound (blocking: call it
        from a thread). The names are registered when the batch is stored."""
        per_key = settings.METRICS_NEW_SOURCES_PER_KEY
        if self._spent(key_id):  # nothing left to add: refused without reading the registry
            first = _first_naming(records, registry.unknown(names_in(records)))
            return refusals.new_sources_too_fast(first, per_key, math.ceil(HOUR_S / per_key))
        new = registry.new(names_in(records))
        if not new:
            return None
        limit = settings.METRICS_MAX_SOURCES
        held = Source.objects.count()
        if held + len(new) > limit:
            return refusals.too_many_sources(_first_naming(records, new), held, limit)
        with self._lock:
            left, then = self._left.get(key_id, (per_key, time.monotonic()))
            left = min(per_key, left + (time.monotonic() - then) * per_key / HOUR_S)
            if len(new) > left:
                wait = math.ceil((len(new) - left) * HOUR_S / per_key)
                return refusals.new_sources_too_fast(_first_naming(records, new), per_key, wait)
            self._left[key_id] = (left - len(new), time.monotonic())
        return None

    def _spent(self, key_id: int) -> bool:
        """Whether the key has not one new name left this hour (so every unknown name fails)."""
        per_key = settings.METRICS_NEW_SOURCES_PER_KEY
        with self._lock:
            left, then = self._left.get(key_id, (per_key, time.monotonic()))
            return min(per_key, left + (time.monotonic() - then) * per_key / HOUR_S) < 1


def _first_naming(records: Sequence[Metric], new: set[str]) -> dict[str, object]:
    """The first record naming a new name: its index, field and name, and how many are new."""
    for index, record in enumerate(records):
        for field, name in names_of(record).items():
            if name in new:
                return {"index": index, "field": field, "name": name, "new": len(new)}
    raise ValueError("no record names a new name")


new_names = NewNames()

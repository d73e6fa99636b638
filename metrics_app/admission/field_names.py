"""New field names: a bound on the fields one source reports.

Each field a source reports gets its own rollup rows every minute and hour, its own row in
the Data section's grid, its own gauges in /metrics and its own usual. A page may name 50
fields, but a scraper that builds names from its data (`price_AAPL`, `price_MSFT`, …) would
mint new ones with every page. So a batch that would take a source past
METRICS_MAX_FIELDS_PER_SOURCE field names is refused, naming the record, the field and the
limit, and nothing of it is stored.

A source's names are those of its hourly field rollups (kept as long as the detail, so a
name unused for the retention window is forgotten with its rows). Each process remembers the
names it has seen per source, so a known name costs nothing; the memory is dropped every
FORGET_SEEN_S. Two processes admitting new names for one source at the same moment may pass
the bound by what they add together, never more.
"""

import threading
import time
from collections.abc import Sequence
from typing import Final

from django.conf import settings
from msgspec import UnsetType

from metrics_app.admission import refusals
from metrics_app.admission.refusals import Refusal
from metrics_app.models import FieldHour
from metrics_app.records import Metric, PageScrape

FORGET_SEEN_S: Final = 300.0


class FieldNames:
    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {}  # source -> its field names known to be held
        self._seen_since = time.monotonic()
        self._lock = threading.Lock()

    def unknown(self, records: Sequence[Metric]) -> dict[str, set[str]]:
        """Per source, the batch's field names this process has not seen held (no database)."""
        with self._lock:
            if time.monotonic() - self._seen_since > FORGET_SEEN_S:
                self._seen, self._seen_since = {}, time.monotonic()
            unknown: dict[str, set[str]] = {}
            for record in records:
                if isinstance(record, PageScrape) and not isinstance(record.fields, UnsetType):
                    seen = self._seen.get(record.scraper_source, set())
                    if not seen.issuperset(record.fields):
                        unknown.setdefault(record.scraper_source, set()).update(record.fields.keys() - seen)
            return unknown

    def admit(self, records: Sequence[Metric], unknown: dict[str, set[str]]) -> Refusal | None:
        """None, or the refusal of a batch whose `unknown` names (from `unknown()`) would take
        a source past the bound (blocking: call it from a thread). Admitted names count as
        held from now on."""
        limit = settings.METRICS_MAX_FIELDS_PER_SOURCE
        for source, names in sorted(unknown.items()):
            held = set(
                FieldHour.objects.filter(scraper_source=source).values_list("field", flat=True).distinct()
            )
            new = names - held
            if len(held) + len(new) > limit:
                index, name = _first_naming(records, source, new)
                return refusals.too_many_fields(index, source, name, len(held), limit)
            with self._lock:
                self._seen.setdefault(source, set()).update(held | new)
        return None


def _first_naming(records: Sequence[Metric], source: str, new: set[str]) -> tuple[int, str]:
    """The first record of `source` naming a new field: its index and the name."""
    for index, record in enumerate(records):
        if isinstance(record, PageScrape) and record.scraper_source == source:
            for name in record.fields if isinstance(record.fields, dict) else ():
                if name in new:
                    return index, name
    raise ValueError("no record names a new field")


field_names = FieldNames()

"""The registry of names records are sent under (sources and schedulers): `metrics_sources`.

Every batch's new names are registered in the transaction that stores it, whatever path it
came by (the HTTP API, the in-process collector), so the registry holds exactly the names
with stored records; the cleanup forgets names with nothing left in the retention window.
Each process remembers the names it has seen registered, so a known name costs nothing; the
memory is dropped every FORGET_SEEN_S, as names may have been forgotten meanwhile.

The bound on names (METRICS_MAX_SOURCES) is admission's: metrics_app.admission.sources.
"""

import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from metrics_app.models import HourlyRollup, Source
from metrics_app.records import Metric, names_of

FORGET_SEEN_S: Final = 300.0


class Registry:
    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._seen_since = time.monotonic()
        self._lock = threading.Lock()

    def unknown(self, names: Iterable[str]) -> set[str]:
        """The names this process has not seen registered (no database)."""
        with self._lock:
            if time.monotonic() - self._seen_since > FORGET_SEEN_S:
                self._seen, self._seen_since = set(), time.monotonic()
            return set(names) - self._seen

    def new(self, names: Iterable[str]) -> set[str]:
        """The names not registered yet (blocking: the database, for what this process has not seen)."""
        unknown = self.unknown(names)
        if not unknown:
            return unknown
        registered = set(Source.objects.filter(name__in=unknown).values_list("name", flat=True))
        self._saw(registered)
        return unknown - registered

    def register(self, records: Sequence[Metric]) -> None:
        """In the storing transaction: add the records' new names."""
        new = self.unknown(names_in(records))
        if new:
            Source.objects.bulk_create([Source(name=name) for name in sorted(new)], ignore_conflicts=True)
            self._saw(new)

    def _saw(self, names: set[str]) -> None:
        with self._lock:
            self._seen |= names


def names_in(records: Sequence[Metric]) -> set[str]:
    return {name for record in records for name in names_of(record).values()}


def forget_silent(cutoff: datetime) -> int:
    """Forget the names with no record since `cutoff` (the cleanup's): how many went."""
    recent = set(
        HourlyRollup.objects.filter(hour__gte=cutoff).values_list("scraper_source", flat=True).distinct()
    ) | set(
        HourlyRollup.objects.filter(hour__gte=cutoff).exclude(scheduler_name="")
        .values_list("scheduler_name", flat=True).distinct()
    )  # fmt: skip
    silent = [name for name in Source.objects.values_list("name", flat=True) if name not in recent]
    deleted = 0
    for start in range(0, len(silent), 1000):
        deleted += Source.objects.filter(name__in=silent[start : start + 1000]).delete()[0]
    return deleted


registry = Registry()

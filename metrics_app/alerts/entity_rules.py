"""The stale_entities rule (docs/alerts.md): many more of a source's entities are stale than
usual (metrics_app.history.entities says when one is stale).

Each minute the stale counts are also written down (StaleMinute), for the page's stale count
over time. A source's usual is learned here, from its stale counts sampled once a minute over the last
day, periods it was alerting left out: some sources always have a few symbols that trade
rarely. It breaks when the stale count is above twice the usual high (90th percentile) plus
2, and above 2 % of its entities (a few of a source's hundreds are not news before the usual is
known).
"""

from collections import deque
from dataclasses import replace
from datetime import UTC, datetime
from typing import Final

from metrics_app.alerts.findings import Finding, duration_text
from metrics_app.alerts.models import Verdict
from metrics_app.data_models import StaleMinute
from metrics_app.history import entities
from metrics_app.history.entities import StaleCount

MEASURE: Final = "stale_entities"
SAMPLE_EVERY_MS: Final = 60_000
SAMPLES_KEPT: Final = 24 * 60  # a day of minutes
MIN_SAMPLES: Final = 10  # before this many, the usual is taken as none stale
NAMED: Final = 3  # the stalest named in the summary


class StaleEntities:
    """Each source's stale counts of the last day, and the findings they give."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[int, int]]] = {}  # source → (at, stale count)
        self._usuals = entities.Usuals()
        self._written_minute = 0  # the last minute whose stale counts were written (ms)

    def findings(self, now_ms: int) -> dict[str, Finding]:
        """Every source's finding, whether or not it holds (an alert that resolves shows the
        current numbers); sources with no stale entity give none. The stalest are named for
        the findings that hold only, read for all of them at once."""
        found = entities.stale_by_source(now_ms, self._usuals)
        findings = {}
        for source, count in found.items():
            finding = _finding(source, count, self._usual(source)) if count.stale else None
            if finding is not None:
                findings[source] = finding
            if finding is None or not finding.holds:
                self._sample(source, count.stale, now_ms)
        holding = {s: now_ms - found[s].stale_after_ms for s, finding in findings.items() if finding.holds}
        if holding:  # their entities counted now (a source's count is otherwise up to USUAL_KEPT_MS old)
            totals, named = entities.totals(list(holding)), entities.stalest(holding, NAMED)
            for source in holding:
                count = replace(found[source], total=totals.get(source, found[source].total))
                finding = _finding(source, count, self._usual(source))
                stalest = ", ".join(f"{e} ({duration_text(now_ms - at)})" for e, at in named.get(source, []))
                findings[source] = replace(finding, summary=f"{finding.summary}; stalest: {stalest}")
        for source in set(self._samples) - set(found):
            del self._samples[source]
        self._write(now_ms, {source: count for source, count in found.items() if count.stale})
        return findings

    def _usual(self, source: str) -> tuple[int, int]:
        samples = sorted(n for _, n in self._samples.get(source, ()))
        if len(samples) < MIN_SAMPLES:
            return 0, 0
        return samples[len(samples) // 10], samples[min(len(samples) - 1, len(samples) * 9 // 10)]

    def _sample(self, source: str, stale: int, now_ms: int) -> None:
        samples = self._samples.setdefault(source, deque(maxlen=SAMPLES_KEPT))
        if not samples or now_ms - samples[-1][0] >= SAMPLE_EVERY_MS:
            samples.append((now_ms, stale))

    def _write(self, now_ms: int, counts: dict[str, StaleCount]) -> None:
        """The minute's stale counts, once a minute: a row per source with stale entities."""
        minute = now_ms - now_ms % SAMPLE_EVERY_MS
        if minute == self._written_minute:
            return
        self._written_minute = minute
        at = datetime.fromtimestamp(minute / 1000, UTC)
        StaleMinute.objects.bulk_create(
            [
                StaleMinute(scraper_source=s, minute=at, stale=c.stale, total=c.total)
                for s, c in counts.items()
            ],
            ignore_conflicts=True,
        )


def _finding(source: str, count: StaleCount, usual: tuple[int, int]) -> Finding:
    low, high = usual
    threshold = max(2 * high + 2, 0.02 * count.total)
    usually = f"{low}" if low == high else f"{low}–{high}"
    summary = (
        f"{source}: {count.stale:,} of {count.total:,} entities not refreshed for "
        f"{duration_text(count.stale_after_ms)} or more, usual {usually}"
    )
    return Finding(
        Verdict.STALE_ENTITIES, source, None, summary, float(count.stale), threshold,
        "stale counts of the last day", measure=MEASURE, holds=count.stale > threshold,
    )  # fmt: skip

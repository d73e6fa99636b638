"""`field_broken`: pages load and items come out, but a field of them is empty, or fails its
check, on far more items than usual (a selector that moved, a price that reads "—").

Each field of a source has two shares, learned per source like the other measures
(metrics_app.alerts.usual: by hour of day where the history allows, alert periods left out):
its filled share (of the items) and its valid share (of the filled). A share is broken when
both hold over the window:

- it is below FIELD_FACTOR x its usual low (the 10th percentile of its hours). A field's share
  moves with the pages' mix (some items legitimately lack it), so a margin below the usual
  low is what tells a break from that: a field usually 95-100 % filled breaks below 57 %, one
  usually 60 % (low 55 %) only below 33 %, and one usually empty never;
- so many items missing it would happen by chance at the usual low with probability below
  FAILURE_CHANCE (Chernoff's bound, as for failures): a few pages of a quiet window never fire.

One finding per source names every broken field, worst first (the lowest share against its
usual), and says what still works: the items per page.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from metrics_app.alerts.findings import (
    MIN_RECORDS,
    Finding,
    count_text,
    pct,
    pct_range,
    range_text,
    unlikely_rate,
)
from metrics_app.alerts.models import Threshold, Verdict
from metrics_app.alerts.signals import Window
from metrics_app.alerts.usual import Spread, Usual
from metrics_app.history.fields import share_parts

FIELD_FACTOR: Final = 0.6
MIN_FIELD_ITEMS: Final = 20  # a share of fewer items (or filled) is not judged
MAX_USUAL_MISSING: Final = 0.9
SHOWN_FIELDS: Final = 3  # described with their numbers; the rest are named (a summary holds 500 characters)


@dataclass(frozen=True)
class Share:
    """One share of one field over the window, against its usual."""

    field: str
    kind: str  # "filled" (of the items) or "valid" (of the filled)
    part: int
    whole: int
    usual: Spread
    threshold: float

    @property
    def value(self) -> float:
        return self.part / self.whole

    @property
    def broken(self) -> bool:
        return self.whole >= MIN_FIELD_ITEMS and self.value < self.threshold

    @property
    def standing(self) -> float:
        """How far it is from its usual: the share over its usual low (lowest: the worst)."""
        return self.value / self.usual.low if self.usual.low else 1.0

    def said(self, span: str) -> str:
        of = "items" if self.kind == "filled" else "filled items"
        return (
            f"{self.field} {self.kind} on {pct(self.value)} of {of}{span} ({self.part:,} of {self.whole:,}), "
            f"usual {pct_range(self.usual)} ({self.usual.basis})"
        )


def shares(window: Window, usual: Usual) -> list[Share]:
    """Every share of the window's fields that has a usual to compare with, worst first."""
    found = []
    for name, counts in window.fields.items():
        known = usual.fields.get(name)
        if known is None:
            continue
        parts = share_parts(counts.items, counts.filled, counts.invalid)
        for kind, spread, (part, whole) in zip(
            ("filled", "valid"), (known.filled, known.valid), parts, strict=True
        ):
            if spread is not None and whole > 0:
                found.append(Share(name, kind, part, whole, spread, _threshold(spread, whole)))
    return sorted(found, key=lambda share: (share.standing, share.field, share.kind))


def _threshold(usual: Spread, whole: int) -> float:
    """The share below which `whole` items are broken: below FIELD_FACTOR x the usual low, and
    missing on so many that the usual low would give it by chance less than FAILURE_CHANCE."""
    missing = min(max(1 - usual.low, 0.01), MAX_USUAL_MISSING)
    return min(FIELD_FACTOR * usual.low, 1 - unlikely_rate(missing, whole))


def fields_broken(
    name: str, window: Window, usual: Usual, fixed: Sequence[Threshold], span: str
) -> Finding | None:
    """`field_broken`: the window's broken fields, or, when none is, its worst share."""
    if not usual.fields:
        return None  # nothing learned of its fields: nothing to compare with
    found = shares(window, usual)
    if not found:
        return None  # none of its fields may be broken (metrics_app.alerts.field_window)
    scrape = window.of("page_scrape")
    extracting = scrape.ok >= MIN_RECORDS and scrape.items > 0  # else an earlier rule's case
    broken = [share for share in found if share.broken]
    if broken:
        shown = broken[:SHOWN_FIELDS]
        said = "; ".join(share.said(f" {span}" if n == 0 else "") for n, share in enumerate(shown))
        if more := sorted({share.field for share in broken[SHOWN_FIELDS:]} - {s.field for s in shown}):
            said += f"; also broken: {', '.join(more)}"
    else:  # the current numbers of an alert that resolves: the fields nearest their usual low
        shown = [share for share in found if share.kind == "filled"][:SHOWN_FIELDS] or found[:1]
        said = f"fields as usual {span}: " + "; ".join(share.said("") for share in shown)
    worst = shown[0]
    return Finding(
        Verdict.FIELD_BROKEN, name, None, f"{name}: {said}{_items(window, usual)}",
        worst.value, worst.threshold, f"learned: {FIELD_FACTOR:g} x the usual low ({worst.usual.basis})",
        holds=bool(broken) and extracting,
    )  # fmt: skip


def _items(window: Window, usual: Usual) -> str:
    """What still works: the items per page, against their usual."""
    scrape, spread = window.of("page_scrape"), usual.items_per_page
    if not scrape.ok:
        return ""
    items = scrape.items / scrape.ok
    if spread is None:
        return f"; items per page {count_text(items)}"
    if items >= spread.low:
        return f"; items per page normal ({count_text(items)})"
    return f"; items per page {count_text(items)}, usual {range_text(spread, count_text)}"

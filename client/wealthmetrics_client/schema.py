"""What a page's items hold, field by field: the `fields` of a page_scrape record.

A scraper whose selector moved still loads its page and still returns 20 items, but their
`price` is empty or "—". Counting each field over the items it parsed lets the service say which
field broke, and how badly, while everything else looks healthy.

    schema = {
        "symbol": Field(str, pattern=r"[A-Z^][A-Z0-9.^=-]*"),
        "price": Field(float, min=0),
        "volume": Field(int, min=0),
        "name": None,                      # only whether it is there
        "change": lambda v: abs(v) < 100,  # any check of your own
    }
    quotes = scrape_page("cnbc", url, html, parse_quotes, schema=schema)

An item is a dict or any object with attributes (a dataclass, a pydantic model). Of the items,
a field is *filled* when present and not empty (None, "", whitespace, a placeholder such as "—"
or "N/A", an empty list or dict), and *invalid* when filled but failing its check.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

__all__ = ["Field", "Schema", "count_fields"]

MAX_FIELDS: Final = 50  # what one record may carry (docs/api.md)
NAME: Final = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.]{0,63}\Z")
# What pages show where a value is missing: counted as empty, not as a value.
PLACEHOLDERS: Final = frozenset({"-", "–", "—", "n/a", "na", "null", "none", "nan", "--", "?"})


@dataclass(frozen=True)
class Field:
    """A field's check: its type (float accepts whole numbers; bool is no number), a range
    for numbers, a pattern the whole text must match, and a check of your own (False or an
    exception: invalid). Leave any out."""

    type: type | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    check: Callable[[Any], bool] | None = None

    def valid(self, value: Any) -> bool:
        if self.type is not None and not _is_a(value, self.type):
            return False
        if (self.min is not None or self.max is not None) and not _in_range(value, self.min, self.max):
            return False
        if self.pattern is not None and not re.fullmatch(self.pattern, str(value)):
            return False
        if self.check is not None:
            try:
                return bool(self.check(value))
            except Exception:  # a check that cannot read the value: the value is wrong
                return False
        return True


# A field's check, as a schema may give it: a Field, a type, a callable, or None (presence only).
Check: TypeAlias = Field | type | Callable[[Any], bool] | None
Schema: TypeAlias = Mapping[str, Check]


def count_fields(items: Iterable[Any], schema: Schema) -> dict[str, dict[str, int]]:
    """Per field of the schema: of the items, how many have it filled, and how many of those
    fail its check (`{"price": {"filled": 18, "invalid": 2}}`)."""
    checks = {name: _as_field(name, check) for name, check in schema.items()}
    if len(checks) > MAX_FIELDS:
        raise ValueError(f"a schema may name at most {MAX_FIELDS} fields, not {len(checks)}")
    counts = {name: {"filled": 0, "invalid": 0} for name in checks}
    for item in items:
        for name, field in checks.items():
            value = _value_of(item, name)
            if _empty(value):
                continue
            counts[name]["filled"] += 1
            if not field.valid(value):
                counts[name]["invalid"] += 1
    return counts


def _as_field(name: str, check: Check) -> Field:
    if not NAME.match(name):
        raise ValueError(f"field name {name!r} does not match {NAME.pattern}")
    if check is None or isinstance(check, Field):
        return check or Field()
    if isinstance(check, type):
        return Field(type=check)
    if callable(check):
        return Field(check=check)
    raise TypeError(f"{name}: give a Field, a type, a callable or None, not {type(check).__name__}")


def _value_of(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        text = value.strip()
        return not text or text.lower() in PLACEHOLDERS
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (list, tuple, set, dict)):
        return not value
    return False


def _is_a(value: Any, kind: type) -> bool:
    if isinstance(value, bool) and kind is not bool:
        return False  # True is an int to Python, never a price
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def _in_range(value: Any, low: float | None, high: float | None) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (low is None or value >= low) and (high is None or value <= high)

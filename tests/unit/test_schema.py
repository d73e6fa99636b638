"""The scraper kit counts each field over a page's items (wealthmetrics_client.schema): filled
when present and not empty, invalid when filled and failing its check."""

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.records import scrape
from wealthmetrics_client import Field, count_fields
from wealthmetrics_client.records import InvalidRecord, checked


@dataclass
class Quote:
    symbol: str | None
    price: Any = None


def test_a_moved_selector_shows_as_an_empty_field() -> None:
    """The commonest silent break: the page loads, 20 items come out, 18 prices are empty."""
    quotes = (
        [Quote("AAPL", 191.2), Quote("MSFT", "—")]
        + [Quote(f"S{n}", "") for n in range(17)]
        + [Quote("X", None)]
    )
    counts = count_fields(
        quotes, {"symbol": Field(str, pattern=r"[A-Z][A-Z0-9]*"), "price": Field(float, min=0)}
    )
    assert counts == {"symbol": {"filled": 20, "invalid": 0}, "price": {"filled": 1, "invalid": 0}}


@pytest.mark.parametrize(
    ("check", "value", "invalid"),
    [
        (float, 12, False),  # a whole number is a price
        (float, True, True),  # True is no price
        (float, "12.5", True),  # text where a number belongs: a parser that stopped converting
        (Field(float, min=0), -1.0, True),
        (Field(int, max=10), 11, True),
        (Field(str, pattern=r"[A-Z]+"), "aapl", True),
        (lambda v: v.endswith("%"), "1.2%", False),
        (lambda v: v.endswith("%"), 1.2, True),  # a check that cannot read the value: invalid
        (None, "anything", False),
    ],
)
def test_each_kind_of_check(check: Any, value: Any, invalid: bool) -> None:
    assert count_fields([{"f": value}], {"f": check}) == {"f": {"filled": 1, "invalid": int(invalid)}}


@pytest.mark.parametrize("empty", [None, "", "   ", "—", "-", "N/A", "n/a", float("nan"), [], {}])
def test_placeholders_are_empty(empty: Any) -> None:
    assert count_fields([{"price": empty}, {}], {"price": float}) == {"price": {"filled": 0, "invalid": 0}}


def test_a_bad_schema_is_named() -> None:
    with pytest.raises(ValueError, match="price-usd"):
        count_fields([], {"price-usd": float})
    with pytest.raises(ValueError, match="at most 50"):
        count_fields([], {f"f{n}": None for n in range(51)})


values = st.one_of(
    st.none(), st.text(max_size=3), st.integers(-5, 5), st.floats(allow_nan=True), st.booleans()
)


@given(st.lists(st.dictionaries(st.sampled_from(["price", "symbol", "other"]), values), max_size=30))
def test_the_counts_are_always_a_record_the_server_accepts(items: list[dict[str, Any]]) -> None:
    counts = count_fields(items, {"price": Field(float, min=0), "symbol": str, "name": None})
    record = checked({**scrape(itemsExtracted=len(items)), "fields": counts})
    assert record["fields"] == counts
    for each in counts.values():
        assert 0 <= each["invalid"] <= each["filled"] <= len(items)


def test_the_kit_refuses_counts_the_server_would_refuse() -> None:
    with pytest.raises(InvalidRecord, match=r"fields\.price\.invalid"):
        checked({**scrape(itemsExtracted=5), "fields": {"price": {"filled": 2, "invalid": 3}}})
    with pytest.raises(InvalidRecord, match=r"fields\.price\.filled"):
        checked({**scrape(itemsExtracted=5), "fields": {"price": {"filled": 6, "invalid": 0}}})
    with pytest.raises(InvalidRecord, match="httpStatus"):
        checked(
            {
                "type": "page_navigation",
                "scraperSource": "cnbc",
                "url": "u",
                "navigationDurationMs": 1,
                "httpStatus": 99,
            }
        )


def test_scrape_page_sends_each_items_entity_once() -> None:
    """`entity_key` names the items' key (or attribute) that holds the entity."""
    from wealthmetrics_client import scrape_page

    class Sink:
        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []

        def record_page_scrape(self, **fields: Any) -> None:
            self.records.append(fields)

    @dataclass
    class Quote:
        symbol: str | None

    sink: Any = Sink()  # records what the kit sends, as a MetricsClient would
    items = [{"symbol": "AAPL"}, {"symbol": "MSFT"}, {"symbol": "AAPL"}, {"symbol": ""}, {"price": 1}]
    scrape_page("cnbc", "https://x/q", "<html>", lambda _: items, entity_key="symbol", sink=sink)
    quotes = [Quote("^GSPC"), Quote(None)]
    scrape_page("cnbc", "https://x/q", "<html>", lambda _: quotes, entity_key="symbol", sink=sink)
    assert [r["entities"] for r in sink.records] == [["AAPL", "MSFT"], ["^GSPC"]]
    assert sink.records[0]["items_extracted"] == 5

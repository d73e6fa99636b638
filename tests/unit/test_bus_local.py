"""The in-process bus: the same numbering and message as Redis, delivered to this process."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from metrics_app.records import to_wire, validate_records
from metrics_app.stream import broadcast_metrics
from metrics_app.stream.bus import LocalBus, batch_payload, parse
from tests.support.records import navigation, scheduler_run, scrape


def received(bus: LocalBus, publish: Callable[[], None], count: int) -> list[tuple[dict[str, int], Any]]:
    """What one subscriber receives of `count` messages published by `publish()`."""

    async def subscribe_then_publish() -> list[tuple[dict[str, int], Any]]:
        messages = bus.subscribe()
        first = asyncio.ensure_future(anext(messages))
        await asyncio.sleep(0)  # subscribed
        publish()
        got = [await first] + [await anext(messages) for _ in range(count - 1)]
        await messages.aclose()
        return [parse(message) for message in got]

    return asyncio.run(subscribe_then_publish())


def test_local_bus_numbers_records_per_source() -> None:
    bus = LocalBus()

    def publish() -> None:
        bus.publish({"cnbc": 3, "webull": 1}, batch_payload([], []))
        bus.publish({"cnbc": 2}, batch_payload([], []))

    first, second = (header for header, _ in received(bus, publish, 2))
    assert first["webull"] == first["cnbc"] and second == {"cnbc": first["cnbc"] + 3}
    # numbered from the time, so a restarted process's numbers jump (clients see what they missed)
    assert first["cnbc"] > time.time_ns() // 1000 - 60_000_000


def test_broadcast_publishes_each_record_once_with_its_id(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = LocalBus()
    monkeypatch.setattr("metrics_app.stream.get_bus", lambda: bus)
    records = validate_records(
        [
            navigation(httpStatus=403),
            scrape(fields={"price": {"filled": 3, "invalid": 1}}),
            scheduler_run(),
            navigation(),
        ]
    )
    [(header, wire)] = received(bus, lambda: broadcast_metrics(records, [11, 12, 13, 14]), 1)
    assert set(header) == {"robinhood", "cnbc", "nightly-prices"}
    # as sent on to browsers, the records as the history API gives them
    assert orjson.loads(orjson.dumps(wire)) == [
        to_wire(record, row_id) for record, row_id in zip(records, [11, 12, 13, 14], strict=True)
    ]

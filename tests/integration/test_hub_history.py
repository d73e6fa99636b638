"""The hub's history for new subscribers: shared loads, a bounded cache, nothing for unknown
names. Driven directly, without sockets."""

import asyncio

import pytest

from metrics_app import counters
from metrics_app.ingest.storage import store_metrics
from metrics_app.records import validate_records
from metrics_app.stream import catchup
from metrics_app.stream.hub import Hub
from tests.support.records import navigation

pytestmark = pytest.mark.django_db(transaction=True)


def loads() -> int:
    return counters.snapshot().get("history_loads", 0)


def test_concurrent_subscribers_share_one_load() -> None:
    store_metrics(validate_records([navigation(scraperSource="shared", url=f"u{i}") for i in range(3)]))
    hub = Hub()
    hub.catch_up.known = {"shared"}
    before = loads()

    async def many() -> list[bytes]:
        frames = await asyncio.gather(*(hub.catch_up.history("shared") for _ in range(200)))
        return [frame.data for frame in frames]

    frames = asyncio.run(many())
    assert loads() - before == 1
    assert len(set(frames)) == 1 and b'"u2"' in frames[0]


def test_unknown_names_cost_nothing_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catchup, "HISTORY_CACHE_SIZE", 20)
    hub = Hub()
    hub.catch_up.known = {f"real-{n}" for n in range(50)}
    before = loads()

    async def subscribe_to_all() -> None:
        for n in range(500):
            await hub.catch_up.history(f"made-up-{n}")
        for n in range(50):
            await hub.catch_up.history(f"real-{n}")

    asyncio.run(subscribe_to_all())
    assert loads() - before == 50  # one per real source, none for the made-up ones
    assert len(hub.catch_up._history) == 20

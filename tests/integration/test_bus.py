"""The stream between processes over Redis: batches numbered per source, gaps where records
were lost (the in-process bus is in tests/unit/test_bus_local.py)."""

import os
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from metrics_app import counters
from metrics_app.stream.bus import SEQ_KEY_PREFIX, SEQ_TTL_S, TOPIC, RedisBus, batch_payload, parse
from metrics_app.stream.hub import Hub
from tests.support.servers import TcpProxy


@pytest.fixture
def redis_url() -> str:
    return os.environ.get("REDIS_URL", "")


@pytest.fixture
def subscriber(redis_url: str) -> Iterator[redis.client.PubSub]:
    pubsub = redis.Redis.from_url(redis_url).pubsub()
    pubsub.subscribe(TOPIC)
    pubsub.get_message(timeout=2)  # the subscribe confirmation
    yield pubsub
    pubsub.close()


def next_message(pubsub: redis.client.PubSub) -> tuple[dict[str, int], list[dict[str, object]]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
        if message and message["type"] == "message":
            return parse(message["data"])
    raise AssertionError("nothing published")


@pytest.mark.redis
def test_redis_bus_numbers_atomically_and_publishes_once(
    redis_url: str, subscriber: redis.client.PubSub
) -> None:
    source = f"bus-{uuid.uuid4().hex[:8]}"
    bus = RedisBus(redis_url)
    bus.publish({source: 2}, batch_payload([{"n": 1}, {"n": 2}], [1, 2]))
    bus.publish({source: 1}, batch_payload([{"n": 3}], [3]))
    (first, records) = next_message(subscriber)
    assert records == [{"n": 1, "id": 1}, {"n": 2, "id": 2}]
    assert next_message(subscriber) == ({source: first[source] + 2}, [{"n": 3, "id": 3}])


@pytest.mark.redis
def test_a_sources_number_leaves_redis_after_a_silent_day(
    redis_url: str, subscriber: redis.client.PubSub
) -> None:
    """A typo's names leave nothing behind for ever: each number expires a day after its last batch."""
    source = f"bus-{uuid.uuid4().hex[:8]}"
    RedisBus(redis_url).publish({source: 1}, batch_payload([{"n": 1}], [1]))
    next_message(subscriber)
    ttl = redis.Redis.from_url(redis_url).ttl(SEQ_KEY_PREFIX + source)
    assert isinstance(ttl, int) and SEQ_TTL_S - 60 < ttl <= SEQ_TTL_S


@pytest.mark.redis
def test_a_starting_hub_learns_where_each_sources_numbers_stand(
    redis_url: str, subscriber: redis.client.PubSub
) -> None:
    source = f"marks-{uuid.uuid4().hex[:8]}"
    bus = RedisBus(redis_url)
    bus.publish({source: 3}, batch_payload([{"n": 1}, {"n": 2}, {"n": 3}], [1, 2, 3]))
    (first, _) = next_message(subscriber)
    assert bus.last_numbers()[source] == first[source] + 2
    hub = Hub()
    hub.adopt_numbers(bus.last_numbers())
    assert hub.next_seqs(source) == {source: first[source] + 3}  # before any batch of it came


@pytest.mark.redis
def test_records_that_could_not_be_published_leave_a_gap(
    redis_url: str, subscriber: redis.client.PubSub
) -> None:
    source = f"gap-{uuid.uuid4().hex[:8]}"
    target = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    with TcpProxy(target.get("host", "127.0.0.1"), int(target.get("port", 6379))) as proxy:
        bus = RedisBus(f"redis://127.0.0.1:{proxy.port}/0")
        bus.publish({source: 1}, batch_payload([{"n": 1}], [1]))
        assert bus.drain(5)
        proxy.cut()
        failures = counters.snapshot().get("broadcast_failures", 0)
        bus.publish(
            {source: 5}, batch_payload([{"n": n} for n in range(2, 7)], range(2, 7))
        )  # queued: publishing never raises in the request
        assert bus.drain(5)
        assert counters.snapshot()["broadcast_failures"] == failures + 1
        proxy.restore()
        bus.publish({source: 1}, batch_payload([{"n": 7}], [7]))
        assert bus.drain(5)
    first = next_message(subscriber)[0][source]
    assert next_message(subscriber)[0] == {source: first + 6}  # 5 are missing, and it shows

"""The hub's fan-out, driven with fake clients: who gets which batch, in which order, with
which sequence numbers, and what happens to a client that stops reading."""

from typing import Any

import orjson
import pytest

from metrics_app.stream.hub import Hub
from tests.support.fakes import FakeClient, FakeWriter
from tests.support.records import navigation, scheduler_run


def subscribed(hub: Hub, *sources: str, writer: FakeWriter | None = None) -> FakeClient:
    client = FakeClient(writer=writer or FakeWriter())
    hub.add(client)
    for source in sources:
        hub.subscribe(client, source)
    return client


def batches(client: FakeClient) -> list[dict[str, Any]]:
    return client.writer.of_type("metrics_batch")


def test_a_batch_reaches_its_sources_subscribers_and_the_wildcards_once() -> None:
    hub = Hub()
    cnbc, everything, both, other = (subscribed(hub, "cnbc"), subscribed(hub, "*"),
                                     subscribed(hub, "cnbc", "*"), subscribed(hub, "webull"))  # fmt: skip
    hub.receive(
        {"cnbc": 10}, [navigation(scraperSource="cnbc", url="u1"), navigation(scraperSource="cnbc", url="u2")]
    )
    hub.flush()
    for client in (cnbc, everything, both):
        [batch] = batches(client)
        assert (batch["scraperSource"], batch["count"], batch["seq"]) == ("cnbc", 2, 10)
        assert [record["url"] for record in batch["metrics"]] == ["u1", "u2"]
    assert batches(other) == []


def test_records_go_out_in_recorded_order_and_a_bare_scheduler_is_its_own_channel() -> None:
    hub = Hub()
    client = subscribed(hub, "*")
    hub.receive(
        {"cnbc": 1, "nightly": 1},
        [
            navigation(scraperSource="cnbc", url="late", recordedAt=2000),
            scheduler_run(schedulerName="nightly"),
        ],
    )
    hub.receive({"cnbc": 2}, [navigation(scraperSource="cnbc", url="early", recordedAt=1000)])
    hub.flush()
    by_channel = {batch["scraperSource"]: batch for batch in batches(client)}
    assert [record["url"] for record in by_channel["cnbc"]["metrics"]] == ["early", "late"]
    assert by_channel["nightly"]["count"] == 1


def test_a_jump_in_sequence_numbers_starts_a_new_batch() -> None:
    hub = Hub()
    client = subscribed(hub, "cnbc")
    hub.receive({"cnbc": 1}, [navigation(scraperSource="cnbc")])
    hub.receive({"cnbc": 5}, [navigation(scraperSource="cnbc")])  # 2-4 were lost on the way
    hub.flush()
    assert [(batch["seq"], batch["count"]) for batch in batches(client)] == [(1, 1), (5, 1)]


def test_a_new_subscriber_learns_the_seq_of_the_next_batch_it_will_get() -> None:
    hub = Hub()
    assert hub.next_seqs("cnbc") == {} and hub.next_seqs("*") == {}  # nothing seen yet
    hub.receive({"webull": 7}, [navigation(scraperSource="webull")])  # no subscriber: not held
    watcher = subscribed(hub, "cnbc")
    hub.receive({"cnbc": 3}, [navigation(scraperSource="cnbc"), navigation(scraperSource="cnbc")])
    # cnbc's batch 3-4 is still pending: a subscriber from now gets it, so it starts at 3
    assert hub.next_seqs("cnbc") == {"cnbc": 3}
    assert hub.next_seqs("*") == {"cnbc": 3, "webull": 8}
    late = subscribed(hub, "*")
    hub.flush()
    assert hub.next_seqs("cnbc") == {"cnbc": 5}
    assert [batch["seq"] for batch in batches(late)] == [3] == [batch["seq"] for batch in batches(watcher)]


def test_a_batch_whose_subscribers_left_is_not_joined_by_later_records() -> None:
    hub = Hub()
    leaving = subscribed(hub, "cnbc")
    hub.receive({"cnbc": 3}, [navigation(scraperSource="cnbc")] * 2)  # pending: 3-4
    hub.remove(leaving)
    hub.receive({"cnbc": 5}, [navigation(scraperSource="cnbc")] * 2)  # nobody subscribed: 5-6
    returning = subscribed(hub, "cnbc")
    assert hub.next_seqs("cnbc") == {"cnbc": 7}
    hub.receive({"cnbc": 7}, [navigation(scraperSource="cnbc")])
    hub.flush()
    assert [(batch["seq"], batch["count"]) for batch in batches(returning)] == [(7, 1)]


def test_numbers_adopted_at_start_never_override_what_came() -> None:
    hub = Hub()
    hub.receive({"cnbc": 10}, [navigation(scraperSource="cnbc")])
    hub.adopt_numbers({"cnbc": 4, "webull": 7})
    assert hub.next_seqs("*") == {"cnbc": 11, "webull": 8}


def test_a_full_batch_goes_out_without_waiting(settings: Any) -> None:
    settings.METRICS_MAX_BATCH_SIZE = 3
    hub = Hub()
    client = subscribed(hub, "cnbc")
    hub.receive({"cnbc": 1}, [navigation(scraperSource="cnbc") for _ in range(4)])
    assert [batch["count"] for batch in batches(client)] == [3]  # the fourth waits for the tick


def test_a_client_that_stops_reading_is_dropped_and_forgotten() -> None:
    hub = Hub()
    stuck = subscribed(hub, "cnbc", "*", writer=FakeWriter(reading=False))
    reader = subscribed(hub, "cnbc")
    hub.receive({"cnbc": 1}, [navigation(scraperSource="cnbc")])
    hub.flush()
    assert stuck.writer.aborted and stuck not in hub.clients
    assert hub.subscribers == {"cnbc": {reader}}
    assert len(batches(reader)) == 1


def test_removing_a_client_leaves_no_trace() -> None:
    hub = Hub()
    client = subscribed(hub, "cnbc", "*")
    hub.remove(client)
    hub.remove(FakeClient())  # never added: nothing to do
    assert (hub.clients, dict(hub.subscribers), client.subscriptions) == (set(), {}, set())
    assert hub.health()["clients"] == 0 and hub.health()["subscriptions"] == {}


def test_heartbeats_go_to_every_client_and_shutdown_closes_with_1001() -> None:
    hub = Hub()
    quiet, listening = subscribed(hub), subscribed(hub, "cnbc")
    hub.heartbeat()
    assert len(quiet.writer.of_type("heartbeat")) == len(listening.writer.of_type("heartbeat")) == 1
    hub.receive({"cnbc": 1}, [navigation(scraperSource="cnbc")])
    hub.shutdown()
    assert len(batches(listening)) == 1  # what was pending went out first
    assert quiet.writer.closed_with == listening.writer.closed_with == 1001


@pytest.mark.parametrize("flowing", [True, False])
def test_updates_go_out_only_while_records_flow(flowing: bool) -> None:
    hub = Hub()
    client = subscribed(hub)
    if flowing:
        hub.receive({"cnbc": 1}, [navigation(scraperSource="cnbc")])
    hub.send_update()
    hub.send_update()
    assert len(client.writer.of_type("metrics:update")) == (1 if flowing else 0)


def test_a_client_limited_to_sources_gets_updates_of_those_only() -> None:
    hub = Hub()
    everyone, limited = subscribed(hub), subscribed(hub)
    limited.sources = frozenset({"cnbc"})
    hub.receive(
        {"cnbc": 1, "webull": 1}, [navigation(scraperSource="cnbc"), navigation(scraperSource="webull")]
    )
    hub.send_update()
    [full] = everyone.writer.of_type("metrics:update")
    [cut] = limited.writer.of_type("metrics:update")
    assert set(full["data"]["sources"]) == {"cnbc", "webull"}
    assert set(cut["data"]["sources"]) == {"cnbc"} and cut["data"]["totals"]["records"] == 1


def alert_event(source: str | None, scheduler: str | None = None) -> bytes:
    alert = {"verdict": "site_down", "scraperSource": source, "schedulerName": scheduler}
    return orjson.dumps({"type": "alert", "status": "firing", "alert": alert})


def test_a_client_limited_to_sources_gets_alerts_naming_only_those() -> None:
    hub = Hub()
    everyone, limited = subscribed(hub), subscribed(hub)
    limited.sources = frozenset({"cnbc", "cnbc-hourly"})
    for event in (alert_event("cnbc"), alert_event("webull"), alert_event(None),  # None: an incident
                  alert_event("cnbc", "other-scheduler"), alert_event(None, "cnbc-hourly")):  # fmt: skip
        hub.send_event(event)
    assert len(everyone.writer.of_type("alert")) == 5
    assert [(m["alert"]["scraperSource"], m["alert"]["schedulerName"]) for m in limited.writer.of_type("alert")] == [
        ("cnbc", None), (None, "cnbc-hourly"),
    ]  # fmt: skip


def test_slow_sockets_together_hold_a_bounded_total(settings: Any) -> None:
    """Each socket may hold its share of METRICS_CLIENT_BUFFER_TOTAL_BYTES: a thousand slow
    sockets of 4 MiB each would hold 4 GiB."""
    from metrics_app.stream.sockets import buffer_bytes

    settings.METRICS_CLIENT_BUFFER_BYTES = 4 * 1024 * 1024
    settings.METRICS_MAX_CLIENTS, settings.METRICS_CLIENT_BUFFER_TOTAL_BYTES = 1000, 512 * 1024 * 1024
    assert buffer_bytes() * 1000 <= 512 * 1024 * 1024
    settings.METRICS_MAX_CLIENTS = 10  # few clients: each keeps the whole per-socket bound
    assert buffer_bytes() == 4 * 1024 * 1024

"""The daphne socket writer's bounds, on a real Twisted transport (abstract.FileDescriptor,
the base of its TCP transports) whose reactor never writes: what is sent stays unsent, as
for a client that stopped reading."""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet import abstract

from metrics_app.stream.sockets import Frame
from wealthmetrics import daphne_internals
from wealthmetrics.daphne_internals import DaphneWriter, held, unsent

BOUND = 64 * 1024


class Reactor:
    def addWriter(self, writer: object) -> None:
        pass

    def removeWriter(self, writer: object) -> None:
        pass


class Protocol:
    """What the writer uses of autobahn's protocol: sendPreparedMessage writes the framed bytes."""

    state = WebSocketProtocol.STATE_OPEN
    onMessage = None

    def __init__(self) -> None:
        reactor: Any = Reactor()  # of the interface, only what a write calls
        self.transport = abstract.FileDescriptor(reactor)
        self.transport.connected = True
        channel: Any = object()  # daphne's HTTP channel, the producer before the upgrade
        self.transport.registerProducer(channel, True)
        self.dropped = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def sendPreparedMessage(self, message: Any) -> None:
        self.transport.write(message.payloadHybi)

    def dropConnection(self, abort: bool) -> None:
        self.dropped = abort


@pytest.fixture(autouse=True)
def bounds(settings: Any) -> Iterator[None]:
    settings.METRICS_CLIENT_BUFFER_BYTES = BOUND
    settings.METRICS_CLIENT_BUFFER_TOTAL_BYTES = 256 * 1024
    settings.METRICS_MAX_CLIENTS = 4
    yield
    held.over.clear()


def writer() -> DaphneWriter:
    return DaphneWriter(Protocol())


def test_a_socket_over_its_bound_has_two_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    slow = writer()
    assert slow.protocol.transport.bufferSize == BOUND
    assert slow.send(Frame(b"x" * (BOUND + 1))) and slow.over_since  # paused by the transport
    assert slow.send(Frame(b"x"))  # still within its 2 s
    monkeypatch.setattr(daphne_internals, "SLOW_AFTER_SECONDS", 0.0)
    assert not slow.send(Frame(b"x"))  # then the hub drops it


def test_past_the_total_those_holding_most_are_dropped_at_once() -> None:
    """Four sockets each hold 100 KiB (over their 64 KiB): 400 KiB against a total of 256 KiB."""
    writers = [writer() for _ in range(4)]
    for n, each in enumerate(writers):
        each.send(Frame(b"x" * (100 * 1024 + n)))  # the last holds most
    assert held.over == set(writers)
    held.check()
    assert not any(each.protocol.dropped for each in writers)  # a burst: within its grace
    for each in writers:
        each.taking_at -= held.GRACE_S
    held.check()
    assert [each.protocol.dropped for each in writers] == [False, False, True, True]
    assert sum(unsent(each.protocol.transport) for each in held.over) <= 256 * 1024


def test_a_socket_whose_client_reads_is_not_dropped_past_the_total() -> None:
    """The same four, but the one holding most is being read: its client takes a few bytes."""
    writers = [writer() for _ in range(4)]
    for n, each in enumerate(writers):
        each.send(Frame(b"x" * (100 * 1024 + n)))
        each.taking_at -= held.GRACE_S
    reading = writers[-1].protocol.transport
    reading.writeSomeData = lambda data: 1024  # what the kernel took of it
    reading.doWrite()
    held.check()
    assert [each.protocol.dropped for each in writers] == [False, True, True, False]


def test_a_resync_waits_for_the_socket_to_drain() -> None:
    paced = writer()

    async def scenario() -> list[bool]:
        paced.send(Frame(b"x" * (BOUND + 1)))
        waiting = asyncio.ensure_future(paced.drained())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # paused: the next page waits
        paced.resumeProducing()  # what the transport calls once it has written everything
        return [await waiting, await paced.drained()]

    assert asyncio.run(scenario()) == [True, True]
    assert paced not in held.over


def test_a_socket_that_never_drains_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daphne_internals, "SLOW_AFTER_SECONDS", 0.05)
    stuck = writer()
    stuck.send(Frame(b"x" * (BOUND + 1)))
    assert asyncio.run(stuck.drained()) is False

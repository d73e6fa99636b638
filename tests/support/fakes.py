"""Stand-ins for a socket, so the hub can be driven without a server."""

from dataclasses import dataclass, field
from typing import Any

import orjson

from metrics_app.stream.sockets import Frame, SocketWriter


class FakeWriter(SocketWriter):
    """Keeps what is sent; `reading=False` makes it a client that stopped reading."""

    def __init__(self, reading: bool = True) -> None:
        self.reading = reading
        self.sent: list[dict[str, Any]] = []
        self.aborted = False
        self.closed_with: int | None = None

    def send(self, frame: Frame) -> bool:
        if not self.reading:
            return False
        self.sent.append(orjson.loads(frame.data))
        return True

    def abort(self) -> None:
        self.aborted = True

    def close(self, code: int) -> None:
        self.closed_with = code

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [message for message in self.sent if message["type"] == kind]


@dataclass(eq=False)
class FakeClient:
    client_id: str = "client-test"
    subscriptions: set[str] = field(default_factory=set)
    writer: FakeWriter = field(default_factory=FakeWriter)
    sources: frozenset[str] | None = None  # a key limited to these; None: everything
    credential: str = "key:1"

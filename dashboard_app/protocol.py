"""What a browser may send on /ws/metrics/, checked before the consumer acts on it.

Every bad message becomes a `ClientError` with a code the client can act on; the
connection stays open.
"""

from dataclasses import dataclass
from typing import Any, Final

import orjson

from metrics_app.records import SOURCE_PATTERN, WILDCARD, is_source_name

MAX_MESSAGE_BYTES: Final = 16 * 1024


class ClientError(Exception):
    def __init__(self, code: str, message: str, source: str | None = None, resync: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.source = source  # the subscription it is about, when there is one
        self.resync = resync  # it answers a subscribe with `since`

    def as_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.source is not None:
            message["scraperSource"] = self.source
        if self.resync:
            message["resync"] = True
        return message


@dataclass(frozen=True)
class Since:
    """Where a client's records end: the newest page and scheduler-run ids it holds."""

    page: int
    scheduler: int


@dataclass(frozen=True)
class Subscribe:
    sources: tuple[str, ...]
    since: Since | None = None  # resync: every record after these, not the newest 100


@dataclass(frozen=True)
class Unsubscribe:
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Ping:
    pass


Command = Subscribe | Unsubscribe | Ping


def parse_command(text: str | None) -> Command:
    if text is None:
        raise ClientError("invalid_message", "send JSON text frames, not binary")
    if len(text) > MAX_MESSAGE_BYTES:
        raise ClientError("message_too_large", f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ClientError("invalid_json", "the message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ClientError("invalid_message", "a message is a JSON object with a 'type'")
    kind = message.get("type")
    if kind == "ping":
        return Ping()
    if kind in ("subscribe", "unsubscribe"):
        sources = _sources(message)
        return Subscribe(sources, _since(message)) if kind == "subscribe" else Unsubscribe(sources)
    raise ClientError("unknown_type", f"unknown type {kind!r}; use subscribe, unsubscribe or ping")


def _sources(message: dict[str, Any]) -> tuple[str, ...]:
    if "scraperSources" in message:
        sources = message["scraperSources"]
        if not isinstance(sources, list) or not sources:
            raise ClientError("invalid_source", "scraperSources must be a non-empty list of source names")
    elif "scraperSource" in message:
        sources = [message["scraperSource"]]
    else:
        raise ClientError("invalid_source", "name a scraperSource (or scraperSources, or '*')")
    for source in sources:
        if not isinstance(source, str) or not (source == WILDCARD or is_source_name(source)):
            raise ClientError(
                "invalid_source", f"{source!r} is not a source name (pattern {SOURCE_PATTERN}) or '*'"
            )
    return tuple(dict.fromkeys(sources))


def _since(message: dict[str, Any]) -> Since | None:
    since = message.get("since")
    if since is None:
        return None
    ids = [since.get(name, 0) for name in ("page", "scheduler")] if isinstance(since, dict) else None
    if ids is None or not all(type(value) is int and 0 <= value < 2**63 for value in ids):
        raise ClientError("invalid_since", 'since is {"page": id, "scheduler": id}, whole numbers >= 0')
    return Since(*ids)

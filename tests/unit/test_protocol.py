"""What a browser may send on /ws/metrics/ (dashboard_app.protocol): every message and every
way it can be wrong."""

import pytest
from hypothesis import given, settings

from dashboard_app.protocol import MAX_MESSAGE_BYTES, ClientError, Ping, Subscribe, Unsubscribe, parse_command
from tests.support.strategies import client_messages


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ('{"type": "ping"}', Ping()),
        ('{"type": "subscribe", "scraperSource": "cnbc"}', Subscribe(("cnbc",))),
        ('{"type": "subscribe", "scraperSource": "*"}', Subscribe(("*",))),
        (
            '{"type": "subscribe", "scraperSources": ["cnbc", "webull", "cnbc"]}',
            Subscribe(("cnbc", "webull")),
        ),
        ('{"type": "unsubscribe", "scraperSource": "cnbc"}', Unsubscribe(("cnbc",))),
    ],
)
def test_reads_each_command(text: str, command: object) -> None:
    assert parse_command(text) == command


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (None, "invalid_message"),  # a binary frame
        ("not json", "invalid_json"),
        ("[1]", "invalid_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "subscribe"}', "invalid_source"),
        ('{"type": "subscribe", "scraperSources": []}', "invalid_source"),
        ('{"type": "subscribe", "scraperSource": "CNBC"}', "invalid_source"),
        ('{"type": "subscribe", "scraperSource": "cnbc\\n"}', "invalid_source"),
        ('{"type": "subscribe", "scraperSource": 7}', "invalid_source"),
        ('{"type": "ping", "pad": "' + "x" * MAX_MESSAGE_BYTES + '"}', "message_too_large"),
    ],
)
def test_names_what_is_wrong(text: str | None, code: str) -> None:
    with pytest.raises(ClientError) as caught:
        parse_command(text)
    assert caught.value.code == code
    assert caught.value.as_message()["message"]


@given(client_messages)
@settings(max_examples=600, deadline=None)
def test_any_client_message_is_a_command_or_a_client_error(text: str) -> None:
    """Fuzz: whatever a client sends is understood or answered with an error naming it, never a crash."""
    try:
        command: object = parse_command(text)
    except ClientError as error:
        command = error
    if isinstance(command, ClientError):
        assert command.as_message()["code"]
    else:
        assert isinstance(command, Ping | Subscribe | Unsubscribe)

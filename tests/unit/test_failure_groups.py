"""Failures group by their error message once what varies is taken out (metrics_app.history.failures)."""

import pytest

from metrics_app.history.failures import normalise


@pytest.mark.parametrize(
    ("first", "second", "group"),
    [
        (
            "HTTP 503 for https://x.example/quote/AAPL after 3 tries",
            "HTTP 502 for https://x.example/quote/MSFT?r=1 after 12 tries",
            "HTTP <n> for <url> after <n> tries",
        ),
        ("Timeout 30000ms exceeded", "Timeout 45000ms exceeded", "Timeout <n> exceeded"),
        ("selector #price-93d3fa not found", "selector #price-a1 not found", "selector #price-<n> not found"),
        ("took 1.5 s", "took 12.25 s", "took <n> s"),
        (
            "job 123e4567-e89b-12d3-a456-426614174000 failed",
            "job 9f0c4567-e89b-12d3-a456-426614174999 failed",
            "job <id> failed",
        ),
        ("net::ERR_HTTP2_PROTOCOL_ERROR", "net::ERR_HTTP2_PROTOCOL_ERROR", "net::ERR_HTTP2_PROTOCOL_ERROR"),
    ],
)
def test_what_varies_does_not_split_a_group(first: str, second: str, group: str) -> None:
    assert normalise(first) == normalise(second) == group


def test_a_failure_without_a_message_still_has_a_group() -> None:
    assert normalise(None) == normalise("  ") == "failed (no error message)"

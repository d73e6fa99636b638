"""The real application plus one test-only route that records through the in-process
collector, so a test can queue records inside a running daphne and then stop it."""

from typing import Any

from wealthmetrics.asgi import application as wealthmetrics_application


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    from metrics_app.collector import collector  # once Django is set up

    if scope["type"] == "http" and scope["path"] == "/test/record/":
        collector.record_page_navigation(
            scraper_source="shutdown-test", url="https://x/", navigation_duration_ms=7
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"queued"})
        return
    await wealthmetrics_application(scope, receive, send)

"""wealthmetrics' scraper kit: tracking helpers and a batching client for the HTTP API.

from wealthmetrics_client import MetricsClient, goto_with_retries, scrape_page, set_sink

set_sink(MetricsClient("http://metrics.example.com", api_key))
response = goto_with_retries(session, url, scraper_source="cnbc")
quotes = scrape_page("cnbc", url, response.text, parse_quotes)
"""

from wealthmetrics_client.client import MetricsClient
from wealthmetrics_client.tracking import (
    NavigationFailed,
    Sink,
    get_sink,
    goto_with_retries,
    goto_with_retries_async,
    scrape_page,
    set_sink,
    track_navigation,
    track_scheduler_run,
    track_scrape,
    tracked_scheduler_run,
    tracked_scrape,
)

__all__ = [
    "MetricsClient",
    "NavigationFailed",
    "Sink",
    "get_sink",
    "goto_with_retries",
    "goto_with_retries_async",
    "scrape_page",
    "set_sink",
    "track_navigation",
    "track_scheduler_run",
    "track_scrape",
    "tracked_scheduler_run",
    "tracked_scrape",
]

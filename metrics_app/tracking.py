"""Tracking helpers for scrapers running inside a wealthmetrics process.

They are the scraper kit's (wealthmetrics_client.tracking). Inside a wealthmetrics process their
default sink is the in-process collector (set by MetricsAppConfig.ready()), unless
WEALTHMETRICS_URL and WEALTHMETRICS_API_KEY point them at a server over HTTP, or set_sink()
chose another.

    from metrics_app.tracking import goto_with_retries, track_scrape

    page = goto_with_retries(session, url, scraper_source="cnbc")
    with track_scrape("cnbc", url) as scrape:
        quotes = parse(page.text)
        scrape.items, scrape.bytes = len(quotes), len(page.content)
"""

from wealthmetrics_client import tracking
from wealthmetrics_client.tracking import *  # noqa: F403  (the helpers, as tracking.__all__ lists them)

__all__ = tracking.__all__

"""wealthmetrics' scraper kit: tracking helpers and a batching client for the HTTP API.

from wealthmetrics_client import Field, MetricsClient, goto_with_retries, scrape_page, set_sink

set_sink(MetricsClient("http://metrics.example.com", api_key))
response = goto_with_retries(session, url, scraper_source="cnbc")
quotes = scrape_page("cnbc", url, response.text, parse_quotes, schema={"price": Field(float, min=0)})
"""

from wealthmetrics_client import tracking
from wealthmetrics_client.client import MetricsClient
from wealthmetrics_client.recorder import MetricRecorder
from wealthmetrics_client.records import InvalidRecord
from wealthmetrics_client.schema import Field, count_fields
from wealthmetrics_client.tracking import *  # noqa: F403  (the helpers, as tracking.__all__ lists them)

__all__ = ["Field", "InvalidRecord", "MetricRecorder", "MetricsClient", "count_fields", *tracking.__all__]

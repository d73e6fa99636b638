"""A complete scraper instrumented with wealthmetrics: fetch quote pages with httpx, parse
them, and record every navigation (with its retries and HTTP status), every scrape (items,
bytes, and how many quotes have each field filled and valid) and the run itself, through the
batching client.

    python examples/quotes_site.py &
    WEALTHMETRICS_URL=http://127.0.0.1:8000 WEALTHMETRICS_API_KEY=wm_… \\
        python examples/quotes_scraper.py --site http://127.0.0.1:8765
"""

import argparse
import os
import re
import sys

import httpx

from wealthmetrics_client import (
    Field,
    MetricsClient,
    goto_with_retries,
    scrape_page,
    set_sink,
    track_scheduler_run,
)  # fmt: skip

SOURCE = "example-quotes"
ROW = re.compile(r"<tr><td>(?P<symbol>[^<]*)</td><td>(?P<price>[^<]*)</td></tr>")
# What a good quote holds: the service learns how often each field is filled and valid, and
# says which one broke ("price filled on 12 % of items") when a selector moves.
QUOTE = {"symbol": Field(str, pattern=r"[A-Z^][A-Z0-9.^=-]*"), "price": Field(float, min=0)}


def parse_quotes(html: str | bytes) -> list[dict[str, object]]:
    text = html.decode() if isinstance(html, bytes) else html
    return [{"symbol": match["symbol"], "price": _number(match["price"])} for match in ROW.finditer(text)]


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # kept as found ("—"): the schema counts it as empty, not as a price


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--site", default="http://127.0.0.1:8765")
    parser.add_argument("--pages", type=int, default=5)
    args = parser.parse_args()

    metrics = MetricsClient(os.environ["WEALTHMETRICS_URL"], os.environ["WEALTHMETRICS_API_KEY"])
    set_sink(metrics)  # every helper below records through it

    quotes: dict[str, float] = {}
    with (
        track_scheduler_run("example-quotes-run", scraper_source=SOURCE) as run,
        httpx.Client(timeout=10) as web,
    ):
        for page in range(1, args.pages + 1):
            url = f"{args.site}/quotes?page={page}"
            try:
                response = goto_with_retries(web, url, scraper_source=SOURCE, retries=2, backoff=0.2)
            except Exception as exc:  # recorded as a failed navigation; carry on with the next page
                print(f"gave up on {url}: {exc}", file=sys.stderr)
                continue
            for quote in scrape_page(SOURCE, url, response.text, parse_quotes, schema=QUOTE):
                if isinstance(quote["price"], float):
                    quotes[str(quote["symbol"])] = quote["price"]
        run.items_processed = len(quotes)

    metrics.close()  # sends what is buffered
    print(f"scraped {len(quotes)} quotes; sent {metrics.stats()['sent']} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())

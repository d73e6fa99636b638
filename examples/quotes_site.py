"""A tiny local quotes site for the example scraper: five pages of ten quotes.

Page 3 answers 503 to its first request (the scraper retries it); page 5 always fails with
500 (the scraper gives up on it, and the dashboard shows the failure).

    python examples/quotes_site.py [--port 8765]
"""

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

SYMBOLS = [f"{a}{b}{c}" for a in "ABC" for b in "XYZ" for c in "KLMNOP"]


class QuotesSite(BaseHTTPRequestHandler):
    requests_seen: dict[int, int] = {}

    def do_GET(self) -> None:
        url = urlparse(self.path)
        page = int(parse_qs(url.query).get("page", ["1"])[0])
        seen = self.requests_seen[page] = self.requests_seen.get(page, 0) + 1
        if url.path != "/quotes" or not 1 <= page <= 5:
            return self._answer(404, "<h1>Not found</h1>")
        if (page == 3 and seen == 1) or page == 5:
            return self._answer(503 if page == 3 else 500, "<h1>Try again later</h1>")
        rows = "".join(
            f"<tr><td>{symbol}</td><td>{100 + i * 1.25:.2f}</td></tr>"
            for i, symbol in enumerate(SYMBOLS[(page - 1) * 10 : page * 10])
        )
        self._answer(200, f"<html><body><table>{rows}</table></body></html>")

    def _answer(self, status: int, html: str) -> None:
        body = html.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), QuotesSite)
    print(f"quotes site on http://127.0.0.1:{args.port}/quotes?page=1", flush=True)
    server.serve_forever()

import math
import os
import random
import re
import signal
import time
import urllib.error
import urllib.request
from argparse import ArgumentParser
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from metrics_app.models import ApiKey, PagePerformance, SchedulerMetric
from metrics_app.records import is_source_name
from wealthmetrics_client import MetricsClient
from wealthmetrics_client.recorder import new_run_id

DEFAULT_SOURCES = "robinhood,cnbc,webull,marketbeat,yahoo-finance,seeking-alpha"
NAVIGATION_ERRORS = (
    "net::ERR_TIMED_OUT",
    "net::ERR_CONNECTION_RESET",
    "Timeout 30000ms exceeded",
    "HTTP 503 Service Unavailable",
    "HTTP 429 Too Many Requests",
    "HTTP 404 Not Found",
)
STATUS = re.compile(r"HTTP (\d{3})")  # the status an error text names, if any
# Each quote's fields, and how often a healthy page has each filled: a few quotes legitimately
# lack a volume. The `field_broken` fault empties `price` on most of one source's quotes.
FIELDS = {"symbol": 1.0, "price": 0.995, "change_pct": 0.98, "volume": 0.9}
BROKEN_FIELD, BROKEN_FILLED = "price", 0.15
TICKERS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOGL", "META", "BRK.B", "JPM", "V", "UNH", "XOM",
           "JNJ", "WMT", "MA", "PG", "HD", "CVX", "KO", "PEP", "ABBV", "COST", "MRK", "AVGO", "ORCL",
           "BAC", "ADBE", "CRM", "NFLX", "^GSPC")  # fmt: skip
SCRAPE_ERRORS = ("selector 'table.quotes' not found", "JSONDecodeError: Expecting value")
# Faults --faults can inject, each with how long the demo keeps it up (seconds): long enough to
# fire (half the default 5-minute window after it shows) and, for a silence, to pass
# METRICS_ALERT_NO_DATA_S (10 minutes). "scheduler_stop" stops the scheduler's runs, and
# "run_degraded" makes its next run skip most of its pages (run_degraded fires when that ends);
# both are the scheduler's, so their source is ignored.
# "stale_entities" stops a source refreshing a tenth of its symbols: stale after 15 minutes (the
# floor, METRICS_ENTITY_STALE_S), so the demo keeps it up for 20.
FAULTS = {"site_down": 240, "extraction_broken": 240, "field_broken": 240, "blocked": 240, "slow": 240,
          "scheduler_stop": 420, "run_degraded": 60, "stale_entities": 1200, "no_data": 840}  # fmt: skip
STALE_TICKERS = ("TSLA", "NFLX", "KO")  # the symbols the stale_entities fault stops refreshing
SKIPPED_PAGES = 0.8  # of a degraded run
DEMO_GAP_S = 240  # quiet between the demo's faults, so each one's alert resolves first
SCHEDULER = "quotes-refresh"
SCHEDULER_PERIOD_S = 60  # live and in the backfill alike
# Records a second, live and in the backfill alike, so that the past has the shape of the
# present and a card's "vs the previous 24 hours" compares like with like. 2 a second (a page
# every 6 s per source of the six) keeps a week of backfill to some 1.2 M records, sent in about
# 90 s beside `make run` (550 MB of SQLite); 20 a second would be 12 M, and a week of live
# traffic as many rows on the embedded SQLite.
DEFAULT_RATE = 2.0
BACKFILL_CHUNK = 5000  # records the backfill lets wait in its client's buffer (10,000) before it drains


@dataclass(frozen=True)
class Fault:
    kind: str  # a key of FAULTS
    source: str  # ignored for scheduler_stop
    start: float  # seconds after the simulation starts
    duration: float


def parse_faults(text: str, sources: list[str]) -> list[Fault]:
    """`demo` (one fault after another on rotating sources, the first a minute in), or
    `kind:source:start_s:duration_s,…`."""
    if text == "demo":
        faults, at = [], 60.0
        for n, (kind, duration) in enumerate(FAULTS.items()):
            faults.append(Fault(kind, sources[n % len(sources)], at, duration))
            at += duration + DEMO_GAP_S
        return faults
    faults = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        if len(parts) != 4 or parts[0] not in FAULTS:
            raise CommandError(
                f"--faults: {item!r} is not kind:source:start_s:duration_s (kinds: {', '.join(FAULTS)})"
            )
        try:
            faults.append(Fault(parts[0], parts[1], float(parts[2]), float(parts[3])))
        except ValueError:
            raise CommandError(f"--faults: {item!r}: start and duration are seconds") from None
    return faults


@dataclass
class SimulatedSource:
    """One scraper's behaviour: lognormal timings of its own, and episodes of trouble."""

    name: str
    navigation_ms: float  # median
    scrape_ms: float
    spread: float  # sigma of the lognormal
    items: int  # items on a typical page
    failing_until: float = 0.0  # a failure burst: most navigations fail
    slow_until: float = 0.0  # a slowdown: everything takes several times longer
    pages: int = 0
    fault: str | None = None  # an injected fault (FAULTS) in progress
    run_id: str | None = None  # the scheduler's run its pages belong to (docs/api.md, "Runs")
    skipping: float = 0.0  # the share of its pages the run skips (a degraded run)

    def visit(self, rng: random.Random, now: float, client: MetricsClient, at: int | None = None,
              broken: bool = False) -> int:  # fmt: skip
        """One page: a navigation with retries, then a scrape if it loaded. Returns records sent.
        `now`: the simulated clock (seconds since the epoch) its episodes of trouble run on;
        `at`: when it happened (ms since the epoch; default now); `broken`: the site is down."""
        if now > self.failing_until and rng.random() < 1 / 3000:
            self.failing_until = now + rng.uniform(30, 90)
        if now > self.slow_until and rng.random() < 1 / 2000:
            self.slow_until = now + rng.uniform(60, 180)
        if self.fault == "no_data":
            return 0
        slow = 8.0 if self.fault == "slow" else 3.5 if now < self.slow_until else 1.0
        broken = broken or self.fault in ("site_down", "blocked")
        fail = 0.95 if broken else 0.55 if now < self.failing_until else 0.03
        self.pages += 1
        ticker = rng.choice(TICKERS)
        if ticker in STALE_TICKERS and self.fault == "stale_entities":
            ticker = rng.choice([t for t in TICKERS if t not in STALE_TICKERS])
        url = f"https://{self.name}.example.com/quotes/{ticker}"
        # a page of a degraded run is one the crawl skipped: it is not part of the run
        run = {"runId": self.run_id} if self.run_id and rng.random() >= self.skipping else {}
        attempts = 1
        while attempts < 3 and rng.random() < fail:
            attempts += 1
        loaded = attempts < 3 or rng.random() >= fail
        navigation_ms = sum(self._lognormal(rng, self.navigation_ms * slow) for _ in range(attempts))
        when = {"recordedAt": at} if at is not None else {}
        error = None if loaded else self._navigation_error(rng)
        answered = STATUS.search(error) if error else None
        status = {"httpStatus": int(answered[1]) if answered else 200} if loaded or answered else {}
        client.record({
            "type": "page_navigation", "scraperSource": self.name, "url": url,
            "navigationDurationMs": navigation_ms, "retryCount": attempts - 1, "success": loaded,
            "error": error, **status, **when, **run,
        })  # fmt: skip
        if not loaded:
            return 1
        parsed = rng.random() >= 0.01
        items = max(0, round(rng.gauss(self.items, self.items / 4))) if parsed else 0
        items = 0 if self.fault == "extraction_broken" else items
        client.record({
            "type": "page_scrape", "scraperSource": self.name, "url": url,
            "scrapeDurationMs": self._lognormal(rng, self.scrape_ms * slow),
            "itemsExtracted": items, "fields": self._fields(rng, items),
            "dataSize": self._lognormal(rng, 60_000), "success": parsed,
            "error": None if parsed else rng.choice(SCRAPE_ERRORS), **when, **run,
            # the symbol it refreshed; not in the backfill, whose old times no freshness needs
            **({"entities": [ticker]} if at is None else {}),
        })  # fmt: skip
        return 2

    def _fields(self, rng: random.Random, items: int) -> dict[str, dict[str, int]]:
        """How many of the page's items had each field filled (a binomial, drawn as its normal
        approximation: a week of backfill draws it millions of times), and the rare invalid."""
        counts = {}
        for name, share in FIELDS.items():
            if self.fault == "field_broken" and name == BROKEN_FIELD:
                share = BROKEN_FILLED
            spread = math.sqrt(items * share * (1 - share))
            filled = min(items, max(0, round(rng.gauss(items * share, spread))))
            invalid = 1 if filled and rng.random() < 0.02 else 0
            counts[name] = {"filled": filled, "invalid": invalid}
        return counts

    def _navigation_error(self, rng: random.Random) -> str:
        if self.fault == "site_down":
            return rng.choice(("net::ERR_CONNECTION_REFUSED", "net::ERR_NAME_NOT_RESOLVED"))
        if self.fault == "blocked":
            return rng.choice(("HTTP 403 Forbidden", "HTTP 429 Too Many Requests", "captcha challenge"))
        return rng.choice(NAVIGATION_ERRORS)

    def _lognormal(self, rng: random.Random, median: float) -> int:
        return max(1, round(rng.lognormvariate(math.log(median), self.spread)))


class Command(BaseCommand):
    _parent: int | None = None
    faults: Sequence[Fault] = ()  # set per run in handle()
    period: float = SCHEDULER_PERIOD_S  # seconds between the scheduler's live runs
    help = (
        "Send realistic scraper traffic through the HTTP ingestion API (the remote client): "
        "several sources with their own lognormal timings, failure bursts, retries, slowdowns, "
        "and a scheduler that runs every minute; optionally a backfilled past of the same rate and shape."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
        parser.add_argument(
            "--rate", type=float, default=DEFAULT_RATE,
            help=f"records per second, live and backfilled (default {DEFAULT_RATE:g})",
        )  # fmt: skip
        parser.add_argument(
            "--duration", type=float, default=0, help="seconds to run (default: until stopped)"
        )
        parser.add_argument("--sources", default=DEFAULT_SOURCES, help=f"comma-separated ({DEFAULT_SOURCES})")
        parser.add_argument("--url", default=f"http://{host}:{port}/", help="the server (from HOST/PORT)")
        parser.add_argument(
            "--api-key", help="the key to send with (default: a new one, 'simulate_scrapers')"
        )
        parser.add_argument("--wait-for-server", type=float, default=0, help="seconds to wait for the server")
        parser.add_argument("--seed", type=int, help="random seed, for repeatable traffic")
        parser.add_argument(
            "--scheduler-period", type=float, default=SCHEDULER_PERIOD_S,
            help=f"seconds between the scheduler's runs, live (default {SCHEDULER_PERIOD_S})",
        )  # fmt: skip
        parser.add_argument(
            "--exit-with-parent", action="store_true", help="stop when the process that started it ends"
        )
        parser.add_argument(
            "--faults", default="",
            help="inject faults to watch alerts fire and resolve: 'demo' (one every few minutes, "
            f"in turn: {', '.join(FAULTS)}), or kind:source:start_s:duration_s,…",
        )  # fmt: skip
        parser.add_argument(
            "--backfill-days", type=int, default=0,
            help="first send this many days of history at the same --rate (one night of it broken "
            "for one source), unless the database already holds records",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        sources = [name.strip() for name in options["sources"].split(",") if name.strip()]
        bad = [name for name in sources if not is_source_name(name)]
        if not sources or bad:
            named = ", ".join(bad) or "none given"
            raise CommandError(f"--sources must be source names (a-z, 0-9, _ . -): {named}")
        if not 0 < options["rate"] <= 10_000:
            raise CommandError("--rate must be between 0 and 10000 records per second")
        url = options["url"]
        if options["wait_for_server"]:
            self._wait_for(url, options["wait_for_server"])
        own_key, key = (None, options["api_key"]) if options["api_key"] else ApiKey.issue("simulate_scrapers")
        rng = random.Random(options["seed"])
        simulated = [
            SimulatedSource(
                name,
                navigation_ms=rng.uniform(250, 1500),
                scrape_ms=rng.uniform(40, 400),
                spread=rng.uniform(0.3, 0.7),
                items=rng.randint(5, 60),
            )
            for name in sources
        ]
        self.faults = parse_faults(options["faults"], sources)
        if options["scheduler_period"] <= 0:
            raise CommandError("--scheduler-period: seconds, more than 0")
        self.period = options["scheduler_period"]
        client = MetricsClient(url, key, flush_interval=0.5, flush_at_exit=False)
        # A shell starts background jobs with SIGINT ignored; Ctrl-C should stop the demo too.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _stop)  # a supervisor's stop flushes like Ctrl-C does
        self._parent = os.getppid() if options["exit_with_parent"] else None
        self.stdout.write(
            f"Simulating {len(sources)} scrapers at ~{options['rate']:g} records/s into {url}api/metrics/ "
            "(Ctrl-C stops)"
        )
        try:
            if options["backfill_days"]:
                self._backfill(simulated, url, key, rng, options["rate"], options["backfill_days"])
            self._run(simulated, client, rng, options["rate"], options["duration"])
        except KeyboardInterrupt:
            pass
        finally:
            client.close(timeout=10)
            if own_key is not None:
                own_key.revoke()  # a key of its own is good for this run only
            stats = client.stats()
            self.stdout.write(
                f"Sent {stats['sent']} records ({stats['rejected']} rejected, {stats['dropped']} dropped)."
            )

    def _run(
        self,
        sources: list[SimulatedSource],
        client: MetricsClient,
        rng: random.Random,
        rate: float,
        duration: float,
    ) -> None:
        started = time.monotonic()
        next_run = started + self.period
        if not sources[0].run_id:  # else the backfill's last run goes on, ended by the next run
            _start_run(sources)
        next_report = started + 10
        records = 0.0
        tick = 0.1
        while not duration or time.monotonic() - started < duration:
            if self._parent is not None and os.getppid() != self._parent:
                return  # make run's daphne has stopped
            now = time.monotonic()
            stopped, degrade = self._inject(sources, now - started)
            records = _visits(sources, client, rng, records + rate * tick, now=time.time())
            if now >= next_run:
                next_run += self.period
                if not stopped:
                    self._scheduler_run(sources, client, rng, degrade_next=degrade)
            if now >= next_report:
                next_report += 10
                stats = client.stats()
                problem = f", last error: {stats['lastError']}" if stats["lastError"] else ""
                self.stdout.write(f"  sent {stats['sent']}, buffered {stats['buffered']}{problem}")
            time.sleep(max(0.0, tick - (time.monotonic() - now)))

    def _inject(self, sources: list[SimulatedSource], elapsed: float) -> tuple[bool, bool]:
        """Start and end the faults due at `elapsed` seconds; whether the scheduler is stopped,
        and whether its next run is to be degraded."""
        by_name = {source.name: source for source in sources}
        stopped = degrade = False
        for fault in self.faults:
            active = fault.start <= elapsed < fault.start + fault.duration
            if fault.kind == "scheduler_stop":
                stopped = stopped or active
                continue
            if fault.kind == "run_degraded":
                degrade = degrade or active
                continue
            source = by_name.get(fault.source)
            if source is None:
                continue
            if active and source.fault != fault.kind:
                source.fault = fault.kind
                self.stdout.write(f"  fault: {fault.kind} on {source.name} for {fault.duration:g} s")
            elif not active and source.fault == fault.kind and elapsed >= fault.start + fault.duration:
                source.fault = None
                self.stdout.write(f"  fault over: {fault.kind} on {source.name}")
        return stopped, degrade

    def _backfill(
        self, sources: list[SimulatedSource], url: str, key: str, rng: random.Random, rate: float, days: float
    ) -> None:
        """Days of history before now, so the 24-hour and 7-day views have a past on a first
        visit: the live traffic's rate and scheduler, minute by minute (so a trend compares
        like with like), and the night two days ago when the second source's site was down
        from 01:00 to 04:00. It runs on to the minute it ends in: no hole before live traffic."""
        if PagePerformance.objects.exists() or SchedulerMetric.objects.exists():
            self.stdout.write("History exists already: no backfill.")
            return
        now_ms = int(time.time() * 1000)
        start = now_ms - round(days * 86_400_000)
        night = (now_ms // 86_400_000 - 2) * 86_400_000
        broken = (sources[min(1, len(sources) - 1)].name, night + 3_600_000, night + 4 * 3_600_000)
        self.stdout.write(
            f"Backfilling {days:g} days of history at ~{rate:g} records/s, as live "
            f"(broken: {broken[0]} two nights ago, 01:00-04:00 UTC)…"
        )
        began = time.monotonic()
        # A client of its own, in the API's largest batches: the backfill is over sooner.
        client = MetricsClient(url, key, batch_size=1000, flush_at_exit=False)
        records, minute_ms = 0.0, start
        _start_run(sources, start)
        try:
            while minute_ms < time.time() * 1000 - 60_000:
                down = broken[0] if broken[1] <= minute_ms < broken[2] else None
                records = _visits(sources, client, rng, records + rate * 60, at=minute_ms, down=down)
                if (minute_ms - start) % (SCHEDULER_PERIOD_S * 1000) < 60_000:
                    self._scheduler_run(sources, client, rng, at=minute_ms)
                if client.stats()["buffered"] >= BACKFILL_CHUNK:
                    client.flush(timeout=120)  # the client's buffer is bounded: let it drain
                minute_ms += 60_000
                if (minute_ms - start) % 86_400_000 == 0:
                    self.stdout.write(
                        f"  history: day {(minute_ms - start) // 86_400_000} sent "
                        f"({time.monotonic() - began:.0f} s)"
                    )
            client.flush(timeout=120)
        finally:
            client.close(timeout=10)
        stats = client.stats()
        self.stdout.write(
            f"  history sent: {stats['sent']} records in {time.monotonic() - began:.0f} s "
            f"({stats['dropped']} dropped)"
        )

    def _scheduler_run(
        self, sources: list[SimulatedSource], client: MetricsClient, rng: random.Random,
        at: int | None = None, degrade_next: bool = False,
    ) -> None:  # fmt: skip
        """The scheduler's run ends (its scheduler_run record), and the next one starts; with
        `degrade_next`, that one skips most of its pages."""
        pages = sum(source.pages for source in sources)
        for source in sources:
            source.pages = 0
        ok = rng.random() >= 0.05
        run = {"runId": sources[0].run_id} if sources and sources[0].run_id else {}
        client.record({
            "type": "scheduler_run", "schedulerName": SCHEDULER,
            "executionDurationMs": round(rng.lognormvariate(math.log(4000), 0.4)),
            "itemsProcessed": pages if ok else 0, "success": ok,
            "error": None if ok else "some sources did not answer in time",
            **({"recordedAt": at} if at is not None else {}), **run,
        })  # fmt: skip
        _start_run(sources, at, SKIPPED_PAGES if degrade_next else 0.0)
        if degrade_next:
            self.stdout.write(f"  fault: run_degraded: the next run skips {SKIPPED_PAGES:.0%} of its pages")

    def _wait_for(self, url: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                urllib.request.urlopen(url.rstrip("/") + "/api/health/websocket", timeout=2).close()
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise CommandError(f"the server at {url} did not answer within {seconds:g} s") from None
                time.sleep(0.5)


def _visits(
    sources: list[SimulatedSource], client: MetricsClient, rng: random.Random, budget: float,
    now: float | None = None, at: int | None = None, down: str | None = None,
) -> float:  # fmt: skip
    """Pages until `budget` records are spent, each by a source drawn at random: how a rate
    becomes traffic, live (`now`, seconds) and backfilled alike (`at`: the minute the pages fall
    in, ms; `down`: a source whose site is down then), so every source's rate is the same in
    the past as in the present. Returns what is left of the budget."""
    while budget >= 1:
        source = sources[rng.randrange(len(sources))]
        when = None if at is None else at + rng.randrange(60_000)
        clock = when / 1000 if when is not None else now or time.time()
        budget -= max(1, source.visit(rng, clock, client, at=when, broken=source.name == down))
    return budget


def _start_run(sources: list[SimulatedSource], at: int | None = None, skipping: float = 0.0) -> None:
    """The scheduler's next run: the pages visited until its next scheduler_run belong to it
    (but for the share `skipping` of them)."""
    run_id = new_run_id(None if at is None else at / 1000)
    for source in sources:
        source.run_id, source.skipping = run_id, skipping


def _stop(*_: object) -> None:
    raise KeyboardInterrupt

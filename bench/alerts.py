"""Alerting benchmark: does the evaluator find what broke, name it right, and stay quiet
otherwise; and what does a cycle cost with 1,000 sources.

    DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics_bench_alerts .venv/bin/python bench/alerts.py

The database named in DATABASE_URL (its name must contain "bench") is dropped and created.

1. **Accuracy.** --history-days of healthy traffic for --sources sources (each with its own
   timings, item counts and page sizes; 2-5 % failures with mixed errors and a long tail of
   durations) and three schedulers, then an evaluated span of --hours in which faults of every
   kind start at known times (the ground truth): a site down, a ban answered with 403s, a ban
   answered with 200 and tiny pages, selectors breaking (0 items), a slowdown, a source going
   quiet, a scheduler stopping and one failing, an incident (10 sources down at once), and
   field breaks: one field's filled share falling to 10-50 %, or its valid share to 50 %.
   Beside them, --crawls crawls, each its own source and scheduler running every 20 minutes
   as runs with a runId (about 100 pages in 14 minutes, ±10 % run to run), of which some have
   one degraded run (items down 60 %, failures 10 times usual, or 5 times too fast: run_degraded); and --feeds
   feeds, sources refreshing 500 symbols 20 a page (`entities`, a symbol now and then
   missing a refresh), of which some stop refreshing a tenth of them (stale_entities). The
   feeds' records of the evaluated span are stored as the evaluation reaches their time, since
   freshness is a state, not a series.
   Every page reports --fields fields: most noisy but healthy (each filled on 95-100 % of
   items, varying page to page, a few invalid now and then), one usually filled on ~60 %.
   Records are stored through the ingest storage path (store_metrics: the rows and their
   rollups, as a POST stores them), then the evaluator runs every --step seconds of simulated
   time over the evaluated span, exactly as it runs live but with `now` given. Prints recall,
   verdict accuracy, false alerts on healthy sources per 100 source-days, and detection
   latency (fault start → the firing transition, which is when the webhook is sent).
2. **Cost.** 1,000 sources reporting 20 fields over the last hour and 20 schedulers: the database time
   and wall time of steady-state cycles (each relearning its share of baselines), median and
   max over --cycles.
"""

import argparse
import bisect
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wealthmetrics.settings")


from bench.common import fresh_bench_database, machine  # noqa: E402

MINUTE_MS = 60_000
HEALTHY_ERRORS = (
    "net::ERR_TIMED_OUT",
    "HTTP 503 Service Unavailable",
    "Timeout 30000ms exceeded",
    "HTTP 429 Too Many Requests",
    "selector 'table.quotes' not found",
)
# fault kind → the verdict the evaluator should give
EXPECTED = {
    "site_down": "site_down",
    "ban_403": "blocked",
    "ban_small": "blocked",
    "extraction": "extraction_broken",
    "slow": "slow",
    "quiet": "no_data",
    "scheduler_stop": "scheduler_late",
    "scheduler_fail": "scheduler_failed",
    "incident": "incident",
    "field_empty": "field_broken",
    "field_invalid": "field_broken",
    "run_items": "run_degraded",
    "run_failures": "run_degraded",
    "run_fast": "run_degraded",
    "stale": "stale_entities",
}
# Each kind on this many sources; the incident takes 10 more, and the rest stay healthy.
PER_KIND = 4
FAULT_KINDS = (
    "site_down",
    "ban_403",
    "ban_small",
    "extraction",
    "slow",
    "quiet",
    "field_empty",
    "field_invalid",
)
RUN_FAULTS = ("run_items", "run_failures", "run_fast")
CRAWL_EVERY_MS = 20 * MINUTE_MS
CRAWL_MS = 14 * MINUTE_MS  # a run's usual length
CRAWL_PAGES = 100  # a run's usual pages
CRAWL_FAILURE = 0.02  # a page's usual chance to fail; 10 times it in a run_failures run
SYMBOLS = 500  # a feed's entities
PER_PAGE = 20  # entities a feed's page refreshes
STOPPED = 0.1  # the share of a stale feed's symbols that stop
# The HTTP status a navigation failing with each error answered (none: no answer came).
STATUSES = {"HTTP 503 Service Unavailable": 503, "HTTP 429 Too Many Requests": 429, "HTTP 403 Forbidden": 403}


@dataclass
class Source:
    name: str
    nav_ms: float
    scrape_ms: float
    items: int
    size: int
    failure: float
    fields: dict[str, float]  # field → its usual filled share


@dataclass
class Fault:
    kind: str
    names: list[str]  # sources (or a scheduler)
    start: int  # ms
    end: int
    field: str = ""  # a field break's field, and the share it falls to
    share: float = 0.0
    stopped: frozenset[str] = frozenset()  # a stale feed's symbols that stop
    due: int = 0  # when it can first be seen, when later than its start (a degraded run's end)


@dataclass
class Crawl:
    """A source crawled by its own scheduler, as runs with a runId."""

    source: Source
    scheduler: str
    offset: int  # ms: its runs start at offset + n * CRAWL_EVERY_MS


@dataclass
class Feed:
    """A source refreshing SYMBOLS symbols, PER_PAGE a page, round and round."""

    source: Source
    symbols: list[str]
    turn: int = 0

    def page(self, rng: random.Random, stopped: frozenset[str]) -> list[str]:
        """The next page's symbols, without the stopped ones; now and then one misses its turn."""
        taken: list[str] = []
        while len(taken) < PER_PAGE:
            symbol = self.symbols[self.turn % len(self.symbols)]
            self.turn += 1
            if symbol not in stopped and rng.random() > 0.01:
                taken.append(symbol)
        return taken


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", type=int, default=60)
    parser.add_argument("--fields", type=int, default=8, help="fields per page (the cost part has 20)")
    parser.add_argument("--history-days", type=int, default=3)
    parser.add_argument("--hours", type=float, default=12, help="the evaluated span, with the faults")
    parser.add_argument("--step", type=int, default=30, help="simulated seconds between evaluations")
    parser.add_argument("--per-minute", type=int, default=2, help="pages per source per minute")
    parser.add_argument("--crawls", type=int, default=16, help="sources crawled as runs by a scheduler")
    parser.add_argument("--feeds", type=int, default=8, help="sources refreshing 500 symbols")
    parser.add_argument("--cost-sources", type=int, default=1000)
    parser.add_argument("--cost-entities", type=int, default=SYMBOLS, help="entities per source (0: none)")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=("accuracy", "cost"), help="run one of the two parts")
    args = parser.parse_args()
    fresh_bench_database()
    from django.conf import settings

    print(f"machine: {machine()}")
    print(
        f"window {settings.METRICS_ALERT_WINDOW_S} s, no-data {settings.METRICS_ALERT_NO_DATA_S} s, "
        f"evaluated every {args.step} s of simulated time"
    )
    if args.only != "cost":
        accuracy(args)
    if args.only != "accuracy":
        cost(args)


# --- 1. accuracy -----------------------------------------------------------------------------------


def accuracy(args: argparse.Namespace) -> None:
    from metrics_app.alerts.evaluator import Evaluator
    from metrics_app.alerts.models import Alert
    from metrics_app.ingest.storage import store_metrics
    from metrics_app.records import validate_records

    rng = random.Random(args.seed)
    now_ms = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
    span_ms = int(args.hours * 3_600_000)
    start_ms = now_ms - span_ms
    history_ms = start_ms - args.history_days * 86_400_000
    sources = [new_source(rng, f"site{n:02d}", args.fields) for n in range(args.sources)]
    crawls = [
        Crawl(new_source(rng, f"crawl{n:02d}", args.fields, CRAWL_FAILURE), f"crawl{n:02d}-refresh",
              history_ms + rng.randrange(CRAWL_EVERY_MS // MINUTE_MS) * MINUTE_MS)
        for n in range(args.crawls)
    ]  # fmt: skip
    feeds = [
        Feed(new_source(rng, f"feed{n:02d}", args.fields), [f"T{n:02d}{k:03d}" for k in range(SYMBOLS)])
        for n in range(args.feeds)
    ]
    faults = plan_faults(rng, sources, start_ms, span_ms)
    faults += plan_run_faults(rng, crawls, feeds, start_ms, span_ms)
    began = time.perf_counter()
    stored, deferred = load(
        rng, sources, crawls, feeds, faults, history_ms, start_ms, now_ms, args.per_minute
    )
    print(
        f"stored {stored:,} records ({args.history_days} days of history + {args.hours:g} h evaluated; "
        f"{len(deferred):,} more of the feeds as the evaluation reaches them) "
        f"in {time.perf_counter() - began:.0f} s; {len(faults)} faults injected"
    )

    evaluator = Evaluator("bench")
    cycles, began = 0, time.perf_counter()
    firing_at: dict[int, int] = {}
    reached = 0
    for at in range(start_ms, now_ms + 1, args.step * 1000):
        until = bisect.bisect_left(deferred, at, key=lambda record: record["recordedAt"])
        for chunk in range(reached, until, 1000):
            store_metrics(validate_records(deferred[chunk : min(until, chunk + 1000)]))
        reached = until
        _, events = evaluator.run_once(datetime.fromtimestamp(at / 1000, UTC))
        for event in events:
            if event.status == "firing":
                firing_at[event.alert.pk] = at
        cycles += 1
    print(f"evaluated {cycles} cycles in {time.perf_counter() - began:.0f} s")
    alerts = list(Alert.objects.exclude(state="pending"))
    score(faults, alerts, firing_at, len(sources) + len(crawls) + len(feeds), span_ms)


def plan_faults(rng: random.Random, sources: list[Source], start: int, span: int) -> list[Fault]:
    """Faults at known times: each kind on several sources, an incident, two schedulers."""
    faults: list[Fault] = []
    names = [source.name for source in sources]
    rng.shuffle(names)
    incident = names[:10]
    faulty = names[10 : 10 + PER_KIND * len(FAULT_KINDS)]
    healthy = names[10 + PER_KIND * len(FAULT_KINDS) :]
    by_name = {source.name: source for source in sources}
    for n, name in enumerate(faulty):
        kind = FAULT_KINDS[n % len(FAULT_KINDS)]
        begin = start + int(rng.uniform(0.1, 0.7) * span)
        length = int(rng.uniform(20, 60) * MINUTE_MS) if kind != "quiet" else int(40 * MINUTE_MS)
        fault = Fault(kind, [name], begin, begin + length)
        if kind.startswith("field_"):  # a field that is usually well filled, not the half-empty one
            fault.field = rng.choice([f for f, share in by_name[name].fields.items() if share > 0.9])
            fault.share = rng.uniform(0.1, 0.5) if kind == "field_empty" else 0.5
        faults.append(fault)
    begin = start + int(0.8 * span)
    faults.append(Fault("incident", incident, begin, begin + 30 * MINUTE_MS))
    faults.append(Fault("scheduler_stop", ["hourly-report"], start + int(0.3 * span), start + span))
    begin = start + int(0.5 * span)
    faults.append(Fault("scheduler_fail", ["minutely-prices"], begin, begin + 15 * MINUTE_MS))
    print(f"{len(healthy)} sources stay healthy throughout")
    return faults


def plan_run_faults(
    rng: random.Random, crawls: list[Crawl], feeds: list[Feed], start: int, span: int
) -> list[Fault]:
    """A degraded run on PER_KIND crawls of each kind, and PER_KIND feeds whose tenth stops."""
    faults: list[Fault] = []
    for n, crawl in enumerate(crawls[: PER_KIND * len(RUN_FAULTS)]):
        begin = start + int(rng.uniform(0.1, 0.7) * span)
        run_start = begin + (crawl.offset - begin) % CRAWL_EVERY_MS  # the first run after it
        names = [crawl.scheduler, crawl.source.name]
        faults.append(Fault(RUN_FAULTS[n % len(RUN_FAULTS)], names, run_start, run_start + 2 * CRAWL_MS))
    for feed in feeds[:PER_KIND]:
        begin = start + int(rng.uniform(0.1, 0.6) * span)
        stopped = frozenset(rng.sample(feed.symbols, int(STOPPED * len(feed.symbols))))
        faults.append(Fault("stale", [feed.source.name], begin, begin + 90 * MINUTE_MS, stopped=stopped))
    return faults


def load(
    rng: random.Random,
    sources: list[Source],
    crawls: list[Crawl],
    feeds: list[Feed],
    faults: list[Fault],
    start: int,
    evaluated: int,
    end: int,
    per_minute: int,
) -> tuple[int, list[dict[str, Any]]]:
    """Store the records from `start` to `end`; returns how many, and the feeds' records from
    `evaluated` on, held back (oldest first) for the evaluation to store as it reaches them."""
    from metrics_app.ingest.storage import store_metrics
    from metrics_app.records import validate_records

    def fault_of(name: str, at: int) -> Fault | None:
        return next((f for f in faults if name in f.names and f.start <= at < f.end), None)

    feeding = {feed.source.name: feed for feed in feeds}
    stored, batch, deferred = 0, [], []
    for minute in range(start, end, MINUTE_MS):
        for source in [*sources, *(feed.source for feed in feeds)]:
            for _ in range(per_minute):
                at = minute + rng.randrange(MINUTE_MS)
                found = fault_of(source.name, at)
                records = visit(rng, source, at, found)
                if (feed := feeding.get(source.name)) is not None:
                    stopped = found.stopped if found else frozenset()
                    for record in records[1:]:  # its scrape
                        record["entities"] = feed.page(rng, stopped)
                    if minute >= evaluated:
                        deferred += records
                        continue
                batch += records
        for crawl in crawls:
            if (minute - crawl.offset) % CRAWL_EVERY_MS == 0:
                batch += crawl_run(rng, crawl, minute, end, fault_of(crawl.scheduler, minute))
        for name, period in (("minutely-prices", 1), ("hourly-report", 60), ("nightly-ish", 180)):
            if (minute // MINUTE_MS) % period == 0:
                found = fault_of(name, minute)
                kind = found.kind if found else None
                if kind == "scheduler_stop":
                    continue
                ok = kind != "scheduler_fail"  # a failed run is a fault (scheduler_failed), not noise
                batch.append(
                    {
                        "type": "scheduler_run",
                        "schedulerName": name,
                        "recordedAt": minute + 5000,
                        "executionDurationMs": int(rng.lognormvariate(math.log(4000 * period**0.5), 0.2)),
                        "itemsProcessed": rng.randint(100, 200) if ok else 0,
                        "success": ok,
                        "error": None if ok else "upstream answered HTTP 500",
                    }
                )
        if len(batch) >= 1000 or minute + MINUTE_MS >= end:
            batch.sort(key=lambda record: record["recordedAt"])
            for chunk in range(0, len(batch), 1000):
                store_metrics(validate_records(batch[chunk : chunk + 1000]))
            stored += len(batch)
            batch = []
    deferred.sort(key=lambda record: record["recordedAt"])
    return stored, deferred


def crawl_run(
    rng: random.Random, crawl: Crawl, begin: int, end: int, fault: Fault | None
) -> list[dict[str, Any]]:
    """One run of a crawl starting at `begin`: its pages with its runId, then its scheduler
    run; ±10 % from run to run, or degraded by `fault`. A run still going at `end` has only
    its pages until then."""
    kind = fault.kind if fault is not None and fault.start == begin else None
    pages = round(CRAWL_PAGES * rng.uniform(0.9, 1.1))
    took = int(CRAWL_MS * rng.uniform(0.9, 1.1))
    if kind == "run_items":  # a crawl that found 60 % fewer pages, and so items
        pages, took = round(pages * 0.4), int(took * 0.4)
    elif kind == "run_fast":  # the same pages, in a fifth of the time
        took //= 5
    if fault is not None and kind is not None:
        fault.due = begin + took
    source = crawl.source if kind != "run_failures" else replace(crawl.source, failure=10 * CRAWL_FAILURE)
    run_id = f"{crawl.scheduler}-{begin // MINUTE_MS}"
    at = [begin + page * took // pages for page in range(pages)]
    records = [record for page in at if page < end for record in visit(rng, source, page, None)]
    items = 0
    for record in records:
        record["runId"] = run_id
        items += record.get("itemsExtracted", 0)
    if begin + took >= end:
        return records
    records.append({"type": "scheduler_run", "schedulerName": crawl.scheduler, "runId": run_id,
                    "scraperSource": crawl.source.name, "recordedAt": begin + took,
                    "executionDurationMs": took, "itemsProcessed": items})  # fmt: skip
    return records


def new_source(rng: random.Random, name: str, fields: int, failure: float | None = None) -> Source:
    """A source with its own timings, items, page sizes, failure rate and fields."""
    return Source(
        name,
        rng.uniform(250, 1500),
        rng.uniform(40, 400),
        rng.randint(8, 60),
        rng.randint(20_000, 120_000),
        rng.uniform(0.02, 0.05) if failure is None else failure,
        field_shares(rng, fields),
    )


def field_shares(rng: random.Random, n: int) -> dict[str, float]:
    """A source's fields and their usual filled shares: noisy but healthy, and one (the last)
    that items legitimately lack on ~40 % of them."""
    shares = {f"field{k:02d}": rng.uniform(0.95, 1.0) for k in range(n - 1)}
    return {**shares, f"field{n - 1:02d}": rng.uniform(0.55, 0.65)} if n else {}


def field_counts(
    rng: random.Random, source: Source, items: int, fault: Fault | None
) -> dict[str, dict[str, int]]:
    """A page's field counts: each field filled on its usual share of the items, varying from
    page to page; a broken field on the fault's share (filled), or valid on it (invalid)."""
    counts = {}
    for name, usual in source.fields.items():
        broken = fault if fault is not None and fault.field == name else None
        share = broken.share if broken and broken.kind == "field_empty" else usual
        share = min(1.0, max(0.0, rng.gauss(share, 0.03)))
        spread = math.sqrt(items * share * (1 - share))  # binomial: each item has it or not
        filled = min(items, max(0, round(items * share + rng.gauss(0, spread))))
        if broken and broken.kind == "field_invalid":
            invalid = min(filled, max(0, round(rng.gauss(filled * (1 - broken.share), 1))))
        else:
            invalid = min(filled, 1 if rng.random() < 0.05 else 0)  # a stray bad value now and then
        counts[name] = {"filled": filled, "invalid": invalid}
    return counts


def visit(rng: random.Random, source: Source, at: int, found: Fault | None) -> list[dict[str, Any]]:
    fault = "site_down" if found is not None and found.kind == "incident" else found.kind if found else None
    if fault == "quiet":
        return []
    slow = 6.0 if fault == "slow" else 1.0
    down = fault in ("site_down", "ban_403")
    ok = (rng.random() > 0.97) if down else (rng.random() > source.failure)
    if down:
        error = (
            rng.choice(("net::ERR_CONNECTION_REFUSED", "connect ETIMEDOUT"))
            if fault == "site_down"
            else rng.choice(("HTTP 403 Forbidden", "captcha challenge"))
        )
    else:
        error = rng.choice(HEALTHY_ERRORS)
    url = f"https://{source.name}.example.com/q/{rng.randrange(100)}"
    records = [
        {
            "type": "page_navigation",
            "scraperSource": source.name,
            "url": url,
            "recordedAt": at,
            "navigationDurationMs": int(rng.lognormvariate(math.log(source.nav_ms * slow), 0.6)),
            "retryCount": 0 if ok else 2,
            "success": ok,
            "error": None if ok else error,
            "httpStatus": 200 if ok else STATUSES.get(error),
        }
    ]
    if ok:
        items = 0 if fault == "extraction" else max(0, round(rng.gauss(source.items, source.items / 5)))
        size = (
            rng.randint(600, 1500) if fault == "ban_small" else int(rng.gauss(source.size, source.size / 10))
        )
        records.append(
            {
                "type": "page_scrape",
                "scraperSource": source.name,
                "url": url,
                "recordedAt": at + 200,
                "scrapeDurationMs": int(rng.lognormvariate(math.log(source.scrape_ms * slow), 0.5)),
                "itemsExtracted": items,
                "dataSize": max(0, size),
                "success": True,
                "error": None,
                **({"fields": field_counts(rng, source, items, found)} if source.fields else {}),
            }
        )
    return records


def score(
    faults: list[Fault], alerts: list[Any], firing_at: dict[int, int], sources: int, span_ms: int
) -> None:
    from django.conf import settings

    window_ms = settings.METRICS_ALERT_WINDOW_S * 1000
    matched: set[int] = set()
    detected = right = 0
    latencies: list[float] = []
    by_kind: dict[str, list[float]] = {}
    for fault in faults:
        candidates = [
            alert
            for alert in alerts
            if fault.start - window_ms <= firing_at.get(alert.pk, 0) <= fault.end + 2 * window_ms
            and (set(fault.names) & ({alert.scraper_source, alert.scheduler_name} | set(alert.sources or [])))
        ]
        if not candidates:
            print(f"  MISSED {fault.kind} on {', '.join(fault.names[:3])}")
            continue
        detected += 1
        first = min(candidates, key=lambda alert: firing_at[alert.pk])
        matched.update(alert.pk for alert in candidates)
        # a degraded run is seen when it ends: its latency is from then
        latencies.append((firing_at[first.pk] - max(fault.start, fault.due)) / 1000)
        by_kind.setdefault(fault.kind, []).append(latencies[-1])
        if first.verdict == EXPECTED[fault.kind]:
            right += 1
        else:
            print(f"  {fault.kind} on {fault.names[0]} named {first.verdict}: {first.summary[:140]}")
    false_alerts = [alert for alert in alerts if alert.pk not in matched]
    for alert in false_alerts[:10]:
        who = alert.scraper_source or alert.scheduler_name
        print(f"  false alert: {alert.verdict} {who}: {alert.summary[:140]}")
    source_days = sources * span_ms / 86_400_000
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan")
    share = 100 * detected / len(faults)
    print(f"recall: {detected}/{len(faults)} faults alerted ({share:.0f} %; target 100 %)")
    named = 100 * right / max(1, detected)
    print(f"verdict accuracy: {right}/{detected} named right ({named:.0f} %; target ≥ 90 %)")
    print(
        f"false alerts: {len(false_alerts)} over {source_days:.1f} source-days = "
        f"{100 * len(false_alerts) / source_days:.2f} per 100 source-days (target ≤ 1)"
    )
    median = statistics.median(latencies)
    print(
        f"detection latency, fault start → firing (webhook sent): median {median:.0f} s, p95 {p95:.0f} s, "
        f"max {latencies[-1]:.0f} s (target p95 ≤ window + 60 s = {window_ms / 1000 + 60:.0f} s)"
    )
    kinds = ", ".join(f"{kind} {statistics.median(found):.0f} s" for kind, found in sorted(by_kind.items()))
    print(f"  median latency per fault: {kinds}")
    # A silence and a stopped scheduler cannot be seen before their own spans have passed
    # (METRICS_ALERT_NO_DATA_S, the scheduler's period plus grace): the window target is for
    # the faults that show in the records.
    # Stale entities cannot be seen before the stopped symbols are 3 usual intervals old, nor a
    # degraded run before it ends (its latency is from its end): each has its own target.
    own = ("quiet", "scheduler_stop", "stale", *RUN_FAULTS)
    shown = sorted(t for kind, found in by_kind.items() if kind not in own for t in found)
    if shown:
        p95_shown = shown[min(len(shown) - 1, int(0.95 * len(shown)))]
        print(f"  faults that show in records ({len(shown)}): p95 {p95_shown:.0f} s, max {shown[-1]:.0f} s")
    ran = sorted(t for kind in RUN_FAULTS for t in by_kind.get(kind, []))
    if ran:
        print(f"  degraded runs ({len(ran)}), from the run's end: max {ran[-1]:.0f} s")
    if stale := by_kind.get("stale"):
        usual_s = SYMBOLS / PER_PAGE * 60 / (2 * 0.965)  # a symbol's turn comes round at 2 pages a minute
        target = 3 * usual_s + window_ms / 1000
        print(
            f"  stale_entities ({len(stale)}): max {max(stale):.0f} s "
            f"(target ≤ 3 times the usual interval of ~{usual_s / 60:.0f} min + a window = {target:.0f} s)"
        )


# --- 2. cost -----------------------------------------------------------------------------------------


def cost(args: argparse.Namespace) -> None:
    from metrics_app.alerts.evaluator import Evaluator
    from metrics_app.history.entities import USUAL_KEPT_MS
    from metrics_app.ingest.storage import store_metrics
    from metrics_app.records import validate_records

    rng = random.Random(args.seed)
    now_ms = int(time.time() * 1000)
    batch: list[dict[str, Any]] = []
    began = time.perf_counter()
    stored = 0
    fields = {f"field{k:02d}": 0.97 for k in range(20)}
    sources = [Source(f"fleet{n:04d}", 500, 100, 20, 50_000, 0.03, fields) for n in range(args.cost_sources)]
    # Each source refreshes its SYMBOLS symbols, half of them 100 a page (every 5 minutes, so
    # none is older than METRICS_ENTITY_STALE_S), half 20 a page (every 25 minutes: the shape
    # where every source has entities older than that floor); on 2 % of the sources (of those
    # refreshing every 5 minutes) a tenth of the symbols stop refreshing 40 minutes before the end.
    feeds = [Feed(source, [f"T{k:03d}" for k in range(args.cost_entities)]) for source in sources]
    stopping = {source.name for source in sources[1::50]}
    for minute in range(now_ms - 3_600_000, now_ms, MINUTE_MS):
        for n, feed in enumerate(feeds):
            records = visit(rng, feed.source, minute + rng.randrange(MINUTE_MS), None)
            stopped = (
                frozenset(feed.symbols[::10])
                if feed.source.name in stopping and minute > now_ms - 2_400_000
                else frozenset()
            )
            for record in records[1:] if args.cost_entities else []:
                record["entities"] = [
                    entity for _ in range(5 if n % 2 else 1) for entity in feed.page(rng, stopped)
                ]
            batch += records
        for n in range(20):
            batch.append(
                {
                    "type": "scheduler_run",
                    "schedulerName": f"job{n:02d}",
                    "recordedAt": minute + n * 1000,
                    "executionDurationMs": 3000,
                    "itemsProcessed": 100,
                }
            )
        for chunk in range(0, len(batch), 1000):
            store_metrics(validate_records(batch[chunk : chunk + 1000]))
        stored += len(batch)
        batch = []
    from metrics_app.data_models import EntitySeen

    print(
        f"cost: {args.cost_sources} sources of 20 fields and {args.cost_entities} entities "
        f"({EntitySeen.objects.count():,} pairs), and 20 schedulers, {stored:,} records over the last hour "
        f"(stored in {time.perf_counter() - began:.0f} s)"
    )
    evaluator = Evaluator("bench-cost")
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    warm = 1
    while evaluator.run_once(now + timedelta(seconds=warm))[0].learned:  # learn every baseline first
        warm += 1
    while len(evaluator.stale_entities._usuals._known) < (
        args.cost_entities and args.cost_sources
    ):  # and usuals
        warm += 1
        evaluator.run_once(now + timedelta(seconds=warm))
    print(f"  {warm} cycles to learn every baseline and usual interval the first time")
    # Steady state: every baseline due, so each cycle relearns its share of them, as live;
    # the sources' usual refresh intervals read at times spread over the time they are kept,
    # so each cycle reads again those that come due, as live.
    for known in evaluator.baselines.known.values():
        known.learned_at = now - timedelta(hours=2)
    usuals = evaluator.stale_entities._usuals._known
    for n, (source, usual) in enumerate(sorted(usuals.items())):
        usuals[source] = replace(usual, read_at=now_ms - n * USUAL_KEPT_MS // max(1, len(usuals)))
    cycles = [evaluator.run_once(now + timedelta(seconds=15 * (n + 1)))[0] for n in range(args.cycles)]
    from metrics_app.alerts.models import Alert

    stale = Alert.objects.filter(verdict="stale_entities").exclude(state="resolved").count()
    db = [cycle.db_ms for cycle in cycles]
    wall = [cycle.wall_ms for cycle in cycles]
    print(
        f"  steady cycles ({cycles[0].learned} baselines relearned each, {cycles[0].queries} queries; "
        f"stale_entities pending or firing on {stale} of the {len(stopping)} sources whose symbols stopped): "
        f"database {statistics.median(db):.0f} ms median (max {max(db):.0f}; target ≤ 100), "
        f"wall {statistics.median(wall):.0f} ms median (max {max(wall):.0f}; target ≤ 200)"
    )
    if args.cost_entities:
        entities_api(args, sources[1].name, sources[2].name)


def entities_api(args: argparse.Namespace, stale_source: str, fresh_source: str) -> None:
    """GET /api/entities/?stale=1 on one daphne, beside GET /api/health/websocket (the floor)."""
    import httpx

    from bench.common import prepare
    from tests.support.servers import DaphneServer

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wealthmetrics.settings", "PYTHONUNBUFFERED": "1",
           "METRICS_ALERT_EVALUATOR": "0"}  # fmt: skip
    key = prepare(env, "bench-alerts")
    server = DaphneServer(env)
    server.start()
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client:
            for label, path in (
                ("GET /api/health/websocket (the floor)", "/api/health/websocket"),
                (
                    f"GET /api/entities/?source={stale_source}&stale=1",
                    f"/api/entities/?source={stale_source}&stale=1",
                ),
                (
                    f"GET /api/entities/?source={fresh_source}&stale=1",
                    f"/api/entities/?source={fresh_source}&stale=1",
                ),
                (
                    f"GET /api/entities/?source={fresh_source} (all {SYMBOLS})",
                    f"/api/entities/?source={fresh_source}",
                ),
            ):
                times = []
                for _ in range(args.cycles):
                    started = time.perf_counter()
                    answer = client.get(path)
                    times.append(1000 * (time.perf_counter() - started))
                    answer.raise_for_status()
                said = answer.json()
                extra = f": {said['stale']} of {said['total']} stale" if "stale" in said else ""
                print(f"  {label}: {statistics.median(times):.1f} ms median (target ≤ 100){extra}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()

"""From what the window shows and what is usual to a verdict that says why, with its numbers.

Every rule is written here once. For a scraper (a channel with pages), in this order, the
first that holds is its finding (an outage also makes pages slow and items vanish, and the
clearest cause is the one to name):

- `site_down`: navigations fail above their usual rate, and the errors are outages
  (connection refused, timeouts, DNS, 5xx), or nearly all fail;
- `blocked`: navigations fail above their usual rate with refusals (403, 429, captcha…), or
  pages load but are far smaller than usual (a ban page answered with 200);
- `extraction_broken`: pages load, but successful scrapes extract far fewer items than usual
  (or scrapes fail with selector/parse errors);
- `slow`: the window's median duration is far above the usual;
- `error_rate`: failures above the usual rate without a clearer cause.

"Far" is a learned threshold (metrics_app.alerts.usual) with a floor, and a fixed threshold in
the admin (Threshold) may fire as well. A channel without enough history is held to the
floors only. `no_data`, the schedulers' verdicts and `incident` follow their own rules below.
"""

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from metrics_app import histogram
from metrics_app.alerts.models import Threshold, Verdict
from metrics_app.alerts.signals import Run, Window
from metrics_app.alerts.usual import Spread, Usual
from metrics_app.history.periods import usual_period
from metrics_app.tally import Tally

# Words of an error message that say what kind of failure it is (lower case).
REFUSAL_WORDS: Final = ("403", "429", "captcha", "forbidden", "denied", "too many requests", "blocked",
                        "rate limit", "robot", "unusual traffic")  # fmt: skip
OUTAGE_WORDS: Final = ("timeout", "timed out", "etimedout", "econn", "enotfound", "connect", "refused",
                       "reset", "unreachable", "dns", "resolve",
                       "getaddrinfo", "no route", "500", "502", "503", "504", "connection", "net::err",
                       "ssl", "eof")  # fmt: skip
EXTRACTION_WORDS: Final = ("selector", "not found", "parse", "xpath", "no items", "missing", "extract")

MIN_RECORDS: Final = 5  # a window with fewer records of a type is not judged on rates
# Failures are "far above usual" when both hold: the rate is FAILURE_MARGIN above the usual high,
# and so many failures among the window's records would happen by chance at the usual rate
# with probability below FAILURE_CHANCE (Chernoff's bound on the binomial tail: a healthy
# source with 5 % failures and 12 records a window must not fire on 4 of them).
FAILURE_MARGIN: Final = 0.15
FAILURE_CHANCE: Final = 1e-5
MIN_USUAL_FAILURE_RATE: Final = 0.01  # a source that never fails may still fail now and then
DOWN_FAILURE_RATE: Final = 0.9  # nearly every navigation failing is an outage whatever the words
SMALL_PAGE_FACTOR: Final = 0.3  # pages below this part of the usual low are ban pages
FEW_ITEMS_FACTOR: Final = 0.3  # items below this part of the usual low
SLOW_FACTOR: Final = 3.0  # median above this many usual medians (and above the usual p90)
MIN_SLOW_MS: Final = 100.0  # never slow below this
INCIDENT_MIN_SOURCES: Final = 5
INCIDENT_SHARE: Final = 0.15  # …and at least this share of the sources being watched
CRITICAL: Final = {Verdict.SITE_DOWN, Verdict.BLOCKED, Verdict.EXTRACTION_BROKEN, Verdict.NO_DATA,
                   Verdict.SCHEDULER_LATE, Verdict.SCHEDULER_FAILED, Verdict.INCIDENT}  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """A condition found in one evaluation: what broke, for whom, and why."""

    verdict: str
    source: str | None
    scheduler: str | None
    summary: str
    value: float | None
    threshold: float | None
    threshold_source: str
    sources: tuple[str, ...] = ()  # an incident's

    @property
    def fingerprint(self) -> str:
        return f"{self.verdict}:{self.source or ''}:{self.scheduler or ''}"

    @property
    def severity(self) -> str:
        return "critical" if self.verdict in CRITICAL else "warning"


def kind_of(error: str) -> str:
    """'refusal', 'outage', 'extraction' or 'other': what an error message says happened."""
    text = error.lower()
    for kind, words in (
        ("refusal", REFUSAL_WORDS),
        ("outage", OUTAGE_WORDS),
        ("extraction", EXTRACTION_WORDS),
    ):
        if any(word in text for word in words):
            return kind
    return "other"


# --- scrapers ----------------------------------------------------------------------------------


def judge_source(
    name: str, window: Window, usual: Usual, fixed: Sequence[Threshold], span: str
) -> Finding | None:
    """The first verdict that holds for a scraper over the window (`span`: "the last 5 min")."""
    nav, scrape = window.of("page_navigation"), window.of("page_scrape")
    nav_errors = window.errors.get("page_navigation", Counter())
    scrape_errors = window.errors.get("page_scrape", Counter())
    nav_failing = _failing(nav, usual.failure_rate.get("page_navigation"))
    if nav_failing:
        kinds = _kinds(nav_errors)
        rate, threshold, basis = nav_failing
        said = f"{_pct(rate)} of page loads failed {span} ({nav.count - nav.ok} of {nav.count}), {basis}"
        said += _top_errors(nav_errors)
        # The summary says what was seen; the verdict is said beside it, once (the page, headlines).
        if kinds["refusal"] * 2 >= sum(kinds.values()) > 0:
            return Finding(Verdict.BLOCKED, name, None, f"{name}: {said}", rate, threshold, basis)
        if rate >= DOWN_FAILURE_RATE or kinds["outage"] * 2 >= sum(kinds.values()) > 0:
            return Finding(Verdict.SITE_DOWN, name, None, f"{name}: {said}", rate, threshold, basis)
    healthy_loads = _loads(nav)
    if small := _small_pages(scrape, usual.bytes_per_page):
        size, threshold, basis = small
        return Finding(
            Verdict.BLOCKED, name, None,
            f"{name}: pages are {_bytes(size)} {span}, usual {_range(usual.bytes_per_page, _bytes)} ({basis})"
            f"{healthy_loads}: likely a ban or error page",
            size, threshold, f"learned: {SMALL_PAGE_FACTOR:g} x the usual low ({basis})",
        )  # fmt: skip
    if few := _few_items(scrape, usual.items_per_page, fixed):
        items, threshold, basis = few
        usual_text = (
            f"usual {_range(usual.items_per_page, _count)} ({basis})" if usual.items_per_page else basis
        )
        return Finding(
            Verdict.EXTRACTION_BROKEN, name, None,
            f"{name}: {_count(items)} items per page {span}, {usual_text}{healthy_loads}",
            items, threshold, basis,
        )  # fmt: skip
    scrape_failing = _failing(scrape, usual.failure_rate.get("page_scrape"))
    if scrape_failing and _kinds(scrape_errors)["extraction"] * 2 >= sum(scrape_errors.values()) > 0:
        rate, threshold, basis = scrape_failing
        return Finding(
            Verdict.EXTRACTION_BROKEN, name, None,
            f"{name}: {_pct(rate)} of scrapes failed {span} ({scrape.count - scrape.ok} of {scrape.count}), "
            f"{basis}{_top_errors(scrape_errors)}{healthy_loads}",
            rate, threshold, basis,
        )  # fmt: skip
    for metric_type, slot in (("page_navigation", nav), ("page_scrape", scrape)):
        if slow := _slow(slot, usual, metric_type, fixed):
            p50, threshold, basis = slow
            what = "page load" if metric_type == "page_navigation" else "scrape"
            return Finding(
                Verdict.SLOW, name, None,
                f"{name}: median {what} {_ms(p50)} {span}, {basis}", p50, threshold, basis,
            )  # fmt: skip
    failing = nav_failing or scrape_failing or _below_fixed_success(nav, scrape, fixed)
    if failing:
        rate, threshold, basis = failing
        total = nav.count + scrape.count
        failed = total - nav.ok - scrape.ok
        return Finding(
            Verdict.ERROR_RATE, name, None,
            f"{name}: {_pct(failed / total)} of records failed {span} ({failed} of {total}), {basis}"
            f"{_top_errors(nav_errors + scrape_errors)}",
            rate, threshold, basis,
        )  # fmt: skip
    return None


def _failing(slot: Tally, usual: Spread | None) -> tuple[float, float, str] | None:
    """(failure rate, threshold, where the threshold came from) when failures are far above usual."""
    if slot.count < MIN_RECORDS:
        return None
    rate = 1 - slot.ok / slot.count
    base = min(max(usual.high if usual else 0.0, MIN_USUAL_FAILURE_RATE), 0.9)
    threshold = max(base + FAILURE_MARGIN, unlikely_rate(base, slot.count))
    if rate < threshold:
        return None
    basis = f"usual {_range(usual, _pct)} ({usual.basis})" if usual else "no usual learned yet"
    return rate, threshold, basis


def unlikely_rate(usual: float, n: int) -> float:
    """The lowest failure rate among n records whose chance at the usual rate is below
    FAILURE_CHANCE, by Chernoff's bound P(rate ≥ q) ≤ exp(-n · KL(q ‖ usual)); 1.0 (every
    record failing) when even that is not unlikely enough."""
    needed = math.log(1 / FAILURE_CHANCE) / n
    if _kl(1.0, usual) < needed:
        return 1.0
    low, high = usual, 1.0
    for _ in range(40):  # bisection: KL(q ‖ usual) grows with q above usual
        middle = (low + high) / 2
        low, high = (middle, high) if _kl(middle, usual) < needed else (low, middle)
    return high


def _kl(q: float, p: float) -> float:
    """Kullback-Leibler divergence of Bernoulli(q) from Bernoulli(p)."""
    total = q * math.log(q / p) if q > 0 else 0.0
    return total + ((1 - q) * math.log((1 - q) / (1 - p)) if q < 1 else 0.0)


def _kinds(errors: Counter[str]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for message, n in errors.items():
        kinds[kind_of(message)] += n
    return kinds


def _small_pages(scrape: Tally, usual: Spread | None) -> tuple[float, float, str] | None:
    if usual is None or scrape.count < MIN_RECORDS or usual.low < 1024:
        return None
    size = scrape.size / scrape.count
    threshold = SMALL_PAGE_FACTOR * usual.low
    return (size, threshold, usual.basis) if size < threshold else None


def _few_items(
    scrape: Tally, usual: Spread | None, fixed: Sequence[Threshold]
) -> tuple[float, float, str] | None:
    if scrape.ok < MIN_RECORDS:
        return None
    items = scrape.items / scrape.ok
    for rule in fixed:
        if rule.signal == Threshold.Signal.MIN_ITEMS_PER_SCRAPE and items < rule.value:
            return items, rule.value, f"fixed threshold {rule.value:g} (admin)"
    if usual is None or usual.low < 1:
        return None
    threshold = FEW_ITEMS_FACTOR * usual.low
    return (items, threshold, usual.basis) if items < threshold else None


def _slow(
    slot: Tally, usual: Usual, metric_type: str, fixed: Sequence[Threshold]
) -> tuple[float, float, str] | None:
    if slot.count < MIN_RECORDS:
        return None
    p50 = histogram.percentile(slot.histogram, 0.5) or 0.0
    for rule in fixed:
        if rule.signal == Threshold.Signal.MAX_P50_MS and p50 > rule.value:
            return p50, rule.value, f"above the fixed {_ms(rule.value)} (admin)"
    usual_p50, usual_p90 = usual.duration_p50.get(metric_type), usual.duration_p90.get(metric_type)
    if usual_p50 is None or usual_p90 is None:
        return None
    threshold = max(SLOW_FACTOR * usual_p50, usual_p90, MIN_SLOW_MS)
    if p50 <= threshold:
        return None
    return p50, threshold, f"usual {_ms(usual_p50)} (p50; p90 {_ms(usual_p90)}, last 7 days)"


def _below_fixed_success(
    nav: Tally, scrape: Tally, fixed: Sequence[Threshold]
) -> tuple[float, float, str] | None:
    total, ok = nav.count + scrape.count, nav.ok + scrape.ok
    for rule in fixed:
        below = total >= MIN_RECORDS and 100 * ok / total < rule.value
        if rule.signal == Threshold.Signal.MIN_SUCCESS_PERCENT and below:
            return 1 - ok / total, 1 - rule.value / 100, f"fixed threshold {rule.value:g} % ok (admin)"
    return None


def _loads(nav: Tally) -> str:
    if nav.count < MIN_RECORDS:
        return ""
    p50 = histogram.percentile(nav.histogram, 0.5)
    return f"; pages load normally ({_ms(p50 or 0)}, {_pct(nav.ok / nav.count)} ok)"


# --- silence -----------------------------------------------------------------------------------


def judge_silence(name: str, last_ms: int, now_ms: int, no_data_ms: int, reporting: bool) -> Finding | None:
    """`no_data`: a channel that was reporting (`reporting`) has sent nothing for no_data_ms."""
    quiet = now_ms - last_ms
    if not reporting or quiet < no_data_ms:
        return None
    last = datetime.fromtimestamp(last_ms / 1000, UTC)
    return Finding(
        Verdict.NO_DATA, name, None,
        f"{name}: no records for {duration_text(quiet)} (the last at {last:%Y-%m-%d %H:%M:%S} UTC)",
        quiet / 1000, no_data_ms / 1000, "METRICS_ALERT_NO_DATA_S",
    )  # fmt: skip


# --- schedulers --------------------------------------------------------------------------------

MIN_RUNS: Final = 3  # runs before a run's duration and items are judged against the others
FAST_FACTOR: Final = 0.2  # a run shorter than this part of the usual, with 0 items, did nothing
LONG_FACTOR: Final = 3.0


def judge_scheduler(name: str, runs: Sequence[Run], now_ms: int, window_ms: int) -> Finding | None:
    """A scheduler's verdict from its last runs (newest first): late (on the period its card
    shows, metrics_app.history.periods), failed, or a run that was far too long, or
    suspiciously fast with nothing done."""
    if not runs:
        return None
    last, source = runs[0], runs[0].source
    period = usual_period(run.at / 1000 for run in runs)
    late_after = period.late_after(window_ms / 1000)
    if period.seconds is not None and late_after is not None:
        late = now_ms - last.at
        if late > late_after * 1000:
            every, spread = period.seconds * 1000, period.spread_seconds * 1000
            grace = late_after * 1000 - every
            return Finding(
                Verdict.SCHEDULER_LATE, source, name,
                f"{name}: no run for {duration_text(late)}; it runs every {duration_text(every)} "
                f"(±{duration_text(spread)}, {period.agreeing} of its last {period.runs} runs), "
                f"grace {duration_text(grace)}",
                late / 1000, late_after, f"learned from the last {period.runs} runs",
            )  # fmt: skip
    if not last.success:
        failed = sum(1 for run in runs if not run.success)
        return Finding(
            Verdict.SCHEDULER_FAILED, source, name,
            f"{name}: the last run failed ({(last.error or 'no error message')[:200]}); "
            f"{failed} of the last {len(runs)} runs failed",
            float(failed), 0.0, "any failed run",
        )  # fmt: skip
    earlier = [run for run in runs[1:] if run.success]
    if len(earlier) >= MIN_RUNS - 1:
        usual_ms = _median([run.duration_ms for run in earlier])
        usual_items = _median([run.items for run in earlier])
        if last.items == 0 and usual_items > 0 and last.duration_ms < FAST_FACTOR * usual_ms:
            return Finding(
                Verdict.SCHEDULER_FAILED, source, name,
                f"{name}: the last run finished in {_ms(last.duration_ms)} with 0 items; "
                f"usual {_ms(usual_ms)} and {_count(usual_items)} items (last {len(earlier)} runs)",
                float(last.duration_ms), FAST_FACTOR * usual_ms, f"learned from the last {len(earlier)} runs",
            )  # fmt: skip
        if last.duration_ms > max(LONG_FACTOR * usual_ms, MIN_SLOW_MS):
            return Finding(
                Verdict.SLOW, source, name,
                f"{name}: the last run took {_ms(last.duration_ms)}, usual {_ms(usual_ms)} "
                f"(last {len(earlier)} runs)",
                float(last.duration_ms), LONG_FACTOR * usual_ms, f"learned from the last {len(earlier)} runs",
            )  # fmt: skip
    return None


# --- incidents ---------------------------------------------------------------------------------


def incidents(findings: Iterable[Finding], watched: int) -> list[Finding]:
    """Many sources with the same verdict at once become one `incident` in their place."""
    found = list(findings)
    by_verdict: dict[str, list[Finding]] = {}
    for finding in found:
        if finding.scheduler is None and finding.source is not None:
            by_verdict.setdefault(finding.verdict, []).append(finding)
    merged: set[str] = set()
    result: list[Finding] = []
    for verdict, group in sorted(by_verdict.items()):
        if len(group) >= INCIDENT_MIN_SOURCES and len(group) >= INCIDENT_SHARE * watched:
            names = sorted(finding.source or "" for finding in group)
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            result.append(
                Finding(
                    Verdict.INCIDENT,
                    None,
                    None,
                    f"{len(names)} of {watched} sources {verdict.replace('_', ' ')} at once ({shown}): "
                    "likely a cause they share (the scrapers' own network, a proxy, a common site)",
                    float(len(names)),
                    INCIDENT_SHARE * watched,
                    f"{INCIDENT_MIN_SOURCES}+ sources and {_pct(INCIDENT_SHARE)} of those watched",
                    tuple(names),
                )
            )
            merged.update(finding.fingerprint for finding in group)
    return result + [finding for finding in found if finding.fingerprint not in merged]


# --- words and numbers -------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _top_errors(errors: Counter[str]) -> str:
    if not errors:
        return ""
    top = ", ".join(f"{(message or 'no message')[:80]} x{n}" for message, n in errors.most_common(2))
    return f"; errors: {top}"


def _range(spread: Spread | None, form: Callable[[float], str]) -> str:
    if spread is None:
        return "unknown"
    low, high = form(spread.low), form(spread.high)
    return low if low == high else f"{low}–{high}"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.0f} %"


def _ms(value: float) -> str:
    return (
        f"{value:.0f} ms"
        if value < 1000
        else f"{value / 1000:.2g} s"
        if value < 10_000
        else f"{value / 1000:.0f} s"
    )


def _count(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _bytes(value: float) -> str:
    return (
        f"{value:.0f} B"
        if value < 1024
        else f"{value / 1024:.1f} KB"
        if value < 1024**2
        else f"{value / 1024**2:.1f} MB"
    )


def duration_text(ms: float) -> str:
    seconds = int(ms / 1000)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"

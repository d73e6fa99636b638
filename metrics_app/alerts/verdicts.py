"""From what the window shows and what is usual to a verdict that says why, with its numbers.

Every rule is written once, here or in metrics_app.alerts.field_rules. For a scraper (a
channel with pages), in this order, the first that holds is its finding (an outage also makes
pages slow and items vanish, and the clearest cause is the one to name):

- `site_down`: navigations fail above their usual rate, and the errors are outages
  (connection refused, timeouts, DNS, 5xx), or nearly all fail;
- `blocked`: navigations fail above their usual rate with refusals (403, 429, captcha…), or
  pages load but are far smaller than usual (a ban page answered with 200);
- `extraction_broken`: pages load, but successful scrapes extract far fewer items than usual
  (or scrapes fail with selector/parse errors);
- `field_broken`: items come out, but a field of them is empty or invalid on far more items
  than usual (metrics_app.alerts.field_rules);
- `slow`: the window's median duration is far above the usual;
- `error_rate`: failures above the usual rate without a clearer cause.

"Far" is a learned threshold (metrics_app.alerts.usual) with a floor, and a fixed threshold in
the admin (Threshold) may fire as well. A channel without enough history is held to the
floors only. `no_data`, the schedulers' verdicts and `incident` follow their own rules below.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Final

from metrics_app import histogram
from metrics_app.alerts.field_rules import fields_broken
from metrics_app.alerts.findings import (
    MIN_RECORDS,
    Finding,
    bytes_text,
    count_text,
    duration_text,
    median,
    ms_text,
    pct,
    range_text,
    top_errors,
    unlikely_rate,
)
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
# HTTP statuses (navigations' httpStatus, from the status rollups) that say the same: refusals
# are these, outages any 5xx.
REFUSAL_STATUSES: Final = (403, 429)
EXTRACTION_WORDS: Final = ("selector", "not found", "parse", "xpath", "no items", "missing", "extract")

# Failures are "far above usual" when both hold: the rate is FAILURE_MARGIN above the usual high,
# and so many failures among the window's records would happen by chance at the usual rate
# with probability below FAILURE_CHANCE (Chernoff's bound on the binomial tail: a healthy
# source with 5 % failures and 12 records a window must not fire on 4 of them).
FAILURE_MARGIN: Final = 0.15
MIN_USUAL_FAILURE_RATE: Final = 0.01  # a source that never fails may still fail now and then
DOWN_FAILURE_RATE: Final = 0.9  # nearly every navigation failing is an outage whatever the words
SMALL_PAGE_FACTOR: Final = 0.3  # pages below this part of the usual low are ban pages
FEW_ITEMS_FACTOR: Final = 0.3  # items below this part of the usual low
SLOW_FACTOR: Final = 3.0  # median above this many usual medians (and above the usual p90)
MIN_SLOW_MS: Final = 100.0  # never slow below this
INCIDENT_MIN_SOURCES: Final = 5
INCIDENT_SHARE: Final = 0.15  # …and at least this share of the sources being watched


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
#
# Each rule measures the window whether or not its condition holds (None: it has nothing to
# compare with), so that the numbers of a firing alert and of one resolving come from one place.

Rule = Callable[[str, Window, Usual, Sequence[Threshold], str], "Finding | None"]


def judge_source(
    name: str, window: Window, usual: Usual, fixed: Sequence[Threshold], span: str
) -> Finding | None:
    """The first verdict that holds for a scraper over the window (`span`: "the last 5 min")."""
    for measure, rule in SOURCE_RULES.items():
        finding = rule(name, window, usual, fixed, span)
        if finding is not None and finding.holds:  # named only when it holds: most do not
            return replace(finding, measure=measure)
    return None


def measure_source(
    measure: str, name: str, window: Window, usual: Usual, fixed: Sequence[Threshold], span: str
) -> Finding | None:
    """One rule's numbers for a scraper over the window, whether or not it holds."""
    rule = SOURCE_RULES.get(measure)
    finding = rule(name, window, usual, fixed, span) if rule else None
    return replace(finding, measure=measure) if finding else None


def _page_loads_failed(
    name: str, window: Window, usual: Usual, fixed: Sequence[Threshold], span: str
) -> Finding | None:
    """`blocked` or `site_down`: page loads fail far above usual, and the errors or the HTTP
    statuses are refusals (403, 429), or outages (5xx, connection errors; or nearly every load
    fails)."""
    nav, errors = window.of("page_navigation"), window.errors.get("page_navigation", Counter())
    if not nav.count:
        return _nothing(name, "page loads", span)
    refusals = sum(n for code, n in window.statuses.items() if _refusal(code))
    outages = sum(n for code, n in window.statuses.items() if _server_error(code))
    # A page answered 403 may be recorded as loaded (it did load): the statuses count it as
    # failed whichever way its scraper records it, and the texts and statuses of one failure
    # are not counted twice (the larger of the two says how many).
    failed = max(nav.count - nav.ok, min(nav.count, refusals + outages))
    rate, threshold, basis, far = _failure_rate(failed, nav.count, usual.failure_rate.get("page_navigation"))
    kinds = _kinds(errors)
    kinds["refusal"], kinds["outage"] = max(kinds["refusal"], refusals), max(kinds["outage"], outages)
    total = max(sum(kinds.values()), failed)
    refused = kinds["refusal"] * 2 >= total > 0
    down = rate >= DOWN_FAILURE_RATE or kinds["outage"] * 2 >= total > 0
    verdict = Verdict.BLOCKED if refused else Verdict.SITE_DOWN
    codes = _answered(window.statuses, _refusal if refused else _server_error)
    # The summary says what was seen; the verdict is said beside it, once (the page, headlines).
    said = f"{pct(rate)} of page loads failed {span} ({failed} of {nav.count}), {basis}"
    return Finding(
        verdict, name, None, f"{name}: {said}{codes}{top_errors(errors)}",
        rate, threshold, basis, holds=far and (refused or down),
    )  # fmt: skip


def _refusal(code: int) -> bool:
    return code in REFUSAL_STATUSES


def _server_error(code: int) -> bool:
    return code >= 500


def _answered(statuses: Counter[int], which: Callable[[int], bool]) -> str:
    """The share of the window's pages that answered each of `which` codes, commonest first:
    "; 43 % of pages answered 403, 12 % 429" (of the pages that reported a status)."""
    reported = sum(statuses.values())
    codes = [(code, n) for code, n in statuses.most_common() if which(code) and n]
    if not codes:
        return ""
    (first, n), *rest = codes[:3]
    return f"; {pct(n / reported)} of pages answered {first}" + "".join(
        f", {pct(more / reported)} {code}" for code, more in rest
    )


def _page_size(
    name: str, window: Window, usual: Usual, fixed: Sequence[Threshold], span: str
) -> Finding | None:
    """`blocked`: pages load but are far smaller than usual (a ban page answered with 200)."""
    scrape, spread = window.of("page_scrape"), usual.bytes_per_page
    if spread is None or spread.low < 1024:
        return None
    if not scrape.count:
        return _nothing(name, "scrapes", span)
    size = scrape.size / scrape.count
    threshold = SMALL_PAGE_FACTOR * spread.low
    holds = scrape.count >= MIN_RECORDS and size < threshold
    return Finding(
        Verdict.BLOCKED, name, None,
        f"{name}: pages are {bytes_text(size)} {span}, "
        f"usual {range_text(spread, bytes_text)} ({spread.basis})"
        f"{_loads(window.of('page_navigation'))}{': likely a ban or error page' if holds else ''}",
        size, threshold, f"learned: {SMALL_PAGE_FACTOR:g} x the usual low ({spread.basis})", holds=holds,
    )  # fmt: skip


def _items_per_page(
    name: str, window: Window, usual: Usual, fixed: Sequence[Threshold], span: str
) -> Finding | None:
    """`extraction_broken`: successful scrapes extract far fewer items than usual, or fewer
    than a fixed threshold."""
    scrape, spread = window.of("page_scrape"), usual.items_per_page
    limits = [
        (rule.value, f"fixed threshold {rule.value:g} (admin)")
        for rule in fixed
        if rule.signal == Threshold.Signal.MIN_ITEMS_PER_SCRAPE
    ]
    if spread is not None and spread.low >= 1:
        limits.append((FEW_ITEMS_FACTOR * spread.low, spread.basis))
    if not limits:
        return None
    if not scrape.ok:
        return _nothing(name, "successful scrapes", span)
    items = scrape.items / scrape.ok
    broken = next(((limit, basis) for limit, basis in limits if items < limit), None)
    threshold, basis = broken or limits[-1]
    usual_text = f"usual {range_text(spread, count_text)} ({basis})" if spread else basis
    return Finding(
        Verdict.EXTRACTION_BROKEN, name, None,
        f"{name}: {count_text(items)} items per page {span}, {usual_text}"
        f"{_loads(window.of('page_navigation'))}",
        items, threshold, basis, holds=broken is not None and scrape.ok >= MIN_RECORDS,
    )  # fmt: skip


def _scrapes_failed(
    name: str, window: Window, usual: Usual, fixed: Sequence[Threshold], span: str
) -> Finding | None:
    """`extraction_broken`: scrapes fail far above usual, with selector or parse errors."""
    scrape, errors = window.of("page_scrape"), window.errors.get("page_scrape", Counter())
    if not scrape.count:
        return _nothing(name, "scrapes", span)
    rate, threshold, basis, far = _failure_rate(
        scrape.count - scrape.ok, scrape.count, usual.failure_rate.get("page_scrape")
    )
    extraction = _kinds(errors)["extraction"] * 2 >= sum(errors.values()) > 0
    return Finding(
        Verdict.EXTRACTION_BROKEN, name, None,
        f"{name}: {pct(rate)} of scrapes failed {span} ({scrape.count - scrape.ok} of {scrape.count}), "
        f"{basis}{top_errors(errors)}{_loads(window.of('page_navigation'))}",
        rate, threshold, basis, holds=far and extraction,
    )  # fmt: skip


def _slow(metric_type: str, what: str) -> Rule:
    """`slow`: the window's median `what` ("page load") is far above the usual, or above a
    fixed threshold."""

    def slow(
        name: str, window: Window, usual: Usual, fixed: Sequence[Threshold], span: str
    ) -> Finding | None:
        slot = window.of(metric_type)
        limits = [
            (rule.value, f"above the fixed {ms_text(rule.value)} (admin)")
            for rule in fixed
            if rule.signal == Threshold.Signal.MAX_P50_MS
        ]
        usual_p50, usual_p90 = usual.duration_p50.get(metric_type), usual.duration_p90.get(metric_type)
        if usual_p50 is not None and usual_p90 is not None:
            limits.append((
                max(SLOW_FACTOR * usual_p50, usual_p90, MIN_SLOW_MS),
                f"usual {ms_text(usual_p50)} (p50; p90 {ms_text(usual_p90)}, last 7 days)",
            ))  # fmt: skip
        if not limits:
            return None
        if not slot.count:
            return _nothing(name, f"{what}s", span)
        p50 = histogram.percentile(slot.histogram, 0.5) or 0.0
        slow = next(((limit, basis) for limit, basis in limits if p50 > limit), None)
        threshold, basis = slow or limits[-1]
        return Finding(
            Verdict.SLOW, name, None, f"{name}: median {what} {ms_text(p50)} {span}, {basis}",
            p50, threshold, basis, holds=slow is not None and slot.count >= MIN_RECORDS,
        )  # fmt: skip

    return slow


def _records_failed(
    name: str, window: Window, usual: Usual, fixed: Sequence[Threshold], span: str
) -> Finding | None:
    """`error_rate`: page loads or scrapes fail far above usual (without a clearer cause: the
    rules before it did not hold), or records succeed below a fixed threshold."""
    nav, scrape = window.of("page_navigation"), window.of("page_scrape")
    total = nav.count + scrape.count
    if not total:
        return _nothing(name, "records", span)
    limits = [
        _failure_rate(slot.count - slot.ok, slot.count, usual.failure_rate.get(metric_type))
        for metric_type, slot in (("page_navigation", nav), ("page_scrape", scrape))
        if slot.count
    ]
    ok = nav.ok + scrape.ok
    for rule in fixed:
        if rule.signal == Threshold.Signal.MIN_SUCCESS_PERCENT:
            below = total >= MIN_RECORDS and 100 * ok / total < rule.value
            basis = f"fixed threshold {rule.value:g} % ok (admin)"
            limits.append((1 - ok / total, 1 - rule.value / 100, basis, below))
    rate, threshold, basis, far = next((limit for limit in limits if limit[3]), limits[0])
    errors = window.errors.get("page_navigation", Counter()) + window.errors.get("page_scrape", Counter())
    return Finding(
        Verdict.ERROR_RATE, name, None,
        f"{name}: {pct((total - ok) / total)} of records failed {span} ({total - ok} of {total}), {basis}"
        f"{top_errors(errors)}",
        rate, threshold, basis, holds=far,
    )  # fmt: skip


# In the order they are tried: an outage also makes pages slow and items vanish, and the
# clearest cause is the one to name (pages that extract nothing have no field to judge).
SOURCE_RULES: Final[dict[str, Rule]] = {
    "page_loads_failed": _page_loads_failed,
    "page_size": _page_size,
    "items_per_page": _items_per_page,
    "scrapes_failed": _scrapes_failed,
    "field_shares": fields_broken,
    "page_load_duration": _slow("page_navigation", "page load"),
    "scrape_duration": _slow("page_scrape", "scrape"),
    "records_failed": _records_failed,
}


def _nothing(name: str, what: str, span: str) -> Finding:
    """The numbers of a source that sent none of what a rule measures."""
    return Finding("", name, None, f"{name}: no {what} {span}", None, None, "", holds=False)


def _failure_rate(failed: int, count: int, usual: Spread | None) -> tuple[float, float, str, bool]:
    """(failure rate, threshold, where the threshold came from, whether failures are far above
    usual) of `failed` among `count` records (some)."""
    rate = failed / count
    base = min(max(usual.high if usual else 0.0, MIN_USUAL_FAILURE_RATE), 0.9)
    threshold = max(base + FAILURE_MARGIN, unlikely_rate(base, count))
    basis = f"usual {range_text(usual, pct)} ({usual.basis})" if usual else "no usual learned yet"
    return rate, threshold, basis, count >= MIN_RECORDS and rate >= threshold


def _kinds(errors: Counter[str]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for message, n in errors.items():
        kinds[kind_of(message)] += n
    return kinds


def _loads(nav: Tally) -> str:
    if nav.count < MIN_RECORDS:
        return ""
    p50 = histogram.percentile(nav.histogram, 0.5)
    return f"; pages load normally ({ms_text(p50 or 0)}, {pct(nav.ok / nav.count)} ok)"


# --- silence -----------------------------------------------------------------------------------

SILENCE: Final = "silence"  # the measure of `no_data`


def judge_silence(name: str, last_ms: int, now_ms: int, no_data_ms: int, reporting: bool) -> Finding | None:
    """`no_data`: a channel that was reporting (`reporting`) has sent nothing for no_data_ms."""
    finding = measure_silence(name, last_ms, now_ms, no_data_ms)
    return finding if reporting and finding.holds else None


def measure_silence(name: str, last_ms: int, now_ms: int, no_data_ms: int) -> Finding:
    """How long a channel has been quiet, its last record at `last_ms`."""
    quiet = max(0, now_ms - last_ms)
    last = f"{datetime.fromtimestamp(last_ms / 1000, UTC):%Y-%m-%d %H:%M:%S} UTC"
    holds = quiet >= no_data_ms
    said = (
        f"no records for {duration_text(quiet)} (the last at {last})"
        if holds
        else f"reporting again (the last record at {last})"
    )
    return Finding(
        Verdict.NO_DATA, name, None, f"{name}: {said}",
        quiet / 1000, no_data_ms / 1000, "METRICS_ALERT_NO_DATA_S", measure=SILENCE, holds=holds,
    )  # fmt: skip


# --- schedulers --------------------------------------------------------------------------------

MIN_RUNS: Final = 3  # runs before a run's duration and items are judged against the others
FAST_FACTOR: Final = 0.2  # a run shorter than this part of the usual, with 0 items, did nothing
LONG_FACTOR: Final = 3.0

SchedulerRule = Callable[[str, Sequence[Run], int, int], "Finding | None"]


def judge_scheduler(name: str, runs: Sequence[Run], now_ms: int, window_ms: int) -> Finding | None:
    """A scheduler's verdict from its last runs (newest first): late (on the period its card
    shows, metrics_app.history.periods), failed, or a run that was far too long, or
    suspiciously fast with nothing done."""
    for measure in SCHEDULER_RULES:
        finding = measure_scheduler(measure, name, runs, now_ms, window_ms)
        if finding is not None and finding.holds:
            return finding
    return None


def measure_scheduler(
    measure: str, name: str, runs: Sequence[Run], now_ms: int, window_ms: int
) -> Finding | None:
    """One rule's numbers for a scheduler's last runs, whether or not it holds."""
    rule = SCHEDULER_RULES.get(measure)
    finding = rule(name, runs, now_ms, window_ms) if rule and runs else None
    return replace(finding, measure=measure) if finding else None


def _late(name: str, runs: Sequence[Run], now_ms: int, window_ms: int) -> Finding | None:
    """`scheduler_late`: no run within the period its card shows plus a grace (none while the
    period is being learned)."""
    period = usual_period(run.at / 1000 for run in runs)
    late_after = period.late_after(window_ms / 1000)
    if period.seconds is None or late_after is None:
        return None
    every, spread = period.seconds * 1000, period.spread_seconds * 1000
    grace = late_after * 1000 - every
    late = now_ms - runs[0].at
    holds = late > late_after * 1000
    said = f"no run for {duration_text(late)}" if holds else f"the last run {duration_text(late)} ago"
    return Finding(
        Verdict.SCHEDULER_LATE, runs[0].source, name,
        f"{name}: {said}; it runs every {duration_text(every)} "
        f"(±{duration_text(spread)}, {period.agreeing} of its last {period.runs} runs), "
        f"grace {duration_text(grace)}",
        late / 1000, late_after, f"learned from the last {period.runs} runs", holds=holds,
    )  # fmt: skip


def _failed(name: str, runs: Sequence[Run], now_ms: int, window_ms: int) -> Finding | None:
    """`scheduler_failed`: its last run failed."""
    last = runs[0]
    failed = sum(1 for run in runs if not run.success)
    said = (
        f"the last run failed ({(last.error or 'no error message')[:200]})"
        if not last.success
        else "the last run succeeded"
    )
    return Finding(
        Verdict.SCHEDULER_FAILED, last.source, name,
        f"{name}: {said}; {failed} of the last {len(runs)} runs failed",
        float(failed), 0.0, "any failed run", holds=not last.success,
    )  # fmt: skip


def _usual_run(runs: Sequence[Run]) -> tuple[float, float, int] | None:
    """(usual duration ms, usual items, runs it is learned from) of the runs before the last."""
    earlier = [run for run in runs[1:] if run.success]
    if len(earlier) < MIN_RUNS - 1:
        return None
    return (
        median([run.duration_ms for run in earlier]),
        median([run.items for run in earlier]),
        len(earlier),
    )


def _nothing_done(name: str, runs: Sequence[Run], now_ms: int, window_ms: int) -> Finding | None:
    """`scheduler_failed`: the last run was far faster than usual and found nothing."""
    if (usual := _usual_run(runs)) is None:
        return None
    last, (usual_ms, usual_items, n) = runs[0], usual
    return Finding(
        Verdict.SCHEDULER_FAILED, last.source, name,
        f"{name}: the last run finished in {ms_text(last.duration_ms)} with {count_text(last.items)} items; "
        f"usual {ms_text(usual_ms)} and {count_text(usual_items)} items (last {n} runs)",
        float(last.duration_ms), FAST_FACTOR * usual_ms, f"learned from the last {n} runs",
        holds=last.items == 0 and usual_items > 0 and last.duration_ms < FAST_FACTOR * usual_ms,
    )  # fmt: skip


def _run_duration(name: str, runs: Sequence[Run], now_ms: int, window_ms: int) -> Finding | None:
    """`slow`: the last run took far longer than usual."""
    if (usual := _usual_run(runs)) is None:
        return None
    last, (usual_ms, _, n) = runs[0], usual
    return Finding(
        Verdict.SLOW, last.source, name,
        f"{name}: the last run took {ms_text(last.duration_ms)}, usual {ms_text(usual_ms)} (last {n} runs)",
        float(last.duration_ms), LONG_FACTOR * usual_ms, f"learned from the last {n} runs",
        holds=last.duration_ms > max(LONG_FACTOR * usual_ms, MIN_SLOW_MS),
    )  # fmt: skip


SCHEDULER_RULES: Final[dict[str, SchedulerRule]] = {  # in the order they are tried
    "scheduler_period": _late,
    "scheduler_runs": _failed,
    "run_nothing_done": _nothing_done,
    "run_duration": _run_duration,
}


# --- incidents ---------------------------------------------------------------------------------

SHARED: Final = "shared:"  # an incident's measure: "shared:site_down"


def incidents(findings: Iterable[Finding], watched: int) -> list[Finding]:
    """Many sources with the same verdict at once become one `incident` in their place."""
    found = list(findings)
    merged: set[str] = set()
    result: list[Finding] = []
    for verdict in sorted({finding.verdict for finding in found if _shares(finding)}):
        incident = measure_incident(verdict, found, watched)
        if incident.holds:
            result.append(incident)
            merged.update(finding.fingerprint for finding in found if _shares(finding, verdict))
    return result + [finding for finding in found if finding.fingerprint not in merged]


def measure_incident(verdict: str, findings: Iterable[Finding], watched: int) -> Finding:
    """How many of the watched sources have `verdict` at once (findings before incidents)."""
    names = sorted(finding.source or "" for finding in findings if _shares(finding, verdict))
    holds = len(names) >= INCIDENT_MIN_SOURCES and len(names) >= INCIDENT_SHARE * watched
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    said = f"{len(names)} of {watched} sources {verdict.replace('_', ' ')} at once"
    return Finding(
        Verdict.INCIDENT, None, None,
        f"{said} ({shown}): likely a cause they share (the scrapers' own network, a proxy, a common site)"
        if holds else f"{said}{f' ({shown})' if names else ''}",
        float(len(names)), INCIDENT_SHARE * watched,
        f"{INCIDENT_MIN_SOURCES}+ sources and {pct(INCIDENT_SHARE)} of those watched",
        tuple(names), measure=f"{SHARED}{verdict}", holds=holds,
    )  # fmt: skip


def _shares(finding: Finding, verdict: str | None = None) -> bool:
    """A source's own finding (an incident may merge it), of `verdict` if given."""
    mine = finding.scheduler is None and finding.source is not None
    return mine and finding.holds and (verdict is None or finding.verdict == verdict)

"""Browser benchmark: a real Chromium on /analytics/, in one of two runs.

The live run (default): records flow at --rate per second while the page is open.

    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics \\
        .venv/bin/python bench/browser.py --rate 1000 --duration 180

Prints the first fill (the requests the page made before it was live, and how soon it was),
script time per animation frame (Chrome's own ScriptDuration over the frames drawn), long
tasks, console errors, and the JS heap after the warm-up, every minute and at the end, each
after the full garbage collection of a heap snapshot: Chrome's JSHeapUsedSize, and the
snapshot's live objects apart from V8's compiled code (which grows while V8 optimises hot
functions, and is not the page's data).

The history run (--history): on a database holding a week of records, as bench/aggregate.py
--keep-data leaves it (17 million rows), the time from choosing "Last 7 days" (and "Last 24
hours") to every chart of each tab drawn, median of --repeat choices per tab, beside the time
the server takes to answer the overview request the page makes.

    export DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics_bench
    .venv/bin/python bench/aggregate.py --keep-data && .venv/bin/python bench/browser.py --history

The Data run (--data): the database named in DATABASE_URL (its name must contain "bench") is
recreated and given 7 days of --sources sources (default 50), each page reporting --fields
fields (default 20): per source and hour 2 pages of 20 items and 6 navigations with an HTTP
status, stored through the ingest storage path (store_metrics: the rows and the field and
status rollups, as a POST stores them). Then on the Data tab: the time from choosing "Last 7
days" (one source chosen), each of --repeat sources, and "all sources" to the grids and the
status mix (or every source's mix) drawn, read from the DOM each frame; median of --repeat
choices each, beside the server's time to the first byte of the /api/fields/ request the page
made (Chromium's own timing of it).

    export DATABASE_URL=mysql://root@127.0.0.1:3306/wm_data_bench
    .venv/bin/python bench/browser.py --data

Debian's chromium at /usr/bin/chromium.
"""

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, manage, prepare, rows_present  # noqa: E402
from bench.fanout import Sender  # noqa: E402
from tests.support.servers import DaphneServer  # noqa: E402

COUNT_FRAMES = """
window.__frames = 0;
window.__longTasks = [];
(function tick() { window.__frames += 1; requestAnimationFrame(tick); })();
new PerformanceObserver((list) => window.__longTasks.push(...list.getEntries().map((e) => e.duration)))
  .observe({ type: "longtask", buffered: true });
"""


def live_sizes(snapshot: str) -> dict[str, float]:
    """Bytes of the live objects in a heap snapshot: in all, and V8's compiled code apart."""
    data = orjson.loads(snapshot)
    meta = data["snapshot"]["meta"]
    fields = meta["node_fields"]
    width, type_at, size_at = len(fields), fields.index("type"), fields.index("self_size")
    type_names = meta["node_types"][0]
    nodes = data["nodes"]
    sizes: dict[str, float] = {}
    for i in range(0, len(nodes), width):
        kind = type_names[nodes[i + type_at]]
        sizes[kind] = sizes.get(kind, 0) + nodes[i + size_at]
    total = sum(sizes.values())
    return {"LiveTotal": total, "LiveCode": sizes.get("code", 0), "LiveObjects": total - sizes.get("code", 0)}


def heap_line(values: dict[str, float]) -> str:
    return (
        f"JSHeapUsedSize {values['JSHeapUsedSize'] / 1e6:.2f} MB, live objects "
        f"{values['LiveObjects'] / 1e6:.2f} MB + compiled code {values['LiveCode'] / 1e6:.2f} MB"
    )


def backfill(url: str, key: str, prefix: str, args: argparse.Namespace) -> None:
    """Store the last --backfill-minutes of records, spread evenly, like the sender's."""
    total = args.rate * 60 * args.backfill_minutes
    start = int(time.time() * 1000) - args.backfill_minutes * 60_000
    step = args.backfill_minutes * 60_000 / max(1, total)
    with httpx.Client(base_url=url, timeout=60) as client:
        for first in range(0, total, 1000):
            records = [
                {
                    "type": "page_navigation",
                    "scraperSource": f"{prefix}{i % args.sources}",
                    "url": f"https://example.com/{i}",
                    "navigationDurationMs": 100 + i % 700,
                    "recordedAt": start + int(i * step),
                }
                for i in range(first, min(total, first + 1000))
            ]
            response = client.post(
                "/api/metrics/",
                content=orjson.dumps({"metrics": records}),
                headers={"Authorization": f"Bearer {key}"},
            )
            response.raise_for_status()
    if total:
        print(f"backfilled {total} records over the last {args.backfill_minutes} minutes", flush=True)


# In the page: whether every chart of the visible tab shows the range named `label`, and (when
# `filled`) has categories or points.
ALL_DRAWN = """
(label, filled) => globalThis.Chart && [...document.querySelectorAll(".tab:not([hidden]) canvas[data-chart]")]
  .every((canvas) => {
    const chart = Chart.getChart(canvas);
    return chart && chart.options.plugins.title.text.includes(label)
      && (!filled || chart.data.labels.length > 0 || chart.data.datasets.some((d) => d.data.length > 0));
  })
"""
# Resolves with the milliseconds from the start of the page's navigation to the frame after
# every chart of the visible tab was drawn with the live range's data (the title names the
# range in the same render that gives the chart its data).
FIRST_DRAWN = """
async () => {
  const drawn = ALL_DRAWN;
  while (!drawn("last 30 minutes", false)) {
    await new Promise(requestAnimationFrame);
    if (performance.now() > 30000) throw new Error("the page was not drawn in 30 s");
  }
  await new Promise(requestAnimationFrame); // painted
  return performance.now() - performance.getEntriesByType("navigation")[0].startTime;
}
""".replace("ALL_DRAWN", ALL_DRAWN)
# Notes when the page's connection badge first turns live (before any page script runs).
NOTE_LIVE = """
new MutationObserver(() => {
  if (!window.__liveAt && document.querySelector('#connection[data-connection-state="live"]')) {
    window.__liveAt = performance.now();
  }
}).observe(document, { subtree: true, childList: true, attributes: true });
"""
# Resolves with the milliseconds from choosing `range` in the range selector to the frame
# after every chart of the visible tab was drawn with that range's data.
CHOOSE_RANGE = """
async ([range, label, filled]) => {
  const drawn = ALL_DRAWN;
  const select = document.querySelector("#range");
  const began = performance.now();
  select.value = range;
  select.dispatchEvent(new Event("change"));
  while (!drawn(label, filled)) {
    await new Promise(requestAnimationFrame);
    if (performance.now() - began > 30000) throw new Error(`${range} not drawn in 30 s`);
  }
  await new Promise(requestAnimationFrame); // painted
  return performance.now() - began;
}
""".replace("ALL_DRAWN", ALL_DRAWN)
TABS = ("overview", "scrapers", "navigation", "scraping", "scheduler")
RANGES = {"7d": "last 7 days", "24h": "last 24 hours"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", action="store_true", help="time the 7-day and 24-hour ranges instead")
    parser.add_argument("--data", action="store_true", help="time the Data tab on 7 days of fields instead")
    parser.add_argument("--repeat", type=int, default=5, help="history and Data runs: choices of each kind")
    parser.add_argument("--fields", type=int, default=20, help="Data run: fields per page")
    parser.add_argument("--rate", type=int, default=1000, help="records per second")
    parser.add_argument("--duration", type=float, default=180, help="seconds measured after the warm-up")
    parser.add_argument(
        "--warm-up",
        type=float,
        default=120,
        help="seconds before measuring (default 120): buffers fill and V8 finishes compiling the hot code, "
        "which otherwise shows as heap growth (a heap-snapshot diff found no data growing)",
    )
    parser.add_argument("--sources", type=int, default=None, help="live run: 6 (the default); Data run: 50")
    parser.add_argument(
        "--backfill-minutes",
        type=int,
        default=0,
        help="store this many minutes of records at --rate before the page opens (default 0), "
        "as on a server that has been running: the page then starts from a full 30-minute window",
    )
    args = parser.parse_args()
    args.sources = args.sources or (50 if args.data else 6)
    if args.data:
        seed_fields(args)

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wealthmetrics.settings", "PYTHONUNBUFFERED": "1"}
    key = prepare(env, "bench-browser")
    username, password = f"bench{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    create_user = (
        "from django.contrib.auth.models import User; "
        f"User.objects.create_user({username!r}, password={password!r})"
    )
    manage(env, "shell", "-c", create_user)

    server = DaphneServer(env)
    server.start()
    from playwright.sync_api import sync_playwright

    prefix = f"browser-{uuid.uuid4().hex[:4]}-"
    if args.history:
        detailed, rollups = rows_present()
        print(f"rows present: {detailed:,} detailed, {rollups:,} hourly rollups", flush=True)
    else:
        backfill(server.url, key, prefix, args)
    sender = Sender(server.url, key, args.rate, prefix, args.sources)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--enable-precise-memory-info",
                ],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server.url}/accounts/login/")
            page.fill("#id_username", username)
            page.fill("#id_password", password)
            first_fill(page, server.url)
            print(
                f"machine: {machine()}, Chromium headless, server and browser on the same machine", flush=True
            )
            if args.history:
                history_run(page, server.url, key, args)
            elif args.data:
                data_run(page, args)
            else:
                live_run(page, sender, args)
            browser.close()
    finally:
        sender.stop.set()
        server.stop()
    print(f"console errors: {len(errors)}")
    for error in errors[:5]:
        print(f"  {error}")


def first_fill(page: Any, url: str) -> None:
    """Log in, then open the page afresh and count what it asks the server for until it is
    live, and how long that takes from the start of its navigation (not the login's)."""
    page.click("button[type=submit]")
    page.wait_for_url("**/analytics/")
    page.wait_for_selector('#connection[data-connection-state="live"]')
    requests: list[str] = []
    sockets: list[str] = []

    def track(request: Any) -> None:
        if "/api/" in request.url:
            requests.append(request.url.split("/", 3)[3])

    page.on("request", track)
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.add_init_script(NOTE_LIVE)
    page.goto(f"{url}/analytics/")
    drawn_ms = page.evaluate(FIRST_DRAWN)
    page.wait_for_selector('#connection[data-connection-state="live"]')
    live_ms = page.evaluate("window.__liveAt - performance.getEntriesByType('navigation')[0].startTime")
    page.remove_listener("request", track)
    print(
        f"first fill: {len(requests)} HTTP request(s) ({', '.join(requests)}) and {len(sockets)} WebSocket; "
        f"every chart drawn {drawn_ms:.0f} ms after the page's navigation started, streaming live by "
        f"{live_ms:.0f} ms",
        flush=True,
    )


def history_run(page: Any, url: str, key: str, args: argparse.Namespace) -> None:
    server_ms = {
        name: statistics.median(overview_ms(url, key, name) for _ in range(args.repeat)) for name in RANGES
    }
    for name in RANGES:
        print(f"GET /api/metrics/overview/?range={name} alone: median {server_ms[name]:.0f} ms")
    for tab in TABS:
        page.click(f'[data-tab="{tab}"]')
        results = []
        for name, label in RANGES.items():
            runs = []
            for _ in range(args.repeat):
                runs.append(page.evaluate(CHOOSE_RANGE, [name, label, True]))
                page.evaluate(CHOOSE_RANGE, ["live", "last 30 minutes", False])
            results.append(f"{label}: median {statistics.median(runs):.0f} ms (max {max(runs):.0f})")
        print(f"{tab}: from choosing the range to every chart drawn: {'; '.join(results)}", flush=True)


def overview_ms(url: str, key: str, range_name: str) -> float:
    began = time.perf_counter()
    response = httpx.get(
        f"{url}/api/metrics/overview/",
        params={"range": range_name},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    response.raise_for_status()
    return 1000 * (time.perf_counter() - began)


def seed_fields(args: argparse.Namespace) -> None:
    """A fresh database with 7 days of pages reporting fields and navigations reporting their
    status, of every source, through store_metrics; one source's first field broken for a day."""
    from bench.common import fresh_bench_database

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wealthmetrics.settings")
    fresh_bench_database()
    from metrics_app.ingest.storage import store_metrics
    from metrics_app.records import validate_records

    rng = random.Random(1)
    codes = [200] * 85 + [301] * 3 + [404] * 3 + [403] * 4 + [429] * 3 + [503] * 2
    now = int(time.time() * 1000)
    first = now // 3_600_000 * 3_600_000 - 7 * 24 * 3_600_000
    began, stored = time.perf_counter(), 0
    batch: list[dict[str, Any]] = []
    for hour in range(first, now, 3_600_000):
        for n in range(args.sources):
            source = f"source-{n:02d}"
            for at in (hour + 600_000, hour + 2_400_000):
                broken = n == 0 and now - 2 * 86_400_000 <= at < now - 86_400_000
                fields = {
                    f"field_{f:02d}": {
                        "filled": 2 if broken and f == 0 else 20 - rng.randrange(2),
                        "invalid": rng.randrange(2),
                    }
                    for f in range(args.fields)
                }
                batch.append({"type": "page_scrape", "scraperSource": source, "url": "https://example.com/q",
                              "scrapeDurationMs": 150, "itemsExtracted": 20, "fields": fields,
                              "recordedAt": min(at, now)})  # fmt: skip
            for i in range(6):
                batch.append({"type": "page_navigation", "scraperSource": source, "url": "https://example.com/q",
                              "navigationDurationMs": 300, "httpStatus": rng.choice(codes),
                              "recordedAt": min(hour + i * 600_000, now)})  # fmt: skip
        batch.sort(key=lambda record: record["recordedAt"])
        for chunk in range(0, len(batch), 1000):
            store_metrics(validate_records(batch[chunk : chunk + 1000]))
        stored, batch = stored + len(batch), []
    print(
        f"seeded {stored:,} records (7 days, {args.sources} sources x {args.fields} fields) through "
        f"store_metrics in {time.perf_counter() - began:.0f} s",
        flush=True,
    )


# In the page: whether the Data tab shows `source` ("*": every source's status mix) over the
# range named `label`, drawn: the grids' rows and the status bar, or every source's bar.
DATA_DRAWN = """
(source, label) => {
  const tab = document.querySelector("#tab-data");
  if (source === "*") {
    return !tab.querySelector(".data-all").hidden
      && tab.querySelector(".data-all-window").textContent === `(all sources, ${label})`
      && tab.querySelectorAll(".source-mix .status-bar").length > 0;
  }
  return !tab.querySelector(".data-body").hidden
    && tab.querySelector(".data-window").textContent.startsWith(`(${source}, ${label},`)
    && tab.querySelectorAll('[data-grid="filled"] .field-row').length > 0
    && tab.querySelectorAll('[data-grid="valid"] .field-row').length > 0
    && tab.querySelectorAll(".status-mix .status-bar span").length > 0;
}
"""
# Resolves with the milliseconds from choosing `value` in the select `selector` to the frame
# after the Data tab was drawn for `source` over `label`.
CHOOSE_DATA = """
async ([selector, value, source, label]) => {
  const drawn = DATA_DRAWN;
  const select = document.querySelector(selector);
  const began = performance.now();
  select.value = value;
  if (select.value !== value) throw new Error(`${selector} has no option ${value}`);
  select.dispatchEvent(new Event("change"));
  while (!drawn(source, label)) {
    await new Promise(requestAnimationFrame);
    if (performance.now() - began > 30000) throw new Error(`${value} not drawn in 30 s`);
  }
  await new Promise(requestAnimationFrame); // painted
  return performance.now() - began;
}
""".replace("DATA_DRAWN", DATA_DRAWN)


def data_run(page: Any, args: argparse.Namespace) -> None:
    """Time the Data tab's choices; each beside the server's time to the first byte of the
    /api/fields/ request that the choice made, and of the overview request made before it (the
    page loads the range's overview, then the Data tab's answer)."""
    served: dict[str, float] = {}

    def note(request: Any) -> None:
        for path in ("/api/fields/", "/api/metrics/overview/"):
            if path in request.url:
                served[path] = request.timing["responseStart"] - request.timing["requestStart"]

    page.on("requestfinished", note)
    page.click('[data-tab="data"]')
    live, week = "last 30 minutes", RANGES["7d"]
    sources = [f"source-{n:02d}" for n in range(args.sources)]

    def choose(selector: str, value: str, source: str, label: str) -> tuple[float, float, float]:
        served.clear()
        ms = page.evaluate(CHOOSE_DATA, [selector, value, source, label])
        page.wait_for_timeout(50)  # the requestfinished events reach Python
        nan = float("nan")
        return ms, served.get("/api/fields/", nan), served.get("/api/metrics/overview/", nan)

    choose("#source-filter", sources[0], sources[0], live)
    runs: dict[str, list[tuple[float, float, float]]] = {
        "Last 7 days, one source": [],
        "all sources": [],
        "a source": [],
    }
    for _ in range(args.repeat):
        runs["Last 7 days, one source"].append(choose("#range", "7d", sources[0], week))
        choose("#range", "live", sources[0], live)
    choose("#range", "7d", sources[0], week)
    for n in range(args.repeat):
        source = sources[(n + 1) % len(sources)]
        # one source's view lists that source alone: back to every source, then the next
        runs["all sources"].append(choose("#source-filter", "*", "*", week))
        runs["a source"].append(choose("#source-filter", source, source, week))
    cells = page.evaluate("document.querySelectorAll('#tab-data .cell').length")
    print(
        f"Data tab, {args.sources} sources x {args.fields} fields, 7 days "
        f"({cells:,} cells drawn for one source):"
    )
    for name, found in runs.items():
        drawn, fields_ms, overviews = ([run[n] for run in found] for n in range(3))
        print(
            f"  choosing {name}: drawn in median {statistics.median(drawn):.0f} ms (max {max(drawn):.0f}); "
            f"server time median: GET /api/fields/ {statistics.median(fields_ms):.0f} ms, "
            f"the overview before it {statistics.median(overviews):.0f} ms",
            flush=True,
        )


def live_run(page: Any, sender: Sender, args: argparse.Namespace) -> None:
    page.add_script_tag(content=COUNT_FRAMES)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    sender.start()
    time.sleep(args.warm_up)

    cdp.send("HeapProfiler.enable")
    chunks: list[str] = []
    cdp.on("HeapProfiler.addHeapSnapshotChunk", lambda event: chunks.append(event["chunk"]))

    def metrics() -> dict[str, float]:
        # A heap snapshot collects garbage the way DevTools does before it reports retained
        # memory; the snapshot itself says what the live objects are.
        chunks.clear()
        cdp.send("HeapProfiler.takeHeapSnapshot", {"reportProgress": False})
        values = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        return values | live_sizes("".join(chunks))

    before, frames_before = metrics(), page.evaluate("window.__frames")
    print(f"minute 0: {heap_line(before)}", flush=True)
    for minute in range(1, int(args.duration // 60) + 1):
        time.sleep(60)
        print(f"minute {minute}: {heap_line(metrics())}", flush=True)
    time.sleep(args.duration % 60)
    after, frames_after = metrics(), page.evaluate("window.__frames")
    long_tasks = page.evaluate("window.__longTasks")

    frames = frames_after - frames_before
    script_ms = 1000 * (after["ScriptDuration"] - before["ScriptDuration"])
    heap_start, heap_end = before["JSHeapUsedSize"], after["JSHeapUsedSize"]
    print(
        f"rate: {args.rate} records/s over {args.sources} sources, "
        f"measured {args.duration:.0f}s after a {args.warm_up:.0f} s warm-up"
    )
    print(
        f"frames: {frames} ({frames / args.duration:.0f}/s), "
        f"script per frame: {script_ms / max(1, frames):.2f} ms"
    )
    print(f"long tasks (>50 ms): {len(long_tasks)}, longest {max(long_tasks, default=0):.0f} ms")
    print(
        f"JS heap (JSHeapUsedSize after GC): {heap_start / 1e6:.1f} MB -> {heap_end / 1e6:.1f} MB "
        f"({100 * (heap_end - heap_start) / heap_start:+.1f} %)"
    )
    objects_start, objects_end = before["LiveObjects"], after["LiveObjects"]
    print(
        f"live objects in the heap snapshot, without compiled code: {objects_start / 1e6:.2f} MB -> "
        f"{objects_end / 1e6:.2f} MB ({100 * (objects_end - objects_start) / objects_start:+.1f} %)"
    )
    print(f"records sent: {sender.sent}")


if __name__ == "__main__":
    main()

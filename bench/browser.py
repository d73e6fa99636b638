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

Debian's chromium at /usr/bin/chromium.
"""

import argparse
import os
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
    parser.add_argument("--repeat", type=int, default=5, help="history run: choices of each range per tab")
    parser.add_argument("--rate", type=int, default=1000, help="records per second")
    parser.add_argument("--duration", type=float, default=180, help="seconds measured after the warm-up")
    parser.add_argument(
        "--warm-up",
        type=float,
        default=120,
        help="seconds before measuring (default 120): buffers fill and V8 finishes compiling the hot code, "
        "which otherwise shows as heap growth (a heap-snapshot diff found no data growing)",
    )
    parser.add_argument("--sources", type=int, default=6)
    parser.add_argument(
        "--backfill-minutes",
        type=int,
        default=0,
        help="store this many minutes of records at --rate before the page opens (default 0), "
        "as on a server that has been running: the page then starts from a full 30-minute window",
    )
    args = parser.parse_args()

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

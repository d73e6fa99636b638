"""Browser benchmark: a real Chromium on /analytics/ while records flow at --rate per second.

    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics \\
        .venv/bin/python bench/browser.py --rate 1000 --duration 180

Prints how soon the page is live, script time per animation frame (Chrome's own
ScriptDuration over the frames drawn), long tasks, console errors, and the JS heap after the
warm-up, every minute and at the end, each after the full garbage collection of a heap
snapshot: Chrome's JSHeapUsedSize, and the snapshot's live objects apart from V8's compiled
code (which grows while V8 optimises hot functions, and is not the page's data). Debian's
chromium at /usr/bin/chromium.
"""

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, manage, prepare  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
            page.click("button[type=submit]")
            page.wait_for_url("**/analytics/")
            page.wait_for_selector('#connection[data-connection-state="live"]')
            live_ms = page.evaluate(
                "performance.getEntriesByType('navigation')[0] && "
                "performance.now() - performance.getEntriesByType('navigation')[0].startTime"
            )
            page.add_script_tag(content=COUNT_FRAMES)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            sender.start()
            time.sleep(args.warm_up)

            cdp.send("HeapProfiler.enable")
            chunks: list[str] = []
            cdp.on("HeapProfiler.addHeapSnapshotChunk", lambda event: chunks.append(event["chunk"]))

            def metrics() -> dict[str, float]:
                # A heap snapshot collects garbage the way DevTools does before it reports
                # retained memory; the snapshot itself says what the live objects are.
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
            browser.close()
    finally:
        sender.stop.set()
        server.stop()

    frames = frames_after - frames_before
    script_ms = 1000 * (after["ScriptDuration"] - before["ScriptDuration"])
    heap_start, heap_end = before["JSHeapUsedSize"], after["JSHeapUsedSize"]
    print(f"machine: {machine()}, Chromium headless, server and sender on the same machine")
    print(
        f"rate: {args.rate} records/s over {args.sources} sources, "
        f"measured {args.duration:.0f}s after a {args.warm_up:.0f} s warm-up"
    )
    print(f"page live after load: {live_ms:.0f} ms")
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
    print(f"records sent: {sender.sent}, console errors: {len(errors)}")
    for error in errors[:5]:
        print(f"  {error}")


if __name__ == "__main__":
    main()

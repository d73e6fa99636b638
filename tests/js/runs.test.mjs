// The run page's comparison (static/js/run-page.js) and the Scheduler section's runs
// (static/js/runs.js), from answers shaped as GET /api/runs/ gives them
// (tests/integration/test_runs_api.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import { comparisonRows } from "../../static/js/run-page.js";
import { runCells, runsUrl } from "../../static/js/runs.js";

const RUN = {
  runId: "qr-0010", schedulerName: "quotes-refresh", sources: ["cnbc"], startedAt: "2026-12-07T01:00:00Z",
  endedAt: "2026-12-07T01:01:00Z", state: "finished", success: true, durationMs: 60000, pages: 40,
  failedPages: 14, items: 120, bytes: 26000, statuses: { 200: 26, 503: 14 },
  fields: { price: { items: 120, filled: 30, invalid: 0 } }, entities: 0, verdict: "run_degraded",
  summary: "quotes-refresh run qr-0010: 120 items, its last 10 runs 480–516; 14 of 40 pages failed, usually 0–1",
  outside: ["items", "failedPages", "fields.price"],
  comparison: { runs: 10, items: { min: 480, max: 516 }, pages: { min: 40, max: 40 }, failedPages: { min: 0, max: 1 },
                durationMs: { min: 60000, max: 69000 }, fields: { price: { filledRatio: { min: 1, max: 1 } } } },
};

test("each measure against its usual range, marked where the server found it out of range", () => {
  const rows = comparisonRows(RUN);
  assert.deepEqual(rows.map((r) => [r.label, r.value, r.usual, r.outside]), [
    ["Items", "120", "480 – 516", true],
    ["Pages", "40", "40", false],
    ["Failed pages", "14", "0 – 1", true],
    ["Duration", "1 min", "1 min – 1.2 min", false],
    ["price filled", "25 %", "100 %", true],
  ]);
});

test("a run with nothing to compare with shows dashes for its usual", () => {
  const rows = comparisonRows({ ...RUN, outside: [], comparison: { runs: 0 } });
  assert.ok(rows.every((r) => r.usual === "–" && !r.outside));
});

test("the runs' query follows the source filter", () => {
  assert.equal(runsUrl("*", false), "/api/runs/?limit=20");
  assert.equal(runsUrl("cnbc", false), "/api/runs/?limit=20&source=cnbc");
  assert.equal(runsUrl("nightly", true), "/api/runs/?limit=20&scheduler=nightly");
});

test("a run's row says degraded, with its numbers", () => {
  const cells = runCells(RUN, Date.parse("2026-12-07T01:05:00Z"));
  assert.deepEqual(cells, {
    run: "qr-0010", scheduler: "quotes-refresh", state: "degraded", started: "5 min ago",
    duration: "1 min", pages: "40", failed: "14", items: "120",
  });
  assert.equal(runCells({ ...RUN, verdict: null, state: "running", schedulerName: null }).scheduler, "–");
});

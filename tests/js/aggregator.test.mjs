import assert from "node:assert/strict";
import { test } from "node:test";

import { ChartAdapter, MetricAggregator as M } from "../../static/js/chart-adapter.js";
import { channelOf, durationOf } from "../../static/js/records.js";

const nav = (ms, extra = {}) => ({ type: "page_navigation", scraperSource: "cnbc", navigationDurationMs: ms, success: true, recordedAt: 1000, ...extra });

test("average, min, max and nearest-rank p95", () => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(M.avg(values), 50.5);
  assert.equal(M.min(values), 1);
  assert.equal(M.max(values), 100);
  assert.equal(M.p95(values), 95);
  assert.equal(M.p95([7]), 7);
  assert.equal(M.avg([]), null);
  assert.equal(M.p95([]), null);
});

test("success rate, count and items", () => {
  const records = [nav(1), nav(2, { success: false }), { type: "page_scrape", scraperSource: "cnbc", scrapeDurationMs: 3, itemsExtracted: 5, success: true }];
  assert.equal(M.count(records), 3);
  assert.equal(Math.round(M.successRate(records)), 67);
  assert.equal(M.items(records), 5);
  assert.equal(M.successRate([]), null);
});

test("durations follow the record type", () => {
  assert.equal(durationOf(nav(12)), 12);
  assert.equal(durationOf({ type: "scheduler_run", executionDurationMs: 40 }), 40);
  assert.deepEqual(M.durations([nav(1), { type: "page_scrape", scrapeDurationMs: 2 }]), [1, 2]);
});

test("group by source (a bare scheduler is its own channel) and by type", () => {
  const records = [nav(1), nav(2, { scraperSource: "webull" }), { type: "scheduler_run", schedulerName: "hourly", scraperSource: null }];
  const bySource = M.groupBy(records, "source");
  assert.deepEqual([...bySource.keys()], ["cnbc", "webull", "hourly"]);
  assert.equal(channelOf(records[2]), "hourly");
  assert.deepEqual([...M.groupBy(records, "type").keys()], ["page_navigation", "scheduler_run"]);
});

test("time filter and summary", () => {
  const records = [nav(10, { recordedAt: 1 }), nav(20, { recordedAt: 5 }), nav(30, { recordedAt: 9 })];
  assert.deepEqual(M.since(records, 5).map((r) => r.recordedAt), [5, 9]);
  assert.deepEqual(M.summary(records), { count: 3, successRate: 100, avg: 20, min: 10, max: 30, p95: 30, items: 0 });
});

test("CSV export quotes what needs quoting", () => {
  class Fake extends ChartAdapter {
    data() {
      return { labels: ["a", 'b "x"'], series: { "p95, ms": [1, 2] } };
    }
  }
  assert.equal(new Fake().toCSV(null), 'label,"p95, ms"\na,1\n"b ""x""",2\n');
});

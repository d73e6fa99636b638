import assert from "node:assert/strict";
import { test } from "node:test";

import { toCSV } from "../../static/js/charts.js";
import { OTHERS, formatAgo, formatDuration, formatPeriod, formatRatio, plural } from "../../static/js/format.js";
import { channelOf, durationOf } from "../../static/js/records.js";
import { RangeView } from "../../static/js/view.js";

const MINUTE = 60_000;
const T0 = Date.parse("2026-11-26T10:00:00Z");

function bucket(count, ok = count, avg = 100) {
  return { count, successCount: ok, avgDurationMs: avg, itemsExtracted: 0, retries: 0, dataSize: 0,
           p50DurationMs: avg, p95DurationMs: avg, p99DurationMs: avg };
}

function overview(series, channels) {
  const axis = [0, 1, 2].map((i) => new Date(T0 + i * MINUTE).toISOString().replace(".000Z", "Z"));
  const sources = Object.fromEntries(Object.entries(series).map(([name, named]) => [
    name, { records: named.all.reduce((n, b) => n + (b?.count ?? 0), 0), successCount: named.all.reduce((n, b) => n + (b?.successCount ?? 0), 0) },
  ]));
  return {
    range: { name: "live", bucket: "minute", label: "last 30 minutes", bucketLabel: "per minute" },
    axis, channels, series, sources, totals: { records: 0, successCount: 0, failures: 0, itemsExtracted: 0, retries: 0, dataSize: 0 },
    schedulers: {},
  };
}

test("durations read in ms below a second and in s above, to 2-3 figures", () => {
  assert.equal(formatDuration(412), "412 ms");
  assert.equal(formatDuration(2116.5), "2.1 s");
  assert.equal(formatDuration(45_000), "45 s");
  assert.equal(formatDuration(null), "–");
  assert.equal(formatPeriod({ seconds: 3600, state: "learned", runs: 10 }), "every 1 h");
  assert.equal(formatAgo(T0 - 3 * MINUTE, T0), "3 min ago");
});

test("ratios read to 3 figures and counts agree with their noun", () => {
  assert.deepEqual([20, 5, 0.8, 1.256].map(formatRatio), ["20", "5", "0.8", "1.26"]);
  assert.equal(plural(1, "failure"), "1 failure");
  assert.equal(plural(2048, "failure"), "2,048 failures");
});

test("the busiest channels are drawn, the rest together as others, none dropped", () => {
  const channels = ["a", "b", "c", "d"].map((name) => ({ name, kind: "scraper" }));
  const series = {
    a: { all: [bucket(5), null, bucket(1)] },
    b: { all: [bucket(9), bucket(9), null] },
    c: { all: [bucket(1), null, null] },
    d: { all: [null, bucket(2), null] },
  };
  const view = new RangeView(overview(series, channels));
  assert.deepEqual(view.busiest("scraper", 2), { shown: ["b", "a"], others: ["d", "c"] });
  const counts = view.valuesByChannel("scraper", 2, "all", (b) => b.count);
  assert.deepEqual(counts, { b: [9, 9, null], a: [5, null, 1], [OTHERS]: [1, 2, null] });
});

test("live records fill their minute and move the axis on", () => {
  const view = new RangeView(overview({ cnbc: { all: [bucket(1), null, null] } }, [{ name: "cnbc", kind: "scraper" }]));
  const record = { type: "page_navigation", scraperSource: "cnbc", navigationDurationMs: 300, success: false,
                   recordedAt: T0 + 2 * MINUTE + 5 };
  view.add(record);
  assert.equal(view.buckets("cnbc")[2].count, 1);
  assert.equal(view.sources.cnbc.records, 1); // the totals are the server's (takeUpdate), not summed here
  view.add({ ...record, recordedAt: T0 + 3 * MINUTE + 1, success: true });
  assert.equal(view.axis.length, 3);
  assert.equal(view.axisMs[2], T0 + 3 * MINUTE);
  assert.deepEqual(view.buckets("cnbc").map((b) => b?.count ?? null), [null, 1, 1]);
  assert.equal(view.partialIndex, 2);
  view.add({ type: "scheduler_run", schedulerName: "nightly", executionDurationMs: 5, success: true, recordedAt: T0 + 3 * MINUTE });
  assert.deepEqual(view.channelsOf("scheduler").map((c) => c.name), ["nightly"]);
  assert.equal(view.schedulers.nightly.lastRunAt, T0 + 3 * MINUTE);
});

test("record rules: durations follow the type, a bare scheduler is its own channel", () => {
  assert.equal(durationOf({ type: "scheduler_run", executionDurationMs: 40 }), 40);
  assert.equal(channelOf({ type: "scheduler_run", schedulerName: "hourly", scraperSource: null }), "hourly");
});

test("CSV export quotes what needs quoting", () => {
  const shown = { labels: ["a", 'b "x"'], series: { "p95, ms": [1, 2] } };
  assert.equal(toCSV(shown), 'label,"p95, ms"\na,1\n"b ""x""",2\n');
});

test("CSV over time: ISO 8601 times, not the axis's '12:37 AM', values rounded, the filling bucket marked", () => {
  const shown = {
    labels: ["12:36 AM", "12:37 AM"], times: ["2026-11-26T00:36:00Z", "2026-11-26T00:37:00Z"], partial: 1,
    series: { cnbc: [3, null], "error rate %": [33.33333333333333, 0.1 + 0.2] },
  };
  assert.equal(toCSV(shown),
    'time,cnbc,error rate %,partial\n2026-11-26T00:36:00Z,3,33.33,\n2026-11-26T00:37:00Z,,0.3,true\n');
});

test("channels the server summed (its rest) count in the others, the error rate and the bars", () => {
  const a = [bucket(4, 4), null, bucket(2, 1)];
  const view = new RangeView({
    ...overview({ a: { all: a } }, [{ name: "a", kind: "scraper" }, { name: "b", kind: "scraper" }]),
    rest: { scraper: { channels: 1, totals: { records: 10, successCount: 5, avgDurationMs: 200 },
                       series: { all: [bucket(6, 3, 200), bucket(4, 2, 200), null] } } },
  });
  view.sources.a = { records: 6, successCount: 5, avgDurationMs: 100 };
  const series = view.valuesByChannel("scraper", 1, "all", (b) => b.count, 0);
  assert.deepEqual(series, { a: [4, 0, 2], [OTHERS]: [6, 4, 0] });
  assert.deepEqual(view.errorRate("scraper"), [30, 50, 50]);
  const bars = view.totalsByChannel("scraper", 1);
  assert.deepEqual(bars.map(([name, t]) => [name, t.records, t.successRate]), [["a", 6, undefined], [OTHERS, 10, 50]]);
});

test("live totals are the server's last metrics:update, taken whole: p95 never lags the counts", () => {
  const live = new RangeView(overview({ a: { all: [bucket(2), bucket(2), null] } }, [{ name: "a", kind: "scraper" }]));
  live.totals = { records: 4, successCount: 4, failures: 0, avgDurationMs: 100, p95DurationMs: 100 };
  live.sources.b = { records: 1, successCount: 1, previous: { records: 1 } };
  const figures = { records: 9, successCount: 7, successRate: 77.8, avgDurationMs: 900, p95DurationMs: 2400 };
  live.takeUpdate({ totals: figures, sources: { a: figures, b: figures } });
  for (const totals of [live.totals, live.sources.a, live.sources.b]) {
    assert.equal(totals.records, 9);
    assert.equal(totals.failures, 2);
    assert.equal(totals.p95DurationMs, 2400);
  }
  assert.deepEqual(live.sources.b.previous, { records: 1 }); // the range before stays the overview's
  live.add({ type: "page_scrape", scraperSource: "a", scrapeDurationMs: 5, success: true, itemsExtracted: 1,
             recordedAt: T0 + 2 * MINUTE });
  assert.equal(live.totals.records, 9); // until the next update

  const filtered = new RangeView(overview({ a: { all: [bucket(2), null, null] } }, [{ name: "a", kind: "scraper" }]));
  filtered.takeUpdate({ totals: { ...figures, records: 100, successCount: 100 }, sources: { a: figures } }, "a");
  assert.equal(filtered.totals.records, 9); // the filter's source, not everyone's

  const week = new RangeView({ ...overview({}, []), range: { name: "7d", bucket: "hour", label: "last 7 days" } });
  week.takeUpdate({ totals: figures, sources: {} });
  assert.equal(week.totals.records, 0); // the other ranges keep their own
});

test("a period is said only once learned: 'learning: 2 runs' before, 'irregular' when runs disagree", () => {
  assert.equal(formatPeriod({ seconds: null, state: "learning", runs: 2 }), "learning: 2 runs");
  assert.equal(formatPeriod({ seconds: null, state: "irregular", runs: 10 }), "irregular: last 10 runs");
  assert.equal(formatPeriod(null), "learning");
});

function withRuns(scheduler) {
  const view = new RangeView(overview({}, []));
  view.schedulers.hourly = { totals: { records: 0, successCount: 0 }, period: null, lastRunAt: null, ...scheduler };
  return view;
}

test("a scheduler's runs are drawn one by one while the server sent them so", () => {
  const runs = [{ recordedAt: T0, durationMs: 40, items: 7, success: true, error: null },
                { recordedAt: T0 + MINUTE, durationMs: 90, items: 0, success: false, error: "boom" }];
  const drawn = withRuns({ runs, ranges: null, failedRuns: null }).runsToDraw("hourly", "items");
  assert.deepEqual(drawn.points.map((p) => [p.x, p.y, p.failed]), [[T0, 7, false], [T0 + MINUTE, 0, true]]);
  assert.equal(drawn.ranges, null);
});

test("too many runs: each bucket's range of single runs and each failed run, never a sum", () => {
  const ranges = [{ start: new Date(T0).toISOString(), runs: 12, failed: 2, durationMs: [30, 95], items: [40, 60] }];
  const failedRuns = [{ recordedAt: T0 + 5, durationMs: 95, items: 0, success: false, error: "x" },
                      { recordedAt: T0 + 9, durationMs: 30, items: 0, success: false, error: "y" }];
  const view = withRuns({ runs: null, ranges, failedRuns });
  const drawn = view.runsToDraw("hourly", "items");
  assert.equal(drawn.points, null);
  assert.deepEqual(drawn.ranges, [{ x: T0 + MINUTE / 2, y: [40, 60], runs: 12, failed: 2 }]);
  assert.deepEqual(drawn.marks.map((m) => [m.x, m.y]), [[T0 + 5, 0], [T0 + 9, 0]]);
  // failed runs too many to send: a mark per bucket that holds failures, saying how many
  const counted = withRuns({ runs: null, ranges, failedRuns: null }).runsToDraw("hourly", "durationMs");
  assert.deepEqual(counted.marks, [{ x: T0 + MINUTE / 2, y: 95, failed: 2 }]);
});

test("a live run widens its bucket's range and is counted", () => {
  const ranges = [{ start: new Date(T0 + 2 * MINUTE).toISOString().replace(".000Z", "Z"), runs: 3, failed: 0,
                    durationMs: [30, 40], items: [5, 6] }];
  const view = withRuns({ runs: null, ranges, failedRuns: [], totals: { records: 3, successCount: 3 } });
  view.add({ type: "scheduler_run", schedulerName: "hourly", executionDurationMs: 80, itemsProcessed: 0,
             success: false, error: "boom", recordedAt: T0 + 2 * MINUTE + 10 });
  const scheduler = view.schedulers.hourly;
  assert.deepEqual([scheduler.totals.records, scheduler.totals.failures], [4, 1]);
  assert.deepEqual(scheduler.ranges[0], { start: "2026-11-26T10:02:00Z", runs: 4, failed: 1, durationMs: [30, 80],
                                          items: [0, 6] });
  assert.equal(scheduler.failedRuns.length, 1);
});

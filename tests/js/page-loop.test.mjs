import assert from "node:assert/strict";
import { test } from "node:test";

import { PageLoop } from "../../static/js/page-loop.js";

const T0 = Date.now() - (Date.now() % 60_000);

function overview(range = "live") {
  const axis = [T0 - 60_000, T0].map((ms) => new Date(ms).toISOString());
  return {
    range: { name: range, bucket: "minute", label: "last 30 minutes", bucketLabel: "per minute" },
    axis, channels: [], series: {}, sources: {}, totals: { records: 0, successCount: 0, failures: 0 }, schedulers: {},
  };
}

const record = (source, at = T0 + 1000) => ({ type: "page_navigation", scraperSource: source, url: "u",
  navigationDurationMs: 120, retryCount: 0, success: true, error: null, recordedAt: at });

test("the pages only define things: importing them touches no page", async () => {
  const analytics = await import("../../static/js/analytics.js");
  const source = await import("../../static/js/source-page.js");
  assert.equal(typeof analytics.main, "function");
  assert.equal(typeof source.main, "function");
});

test("an answer overtaken by a newer choice is dropped", async () => {
  const answers = [];
  const loop = new PageLoop({ render: () => {}, fetchJSON: (url) => new Promise((resolve) => answers.push({ url, resolve })) });
  const first = loop.load();
  loop.range = "7d";
  const second = loop.load();
  answers[1].resolve(overview("7d"));
  await second;
  answers[0].resolve(overview("live")); // the older answer comes last
  await first;
  assert.equal(loop.view.range.name, "7d");
  assert.match(answers[1].url, /range=7d/);
});

test("live records of the chosen source are added; history is not; a poll reloads", async () => {
  let loads = 0;
  const loop = new PageLoop({ source: "cnbc", render: () => {}, fetchJSON: async () => (loads++, overview()) });
  await loop.load();
  loop.onRecords({ origin: "live", metrics: [record("cnbc"), record("webull")] });
  loop.onRecords({ origin: "history", metrics: [record("cnbc")] });
  assert.equal(loop.view.buckets("cnbc").reduce((n, b) => n + (b?.count ?? 0), 0), 1);
  assert.deepEqual(loop.view.channels.map((c) => c.name), ["cnbc"]);
  loop.onRecords({ origin: "poll", metrics: [record("cnbc")] });
  loop.onRecords({ origin: "poll", metrics: [record("cnbc")] }); // one reload for a burst of polls
  await new Promise((resolve) => setTimeout(resolve, 3200));
  assert.equal(loads, 2);
});

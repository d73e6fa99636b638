// One source's own page (/analytics/source/<name>/): its volume and error rate, its p50/p95/p99,
// items per scrape, bytes per page and retries over the chosen range, and its failures grouped
// by message. Live in the live range, like the overview.

import { AlertsView } from "./alerts.js";
import { ChartJsAdapter } from "./chartjs-adapter.js";
import { FailuresView } from "./failures.js";
import { bucketLabel, formatAgo, formatTime } from "./format.js";
import { connect, getJSON, renderTiles } from "./page.js";
import { RangeView } from "./view.js";

const RELOAD_MS = 60_000;
const source = JSON.parse(document.getElementById("source-name").textContent);
const rangeSelect = document.querySelector("#range");
const lastRecord = document.querySelector("#last-record");
const params = new URLSearchParams(location.search);
const state = { range: params.get("range") ?? "live", view: null, loading: 0, frame: 0 };

const labels = (view) => view.axis.map((iso) => bucketLabel(iso, view.range.bucket));
const per = (view, type, value, empty = null) => view.values(source, type, (b) => (b.count ? value(b) : null), empty);

const CHARTS = {
  volume: {
    kind: "stacked", unit: "count", overlayUnit: "%", colours: { "alert firing": "#7c3aed" },
    title: (v) => `Records ${v.range.bucketLabel}, and the error rate (${v.range.label})`,
    data: (v) => ({
      labels: labels(v),
      series: Object.fromEntries(
        ["page_navigation", "page_scrape", "scheduler_run"]
          .filter((type) => v.series[source]?.[type])
          .map((type) => [type.replace("page_", "").replace("_", " "), per(v, type, (b) => b.count, 0)]),
      ),
      extra: {
        partial: v.partialIndex,
        overlay: { "error rate %": v.axis.map((_, i) => errorRate(v, i)), "alert firing": alertPeriods(v) },
      },
    }),
  },
  percentiles: {
    kind: "line", unit: "ms", colours: { p50: "#16a34a", p95: "#d97706", p99: "#c0362c" }, title: (v) => `Duration percentiles, ${v.range.label}, ${v.range.bucketLabel}`,
    data: (v) => ({
      labels: labels(v),
      series: { p50: per(v, "all", (b) => b.p50DurationMs), p95: per(v, "all", (b) => b.p95DurationMs),
                p99: per(v, "all", (b) => b.p99DurationMs) },
      extra: { partial: v.partialIndex },
    }),
  },
  itemsPerScrape: {
    kind: "line", unit: "ratio", title: (v) => `Items per scrape (${v.range.label})`,
    data: (v) => ({ labels: labels(v), series: { "items per scrape": per(v, "page_scrape", (b) => b.itemsExtracted / b.count) },
                    extra: { partial: v.partialIndex } }),
  },
  bytesPerPage: {
    kind: "line", unit: "bytes", title: (v) => `Bytes per page (${v.range.label})`,
    data: (v) => ({ labels: labels(v), series: { "bytes per page": per(v, "page_scrape", (b) => b.dataSize / b.count) },
                    extra: { partial: v.partialIndex } }),
  },
  retries: {
    kind: "line", unit: "ratio", title: (v) => `Retries per navigation (${v.range.label})`,
    data: (v) => ({ labels: labels(v), series: { "retries per navigation": per(v, "page_navigation", (b) => b.retries / b.count) },
                    extra: { partial: v.partialIndex } }),
  },
};

// 100 (the top of the % axis) in every bucket an alert of this source was firing in, so the
// alert periods show as a bar along the top of the timeline.
function alertPeriods(view) {
  const step = view.range.bucket === "minute" ? 60_000 : 3_600_000;
  const periods = [...alerts.firing, ...alerts.resolved].map((a) => [Date.parse(a.startsAt), a.endsAt ? Date.parse(a.endsAt) : Date.now()]);
  return view.axis.map((iso) => {
    const start = Date.parse(iso);
    return periods.some(([from, to]) => from < start + step && start < to) ? 100 : null;
  });
}

function errorRate(view, i) {
  const bucket = view.buckets(source, "all")[i];
  return bucket?.count ? (100 * (bucket.count - bucket.successCount)) / bucket.count : null;
}

const adapter = new ChartJsAdapter(globalThis.Chart);
const charts = new Map();
const failures = new FailuresView(document.querySelector("#tab-source"), getJSON);
const alerts = new AlertsView(document.querySelector("#tab-source"), getJSON, () => invalidate());

function invalidate() {
  if (!state.frame) state.frame = requestAnimationFrame(render);
}

function render() {
  state.frame = 0;
  if (!state.view) return;
  if (!globalThis.Chart) return invalidate();
  adapter.Chart = globalThis.Chart;
  renderTiles(state.view);
  const channel = state.view.channels.find((c) => c.name === source);
  lastRecord.textContent = channel?.lastRecordedAt
    ? `Last record ${formatAgo(channel.lastRecordedAt)} (${formatTime(channel.lastRecordedAt)})`
    : `No record in the ${state.view.range.label}.`;
  for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
    const name = canvas.dataset.chart;
    if (!charts.has(name)) charts.set(name, adapter.create(canvas, { ...CHARTS[name], title: "" }));
    const chart = charts.get(name);
    chart.options.plugins.title.text = CHARTS[name].title(state.view);
    const { labels: x, series, extra } = CHARTS[name].data(state.view);
    adapter.setData(chart, x, series, extra);
  }
}

async function load() {
  const ticket = ++state.loading;
  const view = new RangeView(await getJSON(`/api/metrics/overview/?range=${state.range}&source=${encodeURIComponent(source)}`));
  if (ticket !== state.loading) return;
  state.view = view;
  invalidate();
  await Promise.all([failures.show(state.range, source), alerts.load(source)]);
}

function onRecords({ metrics, origin }) {
  if ((origin !== "live" && origin !== "resync") || state.range !== "live" || !state.view) return;
  for (const record of metrics) state.view.add(record);
  invalidate();
}

rangeSelect.value = state.range;
rangeSelect.addEventListener("change", () => {
  state.range = rangeSelect.value;
  history.replaceState(null, "", `?range=${state.range}`);
  load().catch(console.warn);
});
const client = connect(source, onRecords);
client.on("alert", () => alerts.load(source).catch(console.warn));
client.on("resync_truncated", () => load().catch(console.warn)); // too much missed: reload the range
setInterval(() => load().catch(console.warn), RELOAD_MS);
load().catch(console.warn);

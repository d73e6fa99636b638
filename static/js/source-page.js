// One source's own page (/analytics/source/<name>/): its volume and error rate, its p50/p95/p99,
// items per scrape, bytes per page and retries over the chosen range, and its failures grouped
// by message. Live in the live range, like the overview.

import { AlertsView } from "./alerts.js";
import { Charts } from "./charts.js";
import { DataView } from "./data.js";
import { FailuresView } from "./failures.js";
import { bucketLabel, formatAgo, formatTime } from "./format.js";
import { getJSON, renderTiles } from "./page.js";
import { PageLoop } from "./page-loop.js";

const ALERT_BAND_COLOUR = "#7c3aed"; // violet: no source's, nor the error rate's red
let source = ""; // the page's source, from the page (main)
let alerts = null; // its AlertsView

const labels = (view) => view.axis.map((iso) => bucketLabel(iso, view.range.bucket));
const overAxis = (view) => ({ partial: view.partialIndex, times: view.axis }); // every chart here is over time
const per = (view, type, value, empty = null) => view.values(source, type, (b) => (b.count ? value(b) : null), empty);

export const CHARTS = {
  volume: {
    kind: "stacked", unit: "count", overlayUnit: "%", bands: { "alert firing": ALERT_BAND_COLOUR },
    title: (v) => `Records ${v.range.bucketLabel}, and the error rate (${v.range.label})`,
    data: (v) => ({
      labels: labels(v),
      series: Object.fromEntries(
        ["page_navigation", "page_scrape", "scheduler_run"]
          .filter((type) => v.series[source]?.[type])
          .map((type) => [type.replace("page_", "").replace("_", " "), per(v, type, (b) => b.count, 0)]),
      ),
      extra: {
        ...overAxis(v),
        overlay: { "error rate %": v.axis.map((_, i) => errorRate(v, i)) },
        bands: { "alert firing": alertPeriods(v) },
      },
    }),
  },
  percentiles: {
    kind: "line", unit: "ms", colours: { p50: "#16a34a", p95: "#d97706", p99: "#c0362c" }, title: (v) => `Duration percentiles, ${v.range.label}, ${v.range.bucketLabel}`,
    data: (v) => ({
      labels: labels(v),
      series: { p50: per(v, "all", (b) => b.p50DurationMs), p95: per(v, "all", (b) => b.p95DurationMs),
                p99: per(v, "all", (b) => b.p99DurationMs) },
      extra: overAxis(v),
    }),
  },
  itemsPerScrape: {
    kind: "line", unit: "ratio", title: (v) => `Items per scrape (${v.range.label})`,
    data: (v) => ({ labels: labels(v), series: { "items per scrape": per(v, "page_scrape", (b) => b.itemsExtracted / b.count) },
                    extra: overAxis(v) }),
  },
  bytesPerPage: {
    kind: "line", unit: "bytes", title: (v) => `Bytes per page (${v.range.label})`,
    data: (v) => ({ labels: labels(v), series: { "bytes per page": per(v, "page_scrape", (b) => b.dataSize / b.count) },
                    extra: overAxis(v) }),
  },
  retries: {
    kind: "line", unit: "ratio", title: (v) => `Retries per navigation (${v.range.label})`,
    data: (v) => ({ labels: labels(v), series: { "retries per navigation": per(v, "page_navigation", (b) => b.retries / b.count) },
                    extra: overAxis(v) }),
  },
};

// Whether an alert of this source was firing in each bucket: shaded from the chart's foot to
// its top behind the records.
function alertPeriods(view) {
  const step = view.range.bucket === "minute" ? 60_000 : 3_600_000;
  const periods = [...alerts.firing, ...alerts.resolved].map((a) => [Date.parse(a.startsAt), a.endsAt ? Date.parse(a.endsAt) : Date.now()]);
  return view.axis.map((iso) => {
    const start = Date.parse(iso);
    return periods.some(([from, to]) => from < start + step && start < to);
  });
}

function errorRate(view, i) {
  const bucket = view.buckets(source, "all")[i];
  return bucket?.count ? (100 * (bucket.count - bucket.successCount)) / bucket.count : null;
}

export function main() {
  source = JSON.parse(document.getElementById("source-name").textContent);
  const root = document.querySelector("#tab-source");
  const rangeSelect = document.querySelector("#range");
  const lastRecord = document.querySelector("#last-record");
  const charts = new Charts();
  const failures = new FailuresView(root, getJSON);
  const data = new DataView(document.querySelector("#source-data"), getJSON);

  function render(dirty, view) {
    renderTiles(view);
    const channel = view.channels.find((c) => c.name === source);
    lastRecord.textContent = channel?.lastRecordedAt
      ? `Last record ${formatAgo(channel.lastRecordedAt)} (${formatTime(channel.lastRecordedAt)})`
      : `No record in the ${view.range.label}.`;
    if (!charts.draw(root, CHARTS, view)) loop.invalidate("view");
  }

  const loop = new PageLoop({
    range: new URLSearchParams(location.search).get("range") ?? "live",
    source,
    render,
    loaded: (view) => Promise.all([failures.show(loop.range, source), alerts.load(source), data.show(view.range, source)]),
  });
  alerts = new AlertsView(root, getJSON, () => loop.invalidate("view"));
  rangeSelect.value = loop.range;
  rangeSelect.addEventListener("change", () => {
    loop.range = rangeSelect.value;
    history.replaceState(null, "", `?range=${loop.range}`);
    loop.reload();
  });
  const client = loop.start(source);
  const loadAlerts = () => alerts.load(source).catch(console.warn);
  client.on("alert", loadAlerts);
  alerts.keepCurrent(loadAlerts);
}

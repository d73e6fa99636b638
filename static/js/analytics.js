// The analytics page: one request for a range's state (GET /api/metrics/overview/), one
// WebSocket for what happens next. The chosen range and source apply to every tile, card, bar
// and chart; charts are redrawn at most once per animation frame, and only the visible tab's.

import { AlertsView } from "./alerts.js";
import { Charts } from "./charts.js";
import { DataView } from "./data.js";
import { FailuresView } from "./failures.js";
import {
  OTHERS, bucketLabel, formatAgo, formatChange, formatCount, formatDuration, formatPercent, formatPeriod, plural,
} from "./format.js";
import { getJSON, renderTiles } from "./page.js";
import { PageLoop } from "./page-loop.js";
import { WILDCARD } from "./records.js";
import { RunsView } from "./runs.js";

const TOP = 8; // sources drawn one by one in a chart; the rest are "others"
const TOP_BARS = 20; // sources given a bar of their own in the by-source charts
const SILENT_AFTER_MS = 15 * 60_000; // a source quiet this long is shown as stopped

const $ = (selector) => document.querySelector(selector);
// What main() finds and makes: the page's elements, the loop, the charts and the alert and
// failure panels. Nothing touches the page until main() runs.
let els = null;
let loop = null;
let charts = null;
let alerts = null;
let failures = null;
let data = null;
let runs = null; // the Scheduler tab's RunsView
let tab = "overview";

// --- what each chart shows -------------------------------------------------------------------

const axisLabels = (view) => view.axis.map((iso) => bucketLabel(iso, view.range.bucket));
const windowOf = (view) => `${view.range.label}, ${view.range.bucketLabel}`;
const avgDuration = (b) => b.avgDurationMs;

function overTime(view, kind, type, value, overlay, empty = null) {
  return {
    labels: axisLabels(view),
    series: view.valuesByChannel(kind, TOP, type, value, empty),
    extra: { partial: view.partialIndex, times: view.axis, overlay },
  };
}

// A bar per busiest source (TOP_BARS of them), then the others together.
function bySource(view, value) {
  const rows = view.totalsByChannel("scraper", TOP_BARS);
  return { labels: rows.map(([name]) => name), series: { [value.label]: rows.map(([, totals]) => value.of(totals)) } };
}

// Each scheduler's runs of one measure: single runs, or each bucket's range of single runs with
// the failed runs marked (view.runsToDraw).
function schedulerRuns(view, measure) {
  const series = {};
  const marks = {};
  for (const name of Object.keys(view.schedulers)) {
    const { points, ranges, marks: failed } = view.runsToDraw(name, measure);
    series[name] = points ?? ranges;
    if (failed.length && !points) marks[`${name}: failed`] = failed;
  }
  return { labels: [], series, extra: { xRange: [view.axisMs[0], Date.now()], marks } };
}

// A scheduler chart's title; when some scheduler is drawn by bucket, it says what its bars are.
function runsTitle(view, measure) {
  const ranged = Object.values(view.schedulers).some((scheduler) => !scheduler.runs);
  const each = ranged ? `, each ${view.range.bucket}'s lowest to highest run` : "";
  return `Scheduler runs: ${measure}${each} (${view.range.label}; ✕ a failed run)`;
}

const CHARTS = {
  timeline: {
    kind: "stacked", unit: "count", overlayUnit: "%",
    title: (v) => `Records ${v.range.bucketLabel} by source, and the error rate (${v.range.label})`,
    data: (v) => overTime(v, "scraper", "all", (b) => b.count, { "error rate %": v.errorRate("scraper") }, 0),
  },
  successRate: {
    kind: "hbar", unit: "%", title: (v) => `Success rate by source (${v.range.label})`,
    data: (v) => bySource(v, { label: "success %", of: (t) => t.successRate ?? null }),
  },
  recordsBySource: {
    kind: "hbar", unit: "count", title: (v) => `Records by source (${v.range.label})`,
    data: (v) => bySource(v, { label: "records", of: (t) => t.records ?? 0 }),
  },
  comparison: {
    kind: "line", unit: "ms", title: (v) => `Average duration by source, ${windowOf(v)}`,
    data: (v) => overTime(v, "scraper", "all", avgDuration),
  },
  p95BySource: {
    kind: "hbar", unit: "ms", title: (v) => `p95 duration by source (${v.range.label})`,
    data: (v) => bySource(v, { label: "p95", of: (t) => t.p95DurationMs ?? null }),
  },
  volume: {
    kind: "line", unit: "count", title: (v) => `Records ${v.range.bucketLabel} by source (${v.range.label})`,
    data: (v) => overTime(v, "scraper", "all", (b) => b.count, undefined, 0),
  },
  navigationTrend: {
    kind: "line", unit: "ms", title: (v) => `Navigation time by source, ${windowOf(v)}`,
    data: (v) => overTime(v, "scraper", "page_navigation", avgDuration),
  },
  retries: {
    kind: "hbar", unit: "count", title: (v) => `Retries by source (${v.range.label})`,
    data: (v) => bySource(v, { label: "retries", of: (t) => t.retries ?? 0 }),
  },
  scrapeTrend: {
    kind: "line", unit: "ms", title: (v) => `Scrape duration by source, ${windowOf(v)}`,
    data: (v) => overTime(v, "scraper", "page_scrape", avgDuration),
  },
  itemsExtracted: {
    kind: "hbar", unit: "count", title: (v) => `Items extracted by source (${v.range.label})`,
    data: (v) => bySource(v, { label: "items", of: (t) => t.itemsExtracted ?? 0 }),
  },
  schedulerRuns: {
    kind: "scatter", unit: "ms", title: (v) => runsTitle(v, "duration"),
    data: (v) => schedulerRuns(v, "durationMs"),
  },
  schedulerItems: {
    kind: "scatter", unit: "count", title: (v) => runsTitle(v, "items processed"),
    data: (v) => schedulerRuns(v, "items"),
  },
};

// --- rendering -----------------------------------------------------------------------------

function render(dirty, view) {
  if (dirty.has("view")) renderTotals(view);
  if (dirty.has("view") || dirty.has("tab") || dirty.has("charts")) {
    if (!charts.draw($(`#tab-${tab}`), CHARTS, view)) loop.invalidate("charts");
  }
}

function renderTotals(view) {
  renderTiles(view);
  renderAlertCount();
  renderSourceOptions(view);
  renderScraperCards(view);
  renderSchedulerCards(view);
}

// A card for each source the server gave figures of (the busiest); how many more there are.
function renderScraperCards(view) {
  const figured = view.channelsOf("scraper").filter((channel) => view.sources[channel.name]);
  const more = view.channelsOf("scraper").length - figured.length;
  els.moreScrapers.hidden = more === 0;
  els.moreScrapers.textContent = `and ${formatCount(more)} more ${more === 1 ? "source" : "sources"} with fewer records: choose one in the source filter`;
  const cards = figured.sort((a, b) => a.name.localeCompare(b.name)).map((channel) => {
    const totals = view.sources[channel.name] ?? {};
    const card = els.cardTemplate.content.firstElementChild.cloneNode(true);
    const silent = !channel.lastRecordedAt || Date.now() - channel.lastRecordedAt > SILENT_AFTER_MS;
    const fields = {
      name: channel.name,
      records: formatCount(totals.records),
      successRate: formatPercent(totals.successRate),
      avgDurationMs: formatDuration(totals.avgDurationMs),
      p95DurationMs: formatDuration(totals.p95DurationMs),
      trendLabel: `vs the ${view.range.label.replace("last", "previous")}`,
      trend: formatChange(totals.trend),
      last: formatAgo(channel.lastRecordedAt),
    };
    for (const [field, text] of Object.entries(fields)) card.querySelector(`[data-field="${field}"]`).textContent = text;
    card.querySelector("a").href = sourceUrl(channel.name);
    card.classList.toggle("failing", (totals.successRate ?? 100) < 90);
    card.classList.toggle("stopped", silent);
    showAlertState(card, channel.name);
    return card;
  });
  els.grid.replaceChildren(...cards);
  els.noScrapers.hidden = cards.length > 0;
}

// A scheduler's card: its runs and failures in the range, counted by the server however many,
// and the period (with when it is late) that the scheduler_late alert uses.
function renderSchedulerCards(view) {
  const cards = Object.entries(view.schedulers).sort(([a], [b]) => a.localeCompare(b)).map(([name, scheduler]) => {
    const card = els.schedulerTemplate.content.firstElementChild.cloneNode(true);
    const totals = scheduler.totals ?? {};
    const lateAfter = scheduler.period?.lateAfterSeconds;
    const fields = {
      name,
      period: formatPeriod(scheduler.period),
      last: formatAgo(scheduler.lastRunAt),
      runs: formatCount(totals.records),
      failed: formatCount(totals.failures),
      avg: formatDuration(totals.avgDurationMs),
    };
    for (const [field, text] of Object.entries(fields)) card.querySelector(`[data-field="${field}"]`).textContent = text;
    card.querySelector('[data-field="period"]').title = lateAfter ? `late after ${formatDuration(lateAfter * 1000)} without a run` : "";
    card.classList.toggle("stopped", Boolean(lateAfter) && Date.now() - scheduler.lastRunAt > lateAfter * 1000);
    card.classList.toggle("failing", totals.failures > 0);
    showAlertState(card, name);
    return card;
  });
  els.schedulerGrid.replaceChildren(...cards);
  els.noSchedulers.hidden = cards.length > 0;
}

// A card's state: "ok", or the severity and verdict of its worst firing alert.
function showAlertState(card, name) {
  const alert = alerts.stateOf(name);
  const field = card.querySelector('[data-field="state"]');
  field.textContent = alert ? `${alert.severity}: ${alert.verdict.replaceAll("_", " ")}` : "ok";
  field.title = alert?.summary ?? "";
  field.className = alert?.severity ?? "";
  card.classList.toggle("alerting-critical", alert?.severity === "critical");
  card.classList.toggle("alerting-warning", alert?.severity === "warning");
}

// Every channel seen in the range, silent ones included; the chosen one stays on the list.
function renderSourceOptions(view) {
  const channels = view.channels.map((c) => c.name);
  if (loop.source !== WILDCARD && !channels.includes(loop.source)) channels.push(loop.source);
  const options = [els.source.options[0]];
  for (const name of channels.sort()) {
    const channel = view.channels.find((c) => c.name === name);
    const option = document.createElement("option");
    option.value = name;
    option.textContent = channel?.kind === "scheduler" ? `${name} (scheduler)` : name;
    options.push(option);
  }
  els.source.replaceChildren(...options);
  els.source.value = loop.source;
}

// The Alerts tab's badge: the alerts firing now, of the filter's source (failures have their
// own count in the tab).
function renderAlertCount() {
  const firing = alerts.firing.length;
  els.alertCount.textContent = firing ? formatCount(firing) : "";
  els.alertCount.title = firing ? `${plural(firing, "alert")} firing now` : "";
}

// --- wiring --------------------------------------------------------------------------------

function showTab(name) {
  tab = name;
  for (const button of els.tabs) button.setAttribute("aria-selected", String(button.dataset.tab === name));
  for (const section of document.querySelectorAll(".tab")) section.hidden = section.id !== `tab-${name}`;
  $(".exports").hidden = !document.querySelector(`#tab-${name} canvas`);
  if (name === "alerts") failures.show(loop.range, loop.source).catch(console.warn);
  if (name === "data") showData().catch(console.warn);
  if (name === "scheduler") showRuns().catch(console.warn);
  loop.invalidate("tab");
}

// The Data tab, for the chosen range and source; on "all sources", the busiest to choose from.
async function showData() {
  if (!loop.view) return;
  const busiest = loop.view.totalsByChannel("scraper", TOP).map(([name]) => name).filter((name) => name !== OTHERS);
  await data.show(loop.view.range, loop.source, busiest);
}

// The Scheduler tab's runs, of the source filter's choice.
async function showRuns() {
  const channel = loop.view?.channels?.find((c) => c.name === loop.source);
  await runs.show(loop.source, channel?.kind === "scheduler");
}

function chooseSource(name) {
  els.source.value = name;
  els.source.dispatchEvent(new Event("change"));
}

function sourceUrl(name) {
  return `/analytics/source/${encodeURIComponent(name)}/?range=${loop.range}`;
}

function openSource(name) {
  if (loop.view?.channels.some((c) => c.name === name)) location.assign(sourceUrl(name));
}

function exportCharts(format) {
  for (const [name, content] of charts.exports($(`#tab-${tab}`), format)) {
    const link = document.createElement("a");
    link.download = `${name}.${format}`;
    link.href = format === "png" ? content : URL.createObjectURL(new Blob([content], { type: "text/csv" }));
    link.click();
  }
}

export function main() {
  els = {
    range: $("#range"),
    source: $("#source-filter"),
    tabs: [...document.querySelectorAll("[data-tab]")],
    grid: $("#scraper-grid"),
    noScrapers: $("#no-scrapers"),
    moreScrapers: $("#more-scrapers"),
    cardTemplate: $("#scraper-card"),
    schedulerGrid: $("#scheduler-grid"),
    noSchedulers: $("#no-schedulers"),
    schedulerTemplate: $("#scheduler-card"),
    alertCount: $("#alert-count"),
  };
  charts = new Charts({ open: openSource });
  failures = new FailuresView($("#tab-alerts"), getJSON);
  data = new DataView($("#tab-data"), getJSON, chooseSource);
  runs = new RunsView($("#tab-scheduler"), getJSON);
  loop = new PageLoop({
    render,
    loaded: async () => {
      if (tab === "alerts") await failures.show(loop.range, loop.source);
      if (tab === "data") await showData(); // reloaded with the range, every RELOAD_MS
      if (tab === "scheduler") await showRuns();
    },
  });
  alerts = new AlertsView($("#tab-alerts"), getJSON, () => loop.invalidate("view"));

  const client = loop.start(WILDCARD);
  const loadAlerts = () => alerts.load(loop.source === WILDCARD ? null : loop.source).catch(console.warn);
  client.on("alert", loadAlerts); // an alert fired or resolved
  alerts.keepCurrent(loadAlerts);
  client.on("status", ({ state: connection }) => {
    if (connection === "live") loadAlerts(); // what changed while away
  });
  for (const button of els.tabs) button.addEventListener("click", () => showTab(button.dataset.tab));
  els.range.addEventListener("change", () => {
    loop.range = els.range.value;
    loop.reload();
  });
  els.source.addEventListener("change", () => {
    loop.source = els.source.value;
    loop.reload();
    loadAlerts();
  });
  $("#export-png").addEventListener("click", () => exportCharts("png"));
  $("#export-csv").addEventListener("click", () => exportCharts("csv"));
  setInterval(() => loop.invalidate("view"), 15_000); // "3 min ago" moves on
}

// The analytics page: one WebSocket, per-minute aggregates kept in bounded maps, charts
// redrawn at most once per animation frame and only for the visible tab.

import { WILDCARD, channelOf, durationOf } from "./records.js";
import { ChartJsAdapter } from "./chartjs-adapter.js";
import { MetricsWebSocketClient, State } from "./metrics-websocket-client.js";

const LIVE_MINUTES = 30;
const MAX_ALERTS = 200;
const MAX_SOURCES_CHARTED = 8;
const KIND = { page_navigation: "navigation", page_scrape: "scrape", scheduler_run: "execution" };
const RANGES = { "1h": [3600e3, "minute"], "24h": [86400e3, "hour"], "7d": [7 * 86400e3, "hour"] };

const $ = (selector) => document.querySelector(selector);
const els = {
  badge: $("#connection"),
  range: $("#range"),
  source: $("#source-filter"),
  tabs: [...document.querySelectorAll("[data-tab]")],
  stats: new Map([...document.querySelectorAll("[data-stat]")].map((el) => [el.dataset.stat, el])),
  grid: $("#scraper-grid"),
  cardTemplate: $("#scraper-card"),
  alerts: $("#alerts"),
  alertTemplate: $("#alert-item"),
  alertCount: $("#alert-count"),
};

const state = {
  tab: "overview",
  range: "live",
  source: WILDCARD,
  summary: null,
  minutes: new Map(), // minute start (ms) -> Map(source -> aggregate)
  history: null, // {labels, bySourceType: Map("source|kind" -> buckets)}
  alerts: [],
  seededBefore: Math.floor(Date.now() / 60000) * 60000,
  dirty: new Set(),
  frame: 0,
};

// --- per-minute aggregates ------------------------------------------------------------------

function emptyAggregate() {
  return { count: 0, ok: 0, retries: 0, items: 0, processed: 0, sum: { navigation: 0, scrape: 0, execution: 0 }, n: { navigation: 0, scrape: 0, execution: 0 } };
}

function addRecord(record) {
  const minute = Math.floor(record.recordedAt / 60000) * 60000;
  // Earlier minutes come whole from the history API (seedMinutes); counting a record there
  // too would count it twice.
  if (minute < state.seededBefore) return;
  let sources = state.minutes.get(minute);
  if (!sources) {
    sources = new Map();
    state.minutes.set(minute, sources);
    pruneMinutes();
  }
  const source = channelOf(record);
  let agg = sources.get(source);
  if (!agg) sources.set(source, (agg = emptyAggregate()));
  const kind = KIND[record.type];
  agg.count += 1;
  agg.ok += record.success ? 1 : 0;
  agg.retries += record.retryCount ?? 0;
  if (kind === "execution") agg.processed += record.itemsProcessed ?? 0;
  else agg.items += record.itemsExtracted ?? 0;
  agg.sum[kind] += durationOf(record);
  agg.n[kind] += 1;
}

function pruneMinutes() {
  const oldest = Date.now() - LIVE_MINUTES * 60000;
  for (const minute of state.minutes.keys()) if (minute < oldest) state.minutes.delete(minute);
}

function addAlert(record) {
  state.alerts.unshift(record);
  if (state.alerts.length > MAX_ALERTS) state.alerts.length = MAX_ALERTS;
}

function onRecords({ metrics }) {
  for (const record of metrics) {
    if (state.source !== WILDCARD && channelOf(record) !== state.source) continue;
    addRecord(record);
    if (!record.success) addAlert(record);
  }
  state.alerts.sort((a, b) => b.recordedAt - a.recordedAt);
  invalidate("charts", "alerts");
}

// --- series for the charts ------------------------------------------------------------------

// The most recently active sources, so the charts follow what is running now.
function chartedSources() {
  if (state.source !== WILDCARD) return [state.source];
  const sources = Object.entries(state.summary?.sources ?? {});
  sources.sort((a, b) => (b[1].lastRecordedAt ?? 0) - (a[1].lastRecordedAt ?? 0));
  return sources.slice(0, MAX_SOURCES_CHARTED).map(([name]) => name);
}

function minuteLabels() {
  const now = Math.floor(Date.now() / 60000) * 60000;
  const minutes = [];
  for (let m = now - (LIVE_MINUTES - 1) * 60000; m <= now; m += 60000) minutes.push(m);
  return minutes;
}

// Formatters are built once: toLocale*String with options builds a new one on every call.
const MINUTE = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
const DAY_MINUTE = new Intl.DateTimeFormat([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const SECOND = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const NUMBER = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

function timeLabel(ms, withDay = false) {
  return (withDay ? DAY_MINUTE : MINUTE).format(ms);
}

function liveSeries(value) {
  const minutes = minuteLabels();
  const series = {};
  for (const source of chartedSources()) {
    series[source] = minutes.map((m) => {
      const agg = state.minutes.get(m)?.get(source);
      return agg ? value(agg) : null;
    });
  }
  return { labels: minutes.map((m) => timeLabel(m)), series };
}

function historySeries(kind, value) {
  const { labels, bySourceType } = state.history;
  const series = {};
  for (const source of chartedSources()) {
    const buckets = new Map((bySourceType.get(`${source}|${kind}`) ?? []).map((b) => [b.start, b]));
    series[source] = labels.map((start) => (buckets.has(start) ? value(buckets.get(start)) : null));
  }
  return { labels: labels.map((start) => timeLabel(Date.parse(start), state.range !== "1h")), series };
}

function trend(kind) {
  if (state.range !== "live" && state.history) return historySeries(kind, (b) => b.avgDurationMs);
  const avg = (agg) => (kind === "all" ? totalAverage(agg) : agg.n[kind] ? Math.round(agg.sum[kind] / agg.n[kind]) : null);
  return liveSeries(avg);
}

function totalAverage(agg) {
  const n = agg.n.navigation + agg.n.scrape + agg.n.execution;
  return n ? Math.round((agg.sum.navigation + agg.sum.scrape + agg.sum.execution) / n) : null;
}

function volume() {
  if (state.range !== "live" && state.history) return historySeries("all", (b) => b.count);
  return liveSeries((agg) => agg.count);
}

function perSource(field, label) {
  const sources = chartedSources();
  const values = sources.map((s) => state.summary?.sources?.[s]?.[field] ?? null);
  return { labels: sources, series: { [label]: values } };
}

function errorsBySource() {
  const counts = new Map();
  for (const record of state.alerts) counts.set(channelOf(record), (counts.get(channelOf(record)) ?? 0) + 1);
  return { labels: [...counts.keys()], series: { "failures shown": [...counts.values()] } };
}

const CHARTS = {
  successRate: { kind: "bar", title: "Success rate by source (last hour)", unit: "%", data: () => perSource("successRate", "success %") },
  recordsBySource: { kind: "bar", title: "Records by source (last hour)", data: () => perSource("records", "records") },
  comparison: { kind: "line", title: "Average duration by source", unit: "ms", data: () => trend("all") },
  p95BySource: { kind: "bar", title: "p95 duration by source (last hour)", unit: "ms", data: () => perSource("p95DurationMs", "p95 ms") },
  volume: { kind: "line", title: "Records per interval", data: volume },
  navigationTrend: { kind: "line", title: "Navigation time", unit: "ms", data: () => trend("navigation") },
  retries: { kind: "bar", title: "Retries by source (last hour)", data: () => perSource("retries", "retries") },
  scrapeTrend: { kind: "line", title: "Scrape duration", unit: "ms", data: () => trend("scrape") },
  itemsExtracted: { kind: "bar", title: "Items extracted (last hour)", data: () => perSource("itemsExtracted", "items") },
  executionTrend: { kind: "line", title: "Scheduler execution time", unit: "ms", data: () => trend("execution") },
  itemsProcessed: { kind: "bar", title: "Items processed by scheduler runs (last hour)", data: () => perSource("itemsProcessed", "items") },
  errorsBySource: { kind: "bar", title: "Failures by source", data: errorsBySource },
};

// --- rendering ------------------------------------------------------------------------------

const adapter = new ChartJsAdapter();
const charts = new Map(); // name -> Chart.js instance, created when first shown

function invalidate(...parts) {
  for (const part of parts) state.dirty.add(part);
  if (!state.frame) state.frame = requestAnimationFrame(render);
}

function render() {
  state.frame = 0;
  const dirty = new Set(state.dirty);
  state.dirty.clear();
  if (dirty.has("summary")) renderSummary();
  if (dirty.has("alerts") && state.tab === "alerts") renderAlerts();
  if (dirty.has("alerts")) els.alertCount.textContent = state.alerts.length ? String(state.alerts.length) : "";
  if (dirty.has("charts") || dirty.has("summary") || dirty.has("tab")) renderCharts();
  if (dirty.has("tab")) renderAlerts();
}

function renderCharts() {
  if (!globalThis.Chart) return invalidate("charts"); // the UMD bundle loads in parallel
  for (const canvas of document.querySelectorAll(`#tab-${state.tab} canvas[data-chart]`)) {
    const name = canvas.dataset.chart;
    const spec = CHARTS[name];
    if (!charts.has(name)) charts.set(name, adapter.create(canvas, spec));
    const { labels, series } = spec.data();
    adapter.setData(charts.get(name), labels, series);
  }
}

function formatNumber(value, unit = "") {
  if (value === null || value === undefined) return "–";
  return `${NUMBER.format(value)}${unit}`;
}

function renderSummary() {
  const totals = state.summary?.totals ?? {};
  const units = { successRate: " %", avgDurationMs: " ms", p95DurationMs: " ms" };
  for (const [name, el] of els.stats) el.textContent = formatNumber(totals[name], units[name]);
  renderSourceOptions();
  const cards = [];
  for (const [name, source] of Object.entries(state.summary?.sources ?? {})) {
    const card = els.cardTemplate.content.firstElementChild.cloneNode(true);
    const trend = state.summary.trends?.[name]?.successRate;
    const fields = {
      name,
      records: formatNumber(source.records),
      successRate: formatNumber(source.successRate, " %"),
      avgDurationMs: formatNumber(source.avgDurationMs),
      p95DurationMs: formatNumber(source.p95DurationMs),
      trend: trend ? `${trend.direction} ${trend.change > 0 ? "+" : ""}${trend.change} %` : "–",
    };
    for (const [field, text] of Object.entries(fields)) card.querySelector(`[data-field="${field}"]`).textContent = text;
    card.classList.toggle("failing", (source.successRate ?? 100) < 90);
    cards.push(card);
  }
  els.grid.replaceChildren(...cards);
}

function renderSourceOptions() {
  const known = new Set([...els.source.options].map((o) => o.value));
  for (const name of Object.keys(state.summary?.sources ?? {})) {
    if (known.has(name)) continue;
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    els.source.append(option);
  }
}

function renderAlerts() {
  const items = state.alerts.map((record) => {
    const item = els.alertTemplate.content.firstElementChild.cloneNode(true);
    const fields = {
      time: SECOND.format(record.recordedAt),
      source: channelOf(record),
      type: record.type.replace("_", " "),
      url: record.url ?? record.schedulerName ?? "",
      error: record.error ?? "failed",
    };
    for (const [field, text] of Object.entries(fields)) item.querySelector(`[data-field="${field}"]`).textContent = text;
    return item;
  });
  els.alerts.replaceChildren(...items);
}

function renderBadge({ state: connection }) {
  els.badge.dataset.connectionState = connection;
  els.badge.textContent = connection === State.LIVE ? "live" : connection;
}

// --- history --------------------------------------------------------------------------------

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

async function loadSummary() {
  state.summary = await getJSON("/api/metrics/summary/");
  invalidate("summary");
}

// The live half hour before the page loaded, per source and type, from the database.
async function seedMinutes() {
  const from = new Date(state.seededBefore - LIVE_MINUTES * 60000).toISOString();
  const to = new Date(state.seededBefore).toISOString();
  const requests = [];
  for (const source of chartedSources()) {
    for (const [type, kind] of Object.entries(KIND)) {
      const url = `/api/metrics/history/?from=${from}&to=${to}&bucket=minute&type=${type}&source=${encodeURIComponent(source)}`;
      requests.push(getJSON(url).then(({ buckets }) => {
        for (const b of buckets) {
          const minute = Date.parse(b.start);
          let sources = state.minutes.get(minute);
          if (!sources) state.minutes.set(minute, (sources = new Map()));
          let agg = sources.get(source);
          if (!agg) sources.set(source, (agg = emptyAggregate()));
          agg.count += b.count;
          agg.ok += b.successCount;
          agg.sum[kind] += b.avgDurationMs * b.count;
          agg.n[kind] += b.count;
          if (kind === "execution") agg.processed += b.itemsExtracted;
          else agg.items += b.itemsExtracted;
        }
      }));
    }
  }
  await Promise.all(requests);
  invalidate("charts");
}

// Live mode starts from the database too, so a refreshed page is never blank. Passed through
// the client, which drops what the socket's own history already delivered.
async function loadRecent(client) {
  const query = state.source === WILDCARD ? "" : `&source=${encodeURIComponent(state.source)}`;
  const recent = await getJSON(`/api/metrics/recent/?limit=1000${query}`);
  if (client) client.deliver(recent.metrics, "recent");
  else onRecords({ metrics: recent.metrics });
}

async function loadHistory() {
  const [span, bucket] = RANGES[state.range];
  const to = new Date();
  const from = new Date(to.getTime() - span);
  const range = `from=${from.toISOString()}&to=${to.toISOString()}&bucket=${bucket}`;
  const bySourceType = new Map();
  const starts = new Set();
  const requests = [];
  for (const source of chartedSources()) {
    for (const [type, kind] of [[null, "all"], ...Object.entries(KIND)]) {
      const url = `/api/metrics/history/?${range}&source=${encodeURIComponent(source)}${type ? `&type=${type}` : ""}`;
      requests.push(getJSON(url).then(({ buckets }) => {
        bySourceType.set(`${source}|${kind}`, buckets);
        for (const b of buckets) starts.add(b.start);
      }));
    }
  }
  await Promise.all(requests);
  state.history = { labels: [...starts].sort(), bySourceType };
  invalidate("charts");
}

// --- wiring ---------------------------------------------------------------------------------

function showTab(name) {
  state.tab = name;
  for (const button of els.tabs) button.setAttribute("aria-selected", String(button.dataset.tab === name));
  for (const section of document.querySelectorAll(".tab")) section.hidden = section.id !== `tab-${name}`;
  invalidate("tab");
}

function exportCharts(format) {
  for (const canvas of document.querySelectorAll(`#tab-${state.tab} canvas[data-chart]`)) {
    const chart = charts.get(canvas.dataset.chart);
    if (!chart) continue;
    const link = document.createElement("a");
    link.download = `${canvas.dataset.chart}.${format}`;
    link.href = format === "png" ? adapter.toPNG(chart) : URL.createObjectURL(new Blob([adapter.toCSV(chart)], { type: "text/csv" }));
    link.click();
  }
}

function wsUrl() {
  const path = JSON.parse(document.getElementById("ws-path").textContent);
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

function main() {
  const client = new MetricsWebSocketClient(wsUrl());
  client.on("status", renderBadge);
  client.on("metrics", onRecords);
  client.on("update", (data) => {
    state.summary = data;
    invalidate("summary");
  });
  client.connect();
  client.subscribe(WILDCARD);

  for (const button of els.tabs) button.addEventListener("click", () => showTab(button.dataset.tab));
  els.range.addEventListener("change", () => {
    state.range = els.range.value;
    state.history = null;
    if (state.range !== "live") loadHistory().catch(console.warn);
    invalidate("charts");
  });
  els.source.addEventListener("change", () => {
    state.source = els.source.value;
    state.minutes.clear();
    state.alerts = [];
    state.seededBefore = Math.floor(Date.now() / 60000) * 60000;
    seedMinutes().catch(console.warn);
    loadRecent(null).catch(console.warn);
    if (state.range !== "live") loadHistory().catch(console.warn);
    invalidate("charts", "alerts");
  });
  $("#export-png").addEventListener("click", () => exportCharts("png"));
  $("#export-csv").addEventListener("click", () => exportCharts("csv"));
  setInterval(() => {
    pruneMinutes();
    if (state.range !== "live") loadHistory().catch(console.warn);
    invalidate("charts");
  }, 60000);

  loadSummary().then(seedMinutes).catch(console.warn);
  loadRecent(client).catch(console.warn);
}

main();

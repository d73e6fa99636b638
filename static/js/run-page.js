// One run's page (/analytics/run/<runId>/): its numbers against the range of its scheduler's
// last 10 finished runs (GET /api/runs/<runId>/), the verdict and why, and its HTTP statuses.
// While the run is running it is read again every few seconds.

import { filledShare } from "./data.js";
import { DASH, formatBytes, formatCount, formatDuration, formatPercent, formatTime } from "./format.js";

const REFRESH_MS = 5000;

// The rows of the comparison: a measure, this run's value, the usual range and whether the
// run is out of it. The server's rule (metrics_app.alerts.runs) says which are far out; here a
// row is marked when its measure is named in the verdict's findings, so the page never judges
// by a rule of its own.
export function comparisonRows(run) {
  const usual = run.comparison ?? {};
  const outside = new Set(run.outside ?? []);
  const rows = [
    { key: "items", label: "Items", value: run.items, form: formatCount },
    { key: "pages", label: "Pages", value: run.pages, form: formatCount },
    { key: "failedPages", label: "Failed pages", value: run.failedPages, form: formatCount },
    { key: "durationMs", label: "Duration", value: run.durationMs, form: formatDuration },
  ];
  for (const [name, counts] of Object.entries(run.fields ?? {})) {
    rows.push({
      key: `fields.${name}`, label: `${name} filled`, form: (v) => formatPercent(v === null ? null : 100 * v),
      value: filledShare(counts), span: usual.fields?.[name]?.filledRatio,
    });
  }
  return rows.map((row) => {
    const span = row.span ?? usual[row.key];
    return {
      key: row.key,
      label: row.label,
      value: row.form(row.value),
      usual: span ? (row.form(span.min) === row.form(span.max) ? row.form(span.min) : `${row.form(span.min)} – ${row.form(span.max)}`) : DASH,
      outside: outside.has(row.key),
    };
  });
}

// "quotes-refresh · cnbc · started Dec 7, 01:00:00 · ended Dec 7, 01:02:00 · 1.2 MB scraped ·
// 500 entities refreshed"
export function describe(run) {
  const parts = [run.schedulerName ?? "no scheduler yet", run.sources.join(", ") || "no pages"];
  parts.push(`started ${formatTime(Date.parse(run.startedAt))}`);
  if (run.endedAt) parts.push(`${run.state === "finished" ? "ended" : "last record"} ${formatTime(Date.parse(run.endedAt))}`);
  parts.push(`${formatBytes(run.bytes)} scraped`);
  if (run.entities) parts.push(`${formatCount(run.entities)} ${run.entities === 1 ? "entity" : "entities"} refreshed`);
  return parts.join(" · ");
}

function render(run) {
  document.querySelector("#run-state").textContent = run.verdict ? "degraded" : run.state;
  document.querySelector("#run-state").dataset.state = run.verdict ? "degraded" : run.state;
  document.querySelector("#run-meta").textContent = describe(run);
  const verdict = document.querySelector("#run-verdict");
  verdict.hidden = !run.summary;
  verdict.textContent = run.summary ?? "";
  const basis = document.querySelector("#run-basis");
  const usual = run.comparison?.runs ?? 0;
  basis.textContent = usual ? `Against the range of its scheduler's last ${usual} finished runs.`
    : "No finished run of its scheduler came before it: nothing to compare with yet.";
  const body = document.querySelector("#run-comparison tbody");
  body.replaceChildren(...comparisonRows(run).map((row) => {
    const tr = document.createElement("tr");
    tr.dataset.measure = row.key;
    tr.classList.toggle("outside", row.outside);
    for (const text of [row.label, row.value, row.usual]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  }));
  const statuses = Object.entries(run.statuses);
  const list = document.querySelector("#run-statuses");
  list.replaceChildren(...statuses.map(([code, count]) => {
    const li = document.createElement("li");
    li.textContent = `${code}: ${formatCount(count)}`;
    return li;
  }));
  document.querySelector("#run-no-statuses").hidden = statuses.length > 0;
}

export async function main() {
  const runId = JSON.parse(document.getElementById("run-id").textContent);
  const url = `/api/runs/${encodeURIComponent(runId)}/`;
  const load = async () => {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.status === 404) {
      // No record of it yet: a run that is about to start, or a mistyped link. Look again.
      document.querySelector("#run-meta").textContent = "No record of this run has arrived.";
      setTimeout(load, REFRESH_MS);
    } else if (!response.ok) {
      throw new Error(`${url}: ${response.status}`);
    } else {
      const run = await response.json();
      render(run);
      if (run.state === "running") setTimeout(load, REFRESH_MS);
    }
    document.body.dataset.loaded = "true";
  };
  await load();
}

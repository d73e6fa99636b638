// The Scheduler section's runs (GET /api/runs/): newest first, each with its numbers and its
// verdict against its scheduler's last 10, linking to the run's page. Read again while the
// section is shown (every reload of the page loop), so a running run's numbers move on.

import { DASH, formatAgo, formatCount, formatDuration } from "./format.js";

export const RUNS_SHOWN = 20;

// The query for the source filter's choice: every run, a source's, or a scheduler's.
export function runsUrl(source, isScheduler) {
  const params = new URLSearchParams({ limit: String(RUNS_SHOWN) });
  if (source && source !== "*") params.set(isScheduler ? "scheduler" : "source", source);
  return `/api/runs/?${params}`;
}

// A run's row: what each cell says.
export function runCells(run, now = Date.now()) {
  return {
    run: run.runId,
    scheduler: run.schedulerName ?? DASH,
    state: run.verdict ? "degraded" : run.state,
    started: formatAgo(Date.parse(run.startedAt), now),
    duration: formatDuration(run.durationMs),
    pages: formatCount(run.pages),
    failed: formatCount(run.failedPages),
    items: formatCount(run.items),
  };
}

export class RunsView {
  constructor(root, getJSON) {
    this.getJSON = getJSON;
    this.body = root.querySelector("#runs tbody");
    this.none = root.querySelector("#no-runs");
  }

  async show(source, isScheduler) {
    const { runs } = await this.getJSON(runsUrl(source, isScheduler));
    this.body.replaceChildren(...runs.map((run) => this.row(run)));
    this.none.hidden = runs.length > 0;
  }

  row(run) {
    const tr = document.createElement("tr");
    const cells = runCells(run);
    tr.dataset.runId = run.runId;
    tr.classList.toggle("degraded", Boolean(run.verdict));
    for (const [name, text] of Object.entries(cells)) {
      const td = document.createElement("td");
      td.dataset.cell = name;
      if (name === "run") {
        const link = document.createElement("a");
        link.href = `/analytics/run/${encodeURIComponent(run.runId)}/`;
        link.textContent = text;
        td.append(link);
      } else {
        td.textContent = text;
      }
      if (name === "state" && run.summary) td.title = run.summary;
      tr.append(td);
    }
    return tr;
  }
}

// What both analytics pages share: fetching JSON, the live connection and its badge, the tiles.

import { DASH, formatCount, formatDuration, formatPercent } from "./format.js";
import { MetricsWebSocketClient, State } from "./metrics-websocket-client.js";

export async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// The socket, subscribed to `source`, its state on the badge (data-connection-state).
export function connect(source, onRecords) {
  const badge = document.querySelector("#connection");
  const path = JSON.parse(document.getElementById("ws-path").textContent);
  const client = new MetricsWebSocketClient(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`);
  let catchingUp = false;
  const show = (state) => {
    badge.dataset.connectionState = state;
    badge.textContent = state !== State.LIVE ? state : catchingUp ? "catching up" : "live";
  };
  client.on("status", ({ state }) => show(state));
  client.on("catching_up", ({ sources }) => {
    catchingUp = sources.length > 0;
    badge.dataset.catchingUp = String(catchingUp);
    show(client.state);
  });
  client.on("metrics", onRecords);
  // The socket's session ended (logged out elsewhere, or a new login replaced it): load the
  // page again, which goes to the login page only if no session is left.
  client.on("credentials_ended", () => location.reload());
  client.connect();
  client.subscribe(source);
  return client;
}

// The tiles (templates/dashboard/tiles.html) and every ".window" label, for a range's totals.
export function renderTiles(view) {
  const totals = view.totals;
  const values = {
    records: formatCount(totals.records),
    successRate: formatPercent(totals.successRate),
    avgDurationMs: formatDuration(totals.avgDurationMs),
    p95DurationMs: formatDuration(totals.p95DurationMs),
    itemsExtracted: formatCount(totals.itemsExtracted),
    failures: formatCount(totals.failures),
  };
  for (const el of document.querySelectorAll("[data-stat]")) el.textContent = values[el.dataset.stat] ?? DASH;
  for (const el of document.querySelectorAll(".window")) el.textContent = `(${view.range.label})`;
  document.querySelector("#window").textContent = `${view.range.label}, ${view.range.bucketLabel}`;
}

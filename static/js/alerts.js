// Alerts on the page: the firing ones at the top of the Alerts tab (verdict, summary, since
// when, a button to silence), then the recently resolved, from GET /api/alerts/, reloaded
// whenever the WebSocket says an alert changed. Cards ask `stateOf` for their source's alert.
// Everything from the server is written with textContent.

import { formatAgo, formatTime } from "./format.js";

const RESOLVED_SHOWN = 20;
const SILENCE_MINUTES = 60;

export class AlertsView {
  constructor(root, getJSON, onChange = () => {}) {
    this.getJSON = getJSON;
    this.onChange = onChange;
    this.firing = [];
    this.resolved = [];
    this.els = {
      firing: root.querySelector("#firing-alerts"),
      none: root.querySelector("#no-firing"),
      resolved: root.querySelector("#resolved-alerts"),
      template: root.querySelector("#firing-item"),
    };
  }

  async load(source = null) {
    const query = new URLSearchParams({ state: "all" });
    if (source) query.set("source", source);
    const { alerts } = await this.getJSON(`/api/alerts/?${query}`);
    this.firing = alerts.filter((a) => a.state === "firing");
    this.resolved = alerts.filter((a) => a.state === "resolved").slice(0, RESOLVED_SHOWN);
    this.render();
    this.onChange();
  }

  // The worst firing alert of a source or scheduler: {severity, verdict, summary}, or null.
  stateOf(name) {
    const mine = this.firing.filter((a) => a.scraperSource === name || a.schedulerName === name || a.sources?.includes(name));
    mine.sort((a, b) => (a.severity === "critical" ? -1 : 1) - (b.severity === "critical" ? -1 : 1));
    return mine[0] ?? null;
  }

  render() {
    if (!this.els.firing) return;
    this.els.firing.replaceChildren(...this.firing.map((alert) => this.item(alert, true)));
    this.els.none.hidden = this.firing.length > 0;
    this.els.resolved?.replaceChildren(...this.resolved.map((alert) => this.item(alert, false)));
  }

  item(alert, firing) {
    const item = this.els.template.content.firstElementChild.cloneNode(true);
    item.classList.add(alert.severity, firing ? "firing" : "resolved");
    const since = firing
      ? `firing since ${formatTime(Date.parse(alert.startsAt))} (${formatAgo(Date.parse(alert.startsAt))})`
      : `${formatTime(Date.parse(alert.startsAt))} – ${formatTime(Date.parse(alert.endsAt))}`;
    const fields = {
      verdict: alert.verdict.replaceAll("_", " "),
      summary: alert.summary,
      since: alert.silenced ? `${since}, silenced` : since,
      threshold: alert.thresholdSource ? `threshold: ${alert.thresholdSource}` : "",
    };
    for (const [field, text] of Object.entries(fields)) item.querySelector(`[data-field="${field}"]`).textContent = text;
    const button = item.querySelector("button");
    button.hidden = !firing || alert.silenced;
    button.textContent = `Silence ${SILENCE_MINUTES} min`;
    button.addEventListener("click", () => this.silence(alert).catch(console.warn));
    return item;
  }

  async silence(alert) {
    const reason = prompt(`Silence “${alert.verdict}” of ${alert.scraperSource ?? alert.schedulerName ?? "these sources"} for ${SILENCE_MINUTES} minutes. Why?`);
    if (reason === null) return;
    const response = await fetch("/api/alerts/silences/", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({
        scraperSource: alert.scraperSource, schedulerName: alert.schedulerName, verdict: alert.verdict,
        minutes: SILENCE_MINUTES, reason,
      }),
    });
    if (!response.ok) throw new Error(`silence: ${response.status}`);
    await this.load();
  }
}

function csrfToken() {
  return document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] ?? "";
}

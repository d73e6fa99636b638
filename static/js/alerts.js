// Alerts on the page: the firing ones at the top of the Alerts tab (verdict, summary, since
// when, a button to silence), then the recently resolved, from GET /api/alerts/, reloaded
// whenever the WebSocket says an alert changed, and while any fires, for its current numbers.
// Cards ask `stateOf` for their source's alert.
// Everything from the server is written with textContent.

import { formatAgo, formatTime } from "./format.js";

const RESOLVED_SHOWN = 20;
const NUMBERS_MS = 15_000; // the evaluator's default interval (METRICS_ALERT_EVAL_INTERVAL_S)

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

  // A firing alert's numbers change at each evaluation, while the WebSocket says only when one
  // fires or resolves: as long as any fires, `load` them again every NUMBERS_MS.
  keepCurrent(load) {
    setInterval(() => {
      if (this.firing.length) load();
    }, NUMBERS_MS);
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
    const clearing = firing && alert.clearSince
      ? `; clear since ${formatAgo(Date.parse(alert.clearSince))}, resolves if it stays so` : "";
    const since = firing
      ? `firing since ${formatTime(Date.parse(alert.startsAt))} (${formatAgo(Date.parse(alert.startsAt))})${clearing}`
      : `${formatTime(Date.parse(alert.startsAt))} – ${formatTime(Date.parse(alert.endsAt))}`;
    const fields = {
      verdict: alert.verdict.replaceAll("_", " "),
      summary: alert.summary,
      since: alert.silenced ? `${since}, silenced` : since,
      threshold: alert.thresholdSource ? `threshold: ${alert.thresholdSource}` : "",
    };
    for (const [field, text] of Object.entries(fields)) item.querySelector(`[data-field="${field}"]`).textContent = text;
    // Silencing: a small form (how long, and why) opened by the button, not a prompt.
    const button = item.querySelector("button.silence");
    const form = item.querySelector("form.silence-form");
    button.hidden = !firing || alert.silenced;
    button.addEventListener("click", () => {
      button.hidden = true;
      form.hidden = false;
      form.elements.reason.focus();
    });
    form.querySelector("[data-cancel]").addEventListener("click", () => {
      form.hidden = true;
      button.hidden = false;
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const minutes = Number(form.elements.minutes.value);
      this.silence(alert, minutes, form.elements.reason.value.trim()).catch((error) => {
        form.querySelector(".error").textContent = error.message;
      });
    });
    return item;
  }

  async silence(alert, minutes, reason) {
    const response = await fetch("/api/alerts/silences/", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({
        scraperSource: alert.scraperSource, schedulerName: alert.schedulerName, verdict: alert.verdict,
        minutes, reason,
      }),
    });
    if (!response.ok) throw new Error((await response.json().catch(() => ({}))).message ?? `could not silence (${response.status})`);
    await this.load();
  }
}

function csrfToken() {
  return document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] ?? "";
}

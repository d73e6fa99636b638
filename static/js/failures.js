// The failures view (templates/dashboard/failures.html): failed records of the chosen range,
// grouped by what went wrong and newest first, searchable and paged, from
// GET /api/metrics/failures/. Everything from the server is written with textContent.

import { formatAgo, formatCount, formatTime, plural } from "./format.js";
import { channelOf } from "./records.js";

export class FailuresView {
  constructor(root, getJSON) {
    this.getJSON = getJSON;
    this.els = {
      query: root.querySelector("#failure-query"),
      form: root.querySelector("#failure-search"),
      total: root.querySelector("#failure-total"),
      groups: root.querySelector("#failure-groups tbody"),
      list: root.querySelector("#alerts"),
      item: root.querySelector("#alert-item"),
      page: root.querySelector("#failures-page"),
      details: root.querySelector("#failure-details"),
      newer: root.querySelector("#failures-newer"),
      older: root.querySelector("#failures-older"),
    };
    this.page = 1;
    this.pages = 1;
    this.params = null;
    this.els.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.page = 1;
      this.load().catch(console.warn);
    });
    this.els.newer.addEventListener("click", () => this.turn(-1));
    this.els.older.addEventListener("click", () => this.turn(1));
  }

  // Show the failures of a range and source; loads only when the range, source or page changed.
  async show(range, source) {
    const key = `${range}|${source}`;
    if (this.params !== key) this.page = 1;
    this.params = key;
    this.range = range;
    this.source = source;
    await this.load();
  }

  turn(step) {
    const page = this.page + step;
    if (page < 1 || page > this.pages) return;
    this.page = page;
    this.load().catch(console.warn);
  }

  async load() {
    const query = new URLSearchParams({ range: this.range, page: String(this.page) });
    if (this.source && this.source !== "*") query.set("source", this.source);
    const text = this.els.query.value.trim();
    if (text) query.set("q", text);
    const found = await this.getJSON(`/api/metrics/failures/?${query}`);
    this.pages = found.pages;
    this.render(found, text);
  }

  render(found, text) {
    const about = text ? ` matching “${text}”` : "";
    this.els.total.textContent = `${plural(found.total, "failure")}${about}`;
    this.els.groups.replaceChildren(...found.groups.map((group) => row([
      group.message, group.source, formatCount(group.count), formatAgo(group.firstSeen), formatAgo(group.lastSeen),
    ])));
    this.els.list.replaceChildren(...found.failures.map((failure) => this.item(failure)));
    this.els.details.hidden = found.total === 0;
    this.els.page.textContent = `page ${found.page} of ${found.pages}`;
    this.els.newer.disabled = found.page <= 1;
    this.els.older.disabled = found.page >= found.pages;
  }

  item(failure) {
    const item = this.els.item.content.firstElementChild.cloneNode(true);
    const fields = {
      time: formatTime(failure.recordedAt),
      source: failure.source ?? channelOf(failure),
      type: failure.type.replace("_", " "),
      url: failure.url ?? failure.schedulerName ?? "",
      error: failure.error ?? "failed",
    };
    for (const [field, value] of Object.entries(fields)) item.querySelector(`[data-field="${field}"]`).textContent = value;
    return item;
  }
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  return tr;
}

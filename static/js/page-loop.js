// The loop both analytics pages run (analytics.js, source-page.js): one range of data at a time
// (GET /api/metrics/overview/; an answer overtaken by a newer choice is dropped), live records
// added to it as the socket brings them, the range loaded again every minute, and a redraw at
// most once per animation frame, of what changed.

import { connect, getJSON } from "./page.js";
import { WILDCARD, channelOf } from "./records.js";
import { RangeView } from "./view.js";

export const RELOAD_MS = 60_000; // the live range is reloaded for its percentiles; others for new hours
const POLL_RELOAD_MS = 3000; // after a poll, the range is loaded again at most this often

const nextFrame = globalThis.requestAnimationFrame ?? ((draw) => setTimeout(draw, 16));

export class PageLoop {
  // range, source: what is shown ("*": every source). render(dirty, view): draw what changed
  // ("view": the data, or a page's own parts). loaded(view): after each load, for the page's
  // other panels. fetchJSON: how answers are fetched (tests give their own).
  constructor({ range = "live", source = WILDCARD, render, loaded = async () => {}, fetchJSON = getJSON }) {
    Object.assign(this, { range, source, render, loaded, fetchJSON });
    this.view = null; // the RangeView on screen
    this.ticket = 0; // the number of the newest load
    this.dirty = new Set();
    this.frame = 0;
    this.pollReload = 0;
  }

  invalidate(...parts) {
    for (const part of parts) this.dirty.add(part);
    if (!this.frame) this.frame = nextFrame(() => this.draw());
  }

  draw() {
    this.frame = 0;
    const dirty = new Set(this.dirty);
    this.dirty.clear();
    if (this.view) this.render(dirty, this.view);
  }

  // Load the chosen range and source; what is on screen stays until the answer is in.
  async load() {
    const ticket = ++this.ticket;
    const query = new URLSearchParams({ range: this.range });
    if (this.source !== WILDCARD) query.set("source", this.source);
    const overview = await this.fetchJSON(`/api/metrics/overview/?${query}`);
    if (ticket !== this.ticket) return; // a newer choice was made meanwhile
    this.view = new RangeView(overview);
    this.invalidate("view");
    await this.loaded(this.view);
  }

  reload() {
    this.load().catch(console.warn);
  }

  // Live batches, and the missed records a resync brings after a gap or a reconnect, are added
  // to the live range as they come. A plain history (after subscribing, and again after a
  // reconnect) repeats what the page already has: what a reconnect missed comes as a resync. A
  // poll (the HTTP fallback) may not hold everything missed: the range is loaded again
  // instead, at most every few seconds.
  onRecords({ metrics, origin }) {
    if (origin === "history") return;
    if (origin !== "live" && origin !== "resync") {
      this.pollReload ||= setTimeout(() => {
        this.pollReload = 0;
        this.reload();
      }, POLL_RELOAD_MS);
      return;
    }
    if (this.range !== "live" || !this.view) return;
    for (const record of metrics) {
      if (this.source === WILDCARD || channelOf(record) === this.source) this.view.add(record);
    }
    this.invalidate("view");
  }

  // The server's live figures (every second while records flow): the live range's totals
  // (RangeView.takeUpdate). A load brings the server's figures of its moment; the next update
  // follows them.
  onUpdate(data) {
    if (!this.view) return;
    this.view.takeUpdate(data, this.source);
    this.invalidate("view");
  }

  // Connect (subscribed to `subscription`), load, and keep loading every RELOAD_MS.
  start(subscription) {
    const client = connect(subscription, (batch) => this.onRecords(batch));
    client.on("update", (data) => this.onUpdate(data));
    client.on("resync_truncated", () => this.reload()); // too much missed: load the range again
    setInterval(() => this.reload(), RELOAD_MS);
    this.reload();
    return client;
  }
}

// One range of the page's data, as GET /api/metrics/overview/ answers it, and the questions the
// charts ask of it. In the live range, records from the WebSocket are added to it as they come,
// and the axis moves on with the clock. Plain data in, plain arrays out: node's tests drive it.

import { OTHERS } from "./format.js";
import { channelOf } from "./records.js";
import { addRecord, asTotals, emptyBucket, emptyTotals, mergeBuckets, mergeTotals } from "./tally.js";

const MINUTE = 60_000;

export class RangeView {
  constructor(overview) {
    Object.assign(this, overview); // range, axis, channels, totals, sources, series, schedulers, previous
    this.axisMs = this.axis.map((iso) => Date.parse(iso));
    this.step = this.range.bucket === "minute" ? MINUTE : 60 * MINUTE;
  }

  // --- channels ------------------------------------------------------------------------------

  channelsOf(kind) {
    return this.channels.filter((channel) => channel.kind === kind);
  }

  // The n busiest channels of a kind in the range, and the rest (drawn together as "others"),
  // so no channel silently falls off a chart.
  busiest(kind, n) {
    const names = this.channelsOf(kind).map((c) => c.name);
    names.sort((a, b) => (this.sources[b]?.records ?? 0) - (this.sources[a]?.records ?? 0) || a.localeCompare(b));
    return { shown: names.slice(0, n), others: names.slice(n) };
  }

  // --- series --------------------------------------------------------------------------------

  buckets(channel, type = "all") {
    return this.series[channel]?.[type] ?? this.axis.map(() => null);
  }

  // The channels of a kind the server summed instead of sending one by one (beyond the busiest
  // it shows): their buckets of a type, or null.
  restBuckets(kind, type = "all") {
    return this.rest?.[kind]?.series?.[type] ?? null;
  }

  // One value per axis bucket for a channel (or several summed, with the summed rest of a
  // kind if `restOf` names one); where nothing came, `empty`: null for a measure (a gap), 0 for
  // a count (nothing was sent).
  values(channels, type, value, empty = null, restOf = null) {
    const names = Array.isArray(channels) ? channels : [channels];
    const rest = restOf ? this.restBuckets(restOf, type) : null;
    return this.axis.map((_, i) => {
      const merged = mergeBuckets([...names.map((name) => this.buckets(name, type)[i]), rest?.[i]]);
      return merged ? value(merged) : empty;
    });
  }

  // Per shown channel, and "others" when there are any (the server's rest among them).
  valuesByChannel(kind, n, type, value, empty = null) {
    const { shown, others } = this.busiest(kind, n);
    const series = {};
    for (const name of shown) series[name] = this.values(name, type, value, empty);
    if (others.length || this.rest?.[kind]) series[OTHERS] = this.values(others, type, value, empty, kind);
    return series;
  }

  // Each of the n busiest channels' totals, and "others" summed (the server's rest among them).
  totalsByChannel(kind, n) {
    const { shown, others } = this.busiest(kind, n);
    const rows = shown.map((name) => [name, this.sources[name] ?? {}]);
    const rest = [...others.map((name) => this.sources[name]).filter(Boolean), this.rest?.[kind]?.totals].filter(Boolean);
    if (rest.length) rows.push([OTHERS, mergeTotals(rest)]);
    return rows;
  }

  // Error rate per bucket over every channel shown by the filter.
  errorRate(kind) {
    const names = this.channelsOf(kind).map((c) => c.name);
    return this.values(names, "all", (b) => (b.count ? (100 * (b.count - b.successCount)) / b.count : null), null, kind);
  }

  // The last bucket is still filling: charts draw it as partial.
  get partialIndex() {
    return this.axis.length - 1;
  }

  // --- live ----------------------------------------------------------------------------------

  // Add a record that arrived on the WebSocket (live range only): its bucket, its channel's
  // totals and the range's. Percentiles are the server's, until the next reload.
  add(record) {
    const at = Math.floor(record.recordedAt / this.step) * this.step;
    this.advanceTo(at);
    const index = this.axisMs.indexOf(at);
    if (index < 0) return; // older than the window
    const channel = channelOf(record);
    if (!this.channels.some((c) => c.name === channel)) {
      const bare = record.type === "scheduler_run" && !record.scraperSource;
      this.channels.push({ name: channel, kind: bare ? "scheduler" : "scraper", types: [record.type], lastRecordedAt: null });
    }
    const entry = this.channels.find((c) => c.name === channel);
    entry.lastRecordedAt = Math.max(entry.lastRecordedAt ?? 0, record.recordedAt);
    const named = (this.series[channel] ??= {});
    const types = ["all", record.type];
    if (record.type === "scheduler_run") types.push(`scheduler_run:${record.schedulerName}`);
    for (const type of types) {
      const buckets = (named[type] ??= this.axis.map(() => null));
      buckets[index] = addRecord(buckets[index] ?? emptyBucket(this.axis[index]), record);
    }
    addRecord(asTotals((this.sources[channel] ??= emptyTotals())), record, "records");
    addRecord(asTotals(this.totals), record, "records");
    if (record.type === "scheduler_run") this.addRun(record);
  }

  addRun(record) {
    const scheduler = (this.schedulers[record.schedulerName] ??= { runs: [], period: null, lastRunAt: null });
    scheduler.lastRunAt = Math.max(scheduler.lastRunAt ?? 0, record.recordedAt);
    scheduler.runs?.push({
      recordedAt: record.recordedAt, durationMs: record.executionDurationMs, items: record.itemsProcessed,
      success: record.success, error: record.error,
    });
  }

  // Move the axis on so that `at` is its last bucket, dropping what falls off the start.
  advanceTo(at) {
    while (at > this.axisMs[this.axisMs.length - 1]) {
      const next = this.axisMs[this.axisMs.length - 1] + this.step;
      this.axisMs.push(next);
      this.axis.push(new Date(next).toISOString().replace(".000Z", "Z"));
      this.axisMs.shift();
      this.axis.shift();
      for (const named of Object.values(this.series)) {
        for (const buckets of Object.values(named)) {
          buckets.push(null);
          buckets.shift();
        }
      }
      for (const scheduler of Object.values(this.schedulers)) {
        if (scheduler.runs) scheduler.runs = scheduler.runs.filter((run) => run.recordedAt >= this.axisMs[0]);
      }
    }
  }
}

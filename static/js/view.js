// One range of the page's data, as GET /api/metrics/overview/ answers it, and the questions the
// charts ask of it. In the live range, records from the WebSocket are added to it as they come,
// and the axis moves on with the clock. Plain data in, plain arrays out: node's tests drive it.

import { OTHERS } from "./format.js";
import { WILDCARD, channelOf } from "./records.js";
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

  // --- the server's live figures ---------------------------------------------------------------

  // In the live range, the figures of the tiles, cards and bars (totals, and each source's) are
  // the server's `metrics:update` (every second while records flow; its window is the live
  // range's), each set taken whole: p95 cannot be summed here, and counts that moved without it
  // would read against a p95 of a minute before. Until the first, the overview's. `source`: the
  // page's filter, whose figures are the totals.
  takeUpdate(data, source = WILDCARD) {
    if (this.range.name !== "live") return;
    const whole = (figures) => ({ ...figures, failures: figures.records - figures.successCount });
    const totals = source === WILDCARD ? data.totals : data.sources?.[source];
    if (totals) this.totals = { ...this.totals, ...whole(totals) };
    for (const [name, figures] of Object.entries(data.sources ?? {})) {
      this.sources[name] = { ...this.sources[name], ...whole(figures) };
    }
  }

  // The last bucket is still filling: charts draw it as partial.
  get partialIndex() {
    return this.axis.length - 1;
  }

  // --- live ----------------------------------------------------------------------------------

  // Add a record that arrived on the WebSocket (live range only) to its bucket and its channel's
  // last record; the totals come from the server (takeUpdate).
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
    if (record.type === "scheduler_run") this.addRun(record, index);
  }

  // A run into its scheduler's count, and into its runs or, when the server sent too many to
  // draw, its bucket's range (and its failed runs).
  addRun(record, index) {
    const scheduler = (this.schedulers[record.schedulerName] ??= {
      totals: emptyTotals(), runs: [], ranges: null, failedRuns: null, period: null, lastRunAt: null,
    });
    scheduler.lastRunAt = Math.max(scheduler.lastRunAt ?? 0, record.recordedAt);
    addRecord(asTotals(scheduler.totals), record, "records");
    const run = {
      recordedAt: record.recordedAt, durationMs: record.executionDurationMs, items: record.itemsProcessed,
      success: record.success, error: record.error,
    };
    if (scheduler.runs) {
      scheduler.runs.push(run);
      return;
    }
    if (!run.success) scheduler.failedRuns?.push(run);
    let range = scheduler.ranges.find((r) => r.start === this.axis[index]);
    if (!range) {
      range = { start: this.axis[index], runs: 0, failed: 0, durationMs: [run.durationMs, run.durationMs],
                items: [run.items, run.items] };
      scheduler.ranges.push(range);
    }
    range.runs += 1;
    range.failed += run.success ? 0 : 1;
    for (const measure of ["durationMs", "items"]) {
      range[measure] = [Math.min(range[measure][0], run[measure]), Math.max(range[measure][1], run[measure])];
    }
  }

  // A scheduler's runs as a chart draws one measure of them ("durationMs" or "items"): each run
  // ({x, y, failed}) when the server sent them one by one; else each bucket's range of single
  // runs ({x: its middle, y: [lowest, highest], runs, failed}) and, as marks, each failed run
  // (or, when even those were too many, each bucket that holds failures, with their number).
  // Never a bucket's sum, which is no run's value.
  runsToDraw(name, measure) {
    const scheduler = this.schedulers[name];
    const point = (run) => ({ x: run.recordedAt, y: run[measure], failed: !run.success, error: run.error });
    if (scheduler.runs) return { points: scheduler.runs.map(point), ranges: null, marks: [] };
    const middle = (range) => Date.parse(range.start) + this.step / 2;
    const ranges = scheduler.ranges.map((range) => ({
      x: middle(range), y: range[measure], runs: range.runs, failed: range.failed,
    }));
    const marks = scheduler.failedRuns
      ? scheduler.failedRuns.map(point)
      : ranges.filter((r) => r.failed).map((r) => ({ x: r.x, y: r.y[1], failed: r.failed }));
    return { points: null, ranges, marks };
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
      const kept = (run) => run.recordedAt >= this.axisMs[0];
      for (const scheduler of Object.values(this.schedulers)) {
        if (scheduler.runs) scheduler.runs = scheduler.runs.filter(kept);
        if (scheduler.failedRuns) scheduler.failedRuns = scheduler.failedRuns.filter(kept);
        if (scheduler.ranges) scheduler.ranges = scheduler.ranges.filter((r) => Date.parse(r.start) >= this.axisMs[0]);
      }
    }
  }
}

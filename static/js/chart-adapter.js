// What the dashboard needs from a chart library (ChartAdapter), and the numbers it charts
// (MetricAggregator). The page talks to the adapter only, so the library can be swapped.

import { channelOf, durationOf, itemsOf } from "./records.js";

export class ChartAdapter {
  // Create a chart in `canvas`. kind: "line" | "bar"; returns a handle for the calls below.
  create(canvas, { kind, title, unit }) {
    throw new Error(`${this.constructor.name} must implement create()`);
  }

  // Replace the chart's data: labels along the x axis, and one series per name.
  setData(handle, labels, series) {
    throw new Error(`${this.constructor.name} must implement setData()`);
  }

  toPNG(handle) {
    throw new Error(`${this.constructor.name} must implement toPNG()`);
  }

  // CSV of what the chart shows: one row per label, one column per series.
  toCSV(handle) {
    const { labels, series } = this.data(handle);
    const names = Object.keys(series);
    const rows = [["label", ...names].map(csvCell).join(",")];
    labels.forEach((label, i) => rows.push([label, ...names.map((n) => series[n][i] ?? "")].map(csvCell).join(",")));
    return rows.join("\n") + "\n";
  }

  data(handle) {
    throw new Error(`${this.constructor.name} must implement data()`);
  }

  destroy(handle) {}
}

function csvCell(value) {
  const text = String(value ?? "");
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// Plain functions over arrays of records, so they are easy to test and to reuse.
export const MetricAggregator = {
  count: (records) => records.length,

  avg(values) {
    return values.length ? values.reduce((sum, v) => sum + v, 0) / values.length : null;
  },

  min: (values) => (values.length ? Math.min(...values) : null),
  max: (values) => (values.length ? Math.max(...values) : null),

  // Nearest-rank percentile, as in the server's own tests.
  percentile(values, fraction) {
    if (!values.length) return null;
    const sorted = [...values].sort((a, b) => a - b);
    const rank = Math.max(1, Math.ceil(fraction * sorted.length));
    return sorted[rank - 1];
  },

  p95(values) {
    return MetricAggregator.percentile(values, 0.95);
  },

  successRate(records) {
    if (!records.length) return null;
    return (100 * records.filter((r) => r.success).length) / records.length;
  },

  items: (records) => records.reduce((sum, r) => sum + itemsOf(r), 0),

  durations: (records) => records.map(durationOf).filter((d) => typeof d === "number"),

  groupBy(records, key) {
    const groups = new Map();
    for (const record of records) {
      const name = key === "source" ? channelOf(record) : record[key];
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push(record);
    }
    return groups;
  },

  since(records, fromMs) {
    return records.filter((r) => r.recordedAt >= fromMs);
  },

  summary(records) {
    const durations = MetricAggregator.durations(records);
    return {
      count: records.length,
      successRate: MetricAggregator.successRate(records),
      avg: MetricAggregator.avg(durations),
      min: MetricAggregator.min(durations),
      max: MetricAggregator.max(durations),
      p95: MetricAggregator.p95(durations),
      items: MetricAggregator.items(records),
    };
  },
};

// What the dashboard needs from a chart library. The page talks to the adapter only, so the
// library can be swapped.

export class ChartAdapter {
  // Create a chart in `canvas`. kind: "line" | "stacked" | "hbar" | "scatter"; unit: "count" |
  // "ms" | "%" | "bytes" | "ratio". Returns a handle for the calls below.
  create(canvas, { kind, title, unit }) {
    throw new Error(`${this.constructor.name} must implement create()`);
  }

  // Replace the chart's data: labels along the x axis (or the bars' categories), one series per
  // name, and extra: {partial: index of the still-filling bucket, overlay: {name: values}}.
  setData(handle, labels, series, extra) {
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

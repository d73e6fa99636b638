// Chart.js as both pages use it (the UMD bundle from the npm package, window.Chart): the one
// module that knows Chart.js. A page describes its charts as specs ({kind, unit, title(view),
// data(view)}) and asks `draw` to show them; nothing else of Chart.js reaches a page.
//
// What every chart does the same way: its sources told apart by colour (format.coloursOf), whole numbers on count
// and byte axes, durations in ms or s, exact values in tooltips, gaps left as gaps, the
// still-filling last bucket drawn dashed (lines) or faded (bars), category labels never
// skipped (bars are horizontal and grow with their categories), time axes ticked on round
// times for their width (format.timeTicks), and legend entries and bars that open the
// source's own page.

import {
  OTHERS, bucketTicks, coloursOf, faded, formatBytes, formatCount, formatDuration, formatPercent, formatRatio,
  plural, tickLabel, timeTicks,
} from "./format.js";

const FORMAT = {
  ms: formatDuration,
  count: formatCount,
  "%": formatPercent,
  bytes: formatBytes,
  ratio: formatRatio,
};
const WHOLE_UNITS = new Set(["count", "bytes"]);
// The error rate and failed runs: red (site.css's --bad), far from every source's colour.
const ERROR_RATE_COLOUR = "#c0362c";
const BAR_ROW_PX = 24;

export class Charts {
  constructor({ open } = {}) {
    this.open = open; // open(sourceName): where a click on a source leads
    this.shown = new Map(); // name -> chart, created when first shown
  }

  // Draw (or update) every chart under `root` from its spec: `kind`, `unit`, `title(view)`,
  // `data(view)` → {labels, series, extra}. False while Chart.js is still loading (the UMD
  // bundle loads in parallel): draw again on the next frame.
  draw(root, specs, view) {
    if (!globalThis.Chart) return false;
    for (const canvas of root.querySelectorAll("canvas[data-chart]")) {
      const name = canvas.dataset.chart;
      const spec = specs[name];
      if (!this.shown.has(name)) this.shown.set(name, this.create(canvas, { ...spec, title: "" }));
      const chart = this.shown.get(name);
      chart.options.plugins.title.text = spec.title(view);
      const { labels, series, extra } = spec.data(view);
      if (extra?.xRange) [chart.options.scales.x.min, chart.options.scales.x.max] = extra.xRange;
      this.setData(chart, labels, series, extra);
    }
    return true;
  }

  // What the charts under `root` show, for the exports: [name, PNG data URL or CSV text].
  exports(root, format) {
    const found = [];
    for (const canvas of root.querySelectorAll("canvas[data-chart]")) {
      const chart = this.shown.get(canvas.dataset.chart);
      if (chart) found.push([canvas.dataset.chart, format === "png" ? chart.toBase64Image("image/png", 1) : toCSV(this.data(chart))]);
    }
    return found;
  }

  create(canvas, spec) {
    const { kind, title, unit = "count", overlayUnit } = spec;
    const stacked = kind === "stacked";
    const css = getComputedStyle(document.documentElement);
    const text = css.getPropertyValue("--fg").trim() || "#1d2330";
    const grid = css.getPropertyValue("--line").trim() || "#e3e6ec";
    const format = FORMAT[unit] ?? FORMAT.count;
    const horizontal = kind === "hbar";
    const valueAxis = {
      beginAtZero: true,
      grid: { color: grid },
      // Counts and bytes are whole: no 0.2-steps that all print as "0 B" on an empty chart.
      ticks: { color: text, precision: WHOLE_UNITS.has(unit) ? 0 : undefined, callback: (v) => format(v) },
      stacked,
      ...(unit === "%" ? { max: 100 } : {}),
    };
    const timeAxis = kind === "scatter"
      ? { type: "linear", grid: { color: grid }, afterBuildTicks: roundTimes,
          ticks: { color: text, maxRotation: 0, callback(ms) { return tickLabel(ms, this.min, this.max); } } }
      // offset: each bucket in the middle of its slot, as bars are: a lone point is not on the edge
      : { grid: { color: grid }, stacked, offset: true,
          ticks: { color: text, maxRotation: 0, autoSkip: false, callback: bucketTick } };
    const scales = horizontal ? { x: valueAxis, y: { grid: { color: grid }, ticks: { color: text, autoSkip: false } } }
      : { x: timeAxis, y: valueAxis };
    if (spec.bands) scales.band = { axis: "y", display: false, min: 0, max: 1 }; // bands fill the plot's height
    if (overlayUnit) {
      // no fixed 100 %: an error rate of 2 % would lie flat on 0 (setData fits the axis to it)
      scales.y2 = { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
                    ticks: { color: text, callback: (v) => FORMAT[overlayUnit](v) } };
    }
    const chart = new globalThis.Chart(canvas, {
      plugins: horizontal ? [barValues(text, format)] : [],
      type: kind === "hbar" || kind === "stacked" ? "bar" : kind,
      data: { labels: [], datasets: [] },
      options: {
        animation: false, // updates arrive every second; animating them costs frames
        responsive: true,
        maintainAspectRatio: false,
        normalized: true,
        indexAxis: horizontal ? "y" : "x",
        interaction: { mode: kind === "scatter" ? "nearest" : "index", intersect: kind === "scatter" },
        plugins: {
          title: { display: true, text: title, color: text },
          legend: {
            display: !horizontal,
            labels: { color: text, boxWidth: 12 },
            onClick: (_, item) => this.openSource(chart.data.datasets[item.datasetIndex]?.label),
          },
          tooltip: {
            callbacks: {
              label: (ctx) => {
                const dataset = ctx.dataset;
                if (dataset.yAxisID === "band") return dataset.label;
                const value = kind === "scatter" ? ctx.raw.y : ctx.raw;
                const of = dataset.yAxisID === "y2" ? FORMAT[overlayUnit] : format;
                // a bucket's range of single runs says so, and how many runs it holds
                const shown = Array.isArray(value) ? `${of(value[0])} to ${of(value[1])} (${plural(ctx.raw.runs, "run")})` : of(value);
                const partial = dataset.partial !== undefined && ctx.dataIndex === dataset.partial ? " (so far)" : "";
                return `${dataset.label}: ${shown}${partial}${failedText(ctx.raw?.failed)}`;
              },
            },
          },
        },
        onClick: (_, elements) => {
          if (!horizontal || !elements.length) return;
          this.openSource(chart.data.labels[elements[0].index]);
        },
        scales,
      },
    });
    chart.$spec = spec;
    return chart;
  }

  openSource(name) {
    if (this.open && name && name !== OTHERS && !name.startsWith("error rate")) this.open(name);
  }

  // labels: the x axis (or the bars' categories); series: {name: values}. extra.partial: the
  // index of the still-filling bucket; extra.overlay: {name: values} drawn as a line on a
  // second axis (the timeline's error rate).
  setData(chart, labels, series, extra = {}) {
    const spec = chart.$spec;
    chart.data.labels = labels;
    chart.$times = extra.times; // the buckets' start times (ISO 8601), for the CSV
    chart.$partial = extra.partial;
    // The sources drawn together are told apart: one set of colours for the chart.
    const colours = coloursOf(spec.kind === "hbar" ? labels : Object.keys(series));
    const datasets = Object.entries(series).map(([name, values]) =>
      this.dataset(spec, name, values, extra, spec.kind === "hbar" ? labels.map((l) => colours.get(l)) : colours.get(name)));
    for (const [name, values] of Object.entries(extra.marks ?? {})) {
      // failed runs drawn over a scheduler's ranges: a ✕ each, in the failures' red
      datasets.push({ ...this.dataset(spec, name, values, extra, ERROR_RATE_COLOUR), type: "scatter", order: -1 });
    }
    for (const [name, values] of Object.entries(extra.overlay ?? {})) {
      // dashed, in a colour no source has: the error rate is never read as one more source
      const colour = spec.colours?.[name] ?? ERROR_RATE_COLOUR;
      // no dots where the rate is 0: a row of red dots along the foot reads as errors every hour
      datasets.push({ ...this.line(name, values, colour, extra.partial), type: "line", yAxisID: "y2", order: -1,
                      borderDash: [6, 4], pointRadius: values.map((v) => (v ? 2 : 0)) });
    }
    for (const [name, flags] of Object.entries(extra.bands ?? {})) {
      // buckets shaded across the plot's height, behind the records, as wide as their slot
      const colour = spec.bands[name];
      datasets.push({ label: name, type: "bar", data: flags.map((on) => (on ? 1 : null)), yAxisID: "band",
                      stack: "band", grouped: false, order: 10, backgroundColor: `${colour}38`,
                      borderColor: colour, borderWidth: 0, barPercentage: 1, categoryPercentage: 1 });
    }
    chart.data.datasets = datasets;
    if (spec.kind === "hbar" && spec.unit === "%") chart.options.scales.x.min = percentFloor(series);
    if (chart.options.scales.y2) chart.options.scales.y2.suggestedMax = overlayCeiling(extra.overlay);
    if (spec.kind === "hbar") {
      chart.canvas.parentNode.style.height = `${Math.max(160, 70 + labels.length * BAR_ROW_PX)}px`;
    }
    chart.update("none");
  }

  // `colour`: the source's (for horizontal bars, one per bar).
  dataset(spec, name, values, extra, colour) {
    if (spec.kind === "hbar") {
      return { label: name, data: values, backgroundColor: colour, borderColor: colour };
    }
    if (spec.kind === "scatter" && Array.isArray(values[0]?.y)) {
      // a bucket's range of single runs, lowest to highest: a floating bar across its bucket
      // (a few pixels tall at least: a bucket whose runs all took the same time is still seen)
      return { label: name, data: values, type: "bar", backgroundColor: colour, borderWidth: 0,
               barPercentage: 0.8, categoryPercentage: 1, minBarLength: 3 };
    }
    if (spec.kind === "scatter") {
      return {
        label: name, data: values, backgroundColor: colour, borderColor: colour,
        pointRadius: values.map((p) => (p.failed ? 6 : 3)),
        pointStyle: values.map((p) => (p.failed ? "crossRot" : "circle")),
        pointBorderColor: values.map((p) => (p.failed ? ERROR_RATE_COLOUR : colour)),
        pointBorderWidth: values.map((p) => (p.failed ? 2 : 1)),
      };
    }
    if (spec.kind === "stacked") {
      const colours = values.map((_, i) => (i === extra.partial ? faded(colour) : colour));
      return { label: name, data: values, backgroundColor: colours, borderColor: colour, partial: extra.partial,
               stack: "records", barPercentage: 1, categoryPercentage: 0.9 };
    }
    return this.line(name, values, spec.colours?.[name] ?? colour, extra.partial);
  }

  line(name, values, colour, partial) {
    const last = partial ?? -1;
    return {
      label: name,
      data: values,
      borderColor: colour,
      backgroundColor: colour,
      borderWidth: 2,
      pointRadius: 2, // a lone point is still seen: sparse series are drawn
      pointHoverRadius: 4,
      spanGaps: false, // a gap is a gap
      partial,
      segment: { borderDash: (ctx) => (ctx.p1DataIndex === last ? [4, 4] : undefined) },
    };
  }

  data(chart) {
    const series = {};
    for (const dataset of chart.data.datasets) series[dataset.label] = dataset.data;
    return { labels: chart.data.labels, series, times: chart.$times, partial: chart.$partial };
  }
}

// A linear time axis's ticks: round times that fit its width (Chart.js's own are at any value).
function roundTimes(scale) {
  scale.ticks = timeTicks(scale.min, scale.max, scale.maxWidth).map((value) => ({ value }));
}

// A bucket axis's tick at `index` (`this`: the scale, as Chart.js lays it out): the label of a
// round time, or null (no tick). Worked out once for the chart's buckets and width.
function bucketTick(value, index) {
  const chart = this.chart;
  const times = chart.$times;
  if (!times?.length) return this.getLabelForValue(value);
  const key = `${times[0]}|${times.length}|${this.maxWidth}`;
  if (chart.$ticks?.key !== key) {
    const ms = times.map((iso) => Date.parse(iso));
    chart.$ticks = { key, labels: bucketTicks(ms, ms.length > 1 ? ms[1] - ms[0] : 60_000, this.maxWidth) };
  }
  return chart.$ticks.labels[index];
}

// What a tooltip adds for failed runs: a failed run, or the number of failures in a bucket.
function failedText(failed) {
  if (!failed) return "";
  return failed === true ? " — failed" : ` — ${plural(failed, "failed run")}`;
}

// Where a percentage bar axis starts: 0, unless every bar is high, then a round step under the
// lowest, so 98.3 % and 100 % do not look the same (each bar says its value, see barValues);
// low enough that the shortest bar still spans a third of the axis (66.7 % is no sliver).
export function percentFloor(series) {
  const values = Object.values(series).flat().filter((v) => typeof v === "number");
  if (!values.length) return 0;
  const lowest = Math.min(...values);
  if (lowest < 50) return 0;
  return Math.max(0, Math.floor(Math.min(lowest - 1, (3 * lowest - 100) / 2) / 5) * 5);
}

// The top of an overlay's percentage axis: a little over its highest value (at least 5 %, at
// most 100 %), so a rate of a few percent is seen.
export function overlayCeiling(overlay) {
  const values = Object.values(overlay ?? {}).flat().filter((v) => typeof v === "number");
  const highest = values.length ? Math.max(...values) : 0;
  return Math.min(100, Math.max(5, Math.ceil((highest * 1.25) / 5) * 5));
}

// Horizontal bars say their values at their ends (inside a long bar, beside a short one).
function barValues(colour, format) {
  return {
    id: "barValues",
    afterDatasetsDraw(chart) {
      const { ctx, chartArea } = chart;
      ctx.save();
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      chart.data.datasets.forEach((dataset, d) => {
        chart.getDatasetMeta(d).data.forEach((bar, i) => {
          const value = dataset.data[i];
          if (typeof value !== "number") return;
          const text = format(value);
          const width = ctx.measureText(text).width;
          const inside = bar.x - chartArea.left > width + 12;
          ctx.fillStyle = inside ? "#fff" : colour;
          ctx.textAlign = inside ? "right" : "left";
          ctx.fillText(text, inside ? bar.x - 6 : bar.x + 6, bar.y);
        });
      });
      ctx.restore();
    },
  };
}

// A chart's figures as CSV: over time, one row a bucket, named by its start (ISO 8601, UTC)
// and marked `partial` while it still fills; values rounded to 2 decimals.
export function toCSV({ labels, series, times, partial }) {
  const names = Object.keys(series);
  const marked = Number.isInteger(partial);
  const rows = [[times ? "time" : "label", ...names, ...(marked ? ["partial"] : [])].map(csvCell).join(",")];
  labels.forEach((label, i) => {
    const values = names.map((n) => rounded(series[n][i]));
    rows.push([times?.[i] ?? label, ...values, ...(marked ? [i === partial ? "true" : ""] : [])].map(csvCell).join(","));
  });
  return rows.join("\n") + "\n";
}

function rounded(value) {
  return typeof value === "number" && !Number.isInteger(value) ? Math.round(value * 100) / 100 : value ?? "";
}

function csvCell(value) {
  const text = String(value ?? "");
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

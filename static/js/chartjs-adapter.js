// ChartAdapter on Chart.js (loaded as the UMD bundle from the npm package, window.Chart).
//
// What every chart does the same way: a colour per source from its name, whole numbers on count
// and byte axes, durations in ms or s, exact values in tooltips, gaps left as gaps, the
// still-filling last bucket drawn dashed (lines) or faded (bars), category labels never
// skipped (bars are horizontal and grow with their categories), and legend entries and bars
// that open the source's own page.

import { ChartAdapter } from "./chart-adapter.js";
import {
  OTHERS, colorOf, faded, formatBytes, formatCount, formatDuration, formatPercent, formatRatio,
} from "./format.js";

const FORMAT = {
  ms: formatDuration,
  count: formatCount,
  "%": formatPercent,
  bytes: formatBytes,
  ratio: formatRatio,
};
const WHOLE_UNITS = new Set(["count", "bytes"]);
const BAR_ROW_PX = 24;

export class ChartJsAdapter extends ChartAdapter {
  constructor(Chart = globalThis.Chart, { open } = {}) {
    super();
    this.Chart = Chart;
    this.open = open; // open(sourceName): where a click on a source leads
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
      ? { type: "linear", grid: { color: grid }, ticks: { color: text, maxRotation: 0, callback: spec.timeLabel } }
      : { grid: { color: grid }, stacked, ticks: { color: text, maxRotation: 0, autoSkip: !horizontal } };
    const scales = horizontal ? { x: valueAxis, y: { ...timeAxis, ticks: { ...timeAxis.ticks, autoSkip: false } } }
      : { x: timeAxis, y: valueAxis };
    if (overlayUnit) {
      scales.y2 = { position: "right", beginAtZero: true, max: 100, grid: { drawOnChartArea: false },
                    ticks: { color: text, callback: (v) => FORMAT[overlayUnit](v) } };
    }
    const chart = new this.Chart(canvas, {
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
                const value = kind === "scatter" ? ctx.raw.y : ctx.raw;
                const shown = (dataset.yAxisID === "y2" ? FORMAT[overlayUnit] : format)(value);
                const partial = dataset.partial !== undefined && ctx.dataIndex === dataset.partial ? " (so far)" : "";
                const failed = ctx.raw?.failed ? " — failed" : "";
                return `${dataset.label}: ${shown}${partial}${failed}`;
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
    const datasets = Object.entries(series).map(([name, values]) => this.dataset(chart, spec, name, values, extra));
    for (const [name, values] of Object.entries(extra.overlay ?? {})) {
      const colour = spec.colours?.[name] ?? "#c0362c";
      datasets.push({ ...this.line(name, values, colour, extra.partial), type: "line", yAxisID: "y2", order: -1 });
    }
    chart.data.datasets = datasets;
    if (spec.kind === "hbar") {
      chart.canvas.parentNode.style.height = `${Math.max(160, 70 + labels.length * BAR_ROW_PX)}px`;
    }
    chart.update("none");
  }

  dataset(chart, spec, name, values, extra) {
    if (spec.kind === "hbar") {
      const colours = chart.data.labels.map((label) => colorOf(label));
      return { label: name, data: values, backgroundColor: colours, borderColor: colours };
    }
    if (spec.kind === "scatter") {
      return {
        label: name, data: values, backgroundColor: colorOf(name), borderColor: colorOf(name),
        pointRadius: values.map((p) => (p.failed ? 6 : 3)),
        pointStyle: values.map((p) => (p.failed ? "crossRot" : "circle")),
        pointBorderColor: values.map((p) => (p.failed ? "#c0362c" : colorOf(name))),
        pointBorderWidth: values.map((p) => (p.failed ? 2 : 1)),
      };
    }
    if (spec.kind === "stacked") {
      const colour = colorOf(name);
      const colours = values.map((_, i) => (i === extra.partial ? faded(colour) : colour));
      return { label: name, data: values, backgroundColor: colours, borderColor: colour, partial: extra.partial,
               stack: "records", barPercentage: 1, categoryPercentage: 0.9 };
    }
    return this.line(name, values, spec.colours?.[name] ?? colorOf(name), extra.partial);
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
    return { labels: chart.data.labels, series };
  }

  toPNG(chart) {
    return chart.toBase64Image("image/png", 1);
  }

  destroy(chart) {
    chart.destroy();
  }
}

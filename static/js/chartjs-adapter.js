// ChartAdapter on Chart.js (loaded as the UMD bundle from the npm package, window.Chart).

import { ChartAdapter } from "./chart-adapter.js";

const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

export class ChartJsAdapter extends ChartAdapter {
  constructor(Chart = globalThis.Chart) {
    super();
    this.Chart = Chart;
    this.colours = new Map(); // series name -> colour, stable across charts
  }

  colour(name) {
    if (!this.colours.has(name)) this.colours.set(name, PALETTE[this.colours.size % PALETTE.length]);
    return this.colours.get(name);
  }

  create(canvas, { kind, title, unit = "" }) {
    const text = getComputedStyle(document.documentElement).getPropertyValue("--fg").trim() || "#1d2330";
    return new this.Chart(canvas, {
      type: kind,
      data: { labels: [], datasets: [] },
      options: {
        animation: false, // updates arrive every second; animating them costs frames
        responsive: true,
        maintainAspectRatio: false,
        normalized: true,
        plugins: {
          title: { display: true, text: title, color: text },
          legend: { labels: { color: text, boxWidth: 12 } },
        },
        scales: {
          x: { ticks: { color: text, maxRotation: 0, autoSkip: true } },
          y: { beginAtZero: true, ticks: { color: text }, title: { display: Boolean(unit), text: unit, color: text } },
        },
      },
    });
  }

  setData(chart, labels, series) {
    chart.data.labels = labels;
    const byName = new Map(chart.data.datasets.map((d) => [d.label, d]));
    chart.data.datasets = Object.entries(series).map(([name, values]) => {
      const dataset = byName.get(name) ?? {
        label: name,
        borderColor: this.colour(name),
        backgroundColor: this.colour(name),
        pointRadius: 0,
        borderWidth: 2,
        spanGaps: true,
      };
      dataset.data = values;
      return dataset;
    });
    chart.update("none");
  }

  data(chart) {
    const series = {};
    for (const dataset of chart.data.datasets) series[dataset.label] = dataset.data;
    return { labels: chart.data.labels, series };
  }

  toPNG(chart) {
    return chart.toBase64Image("image/png", 1);
  }

  resize(chart) {
    chart.resize();
  }

  destroy(chart) {
    chart.destroy();
  }
}

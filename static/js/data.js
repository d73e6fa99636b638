// The Data section (templates/dashboard/data.html): what one source's scrapers delivered over the
// chosen range, from GET /api/fields/. Each field's filled and valid share as a field × time grid
// (a row per field, a cell per bucket of the range's axis, coloured from red at 0 % to green at
// 100 %: a broken hour is a red stripe down the rows), and the source's navigations per HTTP
// status class as one stacked bar. Fields are named by each source's scraper, so on "all
// sources" the section offers the busiest, and draws every source's status mix, a bar each.
// Everything from the server is written with textContent.

import { bucketLabel, bucketTicks, formatCount, formatDuration, formatPercent, plural } from "./format.js";

const STEP_MS = { minute: 60_000, hour: 3_600_000 };
// The status classes, in the order drawn, with site.css's colours: the good green, the accent
// blue, amber as the page's warnings, the bad red. 403 and 429 stand apart from the other 4xx:
// they are the refusals the `blocked` verdict counts (metrics_app/alerts/verdicts.py,
// REFUSAL_STATUSES), shown in purple and pink, warmer the more they block.
export const STATUS_CLASSES = [
  ["1xx", "1xx", "var(--muted)"], ["2xx", "2xx", "var(--good)"], ["3xx", "3xx", "var(--accent)"],
  ["403", "403", "#7c3aed"], ["429", "429", "#db2777"], ["4xx", "other 4xx", "#d97706"], ["5xx", "5xx", "var(--bad)"],
];
export const REFUSAL_STATUSES = [403, 429]; // tests/unit/test_rules_agree.py: the verdict's
export const statusClass = (code) => (REFUSAL_STATUSES.includes(code) ? String(code) : `${Math.floor(code / 100)}xx`);
const SOURCES_SHOWN = 50; // on "all sources", the busiest sources' mixes; the rest are counted

// The two shares, as the server defines them (metrics_app/history/fields.py, share_parts): filled of the
// items, valid of the filled; null when there is nothing to divide.
export const filledShare = (b) => (b.items ? b.filled / b.items : null);
export const validShare = (b) => (b.filled ? (b.filled - b.invalid) / b.filled : null);

const GRIDS = { filled: { share: filledShare, of: "items" }, valid: { share: validShare, of: "filled items" } };

// A share's colour: red (hue 4, --bad) at 0 through amber to green (hue 145, --good) at 1, on
// the fourth power of the share: a field is usually filled on 95–100 % of items, and a linear
// ramp drew 90 % in the same green as 100 % (90 % is yellow-green here, 50 % already red).
export function shareColour(share) {
  return share === null ? "" : `hsl(${Math.round(4 + 141 * share ** 4)} 62% 42%)`;
}

// Navigations per status class, in STATUS_CLASSES' order, with each class's codes.
export function statusMix(statuses) {
  const classes = new Map(STATUS_CLASSES.map(([name, label, colour]) => [name, { name, label, colour, navigations: 0, codes: [] }]));
  for (const { code, navigations } of statuses) {
    const found = classes.get(statusClass(code));
    found.navigations += navigations;
    found.codes.push([code, navigations]);
  }
  return [...classes.values()].filter((c) => c.navigations);
}

// The freshness line of GET /api/entities/'s answer: "500 entities, 37 stale (not refreshed
// for 15 min or more; usually every 1 min)".
export function freshnessLine(answer) {
  const usual = answer.usualIntervalS === null ? "" : `; usually every ${formatDuration(1000 * answer.usualIntervalS)}`;
  const entities = `${formatCount(answer.total)} ${answer.total === 1 ? "entity" : "entities"}`;
  return `${entities}, ${formatCount(answer.stale)} stale ` +
    `(not refreshed for ${formatDuration(1000 * answer.staleAfterS)} or more${usual})`;
}

export class DataView {
  // getJSON(url): how answers are fetched; choose(name): set the page's source filter.
  constructor(root, getJSON, choose = null) {
    this.getJSON = getJSON;
    this.choose = choose;
    this.ticket = 0;
    this.axes = new Map(); // grid → [buckets, bucket size]: its axis is ticked again at each new width
    const $ = (selector) => root.querySelector(selector);
    this.els = {
      choose: $(".data-choose"), busiest: $(".data-busiest"), body: $(".data-body"), window: $(".data-window"),
      grids: { filled: $('[data-grid="filled"]'), valid: $('[data-grid="valid"]') },
      noFields: $(".data-no-fields"), mix: $(".status-mix"), noStatuses: $(".data-no-statuses"),
      all: $(".data-all"), allWindow: $(".data-all-window"), sources: $(".source-mixes"),
      moreSources: $(".data-more-sources"), noSources: $(".data-no-sources"),
      freshness: $(".data-freshness"), freshnessSummary: $(".freshness-summary"), stalest: $(".stalest"),
      staleGrid: $('[data-grid="stale"]'),
    };
    const resized = new ResizeObserver((entries) => entries.forEach((entry) => this.tick(entry.target)));
    for (const grid of [...Object.values(this.els.grids), this.els.staleGrid]) resized.observe(grid);
  }

  // Show a source's data for a range ({name, label, bucket}); on "*", every source's status
  // mix, and `busiest`: the sources to offer. An answer overtaken by a newer call is dropped.
  async show(range, source, busiest = []) {
    const ticket = ++this.ticket;
    const all = source === "*";
    this.els.choose.hidden = !all;
    this.els.all.hidden = !all;
    this.els.body.hidden = all;
    if (all) this.offer(busiest);
    const query = new URLSearchParams(all ? { range: range.name } : { source, range: range.name });
    const answer = await this.getJSON(`/api/fields/?${query}`);
    if (ticket !== this.ticket) return;
    if (all) return this.sourceMixes(answer.sources, range);
    this.els.window.textContent = `(${source}, ${range.label}, ${range.bucketLabel})`;
    for (const [name, grid] of Object.entries(this.els.grids)) this.grid(grid, GRIDS[name], answer.fields, range);
    this.els.noFields.hidden = answer.fields.length > 0;
    this.els.noFields.textContent = `No page of ${source} reported fields in the ${range.label}.`;
    this.els.mix.replaceChildren(...mixOf(answer.statuses));
    this.els.noStatuses.hidden = answer.statuses.length > 0;
    this.els.noStatuses.textContent = `No navigation of ${source} reported an HTTP status in the ${range.label}.`;
    this.staleOverTime(answer.staleEntities, range);
    await this.freshness(source, ticket);
  }

  // The stale count over the range: one row of the grid, a cell per bucket coloured by the
  // share of the entities stale (green where none was), its most over the range at the end.
  staleOverTime(buckets, range) {
    const row = document.createElement("div");
    row.className = "field-row";
    const name = document.createElement("span");
    name.className = "field-name";
    name.textContent = "stale";
    const cells = document.createElement("span");
    cells.className = "cells";
    cells.append(...buckets.map((bucket) => staleCell(bucket, range.bucket)));
    const most = document.createElement("span");
    most.className = "field-total";
    const worst = buckets.reduce((found, bucket) => (bucket.stale > found.stale ? bucket : found), buckets[0]);
    most.textContent = formatCount(worst.stale);
    most.title = `The most stale at once over the ${range.label}: ${staleText(worst)}`;
    row.append(name, cells, most);
    const grid = this.els.staleGrid;
    grid.style.setProperty("--buckets", String(buckets.length));
    grid.replaceChildren(row);
    this.axes.set(grid, [buckets, range.bucket]);
    this.tick(grid);
  }

  // The source's entities now (not over the range: their freshness is kept, not its history):
  // how many are stale, and the stalest with their age.
  async freshness(source, ticket) {
    const answer = await this.getJSON(`/api/entities/?${new URLSearchParams({ source, stale: "1", limit: "10" })}`);
    if (ticket !== this.ticket) return;
    this.els.freshness.hidden = answer.total === 0;
    this.els.freshnessSummary.textContent = freshnessLine(answer);
    this.els.stalest.replaceChildren(...answer.entities.map((entity) => {
      const item = document.createElement("li");
      item.dataset.entity = entity.entity;
      item.textContent = `${entity.entity}: ${formatDuration(1000 * entity.ageS)} ago`;
      return item;
    }));
  }

  offer(busiest) {
    this.els.busiest.replaceChildren(...busiest.map((name) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.textContent = name;
      button.addEventListener("click", () => this.choose?.(name));
      return button;
    }));
  }

  // A row per field: its name, a cell per bucket (coloured by its share, the numbers in its
  // title), its share over the range; under the rows the axis, ticked as the charts' are.
  grid(root, { share, of }, fields, range) {
    const rows = fields.map((field) => {
      const row = document.createElement("div");
      row.className = "field-row";
      row.dataset.field = field.field;
      const name = document.createElement("span");
      name.className = "field-name";
      name.textContent = field.field;
      name.title = field.field;
      const cells = document.createElement("span");
      cells.className = "cells";
      cells.append(...field.buckets.map((bucket) => cell(bucket, share(bucket), of, range.bucket)));
      const total = document.createElement("span");
      total.className = "field-total";
      const whole = share(field);
      total.textContent = formatPercent(whole === null ? null : 100 * whole);
      total.title = `${field.field} over the ${range.label}: ${formatCount(field.filled)} filled of ${plural(field.items, "item")}, ${formatCount(field.invalid)} invalid`;
      row.append(name, cells, total);
      return row;
    });
    root.style.setProperty("--buckets", String(fields[0]?.buckets.length ?? 1));
    root.replaceChildren(...rows);
    this.axes.set(root, rows.length ? [fields[0].buckets, range.bucket] : null);
    this.tick(root);
  }

  // The grid's time axis for the width its cells have now: labels never overlap at any width,
  // and a last label with no room past the row's end (a phone's, the cells edge to edge) is left out.
  tick(root) {
    const axis = this.axes.get(root);
    const cells = root.querySelector(".cells");
    root.querySelector(".field-axis")?.remove();
    if (!axis || !cells) return;
    const row = axisRow(...axis, cells.clientWidth);
    root.append(row);
    const end = row.getBoundingClientRect().right;
    for (const label of row.querySelectorAll(".tick")) if (label.getBoundingClientRect().right > end) label.remove();
  }

  // Every source's status mix, the busiest first: its name (choosing it), its navigations, its bar.
  sourceMixes(sources, range) {
    this.els.allWindow.textContent = `(all sources, ${range.label})`;
    const shown = sources.slice(0, SOURCES_SHOWN);
    this.els.sources.replaceChildren(...shown.map(({ source, navigations, statuses }) => {
      const item = document.createElement("li");
      item.className = "source-mix";
      item.dataset.source = source;
      const head = document.createElement("p");
      head.className = "source-mix-head";
      const name = document.createElement("button");
      name.type = "button";
      name.className = "link";
      name.textContent = source;
      name.addEventListener("click", () => this.choose?.(source));
      const total = document.createElement("span");
      total.className = "muted";
      total.textContent = plural(navigations, "navigation");
      head.append(name, total);
      item.append(head, ...mixOf(statuses));
      return item;
    }));
    const more = sources.length - shown.length;
    this.els.moreSources.hidden = more <= 0;
    this.els.moreSources.textContent = `${plural(more, "more source")}, with fewer navigations each.`;
    this.els.noSources.hidden = sources.length > 0;
    this.els.noSources.textContent = `No navigation reported an HTTP status in the ${range.label}.`;
  }
}

// One bar, the status classes side by side as wide as their share, and its legend: each
// class's navigations and share; the codes of a class of several in its title.
function mixOf(statuses) {
  const classes = statusMix(statuses);
  if (!classes.length) return [];
  const total = classes.reduce((sum, c) => sum + c.navigations, 0);
  const bar = document.createElement("div");
  bar.className = "status-bar";
  const legend = document.createElement("p");
  legend.className = "status-legend";
  for (const found of classes) {
    const segment = document.createElement("span");
    segment.dataset.status = found.name;
    segment.style.flexGrow = String(found.navigations);
    segment.style.background = found.colour;
    const codes = found.codes.map(([code, n]) => `${code}: ${formatCount(n)}`).join(", ");
    const single = found.codes.length === 1 && String(found.codes[0][0]) === found.name;
    segment.title = `${found.label}: ${plural(found.navigations, "navigation")}${single ? "" : ` (${codes})`}`;
    bar.append(segment);
    const key = document.createElement("span");
    key.dataset.status = found.name;
    const swatch = document.createElement("i");
    swatch.style.background = found.colour;
    key.append(swatch, `${found.label} ${formatCount(found.navigations)} (${formatPercent((100 * found.navigations) / total)})`);
    key.title = segment.title;
    legend.append(key);
  }
  return [bar, legend];
}

function cell(bucket, share, of, bucketSize) {
  const found = document.createElement("span");
  found.className = "cell";
  found.dataset.start = bucket.start;
  const when = bucketLabel(bucket.start, bucketSize);
  if (share === null) {
    found.classList.add("empty");
    found.title = `${when}: not reported`;
    return found;
  }
  found.dataset.share = share.toFixed(4);
  found.style.background = shareColour(share);
  const counted = of === "items" ? `${formatCount(bucket.filled)} of ${plural(bucket.items, "item")}`
    : `${formatCount(bucket.filled - bucket.invalid)} of ${formatCount(bucket.filled)} filled`;
  found.title = `${when}: ${formatPercent(100 * share)} (${counted})`;
  return found;
}

// "37 of 500 stale", or "none stale".
const staleText = (bucket) => (bucket.stale ? `${formatCount(bucket.stale)} of ${formatCount(bucket.total)} stale` : "none stale");

function staleCell(bucket, bucketSize) {
  const found = document.createElement("span");
  found.className = "cell";
  found.dataset.start = bucket.start;
  found.dataset.stale = String(bucket.stale);
  found.style.background = shareColour(bucket.stale ? 1 - bucket.stale / bucket.total : 1);
  found.title = `${bucketLabel(bucket.start, bucketSize)}: ${staleText(bucket)}`;
  return found;
}

// The grid's time axis: a label at the bucket holding each round time (format.bucketTicks).
function axisRow(buckets, bucketSize, width) {
  const row = document.createElement("div");
  row.className = "field-axis";
  const times = buckets.map((b) => Date.parse(b.start));
  const ticks = document.createElement("span");
  ticks.className = "ticks";
  bucketTicks(times, STEP_MS[bucketSize], width || 600).forEach((label, i) => {
    if (label === null) return;
    const tick = document.createElement("span");
    tick.className = "tick";
    tick.textContent = label;
    tick.style.left = `${(100 * i) / times.length}%`;
    ticks.append(tick);
  });
  row.append(document.createElement("span"), ticks, document.createElement("span"));
  return row;
}

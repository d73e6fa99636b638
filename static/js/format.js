// How numbers, durations, times and sources are written on the page, in one place.
// Formatters are built once: Intl's constructors are expensive, their format() calls are not.

const COUNT = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const ONE_DECIMAL = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const THREE_FIGURES = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 3 });
const TWO_FIGURES = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 2 });
const COMPACT = new Intl.NumberFormat(undefined, { notation: "compact", maximumSignificantDigits: 2 });
// Times of day on a 24-hour clock: "00:10" is shorter than "12:10 AM" and never ambiguous.
const MINUTE = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const DAY_HOUR = new Intl.DateTimeFormat([], {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
});
const MONTH_DAY = new Intl.DateTimeFormat([], { month: "short", day: "numeric" });
const FULL = new Intl.DateTimeFormat([], {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});

export const DASH = "–";

// Durations in ms below a second and in s above, to 2–3 significant figures: 412 ms, 2.1 s, 45 s.
export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return DASH;
  if (ms < 1000) return `${THREE_FIGURES.format(ms)} ms`;
  if (ms < 60_000) return `${TWO_FIGURES.format(ms / 1000)} s`;
  if (ms < 3_600_000) return `${TWO_FIGURES.format(ms / 60_000)} min`;
  return `${TWO_FIGURES.format(ms / 3_600_000)} h`;
}

export function formatCount(value) {
  return value === null || value === undefined ? DASH : COUNT.format(value);
}

// A ratio (items per scrape, retries per navigation) to 3 significant figures: 20, 1.25, 0.8.
export function formatRatio(value) {
  return value === null || value === undefined ? DASH : THREE_FIGURES.format(value);
}

// "1 failure", "2,048 failures".
export function plural(count, noun) {
  return `${formatCount(count)} ${noun}${count === 1 ? "" : "s"}`;
}

export function formatPercent(value) {
  return value === null || value === undefined ? DASH : `${ONE_DECIMAL.format(value)} %`;
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return DASH;
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit ? TWO_FIGURES.format(value) : COUNT.format(value)} ${units[unit]}`;
}

// How long ago: "just now", "45 s ago", "3 min ago", "5 h ago", "2 d ago".
export function formatAgo(ms, now = Date.now()) {
  if (!ms) return "never";
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

// A scheduler's usual period as the server learned it (metrics_app/history/periods.py):
// "every 5 min", "learning: 2 runs" until enough runs agree, "irregular: last 10 runs".
export function formatPeriod(period) {
  if (period?.seconds) return `every ${formatDuration(period.seconds * 1000)}`;
  if (period?.state === "irregular") return `irregular: last ${plural(period.runs, "run")}`;
  return period ? `learning: ${plural(period.runs, "run")}` : "learning";
}

export function formatTime(ms) {
  return FULL.format(ms);
}

// A bucket's name in tooltips (an ISO time or ms): the time of day for minutes ("14:05"), the
// date and hour for hours ("Dec 1, 14:00").
export function bucketLabel(time, bucket) {
  return (bucket === "minute" ? MINUTE : DAY_HOUR).format(typeof time === "string" ? Date.parse(time) : time);
}

// --- time axes: ticks on round times, never overlapping ---------------------------------------

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
// Round steps between ticks, in minutes: the smallest that leaves each label its room is used.
const TICK_STEPS = [1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080].map((m) => m * MINUTE_MS);
export const TICK_PX = 64; // a label ("Dec 30", "23:45") and the gap before the next

function localMidnight(ms) {
  const day = new Date(ms);
  day.setHours(0, 0, 0, 0);
  return day;
}

// The round times (ms, local time) at which to tick an axis from `start` to `end` that is `width`
// px wide: every multiple of the smallest step (at least `least`, an axis's bucket) for which
// the labels fit; whole days from a step of a day.
export function timeTicks(start, end, width, least = 0) {
  const room = Math.max(2, Math.floor(width / TICK_PX));
  const step = TICK_STEPS.find((s) => s >= least && (end - start) / s < room) ?? TICK_STEPS.at(-1);
  const ticks = [];
  // day by day, so that a clock change does not shift the hours
  for (const day = localMidnight(start); day.getTime() <= end; day.setDate(day.getDate() + 1)) {
    const midnight = day.getTime();
    if (step >= DAY_MS) {
      const dayNumber = Date.UTC(day.getFullYear(), day.getMonth(), day.getDate()) / DAY_MS;
      if (dayNumber % (step / DAY_MS) === 0 && midnight >= start) ticks.push(midnight);
      continue;
    }
    for (let t = midnight; t < midnight + DAY_MS && t <= end; t += step) if (t >= start) ticks.push(t);
  }
  return ticks;
}

// A tick's label: the month and day at midnight on an axis that spans days ("Dec 1"), else the
// time of day ("14:30").
export function tickLabel(ms, start, end) {
  const spansDays = localMidnight(start).getTime() !== localMidnight(end).getTime();
  return spansDays && localMidnight(ms).getTime() === ms ? MONTH_DAY.format(ms) : MINUTE.format(ms);
}

// The labels of a category axis of buckets (their start times, ms; `bucket` long): a tick's label
// at the bucket holding each round time, null (no tick, no grid line) at the others.
export function bucketTicks(times, bucket, width) {
  const labels = times.map(() => null);
  if (!times.length) return labels;
  const start = times[0];
  const end = times.at(-1) + bucket;
  let i = 0;
  for (const tick of timeTicks(start, end - 1, width, bucket)) {
    while (i + 1 < times.length && times[i + 1] <= tick) i += 1;
    if (labels[i] === null) labels[i] = tickLabel(tick, start, end - 1);
  }
  return labels;
}

// A trend as the server judged it (metrics_app/trend.py decides whether the range before holds
// comparable data, and the change): "new" when it does not, "+12 %", "-3.4 %", and, from ten
// times as many on, "×12", "×330", "×43K": "+33,305 %" reads as noise where "×330" says it.
const TIMES_FROM = 10;

export function formatChange(trend) {
  if (!trend) return DASH;
  if (!trend.comparable || trend.change === null || trend.change === undefined) return "new";
  const ratio = 1 + trend.change / 100;
  if (ratio >= TIMES_FROM) return `×${COMPACT.format(ratio)}`;
  return `${trend.change > 0 ? "+" : ""}${ONE_DECIMAL.format(trend.change)} %`;
}

export const OTHERS = "others";

// Sources' colours: ten that any two in a chart tell apart (CIE76 distance 37 or more between
// any two in the light scheme, 23 in the dark, where they are lighter to read on the dark
// background), none near the error rate's red nor the grey of "others".
export const PALETTE = {
  light: ["#2ca02c", "#e7298a", "#ff7f0e", "#3182bd", "#8c564b", "#006d5b", "#bcbd22", "#5e3c99", "#a6761d", "#17becf"],
  dark: ["#76c176", "#ef74b3", "#ffac62", "#79aed4", "#b4918a", "#59a094", "#d3d46f", "#9680bd", "#c5a66c", "#68d5e0"],
};
export const OTHERS_COLOUR = { light: "#9aa1ad", dark: "#8b93a1" };

function darkScheme() {
  return Boolean(globalThis.matchMedia?.("(prefers-color-scheme: dark)").matches);
}

// A source's own place in the palette, from its name (FNV-1a): the same on every load.
function slotOf(name) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i += 1) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % PALETTE.light.length;
}

// The colours of the series a chart shows together: each name its own place in the palette,
// unless a name before it (by name) took it, then the next free one; so up to ten sources are
// all told apart, and a source keeps its colour wherever the same sources are shown.
export function coloursOf(names, dark = darkScheme()) {
  const palette = dark ? PALETTE.dark : PALETTE.light;
  const taken = new Set();
  const colours = new Map();
  for (const name of [...new Set(names)].sort()) {
    if (name === OTHERS) {
      colours.set(name, dark ? OTHERS_COLOUR.dark : OTHERS_COLOUR.light);
      continue;
    }
    let slot = slotOf(name);
    for (let tries = 0; taken.has(slot) && tries < palette.length; tries += 1) slot = (slot + 1) % palette.length;
    taken.add(slot);
    colours.set(name, palette[slot]);
  }
  return colours;
}

// The same colour, see-through: the still-filling bucket of a bar chart.
export function faded(colour) {
  return colour.startsWith("#") ? `${colour}73` : colour.replace(")", " / 0.45)");
}

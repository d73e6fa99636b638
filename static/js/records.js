// The record rules the page relies on, as the server defines them (metrics_app/records.py);
// tests/unit/test_rules_agree.py checks that the two agree.

export const WILDCARD = "*"; // a subscription to every channel

export const SOURCE_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,49}$/;

// The field holding each type's duration, and its items (the wire's camelCase names).
export const DURATION_FIELD = Object.freeze({
  page_navigation: "navigationDurationMs",
  page_scrape: "scrapeDurationMs",
  scheduler_run: "executionDurationMs",
});
export const ITEMS_FIELD = Object.freeze({ page_scrape: "itemsExtracted", scheduler_run: "itemsProcessed" });

// A record's channel is the first of these that is set: its source, or a scheduler run's
// own name when it names no source.
export const CHANNEL_FIELDS = Object.freeze(["scraperSource", "schedulerName"]);

export function isSourceName(name) {
  return typeof name === "string" && SOURCE_PATTERN.test(name);
}

export function channelOf(record) {
  for (const field of CHANNEL_FIELDS) if (record[field]) return record[field];
  return undefined;
}

export function durationOf(record) {
  return record[DURATION_FIELD[record.type]];
}

export function itemsOf(record) {
  const field = ITEMS_FIELD[record.type];
  return field ? (record[field] ?? 0) : 0;
}

// Ids are per table, so a record is told apart by (is it a scheduler run, id).
export function recordKey(record) {
  return `${record.type === "scheduler_run" ? "s" : "p"}${record.id}`;
}

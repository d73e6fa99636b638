// Records summed, as the server sums them (metrics_app/tally.py): the page adds live records to
// the server's buckets (the live totals are the server's own, view.takeUpdate), and merges
// buckets and totals of several channels, with these rules alone. tests/unit/test_rules_agree.py runs both over the same records.
//
// A bucket counts its records in `count`, a channel's totals in `records`; otherwise they sum
// the same fields. Percentiles are the server's: they cannot be added, so a bucket that grew
// here keeps the ones it came with until the next reload, and a merge of several has none.

import { durationOf, itemsOf } from "./records.js";

export function emptyBucket(start) {
  return { start, count: 0, successCount: 0, avgDurationMs: null, p50DurationMs: null, p95DurationMs: null,
           p99DurationMs: null, itemsExtracted: 0, retries: 0, dataSize: 0 };
}

export function emptyTotals() {
  return { records: 0, successCount: 0, failures: 0, successRate: null, avgDurationMs: null, p95DurationMs: null,
           itemsExtracted: 0, retries: 0, dataSize: 0 };
}

// One record into a bucket (counted in `count`) or totals (counted in `records`).
export function addRecord(sums, record, counted = "count") {
  const n = sums[counted];
  sums.avgDurationMs = ((sums.avgDurationMs ?? 0) * n + (durationOf(record) ?? 0)) / (n + 1);
  sums[counted] = n + 1;
  sums.successCount += record.success ? 1 : 0;
  sums.itemsExtracted += itemsOf(record);
  sums.retries += record.retryCount ?? 0;
  sums.dataSize += record.dataSize ?? 0;
  if (counted === "records") {
    sums.failures = sums.records - sums.successCount;
    sums.successRate = (100 * sums.successCount) / sums.records;
  }
  return sums;
}

// Totals as the server sent them, with every field this page adds to.
export function asTotals(totals) {
  for (const [name, zero] of Object.entries(emptyTotals())) totals[name] ??= zero;
  return totals;
}

// Several channels' totals as one: sums, the rates recomputed, the average weighted by records
// (percentiles, which cannot be added, are left out).
export function mergeTotals(all) {
  const merged = emptyTotals();
  let duration = 0;
  for (const t of all) {
    for (const name of ["records", "successCount", "itemsExtracted", "retries", "dataSize"]) merged[name] += t[name] ?? 0;
    duration += (t.avgDurationMs ?? 0) * (t.records ?? 0);
  }
  merged.failures = merged.records - merged.successCount;
  merged.successRate = merged.records ? (100 * merged.successCount) / merged.records : null;
  merged.avgDurationMs = merged.records ? duration / merged.records : null;
  return merged;
}

// Several channels' buckets of one time as one: sums, and the average weighted by count.
export function mergeBuckets(buckets) {
  const present = buckets.filter(Boolean);
  if (present.length <= 1) return present[0] ?? null;
  const merged = emptyBucket(present[0].start);
  let duration = 0;
  for (const b of present) {
    merged.count += b.count;
    merged.successCount += b.successCount;
    merged.itemsExtracted += b.itemsExtracted;
    merged.retries += b.retries;
    merged.dataSize += b.dataSize;
    duration += (b.avgDurationMs ?? 0) * b.count;
  }
  merged.avgDurationMs = merged.count ? duration / merged.count : null;
  return merged;
}

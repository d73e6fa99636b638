// Time axes (format.timeTicks, bucketTicks): ticks on round times, the date where the axis
// spans days, and never closer than a label's room, at any width.
import assert from "node:assert/strict";
import { test } from "node:test";

import { TICK_PX, bucketLabel, bucketTicks, tickLabel, timeTicks } from "../../static/js/format.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

// An axis of `count` buckets of `step` ms, the last starting at `last`.
function axis(last, step, count) {
  return Array.from({ length: count }, (_, i) => last - (count - 1 - i) * step);
}

// The ticks of a bucket axis, as [bucket index, label].
function ticked(times, step, width) {
  return bucketTicks(times, step, width).flatMap((label, i) => (label === null ? [] : [[i, label]]));
}

function assertRoom(ticks, times, width) {
  const pxPerBucket = width / times.length;
  for (let k = 1; k < ticks.length; k += 1) {
    assert.ok((ticks[k][0] - ticks[k - 1][0]) * pxPerBucket >= TICK_PX, `${ticks[k - 1][1]} and ${ticks[k][1]} overlap`);
  }
}

test("a week of hours is ticked at midnights, by month and day", () => {
  const times = axis(new Date(2026, 11, 7, 11).getTime(), HOUR, 24 * 7);
  const ticks = ticked(times, HOUR, 1100);
  const days = ticks.filter(([, label]) => label.startsWith("Dec"));
  assert.deepEqual(days.map(([, label]) => label), ["Dec 1", "Dec 2", "Dec 3", "Dec 4", "Dec 5", "Dec 6", "Dec 7"]);
  for (const [i] of days) assert.equal(new Date(times[i]).getHours(), 0);
  for (const [i, label] of ticks.filter((tick) => !days.includes(tick))) { // room for noon too
    assert.equal(label, "12:00");
    assert.equal(new Date(times[i]).getHours(), 12);
  }
  assertRoom(ticks, times, 1100);
});

test("a week on a half-width chart is ticked at midnights only", () => {
  const times = axis(new Date(2026, 11, 7, 11).getTime(), HOUR, 24 * 7);
  const ticks = ticked(times, HOUR, 600);
  assert.deepEqual(ticks.map(([, label]) => label), ["Dec 1", "Dec 2", "Dec 3", "Dec 4", "Dec 5", "Dec 6", "Dec 7"]);
  assertRoom(ticks, times, 600);
});

test("a week on a phone ticks every other day", () => {
  const times = axis(new Date(2026, 11, 7, 11).getTime(), HOUR, 24 * 7);
  const ticks = ticked(times, HOUR, 300);
  assert.ok(ticks.length >= 2 && ticks.length <= 4, JSON.stringify(ticks));
  for (const [, label] of ticks) assert.match(label, /^Dec \d+$/);
  assertRoom(ticks, times, 300);
});

test("a day of hours is ticked on round hours, with the date at midnight", () => {
  const times = axis(new Date(2026, 11, 7, 11).getTime(), HOUR, 24);
  const ticks = ticked(times, HOUR, 1100);
  const labels = ticks.map(([, label]) => label);
  assert.ok(labels.includes("Dec 7"), labels.join(" "));
  for (const label of labels.filter((l) => l !== "Dec 7")) assert.match(label, /^\d\d:00$/);
  for (const [i] of ticks) assert.equal(new Date(times[i]).getHours() % 2, 0);
  assertRoom(ticks, times, 1100);
});

test("an hour of minutes on a half-width chart never runs its labels together", () => {
  const times = axis(new Date(2026, 11, 7, 0, 13).getTime(), MINUTE, 60);
  for (const width of [250, 400, 520, 1100]) {
    const ticks = ticked(times, MINUTE, width);
    assert.ok(ticks.length >= 2, `${width}: ${JSON.stringify(ticks)}`);
    assertRoom(ticks, times, width);
    for (const [i, label] of ticks) {
      assert.equal(new Date(times[i]).getMinutes() % 5, 0, label); // 5, 10, 15 … minutes
      assert.match(label, /^(\d\d:\d\d|Dec 7)$/);
    }
  }
});

test("a linear axis from 04:06 to 06:53 ticks at round times, not at 04:06", () => {
  const start = new Date(2026, 11, 7, 4, 6).getTime();
  const end = new Date(2026, 11, 7, 6, 53).getTime();
  const ticks = timeTicks(start, end, 800);
  assert.ok(ticks.length >= 3);
  for (const ms of ticks) assert.equal(new Date(ms).getMinutes() % 15, 0);
  assert.deepEqual(ticks.slice(0, 2).map((ms) => tickLabel(ms, start, end)), ["04:15", "04:30"]);
  assert.ok(((ticks[1] - ticks[0]) / (end - start)) * 800 >= TICK_PX);
});

test("a bucket's tooltip name has the date for hours and a 24-hour clock", () => {
  assert.equal(bucketLabel(new Date(2026, 10, 30, 1).getTime(), "hour"), "Nov 30, 01:00");
  assert.equal(bucketLabel(new Date(2026, 11, 7, 0, 7).getTime(), "minute"), "00:07");
});

// The Data section's rules (static/js/data.js): the two shares as the server defines them
// (metrics_app/history/fields.py, tests/integration/test_fields_api.py), the colour ramp, and
// the status classes.
import assert from "node:assert/strict";
import { test } from "node:test";

import { STATUS_CLASSES, filledShare, shareColour, statusClass, statusMix, validShare } from "../../static/js/data.js";

test("filled is of the items, valid of the filled, null with nothing to divide", () => {
  assert.equal(filledShare({ items: 200, filled: 20, invalid: 2 }), 0.1);
  assert.equal(validShare({ items: 200, filled: 20, invalid: 2 }), 0.9);
  assert.equal(filledShare({ items: 0, filled: 0, invalid: 0 }), null);
  assert.equal(validShare({ items: 10, filled: 0, invalid: 0 }), null);
});

test("a share is coloured from red at 0 to green at 1, 90 % far from 100 %, nothing when unknown", () => {
  assert.equal(shareColour(0), "hsl(4 62% 42%)");
  assert.equal(shareColour(1), "hsl(145 62% 42%)");
  assert.equal(shareColour(0.9), "hsl(97 62% 42%)");
  assert.equal(shareColour(null), "");
});

test("statuses are summed per class, in class order, with their codes; 403 and 429 apart", () => {
  const mix = statusMix([
    { code: 429, navigations: 3 }, { code: 200, navigations: 40 }, { code: 404, navigations: 2 },
    { code: 403, navigations: 4 }, { code: 451, navigations: 1 }, { code: 503, navigations: 1 },
  ]);
  assert.deepEqual(mix.map((c) => [c.name, c.label, c.navigations, c.codes]), [
    ["2xx", "2xx", 40, [[200, 40]]],
    ["403", "403", 4, [[403, 4]]],
    ["429", "429", 3, [[429, 3]]],
    ["4xx", "other 4xx", 3, [[404, 2], [451, 1]]],
    ["5xx", "5xx", 1, [[503, 1]]],
  ]);
});

test("every status from 100 to 599 falls in one class, the refusals the blocked verdict counts in their own", () => {
  const names = new Set(STATUS_CLASSES.map(([name]) => name));
  for (let code = 100; code < 600; code += 1) assert.ok(names.has(statusClass(code)), String(code));
  assert.equal(statusClass(403), "403");
  assert.equal(statusClass(429), "429");
  assert.equal(statusClass(404), "4xx");
  assert.equal(statusClass(302), "3xx");
});

test("the freshness line says how many are stale, of how many, and after how long", async () => {
  const { freshnessLine } = await import("../../static/js/data.js");
  assert.equal(freshnessLine({ total: 500, stale: 37, staleAfterS: 900, usualIntervalS: 60 }),
    "500 entities, 37 stale (not refreshed for 15 min or more; usually every 1 min)");
  assert.equal(freshnessLine({ total: 1, stale: 0, staleAfterS: 900, usualIntervalS: null }),
    "1 entity, 0 stale (not refreshed for 15 min or more)");
});

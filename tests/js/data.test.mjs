// The Data section's rules (static/js/data.js): the two shares as the server defines them
// (metrics_app/history/fields.py, tests/integration/test_fields_api.py), the colour ramp, and
// the status classes.
import assert from "node:assert/strict";
import { test } from "node:test";

import { filledShare, shareColour, statusMix, validShare } from "../../static/js/data.js";

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

test("statuses are summed per class, in class order, with their codes", () => {
  const mix = statusMix([{ code: 429, navigations: 3 }, { code: 200, navigations: 40 }, { code: 404, navigations: 2 }]);
  assert.deepEqual(mix.map((c) => [c.name, c.navigations, c.codes]), [
    ["2xx", 40, [[200, 40]]],
    ["4xx", 5, [[429, 3], [404, 2]]],
  ]);
});

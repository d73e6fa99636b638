// What the chart module decides about scales, before Chart.js draws.
import assert from "node:assert/strict";
import { test } from "node:test";

import { overlayCeiling, percentFloor } from "../../static/js/charts.js";

test("success-rate bars start under the lowest when all are high, so 98.3 % and 100 % differ", () => {
  assert.equal(percentFloor({ "success %": [98.3, 100, 99.1] }), 95);
  assert.equal(percentFloor({ "success %": [100, 100] }), 95);
  assert.equal(percentFloor({ "success %": [40, 100] }), 0); // a low bar: the whole scale
  assert.equal(percentFloor({ "success %": [null, 71.5] }), 55); // its bar a third of the axis, not a sliver
  assert.equal(percentFloor({ "success %": [66.7, 66.7] }), 50);
  assert.equal(percentFloor({}), 0);
});

test("the error-rate axis fits the rate: 2 % is seen, not flat on a 0–100 % axis", () => {
  assert.equal(overlayCeiling({ "error rate %": [0, 1.2, 2, null] }), 5);
  assert.equal(overlayCeiling({ "error rate %": [10, 33.3] }), 45);
  assert.equal(overlayCeiling({ "error rate %": [90, 100] }), 100);
  assert.equal(overlayCeiling(undefined), 5);
});

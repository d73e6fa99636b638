// A card's "vs the previous 7 days": the server decides whether the range before holds
// comparable data (metrics_app/trend.py); the page only writes what it was given.
import assert from "node:assert/strict";
import { test } from "node:test";

import { DASH, formatChange } from "../../static/js/format.js";

const trend = (change, comparable = true) => ({ direction: "up", change, comparable });

test("a range before without comparable data reads new, not a percentage; no trend is a dash", () => {
  assert.equal(formatChange({ direction: "up", change: null, comparable: false }), "new");
  assert.equal(formatChange(trend(100, false)), "new");
  assert.equal(formatChange(undefined), DASH); // a source that came in since the last reload
});

test("a comparable change reads as a percentage with its sign", () => {
  assert.equal(formatChange(trend(12.5)), "+12.5 %");
  assert.equal(formatChange(trend(-3.4)), "-3.4 %");
  assert.equal(formatChange(trend(0)), "0 %");
  assert.equal(formatChange(trend(-100)), "-100 %");
  assert.equal(formatChange(trend(899.9)), "+899.9 %");
});

test("ten times as many or more reads as a multiple, never a five-digit percentage", () => {
  assert.equal(formatChange(trend(900)), "×10");
  assert.equal(formatChange(trend(1100)), "×12");
  assert.equal(formatChange(trend(33305)), "×330");
  assert.equal(formatChange(trend(42775)), "×430");
  assert.equal(formatChange(trend(1e9)), "×10M");
  for (const change of [500, 999, 9_999, 33_305, 42_775, 1e6, 1e9]) {
    const text = formatChange(trend(change));
    assert.doesNotMatch(text, /\d[\d,]{4,}\s*%/, text);
    assert.ok(text.length <= 10, text);
  }
});

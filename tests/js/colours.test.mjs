// Sources' colours (format.coloursOf): any sources drawn together are told apart, by a person
// as well as by the code: CIE76 distances in CIELAB, the measure the issue names (>= 12).
import assert from "node:assert/strict";
import { test } from "node:test";

import { OTHERS, OTHERS_COLOUR, PALETTE, coloursOf } from "../../static/js/format.js";

const ERROR_RATE = { light: "#c0362c", dark: "#c0362c" };

function lab(hex) {
  const linear = [1, 3, 5].map((i) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  const [r, g, b] = linear;
  const xyz = [(0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b,
               (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883];
  const [fx, fy, fz] = xyz.map((t) => (t > 216 / 24389 ? Math.cbrt(t) : (24389 / 27 * t + 16) / 116));
  return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
}

function distance(a, b) {
  const [x, y] = [lab(a), lab(b)];
  return Math.hypot(x[0] - y[0], x[1] - y[1], x[2] - y[2]);
}

const DEMO = ["robinhood", "cnbc", "webull", "marketbeat", "yahoo-finance", "example-quotes", "newcomer-shop", "quotes-refresh"];

for (const scheme of ["light", "dark"]) {
  test(`${scheme}: every two colours of the palette, the error red and others' grey are far apart`, () => {
    const all = [...PALETTE[scheme], ERROR_RATE[scheme], OTHERS_COLOUR[scheme]];
    for (let i = 0; i < all.length; i += 1) {
      for (let j = i + 1; j < all.length; j += 1) {
        assert.ok(distance(all[i], all[j]) >= 12, `${all[i]} and ${all[j]}: ${distance(all[i], all[j]).toFixed(1)}`);
      }
    }
  });

  test(`${scheme}: the demo's 8 sources shown together all differ, and any 10 names do`, () => {
    const dark = scheme === "dark";
    assert.equal(new Set(coloursOf(DEMO, dark).values()).size, 8);
    for (let n = 0; n < 200; n += 1) {
      const names = Array.from({ length: 10 }, (_, i) => `site-${n}-${i}`);
      assert.equal(new Set(coloursOf(names, dark).values()).size, 10);
    }
  });
}

test("a source keeps its colour on every load, whatever order the series come in, others grey", () => {
  const once = coloursOf(DEMO, false);
  const again = coloursOf([...DEMO].reverse(), false);
  for (const name of DEMO) assert.equal(once.get(name), again.get(name));
  assert.equal(coloursOf([OTHERS, "cnbc"], false).get(OTHERS), OTHERS_COLOUR.light);
});

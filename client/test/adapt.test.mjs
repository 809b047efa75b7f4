// adapt.test.mjs — client/js/adapt.js against tests/vectors/adapt/rule.json, which
// tests/adapt_vectors.rs writes from src/poster/adapt.rs (SGP_WRITE_ADAPT_VECTORS=1) and checks
// too: each case's ask after each verdict, whether the verdict came at the widest ask, and
// widestUs of round trips.
// Run: node --test client/test/*.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Adapt, widestUs } from '../js/adapt.js';

const doc = JSON.parse(readFileSync(new URL('../../tests/vectors/adapt/rule.json', import.meta.url), 'utf8'));

const state = (a) => ({ floor_us: a.floor_us, ceil_us: a.ceil_us, tau_us: a.tau_us, rate_div: a.rate_div, calm: a.calm, lates: a.lates, ask: a.ask() });

test('the rule vectors are there', () => {
  assert.ok(doc.cases.length >= 10);
  assert.ok(doc.widest_us.length >= 8);
});

for (const c of doc.cases) {
  test(`adapt ${c.name}`, () => {
    const a = new Adapt(c.floor_us, c.ceil_us);
    assert.deepEqual(state(a), c.start, `${c.name}: start`);
    c.steps.forEach((s, k) => {
      assert.equal(a.widest(s.verdict), s.widest, `${c.name} step ${k}: widest`);
      a.after(s.verdict);
      assert.deepEqual(state(a), s.after, `${c.name} step ${k}: after ${JSON.stringify(s.verdict)}`);
    });
  });
}

test('widestUs', () => {
  for (const w of doc.widest_us) assert.equal(widestUs(w.delays_us), w.widest_us, JSON.stringify(w.delays_us));
});

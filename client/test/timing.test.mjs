// timing.test.mjs — client/js/timing.js: clock-sync samples as src/clock.rs, the Poisson
// schedule as src/schedule.rs (rate, no minimum gap, inside the window), labels, the bias
// refinement, the tolerance default and the round length the page asks for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  sample, best, poisson, uniformFrom, labelsFromBytes, refineBias, quantile, defaultTolerance,
  roundDurationMs, POSTS_PER_ROUND,
} from '../js/timing.js';

/** A seeded uniform generator (xorshift), so the statistics below are reproducible. */
function seeded(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

test('clock samples recover offset and delay (as src/clock.rs)', () => {
  // Server 1000 µs ahead, 40 µs each way, 10 µs hold.
  assert.deepEqual(sample(0, 1040, 1050, 90), { offset_us: 1000, delay_us: 80 });
  // Odd sums floor, as div_euclid.
  assert.deepEqual(sample(0, 3, 0, 0), { offset_us: 1, delay_us: 3 });
  assert.deepEqual(sample(0, -3, 0, 0), { offset_us: -2, delay_us: -3 });
  const v = [sample(0, 1040, 1050, 90), sample(0, 1020, 1021, 41), sample(0, 1500, 1500, 600)];
  assert.deepEqual(best(v), { offset_us: 1000, delay_us: 40 });
  assert.equal(best([]), null);
  // offset + delay/2 is the forward trip of the sample, whatever the asymmetry.
  const s = sample(100, 5_000_350, 5_000_360, 900);
  assert.equal(s.offset_us + Math.floor(s.delay_us / 2), 5_000_350 - 100);
});

test('the Poisson schedule has the right rate and no minimum gap', () => {
  const t = poisson(0, 100_000_000, 500, seeded(11)); // 100 s at 500 Hz
  assert.ok(Math.abs(t.length - 50_000) < 5 * Math.sqrt(50_000), `${t.length}`);
  assert.ok(t.every((x, k) => Number.isInteger(x) && x >= 0 && x <= 100_000_000 && (k === 0 || t[k - 1] <= x)));
  // Exponential gaps: P(gap < mean/10) = 1 − e^(−0.1) ≈ 9.5 %.
  let short = 0;
  for (let k = 1; k < t.length; k++) if (t[k] - t[k - 1] < 200) short++;
  const share = short / t.length;
  assert.ok(share > 0.08 && share < 0.11, `${share}`);
  assert.deepEqual(poisson(10, 5, 500, seeded(1)), []);
  assert.deepEqual(poisson(0, 1000, 0, seeded(1)), []);
  assert.deepEqual(poisson(0, 1000, NaN, seeded(1)), []);
  // Epoch-sized times stay exact integers.
  const T0 = 1_764_000_000_000_000;
  const e = poisson(T0, T0 + 1_000_000, 125, seeded(5));
  assert.ok(e.length > 60 && e.every((x) => Number.isSafeInteger(x) && x >= T0 && x <= T0 + 1_000_000));
});

test('uniforms from random words are in [0, 1) and labels use every bit', () => {
  let calls = 0;
  const fill = (a) => {
    calls++;
    a[0] = 0xffffffff;
    a[1] = 0xffffffff;
    return a;
  };
  const u = uniformFrom(fill)();
  assert.ok(u < 1 && u > 0.999999, `${u}`);
  assert.equal(calls, 1);
  assert.equal(uniformFrom((a) => a.fill(0))(), 0);
  assert.deepEqual(labelsFromBytes(new Uint8Array([0b10100001, 0b1]), 10), ['B', 'A', 'A', 'A', 'A', 'B', 'A', 'B', 'B', 'A']);
  assert.deepEqual(labelsFromBytes(new Uint8Array([0]), 0), []);
});

test('bias refinement: median of errors within 2τ, and nothing from fewer than 20', () => {
  assert.equal(refineBias([5, 6, 7], 250), 0);
  const errs = [...Array(30).keys()].map((k) => k * 10 - 50).concat([null, 10_000, -10_000]);
  assert.equal(refineBias(errs, 250), 100);
  assert.equal(quantile([3, 1, 2], 0.5), 2);
  assert.equal(quantile([], 0.5), null);
});

test('tolerance default: 1 ms isolated, ×3 when not, widened by a noisy measurement', () => {
  assert.deepEqual(defaultTolerance(true, 5, null), { ms: 1, widened: false });
  assert.deepEqual(defaultTolerance(false, 100, null), { ms: 3, widened: false });
  const quiet = { ok: true, dev_p996_us: 400 };
  assert.deepEqual(defaultTolerance(true, 5, quiet), { ms: 1, widened: false });
  const busy = { ok: true, dev_p996_us: 1_600 };
  assert.deepEqual(defaultTolerance(true, 5, busy), { ms: 2, widened: true });
  const awful = { ok: true, dev_p996_us: 40_000 };
  assert.deepEqual(defaultTolerance(true, 5, awful), { ms: 5, widened: true });
  assert.deepEqual(defaultTolerance(true, 5, { ok: false }), { ms: 1, widened: false });
});

test('round length: about POSTS_PER_ROUND posts per poster plus two guards', () => {
  // τ = 1 ms: 125 Hz per poster, G = 20 ms.
  assert.equal(roundDurationMs(1), Math.ceil((POSTS_PER_ROUND / 125) * 1000 + 40));
  // τ = 0.05 ms: G = 2 ms (the floor), short but at least 10 ms.
  assert.ok(roundDurationMs(0.05) >= 10);
  assert.ok(roundDurationMs(1000) <= 120_000);
});

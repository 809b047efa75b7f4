// timing.test.mjs — client/js/timing.js: clock-sync samples as src/clock.rs, the Poisson
// schedule as src/schedule.rs (rate, no minimum gap, inside the window), labels, the bias
// refinement, the tolerance default and the round length the page asks for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  sample, best, poisson, uniformFrom, labelsFromBytes, refineBias, quantile, defaultTolerance,
  roundDurationMs, roundSuccess, roundSize, roundBits, POSTS_PER_ROUND, ROUND_POSTS, ROUND_SIZES, FLOOR_MS,
  CALIBRATION_EXCESS, missShare, MAX_DEFAULT_TOLERANCE_MS, SPAN_TAUS,
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

test('tolerance default: the floor without a measurement, the fastest τ with one', () => {
  const none = { posts: POSTS_PER_ROUND, widened: false, success: null, ms_per_bit: null, unsure: false };
  assert.deepEqual(defaultTolerance(true, 5, null), { ms: FLOOR_MS.isolated, floor: FLOOR_MS.isolated, ...none });
  assert.deepEqual(defaultTolerance(false, 100, null), { ms: FLOOR_MS.notIsolated, floor: FLOOR_MS.notIsolated, ...none });
  assert.ok(FLOOR_MS.notIsolated > FLOOR_MS.isolated, 'pages that are not isolated start wider');
  assert.equal(defaultTolerance(true, 5, { ok: false }).ms, FLOOR_MS.isolated);
  assert.equal(defaultTolerance(true, 5, { ok: true, dev_series_us: [1, 2] }).ms, FLOOR_MS.isolated, 'too few samples: the floor');
  // Coarse timers raise the floor: ten ticks within τ.
  assert.equal(defaultTolerance(true, 300, null).ms, 3);
  const series = (n, f) => Array.from({ length: n }, (_, i) => f(i));
  // A quiet machine: 20-140 µs of jitter (a cross-origin isolated Chromium's posts on loopback
  // arrive within 110 µs of their prediction nine times in ten: BENCHMARKS.md). The floor
  // covers it, in the longest rounds.
  const quiet = series(300, (i) => 20 + ((i * 37) % 120));
  const q = defaultTolerance(true, 5, { ok: true, dev_series_us: quiet });
  assert.equal(q.ms, FLOOR_MS.isolated);
  assert.equal(q.posts, ROUND_SIZES.at(-1));
  assert.equal(q.widened, false);
  assert.ok(q.success > 0.85, `${q.success}`); // 120 posts, each missing about 1 in 900
  // One 50 ms stall (five messages in a row): no τ ≤ 5 ms covers it, so it is not widened for.
  const stall = quiet.map((x, i) => (i >= 40 && i < 45 ? 50_000 : x));
  assert.equal(defaultTolerance(true, 5, { ok: true, dev_series_us: stall }).ms, FLOOR_MS.isolated, 'a stall is not worth widening for');
  // 150-400 µs of jitter: widened until 3τ/5 covers it (0.75 ms), no further.
  const noisier = defaultTolerance(true, 5, { ok: true, dev_series_us: series(300, (i) => 150 + ((i * 37) % 250)) });
  assert.deepEqual([noisier.ms, noisier.posts, noisier.widened], [0.75, ROUND_SIZES.at(-1), true], JSON.stringify(noisier));
  // Jitter up to 1.6 ms all along (a busy machine): widened until 3τ/5 covers most of it.
  const busy = series(300, (i) => ((i * 7919) % 1600));
  const b = defaultTolerance(true, 5, { ok: true, dev_series_us: busy });
  assert.ok(b.widened && b.ms >= 2.25 && b.ms <= 2.75, JSON.stringify(b));
  // Scattered 2 ms outliers, one message in 60: each costs a span (~18τ of board), about 2.5 %
  // of a round; covering them (3τ/5 ≥ 2 ms) would make every round 2.3× longer. The floor.
  const scattered = quiet.map((x, i) => (i % 60 === 7 ? 2_000 : x));
  const sc = defaultTolerance(true, 5, { ok: true, dev_series_us: scattered });
  assert.deepEqual([sc.ms, sc.posts, sc.widened], [FLOOR_MS.isolated, ROUND_SIZES.at(-1), false], JSON.stringify(sc));
  assert.ok(sc.success < q.success, JSON.stringify(sc));
  // Stalls beyond any τ (6 ms) cost a span each, as the 2 ms outliers do: the same pick.
  const far = quiet.map((x, i) => (i % 60 === 7 ? 6_000 : x));
  const fa = defaultTolerance(true, 5, { ok: true, dev_series_us: far });
  assert.deepEqual([fa.ms, fa.posts, fa.widened, fa.success], [sc.ms, sc.posts, sc.widened, sc.success], JSON.stringify(fa));
  // At a τ the user typed, a stall costs spans: the longest rounds still.
  const typed = roundSize({ ok: true, dev_series_us: stall }, 1.5);
  assert.ok(typed.posts === ROUND_SIZES.at(-1) && typed.success > 0.9, JSON.stringify(typed));
  // Wifi: 1-3 ms of jitter, and a lost segment held 200 ms (50 messages in a row, a sixth of
  // the measurement): τ covers the jitter, in the longest rounds (a hold of five posts is a
  // span there, a desync in a round of ten), and the measurement is not "unsure".
  const wifi = series(300, (i) => 1_000 + ((i * 7919) % 2_000)).map((x, i) => (i >= 100 && i < 150 ? 200_000 : x));
  const wf = defaultTolerance(false, 100, { ok: true, dev_series_us: wifi });
  assert.ok(!wf.unsure && wf.ms >= 4 && wf.posts === ROUND_SIZES.at(-1), JSON.stringify(wf));
  assert.deepEqual(roundSize(null, 1), { posts: POSTS_PER_ROUND, success: null, ms_per_bit: null });
  // Never beyond the maximum, however bad; and a measurement in which nothing works says nothing.
  const hopeless = defaultTolerance(true, 5, { ok: true, dev_series_us: series(300, () => 40_000) });
  assert.deepEqual([hopeless.ms, hopeless.posts, hopeless.unsure], [FLOOR_MS.isolated, ROUND_SIZES[0], true], 'nothing helps: the floor, short rounds, unsure');
  assert.equal(q.unsure, false);
  assert.ok(defaultTolerance(true, 5, { ok: true, dev_series_us: series(300, (i) => (i * 13) % 4_600) }).ms <= MAX_DEFAULT_TOLERANCE_MS);
});

test('round success: posts beyond 3τ/5 (stalls too) cost spans, too many of them the round', () => {
  const all = Array(298).fill(100);
  const near = (a, b) => Math.abs(a - b) < 1e-12;
  // A clean measurement of 298 messages: about one in 300, over CALIBRATION_EXCESS.
  assert.equal(CALIBRATION_EXCESS, 3);
  assert.equal(missShare(all, 1), 1 / 300 / 3);
  // That one message's worth of doubt costs spans like any miss; out of sync (16 of 60 a
  // poster) is ~1e-30.
  assert.equal(SPAN_TAUS, 18);
  assert.ok(near(roundSuccess(all, 1, 120), 1 - (18 / 4) / 900), `${roundSuccess(all, 1, 120)}`);
  const two = all.map((x, i) => (i < 2 ? 1_500 : x)); // beyond 1 ms, within 1.5 ms
  assert.equal(missShare(two, 1), 3 / 900);
  assert.equal(missShare(two, 1.5), 1 / 900, 'a deviation equal to or below the bound is within it');
  // At τ = 1 ms they are beyond 3τ/5: each post misses with 3/900 and costs SPAN_TAUS·τ of the
  // posting window (60 posts × 8τ a poster).
  assert.ok(near(roundSuccess(two, 1, 120), 1 - (18 / 4) * (3 / 900)), `${roundSuccess(two, 1, 120)}`);
  // Sure at τ = 2.5 ms (3τ/5 = 1.5 ms): only the doubt.
  assert.equal(roundSuccess(two, 2.5, 120), roundSuccess(all, 2.5, 120));
  // A stall far beyond τ costs what a miss just beyond it costs: a span, not the round.
  const stalls = all.map((x, i) => (i < 2 ? 200_000 : x));
  assert.equal(roundSuccess(stalls, 1, 120), roundSuccess(two, 1, 120));
  // Most messages beyond 3τ/5: more than a quarter of a poster's posts would miss, so the
  // round is out of sync (and the spans would take it all anyway).
  const loose = all.map((x, i) => (i % 10 < 9 ? 800 : x));
  assert.equal(roundSuccess(loose, 1, 120), 0);
  assert.equal(roundSuccess(loose, 1.5, 120), roundSuccess(all, 1.5, 120), 'sure at 1.5 ms: only the doubt');
  // Out of sync alone: a tenth of messages beyond (q = 1/30 + doubt) in rounds of 10 a poster
  // are more often a quarter of a poster's posts than in rounds of 60.
  const tenth = all.map((x, i) => (i % 10 === 0 ? 800 : x));
  const spans = 1 - (18 / 4) * missShare(tenth, 0.6);
  const r = roundSuccess(tenth, 1, 20);
  assert.ok(r < spans && r > 0.5, `${r}`);
  assert.ok(roundSuccess(tenth, 1, 120) > r, 'longer rounds desync less');
});

test('what a round is worth: log2 C(k, k/2) with k = 2m/e kept entries', () => {
  // m = 40: k = 29, log2 C(29, 14) = 25.1.
  assert.ok(Math.abs(roundBits(40) - Math.log2(77558760)) < 1e-9);
  assert.ok(roundBits(10) > 5 && roundBits(10) < roundBits(20));
});

test('round length: about POSTS_PER_ROUND posts per poster plus two guards', () => {
  // τ = 1 ms: 125 Hz per poster, G = 20 ms.
  assert.equal(roundDurationMs(1), Math.ceil((POSTS_PER_ROUND / 125) * 1000 + 40));
  assert.equal(roundDurationMs(1, 10), 120);
  // τ = 0.05 ms: G = 2 ms (the floor): 40 posts at 2.5 kHz, 16 ms, plus 4 ms.
  assert.equal(roundDurationMs(0.05), 20);
  // Clamped to [10 ms, 120 s].
  assert.equal(roundDurationMs(0.01), 10);
  assert.equal(roundDurationMs(1000), 120_000);
});

test('the default-tolerance rule picks what tests/vectors/tolerance/rule.json says (src/tolerance.rs passes the same file)', async () => {
  const { readFileSync } = await import('node:fs');
  const { toleranceRule, browserFloor, fromPings } = await import('../js/timing.js');
  const doc = JSON.parse(readFileSync(new URL('../../tests/vectors/tolerance/rule.json', import.meta.url), 'utf8'));
  assert.equal(browserFloor(true, 5), doc.floors.isolated_5us);
  assert.equal(browserFloor(false, 100), doc.floors.not_isolated_100us);
  assert.equal(browserFloor(true, 300), doc.floors.isolated_300us);
  for (const [name, ms] of Object.entries(doc.from_pings)) assert.equal(fromPings(doc.pings[name]), ms, `fromPings ${name}`);
  assert.ok(doc.cases.length >= 50);
  for (const c of doc.cases) {
    const devs = doc.calibrations[c.calibration];
    const got = toleranceRule(c.floor_ms, devs && devs.length >= 120 ? devs : null, doc.pings[c.pings]);
    assert.deepEqual(got, c.expect, `${c.floor_ms}/${c.calibration}/${c.pings}`);
  }
});

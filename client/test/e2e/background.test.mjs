// A poster in a background tab keeps its timing (issue 4: "in a background tab the real gaps
// must stay exponential and the rate equal to the other tab's"; PROTOCOL.md §5).
//
// Two tabs in ONE window, as people try it: B presses Start, then tab A is brought to the front
// and presses Start, so B is a hidden, throttled tab for the whole session. Playwright's usual
// launch cannot do this (its focus emulation keeps every page "visible", and its default
// switches turn background throttling off), so the harness starts Chromium itself and attaches
// with noDefaults (see harness.launchRealTabs). The test checks that B is really hidden and that
// its main thread really is throttled, before judging the posts.
//
// What is judged: the send times the page reports (`sgpState.rounds[].sent_us`, the moment each
// post left), per round: the rate against params.rate_hz × window and against the other tab,
// and the shape of the gaps — a Poisson process has exponential gaps: ≈ 9.5 % below mean/10,
// ≈ 4.9 % below mean/20, coefficient of variation 1. A floor under the gaps (4 ms timer
// clamping, 1 s background throttling) fails these; the first test shows it on made-up data.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

/** Gaps between consecutive posts inside each round (never across rounds). */
export function gapsOf(rounds) {
  const gaps = [];
  for (const r of rounds) {
    const s = [...(r.sent_us || [])].sort((a, b) => a - b);
    for (let i = 1; i < s.length; i++) gaps.push(s[i] - s[i - 1]);
  }
  return gaps;
}

/** The shape of a set of gaps: n, mean, coefficient of variation, share below mean/10 and mean/20. */
export function shape(gaps) {
  const n = gaps.length;
  const mean = gaps.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / (n - 1));
  return {
    n,
    mean_us: mean,
    cv: sd / mean,
    below_tenth: gaps.filter((g) => g < mean / 10).length / n,
    below_twentieth: gaps.filter((g) => g < mean / 20).length / n,
    min_us: Math.min(...gaps),
  };
}

/** The verdict on a shape: a list of what is wrong (empty: looks exponential). */
export function notExponential(s) {
  const out = [];
  if (s.n < 100) out.push(`only ${s.n} gaps`);
  if (!(s.below_tenth >= 0.04 && s.below_tenth <= 0.16)) out.push(`${(100 * s.below_tenth).toFixed(1)} % of gaps below mean/10 (expected ≈ 9.5 %, 4–16 %)`);
  if (!(s.below_twentieth >= 0.015 && s.below_twentieth <= 0.09)) out.push(`${(100 * s.below_twentieth).toFixed(1)} % of gaps below mean/20 (expected ≈ 4.9 %, 1.5–9 %)`);
  if (!(s.cv >= 0.8 && s.cv <= 1.25)) out.push(`coefficient of variation ${s.cv.toFixed(2)} (expected ≈ 1, 0.8–1.25)`);
  return out;
}

// Exponential draws from a seeded generator, for the self-check.
function rng(seed) {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return (x + 0.5) / 4294967296;
  };
}
function poissonRounds(rateHz, windowMs, rounds, seed, warp = (t) => t) {
  const u = rng(seed);
  const out = [];
  for (let r = 0; r < rounds; r++) {
    const sent = [];
    let t = 0;
    let last = -Infinity;
    for (;;) {
      t += (-Math.log(u()) / rateHz) * 1e6;
      if (t > windowMs * 1000) break;
      const s = Math.max(warp(t, last), last);
      sent.push(s);
      last = s;
    }
    out.push({ sent_us: sent });
  }
  return out;
}

test('self-check: exponential gaps pass, a floor under the gaps fails', () => {
  const rate = 25;
  const win = 1800;
  const ok = shape(gapsOf(poissonRounds(rate, win, 20, 7)));
  assert.deepEqual(notExponential(ok), [], `a Poisson schedule passes: ${JSON.stringify(ok)}`);
  // 4 ms clamping of nested timers: no gap shorter than 4 ms.
  const clamp4 = shape(gapsOf(poissonRounds(rate, win, 20, 7, (t, last) => Math.max(t, last + 4000))));
  assert.notDeepEqual(notExponential(clamp4), [], `a 4 ms floor fails: ${JSON.stringify(clamp4)}`);
  // A faster room, where 4 ms is a larger share of the mean gap.
  const clamp4fast = shape(gapsOf(poissonRounds(125, win, 5, 9, (t, last) => Math.max(t, last + 4000))));
  assert.notDeepEqual(notExponential(clamp4fast), [], `a 4 ms floor at 125 Hz fails: ${JSON.stringify(clamp4fast)}`);
  // Background throttling: timers fire on 1 s ticks, posts bunch up behind them.
  const bunched = shape(gapsOf(poissonRounds(rate, win, 20, 7, (t) => Math.ceil(t / 1e6) * 1e6)));
  assert.notDeepEqual(notExponential(bunched), [], `1 s throttling fails: ${JSON.stringify(bunched)}`);
});

let server;
let rt;

before(async () => {
  server = await h.startServer();
  rt = await h.launchRealTabs();
});

after(async () => {
  if (rt) await rt.close();
  if (server) await server.stop();
});

const visibility = (p) => p.evaluate(() => document.visibilityState);

test('a poster in a background tab keeps an exponential schedule at the same rate as the front tab', { timeout: 360_000 }, async (t) => {
  // Two tabs of one window (the browser's default context).
  // A tab that is not in front cannot be clicked (Playwright waits for it to render), so the
  // tab a step acts on is brought to the front first, as a person would.
  const A = await h.newPage(rt.context, 'front tab (alice)');
  const B = await h.newPage(rt.context, 'background tab (bob)');
  await A.bringToFront();
  const { link } = await h.createRoom(A, server);
  await h.waitRole(A, 'alice');
  await B.bringToFront();
  await B.goto(link);
  await h.waitRole(B, 'bob');

  // B presses Start, then the person switches to A's tab and presses Start there.
  await B.bringToFront();
  await h.startAll(B);
  await A.bringToFront();
  await h.sleep(300);
  assert.equal(await visibility(B), 'hidden', 'B is a hidden tab');
  assert.equal(await visibility(A), 'visible', 'A is the visible tab');
  // Hidden and throttled: a chain of setTimeout(0) on B's main thread barely runs.
  const ticks = await B.evaluate(() => new Promise((r) => {
    let n = 0;
    const t0 = performance.now();
    const f = () => {
      n++;
      if (performance.now() - t0 < 2000) setTimeout(f, 0);
      else r(n);
    };
    f();
  }));
  t.diagnostic(`B's main thread ran ${ticks} chained setTimeout(0) callbacks in 2 s (a visible tab runs hundreds)`);
  assert.ok(ticks <= 30, `B's main thread is throttled like a background tab's (${ticks} timer ticks in 2 s)`);
  await h.startAll(A);

  // Keep checking that B stays in the background while the session runs.
  let bVisible = 0;
  const watch = setInterval(() => {
    visibility(B).then((v) => {
      if (v !== 'hidden') bVisible++;
    }, () => {});
  }, 1000);
  let ka;
  try {
    ka = await h.waitKey(A, 300_000);
  } finally {
    clearInterval(watch);
  }
  // B's own view, read without bringing it to the front.
  const kb = await h.waitKey(B, 60_000);
  assert.equal(await visibility(B), 'hidden', 'B was still hidden at the end');
  assert.equal(bVisible, 0, 'B never became visible during the session');
  h.checkKey(assert, ka, 'A');
  h.checkKey(assert, kb, 'B');
  assert.equal(ka.key, kb.key, 'the same key');

  const [sa, sb] = [await h.state(A), await h.state(B)];
  const p = sa.params;
  assert.ok(p && p.rate_hz > 0, 'params.rate_hz');
  const windowS = (p.duration_ms ?? NaN) / 1000;
  assert.ok(windowS > 0, 'params.duration_ms (the round window)');
  const report = {};
  for (const [name, st] of [['A (front)', sa], ['B (background)', sb]]) {
    const rounds = st.rounds.filter((r) => Array.isArray(r.sent_us) && r.sent_us.length > 0);
    const posts = rounds.reduce((a, r) => a + r.sent_us.length, 0);
    const rate = posts / (rounds.length * windowS);
    const sh = shape(gapsOf(rounds));
    report[name] = { rounds: rounds.length, posts, rate_hz: rate, ...sh };
    t.diagnostic(`${name}: ${rounds.length} rounds, ${posts} posts, ${rate.toFixed(2)} posts/s (params.rate_hz ${p.rate_hz}); ` +
      `gaps: n ${sh.n}, mean ${(sh.mean_us / 1000).toFixed(2)} ms, cv ${sh.cv.toFixed(3)}, ` +
      `${(100 * sh.below_tenth).toFixed(1)} % < mean/10, ${(100 * sh.below_twentieth).toFixed(1)} % < mean/20, min ${sh.min_us} µs`);
    const timing = st.rounds.map((r) => r.timing).filter(Boolean);
    if (timing.length) t.diagnostic(`${name}: the page's own timing report, last round: ${JSON.stringify(timing.at(-1))}`);
  }
  const ra = report['A (front)'];
  const rb = report['B (background)'];
  for (const [name, r] of [['A (front)', ra], ['B (background)', rb]]) {
    assert.ok(Math.abs(r.rate_hz / p.rate_hz - 1) <= 0.25, `${name}: rate ${r.rate_hz.toFixed(2)}/s within ±25 % of params.rate_hz ${p.rate_hz}`);
    assert.deepEqual(notExponential(r), [], `${name}: the gaps look exponential`);
  }
  assert.ok(Math.abs(rb.rate_hz / ra.rate_hz - 1) <= 0.25, `the background tab's rate ${rb.rate_hz.toFixed(2)}/s within ±25 % of the front tab's ${ra.rate_hz.toFixed(2)}/s`);
  h.assertClean(A);
  h.assertClean(B);
});

// timing.js — the pure arithmetic of time, mirroring src/clock.rs and src/schedule.rs:
// clock-sync samples (NTP/Cristian, PROTOCOL §3), the Poisson posting schedule (§5), random
// labels, the private bias refinement of pair.rs, and small statistics. No DOM, no network,
// no clock of its own: randomness and times come in as arguments. Integer µs throughout.

/** Samples a client takes per sync (PROTOCOL §3 asks for at least 8). */
export const SYNC_SAMPLES = 16;

/**
 * One ping/pong exchange: client send t0, server receive t1, server send t2, client
 * receive t3 → `{offset_us, delay_us}` (offset = server − client).
 */
export function sample(t0, t1, t2, t3) {
  return {
    offset_us: Math.floor((t1 - t0 + (t2 - t3)) / 2),
    delay_us: t3 - t0 - (t2 - t1),
  };
}

/** The sample with the smallest delay (the least disturbed by queueing), or null. */
export function best(samples) {
  let b = null;
  for (const s of samples) if (b === null || s.delay_us < b.delay_us) b = s;
  return b;
}

/**
 * Arrival times (integer µs) of a Poisson process of rate `rateHz` over [tStartUs, tEndUs]:
 * exponential gaps from tStart, stopping at tEnd. No minimum gap, no fixed count.
 * `uniform()` returns a float in [0, 1).
 */
export function poisson(tStartUs, tEndUs, rateHz, uniform) {
  const out = [];
  if (!(rateHz > 0) || tEndUs < tStartUs) return out;
  const meanUs = 1e6 / rateHz;
  let t = tStartUs;
  for (;;) {
    // 1 − U is in (0, 1]: the log never sees 0.
    t += -Math.log(1 - uniform()) * meanUs;
    if (t > tEndUs) return out;
    out.push(Math.round(t));
  }
}

/** A uniform float in [0, 1) with 53 random bits from `fill(Uint32Array)` (crypto.getRandomValues). */
export function uniformFrom(fill) {
  const w = new Uint32Array(2);
  return () => {
    fill(w);
    return ((w[0] >>> 5) * 67108864 + (w[1] >>> 6)) / 9007199254740992;
  };
}

/** `n` labels 'A'/'B' from the bits of `bytes` (at least ceil(n/8) random bytes), as os_labels. */
export function labelsFromBytes(bytes, n) {
  const out = new Array(n);
  for (let k = 0; k < n; k++) out[k] = ((bytes[k >> 3] >> (k & 7)) & 1) === 0 ? 'A' : 'B';
  return out;
}

/**
 * The median error of a round's recognisable posts (`errors` from secret.arrivalErrors), for
 * the next round's offset: only errors within 2τ count, and fewer than 20 give 0. Private: it
 * uses only this poster's own posts and changes nothing anyone else sees.
 */
export function refineBias(errors, toleranceUs) {
  const e = errors.filter((x) => x !== null && Math.abs(x) <= 2 * toleranceUs).sort((a, b) => a - b);
  if (e.length < 20) return 0;
  return e[e.length >> 1];
}

/** `q`-quantile (0…1, nearest rank) of numbers, or null for none. */
export function quantile(values, q) {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** `{n, p50, p90, p99, max}` of numbers (nulls for none). */
export function summary(values) {
  return {
    n: values.length,
    p50: quantile(values, 0.5),
    p90: quantile(values, 0.9),
    p99: quantile(values, 0.99),
    max: values.length ? Math.max(...values) : null,
  };
}

/**
 * The default tolerance (ms) for this browser: the one that makes a key fastest, judged from a
 * live measurement of how this browser's messages wander on their way to the server.
 *
 * Why a model and not a quantile: one post outside τ spoils its whole round (PROTOCOL §6.2),
 * a round's length grows with τ (roundDurationMs), and a browser's delays come in two kinds —
 * a body of sub-millisecond jitter that a wider τ does cover, and stalls of 5-70 ms (a busy
 * machine, a page still loading) that no τ ≤ 5 ms covers and that only cost the round they hit.
 * Widening for a stall (as a p99.6 rule did: 5 ms from a single 50 ms stall at page load) makes
 * every round 5× longer to save one. So: for each τ on a 0.25 ms grid from the floor to
 * MAX_DEFAULT_TOLERANCE_MS, estimate the share of rounds that stay within τ — the share of
 * windows of ROUND_POSTS consecutive calibration messages (what one round sends, two posters ×
 * POSTS_PER_ROUND) whose deviations all stay within τ − SYNC_ALLOWANCE_US — and pick the τ
 * with the smallest expected time per counted round, (round length + overhead) / share.
 *
 * The floor: timers must resolve τ (ten ticks of performance.now() within it), and
 * FLOOR_MS[isolated]: 1 ms where the page is cross-origin isolated; on pages that are not
 * (plain http to a LAN address: 100 µs timers, no Atomics.wait) the floor is higher, set from
 * the measurements in BENCHMARKS.md ("Browser"). Without a usable measurement: the floor.
 *
 * `calib`: the worker's calibration, {ok, dev_series_us: [|one-way − median| per message, in
 * sending order], …}. Returns {ms, widened, floor, success (estimated share of rounds within
 * τ, or null), cost_ms (expected ms per counted round, or null)}.
 */
export const MAX_DEFAULT_TOLERANCE_MS = 5;
export const FLOOR_MS = { isolated: 1, notIsolated: 2 };
/** Left for the clock sync's own error: a post is judged against τ minus this. */
export const SYNC_ALLOWANCE_US = 250;
/** Per round, besides its window: the server's 50 ms lead, `done`, the board, `ready` (ms). */
export const ROUND_OVERHEAD_MS = 70;

export function defaultTolerance(isolated, precisionUs, calib) {
  const fromTicks = Math.ceil((10 * (precisionUs || 0)) / 250) * 0.25;
  const floor = Math.max(isolated ? FLOOR_MS.isolated : FLOOR_MS.notIsolated, fromTicks);
  const devs = calib && calib.ok && Array.isArray(calib.dev_series_us) ? calib.dev_series_us : null;
  if (!devs || devs.length < ROUND_POSTS) return { ms: floor, widened: false, floor, success: null, cost_ms: null };
  let best = null;
  for (let ms = floor; ms <= MAX_DEFAULT_TOLERANCE_MS + 1e-9; ms += 0.25) {
    const success = roundSuccess(devs, ms);
    const cost = (roundDurationMs(ms) + ROUND_OVERHEAD_MS) / success;
    // Ties (within 2 %) go to the narrower tolerance.
    if (best === null || cost < best.cost_ms * 0.98) best = { ms, success, cost_ms: cost };
  }
  return { ms: best.ms, widened: best.ms > floor, floor, success: best.success, cost_ms: Math.round(best.cost_ms) };
}

/** Messages a round sends: two posters × POSTS_PER_ROUND. */
export const ROUND_POSTS = 80;

/**
 * The estimated share of rounds whose posts all land within τ = `tolMs`: of the windows of
 * ROUND_POSTS consecutive deviations (µs, in sending order), those with none above
 * τ − SYNC_ALLOWANCE_US, with half a window of doubt each way ((ok + ½) / (windows + 1)).
 */
export function roundSuccess(devs, tolMs) {
  const thr = tolMs * 1000 - SYNC_ALLOWANCE_US;
  const w = Math.min(ROUND_POSTS, devs.length);
  let over = 0;
  let ok = 0;
  for (let i = 0; i < devs.length; i++) {
    if (devs[i] > thr) over++;
    if (i >= w && devs[i - w] > thr) over--;
    if (i >= w - 1 && over === 0) ok++;
  }
  return (ok + 0.5) / (devs.length - w + 2);
}

/** Posts each poster expects per round in rooms this page creates (see roundDurationMs). */
export const POSTS_PER_ROUND = 40;

/**
 * The round length (ms) this page asks for when it creates a room: long enough for about
 * POSTS_PER_ROUND posts from each poster at the default rate 1/(8τ), plus the two guard
 * zones (G = max(20τ, 2 ms), the server's default). One late post spoils a whole round
 * (PROTOCOL §6.2) and a browser's posts now and then arrive a millisecond late, so short
 * rounds lose less; each round costs ~60 ms of overhead and a few bits of strength, so not
 * too short either.
 */
export function roundDurationMs(toleranceMs) {
  const rateHz = 1000 / (8 * toleranceMs);
  const guardMs = Math.max(20 * toleranceMs, 2);
  const ms = Math.ceil((POSTS_PER_ROUND / rateHz) * 1000 + 2 * guardMs);
  return Math.min(120_000, Math.max(10, ms));
}

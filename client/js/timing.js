// timing.js — the pure arithmetic of time, mirroring src/clock.rs and src/schedule.rs:
// clock-sync samples (NTP/Cristian, docs/protocol.md §2), the Poisson posting schedule (§5), random
// labels, the private bias refinement of pair.rs, and small statistics. No DOM, no network,
// no clock of its own: randomness and times come in as arguments. Integer µs throughout.

import { SURE, UNMATCHED_SHARE } from './secret.js';

/** Samples a client takes per sync (docs/protocol.md §2). */
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
 * The default tolerance (ms) for this browser, and the round size that goes with it: the pair
 * that makes a key fastest, judged from a live measurement of how this browser's messages
 * wander on their way to the server.
 *
 * Why a model and not a quantile: a post further than 3τ/5 from its prediction costs a span of
 * its round (docs/protocol.md §5.3: about 18τ of board, both posters' entries), more than a quarter of
 * a poster's posts doing so costs the round, a round's length grows with τ and with its number
 * of posts, and a browser's delays come in two kinds — a body of sub-millisecond jitter that a
 * wider τ does cover, and stalls of 5-200 ms (a busy machine, a page still loading, a lost
 * segment held for its retransmission) that no τ ≤ 5 ms covers, but which cost only spans as
 * long as they hold less than a quarter of a round's posts. So, for each τ on a 0.25 ms grid
 * from the floor to MAX_DEFAULT_TOLERANCE_MS and each round size m in ROUND_SIZES (posts per
 * poster), estimate the share of a round's worth that survives (roundSuccess: posts beyond
 * 3τ/5 cost spans, too many of them cost the round) and pick the pair with the least expected
 * time per bit of strength:
 *
 *   (roundDurationMs(τ, m) + ROUND_OVERHEAD_MS) / (share × log2 C(k, ⌊k/2⌋)),  k = 2m/e
 *
 * (a round keeps about 2m/e entries at the rate 1/(8τ) each, and is worth about log2 C(k, k/2)
 * bits).
 *
 * The floor: timers must resolve τ (ten ticks of performance.now() within it), and
 * FLOOR_MS[isolated]: 0.25 ms (the grid's first step) where the page is cross-origin isolated
 * (its worker waits with Atomics.wait; its posts arrive within ~0.1 ms of their prediction nine
 * times in ten, spans make the rarer far one cheap, and the rounds widen τ if they cost too
 * much); on pages that are not (plain http to a LAN address: 100 µs timers, no Atomics.wait)
 * 1 ms, ten of their ticks (their posts arrive within ~0.3 ms nine times in ten); the
 * measurements are in BENCHMARKS.md ("Web client"). Without a usable measurement
 * (a joining tab): the floor and POSTS_PER_ROUND.
 *
 * `calib`: the worker's calibration, {ok, dev_series_us: [|one-way − median| per message, in
 * sending order], …}. Returns {ms, posts, widened, floor, success (estimated share of a
 * round's worth that survives, or null), ms_per_bit (expected, or null)}.
 */
export const MAX_DEFAULT_TOLERANCE_MS = 5;
export const FLOOR_MS = { isolated: 0.25, notIsolated: 1 };
/**
 * Per round, besides its window (ms): the server's lead (the page asks for PAGE_LEAD_MS),
 * `done` (3 ms + 2τ after t_end), the board and `ready`. Measured: 30-34 ms from one round's
 * t_end to the next one's t_start with a 20 ms lead (`make bench-browser`, "gaps", 2026-12-07;
 * 64-67 ms with the server's 50 ms lead); 27-34 ms with the 10 ms lead since (kept at 35 here,
 * with src/tolerance.rs and its vectors).
 */
export const ROUND_OVERHEAD_MS = 35;
/**
 * Round sizes (posts per poster) to choose from. Longer rounds pay the gap between rounds
 * (ROUND_OVERHEAD_MS) and the guards less often, but a key's last round runs to its end
 * however few of its entries the key still needs: at τ 0.5 ms a 256-bit key (~357 kept
 * entries, ~75 a round of 120 with its spans) takes, by this estimate, 5 rounds of 120, 7 of
 * 90 or 10 of 60: ~2.7, 2.9 and 2.9 s of rounds and gaps; 180 or 240 would take 3.0-3.1 s.
 * So 120 at most.
 */
export const ROUND_SIZES = [10, 15, 20, 30, 40, 60, 90, 120];
/** The fewest calibration deviations the model uses (the worker measures about 300). */
export const MIN_CALIBRATION = 120;
/** Posts per poster per round without a measurement (and in rooms made before one). */
export const POSTS_PER_ROUND = 40;

export function defaultTolerance(isolated, precisionUs, calib, pingDelaysUs = []) {
  return toleranceRule(browserFloor(isolated, precisionUs), usable(calib), pingDelaysUs);
}

/** The narrowest tolerance a terminal poster picks (`sgp pair`: what loopback sustains). */
export const TERMINAL_FLOOR_MS = 0.1;

/** A page's floor: FLOOR_MS[isolated], and ten ticks of its timer within τ (0.25 ms steps). */
export function browserFloor(isolated, precisionUs) {
  const fromTicks = Math.ceil((10 * (precisionUs || 0)) / 250) * 0.25;
  return Math.max(isolated ? FLOOR_MS.isolated : FLOOR_MS.notIsolated, fromTicks);
}

/**
 * From clock-sync round trips alone (µs): six times how far the median lies above the quickest
 * (a measure of the path's jitter), in 10 µs steps, at most MAX_DEFAULT_TOLERANCE_MS; 0 for none.
 */
export function fromPings(delaysUs) {
  if (!delaysUs || delaysUs.length === 0) return 0;
  const d = [...delaysUs].sort((a, b) => a - b);
  const us = Math.min(6 * (d[d.length >> 1] - d[0]), MAX_DEFAULT_TOLERANCE_MS * 1000);
  return (Math.ceil(us / 10) * 10) / 1000;
}

/**
 * The default-tolerance rule, one definition for both posters (src/tolerance.rs is its twin,
 * both held to tests/vectors/tolerance/rule.json): from `floorMs` (browserFloor, or
 * TERMINAL_FLOOR_MS), a calibration's deviations `devs` (µs, at least 120; the page measures
 * them, see above) and clock-sync round trips `pingDelaysUs`. With a calibration, the model
 * above; without, the floor, widened to what the round trips' jitter asks (fromPings) —
 * `sgp pair`'s creator has only its round trips. Returns {ms, posts, widened, floor, success,
 * ms_per_bit, unsure}.
 */
export function toleranceRule(floorMs, devs, pingDelaysUs = []) {
  const floor = floorMs;
  if (!devs) {
    const ms = Math.max(floor, fromPings(pingDelaysUs));
    return { ms, posts: POSTS_PER_ROUND, widened: ms > floor, floor, success: null, ms_per_bit: null, unsure: false };
  }
  let best = null;
  for (let ms = floor; ms <= MAX_DEFAULT_TOLERANCE_MS + 1e-9; ms += 0.25) {
    const plan = roundPlan(devs, ms);
    // Ties (within 2 %) go to the narrower tolerance.
    if (best === null || plan.ms_per_bit < best.ms_per_bit * 0.98) best = { ms, ...plan };
  }
  if (best.success < MIN_USEFUL_SUCCESS) {
    // Nothing up to the ceiling keeps even a fifth of the rounds in sync: the machine was too
    // busy while measuring to judge (often a passing stall; the page measures again). If it
    // stays so: the floor, in the shortest rounds, which a stall spoils the least of.
    return { ms: floor, posts: ROUND_SIZES[0], widened: false, floor, success: best.success, ms_per_bit: null, unsure: true };
  }
  return { ms: best.ms, posts: best.posts, widened: best.ms > floor, floor, success: best.success, ms_per_bit: round2(best.ms_per_bit), unsure: false };
}

/** Below this estimated share of rounds in sync, a measurement says nothing useful. */
export const MIN_USEFUL_SUCCESS = 0.2;

/** The round size for a given τ (the one the user typed, say): {posts, success, ms_per_bit}. */
export function roundSize(calib, tolMs) {
  const devs = usable(calib);
  if (!devs) return { posts: POSTS_PER_ROUND, success: null, ms_per_bit: null };
  const plan = roundPlan(devs, tolMs);
  return { ...plan, ms_per_bit: round2(plan.ms_per_bit) };
}

const round2 = (x) => Math.round(x * 100) / 100;
const usable = (calib) => (calib && calib.ok && Array.isArray(calib.dev_series_us) && calib.dev_series_us.length >= MIN_CALIBRATION
  ? calib.dev_series_us : null);

/**
 * The calibration's messages go beyond a given τ more often than the posts of a round do:
 * measured (docs/journal/2026-12-01-browser-guard-lead-model.md), the share of calibration deviations
 * above τ = 1-1.75 ms (ten pages' measurements) was 3-4× the share of round posts whose
 * arrival error was (four pairs of tabs, 5 643 posts); pings go four times as often as posts,
 * and are sent while the page loads. So a post's chance of missing τ is taken as the
 * calibration's share beyond τ over this.
 */
export const CALIBRATION_EXCESS = 3;

function roundPlan(devs, tolMs) {
  const plans = ROUND_SIZES.map((m) => {
    const success = roundSuccess(devs, tolMs, 2 * m);
    return { posts: m, success, ms_per_bit: (roundDurationMs(tolMs, m) + ROUND_OVERHEAD_MS) / (success * roundBits(m)) };
  });
  const least = Math.min(...plans.map((p) => p.ms_per_bit));
  // Of those within 2 % of the best, the longest round: fewer messages for the same key.
  return plans.filter((p) => p.ms_per_bit <= least * 1.02).at(-1);
}

/** About what a round of m posts per poster is worth: log2 C(k, ⌊k/2⌋), k = round(2m/e). */
export function roundBits(m) {
  const k = Math.round((2 * m) / Math.E);
  let bits = 0;
  for (let i = 1; i <= Math.floor(k / 2); i++) bits += Math.log2((k - Math.floor(k / 2) + i) / i);
  return bits;
}

/** Messages a round sends at POSTS_PER_ROUND: two posters × POSTS_PER_ROUND. */
export const ROUND_POSTS = 2 * POSTS_PER_ROUND;

/**
 * A message's chance of landing more than `tolMs` from where its poster predicts it, from a
 * calibration's deviations (µs): the share of them beyond, with one message's worth of doubt
 * (a clean measurement of N messages says "about 1 in N + 2", not "never"), over
 * CALIBRATION_EXCESS.
 */
export function missShare(devs, tolMs) {
  const thr = tolMs * 1000;
  let over = 0;
  for (const d of devs) if (d > thr) over++;
  return (over + 1) / (devs.length + 2) / CALIBRATION_EXCESS;
}

/** Board a span costs, in τ: from the previous own post − τ to the next + τ, gaps of 8τ. */
export const SPAN_TAUS = 18;
const SURE_SHARE = SURE[0] / SURE[1];

/** P(X ≤ k) for X ~ Binomial(n, p). */
function binomCdf(n, p, k) {
  let term = (1 - p) ** n;
  let sum = term;
  for (let i = 1; i <= k && i <= n; i++) {
    term *= ((n - i + 1) / i) * (p / (1 - p));
    sum += term;
  }
  return Math.min(1, sum);
}

/**
 * The estimated share of a round's worth that survives, for rounds of `w` posts (default
 * ROUND_POSTS, both posters' together):
 *   - each poster's posts further than 3τ/5 (share q each, stalls included) at most a quarter
 *     of its w/2, else the round is out of sync: P(Binomial(w/2, q) ≤ ⌊w/8⌋)²;
 *   - of what is left, the spans take about w·q·SPAN_TAUS·τ of the w/2·8τ posting window:
 *     a share 1 − (SPAN_TAUS/4)·q survives.
 * A stall counts as a miss for each message it held, at every τ alike, so it lowers the
 * share without asking for a wider τ. (Before 2026-12-07 a stall beyond 5 ms was taken to spoil
 * its round, as before spans it did: that made the page pick 10-post rounds on wifi, where
 * the relay's lost segments are held 200 ms; docs/journal/2026-12-07-page-floor.md.)
 */
export function roundSuccess(devs, tolMs, w = ROUND_POSTS) {
  const q = missShare(devs, SURE_SHARE * tolMs);
  const perPoster = Math.floor(w / 2);
  const inSync = binomCdf(perPoster, q, Math.floor(perPoster / UNMATCHED_SHARE)) ** 2;
  return inSync * Math.max(0, 1 - (SPAN_TAUS / 4) * q);
}

/**
 * The round length (ms) this page asks for when it creates a room: long enough for about
 * `posts` posts from each poster at the default rate 1/(8τ), plus the two guard zones
 * (G = max(20τ, 2 ms), the server's default), within [10 ms, 120 s].
 */
export function roundDurationMs(toleranceMs, posts = POSTS_PER_ROUND) {
  const rateHz = 1000 / (8 * toleranceMs);
  const guardMs = Math.max(20 * toleranceMs, 2);
  const ms = Math.ceil((posts / rateHz) * 1000 + 2 * guardMs);
  return Math.min(120_000, Math.max(10, ms));
}

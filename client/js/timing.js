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
 * The default tolerance (ms) for this browser. 1 ms where timers are precise (cross-origin
 * isolated pages: performance.now() ticks every 5 µs, and the worker can sleep precisely with
 * Atomics.wait); three times that where they are coarsened (not isolated: 100 µs ticks, and
 * the worker must spin). Then widened, up to MAX_DEFAULT_TOLERANCE_MS, if a live measurement
 * (`calib`, from the worker's calibration: the spread of one-way message times) shows this
 * machine's messages wander more: one post in ~250 outside τ already spoils a third of
 * the rounds. Returns {ms, widened}.
 */
export const MAX_DEFAULT_TOLERANCE_MS = 5;

export function defaultTolerance(isolated, precisionUs, calib) {
  const base = isolated ? 1 : 3;
  const fromTicks = Math.ceil((10 * (precisionUs || 0)) / 250) * 0.25;
  let ms = Math.max(base, fromTicks);
  let widened = false;
  if (calib && calib.ok) {
    // The measured spread, plus a quarter millisecond for the clock sync's own error.
    const need = Math.ceil((calib.dev_p996_us + 250) / 250) * 0.25;
    if (need > ms) {
      ms = Math.min(MAX_DEFAULT_TOLERANCE_MS, need);
      widened = true;
    }
  }
  return { ms, widened };
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

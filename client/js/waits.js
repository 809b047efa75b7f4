// waits.js — the worker's clock and precise waits (setTimeout free of the 4 ms clamp, then Atomics.wait or a spin), and what they and the network can do on this browser: the timer measurements and the calibration of message jitter behind the tolerance default (timing.js, defaultTolerance). Worker-only (performance, Atomics, MessageChannel, a throwaway WebSocket); it knows nothing of rooms or posters.

import { poisson, uniformFrom, summary } from './timing.js';
import { socketUrl, pageFolder } from './urls.js';

// ---------------------------------------------------------------------------------------
// The local clock: µs since the Unix epoch, monotonic (performance.timeOrigin + now()).

const ORIGIN_US = Math.round(performance.timeOrigin * 1000);
export const nowUs = () => ORIGIN_US + Math.round(performance.now() * 1000);

/** setTimeout is only used for waits longer than this (see sleepMs on the 4 ms clamp). */
const TIMER_MIN_US = 1_000;
/** The last stretch of a wait is a spin. */
const SPIN_US = 150;

export const getRandom = (a) => crypto.getRandomValues(a);
export const uniform = uniformFrom(getRandom);

// Atomics.wait blocks the worker's thread for a sub-millisecond time without burning CPU;
// it needs a SharedArrayBuffer, which only cross-origin isolated contexts have.
const waitCell =
  typeof SharedArrayBuffer === 'function' && self.crossOriginIsolated
    ? new Int32Array(new SharedArrayBuffer(4))
    : null;

/**
 * Wake from setTimeout this long before a post, then wait precisely. Worker timers fire up to
 * a few ms late on a busy machine; Atomics.wait costs no CPU, so wake early. Where there is no
 * Atomics.wait (pages that are not cross-origin isolated) the precise tail is a spin, and a
 * spinning worker starves the browser's own threads on a small machine: measured on 2 cores,
 * waking 2 ms early made the one-way times of 250 Hz test messages wander 2 ms at p90 and 5-6 ms
 * at p99, against 0.4-0.8 ms and 1-3 ms with no early wake. So no early wake there: a post
 * then leaves as late as the timer fires (p50 ~0.2 ms); its send time is read when it leaves,
 * so recognising it is unaffected, and a post later than the late rule allows (LATE_SHARE) is
 * skipped and spoils its round.
 */
export const WAKE_EARLY_US = waitCell ? 4_000 : 0;

/**
 * After every post the thread is held (blocked) this long, or until the next post if sooner.
 * What the worker does in the moments after a send changes how fast that post reaches the
 * server: measured over 315 000 matched posts of the Chromium audit, a post arrived ~190 µs earlier
 * (median) when the worker blocked after it — its next post due within WAKE_EARLY_US +
 * TIMER_MIN_US — than when it went back to its event loop. That made a poster's own gaps on
 * the board bunch just above 5 ms, which Eve could see: kept pairs 5-5.5 ms apart were 57 %
 * same-poster, and 'same as previous' beat the coin. Holding after every post makes the
 * aftermath of a send the same whatever the next gap is. Only where Atomics.wait exists (a
 * spin would starve the browser; without it the step is at TIMER_MIN_US, inside the sift).
 */
export const POST_HOLD_US = waitCell ? 2_000 : 0;

/** Returns once the local clock reads `target` (blocking the thread: messages wait). */
export function blockUntil(target) {
  for (;;) {
    const left = target - nowUs();
    if (left <= 0) return;
    if (waitCell && left > SPIN_US) {
      Atomics.wait(waitCell, 0, 0, (left - SPIN_US) / 1000);
    } else {
      while (nowUs() < target) {
        // spin
      }
      return;
    }
  }
}

/**
 * setTimeout, free of the 4 ms clamp that browsers put on timers nested five deep: the timer
 * is set from a MessageChannel task, not from a timer task, so its nesting level starts over.
 */
const hop = new MessageChannel();
const hopQueue = [];
hop.port2.onmessage = () => {
  const f = hopQueue.shift();
  if (f) f();
};
export const sleepMs = (ms) =>
  new Promise((resolve) => {
    hopQueue.push(() => setTimeout(resolve, ms));
    hop.port1.postMessage(0);
  });

/**
 * Waits until the local clock reads `target`: setTimeout while far (yielding, so messages are
 * handled), then a precise blocking tail. False if `round` was stopped meanwhile.
 */
/**
 * Waits until the local clock reads `target`: setTimeout while far (yielding, so messages are
 * handled), then a precise blocking tail. False once `alive()` is false (checked meanwhile).
 */
export async function waitUntil(target, alive) {
  for (;;) {
    if (!alive()) return false;
    const left = target - nowUs();
    if (left <= WAKE_EARLY_US + TIMER_MIN_US) break;
    await sleepMs((left - WAKE_EARLY_US) / 1000);
  }
  if (!alive()) return false;
  blockUntil(target);
  return alive();
}

// ---------------------------------------------------------------------------------------
// Timer measurements, reported to the page (the clock panel and the tolerance default).

export async function measureTimers() {
  // Granularity: the smallest step performance.now() takes.
  let step = Infinity;
  let prev = performance.now();
  let changes = 0;
  const until = prev + 50;
  while (changes < 200) {
    const t = performance.now();
    if (t !== prev) {
      step = Math.min(step, t - prev);
      prev = t;
      changes++;
    }
    if (t > until) break;
  }
  const precisionUs = Number.isFinite(step) ? Math.max(1, Math.round(step * 1000)) : null;
  // How late setTimeout(1 ms) fires: chained from timer to timer (the clamp to 4 ms shows from
  // the fifth), and set from a message task as sleepMs does (no clamp).
  const nested = [];
  await new Promise((done) => {
    let t0 = performance.now();
    const step = () => {
      nested.push(Math.round((performance.now() - t0 - 1) * 1000));
      if (nested.length >= 12) return done();
      t0 = performance.now();
      setTimeout(step, 1);
    };
    setTimeout(step, 1);
  });
  const late = [];
  for (let k = 0; k < 12; k++) {
    const t0 = performance.now();
    await sleepMs(1);
    late.push(Math.round((performance.now() - t0 - 1) * 1000));
  }
  // How late a precise wait of 2 ms ends.
  const precise = [];
  for (let k = 0; k < 12; k++) {
    const target = nowUs() + 2000;
    blockUntil(target);
    precise.push(nowUs() - target);
  }
  return {
    isolated: !!self.crossOriginIsolated,
    precision_us: precisionUs,
    atomics: !!waitCell,
    timeout_1ms_late_us: summary(late),
    nested_timeout_1ms_late_us: summary(nested.slice(5)),
    precise_wait_late_us: summary(precise),
  };
}

/**
 * How much this browser's messages wander on their way to the server, measured the way posts
 * travel: a throwaway socket sends pings on a Poisson schedule (the rate of two posters at
 * τ = 1 ms) for CALIB_MS, after CALIB_WARMUP_MS of the same whose answers are not used (the
 * first moments of a page are its busiest: measured, a 20-70 ms stall in the first 0.2-0.5 s
 * after load, seldom later). The deviation of each one-way time t1 − t0 from their median is
 * what a post's arrival error would be; the page picks its default tolerance from their
 * sequence (timing.js, defaultTolerance). Busy machines (other tabs, builds) show up as
 * milliseconds.
 */
const CALIB_RATE_HZ = 250;
/** The calibration running, if any: joining a room stops it (its waits would delay posts). */
let calibProbe = null;
const CALIB_WARMUP_MS = 400;
const CALIB_MS = 1200;

export async function calibrate() {
  const ws = new WebSocket(socketUrl(pageFolder()));
  const fwd = [];
  let measuredFrom = Infinity; // pings sent from this local time on count
  ws.onmessage = (ev) => {
    try {
      const m = JSON.parse(ev.data);
      if (m.type === 'pong' && m.t0_us >= measuredFrom) fwd.push(m.t1_us - m.t0_us);
    } catch {
      // ignore
    }
  };
  const opened = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 3000);
    ws.onopen = () => {
      clearTimeout(timer);
      resolve(true);
    };
    ws.onclose = () => {
      clearTimeout(timer);
      resolve(false);
    };
  });
  if (!opened) {
    try {
      ws.close();
    } catch {
      // not open
    }
    return { ok: false, message: 'could not reach the server to measure' };
  }
  const probe = { stopped: false };
  calibProbe = probe;
  const warm = nowUs() + 20_000;
  const start = warm + CALIB_WARMUP_MS * 1000;
  measuredFrom = start;
  const times = poisson(warm, start + CALIB_MS * 1000, CALIB_RATE_HZ, uniform);
  let sent = 0;
  for (const t of times) {
    if (!(await waitUntil(t, () => !probe.stopped))) break;
    if (ws.readyState !== WebSocket.OPEN) break;
    ws.send(`{"type":"ping","t0_us":${nowUs()}}`);
    sent++;
  }
  await sleepMs(300);
  ws.onclose = null;
  ws.close(1000, 'measured');
  if (probe.stopped) return { ok: false, message: 'stopped: the page joined a room' };
  if (fwd.length < 80) return { ok: false, message: `only ${fwd.length} of ${sent} pings came back` };
  const sorted = [...fwd].sort((a, b) => a - b);
  const med = sorted[sorted.length >> 1];
  const series = fwd.map((f) => Math.abs(f - med));
  const dev = [...series].sort((a, b) => a - b);
  const q = (f) => dev[Math.min(dev.length - 1, Math.ceil(f * dev.length) - 1)];
  return {
    ok: true, samples: fwd.length, rate_hz: CALIB_RATE_HZ, span_ms: CALIB_MS, one_way_p50_us: med,
    dev_p90_us: q(0.9), dev_p99_us: q(0.99), dev_p996_us: q(0.996), dev_max_us: dev[dev.length - 1], dev_series_us: series,
  };
}

/** Stops a calibration that is running (joining a room: its waits would delay posts). */
export function stopCalibration() {
  if (calibProbe) calibProbe.stopped = true;
}

// worker.js — the dedicated (module) Web Worker that owns the WebSocket, the clock sync and
// the posting schedule, and runs a poster's session as src/pair.rs does: sync with 16
// ping/pong samples, a Poisson schedule per round with posts sent at precise times (the real
// send time recorded just before ws.send; pair's late rule: a post more than half a mean gap
// overdue is skipped and spoils its round), `done` 3 ms + 2τ after our estimate of t_end with
// no post in the 500 µs before it, coalesced posts left out, one verdict per closed round
// (ready / confirm{tag, drops} / abort{desync}), a late post or a few costing only `drop
// {spans}` of the round and not the round (re-derived, and the verdict said again, when the
// peer's `dropped` comes), bias refinement from our own posts' arrival errors, bounded
// retries. Where a browser differs, so does this file: after a failed round it
// re-syncs only if the round showed the sync off (a fresh sync is often worse than the bias
// just learnt), it gives up after 30 s without a round that counts, and it repeats a `done`
// the server found early instead of waiting for the round's grace. It also measures the timers and the message jitter for the page, and keeps
// the poster's record for the eavesdropper audit (the file `sgp pair --record` writes).
// A worker keeps its timers when the tab is in the background; the page never touches the
// socket. Messages to and from the page are listed in client/js/README.md.

import * as secret from './secret.js';
import {
  SYNC_SAMPLES, sample, best, poisson, uniformFrom, labelsFromBytes, refineBias, summary,
} from './timing.js';

// ---------------------------------------------------------------------------------------
// The local clock: µs since the Unix epoch, monotonic (performance.timeOrigin + now()).

const ORIGIN_US = Math.round(performance.timeOrigin * 1000);
const nowUs = () => ORIGIN_US + Math.round(performance.now() * 1000);

/**
 * The late rule, as src/pair.rs: a post may leave at most LATE_SHARE of the mean gap between
 * this poster's posts late. A poster held up longer (a stall on a busy machine) leaves a
 * stretch that only the other poster fills, and the eavesdropper's audit found those runs of
 * one poster (SECURITY.md). So a later post is skipped and the round is *spoiled*: once it
 * closes this poster drops it (`abort {desync}`), and it gives no bits.
 */
const LATE_SHARE = 0.5;
/**
 * `done` leaves DONE_MARGIN_US + 2τ after our estimate of the server's t_end, a time fixed by
 * t_end alone, and no post leaves less than DONE_QUIET_US before it (one that would is
 * skipped): so `done`, whose time the room sees as `closed`'s, never waits on a post
 * (PROTOCOL §4), and a delay jitter of up to τ cannot bring it before t_end.
 */
const DONE_MARGIN_US = 3_000;
const DONE_QUIET_US = 500;
/**
 * When to give up: after at least RETRIES failed rounds or sessions (desync, late, mismatch,
 * disagreement) in a row AND GIVE_UP_US without a round that counted. A busy machine
 * (measured here: 2 shared cores at load 4-6) delays a post by 5-20 ms in most rounds for
 * tens of seconds whatever the tolerance, and short rounds fail many times a second, so a
 * count alone gave up on sessions that were still getting somewhere (61 failures in a row
 * after 260 rounds that had earned strength). A tolerance that is simply too tight fails
 * every round and gives up as surely.
 */
const RETRIES = 20;
const GIVE_UP_US = 30_000_000;
/** …and in all, per Start: only a bound against a loop. */
const TOTAL_RETRIES = 3000;
/** A round whose posts landed within τ of their predictions this often was in sync. */
const ALIGNED_SHARE = 0.8;

/** setTimeout is only used for waits longer than this (see sleepMs on the 4 ms clamp). */
const TIMER_MIN_US = 1_000;
/** The last stretch of a wait is a spin. */
const SPIN_US = 150;
const PING_TIMEOUT_MS = 5_000;

const getRandom = (a) => crypto.getRandomValues(a);
const uniform = uniformFrom(getRandom);

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
const WAKE_EARLY_US = waitCell ? 4_000 : 0;

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
const POST_HOLD_US = waitCell ? 2_000 : 0;

/** Returns once the local clock reads `target` (blocking the thread: messages wait). */
function blockUntil(target) {
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
const sleepMs = (ms) =>
  new Promise((resolve) => {
    hopQueue.push(() => setTimeout(resolve, ms));
    hop.port1.postMessage(0);
  });

/**
 * Waits until the local clock reads `target`: setTimeout while far (yielding, so messages are
 * handled), then a precise blocking tail. False if `round` was stopped meanwhile.
 */
async function waitUntil(target, round) {
  for (;;) {
    if (round.stopped) return false;
    const left = target - nowUs();
    if (left <= WAKE_EARLY_US + TIMER_MIN_US) break;
    await sleepMs((left - WAKE_EARLY_US) / 1000);
  }
  if (round.stopped) return false;
  blockUntil(target);
  return !round.stopped;
}

// ---------------------------------------------------------------------------------------
// Timer measurements, reported to the page (the clock panel and the tolerance default).

async function measureTimers() {
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

async function calibrate() {
  const proto = self.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${self.location.host}/ws`);
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
    if (!(await waitUntil(t, probe))) break;
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

// ---------------------------------------------------------------------------------------
// State of the connection and of this poster's session.

const S = {
  ws: null,
  role: null, // 'alice' | 'bob' | 'observer'
  room: null,
  params: null,
  sync: null, // {offset_us, delay_us}
  bias: 0, // learnt from our own posts' arrival errors; kept across re-syncs
  running: false, // Start was pressed and the session has not ended (key, failure, peer left)
  epoch: 0, // bumped whenever the session stops: stale async steps check it
  session: null,
  keptRounds: [], // [{round, n, a, bits}] of this session, the rounds that count
  lastClosed: null, // round number of the last closed round we derived (or saw, as observer)
  lastClosedSession: null,
  current: null, // the round being posted: {session, round, t_start, t_end, sync, posts, …}
  // The last closed round that counts for us, until the next `start`: what the peer's
  // `dropped` needs to derive it again (onDropped).
  open: null,
  myTag: null,
  peerTag: null,
  failures: 0, // in a row: reset once a round has counted for both posters
  progressAt: 0, // local µs of Start or of the last round that counted for both
  totalFailures: 0,
  lastOk: false, // the last closed round counted for us (the next `start` shows it did for both)
  needSync: true, // the last round showed our clock sync is off: re-sync before the next
  pings: new Map(), // t0 → resolve
  window: null, // the last round announced by `start`: {session, round, t_start, t_end}
  leaving: false,
  // What `sgp pair --record` keeps, since the last `joined`: every round this poster posted
  // in (its posts, the sync they were posted with, the board) and every message heard but
  // pongs, with the local receive time. Times are this worker's clock (nowUs).
  record: { rounds: [], messages: [] },
};

/** The clock note of a record, word for word as src/pair.rs writes it. */
const RECORD_CLOCK = 'local µs; predicted server time = sent_us + sync.offset_us + floor(sync.delay_us / 2)';

/** The record in the shape of `sgp pair --record FILE` (src/pair.rs, save_record). */
function recordDoc() {
  return {
    room: S.room,
    role: S.role,
    params: S.params,
    schedule: 'poisson',
    clock: RECORD_CLOCK,
    rounds: S.record.rounds,
    messages: S.record.messages,
  };
}

const toPage = (msg) => self.postMessage(msg);
const me = () => (S.role === 'alice' ? 'A' : S.role === 'bob' ? 'B' : null);
const isPoster = () => S.role === 'alice' || S.role === 'bob';

function send(obj) {
  sendText(JSON.stringify(obj));
}

function sendText(text) {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) throw new Error('not connected');
  S.ws.send(text);
}

function trySend(obj) {
  try {
    send(obj);
    return true;
  } catch (e) {
    toPage({ type: 'error', code: 'connection', message: `could not send ${obj.type}: ${e.message}` });
    return false;
  }
}

function phase(name, extra = {}) {
  toPage({ type: 'phase', phase: name, failures: S.failures, retries: RETRIES, give_up_s: GIVE_UP_US / 1e6, total_failures: S.totalFailures, ...extra });
}

// ---------------------------------------------------------------------------------------
// Connection.

function connect(hello) {
  if (S.ws) closeSocket();
  S.leaving = false;
  const proto = self.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${proto}//${self.location.host}/ws`;
  toPage({ type: 'conn', state: 'connecting', url });
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    toPage({ type: 'conn', state: 'closed', code: 0, reason: e.message });
    return;
  }
  S.ws = ws;
  ws.onopen = () => {
    if (S.ws !== ws) return;
    toPage({ type: 'conn', state: 'open' });
    try {
      ws.send(JSON.stringify(hello));
    } catch (e) {
      toPage({ type: 'error', code: 'connection', message: e.message });
    }
  };
  ws.onmessage = (ev) => {
    const t3 = nowUs(); // read first: a pong's receive time
    if (S.ws !== ws) return;
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      toPage({ type: 'error', code: 'bad_json', message: 'the server sent something that is not JSON' });
      return;
    }
    if (m && m.type !== 'pong' && m.type !== 'joined' && S.role !== null) {
      S.record.messages.push({ t_us: t3, msg: m });
    }
    try {
      onServer(m, t3);
    } catch (e) {
      toPage({ type: 'error', code: 'client', message: `${m.type}: ${e.message}` });
    }
  };
  ws.onclose = (ev) => {
    if (S.ws !== ws) return;
    S.ws = null;
    stopSession();
    for (const [, p] of S.pings) p.reject(new Error('connection closed'));
    S.pings.clear();
    toPage({ type: 'conn', state: 'closed', code: ev.code, reason: ev.reason, clean: ev.wasClean, leaving: S.leaving });
  };
  ws.onerror = () => {
    // onclose follows with the code; nothing to add here.
  };
}

function closeSocket() {
  const ws = S.ws;
  S.ws = null;
  stopSession();
  if (ws) {
    try {
      ws.close(1000, 'bye');
    } catch {
      // already closing
    }
  }
  Object.assign(S, { role: null, room: null, params: null, sync: null, bias: 0, session: null, keptRounds: [] });
}

/** Ends this poster's session locally: no posting continues, async steps see a new epoch. */
function stopSession() {
  S.running = false;
  S.epoch++;
  if (S.current) S.current.stopped = true;
  S.current = null;
  S.open = null;
  S.myTag = null;
  S.peerTag = null;
}

// ---------------------------------------------------------------------------------------
// Clock sync.

function ping() {
  return new Promise((resolve, reject) => {
    const t0 = nowUs();
    const timer = setTimeout(() => {
      S.pings.delete(t0);
      reject(new Error('the server did not answer a clock-sync ping in 5 s'));
    }, PING_TIMEOUT_MS);
    S.pings.set(t0, {
      resolve: (s) => {
        clearTimeout(timer);
        resolve(s);
      },
      reject: (e) => {
        clearTimeout(timer);
        reject(e);
      },
    });
    try {
      sendText(`{"type":"ping","t0_us":${t0}}`);
    } catch (e) {
      S.pings.delete(t0);
      clearTimeout(timer);
      reject(e);
    }
  });
}

async function syncClock() {
  const samples = [];
  while (samples.length < SYNC_SAMPLES) samples.push(await ping());
  const s = best(samples);
  S.sync = s;
  toPage({ type: 'sync', offset_us: s.offset_us, delay_us: s.delay_us, bias_us: S.bias, samples: samples.length });
  return s;
}

/** Sync, then say `ready`: the start of a session, and of a retry whose round was out of sync. */
async function syncAndReady(why) {
  const epoch = S.epoch;
  phase('syncing', { why });
  // The bias was learnt against the old sync; a new one starts from the pings alone.
  S.bias = 0;
  try {
    await syncClock();
  } catch (e) {
    if (epoch === S.epoch) {
      stopSession();
      toPage({ type: 'stopped', reason: 'sync_failed', message: e.message });
    }
    return;
  }
  if (epoch !== S.epoch || !S.running) return;
  S.needSync = false;
  if (trySend({ type: 'ready' })) phase('waiting', { why });
}

/**
 * A round or session failed: count it, then say ready again — after a re-sync if the round
 * showed the clock sync off (pair.rs re-syncs every time; in a browser a fresh sync is often
 * worse than the bias just learnt from a round's ~40 posts) — or give up.
 */
function failed(why) {
  S.failures++;
  S.totalFailures++;
  S.lastOk = false;
  const stuckUs = nowUs() - S.progressAt;
  const inARow = S.failures > RETRIES && stuckUs > GIVE_UP_US;
  if (inARow || S.totalFailures > TOTAL_RETRIES) {
    const n = inARow ? `${S.failures} failed rounds or sessions in a row, over ${Math.round(stuckUs / 1e6)} s` : `${S.totalFailures} failed rounds or sessions`;
    stopSession();
    trySend({ type: 'abort', reason: 'gave_up' });
    toPage({ type: 'stopped', reason: 'gave_up', message: `gave up after ${n} (last: ${why})`, failures: S.failures, total_failures: S.totalFailures, in_a_row: inARow, stuck_s: Math.round(stuckUs / 1e6), last: why });
    return;
  }
  if (S.needSync || !S.sync) {
    syncAndReady(why);
  } else if (trySend({ type: 'ready' })) {
    phase('waiting', { why });
  }
}

// ---------------------------------------------------------------------------------------
// Posting one round.

const POST_A = '{"type":"post","label":"A"}';
const POST_B = '{"type":"post","label":"B"}';

async function postRound(p) {
  const shift = p.sync.offset_us + Math.floor(p.sync.delay_us / 2);
  const planned = poisson(p.t_start, p.t_end, p.params.rate_hz, uniform);
  const labels = labelsFromBytes(getRandom(new Uint8Array(Math.ceil(planned.length / 8) || 1)), planned.length);
  p.planned = planned.length;
  phase('posting', {
    session: p.session,
    round: p.round,
    start_local_us: p.t_start - shift,
    end_local_us: p.t_end - shift,
    now_us: nowUs(),
  });
  const doneAt = p.t_end - shift + DONE_MARGIN_US + 2 * secret.msToUs(p.params.tolerance_ms);
  const lateLimit = Math.round(LATE_SHARE * (1e6 / p.params.rate_hz));
  p.lateLimit = lateLimit;
  p.cutShort = true; // until `done` is sent
  for (let k = 0; k < planned.length; k++) {
    const target = planned[k] - shift;
    const latest = Math.min(target + lateLimit, doneAt - DONE_QUIET_US);
    if (nowUs() > latest) {
      p.skipped++;
      continue;
    }
    if (!(await waitUntil(target, p))) return;
    if (nowUs() > latest) {
      p.skipped++; // woken too late (a busy machine)
      continue;
    }
    const label = labels[k];
    const t = nowUs();
    try {
      sendText(label === 'A' ? POST_A : POST_B);
    } catch {
      return; // the socket is gone: onclose reports it
    }
    p.posts.push({ sent_us: t, label });
    p.late.push(t - target);
    p.sendDur.push(nowUs() - t);
    const next = k + 1 < planned.length ? planned[k + 1] - shift : Infinity;
    blockUntil(Math.min(t + POST_HOLD_US, next)); // returns at once where POST_HOLD_US is 0
  }
  if (!(await waitUntil(doneAt, p))) return;
  if (trySend({ type: 'done' })) {
    p.cutShort = false;
    p.doneUs = nowUs();
    p.done = true;
    p.doneSent = 1;
    phase('closing', { session: p.session, round: p.round });
  }
}

/**
 * The server refused our `done` (our estimate of t_end was early): say it again shortly,
 * rather than wait for the round's 2 s grace. The retry's timing depends on the clock sync
 * only, never on our posts.
 */
function redoDone(p) {
  if (p.stopped || p.doneSent >= 5) return;
  p.doneSent++;
  setTimeout(() => {
    if (!p.stopped && S.current === p) trySend({ type: 'done' });
  }, 2 * p.doneSent);
}

// ---------------------------------------------------------------------------------------
// Server messages.

/** Refusals (by their stable code, docs/protocol.md §8) that are expected in the normal
 *  course of a round and need no word to the person. */
const QUIET_REFUSALS = new Set([
  'no_round', 'outside_window', 'too_many_posts', 'board_full', 'round_running', 'round_dropped', 'stale_confirm',
]);

function onServer(m, t3) {
  switch (m.type) {
    case 'pong': {
      const p = S.pings.get(m.t0_us);
      if (p) {
        S.pings.delete(m.t0_us);
        p.resolve(sample(m.t0_us, m.t1_us, m.t2_us, t3));
      }
      return;
    }
    case 'joined':
      Object.assign(S, { room: m.room, role: m.role, params: m.params, session: null, keptRounds: [], bias: 0, failures: 0, totalFailures: 0 });
      S.record = { rounds: [], messages: [] };
      toPage({ type: 'joined', room: m.room, role: m.role, params: m.params, peers: m.peers });
      // A first sync at once, so the clock panel shows what this browser can do.
      syncClock().catch(() => {});
      return;
    case 'peer':
      toPage({ type: 'peer', event: m.event, role: m.role });
      return;
    case 'start':
      return onStart(m);
    case 'closed':
      return onClosed(m);
    case 'confirm':
      if (isPoster() && m.role !== S.role) S.peerTag = m.tag;
      toPage({ type: 'confirm', role: m.role, tag: m.tag });
      return;
    case 'confirmed':
      return onConfirmed(m);
    case 'dropped':
      return onDropped(m);
    case 'aborted':
      return onAborted(m);
    case 'reset':
      stopSession();
      S.session = null;
      S.keptRounds = [];
      toPage({ type: 'reset' });
      return;
    case 'error': {
      const text = String(m.message);
      if (m.code === 'too_early' && S.current && S.current.done) {
        redoDone(S.current);
        return;
      }
      if (QUIET_REFUSALS.has(m.code)) {
        // A refused post: after the round was stopped (posts already on their way), nothing
        // to say; during a round, the self-check will drop the round anyway. A refused ready:
        // our first ready already started the next round (it crossed the peer's desync). A
        // refused confirm: the peer dropped the round (its `aborted` follows), or left out
        // spans of it that our tag did not know of (its `dropped` is on the way, and we
        // confirm again then: onDropped). Noted, not shown.
        toPage({ type: 'error', code: m.code, message: text, quiet: true });
        return;
      }
      toPage({ type: 'error', code: m.code, message: text });
      return;
    }
    case 'coalesced':
      // Our posts m.post … m.post + m.count − 1 of this round came in one piece with our
      // next message: the board has them at that message's time. They are left out of the
      // derivation (onClosed). The count is bounded by the posts we sent.
      if (S.current) {
        const n = Math.min(Number(m.count) || 0, S.current.posts.length);
        for (let k = 0; k < n; k++) S.current.coalesced.push(m.post + k);
      }
      return;
    case 'board':
      return;
    default:
      toPage({ type: 'error', code: 'unknown', message: `unexpected message from the server: ${String(m.type).slice(0, 40)}` });
  }
}

function onStart(m) {
  S.window = { session: m.session, round: m.round, t_start: m.t_start_us, t_end: m.t_end_us };
  const shift = S.sync ? S.sync.offset_us + S.bias + Math.floor(S.sync.delay_us / 2) : null;
  toPage({
    type: 'start', session: m.session, round: m.round, t_start_us: m.t_start_us, t_end_us: m.t_end_us, params: m.params,
    // The window on this worker's clock, for the page's progress bar (estimated for observers).
    ...(shift === null ? {} : { start_local_us: m.t_start_us - shift, end_local_us: m.t_end_us - shift, now_us: nowUs() }),
  });
  if (!isPoster()) return;
  if (!S.running) {
    // Only our own `ready` can start a round; take it as ours.
    S.running = true;
  }
  if (!S.sync) {
    // Cannot happen (ready follows a sync); post nothing rather than post blind.
    toPage({ type: 'error', code: 'client', message: 'a round started before the clock was synced' });
    return;
  }
  if (S.session !== m.session) {
    S.session = m.session;
    S.keptRounds = [];
  }
  if (S.lastOk) {
    S.failures = 0; // both posters counted the last round: progress
    S.progressAt = nowUs();
  }
  S.lastOk = false;
  S.myTag = null;
  S.peerTag = null;
  S.open = null; // the last round's verdicts are in: no `dropped` can come for it now
  if (S.current) S.current.stopped = true;
  const p = {
    session: m.session,
    round: m.round,
    t_start: m.t_start_us,
    t_end: m.t_end_us,
    params: m.params,
    sync: { offset_us: S.sync.offset_us + S.bias, delay_us: S.sync.delay_us },
    posts: [],
    coalesced: [],
    late: [],
    sendDur: [],
    skipped: 0,
    planned: 0,
    stopped: false,
    done: false,
    doneUs: null,
    lateLimit: 0,
    cutShort: false,
  };
  S.current = p;
  postRound(p).catch((e) => toPage({ type: 'error', code: 'client', message: `posting: ${e.message}` }));
}

function onClosed(m) {
  const params = S.params;
  const tol = secret.msToUs(params.tolerance_ms);
  const guard = secret.msToUs(params.guard_ms);
  const p = S.current;
  const base = { type: 'round', session: m.session, round: m.round, board: m.board, tolerance_us: tol, guard_us: guard };
  if (!isPoster() || !p || p.session !== m.session || p.round !== m.round) {
    // An observer (or a round we did not post in): the public view only. The sift needs the
    // round's window, known from `start` (an observer who joined mid-round has not seen it).
    const w = S.window && S.window.session === m.session && S.window.round === m.round ? S.window : null;
    const times = m.board.map((e) => e.t_us);
    const t0 = w ? w.t_start : (times.length ? Math.min(...times) : 0) - guard;
    const t1 = w ? w.t_end : (times.length ? Math.max(...times) : 0) + guard;
    const kept = secret.sift(m.board, t0, t1, tol, guard);
    S.open = null;
    S.lastClosed = m.round;
    S.lastClosedSession = m.session;
    toPage({ ...base, observer: true, window_known: !!w, t_start_us: w ? w.t_start : null, t_end_us: w ? w.t_end : null, kept_pos: kept });
    return;
  }
  p.stopped = true;
  S.current = null;
  S.open = null;
  S.lastClosed = m.round;
  S.lastClosedSession = m.session;
  const lateUs = p.late.length ? Math.max(...p.late) : 0;
  const spoiled = p.skipped > 0 || lateUs > p.lateLimit || p.cutShort;
  const recorded = {
    session: m.session,
    round: m.round,
    t_start_us: p.t_start,
    t_end_us: p.t_end,
    sync: { offset_us: p.sync.offset_us, delay_us: p.sync.delay_us },
    posts: p.posts.map((q) => ({ sent_us: q.sent_us, label: q.label })),
    board: m.board,
    coalesced: [...p.coalesced],
    send_call_us: [...p.sendDur],
    done_us: p.doneUs,
    late_us: lateUs,
    skipped: p.skipped,
    spoiled,
    // The spans this poster sent as `drop`, and those the peer's `dropped` said (onDropped).
    spans: [],
    peer_spans: [],
  };
  S.record.rounds.push(recorded);
  // Posts the server said were coalesced carry a later message's time: not theirs.
  const timed = p.posts.filter((_, k) => !p.coalesced.includes(k + 1));
  // No peer spans yet: the peer's `dropped`, if any, comes after `closed` (onDropped).
  const view = secret.deriveRound(m.board, p.t_start, p.t_end, timed, p.sync, me(), tol, guard, []);
  const errors = secret.arrivalErrors(m.board, timed, p.sync);
  const bias = refineBias(errors, tol);
  S.bias += bias;
  const within = errors.filter((e) => e !== null && Math.abs(e) <= tol).length;
  S.needSync = (timed.length > 0 && within < ALIGNED_SHARE * timed.length) || p.skipped > p.planned / 4;
  const keptPos = secret.sift(m.board, p.t_start, p.t_end, tol, guard);
  const timing = {
    planned: p.planned,
    sent: p.posts.length,
    skipped: p.skipped,
    coalesced: p.coalesced.length,
    late_us: summary(p.late),
    send_call_us: summary(p.sendDur),
    error_us: summary(errors.filter((e) => e !== null)),
    abs_error_us: summary(errors.filter((e) => e !== null).map(Math.abs)),
    bias_step_us: bias,
    late_limit_us: p.lateLimit,
    spoiled,
    within_tolerance: within,
    resync_next: S.needSync,
  };
  const report = {
    ...base,
    observer: false,
    t_start_us: p.t_start,
    t_end_us: p.t_end,
    kept_pos: keptPos,
    posts: p.posts,
    sent_us: p.posts.map((q) => q.sent_us),
    late_us: p.late,
    send_call_us: p.sendDur,
    sync: p.sync,
    timing,
  };
  if (view.desync || spoiled) {
    // Out of sync, or spoiled by the late rule (this poster fell behind its own schedule):
    // dropped, as sgp pair does.
    const late = !view.desync;
    toPage({ ...report, desync: { unmatched: late ? 0 : view.unmatched, total: late ? timed.length : view.total, late, late_us: lateUs, skipped: p.skipped } });
    trySend({ type: 'abort', reason: 'desync' });
    return;
  }
  // In sync, with at most one post in secret.UNMATCHED_SHARE unmatched: the spans around
  // those go out first, so that the peer (and the room) leave out the same entries, and our
  // verdict, made without the peer's spans, counts those we left out ourselves.
  const drops = view.spans.length > 0 && trySend({ type: 'drop', spans: view.spans }) ? 1 : 0;
  if (drops) recorded.spans = view.spans.map((x) => [x[0], x[1]]);
  S.keptRounds.push({ round: m.round, n: view.n, a: view.a, bits: view.bits });
  S.lastOk = true;
  const o = {
    session: m.session,
    round: m.round,
    board: m.board,
    t_start: p.t_start,
    t_end: p.t_end,
    timed,
    sync: p.sync,
    tol,
    guard,
    spans: view.spans,
    peerSpans: [],
    drops,
    verdict: null, // 'confirm' | 'ready'
    report,
  };
  S.open = o;
  roundToPage(o, view, false);
  o.verdict = verdict(o);
}

/** The page's `round` message for an open round, first (update false) or after `dropped`. */
function roundToPage(o, view, update) {
  const l = secret.ledger(S.keptRounds.map((r) => [r.n, r.a]), S.params.tag_bits);
  toPage({
    ...o.report, update, desync: null, spans: view.spans, peer_spans: o.peerSpans.map((x) => [x[0], x[1]]), left_out: view.dropped,
    mine: view.kept.filter((_, j) => view.mine[j]), n: view.n, a: view.a, ledger: l,
  });
}

/**
 * Says this poster's verdict on the open round `o`, from the session's rounds as they now
 * stand: `confirm {tag, drops}` once the strength reaches the target (the key goes to the
 * page), else `ready`. Returns which. A verdict said again after the peer's `dropped` may
 * turn a confirm into a ready (the page is told its key is void); never the other way.
 */
function verdict(o) {
  const params = S.params;
  const l = secret.ledger(S.keptRounds.map((r) => [r.n, r.a]), params.tag_bits);
  if (l.strength >= params.target_bits) {
    const bits = S.keptRounds.flatMap((r) => r.bits);
    const k = secret.key(S.room, o.session, bits);
    const t = secret.tag(k, params.tag_bits);
    S.myTag = t;
    toPage({
      type: 'key', session: o.session, key: secret.hex(k), bits: secret.bitsString(bits), ledger: l, tag: t,
      rounds: S.keptRounds.length, per_round: S.keptRounds.map((r) => ({ round: r.round, n: r.n, a: r.a })), round: o.round, drops: o.drops,
    });
    if (trySend({ type: 'confirm', tag: t, drops: o.drops })) phase('confirming', { session: o.session, round: o.round });
    return 'confirm';
  }
  if (S.myTag !== null) {
    S.myTag = null;
    toPage({ type: 'key_void', session: o.session, round: o.round, strength: l.strength });
  }
  if (trySend({ type: 'ready' })) {
    phase('waiting', { session: o.session, round: o.round, next: true, strength: l.strength });
  }
  return 'ready';
}

/** Spans as the server relays them (it checked them): `[[from_us, to_us], …]`, kept only if whole. */
function cleanSpans(spans) {
  if (!Array.isArray(spans)) return [];
  return spans
    .filter((x) => Array.isArray(x) && x.length === 2 && Number.isSafeInteger(x[0]) && Number.isSafeInteger(x[1]) && x[0] <= x[1])
    .slice(0, 64)
    .map((x) => [x[0], x[1]]);
}

/**
 * The peer left out spans of the last closed round around its late posts (the server relays
 * `drop` to the rest of the room, never to its sender, and never says whose it was). A poster
 * derives that round again with them, replaces its counts, and — if its verdict was a
 * confirm, which the server voided — says its verdict again with the new key and drops count
 * (a ready stands: fewer entries never make a key where there was none). A round that is not
 * open (we dropped it: out of sync, or late) ignores it. Observers only show it.
 */
function onDropped(m) {
  const spans = cleanSpans(m.spans);
  const last = S.record.rounds[S.record.rounds.length - 1];
  if (isPoster() && last && last.session === m.session && last.round === m.round) last.peer_spans.push(...spans);
  if (!isPoster()) {
    toPage({ type: 'dropped', session: m.session, round: m.round, spans });
    return;
  }
  const o = S.open;
  if (!o || o.session !== m.session || o.round !== m.round || spans.length === 0) return;
  o.peerSpans.push(...spans);
  o.drops += 1;
  const view = secret.deriveRound(o.board, o.t_start, o.t_end, o.timed, o.sync, me(), o.tol, o.guard, o.peerSpans);
  if (view.desync) {
    // Cannot happen (spans only leave entries out, and the ambiguity check only looks at
    // kept ones), but never confirm on it: drop the round as out of sync.
    S.open = null;
    S.keptRounds = S.keptRounds.filter((r) => r.round !== o.round);
    S.lastOk = false;
    if (S.myTag !== null) {
      S.myTag = null;
      toPage({ type: 'key_void', session: o.session, round: o.round, strength: 0 });
    }
    trySend({ type: 'abort', reason: 'desync' });
    return;
  }
  const k = S.keptRounds.findIndex((r) => r.round === o.round);
  if (k >= 0) S.keptRounds[k] = { round: o.round, n: view.n, a: view.a, bits: view.bits };
  roundToPage(o, view, true);
  if (o.verdict === 'confirm') o.verdict = verdict(o);
}

function onConfirmed(m) {
  const ours = isPoster() && S.myTag !== null;
  const match = !!m.match && ours && S.myTag === S.peerTag;
  toPage({ type: 'confirmed', match: !!m.match, ours, mine_ok: match });
  if (!isPoster() || !ours) return;
  S.session = null;
  S.keptRounds = [];
  if (match) {
    stopSession();
    toPage({ type: 'stopped', reason: 'key', message: 'key confirmed' });
    return;
  }
  S.myTag = null;
  failed('confirmation mismatch');
}

function onAborted(m) {
  const reason = String(m.reason);
  if (reason === 'desync' && (S.session !== null || !isPoster())) {
    // One of us found the last round out of sync: it is dropped, the session goes on.
    if (S.current) S.current.stopped = true;
    S.current = null;
    S.open = null;
    S.myTag = null;
    const dropped = S.lastClosed;
    const droppedSession = S.lastClosedSession;
    S.lastClosed = null;
    if (dropped !== null) S.keptRounds = S.keptRounds.filter((r) => r.round !== dropped);
    const l = S.params ? secret.ledger(S.keptRounds.map((r) => [r.n, r.a]), S.params.tag_bits) : null;
    toPage({ type: 'aborted', reason, round: dropped, session: droppedSession, strength: l ? l.strength : 0, kept_total: l ? l.n : 0 });
    if (isPoster() && S.running) failed('desync');
    return;
  }
  const wasRunning = S.running;
  S.session = null;
  S.keptRounds = [];
  S.open = null;
  toPage({ type: 'aborted', reason });
  if (!isPoster()) return;
  if (reason === 'peer_left' || reason === 'idle' || reason === 'gave_up' || reason === 'user' || !wasRunning) {
    stopSession();
    toPage({ type: 'stopped', reason });
    return;
  }
  // disagree and anything else: a new session, as pair.rs does.
  if (S.current) S.current.stopped = true;
  S.current = null;
  S.myTag = null;
  failed(reason);
}

// ---------------------------------------------------------------------------------------
// The page's commands.

self.onmessage = (ev) => {
  const c = ev.data || {};
  switch (c.cmd) {
    case 'create':
      if (calibProbe) calibProbe.stopped = true;
      connect({ type: 'create', params: c.params });
      return;
    case 'join':
      if (calibProbe) calibProbe.stopped = true;
      connect(c.observer ? { type: 'join', room: c.room, as: 'observer' } : { type: 'join', room: c.room });
      return;
    case 'start':
      if (!isPoster()) {
        toPage({ type: 'error', code: 'not_allowed', message: 'observers watch; only alice and bob start rounds' });
        return;
      }
      if (S.running) return;
      stopSession(); // a fresh epoch
      S.running = true;
      S.failures = 0;
      S.progressAt = nowUs();
      S.totalFailures = 0;
      S.lastOk = false;
      S.session = null;
      S.keptRounds = [];
      syncAndReady('start');
      return;
    case 'reset':
      trySend({ type: 'reset' });
      return;
    case 'leave':
      S.leaving = true;
      if (S.ws && S.ws.readyState === WebSocket.OPEN) {
        try {
          S.ws.send('{"type":"leave"}');
        } catch {
          // closing anyway
        }
      }
      closeSocket();
      toPage({ type: 'left' });
      return;
    case 'measure':
      measureTimers().then((t) => toPage({ type: 'timing', ...t }));
      return;
    case 'record':
      toPage({ type: 'record', id: c.id, record: recordDoc() });
      return;
    case 'calibrate':
      calibrate()
        .catch((e) => ({ ok: false, message: e.message }))
        .then((r) => toPage({ type: 'calibration', ...r, id: c.id ?? null }));
      return;
    default:
      toPage({ type: 'error', code: 'client', message: `unknown command ${String(c.cmd)}` });
  }
};

toPage({ type: 'hello', isolated: !!self.crossOriginIsolated, now_us: nowUs() });

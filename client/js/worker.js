// worker.js — the dedicated (module) Web Worker that drives a poster's engine (poster.js) with
// the WebSocket and the timers: clock sync (16 ping/pong samples), the Poisson schedule and
// labels, each post sent at its time (the real send time read just before ws.send, the thread
// held POST_HOLD_US after it), `done` when the engine says. What to send and when a round
// counts are the engine's (client/js/poster.js, the `browser` policy of docs/poster.md); the
// precise waits and the measurements of timers and jitter are waits.js's. This file owns the
// sockets, the observers' view, the poster's record for the eavesdropper audit (the file
// `sgp pair --record` writes) and the messages to the page. A worker keeps its timers when the
// tab is in the background; the page never touches the socket. Messages to and from the page
// are listed in client/js/README.md.

import * as secret from './secret.js';
import {
  SYNC_SAMPLES, sample, best, poisson, labelsFromBytes, summary,
} from './timing.js';
import { Poster, RETRIES, GIVE_UP_US, cleanSpans } from './poster.js';
import { widestUs } from './adapt.js';
import { socketUrl, pageFolder } from './urls.js';
import { Pings } from './pings.js';
import { makeCode, normalizeCode } from './codes.js';
import {
  nowUs, getRandom, uniform, POST_HOLD_US, blockUntil, waitUntil, measureTimers, calibrate, stopCalibration,
} from './waits.js';

const PING_TIMEOUT_MS = 5_000;
/**
 * The least lead this page asks for (ms; docs/protocol.md §3): a window opens at least this
 * long after the second `ready`. The room's default of 50 ms was set when a post that missed
 * τ cost its round: with a 20 ms lead 11-20 % of the posts in a round's first 25 ms missed
 * (the page still drawing). A miss now costs a span of ~18τ, and 30 ms less a round is worth
 * more (BENCHMARKS.md, "Web client"). 10 ms since the round's `ready` leaves before the page
 * draws it (act): 10 keys each on loopback, the gap between rounds 32.5 → 27.3 ms, the share
 * of kept entries the spans left 0.865 → 0.858, and on the busy profile 35.2 → 33.6 ms and
 * 0.826 → 0.847 (docs/journal/2026-12-07-browser-floor-costs.md). The room still widens the
 * lead to twice the slower poster's turnaround.
 */
const PAGE_LEAD_MS = 10;
/**
 * How many codes a `create` tries in all (docs/protocol.md §3): the page draws the code, and
 * draws again, on a new socket, when the server says `room_taken` (the code is in use there)
 * or `draining` (that server is stopping; a new code usually routes to another one).
 */
const CREATE_ATTEMPTS = 5;
/** The refusals of a `create` that a new code may cure. */
const DRAW_AGAIN = new Set(['room_taken', 'draining']);

// ---------------------------------------------------------------------------------------
// State of the connection. A poster's session is its engine's (S.poster).

const S = {
  ws: null,
  role: null, // 'alice' | 'bob' | 'observer'
  room: null,
  params: null,
  sync: null, // the last clock sync {offset_us, delay_us}: shown, and an observer's estimate of the window
  poster: null, // the engine (poster.js), for alice and bob, from `joined`
  epoch: 0, // bumped whenever the session stops: stale async steps (a sync) check it
  posting: null, // the round (the engine's `current`) a posting loop runs for
  pings: new Pings(), // the clock-sync pings waiting for their pongs
  window: null, // the last round announced by `start`: {session, round, t_start, t_end}
  lastClosed: null, // observers: the last closed round seen (for `aborted {desync}`)
  lastClosedSession: null,
  open: null, // the page's `round` message of the engine's open round, sent again after `dropped`
  lastKey: null, // the last `key` action, for the `confirming` phase
  leaving: false,
  creating: null, // while a `create` is on its way: {params, attempts} (codes tried so far)
  askRange: null, // the page's {floor_ms, fixed} with Start: the engine adapts within it
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
  const P = S.poster;
  toPage({ type: 'phase', phase: name, failures: P ? P.failures : 0, retries: RETRIES, give_up_s: GIVE_UP_US / 1e6, total_failures: P ? P.totalFailures : 0, ...extra });
}

// ---------------------------------------------------------------------------------------
// Connection.

/** Opens the socket of room `hello.room` (its code in the URL) and says `hello` on it. */
function connect(hello) {
  if (S.ws) closeSocket();
  S.leaving = false;
  // `ws?room=CODE` beside the page, wherever a proxy serves it (not `self.location`: that is
  // this script's URL, in the page's js/ folder). The code in the URL lets a proxy send every
  // member of a room to the same server.
  let url;
  let ws;
  try {
    url = socketUrl(pageFolder(), hello.room);
    toPage({ type: 'conn', state: 'connecting', url });
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
    S.creating = null;
    stopSession();
    for (const p of S.pings.takeAll()) p.reject(new Error('connection closed'));
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
  Object.assign(S, { role: null, room: null, params: null, sync: null, poster: null });
}

/** Ends this poster's session locally: no posting continues, async steps see a new epoch. */
function stopSession() {
  S.epoch++;
  if (S.poster) S.poster.stop();
  S.open = null;
}

// ---------------------------------------------------------------------------------------
// Clock sync.

function ping() {
  return new Promise((resolve, reject) => {
    const t0 = nowUs();
    const waiter = { resolve: (s) => done(() => resolve(s)), reject: (e) => done(() => reject(e)) };
    const timer = setTimeout(() => {
      S.pings.remove(t0, waiter);
      reject(new Error('the server did not answer a clock-sync ping in 5 s'));
    }, PING_TIMEOUT_MS);
    function done(settle) {
      clearTimeout(timer);
      settle();
    }
    S.pings.add(t0, waiter);
    try {
      sendText(`{"type":"ping","t0_us":${t0}}`);
    } catch (e) {
      S.pings.remove(t0, waiter);
      waiter.reject(e);
    }
  });
}

/** The best of SYNC_SAMPLES pings: {s, n, delays} (every round trip, µs). */
async function syncClock() {
  const samples = [];
  while (samples.length < SYNC_SAMPLES) samples.push(await ping());
  S.sync = best(samples);
  return { s: S.sync, n: samples.length, delays: samples.map((x) => x.delay_us) };
}

/**
 * The engine's ask range at Start (docs/poster.md, "Adapting"), from the page's `range` and
 * this sync's round trips: the floor is the page's pick for its own path (where the page
 * measured nothing, a joining tab say, its timers' floor: the rounds widen it if the path asks
 * more, and a narrow round that fails is short), the ceiling what the round trips need
 * (widestUs); a fixed τ is both.
 */
function adaptFrom(P, range, delays) {
  const floorUs = secret.msToUs(range.floor_ms);
  P.adapt(floorUs, range.fixed ? floorUs : widestUs(delays));
  P.askLead(PAGE_LEAD_MS);
}

function showSync({ s, n }) {
  toPage({ type: 'sync', offset_us: s.offset_us, delay_us: s.delay_us, bias_us: S.poster ? S.poster.bias : 0, samples: n });
}

/** The engine's `sync` action: sync, then hand it the sample (it says `ready`). */
async function syncAndReady(why) {
  const epoch = S.epoch;
  phase('syncing', { why });
  let r;
  try {
    r = await syncClock();
  } catch (e) {
    if (epoch === S.epoch) {
      stopSession();
      toPage({ type: 'stopped', reason: 'sync_failed', message: e.message });
    }
    return;
  }
  const P = S.poster;
  const live = epoch === S.epoch && P && P.running;
  if (live && why === 'start' && S.askRange) adaptFrom(P, S.askRange, r.delays);
  const actions = live ? P.synced(r.s, nowUs()) : [];
  showSync(r);
  act(actions);
}

// ---------------------------------------------------------------------------------------
// The engine's actions.

/** Does what the engine asks (docs/poster.md, "Actions"); `post` and `done` only come to postLoop. */
function act(actions) {
  // A closed round's messages (`drop`, `ready`, `confirm`) leave before its record and the
  // page's `round` are made: those took 0.5-7 ms a round on loopback, and the next round
  // waits for both posters' `ready` (docs/journal/2026-12-07-browser-floor-costs.md).
  const early = actions.some((a) => 'round' in a) ? new Map(actions.filter((a) => 'send' in a).map((a) => [a, trySend(a.send)])) : null;
  for (const a of actions) {
    const [k] = Object.keys(a);
    const v = a[k];
    switch (k) {
      case 'send':
        if (!early || !early.has(a)) sendAction(v);
        else if (early.get(a)) noteSent(v);
        break;
      case 'sync':
        syncAndReady(v.why ?? 'sync');
        break;
      case 'schedule':
        schedule(v);
        break;
      case 'round':
        roundToPage(v);
        break;
      case 'dropped':
        if (S.open && S.open.session === v.session && S.open.round === v.round) pageRound(S.open, v.view, v.peer_spans, true);
        break;
      case 'key':
        S.lastKey = v;
        toPage({ type: 'key', session: v.session, key: v.key, bits: v.bits, ledger: v.ledger, tag: v.tag, rounds: v.rounds, per_round: v.per_round, round: v.round, drops: v.drops });
        break;
      case 'key_void':
        toPage({ type: 'key_void', session: v.session, round: v.round, strength: v.strength });
        break;
      case 'confirmed':
        if (v.matched) {
          stopSession();
          toPage({ type: 'stopped', reason: 'key', message: 'key confirmed' });
        }
        break;
      case 'aborted':
        S.open = null;
        toPage('strength' in v
          ? { type: 'aborted', reason: v.reason, round: v.round, session: v.session, strength: v.strength, kept_total: v.kept_total }
          : { type: 'aborted', reason: v.reason });
        break;
      case 'fail':
        stopSession();
        toPage(v.reason === 'retries'
          ? { type: 'stopped', reason: 'gave_up', message: v.message, failures: v.failures, total_failures: v.total_failures, in_a_row: v.in_a_row, stuck_s: v.stuck_s, last: v.last }
          : { type: 'stopped', reason: v.reason });
        break;
      default:
        toPage({ type: 'error', code: 'client', message: `unexpected action ${k}` });
    }
  }
}

function sendAction(v) {
  if (trySend(v)) noteSent(v);
}

/** What the page hears of a message this poster sent. */
function noteSent(v) {
  if (v.type === 'ready') phase('waiting', { ...(S.poster.readyFor || {}), ask: v.ask ?? null });
  else if (v.type === 'confirm' && S.lastKey) phase('confirming', { session: S.lastKey.session, round: S.lastKey.round });
}

// ---------------------------------------------------------------------------------------
// Posting one round: the schedule, then the engine's deadlines.

const POST_A = '{"type":"post","label":"A"}';
const POST_B = '{"type":"post","label":"B"}';

/** The engine's `schedule` action: draw the times and labels, then post. */
function schedule(v) {
  const P = S.poster;
  const c = P.current;
  const planned = poisson(v.t_start_us, v.t_end_us, v.rate_hz, uniform);
  const labels = labelsFromBytes(getRandom(new Uint8Array(Math.ceil(planned.length / 8) || 1)), planned.length);
  act(P.scheduled(planned, labels, nowUs()));
  phase('posting', {
    session: c.session,
    round: c.round,
    start_local_us: v.t_start_us - v.shift_us,
    end_local_us: v.t_end_us - v.shift_us,
    now_us: nowUs(),
    tolerance_ms: c.tol / 1000,
    rate_hz: v.rate_hz,
  });
  kick();
}

/** Starts a posting loop for the engine's round if it has a deadline and none runs for it. */
function kick() {
  const P = S.poster;
  const c = P && P.current;
  if (!c || S.posting === c || P.nextDeadline() === null) return;
  S.posting = c;
  postLoop(P, c)
    .catch((e) => toPage({ type: 'error', code: 'client', message: `posting: ${e.message}` }))
    .finally(() => {
      if (S.posting === c) S.posting = null;
    });
}

/**
 * Waits for each deadline of round `c` and does what `onTimeout` says: a post is sent at once
 * (its time read just before ws.send), then the thread is held until POST_HOLD_US after it or
 * the next deadline, whichever is sooner; `done` likewise. Ends when the engine has no
 * deadline, or the round is no longer the engine's (closed, aborted, stopped).
 */
async function postLoop(P, c) {
  const alive = () => S.poster === P && P.current === c;
  for (;;) {
    const deadline = P.nextDeadline();
    if (deadline === null || !(await waitUntil(deadline, alive))) return;
    for (const a of P.onTimeout(nowUs())) {
      if (a.post) {
        const t = nowUs();
        // The late rule once more, at the send: a pause since onTimeout may have made it late.
        if (P.leave(t).length) continue;
        try {
          sendText(a.post.label === 'A' ? POST_A : POST_B);
        } catch {
          return; // the socket is gone: onclose reports it
        }
        const after = nowUs();
        act(P.sent({ sent_us: t, label: a.post.label, call_us: after - t }, false, after));
        blockUntil(Math.min(t + POST_HOLD_US, P.nextDeadline() ?? Infinity)); // at once where POST_HOLD_US is 0
      } else if (a.done) {
        const first = c.doneUs === null;
        if (trySend({ type: 'done' })) {
          act(P.doneSent(nowUs()));
          if (first) phase('closing', { session: c.session, round: c.round });
        }
      } else {
        act([a]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Server messages.

/** Refusals (by their stable code, docs/protocol.md §8) that are expected in the normal
 *  course of a round and need no word to the person. */
const QUIET_REFUSALS = new Set([
  'no_round', 'outside_window', 'too_many_posts', 'board_full', 'round_running', 'round_dropped', 'stale_confirm',
]);

function onServer(m, t3) {
  const P = S.poster;
  switch (m.type) {
    case 'pong': {
      const p = S.pings.answer(m.t0_us);
      if (p) p.resolve(sample(m.t0_us, m.t1_us, m.t2_us, t3));
      return;
    }
    case 'joined':
      S.creating = null;
      Object.assign(S, { room: m.room, role: m.role, params: m.params, open: null, lastClosed: null, lastClosedSession: null });
      S.poster = isPoster() ? new Poster({ policy: 'browser', room: m.room, role: m.role, params: m.params }) : null;
      S.record = { rounds: [], messages: [] };
      toPage({ type: 'joined', room: m.room, role: m.role, params: m.params, peers: m.peers });
      // A first sync at once, so the clock panel shows what this browser can do.
      syncClock().then(showSync).catch(() => {});
      return;
    case 'peer':
      toPage({ type: 'peer', event: m.event, role: m.role });
      if (P) act(P.handle(m, t3)); // the browser waits for the room's `aborted {peer_left}`
      return;
    case 'start':
      return onStart(m);
    case 'closed':
      return onClosed(m);
    case 'confirm':
      toPage({ type: 'confirm', role: m.role, tag: m.tag });
      if (P) act(P.handle(m, t3));
      return;
    case 'confirmed': {
      const ours = !!P && P.myTag !== null;
      toPage({ type: 'confirmed', match: !!m.match, ours, mine_ok: !!m.match && ours && P.myTag === P.peerTag });
      if (P) act(P.handle(m, nowUs()));
      return;
    }
    case 'dropped':
      return onDropped(m, t3);
    case 'aborted':
      return onAborted(m);
    case 'reset':
      if (P) act(P.handle(m, t3));
      stopSession();
      toPage({ type: 'reset' });
      return;
    case 'error':
      return onError(m, t3);
    case 'coalesced':
      // Our posts m.post … m.post + m.count − 1 of this round came in one piece with our
      // next message: the engine leaves them out of the derivation.
      if (P) act(P.handle(m, t3));
      return;
    case 'board':
      return;
    default:
      toPage({ type: 'error', code: 'unknown', message: `unexpected message from the server: ${String(m.type).slice(0, 40)}` });
  }
}

/** A `create` under a new code: drawn here, named in the socket's URL and in the message. */
function tryCreate() {
  S.creating.attempts++;
  connect({ type: 'create', room: makeCode(), params: S.creating.params });
}

function onError(m, t3) {
  const P = S.poster;
  const text = String(m.message);
  if (S.creating && S.role === null && DRAW_AGAIN.has(m.code)) {
    const { attempts } = S.creating;
    if (attempts < CREATE_ATTEMPTS) {
      // Noted (quiet), then a new code on a new socket.
      toPage({ type: 'error', code: m.code, message: `${text} (code ${attempts} of ${CREATE_ATTEMPTS}; drawing another)`, quiet: true });
      tryCreate();
      return;
    }
    S.creating = null;
    toPage({ type: 'error', code: m.code, message: text, attempts });
    return;
  }
  if (m.code === 'too_early' && P && P.current && P.current.doneTimes > 0) {
    // Our `done` came before t_end by the server's clock: the engine says it again shortly.
    act(P.handle(m, t3));
    if (P.nextDeadline() !== null) {
      kick();
      return;
    }
  }
  if (QUIET_REFUSALS.has(m.code)) {
    // A refused post: after the round was stopped (posts already on their way), nothing
    // to say; during a round, the self-check will drop the round anyway. A refused ready:
    // our first ready already started the next round (it crossed the peer's desync). A
    // refused confirm: the peer dropped the round (its `aborted` follows), or left out
    // spans of it that our tag did not know of (its `dropped` is on the way, and the engine
    // confirms again then). Noted, not shown.
    toPage({ type: 'error', code: m.code, message: text, quiet: true });
    return;
  }
  toPage({ type: 'error', code: m.code, message: text });
}

function onStart(m) {
  S.window = { session: m.session, round: m.round, t_start: m.t_start_us, t_end: m.t_end_us, params: m.params || S.params };
  const P = S.poster;
  const sync = (P && P.sync) || S.sync;
  const shift = sync ? sync.offset_us + (P ? P.bias : 0) + Math.floor(sync.delay_us / 2) : null;
  toPage({
    type: 'start', session: m.session, round: m.round, t_start_us: m.t_start_us, t_end_us: m.t_end_us, params: m.params,
    // The window on this worker's clock, for the page's progress bar (estimated for observers).
    ...(shift === null ? {} : { start_local_us: m.t_start_us - shift, end_local_us: m.t_end_us - shift, now_us: nowUs() }),
  });
  if (!P) return;
  if (!P.sync) {
    // Cannot happen (ready follows a sync); post nothing rather than post blind.
    toPage({ type: 'error', code: 'client', message: 'a round started before the clock was synced' });
    return;
  }
  S.open = null;
  act(P.handle(m, nowUs()));
}

function onClosed(m) {
  const actions = S.poster ? S.poster.handle(m, nowUs()) : [];
  act(actions);
  if (actions.some((a) => 'round' in a)) return;
  // An observer (or a round we did not post in): the public view only. The sift needs the
  // round's window and parameters, known from `start` (an observer who joined mid-round has
  // not seen it: the room's then).
  const w = S.window && S.window.session === m.session && S.window.round === m.round ? S.window : null;
  const tol = secret.msToUs((w ? w.params : S.params).tolerance_ms);
  const guard = secret.msToUs((w ? w.params : S.params).guard_ms);
  const times = m.board.map((e) => e.t_us);
  const t0 = w ? w.t_start : (times.length ? Math.min(...times) : 0) - guard;
  const t1 = w ? w.t_end : (times.length ? Math.max(...times) : 0) + guard;
  const kept = secret.sift(m.board, t0, t1, tol, guard);
  S.open = null;
  S.lastClosed = m.round;
  S.lastClosedSession = m.session;
  toPage({
    type: 'round', session: m.session, round: m.round, board: m.board, tolerance_us: tol, guard_us: guard,
    observer: true, window_known: !!w, t_start_us: w ? w.t_start : null, t_end_us: w ? w.t_end : null, kept_pos: kept,
  });
}

/** The engine's `round` action: the record, and the page's `round` message. */
function roundToPage(v) {
  const f = v.facts;
  const c = f.posted;
  const { tol, guard } = c; // the round's own (its start's)
  S.lastClosed = v.round;
  S.lastClosedSession = v.session;
  S.record.rounds.push({
    session: v.session,
    round: v.round,
    t_start_us: c.t_start,
    t_end_us: c.t_end,
    sync: { offset_us: c.sync.offset_us, delay_us: c.sync.delay_us },
    posts: c.posts.map((q) => ({ sent_us: q.sent_us, label: q.label })),
    board: f.board,
    coalesced: [...c.coalesced],
    send_call_us: [...c.callUs],
    done_us: c.doneUs,
    late_us: f.late_us,
    skipped: c.skipped,
    skipped_us: [...c.skippedUs],
    spoiled: f.spoiled,
    // The round's own τ, guard and rate, from its `start` (they follow the posters' asks).
    params: { tolerance_us: tol, guard_us: guard, rate_hz: c.rateHz },
    // The spans this poster sent as `drop`, and those the peer's `dropped` said (onDropped).
    spans: v.outcome === 'kept' ? v.spans.map((x) => [x[0], x[1]]) : [],
    peer_spans: [],
  });
  const errors = f.errors.filter((e) => e !== null);
  const timing = {
    planned: c.times.length,
    sent: c.posts.length,
    skipped: c.skipped,
    coalesced: c.coalesced.length,
    late_us: summary(c.late),
    send_call_us: summary(c.callUs),
    error_us: summary(errors),
    abs_error_us: summary(errors.map(Math.abs)),
    bias_step_us: f.bias_step_us,
    late_limit_us: c.lateLimit,
    spoiled: f.spoiled,
    within_tolerance: f.within,
    resync_next: f.resync_next,
  };
  const report = {
    type: 'round', session: v.session, round: v.round, board: f.board, tolerance_us: tol, guard_us: guard,
    observer: false,
    t_start_us: c.t_start,
    t_end_us: c.t_end,
    kept_pos: secret.sift(f.board, c.t_start, c.t_end, tol, guard),
    posts: c.posts,
    sent_us: c.posts.map((q) => q.sent_us),
    late_us: c.late,
    send_call_us: c.callUs,
    sync: c.sync,
    timing,
  };
  if (v.outcome !== 'kept') {
    // Out of sync, or spoiled by the late rule (this poster fell behind its own schedule):
    // the engine drops it.
    const late = v.outcome !== 'desync';
    toPage({ ...report, desync: { unmatched: late ? 0 : v.unmatched, total: late ? f.timed.length : v.total, late, late_us: f.late_us, skipped: c.skipped } });
    return;
  }
  S.open = report;
  pageRound(report, f.view, [], false);
}

/** The page's `round` message for the open round, first (update false) or after `dropped`. */
function pageRound(report, view, peerSpans, update) {
  toPage({
    ...report, update, desync: null, spans: view.spans, peer_spans: peerSpans.map((x) => [x[0], x[1]]), left_out: view.dropped,
    mine: view.kept.filter((_, j) => view.mine[j]), n: view.n, a: view.a, ledger: S.poster.ledger(),
  });
}

/**
 * The peer left out spans of the last closed round (the server relays `drop` to the rest of
 * the room, never to its sender, and never says whose it was): the engine derives it again;
 * observers only show it.
 */
function onDropped(m, t3) {
  const spans = cleanSpans(m.spans);
  const last = S.record.rounds[S.record.rounds.length - 1];
  if (isPoster() && last && last.session === m.session && last.round === m.round) last.peer_spans.push(...spans);
  if (!S.poster) {
    toPage({ type: 'dropped', session: m.session, round: m.round, spans });
    return;
  }
  act(S.poster.handle(m, t3));
}

function onAborted(m) {
  const reason = String(m.reason);
  if (S.poster) {
    act(S.poster.handle(m, nowUs()));
    return;
  }
  if (reason === 'desync') {
    // One of the posters found the last round out of sync: it is dropped, the session goes on.
    toPage({ type: 'aborted', reason, round: S.lastClosed, session: S.lastClosedSession, strength: 0, kept_total: 0 });
    S.lastClosed = null;
    return;
  }
  toPage({ type: 'aborted', reason });
}

// ---------------------------------------------------------------------------------------
// The page's commands.

self.onmessage = (ev) => {
  const c = ev.data || {};
  switch (c.cmd) {
    case 'create':
      stopCalibration();
      S.creating = { params: c.params, attempts: 0 };
      tryCreate();
      return;
    case 'join': {
      stopCalibration();
      S.creating = null;
      // The page sends the canonical code; the socket's URL and `join` name the same one.
      const room = normalizeCode(c.room);
      if (room === null) {
        toPage({ type: 'error', code: 'client', message: `join: ${JSON.stringify(String(c.room))} is not a room code` });
        return;
      }
      connect(c.observer ? { type: 'join', room, as: 'observer' } : { type: 'join', room });
      return;
    }
    case 'start':
      if (!S.poster) {
        toPage({ type: 'error', code: 'not_allowed', message: 'observers watch; only alice and bob start rounds' });
        return;
      }
      if (S.poster.running) return;
      S.askRange = c.adapt || null;
      stopSession(); // a fresh epoch
      act(S.poster.start(nowUs()));
      return;
    case 'reset':
      trySend({ type: 'reset' });
      return;
    case 'leave':
      S.leaving = true;
      S.creating = null;
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

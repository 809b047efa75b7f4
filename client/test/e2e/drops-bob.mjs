// drops-bob.mjs — the Node-side poster of drops.test.mjs, run in a worker thread (Node 20 has
// WebSocket only behind --experimental-websocket, which a worker thread can be given): bob,
// speaking the protocol to the real server over a real WebSocket, with client/js/secret.js for
// the derivation and client/js/timing.js for the clock sync (16 ping/pong samples, the one
// with the smallest delay) and the Poisson schedule. Unlike an honest poster, it holds ONE post
// of every round back by HOLD_TAU × τ after recording its send time, so that post misses τ:
// after `closed` it must find the span around it, send `drop`, then its verdict; on the page's
// `dropped` it derives the round again and, if it had confirmed, confirms again.
//
// workerData: {url: "http://127.0.0.1:PORT", room}. To the parent: {type: 'joined' | 'event' |
// 'key' | 'failed', …}; a `stop` message from the parent closes the socket.

import { parentPort, workerData } from 'node:worker_threads';
import { randomFillSync } from 'node:crypto';
import * as secret from '../../js/secret.js';
import { SYNC_SAMPLES, sample, best, poisson, uniformFrom, labelsFromBytes } from '../../js/timing.js';
/** `done` this long (µs) + 2τ after our estimate of t_end, as the engine says. */
import { DONE_MARGIN_US } from '../../js/poster.js';

/** How late the held post leaves, in τ: far enough that no jitter brings it back within τ. */
const HOLD_TAU = 6;

const ORIGIN_US = Math.round(performance.timeOrigin * 1000);
const nowUs = () => ORIGIN_US + Math.round(performance.now() * 1000);
const uniform = uniformFrom((a) => randomFillSync(a));
const cell = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (msg) => parentPort.postMessage(msg);
const event = (what, extra = {}) => say({ type: 'event', what, ...extra });

/** Blocks this thread until the local clock reads `t` (Atomics.wait, then a short spin). */
function blockUntil(t) {
  for (;;) {
    const left = t - nowUs();
    if (left <= 0) return;
    if (left > 300) Atomics.wait(cell, 0, 0, (left - 200) / 1000);
    else while (nowUs() < t) {
      // spin
    }
  }
}

/** Yields to messages while far from `t`, then waits precisely. */
async function waitUntil(t) {
  for (;;) {
    const left = t - nowUs();
    if (left <= 3_000) break;
    await sleep((left - 2_000) / 1000);
  }
  blockUntil(t);
}

const S = {
  ws: null,
  params: null,
  sync: null,
  session: null,
  kept: [], // [{round, n, a, bits}] of this session
  current: null, // the round being posted
  open: null, // the last closed round that counts, until the next start
  myTag: null,
  peerTag: null,
  pings: new Map(),
  stats: { rounds: 0, drops_sent: 0, dropped_heard: 0, blind: 0, desync: 0, reconfirmed: 0, mismatches: 0, spans: [] },
};

function send(obj) {
  S.ws.send(JSON.stringify(obj));
}

function ping() {
  return new Promise((resolve) => {
    const t0 = nowUs();
    S.pings.set(t0, resolve);
    send({ type: 'ping', t0_us: t0 });
  });
}

async function syncAndReady() {
  const samples = [];
  while (samples.length < SYNC_SAMPLES) samples.push(await ping());
  S.sync = best(samples);
  send({ type: 'ready' });
}

async function postRound(p) {
  const shift = p.sync.offset_us + Math.floor(p.sync.delay_us / 2);
  const planned = poisson(p.t_start, p.t_end, p.params.rate_hz, uniform);
  const labels = labelsFromBytes(randomFillSync(new Uint8Array(Math.ceil(planned.length / 8) || 1)), planned.length);
  // The post to hold back: one in the middle of the round (its span then has matched posts
  // on both sides, and the late entry stays well inside the server's window).
  const lo = Math.floor(planned.length * 0.2);
  const hi = Math.floor(planned.length * 0.8);
  const held = planned.length >= 5 ? lo + Math.floor(uniform() * (hi - lo)) : -1;
  const tol = secret.msToUs(p.params.tolerance_ms);
  let notBefore = 0;
  for (let k = 0; k < planned.length; k++) {
    if (p.stopped) return;
    await waitUntil(Math.max(planned[k] - shift, notBefore));
    const t = nowUs();
    if (k === held) {
      // Recorded now, sent HOLD_TAU × τ later: on the board it lands far from its prediction.
      blockUntil(t + HOLD_TAU * tol);
      p.held = { sent_us: t, label: labels[k] };
      // The next post at least 1 ms after it: two frames read at once would carry one time
      // (`coalesced`), and the held one would leave the self-check instead of missing τ.
      notBefore = nowUs() + 1_000;
    }
    send({ type: 'post', label: labels[k] });
    p.posts.push({ sent_us: t, label: labels[k] });
  }
  await waitUntil(p.t_end - shift + DONE_MARGIN_US + 2 * tol);
  if (!p.stopped) send({ type: 'done' });
}

function onStart(m) {
  if (S.session !== m.session) {
    S.session = m.session;
    S.kept = [];
  }
  S.open = null;
  S.myTag = null;
  S.peerTag = null;
  if (S.current) S.current.stopped = true;
  const p = {
    session: m.session, round: m.round, t_start: m.t_start_us, t_end: m.t_end_us, params: m.params,
    sync: S.sync, posts: [], coalesced: [], held: null, stopped: false,
  };
  S.current = p;
  postRound(p).catch((e) => say({ type: 'failed', why: `posting: ${e.stack || e}` }));
}

function verdict(o) {
  const l = secret.ledger(S.kept.map((r) => [r.n, r.a]), S.params.tag_bits);
  if (l.strength >= S.params.target_bits) {
    const bits = S.kept.flatMap((r) => r.bits);
    const t = secret.tag(secret.key(S.room, o.session, bits), S.params.tag_bits);
    S.myTag = t;
    send({ type: 'confirm', tag: t, drops: o.drops });
    return 'confirm';
  }
  S.myTag = null;
  send({ type: 'ready' });
  return 'ready';
}

function onClosed(m) {
  const p = S.current;
  if (!p || p.session !== m.session || p.round !== m.round) return;
  p.stopped = true;
  S.current = null;
  S.stats.rounds++;
  const tol = secret.msToUs(S.params.tolerance_ms);
  const guard = secret.msToUs(S.params.guard_ms);
  const timed = p.posts.filter((_, k) => !p.coalesced.includes(k + 1));
  // The one thing only this test poster knows: which post it held back. If the self-check
  // still finds it matched (another entry with its label, not one of our earlier posts', sure
  // — within SURE of τ — of its prediction), it looks matched to anyone — docs/protocol.md §5.3's blind
  // spot, which a confirmation would catch as a mismatch. Drop such a round whole instead:
  // this test is about spans, not mismatches. (A near entry that is only doubtful leaves the
  // held post unmatched, with its span, as it should.)
  const held = p.held && timed.find((q) => q.sent_us === p.held.sent_us);
  if (held) {
    const check = secret.matchedInSendOrder(m.board, timed, p.sync, tol);
    if (check.ok[check.posts.indexOf(held)]) {
      S.stats.blind++;
      event('blind', { round: m.round });
      send({ type: 'abort', reason: 'desync' });
      return;
    }
  }
  const view = secret.deriveRound(m.board, p.t_start, p.t_end, timed, p.sync, 'B', tol, guard, []);
  if (view.desync) {
    S.stats.desync++;
    event('desync', { round: m.round, unmatched: view.unmatched, total: view.total });
    send({ type: 'abort', reason: 'desync' });
    return;
  }
  const drops = view.spans.length > 0 ? 1 : 0;
  if (drops) {
    send({ type: 'drop', spans: view.spans });
    S.stats.drops_sent++;
    S.stats.spans.push({ session: m.session, round: m.round, spans: view.spans });
  }
  S.kept.push({ round: m.round, n: view.n, a: view.a, bits: view.bits });
  const o = { session: m.session, round: m.round, board: m.board, t_start: p.t_start, t_end: p.t_end, timed, sync: p.sync, tol, guard, peerSpans: [], drops, verdict: null };
  S.open = o;
  o.verdict = verdict(o);
  event('round', { round: m.round, n: view.n, a: view.a, spans: view.spans, left_out: view.dropped.length, verdict: o.verdict });
}

function onDropped(m) {
  S.stats.dropped_heard++;
  const o = S.open;
  if (!o || o.session !== m.session || o.round !== m.round) return;
  o.peerSpans.push(...m.spans);
  o.drops += 1;
  const view = secret.deriveRound(o.board, o.t_start, o.t_end, o.timed, o.sync, 'B', o.tol, o.guard, o.peerSpans);
  if (view.desync) {
    S.open = null;
    S.kept = S.kept.filter((r) => r.round !== o.round);
    send({ type: 'abort', reason: 'desync' });
    return;
  }
  const k = S.kept.findIndex((r) => r.round === o.round);
  if (k >= 0) S.kept[k] = { round: o.round, n: view.n, a: view.a, bits: view.bits };
  if (o.verdict === 'confirm') {
    S.stats.reconfirmed++;
    o.verdict = verdict(o);
  }
  event('dropped', { round: m.round, spans: m.spans, n: view.n, verdict: o.verdict });
}

function onServer(m, t3) {
  switch (m.type) {
    case 'pong': {
      const r = S.pings.get(m.t0_us);
      if (r) {
        S.pings.delete(m.t0_us);
        r(sample(m.t0_us, m.t1_us, m.t2_us, t3));
      }
      return;
    }
    case 'joined':
      S.room = m.room;
      S.params = m.params;
      say({ type: 'joined', role: m.role, room: m.room, params: m.params });
      syncAndReady().catch((e) => say({ type: 'failed', why: `sync: ${e.stack || e}` }));
      return;
    case 'start':
      return onStart(m);
    case 'closed':
      return onClosed(m);
    case 'dropped':
      return onDropped(m);
    case 'coalesced':
      if (S.current) for (let k = 0; k < m.count; k++) S.current.coalesced.push(m.post + k);
      return;
    case 'confirm':
      if (m.role !== 'bob') S.peerTag = m.tag;
      return;
    case 'confirmed':
      if (m.match && S.myTag !== null && S.myTag === S.peerTag) {
        const bits = S.kept.flatMap((r) => r.bits);
        const l = secret.ledger(S.kept.map((r) => [r.n, r.a]), S.params.tag_bits);
        say({
          type: 'key', key: secret.hex(secret.key(S.room, S.session, bits)), tag: S.myTag, bits: secret.bitsString(bits), session: S.session,
          strength: l.strength, per_round: S.kept.map((r) => ({ round: r.round, n: r.n, a: r.a })), stats: S.stats,
        });
        S.ws.close(1000, 'done');
        return;
      }
      // Keys differ: a new session starts (both posters say ready again).
      S.stats.mismatches++;
      event('mismatch', {});
      S.session = null;
      S.kept = [];
      S.myTag = null;
      send({ type: 'ready' });
      return;
    case 'aborted':
      if (m.reason === 'desync') {
        // The last closed round is dropped whole; the session goes on.
        // (After our own abort there is no open round, and nothing of it was kept.)
        if (S.open) S.kept = S.kept.filter((r) => r.round !== S.open.round);
        S.open = null;
        S.myTag = null;
        send({ type: 'ready' });
        return;
      }
      if (m.reason === 'disagree') {
        S.session = null;
        S.kept = [];
        send({ type: 'ready' });
        return;
      }
      say({ type: 'failed', why: `aborted: ${m.reason}`, stats: S.stats });
      return;
    case 'error':
      // A confirm made before the peer's drop reached us is refused; we confirm again on
      // `dropped`. A ready that crossed a desync is refused too. Anything else is reported.
      if (/^confirm: made before a drop|^a round is running|^the last round was dropped/.test(String(m.message))) return;
      if (/^done\b/.test(String(m.message))) {
        setTimeout(() => send({ type: 'done' }), 2);
        return;
      }
      event('error', { code: m.code, message: m.message });
      return;
    default:
  }
}

// The room's code in the URL, as every client names it (docs/protocol.md §3, "Codes in the URL").
const ws = new WebSocket(`${workerData.url.replace(/^http/, 'ws')}/ws?room=${encodeURIComponent(workerData.room)}`);
S.ws = ws;
ws.onopen = () => send({ type: 'join', room: workerData.room });
ws.onmessage = (ev) => {
  const t3 = nowUs();
  try {
    onServer(JSON.parse(ev.data), t3);
  } catch (e) {
    say({ type: 'failed', why: `${e.stack || e}` });
  }
};
ws.onclose = (ev) => say({ type: 'closed', code: ev.code, stats: S.stats });
parentPort.on('message', (m) => {
  if (m && m.type === 'stop') {
    if (S.current) S.current.stopped = true;
    try {
      ws.close(1000, 'stop');
    } catch {
      // closed already
    }
  }
});

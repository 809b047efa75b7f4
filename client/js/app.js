// app.js — the page: the landing form (create / join / watch), the room view (status,
// progress, clock panel, key and ledger, confirmation, timeline) and `window.sgpState`, the
// plain object browser tests read. It never touches the socket: worker.js owns the connection,
// the clock sync, the posting schedule and the derivation, and reports events here; this file
// turns them into state and words (client/js/README.md lists the messages), and offers the
// poster's record (`window.sgpRecord()`, the Download record button) for the eavesdropper audit.

import { roundSvg, legend } from './timeline.js';
import { defaultTolerance, roundDurationMs, roundSize } from './timing.js';

const $ = (id) => document.getElementById(id);

/** The test hook: a plain object kept up to date (see client/js/README.md). */
const sgp = {
  role: null,
  room: null,
  status: 'Loading…',
  params: null,
  sync: { offset_us: null, delay_us: null },
  rounds: [],
  key: null,
  errors: [],
  // Extras, handy for people and tests alike.
  connected: false,
  running: false,
  peers: { alice: false, bob: false, observers: 0 },
  confirm: { state: 'pending', alice: null, bob: null },
  timing: null,
  calibration: null, // the measurement the default tolerance comes from (the quietest taken)
  calibrations: [], // a summary of every one taken
  calibrationDone: false, // no more will be taken
};
window.sgpState = sgp;
/** For people debugging timing: the last closed rounds as the worker reported them. */
window.sgpDebug = { rounds: [] };

const ui = {
  view: 'landing',
  joining: null, // {room, observer} while a join/create is on its way
  lastJoin: null, // what to reconnect to
  session: null,
  strength: 0,
  keptTotal: 0,
  window: null, // {start, end} on the page's clock (ms, performance.now()) while a round runs
  roundPct: 0,
  roundText: '',
  tolEdited: false,
  calibrating: false, // the Create button waits for the jitter measurement
  calibStarted: false,
  tick: null,
  alert: null, // {text, rejoin}
  gaveUp: false,
  createdHere: false, // this page created the room it is in // this page gave up the last session (too many failures)
  focusTo: null, // an element id to focus after the next render (view changes)
  recordRounds: 0, // rounds in this page's record (closed rounds it posted in)
  // Per closed round ("session/round"): its `round` message and the spans known to be left
  // out of it (see roundState), so that its picture can be drawn again when they change.
  pictures: new Map(),
  records: new Map(), // id → resolve, for sgpRecord()
  recordId: 0,
};

const peerOf = (role) => (role === 'alice' ? 'bob' : role === 'bob' ? 'alice' : null);
const isPoster = () => sgp.role === 'alice' || sgp.role === 'bob';
const cap = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const pageNowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

function setStatus(text) {
  sgp.status = text;
}

/** Codes of errors that are this page's own bugs (not the server's refusals or the network):
 *  they also go to the console, so that browser tests fail on them. */
const PAGE_FAULTS = new Set(['page', 'client', 'bad_json', 'unknown']);
let errorSeq = 0;

/** Notes an error in sgpState.errors (`quiet`: expected and not shown, kept for people
 *  debugging). `seq` counts every error the page ever noted. */
function addError(code, message, quiet = false) {
  sgp.errors.push({ code, message, at: new Date().toISOString(), quiet, seq: ++errorSeq });
  if (sgp.errors.length > 100) sgp.errors.shift();
  if (PAGE_FAULTS.has(code)) console.error(`sgp page error (${code}): ${message}`);
}

// ---------------------------------------------------------------------------------------
// The worker.

let worker = null;
let workerReady;
const ready = new Promise((r) => {
  workerReady = r;
});

function command(c) {
  ready.then(() => worker && worker.postMessage(c));
}

function startWorker() {
  try {
    worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  } catch (e) {
    fatal(`This browser cannot run the page's background worker (${e.message}). A recent Chrome, Edge, Firefox or Safari can.`);
    return;
  }
  worker.onmessage = (ev) => {
    try {
      onWorker(ev.data);
    } catch (e) {
      addError('page', `${ev.data && ev.data.type}: ${e && e.stack ? e.stack : e}`);
    }
    render();
  };
  worker.onerror = (ev) => {
    fatal(`The page's background worker failed: ${ev.message || 'unknown error'}. Reload the page.`);
    render();
  };
}

function fatal(text) {
  addError('page', text);
  setStatus(text);
  ui.alert = { text, rejoin: false };
}

// ---------------------------------------------------------------------------------------
// Worker events → state.

function onWorker(m) {
  switch (m.type) {
    case 'hello':
      workerReady();
      command({ cmd: 'measure' });
      return;
    case 'timing':
      sgp.timing = m;
      applyToleranceDefault();
      maybeCalibrate();
      return;
    case 'calibration':
      if (m.id != null) {
        // Asked for by sgpCalibrate(): reported, not applied.
        const resolve = ui.records.get(m.id);
        ui.records.delete(m.id);
        if (resolve) resolve(m);
        return;
      }
      return onCalibration(m);
    case 'conn':
      return onConn(m);
    case 'joined':
      return onJoined(m);
    case 'peer':
      return onPeer(m);
    case 'sync':
      sgp.sync = { offset_us: m.offset_us, delay_us: m.delay_us };
      return;
    case 'phase':
      return onPhase(m);
    case 'start':
      return onStart(m);
    case 'round':
      return onRound(m);
    case 'key':
      return onKey(m);
    case 'key_void':
      return onKeyVoid(m);
    case 'dropped':
      return onDroppedSpans(m);
    case 'confirm':
      sgp.confirm[m.role] = m.tag;
      if (sgp.key && m.role !== sgp.role) sgp.key.peer_tag = m.tag;
      return;
    case 'confirmed':
      return onConfirmed(m);
    case 'aborted':
      return onAborted(m);
    case 'stopped':
      return onStopped(m);
    case 'reset':
      clearRoom();
      sgp.running = false;
      setStatus('The room was reset: the board and any key are gone. Press Start for a new session.');
      return;
    case 'error':
      return onError(m);
    case 'left':
      return;
    case 'record': {
      const resolve = ui.records.get(m.id);
      ui.records.delete(m.id);
      if (resolve) resolve(m.record);
      return;
    }
    default:
      addError('page', `unknown worker message ${m.type}`);
  }
}

function onConn(m) {
  if (m.state === 'connecting') {
    sgp.connected = false;
    if (ui.view === 'landing') setStatus('Connecting to the server…');
    return;
  }
  if (m.state === 'open') {
    sgp.connected = true;
    return;
  }
  // closed
  const was = sgp.connected;
  sgp.connected = false;
  sgp.running = false;
  stopTicker();
  if (m.leaving) return;
  const why = m.reason ? `: ${m.reason}` : '';
  const code = m.code ? ` (WebSocket close code ${m.code}${why})` : '';
  if (ui.view === 'room') {
    const room = ui.lastJoin ? ` room ${ui.lastJoin.room}` : '';
    const text = ui.joining
      ? `Could not reach the server at ${location.host}: is sgp serve still running there? Press Reconnect to try again${code}.`
      : `Lost the connection to the server at ${location.host}: it stopped or restarted, or the network dropped. ` +
        `Any session in progress stopped. Press Reconnect to join${room} again${code}.`;
    ui.joining = null;
    setStatus(text);
    ui.alert = { text, rejoin: true };
  } else {
    const text = was || ui.joining === null
      ? `The server closed the connection${code}.`
      : `Could not reach the server at ${location.host}${code}. Is sgp serve running?`;
    setStatus(text);
    ui.alert = { text, rejoin: false };
    ui.joining = null;
    maybeCalibrate();
  }
  addError('connection', `closed${code}`);
}

function onJoined(m) {
  const sameRoom = sgp.room === m.room;
  sgp.role = m.role;
  sgp.room = m.room;
  sgp.params = m.params;
  sgp.peers = { ...m.peers };
  sgp.running = false;
  if (!sameRoomAsLast(m.room)) ui.createdHere = !!(ui.joining && ui.joining.create);
  ui.lastJoin = { room: m.room, observer: m.role === 'observer' };
  ui.joining = null;
  ui.alert = null;
  ui.view = 'room';
  ui.focusTo = 'room-title';
  ui.recordRounds = 0; // the worker starts a new record at every `joined`
  if (!sameRoom) clearRoom();
  const url = `/?room=${encodeURIComponent(m.room)}${m.role === 'observer' ? '&watch' : ''}`;
  history.replaceState(null, '', url);
  if (m.role === 'observer') {
    setStatus(`Watching room ${m.room} as the eavesdropper: you see the board and the tags, never who posted what. Waiting for a round.`);
  } else {
    setStatus(idleSentence());
  }
  renderLegend();
}

const sameRoomAsLast = (room) => !!ui.lastJoin && ui.lastJoin.room === room;

/** What a poster with no session running should read. */
function idleSentence() {
  const peer = peerOf(sgp.role);
  if (!sgp.peers[peer]) return `Waiting for a peer: send them the link (or the code ${sgp.room}).`;
  return `${cap(peer)} is here. Press Start when you are both ready.`;
}

function onPeer(m) {
  if (m.role === 'observer') {
    sgp.peers.observers = Math.max(0, sgp.peers.observers + (m.event === 'joined' ? 1 : -1));
    return;
  }
  sgp.peers[m.role] = m.event === 'joined';
  if (sgp.role === 'observer') {
    setStatus(`${cap(m.role)} ${m.event === 'joined' ? 'joined' : 'left'} the room.`);
    return;
  }
  if (m.event === 'joined') {
    if (!sgp.running) setStatus(`${cap(m.role)} joined. Press Start when you are both ready.`);
  } else {
    peerLeft(m.role);
  }
}

function peerLeft(role) {
  const who = role || peerOf(sgp.role);
  sgp.running = false;
  stopTicker();
  const kept = sgp.key && sgp.key.confirmed ? ' Your confirmed key stays below.' : ' The session stopped.';
  setStatus(`The peer left (${who} closed the page or left the room).${kept} Send the link to someone; once they join, press Start.`);
}

function onPhase(m) {
  const peer = peerOf(sgp.role);
  const retry = m.failures > 0 ? ` (${m.failures} dropped in a row; it gives up after ${m.give_up_s} s without one that counts)` : '';
  switch (m.phase) {
    case 'syncing':
      sgp.running = true;
      setStatus(m.why === 'start' ? 'Syncing clocks with the server…' : `Syncing clocks again before another try${retry}…`);
      return;
    case 'waiting':
      if (m.next) {
        setStatus(`Round ${m.round} done: ${m.strength} of ${sgp.params.target_bits} bits so far. Waiting for the next round…`);
      } else if (m.why && m.why !== 'start') {
        const what = m.why === 'desync' ? 'a dropped round' : m.why;
        setStatus(`Trying again after ${what}${retry}: waiting for the next round…`);
      } else if (!sgp.peers[peer]) {
        setStatus(`Ready. Waiting for a peer to join and press Start${retry}.`);
      } else {
        setStatus(`Ready. Waiting for ${peer} to press Start${retry}.`);
      }
      return;
    case 'posting':
      ui.window = windowOnPage(m.start_local_us, m.end_local_us, m.now_us);
      startTicker();
      setStatus(`Round ${m.round}: posting at random times (about ${Math.round(sgp.params.rate_hz)} posts a second each)…`);
      return;
    case 'closing':
      setStatus(`Round ${m.round}: window closed, waiting for the board…`);
      return;
    case 'confirming':
      setStatus(`Key derived: checking with ${peer} that both hold the same one…`);
      return;
    default:
  }
}

/** The worker's clock and ours differ by a constant: map its window onto performance.now(). */
function windowOnPage(startLocalUs, endLocalUs, workerNowUs) {
  if (startLocalUs == null) return null;
  const delta = pageNowUs() - workerNowUs;
  const toPerf = (us) => (us + delta) / 1000 - performance.timeOrigin;
  return { start: toPerf(startLocalUs), end: toPerf(endLocalUs) };
}

function onStart(m) {
  ui.gaveUp = false;
  if (m.session !== ui.session) {
    // A new session: earlier keys and tags are gone.
    ui.session = m.session;
    sgp.key = null;
    sgp.confirm = { state: 'pending', alice: null, bob: null };
    ui.strength = 0;
    ui.keptTotal = 0;
  }
  ui.roundPct = 0;
  ui.roundText = `round ${m.round}`;
  if (isPoster()) {
    sgp.running = true;
  } else {
    ui.window = windowOnPage(m.start_local_us, m.end_local_us, m.now_us);
    startTicker();
    setStatus(`Round ${m.round} is running: the posters are posting.`);
  }
}

const roundKey = (session, round) => `${session}/${round}`;

/** Spans as one ascending list of disjoint [from, to] (both ends inclusive): overlapping or
 *  touching ones merged, so that nothing in it says which poster announced which. */
function unionSpans(spans) {
  const sorted = spans.map((x) => [x[0], x[1]]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  const out = [];
  for (const x of sorted) {
    const last = out[out.length - 1];
    if (last && x[0] <= last[1]) last[1] = Math.max(last[1], x[1]);
    else out.push(x);
  }
  return out;
}

/** Positions (in board order) of the entries the sift keeps that `spans` leave out. */
function leftOutPos(m, spans) {
  if (!spans.length) return [];
  return m.kept_pos.filter((k) => spans.some((x) => x[0] <= m.board[k].t_us && m.board[k].t_us <= x[1]));
}

/**
 * What a round's picture and its sgpState entry show: the spans left out around late posts
 * (a poster's own and its peer's, or, for an observer, those the room relayed) — none once
 * the round is dropped whole, since nothing of it counts — and the kept entries that count.
 */
function roundState(pic) {
  const spans = pic.whole ? [] : pic.spans;
  const out = leftOutPos(pic.m, spans);
  return { spans, leftOut: out.length, kept: pic.m.kept_pos.length - out.length };
}

/** The newest sgpState.rounds entry of a round. */
const roundEntry = (session, round) => [...sgp.rounds].reverse().find((x) => x.round === round && (!session || x.session === session));

function applyRoundState(entry, pic) {
  const st = roundState(pic);
  entry.kept = st.kept;
  entry.spans = st.spans;
  entry.left_out = st.leftOut;
  return st;
}

function onRound(m) {
  if (m.update) return onRoundUpdate(m);
  stopTicker();
  ui.roundPct = 100;
  const pic = { m, spans: m.observer ? [] : unionSpans([...(m.spans || []), ...(m.peer_spans || [])]), whole: false };
  ui.pictures.set(roundKey(m.session, m.round), pic);
  // The record and sgpState keep every round; the pictures' data only as long as a picture may be.
  while (ui.pictures.size > MAX_PICTURES + 10) ui.pictures.delete(ui.pictures.keys().next().value);
  const entry = {
    session: m.session,
    round: m.round,
    n: m.board.length,
    kept: 0,
    dropped: false,
    sent_us: m.observer ? [] : m.sent_us,
  };
  const st = applyRoundState(entry, pic);
  if (!m.observer) {
    entry.mine = m.desync ? null : m.mine.length;
    entry.a = m.desync ? null : m.a;
    entry.desync = m.desync;
    entry.timing = m.timing;
    ui.recordRounds++;
  } else {
    entry.window_known = m.window_known;
  }
  sgp.rounds.push(entry);
  window.sgpDebug.rounds.push(m);
  if (window.sgpDebug.rounds.length > 50) window.sgpDebug.rounds.shift();
  drawRound(pic);
  if (m.observer) {
    ui.keptTotal += st.kept;
    setStatus(`Round ${m.round} closed: ${m.board.length} entries on the board, ${m.kept_pos.length} kept by the public sift.`);
    return;
  }
  if (m.desync && m.desync.late) {
    const what = m.desync.skipped > 0 ? `${m.desync.skipped} post${m.desync.skipped > 1 ? 's' : ''} had to be skipped` : `a post left ${(m.desync.late_us / 1000).toFixed(1)} ms late`;
    setStatus(`Round ${m.round} is dropped: this page fell behind its own posting schedule (${what}; a busy machine). ` +
      'A stretch in which one poster falls silent would tell an eavesdropper whose posts are whose, so such a round gives no bits. Another round follows.');
    return;
  }
  if (m.desync) {
    const tol = sgp.params ? ` (${sgp.params.tolerance_ms} ms)` : '';
    setStatus(`Round ${m.round} is out of sync for me: ${m.desync.unmatched} of my ${m.desync.total} posts reached the server further from ` +
      `when they were expected than the tolerance${tol} allows, so I cannot be sure which posts are mine. The round is dropped and another one follows.`);
    return;
  }
  ui.strength = m.ledger.strength;
  ui.keptTotal = m.ledger.n;
}

/** A poster's round derived again with the spans its peer left out (worker.js onDropped). */
function onRoundUpdate(m) {
  // (The round's picture data may be gone from the page already; the counts are not.)
  const pic = ui.pictures.get(roundKey(m.session, m.round)) || { m, spans: [], whole: false };
  const entry = roundEntry(m.session, m.round);
  pic.m = m;
  pic.spans = unionSpans([...(m.spans || []), ...(m.peer_spans || [])]);
  if (entry) {
    applyRoundState(entry, pic);
    entry.mine = m.mine.length;
    entry.a = m.a;
  }
  const k = window.sgpDebug.rounds.findLastIndex((x) => x.session === m.session && x.round === m.round);
  if (k >= 0) window.sgpDebug.rounds[k] = m;
  redrawRound(pic);
  ui.strength = m.ledger.strength;
  ui.keptTotal = m.ledger.n;
  const out = m.left_out.length;
  setStatus(`Round ${m.round}: a post of ${peerOf(sgp.role)}'s missed the tolerance, so both of us leave out the kept entries around it ` +
    `(${out} of this round in all): ${m.ledger.strength} of ${sgp.params.target_bits} bits so far.`);
}

/** An observer hears that spans of a round were left out (never whose they were). */
function onDroppedSpans(m) {
  const pic = ui.pictures.get(roundKey(m.session, m.round));
  const entry = roundEntry(m.session, m.round);
  if (!pic || !entry || pic.whole) return;
  const before = entry.kept;
  pic.spans = unionSpans([...pic.spans, ...m.spans]);
  const st = applyRoundState(entry, pic);
  ui.keptTotal += st.kept - before;
  redrawRound(pic);
  setStatus(`Round ${m.round}: a poster left out ${st.leftOut} entr${st.leftOut === 1 ? 'y' : 'ies'} around a late post; ${st.kept} kept entries count.`);
}

/** The worker's key no longer holds: the peer's spans took the session below the target. */
function onKeyVoid(m) {
  if (sgp.key && !sgp.key.confirmed && sgp.key.session === m.session && sgp.key.round === m.round) {
    sgp.key = null;
    sgp.confirm = { state: 'pending', alice: null, bob: null };
  }
  ui.strength = m.strength;
}

function onKey(m) {
  sgp.key = {
    key: m.key,
    strength: m.ledger.strength,
    n: m.ledger.n,
    a: m.ledger.a,
    log2_binom: m.ledger.log2_binom,
    tag_bits: m.ledger.tag_bits,
    margin_bits: m.ledger.margin_bits,
    bits: m.bits,
    tag: m.tag,
    peer_tag: null,
    rounds: m.rounds,
    per_round: m.per_round,
    session: m.session,
    round: m.round,
    confirmed: false,
    state: 'pending',
  };
  sgp.confirm = { state: 'pending', alice: null, bob: null };
}

function onConfirmed(m) {
  if (isPoster() && m.ours) {
    const state = m.mine_ok ? 'match' : 'mismatch';
    sgp.confirm.state = state;
    if (sgp.key) {
      sgp.key.state = state;
      sgp.key.confirmed = state === 'match';
    }
    if (state === 'mismatch') {
      setStatus('The confirmation tags differ, so the two keys differ: this key is discarded and a new session starts.');
    }
    return;
  }
  sgp.confirm.state = m.match ? 'match' : 'mismatch';
  if (!isPoster()) {
    setStatus(m.match
      ? 'Both posters confirmed the same key (their tags match). You saw every board and both tags, and still cannot compute it.'
      : 'The posters\' tags differ: their keys differ and they start again.');
  }
}

function onAborted(m) {
  switch (m.reason) {
    case 'desync': {
      const r = roundEntry(m.session, m.round);
      const before = r ? r.kept : 0;
      if (r) r.dropped = true;
      // Dropped whole: the spans left out of it no longer matter (and which of them reached the
      // room depended on which message the server read first), so everyone shows its sift.
      const pic = ui.pictures.get(roundKey(m.session ?? (r && r.session), m.round));
      if (pic && r && !pic.whole) {
        pic.whole = true;
        applyRoundState(r, pic);
        redrawRound(pic);
      }
      markDropped(m.session, m.round);
      if (isPoster()) {
        // A key derived from the dropped round is void (its confirm was refused or never matched).
        if (sgp.key && !sgp.key.confirmed && sgp.key.round === m.round && sgp.key.session === m.session) {
          sgp.key = null;
          sgp.confirm = { state: 'pending', alice: null, bob: null };
        }
        if (typeof m.strength === 'number') ui.strength = m.strength;
        if (typeof m.kept_total === 'number') ui.keptTotal = m.kept_total;
      } else if (r) {
        ui.keptTotal -= before;
      }
      const which = m.round == null ? 'The last round' : `Round ${m.round}`;
      const tol = sgp.params ? ` (${sgp.params.tolerance_ms} ms)` : '';
      // A poster whose session has stopped (it gave up, or its peer did) keeps saying so: a
      // drop that crossed that on the way changes nothing.
      if (isPoster() && !sgp.running) return;
      if (isPoster()) {
        setStatus(`${which} was dropped: a post reached the server further from when it was expected than this room's tolerance${tol} allows, ` +
          'so whose posts are whose was not certain. Nothing of it is used; another round follows.');
      } else {
        setStatus(`${which} was dropped: a poster found it out of sync (a post further off than the tolerance${tol}). Another round follows.`);
      }
      return;
    }
    case 'peer_left':
      if (isPoster()) peerLeft(null);
      else setStatus('A poster left (peer left): the session stopped.');
      return;
    case 'idle':
      sgp.running = false;
      setStatus('The server closed the room after a long time without activity. Leave and create a new one.');
      return;
    case 'disagree':
      setStatus('One side had enough bits for a key and the other did not: starting a new session.');
      return;
    case 'gave_up':
      // Our own `abort {gave_up}` comes back to us too: we said it already (onStopped).
      if (ui.gaveUp) return;
      setStatus(isPoster()
        ? `The peer gave up after too many rounds in a row were dropped. Press Start to try again; if it keeps happening, ${tooTight()}`
        : 'A poster gave up after too many rounds in a row were dropped.');
      return;
    default:
      setStatus(`The session was aborted (${m.reason}).`);
  }
}

/**
 * What to do about a room whose rounds keep falling out of sync: a tolerance below this page's
 * measured default is simply too tight; at or above it, the machine is busier now than when
 * the page measured, and only a wider tolerance (or a quieter moment) helps.
 */
function tooTight() {
  const tol = sgp.params ? sgp.params.tolerance_ms : null;
  const d = pageTolerance().ms;
  if (tol == null || tol < d) {
    return `this room's tolerance${tol == null ? '' : ` (${tol} ms)`} is too tight for these browsers: create a room with the default tolerance.`;
  }
  return `these browsers are busier now than when this page measured them, too busy for this room's tolerance (${tol} ms): create a room with a wider one, or try again when the machine is quieter.`;
}

function onStopped(m) {
  sgp.running = false;
  stopTicker();
  switch (m.reason) {
    case 'key':
      setStatus(`Key confirmed: both sides hold the same ${sgp.key ? sgp.key.strength : ''}-bit key.`.replace('same -bit', 'same'));
      return;
    case 'gave_up': {
      if (m.last == null) return; // the peer gave up: onAborted said so
      ui.gaveUp = true;
      const last = m.last === 'desync' ? 'a round out of sync' : m.last === 'confirmation mismatch' ? 'the two keys differed' : m.last;
      const count = m.in_a_row ? `${m.failures} rounds or sessions in a row failed, over ${m.stuck_s} s` : `${m.total_failures} rounds or sessions failed`;
      setStatus(`Gave up after ${count} (the last: ${last}). Press Start to try again; if it keeps happening, ${tooTight()}`);
      return;
    }
    case 'sync_failed':
      setStatus(`Could not sync clocks with the server: ${m.message}.`);
      return;
    case 'peer_left':
      peerLeft(null);
      return;
    default:
      // reset, idle, user: onAborted / reset already said it
  }
}

/** A refusal of `join`/`create` in words a person understands. */
function joinRefusal(code, message, room) {
  const r = room ? ` ${room}` : '';
  switch (code) {
    case 'no_such_room':
      return `There is no room${r} on this server. Check the code (it looks like ABCDE-FGHJK), or ask for a new link: ` +
        'a room ends when everyone has left it, after 10 minutes without activity, or when the server restarts.';
    case 'room_full':
      return `Room${r} already has both of its posters. You can still watch it as the eavesdropper (Watch).`;
    case 'bad_field':
      return `The server did not accept these settings: ${message}.`;
    default: {
      const msg = String(message);
      return /[.!?]$/.test(msg) ? msg : `${msg}.`;
    }
  }
}

function onError(m) {
  addError(m.code, m.message, !!m.quiet);
  if (m.quiet) return;
  if (m.code === 'connection' && !sgp.connected) return; // the lost connection is already said
  if (PAGE_FAULTS.has(m.code) || m.code === 'connection') {
    setStatus(`Something went wrong on this page: ${m.message}. Reload the page if it stops moving.`);
    return;
  }
  if (ui.joining) {
    // The server turned our create/join away: back to the landing form, saying why.
    const room = ui.joining.room;
    const text = joinRefusal(m.code, m.message, room);
    command({ cmd: 'leave' });
    backToLanding();
    ui.alert = { text, rejoin: false };
    setStatus(text);
    if (room) $('join-code').value = room;
    ui.focusTo = room ? 'join-code' : 'landing-title';
    maybeCalibrate();
    return;
  }
  if (ui.view === 'landing') {
    const text = joinRefusal(m.code, m.message, null);
    ui.alert = { text, rejoin: false };
    setStatus(text);
    return;
  }
  setStatus(`The server refused a message (${m.code}): ${m.message}.`);
}

function clearRoom() {
  sgp.rounds = [];
  ui.pictures.clear();
  sgp.key = null;
  sgp.confirm = { state: 'pending', alice: null, bob: null };
  ui.session = null;
  ui.strength = 0;
  ui.keptTotal = 0;
  ui.roundPct = 0;
  ui.roundText = '';
  ui.window = null;
  stopTicker();
  const tl = $('timeline');
  tl.replaceChildren($('timeline-empty') || emptyNote());
}

function emptyNote() {
  const p = document.createElement('p');
  p.id = 'timeline-empty';
  p.className = 'text-body-secondary small mb-0';
  p.textContent = "Each round's board appears here once it closes.";
  return p;
}

// ---------------------------------------------------------------------------------------
// Timeline.

/** Round pictures kept on the page (newest first); shown in #timeline-keep and put on
 * #timeline as data-keep (which the browser tests read). */
const MAX_PICTURES = 40;
$('timeline').dataset.keep = String(MAX_PICTURES);
$('timeline-keep').textContent = String(MAX_PICTURES);

/** One round's figure: its picture (timeline.js) and caption. */
function roundFigure(pic) {
  const m = pic.m;
  const observer = m.observer;
  const st = roundState(pic);
  const svg = roundSvg({
    session: m.session,
    round: m.round,
    board: m.board,
    t_start_us: m.t_start_us,
    t_end_us: m.t_end_us,
    guard_us: m.guard_us,
    kept_pos: m.kept_pos,
    spans: st.spans,
    // A round out of sync for me: who posted what is unknown, drawn like the public view.
    mine: observer || m.desync ? null : m.mine,
    view: observer ? 'observer' : 'poster',
    peer: peerOf(sgp.role),
  });
  const fig = document.createElement('figure');
  fig.dataset.session = m.session;
  fig.dataset.round = m.round;
  const cap = document.createElement('figcaption');
  let text = `Session ${m.session.slice(0, 4)}… round ${m.round} · ${m.board.length} entries · ${st.kept} kept`;
  if (st.leftOut > 0) text += ` · ${st.leftOut} entr${st.leftOut === 1 ? 'y' : 'ies'} left out around ${st.spans.length === 1 ? 'a late post' : 'late posts'}`;
  if (!observer && m.desync) text += ' · out of sync for me: dropped';
  else if (!observer) text += ` · ${m.mine.length} mine · ${st.kept - m.mine.length} ${peerOf(sgp.role)}'s`;
  if (observer && !m.window_known) text += ' · window unknown (joined mid-round)';
  cap.textContent = text;
  fig.append(svg, cap);
  if ((!observer && m.desync) || pic.whole) {
    fig.dataset.dropped = 'true';
    svg.dataset.dropped = 'true';
    if (!m.desync) cap.textContent += ' · dropped (out of sync)';
  }
  return fig;
}

function drawRound(pic) {
  const fig = roundFigure(pic);
  const tl = $('timeline');
  $('timeline-empty')?.remove();
  tl.prepend(fig); // newest first
  // Only the newest pictures stay on the page: each is a few hundred SVG elements, and a page
  // that kept hundreds of them laid out would slow the next rounds' posts (the record, and
  // sgpState.rounds, keep every round).
  while (tl.children.length > MAX_PICTURES) tl.lastElementChild.remove();
}

/** Draws a round's picture again in its place (its spans changed), if it is still shown. */
function redrawRound(pic) {
  const { session, round } = pic.m;
  for (const fig of $('timeline').querySelectorAll('figure')) {
    if (fig.dataset.session === String(session) && fig.dataset.round === String(round)) {
      fig.replaceWith(roundFigure(pic));
      return;
    }
  }
}

/** Marks the newest picture of that round as dropped (newest first in the timeline). */
function markDropped(session, round) {
  for (const fig of $('timeline').querySelectorAll('figure')) {
    if (String(fig.dataset.round) === String(round) && (!session || fig.dataset.session === session)) {
      if (fig.dataset.dropped !== 'true') {
        fig.dataset.dropped = 'true';
        fig.querySelector('svg').dataset.dropped = 'true';
        fig.querySelector('figcaption').textContent += ' · dropped (out of sync)';
      }
      return;
    }
  }
}

function renderLegend() {
  const observer = sgp.role === 'observer';
  const box = $('legend');
  box.replaceChildren();
  box.append(observer ? 'What the eavesdropper knows: each entry\'s time and label (A above the line, B below).' : 'Each entry at its board time; A labels above the line, B below.');
  for (const [cls, text] of legend(observer, peerOf(sgp.role))) {
    const sw = document.createElement('span');
    sw.className = `swatch swatch-${cls}`;
    sw.setAttribute('aria-hidden', 'true');
    box.append(sw, text);
  }
}

// ---------------------------------------------------------------------------------------
// Round progress ticker (time through the window).

function startTicker() {
  stopTicker();
  if (!ui.window) return;
  ui.tick = setInterval(() => {
    updateRoundPct();
    renderProgress();
  }, 100);
  updateRoundPct();
}

function stopTicker() {
  if (ui.tick) clearInterval(ui.tick);
  ui.tick = null;
}

function updateRoundPct() {
  const w = ui.window;
  if (!w) return;
  const f = (performance.now() - w.start) / (w.end - w.start);
  ui.roundPct = Math.max(0, Math.min(100, Math.round(f * 100)));
}

// ---------------------------------------------------------------------------------------
// Tolerance default.

/**
 * Measurements of this browser's message jitter (each ~1.6 s) taken on the landing view, one
 * after the other. Measured (BENCHMARKS.md, "Web client"): the seconds after a page loads are
 * far noisier than later — 20-80 ms stalls in most first measurements, p90 up to 40 ms, while
 * the rounds made later see p90 0.3-0.4 ms — so the default comes from the quietest of them
 * (the one with the least expected time per bit). Create waits for the first that says
 * something (timing.js `unsure` otherwise); the others refine the default while the person
 * reads the page, unless they typed a tolerance. Leaving the landing view stops them.
 */
const CALIBRATION_TRIES = 3;

function maybeCalibrate() {
  if (sgp.calibrationDone || ui.calibStarted || ui.view !== 'landing' || ui.joining || !sgp.timing) return;
  ui.calibrating = !ui.calibs || !ui.calibs.some(usefulCalibration);
  ui.calibStarted = true;
  command({ cmd: 'calibrate' });
  // Never let a lost answer keep Create disabled.
  const asked = (ui.calibs || []).length;
  setTimeout(() => {
    if (ui.calibStarted && (ui.calibs || []).length === asked) {
      ui.calibStarted = false;
      ui.calibrating = false;
      sgp.calibrationDone = true;
      applyToleranceDefault();
      render();
    }
  }, 6000);
}

const usefulCalibration = (c) => c.ok && !defaultToleranceFor(c).unsure;
const defaultToleranceFor = (c) => {
  const t = sgp.timing;
  return defaultTolerance(t ? t.isolated : !!window.crossOriginIsolated, t ? t.precision_us : null, c);
};

function onCalibration(m) {
  ui.calibStarted = false;
  if (!m.ok && /stopped/.test(m.message || '')) return; // left the landing view meanwhile
  ui.calibs = [...(ui.calibs || []), m];
  window.sgpDebug.calibrations = ui.calibs; // every measurement in full, for benchmarks
  // The quietest measurement so far: the least expected time per bit (failed and unsure
  // ones last, the latest of them first).
  const rank = (c) => {
    if (!c.ok) return [2, 0];
    const d = defaultToleranceFor(c);
    return d.unsure ? [1, 0] : [0, d.ms_per_bit];
  };
  const ranked = [...ui.calibs].reverse().sort((x, y) => rank(x)[0] - rank(y)[0] || rank(x)[1] - rank(y)[1]);
  sgp.calibration = ranked[0];
  sgp.calibrations = ui.calibs.map((c) => (c.ok ? { samples: c.samples, dev_p90_us: c.dev_p90_us, dev_p99_us: c.dev_p99_us, dev_p996_us: c.dev_p996_us } : { ok: false }));
  if (ui.calibrating && ui.calibs.some(usefulCalibration)) ui.calibrating = false;
  if (ui.calibs.length < CALIBRATION_TRIES && ui.view === 'landing' && !ui.joining) {
    maybeCalibrate();
  } else {
    ui.calibrating = false;
    sgp.calibrationDone = true;
  }
  applyToleranceDefault();
}

/** The tolerance this page would give a room it creates: {ms, widened, isolated, precision}. */
function pageTolerance() {
  const t = sgp.timing;
  const isolated = t ? t.isolated : !!window.crossOriginIsolated;
  const precision = t ? t.precision_us : null;
  return { ...defaultTolerance(isolated, precision, sgp.calibration), isolated, precision };
}

function applyToleranceDefault() {
  const c = sgp.calibration;
  const d = pageTolerance();
  if (!ui.tolEdited) $('tolerance').value = String(d.ms);
  const p = d.precision != null ? `${d.precision} µs` : 'coarsely';
  const base = d.isolated
    ? `This page is cross-origin isolated, so timers tick every ${p} and the worker sends each post on time: at least ${d.floor} ms.`
    : `This page is not cross-origin isolated (plain http to another machine is not a secure context), so the browser coarsens timers to ${p}: at least ${d.floor} ms, more than the 1 ms of an isolated page.`;
  let measured;
  if (ui.calibrating) measured = ' Measuring how much this browser\'s messages wander…';
  else if (!c) measured = '';
  else if (!c.ok) measured = ` (Could not measure the message jitter: ${c.message}.)`;
  else {
    const spread = `Measured: of ${c.samples} test messages sent like posts, half reached the server within ${(c.dev_series_us ? median(c.dev_series_us) / 1000 : 0).toFixed(2)} ms ` +
      `of the usual delay, 99.6% within ${(c.dev_p996_us / 1000).toFixed(2)} ms.`;
    const share = d.success == null || d.unsure ? '' : ` At ${d.ms} ms, in rounds of ${d.posts} posts each, about ${Math.round(100 * d.success)}% of each round's entries would count:`;
    const why = d.widened
      ? ' the fastest choice on this machine now (a wider tolerance makes each round longer; at a narrower one more posts land too far from where they were expected, and each costs the stretch of its round around it).'
      : ' nothing wider would be faster (a post that lands too far from where it was expected costs only the stretch of its round around it, a stall the round, and a wider tolerance makes every round longer).';
    const unsure = d.unsure
      ? ` This machine was too busy while measuring to judge (no tolerance up to 5 ms would keep most rounds in sync), so the default is the floor, in short rounds of ${d.posts} posts, which a stall spoils the least of.`
      : '';
    measured = ` ${spread}${share}${share ? why : ''}${unsure}`;
  }
  $('tolerance-why').textContent = `Default ${d.ms} ms. ${base}${measured}`;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : 0;
}

// ---------------------------------------------------------------------------------------
// Rendering.

function setText(id, text) {
  const e = $(id);
  if (e.textContent !== text) e.textContent = text;
}

function renderProgress() {
  const rp = $('round-progress');
  rp.setAttribute('aria-valuenow', String(ui.roundPct));
  rp.firstElementChild.style.width = `${ui.roundPct}%`;
  setText('round-text', ui.roundText ? `${ui.roundText}: ${ui.roundPct}%` : '');
  const target = sgp.params ? sgp.params.target_bits : 256;
  const sp = $('session-progress');
  if (sgp.role === 'observer') {
    // Observers cannot know the strength (it needs who posted what); the kept entries are
    // public, and each is worth at most one bit.
    const need = target + (sgp.params ? sgp.params.tag_bits : 32) + 64;
    const k = Math.min(ui.keptTotal, need);
    setText('session-label', 'Kept entries this session');
    sp.setAttribute('aria-valuemax', String(need));
    sp.setAttribute('aria-valuenow', String(k));
    sp.firstElementChild.style.width = `${Math.round((100 * k) / need)}%`;
    setText('session-text', `${ui.keptTotal} kept (a ${target}-bit key needs more than ${need})`);
    return;
  }
  const s = Math.min(ui.strength, target);
  setText('session-label', 'Key strength');
  sp.setAttribute('aria-valuemax', String(target));
  sp.setAttribute('aria-valuenow', String(s));
  sp.firstElementChild.style.width = `${Math.round((100 * s) / target)}%`;
  setText('session-text', `${ui.strength} of ${target} bits · ${ui.keptTotal} kept entries`);
}

function render() {
  renderView();
  applyFocus();
}

function renderView() {
  // Alert
  const al = $('alert');
  al.hidden = !ui.alert;
  if (ui.alert) {
    setText('alert-text', ui.alert.text);
    $('alert-rejoin').hidden = !ui.alert.rejoin;
  }
  $('landing').hidden = ui.view !== 'landing';
  $('room').hidden = ui.view !== 'room';
  const busy = !!ui.joining;
  for (const id of ['join', 'watch']) $(id).disabled = busy;
  // Creating waits for the jitter measurement that sets the default tolerance (~1.5 s).
  $('create').disabled = busy || ui.calibrating;
  setText('create', ui.calibrating ? 'Measuring…' : 'Create room');
  if (ui.view !== 'room') return;

  setText('room-code', sgp.room || '');
  const link = `${location.origin}/?room=${encodeURIComponent(sgp.room || '')}`;
  if ($('room-link').value !== link) $('room-link').value = link;
  setText('role', sgp.role || '');
  const p = sgp.peers;
  const names = [];
  for (const r of ['alice', 'bob']) {
    if (p[r]) names.push(r === sgp.role ? `${r} (you)` : r);
  }
  let peersText = names.length ? `Here: ${names.join(', ')}` : 'No poster here';
  if (p.observers > 0) peersText += `, ${p.observers} observer${p.observers > 1 ? 's' : ''}${sgp.role === 'observer' ? ' (you among them)' : ''}`;
  if (isPoster() && !p[peerOf(sgp.role)]) peersText += ` · waiting for ${peerOf(sgp.role)}`;
  setText('peers', peersText);

  const poster = isPoster();
  const start = $('start');
  start.hidden = !poster;
  // aria-disabled, not disabled: a disabled button loses the keyboard focus it has.
  const startOff = !poster || !sgp.connected || sgp.running;
  start.setAttribute('aria-disabled', String(startOff));
  start.classList.toggle('disabled', startOff);
  setText('start', sgp.running ? 'Running…' : sgp.key && sgp.key.confirmed ? 'Start again' : 'Start');
  renderNotes();
  $('reset').hidden = !poster;
  $('reset').disabled = !poster || !sgp.connected;
  setText('status', sgp.status);
  renderProgress();

  // Clock panel
  setText('clock-offset', sgp.sync.offset_us == null ? '—' : String(sgp.sync.offset_us));
  setText('clock-delay', sgp.sync.delay_us == null ? '—' : String(sgp.sync.delay_us));
  const t = sgp.timing;
  setText('timer-precision', t && t.precision_us != null ? String(t.precision_us) : '—');
  setText('room-tolerance', sgp.params ? String(sgp.params.tolerance_ms) : '—');
  const isolated = t ? t.isolated : !!window.crossOriginIsolated;
  setText('isolation', isolated
    ? `Cross-origin isolated: yes. Timers are precise${t ? ` (${t.precision_us} µs)` : ''} and the worker waits for each post with Atomics.wait, so posts leave on time.`
    : `Cross-origin isolated: no. This page is not a secure, isolated context (plain http to another machine), so the browser coarsens timers${t ? ` to ${t.precision_us} µs` : ''}; rooms created here default to a wider tolerance. Everything still works.`);

  // Result
  const k = sgp.key;
  $('result-poster').hidden = !poster || !k;
  $('result-none').hidden = !!k || (!poster && sgp.confirm.alice !== null);
  setText('result-none', poster ? 'No key yet: it appears once the rounds have earned the target strength.' : 'Observers get no key: only the posters can tell whose posts are whose.');
  if (!k) {
    for (const id of ['key', 'strength', 'ledger-counts', 'ledger-sum', 'ledger-rounds', 'bits']) setText(id, '');
    setText('bits-count', '0');
  } else {
    setText('key', k.key);
    setText('strength', String(k.strength));
    renderLedger(k);
    setText('bits', k.bits);
    setText('bits-count', String(k.bits.length));
  }
  const c = $('confirmed');
  const state = sgp.confirm.state;
  c.dataset.state = state;
  c.hidden = !k && !sgp.confirm.alice && !sgp.confirm.bob && state === 'pending';
  let ctext;
  if (state === 'match') ctext = poster ? 'Confirmed: both tags match, both sides hold this key.' : 'Confirmed: the posters\' tags match.';
  else if (state === 'mismatch') ctext = poster ? 'Mismatch: the tags differ, this key was discarded.' : 'Mismatch: the posters\' tags differ.';
  else ctext = k ? 'Waiting for the peer\'s confirmation tag…' : 'Not confirmed yet.';
  setText('confirmed-text', ctext);
  const tags = [];
  if (sgp.confirm.alice) tags.push(`alice's tag ${sgp.confirm.alice}`);
  if (sgp.confirm.bob) tags.push(`bob's tag ${sgp.confirm.bob}`);
  if (k && !tags.length) tags.push(`my tag ${k.tag}`);
  if (sgp.confirm.alice && sgp.confirm.bob) tags.push(sgp.confirm.alice === sgp.confirm.bob ? 'equal' : 'different');
  setText('tags', tags.join(' · '));

  $('record-box').hidden = !poster || ui.recordRounds === 0;
}

/**
 * The strength ledger. The strength is floor(log2 ∏ C(n_r, a_r)) over the session's rounds
 * that count, not floor(log2 C(n, a)) of the totals: Eve may learn each round's a_r, so every
 * round is worth only its own binomial (docs/protocol.md, "Strength").
 */
function renderLedger(k) {
  const rounds = k.rounds === 1 ? 'round' : 'rounds';
  setText('ledger-counts', `n = ${k.n} kept entries over ${k.rounds} ${rounds}, a = ${k.a} of them alice's.`);
  setText('ledger-sum', `floor(log2 ∏ C(n_r, a_r)) = ${k.log2_binom} − ${k.tag_bits} tag bits − ${k.margin_bits} margin = ${k.strength} bits ` +
    '(each round counts on its own: an eavesdropper may know every round\'s a_r).');
  const per = (k.per_round || []).map((r) => `${r.round}: (${r.n}, ${r.a})`).join(' · ');
  setText('ledger-rounds', per ? `Per round r: (n_r, a_r) = ${per}` : '');
}

const LOOPBACK = /^(localhost|.*\.localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/** The notes beside the room link and under the status: a link that works on this machine
 *  only, and a room whose tolerance is tighter than this page's timers want. */
function renderNotes() {
  const ln = $('link-note');
  const loop = LOOPBACK.test(location.hostname);
  ln.hidden = !loop || !isPoster();
  if (loop) {
    setText('link-note', `This link uses ${location.hostname}, so it opens only on this computer (a second tab is fine). ` +
      'For someone on another machine: start the server with sgp serve --bind 0.0.0.0, open this page at this ' +
      'computer\'s LAN address (the http://… address the server prints, or see ip -4 addr), and create the room there.');
  }
  const tn = $('tolerance-note');
  const mine = pageTolerance();
  const room = sgp.params ? sgp.params.tolerance_ms : null;
  // Not for the page that created the room: its tolerance field said what it chose and why.
  const tight = isPoster() && !ui.createdHere && room !== null && room < mine.ms;
  tn.hidden = !tight;
  if (tight) {
    const why = mine.isolated
      ? `this browser's messages wander more than that (it would pick ${mine.ms} ms)`
      : `this page is not cross-origin isolated (plain http to another machine), so its timers are coarse and it would pick ${mine.ms} ms`;
    setText('tolerance-note', `This room's tolerance is ${room} ms, set by whoever created it, but ${why}. ` +
      'Expect rounds to fall out of sync and be retried: slower, not less safe. For a faster key, ' +
      `create a new room from a page like this one (or with a tolerance of ${mine.ms} ms) and send that link instead.`);
  }
}

/** The poster's record for the eavesdropper audit, as `sgp pair --record` writes it. */
function sgpRecord() {
  return new Promise((resolve) => {
    const id = ++ui.recordId;
    ui.records.set(id, resolve);
    command({ cmd: 'record', id });
  });
}
window.sgpRecord = sgpRecord;

/** A fresh jitter measurement, as the one that sets the default tolerance (for people and
 *  benchmarks measuring this browser; it changes nothing on the page). */
window.sgpCalibrate = () => new Promise((resolve) => {
  const id = ++ui.recordId;
  ui.records.set(id, resolve);
  command({ cmd: 'calibrate', id });
});

async function downloadRecord() {
  const rec = await sgpRecord();
  const blob = new Blob([JSON.stringify(rec)], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `sgp-record-${rec.room}-${rec.role}.json`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  announce(`Record downloaded: ${rec.rounds.length} round${rec.rounds.length === 1 ? '' : 's'}.`);
}

function announce(text) {
  $('announce').textContent = text;
}

/** Moves the keyboard focus where a view change asked for it (after the view is shown). */
function applyFocus() {
  const id = ui.focusTo;
  if (!id) return;
  ui.focusTo = null;
  const e = $(id);
  if (e && !e.closest('[hidden]')) e.focus();
}

// ---------------------------------------------------------------------------------------
// User actions.

function join(room, observer) {
  const code = String(room || '').trim();
  if (!code) {
    $('join-code').classList.add('is-invalid');
    $('join-code').focus();
    return;
  }
  $('join-code').classList.remove('is-invalid');
  ui.alert = null;
  ui.joining = { room: code, observer };
  setStatus(`Joining ${code}…`);
  command({ cmd: 'join', room: code, observer });
  render();
}

function create() {
  const tolEl = $('tolerance');
  const bitsEl = $('target-bits');
  const tol = Number(tolEl.value);
  const bits = Number(bitsEl.value);
  const tolOk = Number.isFinite(tol) && tol >= 0.01 && tol <= 1000;
  const bitsOk = Number.isInteger(bits) && bits >= 1 && bits <= 8192;
  tolEl.classList.toggle('is-invalid', !tolOk);
  bitsEl.classList.toggle('is-invalid', !bitsOk);
  if (!tolOk || !bitsOk) {
    (tolOk ? bitsEl : tolEl).focus();
    return;
  }
  ui.alert = null;
  ui.joining = { create: true };
  setStatus('Creating a room…');
  // Rounds sized for this τ from the same measurement (shorter where posts often run late).
  const d = pageTolerance();
  const posts = tol === d.ms ? d.posts : roundSize(sgp.calibration, tol).posts;
  command({ cmd: 'create', params: { tolerance_ms: tol, target_bits: bits, duration_ms: roundDurationMs(tol, posts) } });
  render();
}

function leave() {
  command({ cmd: 'leave' });
  backToLanding();
  ui.alert = null;
  ui.focusTo = 'landing-title';
  setStatus('You left the room.');
  maybeCalibrate();
  render();
}

/** The landing view, with no room: what leaving (or being turned away) leaves. */
function backToLanding() {
  sgp.role = null;
  sgp.room = null;
  sgp.params = null;
  sgp.running = false;
  sgp.connected = false;
  sgp.peers = { alice: false, bob: false, observers: 0 };
  sgp.sync = { offset_us: null, delay_us: null };
  clearRoom();
  ui.view = 'landing';
  ui.joining = null;
  ui.lastJoin = null;
  ui.recordRounds = 0;
  history.replaceState(null, '', '/');
}

async function copyText(text, button) {
  let ok = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      ok = true;
    }
  } catch {
    ok = false;
  }
  if (!ok) {
    // Plain http on a LAN has no Clipboard API: the old way.
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.style.position = 'fixed';
    ta.style.opacity = '0';
    document.body.append(ta);
    ta.select();
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    ta.remove();
  }
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  button.textContent = ok ? 'Copied' : 'Select and copy by hand';
  announce(ok ? 'Copied.' : 'Could not copy: select the text and copy it by hand.');
  setTimeout(() => {
    button.textContent = label;
  }, 1500);
}

function toggleTheme() {
  const next = document.documentElement.getAttribute('data-bs-theme') === 'dark' ? 'light' : 'dark';
  document.documentElement.setAttribute('data-bs-theme', next);
  try {
    localStorage.setItem('sgp-theme', next);
  } catch {
    // not remembered: fine
  }
  renderTheme();
}

function renderTheme() {
  const dark = document.documentElement.getAttribute('data-bs-theme') === 'dark';
  const b = $('theme');
  // One label, its pressed state says which theme is on.
  b.setAttribute('aria-pressed', String(dark));
}

function wire() {
  $('create-form').addEventListener('submit', (e) => {
    e.preventDefault();
    create();
  });
  $('join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    join($('join-code').value, false);
  });
  $('watch').addEventListener('click', () => join($('join-code').value, true));
  $('tolerance').addEventListener('input', () => {
    ui.tolEdited = true;
  });
  $('start').addEventListener('click', () => {
    if (!isPoster() || sgp.running || !sgp.connected) return;
    sgp.running = true;
    ui.gaveUp = false;
    ui.alert = null;
    setStatus('Syncing clocks with the server…');
    command({ cmd: 'start' });
    render();
  });
  $('reset').addEventListener('click', () => command({ cmd: 'reset' }));
  $('leave').addEventListener('click', leave);
  $('download-record').addEventListener('click', () => {
    downloadRecord().catch((e) => addError('page', `record: ${e.message}`));
  });
  $('copy-link').addEventListener('click', (e) => copyText($('room-link').value, e.currentTarget));
  $('copy-key').addEventListener('click', (e) => copyText($('key').textContent, e.currentTarget));
  $('room-link').addEventListener('focus', (e) => e.target.select());
  $('theme').addEventListener('click', toggleTheme);
  $('alert-close').addEventListener('click', () => {
    ui.alert = null;
    render();
  });
  $('alert-rejoin').addEventListener('click', () => {
    if (ui.lastJoin) join(ui.lastJoin.room, ui.lastJoin.observer);
  });
}

function main() {
  wire();
  renderTheme();
  applyToleranceDefault();
  startWorker();
  const q = new URLSearchParams(location.search);
  const room = q.get('room');
  if (room) {
    $('join-code').value = room;
    join(room, q.has('watch'));
  } else {
    ui.calibrating = true; // until the worker has measured (it starts once it is up)
    setStatus('Create a room, or join one by its code.');
  }
  setTimeout(() => {
    if (ui.calibrating && !ui.calibStarted) {
      ui.calibrating = false; // the worker never came up: do not block Create
      render();
    }
  }, 6000);
  render();
}

main();

// app.js — the page: the landing form (create / join / watch), the room view (status,
// progress, clock panel, key and ledger, confirmation, timeline) and `window.sgpState`, the
// plain object browser tests read. It never touches the socket: worker.js owns the connection,
// the clock sync, the posting schedule and the derivation, and reports events here; this file
// turns them into state and words (client/js/README.md lists the messages).

import { roundSvg, legend } from './timeline.js';
import { defaultTolerance, roundDurationMs } from './timing.js';

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
  calibration: null,
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
};

const peerOf = (role) => (role === 'alice' ? 'bob' : role === 'bob' ? 'alice' : null);
const isPoster = () => sgp.role === 'alice' || sgp.role === 'bob';
const cap = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const pageNowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

function setStatus(text) {
  sgp.status = text;
}

function addError(code, message) {
  sgp.errors.push({ code, message, at: new Date().toISOString() });
  if (sgp.errors.length > 100) sgp.errors.shift();
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
      addError('page', e.message);
      console.error(e);
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
      sgp.calibration = m;
      ui.calibrating = false;
      applyToleranceDefault();
      return;
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
  const code = m.code ? ` (code ${m.code}${why})` : '';
  if (ui.view === 'room') {
    const text = `Lost the connection to the server${code}. Any session in progress stopped; reconnect to join the room again.`;
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
  ui.lastJoin = { room: m.room, observer: m.role === 'observer' };
  ui.joining = null;
  ui.alert = null;
  ui.view = 'room';
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
  const retry = m.failures > 0 ? ` (${m.failures} failed in a row; it gives up after ${m.retries})` : '';
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

function onRound(m) {
  stopTicker();
  ui.roundPct = 100;
  const entry = {
    session: m.session,
    round: m.round,
    n: m.board.length,
    kept: m.kept_pos.length,
    dropped: false,
    sent_us: m.observer ? [] : m.sent_us,
  };
  if (!m.observer) {
    entry.mine = m.desync ? null : m.mine.length;
    entry.desync = m.desync;
    entry.timing = m.timing;
  }
  sgp.rounds.push(entry);
  window.sgpDebug.rounds.push(m);
  if (window.sgpDebug.rounds.length > 50) window.sgpDebug.rounds.shift();
  drawRound(m);
  if (m.observer) {
    ui.keptTotal += m.kept_pos.length;
    setStatus(`Round ${m.round} closed: ${m.board.length} entries on the board, ${m.kept_pos.length} kept by the public sift.`);
    return;
  }
  if (m.desync) {
    setStatus(`Round ${m.round}: out of sync (${m.desync.unmatched} of my ${m.desync.total} posts not where expected on the board); dropping it and retrying.`);
    return;
  }
  ui.strength = m.ledger.strength;
  ui.keptTotal = m.ledger.n;
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
      const r = [...sgp.rounds].reverse().find((x) => x.round === m.round && (!m.session || x.session === m.session));
      if (r) r.dropped = true;
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
        ui.keptTotal -= r.kept;
      }
      if (isPoster()) {
        setStatus(`Round ${m.round ?? ''} dropped: a post was not where expected (clocks out of sync); posting another round.`.replace('Round  ', 'The round '));
      } else {
        setStatus(`Round ${m.round ?? ''} was dropped by a poster (out of sync); another round follows.`.replace('Round  ', 'The round '));
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
      setStatus(isPoster() ? 'The peer gave up after too many failed rounds. Press Start to try again (a larger tolerance helps).' : 'A poster gave up after too many failed rounds.');
      return;
    default:
      setStatus(`The session was aborted (${m.reason}).`);
  }
}

function onStopped(m) {
  sgp.running = false;
  stopTicker();
  switch (m.reason) {
    case 'key':
      setStatus(`Key confirmed: both sides hold the same ${sgp.key ? sgp.key.strength : ''}-bit key.`.replace('same -bit', 'same'));
      return;
    case 'gave_up':
      setStatus(m.message
        ? `Gave up: ${m.message}. Press Start to try again; a room with a larger tolerance makes rounds sturdier.`
        : 'The peer gave up after too many failed rounds. Press Start to try again; a room with a larger tolerance makes rounds sturdier.');
      return;
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

function onError(m) {
  addError(m.code, m.message);
  if (m.quiet) return;
  if (ui.view === 'landing' || ui.joining) {
    ui.joining = null;
    const msg = String(m.message);
    const text = /[.!?]$/.test(msg) ? msg : `${msg}.`;
    ui.alert = { text, rejoin: false };
    setStatus(text);
    command({ cmd: 'leave' });
    maybeCalibrate();
    return;
  }
  if (m.code === 'connection' || m.code === 'client') {
    setStatus(`Something went wrong on this page: ${m.message}.`);
    return;
  }
  setStatus(`The server refused a message (${m.code}): ${m.message}.`);
}

function clearRoom() {
  sgp.rounds = [];
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

function drawRound(m) {
  const observer = m.observer;
  const svg = roundSvg({
    session: m.session,
    round: m.round,
    board: m.board,
    t_start_us: m.t_start_us,
    t_end_us: m.t_end_us,
    guard_us: m.guard_us,
    kept_pos: m.kept_pos,
    // A round out of sync for me: who posted what is unknown, drawn like the public view.
    mine: observer || m.desync ? null : m.mine,
    view: observer ? 'observer' : 'poster',
    peer: peerOf(sgp.role),
  });
  const fig = document.createElement('figure');
  fig.dataset.session = m.session;
  fig.dataset.round = m.round;
  const cap = document.createElement('figcaption');
  let text = `Session ${m.session.slice(0, 4)}… round ${m.round} · ${m.board.length} entries · ${m.kept_pos.length} kept`;
  if (!observer && m.desync) text += ' · out of sync for me: dropped';
  else if (!observer) text += ` · ${m.mine.length} mine · ${m.kept_pos.length - m.mine.length} ${peerOf(sgp.role)}'s`;
  if (observer && !m.window_known) text += ' · window unknown (joined mid-round)';
  cap.textContent = text;
  fig.append(svg, cap);
  if (!observer && m.desync) {
    fig.dataset.dropped = 'true';
    svg.dataset.dropped = 'true';
  }
  const tl = $('timeline');
  $('timeline-empty')?.remove();
  tl.prepend(fig); // newest first
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

/** Measures this browser's message jitter (about 1.5 s) once, from the landing view. */
function maybeCalibrate() {
  if (sgp.calibration || ui.calibStarted || ui.view !== 'landing' || ui.joining || !sgp.timing) return;
  ui.calibrating = true;
  ui.calibStarted = true;
  command({ cmd: 'calibrate' });
  // Never let a lost answer keep Create disabled.
  setTimeout(() => {
    if (ui.calibrating && !sgp.calibration) {
      ui.calibrating = false;
      applyToleranceDefault();
      render();
    }
  }, 6000);
}

function applyToleranceDefault() {
  const t = sgp.timing;
  const c = sgp.calibration;
  const isolated = t ? t.isolated : !!window.crossOriginIsolated;
  const precision = t ? t.precision_us : null;
  const { ms, widened } = defaultTolerance(isolated, precision, c);
  if (!ui.tolEdited) $('tolerance').value = String(ms);
  const p = precision != null ? `${precision} µs` : 'coarsely';
  const base = isolated
    ? `This page is cross-origin isolated, so timers tick every ${p} and the worker sends each post on time: 1 ms is enough on a quiet machine.`
    : `This page is not cross-origin isolated (plain http to another machine is not a secure context), so the browser coarsens timers to ${p}: the 1 ms of an isolated page is widened ×3.`;
  let measured;
  if (ui.calibrating) measured = ' Measuring how much this browser\'s messages wander…';
  else if (!c) measured = '';
  else if (!c.ok) measured = ` (Could not measure the message jitter: ${c.message}.)`;
  else {
    const spread = `Measured: 99.6% of ${c.samples} test messages reached the server within ${(c.dev_p996_us / 1000).toFixed(2)} ms of the usual delay`;
    measured = widened
      ? ` ${spread}, so the default is widened to ${ms} ms (a busy machine: other tabs or programs). One late post spoils a round.`
      : ` ${spread}, which ${ms} ms covers.`;
  }
  $('tolerance-why').textContent = `Default ${ms} ms. ${base}${measured}`;
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
  start.disabled = !poster || !sgp.connected || sgp.running;
  start.textContent = sgp.running ? 'Running…' : sgp.key && sgp.key.confirmed ? 'Start again' : 'Start';
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
    for (const id of ['key', 'strength', 'ledger', 'bits']) setText(id, '');
    setText('bits-count', '0');
  } else {
    setText('key', k.key);
    setText('strength', String(k.strength));
    setText('ledger', `n = ${k.n} kept entries, a = ${k.a} from alice: floor(log2 C(n, a)) ${k.log2_binom} − tag ${k.tag_bits} − margin ${k.margin_bits} = ${k.strength} bits (over ${k.rounds} round${k.rounds === 1 ? '' : 's'})`);
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
  setText('tags', tags.join(' · '));
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
  command({ cmd: 'create', params: { tolerance_ms: tol, target_bits: bits, duration_ms: roundDurationMs(tol) } });
  render();
}

function leave() {
  command({ cmd: 'leave' });
  sgp.role = null;
  sgp.room = null;
  sgp.params = null;
  sgp.running = false;
  sgp.connected = false;
  sgp.peers = { alice: false, bob: false, observers: 0 };
  sgp.sync = { offset_us: null, delay_us: null };
  clearRoom();
  ui.view = 'landing';
  ui.alert = null;
  setStatus('You left the room.');
  history.replaceState(null, '', '/');
  maybeCalibrate();
  render();
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
  b.setAttribute('aria-pressed', String(dark));
  b.textContent = dark ? 'Light mode' : 'Dark mode';
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
    if (!isPoster() || sgp.running) return;
    sgp.running = true;
    ui.alert = null;
    setStatus('Syncing clocks with the server…');
    command({ cmd: 'start' });
    render();
  });
  $('reset').addEventListener('click', () => command({ cmd: 'reset' }));
  $('leave').addEventListener('click', leave);
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

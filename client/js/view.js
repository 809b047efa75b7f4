// view.js — draws the state (state.js) on the page: the landing form's buttons, the room view
// (peers, controls, status, progress, clock panel, key and ledger, confirmation, notes), the
// round's progress ticker, and where the keyboard focus goes.

import { $, sgp, ui, isPoster, peerOf } from './state.js';
import { pageTolerance } from './tolerance.js';
import { roomLink } from './urls.js';

// ---------------------------------------------------------------------------------------
// Round progress ticker (time through the window).

export function startTicker() {
  stopTicker();
  if (!ui.window) return;
  ui.tick = setInterval(() => {
    updateRoundPct();
    renderProgress();
  }, 100);
  updateRoundPct();
}

export function stopTicker() {
  if (ui.tick) clearInterval(ui.tick);
  ui.tick = null;
}

function updateRoundPct() {
  const w = ui.window;
  if (!w) return;
  const f = (performance.now() - w.start) / (w.end - w.start);
  ui.roundPct = Math.max(0, Math.min(100, Math.round(f * 100)));
}

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

export function render() {
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
  renderRoom();
  renderClock();
  renderResult();
}

/** The room card: code, link, who is here, the controls, status, notes and progress. */
function renderRoom() {
  setText('room-code', sgp.room || '');
  const link = sgp.room ? roomLink(location.href, sgp.room) : '';
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
}

/** The Clock card. */
function renderClock() {
  setText('clock-offset', sgp.sync.offset_us == null ? '—' : String(sgp.sync.offset_us));
  setText('clock-delay', sgp.sync.delay_us == null ? '—' : String(sgp.sync.delay_us));
  const t = sgp.timing;
  setText('timer-precision', t && t.precision_us != null ? String(t.precision_us) : '—');
  const tol = ui.roundTolerance ?? (sgp.params ? sgp.params.tolerance_ms : null);
  setText('room-tolerance', tol == null ? '—' : String(tol));
  const isolated = t ? t.isolated : !!window.crossOriginIsolated;
  setText('isolation', isolated
    ? `Cross-origin isolated: yes. Timers are precise${t ? ` (${t.precision_us} µs)` : ''} and the worker waits for each post with Atomics.wait, so posts leave on time.`
    : `Cross-origin isolated: no. This page is not a secure, isolated context (plain http to another machine), so the browser coarsens timers${t ? ` to ${t.precision_us} µs` : ''}; rooms created here default to a wider tolerance. Everything still works.`);
}

/** The Key card: the key and its ledger (posters), the confirmation, the record button. */
function renderResult() {
  const poster = isPoster();
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
      `So this page asks for rounds of at least ${mine.ms} ms, and the room runs the wider ask: a key takes longer, and is no less safe.`);
  }
}

/** Moves the keyboard focus where a view change asked for it (after the view is shown). */
function applyFocus() {
  const id = ui.focusTo;
  if (!id) return;
  ui.focusTo = null;
  const e = $(id);
  if (e && !e.closest('[hidden]')) e.focus();
}

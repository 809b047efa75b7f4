// view.js — draws the state (state.js) on the page: the landing form's buttons, the room view
// (peers, controls, status, progress, clock panel, key and ledger, confirmation, notes), the
// round's progress ticker, and where the keyboard focus goes.

import { $, sgp, ui, isPoster, peerOf } from './state.js';
import { pageTolerance } from './tolerance.js';
import { roomLink } from './urls.js';
import { t } from './i18n.js';

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
  setText('round-text', ui.roundNo != null ? t('progress.round', { round: ui.roundNo, pct: ui.roundPct }) : '');
  const target = sgp.params ? sgp.params.target_bits : 256;
  const sp = $('session-progress');
  if (sgp.role === 'observer') {
    // Observers cannot know the strength (it needs who posted what); the kept entries are
    // public, and each is worth at most one bit.
    const need = target + (sgp.params ? sgp.params.tag_bits : 32) + 64;
    const k = Math.min(ui.keptTotal, need);
    setText('session-label', t('progress.keptLabel'));
    sp.setAttribute('aria-valuemax', String(need));
    sp.setAttribute('aria-valuenow', String(k));
    sp.firstElementChild.style.width = `${Math.round((100 * k) / need)}%`;
    setText('session-text', t('progress.kept', { kept: ui.keptTotal, target, need }));
    return;
  }
  const s = Math.min(ui.strength, target);
  setText('session-label', t('progress.strengthLabel'));
  sp.setAttribute('aria-valuemax', String(target));
  sp.setAttribute('aria-valuenow', String(s));
  sp.firstElementChild.style.width = `${Math.round((100 * s) / target)}%`;
  setText('session-text', t('progress.strength', { strength: ui.strength, target, kept: ui.keptTotal }));
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
    setText('alert-text', t(ui.alert.msg));
    $('alert-rejoin').hidden = !ui.alert.rejoin;
  }
  $('landing').hidden = ui.view !== 'landing';
  $('room').hidden = ui.view !== 'room';
  const busy = !!ui.joining;
  for (const id of ['join', 'watch']) $(id).disabled = busy;
  // Creating waits for the jitter measurement that sets the default tolerance (~1.5 s).
  $('create').disabled = busy || ui.calibrating;
  setText('create', t(ui.calibrating ? 'create.measuring' : 'create.button'));
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
  setText('role', sgp.role ? t(`role.${sgp.role}`) : '');
  $('role').dataset.role = sgp.role || ''; // the protocol's name, whatever the language
  const p = sgp.peers;
  const names = [];
  for (const r of ['alice', 'bob']) {
    if (p[r]) names.push(r === sgp.role ? t('peers.you', { role: r }) : r);
  }
  let peersText = names.length ? t('peers.here', { names: names.join(', ') }) : t('peers.none');
  if (p.observers > 0) peersText += t(sgp.role === 'observer' ? 'peers.observersYou' : 'peers.observers', { count: p.observers });
  if (isPoster() && !p[peerOf(sgp.role)]) peersText += t('peers.waiting', { peer: peerOf(sgp.role) });
  setText('peers', peersText);

  const poster = isPoster();
  const start = $('start');
  start.hidden = !poster;
  // aria-disabled, not disabled: a disabled button loses the keyboard focus it has.
  const startOff = !poster || !sgp.connected || sgp.running;
  start.setAttribute('aria-disabled', String(startOff));
  start.classList.toggle('disabled', startOff);
  setText('start', t(sgp.running ? 'room.running' : sgp.key && sgp.key.confirmed ? 'room.startAgain' : 'room.start'));
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
  const tm = sgp.timing;
  setText('timer-precision', tm && tm.precision_us != null ? String(tm.precision_us) : '—');
  const tol = ui.roundTolerance ?? (sgp.params ? sgp.params.tolerance_ms : null);
  setText('room-tolerance', tol == null ? '—' : String(tol));
  const isolated = tm ? tm.isolated : !!window.crossOriginIsolated;
  setText('isolation', t(isolated ? 'clock.isolatedYes' : 'clock.isolatedNo', { precision: tm ? tm.precision_us : '' }));
}

/** The Key card: the key and its ledger (posters), the confirmation, the record button. */
function renderResult() {
  const poster = isPoster();
  const k = sgp.key;
  $('result-poster').hidden = !poster || !k;
  $('result-none').hidden = !!k || (!poster && sgp.confirm.alice !== null);
  setText('result-none', t(poster ? 'key.none' : 'key.observer'));
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
  if (state === 'match') ctext = poster ? 'confirm.match' : 'confirm.matchObserver';
  else if (state === 'mismatch') ctext = poster ? 'confirm.mismatch' : 'confirm.mismatchObserver';
  else ctext = k ? 'confirm.waiting' : 'confirm.notYet';
  setText('confirmed-text', t(ctext));
  const tags = [];
  if (sgp.confirm.alice) tags.push(t('tags.alice', { tag: sgp.confirm.alice }));
  if (sgp.confirm.bob) tags.push(t('tags.bob', { tag: sgp.confirm.bob }));
  if (k && !tags.length) tags.push(t('tags.mine', { tag: k.tag }));
  if (sgp.confirm.alice && sgp.confirm.bob) tags.push(t(sgp.confirm.alice === sgp.confirm.bob ? 'tags.equal' : 'tags.different'));
  setText('tags', tags.join(' · '));

  $('record-box').hidden = !poster || ui.recordRounds === 0;
}

/**
 * The strength ledger. The strength is floor(log2 ∏ C(n_r, a_r)) over the session's rounds
 * that count, not floor(log2 C(n, a)) of the totals: Eve may learn each round's a_r, so every
 * round is worth only its own binomial (docs/protocol.md, "Strength").
 */
function renderLedger(k) {
  setText('ledger-counts', t('ledger.counts', { n: k.n, rounds: k.rounds, a: k.a }));
  setText('ledger-sum', t('ledger.sum', { log2: k.log2_binom, tagBits: k.tag_bits, margin: k.margin_bits, strength: k.strength }));
  const per = (k.per_round || []).map((r) => `${r.round}: (${r.n}, ${r.a})`).join(' · ');
  setText('ledger-rounds', per ? t('ledger.rounds', { per }) : '');
}

const LOOPBACK = /^(localhost|.*\.localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/** The notes beside the room link and under the status: a link that works on this machine
 *  only, and a room whose tolerance is tighter than this page's timers want. */
function renderNotes() {
  const ln = $('link-note');
  const loop = LOOPBACK.test(location.hostname);
  ln.hidden = !loop || !isPoster();
  if (loop) {
    setText('link-note', t('note.link', { host: location.hostname }));
  }
  const tn = $('tolerance-note');
  const mine = pageTolerance();
  const room = sgp.params ? sgp.params.tolerance_ms : null;
  // Not for the page that created the room: its tolerance field said what it chose and why.
  const tight = isPoster() && !ui.createdHere && room !== null && room < mine.ms;
  tn.hidden = !tight;
  if (tight) {
    const why = t(mine.isolated ? 'note.tightIsolated' : 'note.tightCoarse', { ms: mine.ms });
    setText('tolerance-note', t('note.tight', { room, why, ms: mine.ms }));
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

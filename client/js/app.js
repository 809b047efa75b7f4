// app.js — the page's entry: starts the worker and wires the controls (create / join / watch,
// start, reset, leave, copy, theme, download record) to their actions, and offers
// `window.sgpRecord()` / `window.sgpCalibrate()`. It never touches the socket: worker.js owns the
// connection, the clock sync, the posting schedule and the derivation, and reports events that
// events.js and session.js turn into state (state.js), which view.js draws.

import { $, sgp, ui, isPoster, setStatus, retellStatus, addError, command, setWorker } from './state.js';
import { t, msg, initLang, setLang, lang, applyStatic, onLangChange } from './i18n.js';
import { redrawAll, renderLegend } from './rounds.js';
import { pageTolerance, applyToleranceDefault, askRange } from './tolerance.js';
import { maybeCalibrate } from './calibrate.js';
import { render } from './view.js';
import { onWorker, backToLanding } from './events.js';
import { roundDurationMs, roundSize } from './timing.js';
import { normalizeCode } from './codes.js';
import { landingUrl } from './urls.js';

// ---------------------------------------------------------------------------------------
// The worker.

function startWorker() {
  let worker;
  try {
    worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  } catch (e) {
    fatal(msg('status.noWorker', { detail: e.message }));
    return;
  }
  setWorker(worker);
  worker.onmessage = (ev) => {
    try {
      onWorker(ev.data);
    } catch (e) {
      addError('page', `${ev.data && ev.data.type}: ${e && e.stack ? e.stack : e}`);
    }
    render();
  };
  worker.onerror = (ev) => {
    fatal(msg('status.workerFailed', { detail: ev.message || msg('status.unknownError') }));
    render();
  };
}

function fatal(m) {
  addError('page', t(m, undefined, 'en'));
  setStatus(m);
  ui.alert = { msg: m, rejoin: false };
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
  announce(t('record.done', { rounds: rec.rounds.length }));
}

function announce(text) {
  $('announce').textContent = text;
}

// ---------------------------------------------------------------------------------------
// User actions.

/** Marks the code field (is-invalid, with its feedback) and says why: what cannot be a room
 *  code opens no socket. `fromLink`: it came in the page's address, not typed; said in the alert too. */
function badCode(typed, fromLink) {
  const field = $('join-code');
  field.classList.add('is-invalid');
  field.setAttribute('aria-invalid', 'true');
  field.focus();
  if (!typed.trim()) return;
  // The text as typed, cut short: it is shown, and it may be anything.
  const shown = typed.length > 40 ? `${typed.slice(0, 40)}…` : typed;
  const m = msg('join.notACode', { code: shown });
  setStatus(m);
  ui.alert = fromLink ? { msg: m, rejoin: false } : null;
}

/** Joins room `room` (as typed, or from a link: normalised to its canonical form, codes.js). */
function join(room, observer, { fromLink = false } = {}) {
  const typed = String(room ?? '');
  const code = normalizeCode(typed);
  if (code === null) {
    badCode(typed, fromLink);
    render();
    return;
  }
  $('join-code').classList.remove('is-invalid');
  $('join-code').removeAttribute('aria-invalid');
  ui.alert = null;
  ui.joining = { room: code, observer };
  setStatus('status.joining', { room: code });
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
  ui.typedTolerance = ui.tolEdited ? tol : null;
  setStatus('status.creating');
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
  setStatus('status.left');
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
  // The button says so for a moment, then its own label again (data-i18n: in the language
  // chosen by then).
  button.textContent = t(ok ? 'copy.done' : 'copy.byHand');
  announce(t(ok ? 'copy.doneSaid' : 'copy.failedSaid'));
  clearTimeout(button.sgpRestore);
  button.sgpRestore = setTimeout(() => {
    button.textContent = t(button.dataset.i18n);
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
    window.sgpDebug.startedAt = performance.timeOrigin + performance.now(); // for benchmarks: ms since the epoch
    sgp.running = true;
    ui.gaveUp = false;
    ui.alert = null;
    setStatus('status.syncing');
    command({ cmd: 'start', adapt: askRange() });
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
  $('lang').addEventListener('change', (e) => setLang(e.target.value));
  $('alert-close').addEventListener('click', () => {
    ui.alert = null;
    render();
  });
  $('alert-rejoin').addEventListener('click', () => {
    if (ui.lastJoin) join(ui.lastJoin.room, ui.lastJoin.observer);
  });
}

/** The switch shows the language in use; a change of language redraws everything that has
 *  words (the status and alert are messages, drawn again; so are the timeline's pictures). */
function wireLang() {
  initLang();
  applyStatic();
  $('lang').value = lang();
  onLangChange((l) => {
    $('lang').value = l;
    retellStatus();
    applyToleranceDefault();
    renderLegend();
    redrawAll();
    render();
  });
}

function main() {
  wireLang();
  wire();
  renderTheme();
  applyToleranceDefault();
  startWorker();
  const q = new URLSearchParams(location.search);
  const room = q.get('room');
  if (room && normalizeCode(room) === null) {
    // A link whose code cannot be one: the landing form, the code shown to be corrected.
    history.replaceState(null, '', landingUrl(location.href));
    ui.calibrating = true;
    $('join-code').value = room;
    join(room, q.has('watch'), { fromLink: true });
  } else if (room) {
    $('join-code').value = room;
    join(room, q.has('watch'));
  } else {
    ui.calibrating = true; // until the worker has measured (it starts once it is up)
    setStatus('status.landing');
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

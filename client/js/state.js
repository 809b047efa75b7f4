// state.js — the page's state: `window.sgpState` (the plain object browser tests read) and the
// view's own, the small helpers every part of the page uses, and the line to the worker (`command`).

import { t, msg } from './i18n.js';

export const $ = (id) => document.getElementById(id);

/** The test hook: a plain object kept up to date (see client/js/README.md). */
export const sgp = {
  role: null,
  room: null,
  status: t('status.loading'),
  statusId: 'status.loading', // the status sentence's message id (i18n/en.js): tests key off it, not its words
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
/**
 * For people debugging timing: the last closed rounds as the worker reported them; and, for
 * benchmarks, when Start was clicked and the last confirmation came (`startedAt`,
 * `confirmedAt`: ms since the epoch, performance.timeOrigin + performance.now(), which tabs of
 * one machine share).
 */
window.sgpDebug = { rounds: [], startedAt: null, confirmedAt: null };

export const ui = {
  view: 'landing',
  joining: null, // {room, observer} while a join/create is on its way
  lastJoin: null, // what to reconnect to
  session: null,
  strength: 0,
  keptTotal: 0,
  window: null, // {start, end} on the page's clock (ms, performance.now()) while a round runs
  roundPct: 0,
  roundNo: null, // the running or last round's number (the progress bar's words)
  tolEdited: false,
  typedTolerance: null, // the tolerance typed for the room this page created (fixed: only the rate adapts)
  roundTolerance: null, // the running or last round's τ (ms): it follows the posters' asks
  calibrating: false, // the Create button waits for the jitter measurement
  calibStarted: false,
  tick: null,
  statusMsg: msg('status.loading'), // the status as a message, drawn again when the language changes
  alert: null, // {msg, rejoin}: msg as the status's (i18n.js msg)
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

export const peerOf = (role) => (role === 'alice' ? 'bob' : role === 'bob' ? 'alice' : null);
export const isPoster = () => sgp.role === 'alice' || sgp.role === 'bob';
export const cap = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
export const pageNowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

/** Sets the status sentence: message `id` of i18n/en.js with `params` (or a msg object). */
export function setStatus(id, params) {
  ui.statusMsg = id && typeof id === 'object' ? id : msg(id, params);
  sgp.statusId = ui.statusMsg.id;
  sgp.status = t(ui.statusMsg);
}

/** The status sentence again, in the language now chosen. */
export function retellStatus() {
  sgp.status = t(ui.statusMsg);
}

/** Codes of errors that are this page's own bugs (not the server's refusals or the network):
 *  they also go to the console, so that browser tests fail on them. */
export const PAGE_FAULTS = new Set(['page', 'client', 'bad_json', 'unknown']);
let errorSeq = 0;

/** Notes an error in sgpState.errors (`quiet`: expected and not shown, kept for people
 *  debugging). `seq` counts every error the page ever noted. */
export function addError(code, message, quiet = false) {
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

export function command(c) {
  ready.then(() => worker && worker.postMessage(c));
}

/** The worker startWorker made; commands wait for its `hello` (workerUp). */
export function setWorker(w) {
  worker = w;
}

/** The worker said `hello`: the commands waiting for it go. */
export function workerUp() {
  workerReady();
}

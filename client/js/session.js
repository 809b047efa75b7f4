// session.js — a session's worker events → state and status sentences: phases, rounds (and
// the spans left out of them), the key, its confirmation, dropped rounds, the session's end.

import { sgp, ui, isPoster, peerOf, pageNowUs, setStatus } from './state.js';
import { roundKey, unionSpans, roundEntry, applyRoundState, MAX_PICTURES, drawRound, redrawRound, markDropped } from './rounds.js';
import { tooTight } from './tolerance.js';
import { startTicker, stopTicker } from './view.js';
import { msg } from './i18n.js';

export function peerLeft(role) {
  const who = role || peerOf(sgp.role);
  sgp.running = false;
  stopTicker();
  setStatus(sgp.key && sgp.key.confirmed ? 'status.peerLeftKept' : 'status.peerLeft', { who });
}

export function onPhase(m) {
  const peer = peerOf(sgp.role);
  const retry = m.failures > 0 ? msg('retry.count', { failures: m.failures, giveUp: m.give_up_s }) : '';
  switch (m.phase) {
    case 'syncing':
      sgp.running = true;
      setStatus(m.why === 'start' ? msg('status.syncing') : msg('status.syncAgain', { retry }));
      return;
    case 'waiting':
      if (m.next) {
        setStatus('status.roundDone', { round: m.round, strength: m.strength, target: sgp.params.target_bits });
      } else if (m.why && m.why !== 'start') {
        const what = m.why === 'desync' ? msg('why.desync') : String(m.why);
        setStatus('status.tryAgain', { what, retry });
      } else if (!sgp.peers[peer]) {
        setStatus('status.readyNoPeer', { retry });
      } else {
        setStatus('status.readyPeer', { peer, retry });
      }
      return;
    case 'posting':
      ui.window = windowOnPage(m.start_local_us, m.end_local_us, m.now_us);
      startTicker();
      setStatus('status.posting', { round: m.round, rate: Math.round(m.rate_hz ?? sgp.params.rate_hz), tol: m.tolerance_ms ?? sgp.params.tolerance_ms });
      return;
    case 'closing':
      setStatus('status.closing', { round: m.round });
      return;
    case 'confirming':
      setStatus('status.confirming', { peer });
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

export function onStart(m) {
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
  ui.roundNo = m.round;
  if (m.params) ui.roundTolerance = m.params.tolerance_ms; // each round's follows the posters' asks
  if (isPoster()) {
    sgp.running = true;
  } else {
    ui.window = windowOnPage(m.start_local_us, m.end_local_us, m.now_us);
    startTicker();
    setStatus('status.roundRunning', { round: m.round });
  }
}

export function onRound(m) {
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
    setStatus('status.roundClosedSeen', { round: m.round, entries: m.board.length, kept: m.kept_pos.length });
    return;
  }
  if (m.desync && m.desync.late) {
    const what = m.desync.skipped > 0 ? msg('late.skipped', { count: m.desync.skipped }) : msg('late.late', { ms: (m.desync.late_us / 1000).toFixed(1) });
    setStatus('status.behind', { round: m.round, what });
    return;
  }
  if (m.desync) {
    const tol = sgp.params ? sgp.params.tolerance_ms : '';
    setStatus('status.desync', { round: m.round, unmatched: m.desync.unmatched, total: m.desync.total, tol });
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
  setStatus('status.peerSpans', { round: m.round, peer: peerOf(sgp.role), out, strength: m.ledger.strength, target: sgp.params.target_bits });
}

/** An observer hears that spans of a round were left out (never whose they were). */
export function onDroppedSpans(m) {
  const pic = ui.pictures.get(roundKey(m.session, m.round));
  const entry = roundEntry(m.session, m.round);
  if (!pic || !entry || pic.whole) return;
  const before = entry.kept;
  pic.spans = unionSpans([...pic.spans, ...m.spans]);
  const st = applyRoundState(entry, pic);
  ui.keptTotal += st.kept - before;
  redrawRound(pic);
  setStatus('status.spansSeen', { round: m.round, leftOut: st.leftOut, kept: st.kept });
}

/** The worker's key no longer holds: the peer's spans took the session below the target. */
export function onKeyVoid(m) {
  if (sgp.key && !sgp.key.confirmed && sgp.key.session === m.session && sgp.key.round === m.round) {
    sgp.key = null;
    sgp.confirm = { state: 'pending', alice: null, bob: null };
  }
  ui.strength = m.strength;
}

export function onKey(m) {
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

export function onConfirmed(m) {
  if (isPoster() && m.ours) {
    const state = m.mine_ok ? 'match' : 'mismatch';
    sgp.confirm.state = state;
    if (sgp.key) {
      sgp.key.state = state;
      sgp.key.confirmed = state === 'match';
    }
    if (state === 'mismatch') {
      setStatus('status.mismatch');
    }
    return;
  }
  sgp.confirm.state = m.match ? 'match' : 'mismatch';
  if (!isPoster()) {
    setStatus(m.match ? 'status.matchSeen' : 'status.mismatchSeen');
  }
}

export function onAborted(m) {
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
      const which = m.round == null ? msg('which.last') : msg('which.round', { round: m.round });
      const tol = sgp.params ? sgp.params.tolerance_ms : '';
      // A poster whose session has stopped (it gave up, or its peer did) keeps saying so: a
      // drop that crossed that on the way changes nothing.
      if (isPoster() && !sgp.running) return;
      if (isPoster()) {
        setStatus('status.dropped', { which, tol });
      } else {
        setStatus('status.droppedSeen', { which, tol });
      }
      return;
    }
    case 'peer_left':
      if (isPoster()) peerLeft(null);
      else setStatus('status.posterLeftSeen');
      return;
    case 'idle':
      sgp.running = false;
      setStatus('status.idle');
      return;
    case 'disagree':
      setStatus('status.disagree');
      return;
    case 'gave_up':
      // Our own `abort {gave_up}` comes back to us too: we said it already (onStopped).
      if (ui.gaveUp) return;
      setStatus(isPoster() ? msg('status.peerGaveUp', { advice: tooTight() }) : msg('status.posterGaveUpSeen'));
      return;
    default:
      setStatus('status.aborted', { reason: String(m.reason) });
  }
}

export function onStopped(m) {
  sgp.running = false;
  stopTicker();
  switch (m.reason) {
    case 'key':
      setStatus('status.keyConfirmed', { strength: sgp.key ? sgp.key.strength : '' });
      return;
    case 'gave_up': {
      if (m.last == null) return; // the peer gave up: onAborted said so
      ui.gaveUp = true;
      const last = m.last === 'desync' ? msg('last.desync') : m.last === 'confirmation mismatch' ? msg('last.mismatch') : String(m.last);
      const count = m.in_a_row ? msg('gaveUp.inARow', { failures: m.failures, seconds: m.stuck_s }) : msg('gaveUp.total', { failures: m.total_failures });
      setStatus('status.gaveUp', { count, last, advice: tooTight() });
      return;
    }
    case 'sync_failed':
      setStatus('status.syncFailed', { message: String(m.message) });
      return;
    case 'peer_left':
      peerLeft(null);
      return;
    default:
      // reset, idle, user: onAborted / reset already said it
  }
}

// session.js — a session's worker events → state and status sentences: phases, rounds (and
// the spans left out of them), the key, its confirmation, dropped rounds, the session's end.

import { sgp, ui, isPoster, peerOf, pageNowUs, setStatus } from './state.js';
import { roundKey, unionSpans, roundEntry, applyRoundState, MAX_PICTURES, drawRound, redrawRound, markDropped } from './rounds.js';
import { tooTight } from './tolerance.js';
import { startTicker, stopTicker } from './view.js';

export function peerLeft(role) {
  const who = role || peerOf(sgp.role);
  sgp.running = false;
  stopTicker();
  const kept = sgp.key && sgp.key.confirmed ? ' Your confirmed key stays below.' : ' The session stopped.';
  setStatus(`The peer left (${who} closed the page or left the room).${kept} Send the link to someone; once they join, press Start.`);
}

export function onPhase(m) {
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
      setStatus(`Round ${m.round}: posting at random times (about ${Math.round(m.rate_hz ?? sgp.params.rate_hz)} posts a second each, tolerance ${m.tolerance_ms ?? sgp.params.tolerance_ms} ms)…`);
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
  ui.roundText = `round ${m.round}`;
  if (m.params) ui.roundTolerance = m.params.tolerance_ms; // each round's follows the posters' asks
  if (isPoster()) {
    sgp.running = true;
  } else {
    ui.window = windowOnPage(m.start_local_us, m.end_local_us, m.now_us);
    startTicker();
    setStatus(`Round ${m.round} is running: the posters are posting.`);
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
export function onDroppedSpans(m) {
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

export function onStopped(m) {
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

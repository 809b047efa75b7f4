// events.js — the worker's events → state: the dispatcher (client/js/README.md lists the
// messages), the connection, joining and leaving a room, its members, the server's refusals.
// A session's own events are session.js's.

import { $, sgp, ui, peerOf, cap, setStatus, addError, PAGE_FAULTS, command, workerUp } from './state.js';
import { clearTimeline, renderLegend } from './rounds.js';
import { stopTicker } from './view.js';
import { maybeCalibrate, onCalibration } from './calibrate.js';
import { applyToleranceDefault } from './tolerance.js';
import { peerLeft, onPhase, onStart, onRound, onDroppedSpans, onKeyVoid, onKey, onConfirmed, onAborted, onStopped } from './session.js';
import { landingUrl, roomLink } from './urls.js';
import { msg } from './i18n.js';

export function onWorker(m) {
  switch (m.type) {
    case 'hello':
      workerUp();
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
      window.sgpDebug.confirmedAt = performance.timeOrigin + performance.now(); // for benchmarks
      return onConfirmed(m);
    case 'aborted':
      return onAborted(m);
    case 'stopped':
      return onStopped(m);
    case 'reset':
      clearRoom();
      sgp.running = false;
      setStatus('status.reset');
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
    if (ui.view === 'landing') setStatus('status.connecting');
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
  const code = !m.code ? '' : m.reason ? msg('conn.codeWhy', { code: m.code, reason: m.reason }) : msg('conn.code', { code: m.code });
  const host = location.host;
  if (ui.view === 'room') {
    const room = ui.lastJoin ? ui.lastJoin.room : '';
    const text = ui.joining
      ? msg('conn.unreachableRoom', { host, code })
      : msg('conn.lost', { host, room, code });
    ui.joining = null;
    setStatus(text);
    ui.alert = { msg: text, rejoin: true };
  } else {
    const text = was || ui.joining === null
      ? msg('conn.closed', { code })
      : msg('conn.unreachable', { host, code });
    setStatus(text);
    ui.alert = { msg: text, rejoin: false };
    ui.joining = null;
    maybeCalibrate();
  }
  addError('connection', `closed${m.code ? ` (WebSocket close code ${m.code}${m.reason ? `: ${m.reason}` : ''})` : ''}`);
}

function onJoined(m) {
  const sameRoom = sgp.room === m.room;
  sgp.role = m.role;
  sgp.room = m.room;
  sgp.params = m.params;
  ui.roundTolerance = null;
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
  history.replaceState(null, '', roomLink(location.href, m.room, { watch: m.role === 'observer' }));
  if (m.role === 'observer') {
    setStatus('status.watching', { room: m.room });
  } else {
    setStatus(idleSentence());
  }
  renderLegend();
}

const sameRoomAsLast = (room) => !!ui.lastJoin && ui.lastJoin.room === room;

/** What a poster with no session running should read. */
function idleSentence() {
  const peer = peerOf(sgp.role);
  if (!sgp.peers[peer]) return msg('status.waitPeer', { room: sgp.room });
  return msg('status.peerHere', { peer: cap(peer) });
}

function onPeer(m) {
  if (m.role === 'observer') {
    sgp.peers.observers = Math.max(0, sgp.peers.observers + (m.event === 'joined' ? 1 : -1));
    return;
  }
  sgp.peers[m.role] = m.event === 'joined';
  if (sgp.role === 'observer') {
    setStatus(m.event === 'joined' ? 'status.peerJoinedSeen' : 'status.peerLeftSeen', { role: cap(m.role) });
    return;
  }
  if (m.event === 'joined') {
    if (!sgp.running) setStatus('status.peerJoined', { role: cap(m.role) });
  } else {
    peerLeft(m.role);
  }
}

/** A refusal of `join`/`create` in words a person understands (by its code; the server's
 *  own words only where no code says more). */
function joinRefusal(code, message, room, tries) {
  const r = room || '';
  switch (code) {
    case 'room_taken':
      return msg('refuse.roomTaken', { tries: tries || 1 });
    case 'draining':
      return msg('refuse.draining', { tries: tries || 1 });
    case 'wrong_room':
      return msg('refuse.wrongRoom');
    case 'bad_room':
      return msg('refuse.badRoom');
    case 'no_such_room':
      return msg('refuse.noSuchRoom', { room: r });
    case 'room_full':
      return msg('refuse.roomFull', { room: r });
    case 'too_many_rooms':
      return msg('refuse.tooManyRooms');
    case 'too_many_observers':
      return msg('refuse.tooManyObservers');
    case 'bad_field':
      return msg('refuse.badField', { message: String(message) });
    default:
      return msg('refuse.other', { message: String(message) });
  }
}

function onError(m) {
  addError(m.code, m.message, !!m.quiet);
  if (m.quiet) return;
  if (m.code === 'connection' && !sgp.connected) return; // the lost connection is already said
  if (PAGE_FAULTS.has(m.code) || m.code === 'connection') {
    setStatus('status.pageFault', { message: String(m.message) });
    return;
  }
  if (ui.joining) {
    // The server turned our create/join away: back to the landing form, saying why.
    const room = ui.joining.room;
    const text = joinRefusal(m.code, m.message, room, m.attempts);
    command({ cmd: 'leave' });
    backToLanding();
    ui.alert = { msg: text, rejoin: false };
    setStatus(text);
    if (room) $('join-code').value = room;
    ui.focusTo = room ? 'join-code' : 'landing-title';
    maybeCalibrate();
    return;
  }
  if (ui.view === 'landing') {
    const text = joinRefusal(m.code, m.message, null);
    ui.alert = { msg: text, rejoin: false };
    setStatus(text);
    return;
  }
  setStatus('status.refused', { code: m.code, message: String(m.message) });
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
  ui.roundNo = null;
  ui.window = null;
  stopTicker();
  clearTimeline();
}

/** The landing view, with no room: what leaving (or being turned away) leaves. */
export function backToLanding() {
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
  history.replaceState(null, '', landingUrl(location.href));
}

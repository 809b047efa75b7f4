// timeline.js — draws one closed round as an SVG: every board entry at its server time
// (A labels above the axis, B below), the guard zones shaded, the spans left out around late
// posts as a light band, entries the public sift drops or the spans leave out greyed. For a
// poster, its own kept entries and its peer's in two colours; for an observer, times and
// labels only — one colour for all kept entries, nothing that tells posters apart (the spans
// are drawn alike whoever announced them).
// DOM only (no network, no clock); the data comes from the worker's `round` message.

import { t } from './i18n.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 1000;
const H = 100;
const AXIS = 50;
const TICK = 36;

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * One round's picture.
 * r: {session, round, board: [{i, t_us, label}], t_start_us?, t_end_us?, guard_us,
 *     kept_pos: [positions in board], spans?: [[from_us, to_us], …] (left out, ends inclusive),
 *     view: 'observer' | 'poster',
 *     mine: [i…] | null (null: nobody's entries known — the observer's view, or a poster's
 *     round that was out of sync), peer: the peer's name}
 * Returns an <svg data-testid="round-svg"> with data-session, data-round, data-entries,
 * data-kept (the kept entries that count: the sift's less those inside the spans), data-spans
 * and data-left-out (how many spans, and how many kept entries they leave out).
 */
export function roundSvg(r) {
  const board = r.board;
  const ts = board.map((e) => e.t_us);
  const windowKnown = r.t_end_us > r.t_start_us;
  let t0 = r.t_start_us;
  let t1 = r.t_end_us;
  if (!windowKnown) {
    // Window unknown (an observer who joined mid-round): fit the entries.
    t0 = ts.length ? Math.min(...ts) : 0;
    t1 = ts.length ? Math.max(...ts) + 1 : 1;
  } else if (ts.length) {
    // The server takes posts up to a guard outside the window (they are always sifted out):
    // widen the picture so that every entry is on it.
    t0 = Math.min(t0, Math.min(...ts));
    t1 = Math.max(t1, Math.max(...ts) + 1);
  }
  const span = t1 - t0;
  const x = (t) => (((t - t0) / span) * W).toFixed(2);
  const spans = r.spans || [];
  const inSpan = (t) => spans.some((x) => x[0] <= t && t <= x[1]);
  const sifted = new Set(r.kept_pos);
  const kept = new Set(r.kept_pos.filter((k) => !inSpan(board[k].t_us)));
  const leftOut = sifted.size - kept.size;
  const observer = r.view === 'observer';
  const unknown = r.mine == null; // observer, or a poster's round that was out of sync
  const mine = new Set(unknown ? [] : r.mine);

  // One path per class keeps the DOM small: a board holds hundreds of entries.
  const paths = { mine: '', peer: '', kept: '', dropped: '' };
  let nMine = 0;
  let nPeer = 0;
  board.forEach((e, pos) => {
    const cls = !kept.has(pos) ? 'dropped' : unknown ? 'kept' : mine.has(e.i) ? 'mine' : 'peer';
    if (cls === 'mine') nMine++;
    if (cls === 'peer') nPeer++;
    const y = e.label === 'A' ? AXIS - TICK : AXIS + TICK;
    paths[cls] += `M${x(e.t_us)} ${AXIS}V${y}`;
  });

  const peer = r.peer || 'peer';
  const out = leftOut > 0 ? t('svg.leftOut', { count: leftOut }) : '';
  const counts = { round: r.round, entries: board.length, kept: kept.size, sifted: board.length - sifted.size };
  const summary = observer
    ? t('svg.observer', { ...counts, out })
    : unknown
      ? t('svg.unknown', counts)
      : t('svg.poster', { ...counts, mine: nMine, peerCount: nPeer, peer, out });

  const svg = el('svg', {
    viewBox: `0 0 ${W} ${H}`,
    preserveAspectRatio: 'none',
    class: 'round-svg',
    role: 'img',
    'aria-label': summary,
    'data-testid': 'round-svg',
    'data-session': r.session,
    'data-round': r.round,
    'data-entries': board.length,
    'data-kept': kept.size,
    'data-spans': spans.length,
    'data-left-out': leftOut,
    'data-view': observer ? 'observer' : 'poster',
    ...(unknown ? {} : { 'data-mine': nMine }),
  });
  svg.appendChild(el('title', {}, summary));
  const g = r.guard_us || 0;
  if (g > 0 && windowKnown) {
    // The guard zones: [t_start, t_start + G] and [t_end − G, t_end].
    const gw = ((g / span) * W).toFixed(2);
    svg.appendChild(el('rect', { class: 'guard', x: x(r.t_start_us), y: 0, width: gw, height: H }));
    svg.appendChild(el('rect', { class: 'guard', x: x(r.t_end_us - g), y: 0, width: gw, height: H }));
  }
  for (const [from, to] of spans) {
    // At least 2 units wide (of 1000): a span of a few τ in a long round is still seen.
    const a = Math.max(0, Math.min(W, Number(x(from))));
    const b = Math.max(0, Math.min(W, Number(x(to))));
    const w = Math.max(2, b - a);
    svg.appendChild(el('rect', { class: 'span', x: Math.min(a, W - w).toFixed(2), y: 0, width: w.toFixed(2), height: H }));
  }
  svg.appendChild(el('line', { class: 'axis', x1: 0, y1: AXIS, x2: W, y2: AXIS }));
  for (const cls of ['dropped', 'kept', 'peer', 'mine']) {
    if (paths[cls]) svg.appendChild(el('path', { class: `tick tick-${cls}`, d: paths[cls] }));
  }
  svg.appendChild(el('text', { class: 'lab', x: 4, y: 14 }, 'A'));
  svg.appendChild(el('text', { class: 'lab', x: 4, y: H - 4 }, 'B'));
  return svg;
}

/** The legend under the timeline's title, as HTML-free text pieces: [[class, text], …]. */
export function legend(observer, peerName) {
  return observer
    ? [['kept', t('legend.kept')], ['dropped', t('legend.dropped')], ['guard', t('legend.guard')], ['span', t('legend.span')]]
    : [['mine', t('legend.mine')], ['peer', t('legend.peer', { peer: peerName })], ['dropped', t('legend.dropped')], ['guard', t('legend.guard')], ['span', t('legend.span')]];
}

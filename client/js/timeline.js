// timeline.js — draws one closed round as an SVG: every board entry at its server time
// (A labels above the axis, B below), the guard zones shaded, entries the public sift drops
// greyed. For a poster, its own kept entries and its peer's in two colours; for an observer,
// times and labels only — one colour for all kept entries, nothing that tells posters apart.
// DOM only (no network, no clock); the data comes from the worker's `round` message.

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
 *     kept_pos: [positions in board], view: 'observer' | 'poster',
 *     mine: [i…] | null (null: nobody's entries known — the observer's view, or a poster's
 *     round that was out of sync), peer: the peer's name}
 * Returns an <svg data-testid="round-svg"> with data-session, data-round, data-entries, data-kept.
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
  const kept = new Set(r.kept_pos);
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

  const peerName = r.peer || 'peer';
  const summary = observer
    ? `Round ${r.round}: ${board.length} entries, ${kept.size} kept by the public sift, ${board.length - kept.size} dropped. Times and labels only: nothing tells the posters apart.`
    : unknown
      ? `Round ${r.round}: ${board.length} entries, ${kept.size} kept; out of sync, so whose they are is unknown and the round is dropped.`
      : `Round ${r.round}: ${board.length} entries, ${kept.size} kept (${nMine} mine, ${nPeer} ${peerName}'s), ${board.length - kept.size} dropped by the sift.`;

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
    ? [['kept', 'kept entry'], ['dropped', 'sifted out'], ['guard', 'guard zone']]
    : [['mine', 'mine'], ['peer', `${peerName}'s`], ['dropped', 'sifted out'], ['guard', 'guard zone']];
}

// rounds.js — the closed rounds on the page: what counts of each (the spans left out around
// late posts, its sgpState.rounds entry) and the Timeline card's figures (timeline.js draws
// the pictures).

import { $, sgp, ui, peerOf } from './state.js';
import { roundSvg, legend } from './timeline.js';
import { t } from './i18n.js';

export const roundKey = (session, round) => `${session}/${round}`;

/** Spans as one ascending list of disjoint [from, to] (both ends inclusive): overlapping or
 *  touching ones merged, so that nothing in it says which poster announced which. */
export function unionSpans(spans) {
  const sorted = spans.map((x) => [x[0], x[1]]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  const out = [];
  for (const x of sorted) {
    const last = out[out.length - 1];
    if (last && x[0] <= last[1]) last[1] = Math.max(last[1], x[1]);
    else out.push(x);
  }
  return out;
}

/** Positions (in board order) of the entries the sift keeps that `spans` leave out. */
function leftOutPos(m, spans) {
  if (!spans.length) return [];
  return m.kept_pos.filter((k) => spans.some((x) => x[0] <= m.board[k].t_us && m.board[k].t_us <= x[1]));
}

/**
 * What a round's picture and its sgpState entry show: the spans left out around late posts
 * (a poster's own and its peer's, or, for an observer, those the room relayed) — none once
 * the round is dropped whole, since nothing of it counts — and the kept entries that count.
 */
function roundState(pic) {
  const spans = pic.whole ? [] : pic.spans;
  const out = leftOutPos(pic.m, spans);
  return { spans, leftOut: out.length, kept: pic.m.kept_pos.length - out.length };
}

/** The newest sgpState.rounds entry of a round. */
export const roundEntry = (session, round) => [...sgp.rounds].reverse().find((x) => x.round === round && (!session || x.session === session));

export function applyRoundState(entry, pic) {
  const st = roundState(pic);
  entry.kept = st.kept;
  entry.spans = st.spans;
  entry.left_out = st.leftOut;
  return st;
}

/** Round pictures kept on the page (newest first); shown in #timeline-keep and put on
 * #timeline as data-keep (which the browser tests read). */
export const MAX_PICTURES = 40;
$('timeline').dataset.keep = String(MAX_PICTURES);
$('timeline-keep').textContent = String(MAX_PICTURES);

/** One round's figure: its picture (timeline.js) and caption. */
function roundFigure(pic) {
  const m = pic.m;
  const observer = m.observer;
  const st = roundState(pic);
  const svg = roundSvg({
    session: m.session,
    round: m.round,
    board: m.board,
    t_start_us: m.t_start_us,
    t_end_us: m.t_end_us,
    guard_us: m.guard_us,
    kept_pos: m.kept_pos,
    spans: st.spans,
    // A round out of sync for me: who posted what is unknown, drawn like the public view.
    mine: observer || m.desync ? null : m.mine,
    view: observer ? 'observer' : 'poster',
    peer: peerOf(sgp.role),
  });
  const fig = document.createElement('figure');
  fig.dataset.session = m.session;
  fig.dataset.round = m.round;
  const cap = document.createElement('figcaption');
  let text = t('caption.head', { session: m.session.slice(0, 4), round: m.round, entries: m.board.length, kept: st.kept });
  if (st.leftOut > 0) text += t('caption.leftOut', { count: st.leftOut, spans: st.spans.length });
  if (!observer && m.desync) text += t('caption.desync');
  else if (!observer) text += t('caption.mine', { mine: m.mine.length, peerCount: st.kept - m.mine.length, peer: peerOf(sgp.role) });
  if (observer && !m.window_known) text += t('caption.windowUnknown');
  cap.textContent = text;
  fig.append(svg, cap);
  if ((!observer && m.desync) || pic.whole || pic.marked) {
    fig.dataset.dropped = 'true';
    svg.dataset.dropped = 'true';
    if (!m.desync) cap.textContent += t('caption.dropped');
  }
  return fig;
}

export function drawRound(pic) {
  const fig = roundFigure(pic);
  const tl = $('timeline');
  $('timeline-empty')?.remove();
  tl.prepend(fig); // newest first
  // Only the newest pictures stay on the page: each is a few hundred SVG elements, and a page
  // that kept hundreds of them laid out would slow the next rounds' posts (the record, and
  // sgpState.rounds, keep every round).
  while (tl.children.length > MAX_PICTURES) tl.lastElementChild.remove();
}

/** Draws a round's picture again in its place (its spans changed), if it is still shown. */
export function redrawRound(pic) {
  const { session, round } = pic.m;
  for (const fig of $('timeline').querySelectorAll('figure')) {
    if (fig.dataset.session === String(session) && fig.dataset.round === String(round)) {
      fig.replaceWith(roundFigure(pic));
      return;
    }
  }
}

/** Marks the newest picture of that round as dropped (newest first in the timeline). */
export function markDropped(session, round) {
  for (const fig of $('timeline').querySelectorAll('figure')) {
    if (String(fig.dataset.round) === String(round) && (!session || fig.dataset.session === session)) {
      const pic = ui.pictures.get(roundKey(fig.dataset.session, round));
      if (pic) pic.marked = true; // drawn so again (a change of language draws every picture again)
      if (fig.dataset.dropped !== 'true') {
        fig.dataset.dropped = 'true';
        fig.querySelector('svg').dataset.dropped = 'true';
        fig.querySelector('figcaption').textContent += t('caption.dropped');
      }
      return;
    }
  }
}

/** Every picture still shown, drawn again (after a change of language). */
export function redrawAll() {
  for (const fig of $('timeline').querySelectorAll('figure')) {
    const pic = ui.pictures.get(roundKey(fig.dataset.session, fig.dataset.round));
    if (pic) fig.replaceWith(roundFigure(pic));
  }
}

export function renderLegend() {
  const observer = sgp.role === 'observer';
  const box = $('legend');
  box.replaceChildren();
  box.append(t(observer ? 'legend.observer' : 'legend.poster'));
  for (const [cls, text] of legend(observer, peerOf(sgp.role))) {
    const sw = document.createElement('span');
    sw.className = `swatch swatch-${cls}`;
    sw.setAttribute('aria-hidden', 'true');
    box.append(sw, text);
  }
}

/** An empty Timeline card. */
export function clearTimeline() {
  const tl = $('timeline');
  tl.replaceChildren($('timeline-empty') || emptyNote());
}

function emptyNote() {
  const p = document.createElement('p');
  p.id = 'timeline-empty';
  p.className = 'text-body-secondary small mb-0';
  p.dataset.i18n = 'timeline.empty';
  p.textContent = t('timeline.empty');
  return p;
}

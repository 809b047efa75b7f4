// tolerance.js — the tolerance this page gives a room it creates (from timing.js and the jitter
// measurements), the range its poster's asks adapt in (askRange), and the words that explain
// it: under the Create form, and when rounds keep falling out of sync.

import { $, sgp, ui } from './state.js';
import { defaultTolerance, FLOOR_MS } from './timing.js';

export const usefulCalibration = (c) => c.ok && !defaultToleranceFor(c).unsure;
export const defaultToleranceFor = (c) => {
  const t = sgp.timing;
  return defaultTolerance(t ? t.isolated : !!window.crossOriginIsolated, t ? t.precision_us : null, c);
};

/**
 * The range this poster's asks adapt in (docs/poster.md, "Adapting"), sent with Start: from the
 * tolerance this page picks for its own path (`floor_ms`, from its own measurement whoever
 * created the room; without one, its timers' floor, which the rounds widen if the path asks
 * more) up to what its clock-sync round trips need (the worker's widestUs). A tolerance typed when creating this room is `fixed`: only the rate
 * adapts, as with `sgp pair --tolerance-ms`.
 */
export function askRange() {
  const typed = ui.createdHere ? ui.typedTolerance : null;
  if (typed != null && sgp.params && typed === sgp.params.tolerance_ms) return { floor_ms: typed, fixed: true };
  const d = pageTolerance();
  return { floor_ms: d.ms, fixed: false };
}

/** The tolerance this page would give a room it creates: {ms, widened, isolated, precision}. */
export function pageTolerance() {
  const t = sgp.timing;
  const isolated = t ? t.isolated : !!window.crossOriginIsolated;
  const precision = t ? t.precision_us : null;
  return { ...defaultTolerance(isolated, precision, sgp.calibration), isolated, precision };
}

export function applyToleranceDefault() {
  const c = sgp.calibration;
  const d = pageTolerance();
  if (!ui.tolEdited) $('tolerance').value = String(d.ms);
  const p = d.precision != null ? `${d.precision} µs` : 'coarsely';
  const base = d.isolated
    ? `This page is cross-origin isolated, so timers tick every ${p} and the worker sends each post on time: at least ${d.floor} ms.`
    : `This page is not cross-origin isolated (plain http to another machine is not a secure context), so the browser coarsens timers to ${p}: at least ${d.floor} ms, more than the ${FLOOR_MS.isolated} ms of an isolated page.`;
  let measured;
  if (ui.calibrating) measured = ' Measuring how much this browser\'s messages wander…';
  else if (!c) measured = '';
  else if (!c.ok) measured = ` (Could not measure the message jitter: ${c.message}.)`;
  else {
    const spread = `Measured: of ${c.samples} test messages sent like posts, half reached the server within ${(c.dev_series_us ? median(c.dev_series_us) / 1000 : 0).toFixed(2)} ms ` +
      `of the usual delay, 99.6% within ${(c.dev_p996_us / 1000).toFixed(2)} ms.`;
    const share = d.success == null || d.unsure ? '' : ` At ${d.ms} ms, in rounds of ${d.posts} posts each, about ${Math.round(100 * d.success)}% of each round's entries would count:`;
    const why = d.widened
      ? ' the fastest choice on this machine now (a wider tolerance makes each round longer; at a narrower one more posts land too far from where they were expected, and each costs the stretch of its round around it).'
      : ' nothing wider would be faster (a post that lands too far from where it was expected costs only the stretch of its round around it, as a stall does unless it holds up a quarter of the round, and a wider tolerance makes every round longer).';
    const unsure = d.unsure
      ? ` This machine was too busy while measuring to judge (no tolerance up to 5 ms would keep most rounds in sync), so the default is the floor, in short rounds of ${d.posts} posts, which a stall spoils the least of.`
      : '';
    measured = ` ${spread}${share}${share ? why : ''}${unsure}`;
  }
  $('tolerance-why').textContent = `Default ${d.ms} ms. ${base}${measured}`;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : 0;
}

/**
 * What to do about a room whose rounds keep falling out of sync: a tolerance below this page's
 * measured default is simply too tight; at or above it, the machine is busier now than when
 * the page measured, and only a wider tolerance (or a quieter moment) helps.
 */
export function tooTight() {
  const tol = sgp.params ? sgp.params.tolerance_ms : null;
  const d = pageTolerance().ms;
  if (tol == null || tol < d) {
    return `this room's tolerance${tol == null ? '' : ` (${tol} ms)`} is too tight for these browsers: create a room with the default tolerance.`;
  }
  return `these browsers are busier now than when this page measured them, too busy for this room's tolerance (${tol} ms): create a room with a wider one, or try again when the machine is quieter.`;
}

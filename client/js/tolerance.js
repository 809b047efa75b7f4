// tolerance.js — the tolerance this page gives a room it creates (from timing.js and the jitter
// measurements), the range its poster's asks adapt in (askRange), and the words that explain
// it: under the Create form, and when rounds keep falling out of sync.

import { $, sgp, ui } from './state.js';
import { defaultTolerance, FLOOR_MS } from './timing.js';
import { t, msg } from './i18n.js';

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
  const p = d.precision != null ? t('tol.precision', { us: d.precision }) : t('tol.coarsely');
  const base = d.isolated
    ? t('tol.isolated', { p, floor: d.floor })
    : t('tol.notIsolated', { p, floor: d.floor, isolatedFloor: FLOOR_MS.isolated });
  let measured;
  if (ui.calibrating) measured = t('tol.measuring');
  else if (!c) measured = '';
  else if (!c.ok) measured = t('tol.measureFailed', { message: String(c.message) });
  else {
    const spread = t('tol.spread', {
      samples: c.samples,
      half: (c.dev_series_us ? median(c.dev_series_us) / 1000 : 0).toFixed(2),
      p996: (c.dev_p996_us / 1000).toFixed(2),
    });
    const share = d.success == null || d.unsure ? '' : t('tol.share', { ms: d.ms, posts: d.posts, pct: Math.round(100 * d.success) });
    const why = t(d.widened ? 'tol.widened' : 'tol.floor');
    const unsure = d.unsure ? t('tol.unsure', { posts: d.posts }) : '';
    measured = ` ${spread}${share}${share ? why : ''}${unsure}`;
  }
  $('tolerance-why').textContent = t('tol.why', { ms: d.ms, base, measured });
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
  if (tol == null || tol < d) return msg('tol.tooTight', { tol: tol == null ? '' : tol });
  return msg('tol.tooBusy', { tol });
}

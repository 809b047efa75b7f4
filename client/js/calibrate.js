// calibrate.js — the measurements of this browser's message jitter taken on the landing view,
// which the default tolerance comes from (tolerance.js).

import { sgp, ui, command } from './state.js';
import { usefulCalibration, defaultToleranceFor, applyToleranceDefault } from './tolerance.js';
import { render } from './view.js';

/**
 * Measurements of this browser's message jitter (each ~1.6 s) taken on the landing view, one
 * after the other. Measured (docs/journal/2026-12-01-browser-key-time-under-load.md): the seconds after a page loads are
 * far noisier than later — 20-80 ms stalls in most first measurements, p90 up to 40 ms, while
 * the rounds made later see p90 0.3-0.4 ms — so the default comes from the quietest of them
 * (the one with the least expected time per bit). Create waits for the first that says
 * something (timing.js `unsure` otherwise); the others refine the default while the person
 * reads the page, unless they typed a tolerance. Leaving the landing view stops them.
 */
const CALIBRATION_TRIES = 3;

export function maybeCalibrate() {
  if (sgp.calibrationDone || ui.calibStarted || ui.view !== 'landing' || ui.joining || !sgp.timing) return;
  ui.calibrating = !ui.calibs || !ui.calibs.some(usefulCalibration);
  ui.calibStarted = true;
  command({ cmd: 'calibrate' });
  // Never let a lost answer keep Create disabled.
  const asked = (ui.calibs || []).length;
  setTimeout(() => {
    if (ui.calibStarted && (ui.calibs || []).length === asked) {
      ui.calibStarted = false;
      ui.calibrating = false;
      sgp.calibrationDone = true;
      applyToleranceDefault();
      render();
    }
  }, 6000);
}

export function onCalibration(m) {
  ui.calibStarted = false;
  if (!m.ok && /stopped/.test(m.message || '')) return; // left the landing view meanwhile
  ui.calibs = [...(ui.calibs || []), m];
  window.sgpDebug.calibrations = ui.calibs; // every measurement in full, for benchmarks
  // The quietest measurement so far: the least expected time per bit (failed and unsure
  // ones last, the latest of them first).
  const rank = (c) => {
    if (!c.ok) return [2, 0];
    const d = defaultToleranceFor(c);
    return d.unsure ? [1, 0] : [0, d.ms_per_bit];
  };
  const ranked = [...ui.calibs].reverse().sort((x, y) => rank(x)[0] - rank(y)[0] || rank(x)[1] - rank(y)[1]);
  sgp.calibration = ranked[0];
  sgp.calibrations = ui.calibs.map((c) => (c.ok ? { samples: c.samples, dev_p90_us: c.dev_p90_us, dev_p99_us: c.dev_p99_us, dev_p996_us: c.dev_p996_us } : { ok: false }));
  if (ui.calibrating && ui.calibs.some(usefulCalibration)) ui.calibrating = false;
  if (ui.calibs.length < CALIBRATION_TRIES && ui.view === 'landing' && !ui.joining) {
    maybeCalibrate();
  } else {
    ui.calibrating = false;
    sgp.calibrationDone = true;
  }
  applyToleranceDefault();
}

// gen-tolerance-vectors.mjs — writes tests/vectors/tolerance/rule.json: the default-tolerance rule
// (timing.js toleranceRule, browserFloor, fromPings) on calibrations and round trips of every
// kind a poster meets, with what it picks. src/tolerance.rs is held to the same file
// (tests/tolerance_vectors.rs), and so is timing.js (timing.test.mjs). Run it only when the
// rule changes on purpose: `node client/test/gen-tolerance-vectors.mjs`.

import { writeFileSync } from 'node:fs';
import { toleranceRule, browserFloor, fromPings, TERMINAL_FLOOR_MS } from '../js/timing.js';

/** A small deterministic generator (mulberry32), so the file is the same on every run. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const series = (n, f) => Array.from({ length: n }, (_, i) => Math.round(f(i)));
const r = rng(2026);
const calibrations = {
  none: null,
  too_few: series(100, () => 50),
  quiet: series(300, () => 30 + 200 * r()),
  busy: series(300, () => -800 * Math.log(1 - r())),
  stall: series(300, (i) => (i % 97 === 5 ? 20_000 : 100 * r())),
  scattered: series(300, (i) => (i % 9 === 0 ? 1_000 + 3_000 * r() : 200 * r())),
  far: series(300, () => 1_500 + 2_500 * r()),
  hopeless: series(300, () => 40_000),
  wifi: series(300, () => 2_000 * r() * r() + (r() < 0.02 ? 30_000 : 0)),
};
const pings = {
  none: [],
  loopback: [60, 62, 61, 70, 64, 66, 63, 90],
  busy: [50, 60, 90, 95, 88, 70, 300, 91],
  wireless: [2_000, 9_000, 4_000, 30_000],
  odd: [100, 117, 130],
};
const floors = { isolated: browserFloor(true, 5), not_isolated: browserFloor(false, 100), coarse: browserFloor(true, 300), terminal: TERMINAL_FLOOR_MS };

const cases = [];
for (const [fn, floor] of Object.entries(floors)) {
  for (const [cn, devs] of Object.entries(calibrations)) {
    for (const [pn, delays] of Object.entries(pings)) {
      if (devs && pn !== 'none' && pn !== 'busy') continue; // with a calibration the round trips do not count
      const usable = devs && devs.length >= 120 ? devs : null;
      cases.push({ floor_ms: floor, calibration: cn, pings: pn, expect: toleranceRule(floor, usable, delays) });
    }
  }
}
const doc = {
  description: 'The default-tolerance rule (docs/poster.md; timing.js toleranceRule, src/tolerance.rs tolerance_rule). ' +
    'A case names its calibration (deviations, µs: used only when at least 120) and its round trips (µs). ' +
    'success and ms_per_bit agree to 1e-9 (relative); the rest exactly.',
  floors: { isolated_5us: floors.isolated, not_isolated_100us: floors.not_isolated, isolated_300us: floors.coarse },
  calibrations,
  pings,
  from_pings: Object.fromEntries(Object.entries(pings).map(([k, d]) => [k, fromPings(d)])),
  cases,
};
writeFileSync(new URL('../../tests/vectors/tolerance/rule.json', import.meta.url), JSON.stringify(doc) + '\n');
console.log(`${cases.length} cases written to tests/vectors/tolerance/rule.json`);

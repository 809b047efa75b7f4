// flows.test.mjs — the page used with the keyboard alone, with settings that are not the
// defaults, and watched by an eavesdropper who arrives in the middle of a round (issue 4:
// "keyboard-usable", "target bits", "in observer mode, what the eavesdropper knows").
//
// One room for all three tests: A creates it by keyboard (tolerance 3 ms, target 64 bits: the
// rounds are 1.2 s long, so an observer can arrive mid-round), B joins by keyboard, both start
// by keyboard, E presses Watch while the first round runs; the key must reach strength ≥ 64.
// Then A leaves by keyboard.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let fx;
const s = {};

before(async () => {
  fx = await h.fixture();
});

after(async () => {
  if (fx) await fx.close();
});

const focused = (p) => p.evaluate(() => {
  const e = document.activeElement;
  return e ? e.id || e.getAttribute('data-testid') || e.tagName.toLowerCase() : null;
});

/** Presses Tab until the element with `id` has the focus; returns the ids passed on the way. */
async function tabTo(p, id, max = 25) {
  const path = [];
  for (let k = 0; k < max; k++) {
    await p.keyboard.press('Tab');
    const f = await focused(p);
    path.push(f);
    if (f === id) return path;
  }
  throw new Error(`Tab never reached #${id}: ${path.join(' → ')}`);
}

test('keyboard only: create (non-default tolerance and target), join by code, start; focus follows the view', { timeout: 120_000 }, async (t) => {
  s.A = await fx.page('alice (keyboard)');
  s.B = await fx.page('bob (keyboard)');
  s.E = await fx.page('eve (mid-round)');
  const { A, B, E } = s;

  await A.goto(`${fx.server.url}/`);
  // Create waits for the page's jitter measurement; then everything by keyboard.
  await A.waitForFunction(() => !document.getElementById('create').disabled, null, { timeout: 20_000 });
  const toTol = await tabTo(A, 'tolerance');
  t.diagnostic(`Tab order to the tolerance field: ${toTol.join(' → ')}`);
  assert.ok(toTol.length <= 5, 'the tolerance field is among the first stops (after the skip link, the brand and the theme button)');
  await A.keyboard.press('ControlOrMeta+A');
  await A.keyboard.type('3');
  await A.keyboard.press('Tab');
  assert.equal(await focused(A), 'target-bits', 'Tab goes on to the target');
  await A.keyboard.press('ControlOrMeta+A');
  await A.keyboard.type('64');
  await A.keyboard.press('Tab');
  assert.equal(await focused(A), 'create', 'and then to Create');
  await A.keyboard.press('Enter');
  await h.waitRole(A, 'alice');
  s.code = await h.text(A, 'room-code');
  await A.waitForFunction(() => document.activeElement && document.activeElement.id === 'room-title', null, { timeout: 5_000 })
    .catch(async () => assert.fail(`after Create the focus is on the room heading, not on ${await focused(A)}`));
  const params = (await h.state(A)).params;
  assert.equal(params.tolerance_ms, 3, 'the room got the typed tolerance');
  assert.equal(params.target_bits, 64, 'and the typed target');

  // B types the code into the join form and presses Enter.
  await B.goto(`${fx.server.url}/`);
  await tabTo(B, 'join-code');
  await B.keyboard.type(s.code);
  await B.keyboard.press('Enter');
  await h.waitRole(B, 'bob');
  assert.equal(await focused(B), 'room-title', 'after joining, the focus is on the room heading');
  assert.equal((await h.state(B)).params.tolerance_ms, 3);

  // E waits on the landing form with the code typed in, to press Watch mid-round.
  await E.goto(`${fx.server.url}/`);
  await h.byTestid(E, 'join-code').fill(s.code);

  // Start on both by keyboard: Enter on A, Space on B. Start keeps the focus while it is off.
  await tabTo(A, 'start');
  await A.keyboard.press('Enter');
  await tabTo(B, 'start');
  await B.keyboard.press('Space');
  await A.waitForFunction(() => window.sgpState.running, null, { timeout: 10_000 });
  assert.equal(await h.attr(A, 'start', 'aria-disabled'), 'true', 'Start is off while the session runs');
  assert.equal(await focused(A), 'start', 'and still has the keyboard focus');
});

test('an observer who arrives mid-round sees that round without its window, and the next ones whole', { timeout: 180_000 }, async (t) => {
  const { A, B, E } = s;
  assert.ok(s.code, 'needs the room of the first test');
  // The first round is running on A (its progress between 10 % and 60 %): press Watch now.
  await A.waitForFunction(() => {
    const p = document.querySelector('[data-testid="round-progress"]');
    const v = p ? Number(p.getAttribute('aria-valuenow')) : 0;
    return window.sgpState.rounds.length === 0 && v >= 10 && v <= 60;
  }, null, { timeout: 60_000, polling: 20 });
  await h.byTestid(E, 'watch').click();
  await h.waitRole(E, 'observer');
  assert.equal(await focused(E), 'room-title', 'after Watch, the focus is on the room heading');
  const k = await h.waitKeys([A, B], 150_000);
  h.checkKey(assert, k[0], 'A', 64);
  h.checkKey(assert, k[1], 'B', 64);
  assert.equal(k[0].key, k[1].key, 'the same key');
  const strength = Number(k[0].strength);
  assert.ok(strength >= 64, `strength ${strength} ≥ the room's target 64`);
  assert.equal(await h.attr(A, 'session-progress', 'aria-valuemax'), '64', 'the session bar counts to the room\'s target');
  t.diagnostic(`key ${k[0].key.slice(0, 16)}… strength ${strength} after ${(await h.state(A)).rounds.length} rounds`);

  const posterRounds = (await h.state(A)).rounds;
  await E.waitForFunction((n) => window.sgpState.rounds.length >= n, posterRounds.length, { timeout: 15_000 });
  const seen = (await h.state(E)).rounds;
  t.diagnostic(`observer rounds: ${JSON.stringify(seen.map((r) => ({ round: r.round, n: r.n, kept: r.kept, window_known: r.window_known })))}`);
  assert.equal(seen.length, posterRounds.length, 'the observer saw every round that closed (the first one too)');
  assert.equal(seen[0].round, 1);
  assert.equal(seen[0].window_known, false, 'it did not see the first round\'s start');
  assert.equal(seen[0].n, posterRounds[0].n, 'but it has that round\'s whole board');
  // (A session can end without a key — a disagreement — and the next one starts by itself:
  // rounds are told apart by session too.)
  const cap = await E.locator(`figure[data-round="1"][data-session="${seen[0].session}"] figcaption`).textContent();
  assert.match(cap, /window unknown \(joined mid-round\)/, `the picture says the window is unknown: "${cap}"`);
  for (const [i, r] of seen.entries()) {
    if (i === 0) continue;
    assert.equal(r.window_known, true, `round ${r.round}: window known`);
    assert.equal(r.kept, posterRounds[i].kept, `round ${r.round}: the public sift keeps what the posters keep`);
  }
  assert.equal((await h.state(E)).key, null, 'no key for the observer');
});

test('Leave by keyboard puts the focus back on the landing view', { timeout: 60_000 }, async () => {
  const { A } = s;
  await tabTo(A, 'leave');
  await A.keyboard.press('Enter');
  await h.byTestid(A, 'create').waitFor({ state: 'visible', timeout: 10_000 });
  assert.equal(await focused(A), 'landing-title', 'the focus is on the landing heading');
  await A.keyboard.press('Tab');
  assert.equal(await focused(A), 'tolerance', 'and the next Tab reaches the first field');
});

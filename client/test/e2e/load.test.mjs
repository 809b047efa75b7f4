// The page loads from the binary alone: nothing leaves 127.0.0.1, the page is cross-origin
// isolated on localhost (precise timers), the landing form is there, the default tolerance is
// the one timing.js picks from the page's own measurement (and the room gets it), and joining
// by code or as a watcher works from the form; a third poster and an unknown code are turned
// away in words.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';
import { defaultTolerance, roundDurationMs, FLOOR_MS, MAX_DEFAULT_TOLERANCE_MS } from '../../js/timing.js';

let fx;

before(async () => {
  fx = await h.fixture();
});

after(async () => {
  if (fx) await fx.close();
});

test('the page loads with no request leaving 127.0.0.1, cross-origin isolated', { timeout: 120_000 }, async (t) => {
  const p = await fx.page('landing');
  const bad = [];
  p.on('response', (r) => {
    if (r.status() >= 400) bad.push(`${r.status()} ${r.url()}`);
  });
  const sockets = [];
  p.on('websocket', (ws) => sockets.push(ws.url()));
  const resp = await p.goto(`${fx.server.url}/`, { waitUntil: 'networkidle' });
  assert.equal(resp.status(), 200);
  // Everything the landing page promises.
  for (const id of ['tolerance', 'tolerance-why', 'target-bits', 'create', 'join-code', 'join', 'watch', 'theme']) {
    assert.equal(await h.byTestid(p, id).count() > 0, true, `data-testid="${id}" is on the landing page`);
  }
  // The default comes from the page's measurements (timers, then ~1.5 s of test messages).
  const { timing, calibration } = await p.waitForFunction(() => {
    const s = window.sgpState;
    // Settled: measured, and Create enabled (a measurement that said nothing is taken again).
    const settled = s && s.timing && s.calibration && s.calibrationDone && !document.getElementById('create').disabled;
    return settled ? { timing: s.timing, calibration: s.calibration } : false;
  }, null, { timeout: 30_000, polling: 100 }).then((x) => x.jsonValue());
  const tol = Number(await h.byTestid(p, 'tolerance').inputValue());
  const why = await h.text(p, 'tolerance-why');
  const bits = Number(await h.byTestid(p, 'target-bits').inputValue());
  t.diagnostic(`default tolerance ${tol} ms (${why}); target ${bits} bits; timing ${JSON.stringify(timing)}; calibration ${JSON.stringify(calibration)}`);
  assert.equal(await p.evaluate(() => crossOriginIsolated), true, 'crossOriginIsolated on localhost');
  assert.equal(timing.isolated, true, 'the worker measured an isolated context');
  const expect = defaultTolerance(true, timing.precision_us, calibration);
  assert.equal(tol, expect.ms, `the field holds what timing.js picks from the page's own measurements (${JSON.stringify(expect)})`);
  assert.ok(tol >= FLOOR_MS.isolated && tol <= MAX_DEFAULT_TOLERANCE_MS, `an isolated page's default is within [${FLOOR_MS.isolated}, ${MAX_DEFAULT_TOLERANCE_MS}] ms (${tol})`);
  assert.ok(why.startsWith(`Default ${tol} ms.`), `tolerance-why names the default: "${why}"`);
  assert.match(why, /is cross-origin isolated/, 'tolerance-why says the page is isolated');
  assert.ok(why.includes(`timers tick every ${timing.precision_us} µs`), 'tolerance-why names the measured timer precision');
  assert.equal(calibration.ok, true, `the jitter measurement worked: ${JSON.stringify(calibration)}`);
  assert.ok(calibration.samples >= 50, `${calibration.samples} calibration samples`);
  assert.ok(why.includes(`of ${calibration.samples} test messages`), 'tolerance-why names the measurement (its sample count)');
  assert.ok(why.includes(`${(calibration.dev_p996_us / 1000).toFixed(2)} ms`), 'tolerance-why names the measured spread');
  assert.ok(why.includes(`At ${tol} ms, in rounds of ${expect.posts} posts each, about ${Math.round(100 * expect.success)}% of each round's entries would count`),
    'tolerance-why names the model\'s estimate for the default');
  assert.equal(bits, 256, 'target 256 bits by default');
  assert.equal(await p.evaluate(() => typeof window.sgpState === 'object' && window.sgpState !== null), true, 'window.sgpState exists');

  // /healthz answers JSON.
  const hz = await p.request.get(`${fx.server.url}/healthz`);
  assert.equal(hz.status(), 200);
  assert.equal((await hz.json()).ok, true);

  // Through a whole room too (the worker's socket and everything the room view loads).
  await h.click(p, 'create');
  await h.waitRole(p, 'alice');
  const params = (await h.state(p)).params;
  assert.equal(params.tolerance_ms, tol, 'the room got the tolerance the field showed (joined.params)');
  assert.equal(params.target_bits, 256, 'and the target');
  assert.equal(params.duration_ms, roundDurationMs(tol, expect.posts), `and rounds of ${expect.posts} posts per poster`);
  assert.equal(await p.locator('#room-tolerance').textContent(), String(tol), 'the clock panel shows the room\'s tolerance');
  const iso = await h.text(p, 'isolation');
  assert.match(iso, /^Cross-origin isolated: yes\./, `the isolation line says yes: "${iso}"`);
  assert.ok(iso.includes(`(${timing.precision_us} µs)`), 'and names the timer precision');
  // On 127.0.0.1 the link works on this machine only: the page says so, and how to get one that does not.
  const note = await h.text(p, 'link-note');
  assert.ok(await h.byTestid(p, 'link-note').isVisible(), 'the loopback note is shown');
  assert.match(note, /only on this computer/, `link-note: "${note}"`);
  assert.match(note, /--bind 0\.0\.0\.0/, 'link-note says how to get a LAN link');
  await p.waitForLoadState('networkidle');
  for (const u of sockets) assert.match(u, /^ws:\/\/127\.0\.0\.1:\d+\//, `the WebSocket stays local: ${u}`);
  const w = p.sgpWatch;
  t.diagnostic(`requests: ${[...new Set(w.requests.map((u) => u.replace(fx.server.url, '')))].join(' ')}; websockets: ${sockets.join(' ')}`);
  assert.deepEqual(w.external, [], 'no request leaves 127.0.0.1');
  assert.deepEqual(bad, [], 'every resource the page asked for loaded');
  await h.assertClean(p);
});

test('joining by code, and watching, from the landing form', { timeout: 120_000 }, async () => {
  const A = await fx.page('creator');
  const { code, link } = await h.createRoom(A, fx.server);
  await h.waitRole(A, 'alice');
  for (const id of ['room-code', 'room-link', 'copy-link', 'role', 'peers', 'start', 'reset', 'leave', 'status',
    'round-progress', 'session-progress', 'clock-offset', 'clock-delay', 'timer-precision', 'isolation', 'confirmed']) {
    assert.equal(await h.byTestid(A, id).count() > 0, true, `data-testid="${id}" is in the room view`);
  }
  assert.ok(link.includes(`room=${encodeURIComponent(code)}`));

  const B = await fx.page('joiner');
  await B.goto(`${fx.server.url}/`);
  await h.byTestid(B, 'join-code').fill(code);
  await h.click(B, 'join');
  await h.waitRole(B, 'bob');
  assert.equal(await h.text(B, 'room-code'), code);

  const E = await fx.page('watcher');
  await E.goto(`${fx.server.url}/`);
  await h.byTestid(E, 'join-code').fill(code);
  await h.click(E, 'watch');
  await h.waitRole(E, 'observer');
  assert.equal((await h.state(E)).role, 'observer');

  // A third poster is turned away in words a person can read (sgpState.status, shown on the
  // page), with the server's error in sgpState.errors, and not a frozen page.
  const X = await fx.page('third poster');
  h.expectErrors(X, { codes: ['room_full'] });
  await X.goto(link);
  const st = await X.waitForFunction(() => {
    const s = window.sgpState;
    return s && s.errors && s.errors.length > 0 && s.status ? { status: s.status, errors: s.errors, text: document.body.innerText } : false;
  }, null, { timeout: 15_000, polling: 100 }).then((x) => x.jsonValue());
  assert.ok(!['alice', 'bob'].includes((await h.state(X)).role), 'a third poster gets no seat');
  assert.ok(st.text.includes(st.status), `the refusal is shown on the page: "${st.status}"`);
  assert.match(st.status, /already has both of its posters.*watch/i, `room_full in words: "${st.status}"`);
  assert.ok(await h.byTestid(X, 'join-code').isVisible(), 'the third poster is back at the landing form');
  for (const p of [A, B, E, X]) await h.assertClean(p);
});

test('an unknown room code is turned away in words, on the landing form, by keyboard', { timeout: 60_000 }, async () => {
  const P = await fx.page('wrong code');
  h.expectErrors(P, { codes: ['no_such_room'] });
  await P.goto(`${fx.server.url}/`);
  await h.byTestid(P, 'join-code').fill('ZZZZZ-ZZZZZ');
  await h.byTestid(P, 'join-code').press('Enter');
  const text = await h.waitText(P, 'alert-text', /no room/i, 15_000);
  assert.equal((await h.state(P)).status, text, 'sgpState.status says the same');
  assert.match(text, /^There is no room ZZZZZ-ZZZZZ on this server\. Check the code/, `no_such_room in words: "${text}"`);
  assert.ok(await h.byTestid(P, 'alert-text').isVisible(), 'the alert is shown');
  assert.equal(await P.evaluate(() => document.activeElement && document.activeElement.id), 'join-code', 'the focus is back on the code field');
  assert.equal(await h.byTestid(P, 'join-code').inputValue(), 'ZZZZZ-ZZZZZ', 'the code is still there to correct');
  const st = await h.state(P);
  assert.equal(st.role, null, 'no seat');
  assert.deepEqual(st.errors.map((e) => e.code), ['no_such_room'], 'the server\'s code is noted');
});

// The page loads from the binary alone: nothing leaves 127.0.0.1, the page is cross-origin
// isolated on localhost (precise timers), the landing form is there, and joining by code or
// as a watcher works from the form.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

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
  const tol = Number(await h.byTestid(p, 'tolerance').inputValue());
  assert.ok(tol > 0, `the default tolerance is a positive number of ms (${tol})`);
  const why = await h.text(p, 'tolerance-why');
  assert.ok(why.length > 0, 'tolerance-why says why');
  const bits = Number(await h.byTestid(p, 'target-bits').inputValue());
  t.diagnostic(`default tolerance ${tol} ms (${why}); target ${bits} bits`);
  assert.equal(await p.evaluate(() => crossOriginIsolated), true, 'crossOriginIsolated on localhost');
  assert.equal(await p.evaluate(() => typeof window.sgpState === 'object' && window.sgpState !== null), true, 'window.sgpState exists');

  // /healthz answers JSON.
  const hz = await p.request.get(`${fx.server.url}/healthz`);
  assert.equal(hz.status(), 200);
  assert.equal((await hz.json()).ok, true);

  // Through a whole room too (the worker's socket and everything the room view loads).
  await h.click(p, 'create');
  await h.waitRole(p, 'alice');
  await p.waitForLoadState('networkidle');
  for (const u of sockets) assert.match(u, /^ws:\/\/127\.0\.0\.1:\d+\//, `the WebSocket stays local: ${u}`);
  const w = p.sgpWatch;
  t.diagnostic(`requests: ${[...new Set(w.requests.map((u) => u.replace(fx.server.url, '')))].join(' ')}; websockets: ${sockets.join(' ')}`);
  if (w.consoleErrors.length) t.diagnostic(`console errors (not failing): ${w.consoleErrors.join(' | ')}`);
  assert.deepEqual(w.external, [], 'no request leaves 127.0.0.1');
  assert.deepEqual(bad, [], 'every resource the page asked for loaded');
  h.assertClean(p);
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
  await X.goto(link);
  const st = await X.waitForFunction(() => {
    const s = window.sgpState;
    return s && s.errors && s.errors.length > 0 && s.status ? { status: s.status, errors: s.errors, text: document.body.innerText } : false;
  }, null, { timeout: 15_000, polling: 100 }).then((x) => x.jsonValue());
  assert.ok(!['alice', 'bob'].includes((await h.state(X)).role), 'a third poster gets no seat');
  assert.ok(st.text.includes(st.status) || st.errors.some((e) => st.text.includes(e.message)),
    `the refusal is shown on the page: "${st.status}"`);
  for (const p of [A, B, E, X]) h.assertClean(p);
});

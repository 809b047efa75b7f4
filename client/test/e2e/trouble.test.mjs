// trouble.test.mjs — what the page says when things go wrong, and that it never freezes
// (issue 4: "desyncs, retries, a peer leaving and server errors are shown in words a person
// understands, never as a frozen page"):
// - a room whose tolerance is far too tight for a browser (0.05 ms): rounds fall out of sync,
//   are dropped and retried, until the posters give up; the words say so, and Start works again;
// - the server process killed mid-round: a readable message and a Reconnect button; Reconnect
//   while it is down says it cannot reach it; once a server is back on the same port, Reconnect
//   reaches it and is told, in words, that the room is gone; a new room can then be made.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let browser;
const servers = [];

after(async () => {
  if (browser) await h.within(20_000, 'browser close', browser.close()).catch(() => {});
  for (const s of servers) await s.stop();
});

/** Starts keeping every status sentence `page` shows (read back with statusLog). */
const logStatus = (page) => page.evaluate(() => {
  const e = document.querySelector('[data-testid="status"]');
  window.__statusLog = [e.textContent.trim()];
  new MutationObserver(() => {
    const t = e.textContent.trim();
    if (window.__statusLog.at(-1) !== t) window.__statusLog.push(t);
  }).observe(e, { childList: true, characterData: true, subtree: true });
});
const statusLog = (page) => page.evaluate(() => window.__statusLog);

test('a tolerance far too tight: rounds are dropped and retried in plain words, then the posters give up and can start again', { timeout: 180_000 }, async (t) => {
  const server = await h.startServer();
  servers.push(server);
  browser = await h.launchBrowser();
  const A = await h.newPage(browser, 'alice (0.05 ms)');
  const B = await h.newPage(browser, 'bob (0.05 ms)');
  await h.twoPosters(server, A, B, { toleranceMs: 0.05 });
  assert.equal((await h.state(A)).params.tolerance_ms, 0.05);
  await logStatus(A);
  await logStatus(B);
  await h.startAll(A, B);
  // Both stop by themselves: one gives up, the other is told.
  for (const p of [A, B]) {
    await p.waitForFunction(() => !window.sgpState.running && /gave up/i.test(window.sgpState.status), null, { timeout: 170_000, polling: 100 })
      .catch(async (e) => assert.fail(`${p.sgpWatch.name} did not give up: ${e.message.split('\n')[0]}; ${await h.describe(p)}`));
  }
  const [la, lb] = [await statusLog(A), await statusLog(B)];
  const sa = await h.state(A);
  t.diagnostic(`A: ${sa.rounds.length} rounds, ${sa.rounds.filter((r) => r.dropped || r.desync).length} dropped; last status "${sa.status}"`);
  t.diagnostic(`A said: ${[...new Set(la)].slice(0, 8).map((x) => `"${x}"`).join(' | ')} …`);
  t.diagnostic(`B said at the end: "${lb.at(-1)}"`);
  assert.ok(sa.rounds.length >= 3, 'several rounds were posted');
  assert.ok(sa.rounds.every((r) => r.dropped || r.desync), 'none of them counted');
  const all = [...la, ...lb];
  // Dropped rounds, explained: what went wrong, with the room's tolerance, and that it goes on.
  assert.ok(all.some((x) => /^Round \d+ (was dropped|is out of sync for me): .*further from when (it was|they were) expected than (this room's|the) tolerance \(0\.05 ms\) allows.*another (round|one) follows\.$/.test(x)),
    'a dropped round is said in words, with the tolerance');
  // Retries, counted.
  assert.ok(all.some((x) => /\(\d+ dropped in a row; it gives up after 30 s without one that counts\)/.test(x)), 'the retries are counted');
  // Giving up, with what to do.
  const GAVE_UP = /^Gave up after \d+ rounds or sessions in a row failed, over 3\d s \(the last: a round out of sync\)\. Press Start to try again; if it keeps happening, this room's tolerance \(0\.05 ms\) is too tight for these browsers: create a room with the default tolerance\.$/;
  const PEER_GAVE_UP = /^The peer gave up after too many rounds in a row were dropped\. Press Start to try again; .*\(0\.05 ms\) is too tight/;
  assert.ok(GAVE_UP.test(la.at(-1)) || GAVE_UP.test(lb.at(-1)), `the one that gave up says why and what to do: "${la.at(-1)}" / "${lb.at(-1)}"`);
  // (Both may give up at the same round; otherwise the other is told.)
  for (const x of [la.at(-1), lb.at(-1)]) assert.ok(GAVE_UP.test(x) || PEER_GAVE_UP.test(x), `each says it gave up or that its peer did: "${x}"`);
  // Not frozen: Start is on again on both, and pressing it starts over.
  for (const p of [A, B]) assert.equal(await h.attr(p, 'start', 'aria-disabled'), 'false', `${p.sgpWatch.name}: Start is on again`);
  await h.click(A, 'start');
  await h.waitText(A, 'status', /^(Syncing clocks|Ready\. Waiting for bob)/, 10_000);
  await A.context().close();
  await B.context().close();
});

test('the server killed mid-round: a readable message and Reconnect; back on the same port, the room is gone, in words', { timeout: 120_000 }, async (t) => {
  const server = await h.startServer();
  servers.push(server);
  if (!browser) browser = await h.launchBrowser();
  const A = await h.newPage(browser, 'alice (server killed)');
  const B = await h.newPage(browser, 'bob (server killed)');
  const { code } = await h.twoPosters(server, A, B);
  // Chromium logs the failed WebSocket connections of Reconnect while the server is down.
  for (const p of [A, B]) h.expectErrors(p, { console: [/WebSocket connection to .* failed/], codes: ['connection', 'no_such_room'] });
  await h.startAll(A, B);
  await A.waitForFunction(() => {
    const v = Number(document.querySelector('[data-testid="round-progress"]').getAttribute('aria-valuenow'));
    return window.sgpState.running && v > 0 && v < 100;
  }, null, { timeout: 60_000, polling: 20 });
  const t0 = Date.now();
  await server.kill();
  for (const p of [A, B]) {
    const text = await h.waitText(p, 'alert-text', /Lost the connection/, 10_000)
      .catch(async (e) => assert.fail(`${p.sgpWatch.name}: no "lost the connection" message: ${e.message.split('\n')[0]}; ${await h.describe(p)}`));
    t.diagnostic(`${p.sgpWatch.name} ${Date.now() - t0} ms after the kill: "${text}"`);
    assert.match(text, new RegExp(`^Lost the connection to the server at 127\\.0\\.0\\.1:${server.port}: it stopped or restarted, or the network dropped\\. ` +
      `Any session in progress stopped\\. Press Reconnect to join room ${code} again`), 'in words');
    assert.equal((await h.state(p)).status, text, 'the status says the same');
    assert.ok(await h.byTestid(p, 'reconnect').isVisible(), 'with a Reconnect button');
    assert.equal(await h.attr(p, 'start', 'aria-disabled'), 'true', 'Start is off while there is no connection');
    assert.equal((await h.state(p)).running, false);
  }
  assert.ok(Date.now() - t0 < 5_000, 'said within 5 s');
  // Not frozen: the page still answers (the theme toggles).
  const before = await h.attr(A, 'theme', 'aria-pressed');
  await h.click(A, 'theme');
  assert.notEqual(await h.attr(A, 'theme', 'aria-pressed'), before, 'the page still answers clicks');
  await h.click(A, 'theme');

  // Reconnect while the server is down: it says it cannot reach it, and offers Reconnect again.
  await h.byTestid(A, 'reconnect').click();
  const down = await h.waitText(A, 'alert-text', /^Could not reach/, 10_000);
  assert.match(down, new RegExp(`^Could not reach the server at 127\\.0\\.0\\.1:${server.port}: is sgp serve still running there\\? Press Reconnect to try again`));
  assert.ok(await h.byTestid(A, 'reconnect').isVisible());

  // A server again on the same port (a restart): Reconnect reaches it; the room is gone.
  const again = await h.startServer([], { port: server.port });
  servers.push(again);
  await h.byTestid(A, 'reconnect').click();
  const gone = await h.waitText(A, 'alert-text', /no room/, 10_000);
  t.diagnostic(`after the restart, Reconnect says: "${gone}"`);
  assert.match(gone, new RegExp(`^There is no room ${code} on this server\\..*when the server restarts\\.$`));
  assert.ok(await h.byTestid(A, 'create').isVisible(), 'back on the landing form');
  assert.equal(await h.byTestid(A, 'join-code').inputValue(), code, 'with the code filled in');
  // …from where a new room works.
  await h.click(A, 'create');
  await h.waitRole(A, 'alice');
  await A.context().close();
  await B.context().close();
});

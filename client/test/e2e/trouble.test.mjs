// trouble.test.mjs — what the page says when things go wrong, and that it never freezes
// (issue 4: "desyncs, retries, a peer leaving and server errors are shown in words a person
// understands, never as a frozen page"):
// - a room created with a tolerance far too tight for a browser (0.05 ms, typed, so fixed for
//   its creator): the joining page asks for its own, and the rounds run at that (the room's
//   params still say 0.05 ms) and make a key (docs/protocol.md §6, "Adapting");
// - the same room with a hand-driven peer that asks nothing and finds every round out of sync:
//   every round runs at 0.05 ms and is dropped and retried, until the page gives up (its τ is
//   fixed, so every failure counts); the words say so, and Start works again;
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

/** The `start` messages of a poster's record (window.sgpRecord(): every message heard since
 *  the last `joined`), in order: [{session, round, tolerance_ms, rate_hz}]. */
async function startsOf(page) {
  const rec = await page.evaluate(() => window.sgpRecord());
  const starts = rec.messages.map((x) => x.msg).filter((m) => m && m.type === 'start');
  return {
    rec,
    starts: starts.map((m) => ({ session: m.session, round: m.round, tolerance_ms: m.params && m.params.tolerance_ms, rate_hz: m.params && m.params.rate_hz })),
  };
}

test('a tolerance far too tight is widened by the joiner\'s ask', { timeout: 300_000 }, async (t) => {
  const server = await h.startServer();
  servers.push(server);
  if (!browser) browser = await h.launchBrowser();
  const A = await h.newPage(browser, 'alice (0.05 ms, typed)');
  const B = await h.newPage(browser, 'bob (joiner, adapting)');
  // 0.05 ms typed at Create: alice's τ is fixed there (tolerance.js askRange); bob's page asks
  // for its own pick (the floor of its range), which the tolerance note names.
  await h.twoPosters(server, A, B, { toleranceMs: 0.05 });
  for (const p of [A, B]) assert.equal((await h.state(p)).params.tolerance_ms, 0.05, `${p.sgpWatch.name}: the room's params (joined) say 0.05 ms`);
  const note = await h.text(B, 'tolerance-note');
  t.diagnostic(`bob's tolerance note: "${note}"`);
  const pick = /\(it would pick (\d+(?:\.\d+)?) ms\)/.exec(note);
  assert.ok(pick && Number(pick[1]) > 0.05, `bob's page says the room is tighter than its own pick: "${note}"`);
  const bobPick = Number(pick[1]);
  await h.startAll(A, B);
  const [ka, kb] = await h.waitKeys([A, B], 270_000);
  h.checkKey(assert, ka, 'A');
  h.checkKey(assert, kb, 'B');
  assert.equal(ka.key, kb.key, 'both pages show the same key');
  assert.equal(ka.sgpKey.key, kb.sgpKey.key, 'window.sgpState.key.key agrees');

  // What the rounds ran at: the room's `start` messages, as each page heard them.
  const [ra, rb] = [await startsOf(A), await startsOf(B)];
  const sa = await h.state(A);
  t.diagnostic(`key ${ka.key.slice(0, 16)}… strength ${ka.strength}; ${sa.rounds.length} round(s) on A, ` +
    `${sa.rounds.filter((r) => r.dropped || r.desync).length} dropped; starts (τ ms @ rate Hz): ` +
    ra.starts.map((x) => `${x.round}: ${x.tolerance_ms} @ ${x.rate_hz}`).join(', '));
  assert.ok(ra.starts.length >= 1, 'alice heard the rounds start');
  assert.deepEqual(rb.starts, ra.starts, 'both pages heard the same starts');
  assert.ok(ra.starts.every((x) => typeof x.tolerance_ms === 'number'), 'every start carries the round\'s τ');
  // Every round runs at the widest τ the two readies asked (the first round too: Start sends
  // the first ask): bob's, at least his own pick, far above the room's 0.05 ms.
  for (const x of ra.starts) {
    assert.ok(x.tolerance_ms > 0.05, `round ${x.round} ran at τ ${x.tolerance_ms} ms, wider than the room's 0.05 ms`);
    assert.ok(x.tolerance_ms >= bobPick, `round ${x.round} ran at τ ${x.tolerance_ms} ms, at least bob's pick (${bobPick} ms)`);
  }
  // The records' rounds say the τ each was judged at, that of its start.
  for (const r of ra.rec.rounds) {
    const st = ra.starts.find((x) => x.session === r.session && x.round === r.round);
    assert.ok(st, `round ${r.round} of the record has its start`);
    assert.equal(r.params.tolerance_us, Math.round(st.tolerance_ms * 1000), `round ${r.round}: judged at its start's τ`);
  }
  // The room's own parameters did not change: still 0.05 ms, as `joined` said.
  assert.equal(ra.rec.params.tolerance_ms, 0.05, 'alice\'s record: the room\'s params say 0.05 ms');
  assert.equal(rb.rec.params.tolerance_ms, 0.05, 'bob\'s record: the room\'s params say 0.05 ms');
  for (const p of [A, B]) assert.equal((await h.state(p)).params.tolerance_ms, 0.05, `${p.sgpWatch.name}: sgpState.params still say 0.05 ms`);
  await A.context().close();
  await B.context().close();
});

test('a tolerance far too tight for a peer that does not adapt: rounds are dropped and retried in plain words, then the page gives up and can start again', { timeout: 300_000 }, async (t) => {
  const server = await h.startServer();
  servers.push(server);
  if (!browser) browser = await h.launchBrowser();
  const A = await h.newPage(browser, 'alice (0.05 ms, typed)');
  const { code } = await h.createRoom(A, server, { toleranceMs: 0.05 });
  await h.waitRole(A, 'alice');
  assert.equal((await h.state(A)).params.tolerance_ms, 0.05);
  // bob: a hand-driven WebSocket (in a page of the server's origin) that asks nothing, so
  // every round runs at the room's 0.05 ms, and finds every round out of sync, as a peer
  // that cannot hold 0.05 ms would (a real poster sometimes can: `sgp pair` and a quiet
  // page once made a key at 0.05 ms). It says done after t_end, desync after each closed,
  // and ready after each aborted; it never gives up.
  const bobPage = await h.newPage(browser, 'bob (hand-driven)');
  h.expectErrors(bobPage, { console: [/Failed to load resource: .* 404/] }); // its favicon
  await bobPage.goto(`${server.url}/healthz`);
  await bobPage.evaluate((room) => {
    const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/ws`);
    const send = (m) => ws.send(JSON.stringify(m));
    window.bobSaw = [];
    ws.onopen = () => send({ type: 'join', room });
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      window.bobSaw.push(m.type === 'error' ? `error ${m.code}` : m.type);
      if (m.type === 'joined' || m.type === 'aborted') send({ type: 'ready' });
      if (m.type === 'start') setTimeout(() => send({ type: 'done' }), (m.t_end_us - m.t_start_us) / 1000 + 60);
      if (m.type === 'error' && m.code === 'too_early') setTimeout(() => send({ type: 'done' }), 10);
      if (m.type === 'closed') send({ type: 'abort', reason: 'desync' });
    };
  }, code);
  try {
    await A.waitForFunction(() => window.sgpState.peers && window.sgpState.peers.bob, null, { timeout: 30_000, polling: 100 })
      .catch(async (e) => assert.fail(`bob did not join: ${e.message.split('\n')[0]}; ${await bobPage.evaluate(() => window.bobSaw.join(' '))}`));
    await logStatus(A);
    await h.startAll(A);
    // Alice's τ is fixed (typed), so it is her widest: every failure counts, and she gives up.
    const said = await A.waitForFunction(() => !window.sgpState.running && /gave up/i.test(window.sgpState.status) && window.sgpState.status, null, { timeout: 240_000, polling: 100 })
      .then((x) => x.jsonValue())
      .catch(async (e) => assert.fail(`alice did not give up: ${e.message.split('\n')[0]}; ${await h.describe(A)}`));
    const la = await statusLog(A);
    const sa = await h.state(A);
    const { starts } = await startsOf(A);
    const failed = (r) => r.dropped || r.desync;
    // The rounds since the last that counted (a round may now and then be in sync for both,
    // even at 0.05 ms: that starts the count again).
    const streak = sa.rounds.length - 1 - sa.rounds.findLastIndex((r) => !failed(r));
    t.diagnostic(`A: ${sa.rounds.length} rounds, ${sa.rounds.filter(failed).length} dropped, the last ${streak} in a row; ` +
      `the starts' τ (ms): ${[...new Set(starts.map((x) => x.tolerance_ms))].join(', ')}, rates (Hz): ${[...new Set(starts.map((x) => Math.round(x.rate_hz)))].join(', ')} (${starts.length} starts)`);
    t.diagnostic(`A said: ${[...new Set(la)].slice(0, 8).map((x) => `"${x}"`).join(' | ')} …`);
    t.diagnostic(`A gave up with: "${said}"; bob heard last: ${(await bobPage.evaluate(() => window.bobSaw.slice(-6))).join(' ')}`);
    assert.ok(sa.rounds.length >= 3, 'several rounds were posted');
    // It gave up after more than 20 failures in a row (RETRIES), each a dropped round (one the
    // page dropped for falling behind its own schedule does not count until its rate is at its
    // lowest, so the count may be below the rounds dropped). The count's "in a row" is the
    // engine's (only a start after a round kept by us ends it), not the record's: a round in
    // sync for us but dropped by the peer, or sessions, make the two differ (CI once saw 292
    // counted against a record's run of 290), so it is held to the rounds dropped in all.
    const inARow = Number(/^Gave up after (\d+) rounds or sessions in a row/.exec(said)?.[1]);
    assert.ok(inARow > 20, `more than 20 failures in a row before it gave up (${inARow})`);
    const dropped = sa.rounds.filter(failed).length;
    assert.ok(inARow <= dropped, `the failures it counted (${inARow}) are among the rounds dropped (${dropped})`);
    assert.ok(starts.length >= 3 && starts.every((x) => x.tolerance_ms === 0.05), `every round ran at the room's 0.05 ms (nobody widened it): ${starts.map((x) => x.tolerance_ms).join(', ')}`);
    // Dropped rounds, explained: what went wrong, with the room's tolerance, and that it goes on.
    assert.ok(la.some((x) => /^Round \d+ (was dropped|is out of sync for me): .*further from when (it was|they were) expected than (this room's|the) tolerance \(0\.05 ms\) allows.*another (round|one) follows\.$/.test(x)),
      'a dropped round is said in words, with the tolerance');
    // Retries, counted.
    assert.ok(la.some((x) => /\(\d+ dropped in a row; it gives up after 30 s without one that counts\)/.test(x)), 'the retries are counted');
    // Giving up, with what to do.
    const GAVE_UP = /^Gave up after \d+ rounds or sessions in a row failed, over 3\d s \(the last: a round out of sync\)\. Press Start to try again; if it keeps happening, this room's tolerance \(0\.05 ms\) is too tight for these browsers: create a room with the default tolerance\.$/;
    assert.match(said, GAVE_UP, 'the page that gave up says why and what to do');
    assert.equal(la.at(-1), said, 'and keeps saying it');
    // Not frozen: Start is on again, and pressing it starts over.
    assert.equal(await h.attr(A, 'start', 'aria-disabled'), 'false', 'Start is on again');
    await h.click(A, 'start');
    await h.waitText(A, 'status', /^(Syncing clocks|Ready\. Waiting for bob)/, 10_000);
  } finally {
    await bobPage.context().close();
  }
  await A.context().close();
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

// drops.test.mjs — a late post costs a span of the round, not the round: a page (alice, who
// creates the room) makes a key with a Node-side poster (bob, drops-bob.mjs: the protocol over
// a real WebSocket, client/js/secret.js for its derivation) that holds one post of every round
// back by 6τ. Each such round, bob sends `drop {spans}` before his verdict; the page hears
// `dropped`, derives the round again, replaces its counts and, if it had confirmed, confirms
// again. Both must reach the same confirmed key; an observer's page (?room=CODE&watch) must show
// the spans, and count what the posters count.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { resolve } from 'node:path';
import * as h from './harness.mjs';

let fx;
let bob = null;

before(async () => {
  fx = await h.fixture();
});

after(async () => {
  if (bob) await bob.worker.terminate();
  if (fx) await fx.close();
});

/** Starts drops-bob.mjs in a worker thread; resolves `joined` and `key` from its messages. */
function startBob(url, room) {
  // Node 22 has WebSocket; Node 20 only with this flag, which a worker thread may be given.
  const execArgv = typeof WebSocket === 'undefined' ? ['--experimental-websocket'] : [];
  const worker = new Worker(new URL('./drops-bob.mjs', import.meta.url), { workerData: { url, room }, execArgv });
  const events = [];
  let joined;
  let keyed;
  const b = {
    worker,
    events,
    joined: new Promise((res, rej) => {
      joined = { res, rej };
    }),
    key: new Promise((res, rej) => {
      keyed = { res, rej };
    }),
  };
  worker.on('message', (m) => {
    if (m.type === 'joined') joined.res(m);
    else if (m.type === 'key') keyed.res(m);
    else if (m.type === 'failed') {
      joined.rej(new Error(`bob failed: ${m.why}`));
      keyed.rej(new Error(`bob failed: ${m.why}`));
    } else if (m.type === 'event') events.push(m);
  });
  worker.on('error', (e) => {
    joined.rej(e);
    keyed.rej(e);
  });
  b.key.catch(() => {});
  b.joined.catch(() => {});
  return b;
}

test('a late post costs a span: the page and a Node poster agree on the key, the observer sees the spans', { timeout: 120_000 }, async (t) => {
  const A = await fx.page('alice');
  const E = await fx.page('observer');
  // 3 ms and 64 bits: rounds of about a second, a key in a handful of them. A generous τ keeps
  // the page's own posts in sync on a busy machine; bob's held post misses it by 6τ anyway.
  const { code } = await h.createRoom(A, fx.server, { toleranceMs: 3, targetBits: 64 });
  await h.waitRole(A, 'alice');
  await E.goto(`${fx.server.url}/?room=${encodeURIComponent(code)}&watch`);
  await h.waitRole(E, 'observer');

  bob = startBob(fx.server.url, code);
  const joined = await h.within(20_000, 'bob to join', bob.joined);
  assert.equal(joined.role, 'bob');
  const t0 = Date.now();
  await h.startAll(A);
  const [k, bk] = await Promise.all([
    h.waitKey(A, 90_000),
    h.within(90_000, 'bob\'s key', bob.key).catch(async (e) => {
      throw new Error(`${e.message}; bob's events ${JSON.stringify(bob.events.slice(-12))}; page: ${await h.describe(A)}`);
    }),
  ]);
  const ms = Date.now() - t0;
  t.diagnostic(`key ${k.key.slice(0, 16)}… strength ${k.strength} in ${ms} ms; bob ${JSON.stringify({ ...bk.stats, spans: bk.stats.spans.length })}`);
  t.diagnostic(`bob's events: ${JSON.stringify(bob.events.map((e) => ({ what: e.what, round: e.round, n: e.n, left_out: e.left_out, verdict: e.verdict })))}`);

  // The same confirmed key on both sides, made of the same rounds.
  h.checkKey(assert, k, 'alice', 64);
  assert.equal(k.key, bk.key, 'the page\'s key is the Node poster\'s');
  assert.equal(k.sgpKey.bits, bk.bits, 'the same raw bits');
  assert.deepEqual(k.sgpKey.per_round, bk.per_round, 'the same (n_r, a_r) for every round that counts');
  assert.equal(bk.stats.mismatches, 0, 'no confirmation mismatch on the way');
  assert.ok(bk.stats.drops_sent >= 1, `bob left out spans (${bk.stats.drops_sent} drops)`);

  // The page heard bob's `dropped` and applied it: its record has bob's spans as the peer's,
  // and its rounds show them.
  const rec = await A.evaluate(() => window.sgpRecord());
  const st = await h.state(A);
  const heard = rec.rounds.filter((r) => r.peer_spans.length > 0);
  assert.ok(heard.length >= 1, 'the page\'s record has the peer\'s spans of at least one round');
  for (const d of bk.stats.spans) {
    const r = rec.rounds.find((x) => x.session === d.session && x.round === d.round);
    assert.ok(r, `the page recorded round ${d.round}`);
    assert.deepEqual(r.peer_spans, d.spans, `round ${d.round}: the page heard exactly the spans bob sent`);
  }
  const spanned = st.rounds.filter((r) => r.spans.length > 0 && !r.dropped);
  assert.ok(spanned.length >= 1, 'sgpState.rounds: some round that counts has spans');
  assert.ok(spanned.every((r) => r.left_out >= 0 && r.kept + r.left_out <= r.n), 'kept counts the entries that count; left_out those the spans leave out');
  const keyRounds = st.rounds.filter((r) => r.session === k.sgpKey.session && !r.dropped && !r.desync);
  assert.deepEqual(keyRounds.map((r) => ({ round: r.round, n: r.kept, a: r.a })), k.sgpKey.per_round,
    'the key\'s per-round counts are the rounds\' kept entries (the sift less the spans)');
  // And the page's pictures: a shaded band, greyed entries, a caption that says so.
  const pageSpans = await A.$$eval('svg[data-testid="round-svg"] rect.span', (els) => els.length);
  assert.ok(pageSpans >= 1, 'the page draws the spans on its pictures');
  const caps = await A.$$eval('#timeline figcaption', (els) => els.map((e) => e.textContent));
  assert.ok(caps.some((c) => /· \d+ entr(y|ies) left out around (a late post|late posts)/.test(c)), `a caption says entries were left out: ${caps.slice(0, 3).join(' | ')}`);

  // The observer: the same spans (the union, never whose), the same counted entries.
  await E.waitForFunction((n) => window.sgpState.rounds.length >= n, st.rounds.length, { timeout: 15_000 });
  const se = await h.state(E);
  assert.equal(se.rounds.length, st.rounds.length, 'the observer saw every closed round');
  for (const [i, r] of st.rounds.entries()) {
    const o = se.rounds[i];
    assert.deepEqual([o.session, o.round], [r.session, r.round]);
    assert.deepEqual(o.spans, r.spans, `round ${r.round}: the observer knows the spans the posters left out`);
    assert.equal(o.kept, r.kept, `round ${r.round}: and counts the same kept entries`);
  }
  const svgs = await E.$$eval('svg[data-testid="round-svg"]', (els) => els.map((e) => ({
    session: e.getAttribute('data-session'), round: Number(e.getAttribute('data-round')),
    kept: Number(e.getAttribute('data-kept')), spans: Number(e.getAttribute('data-spans')), bands: e.querySelectorAll('rect.span').length,
  })));
  assert.ok(svgs.some((x) => x.spans > 0 && x.bands === x.spans), `the observer's pictures show the spans: ${JSON.stringify(svgs.slice(0, 6))}`);
  for (const x of svgs) {
    const r = st.rounds.find((y) => y.session === x.session && y.round === x.round);
    assert.ok(r, `the page has round ${x.round} too`);
    assert.equal(x.kept, r.kept, `round ${x.round}: the observer's data-kept is the posters' kept`);
  }
  const quiet = st.errors.filter((e) => e.quiet).map((e) => e.message);
  t.diagnostic(`the page's quiet errors: ${JSON.stringify(quiet)}`);
  const shot = resolve(h.screenshotDir(), 'drops-observer.png');
  await E.locator('#timeline').screenshot({ path: shot });
  t.diagnostic(`the observer's pictures: ${shot}`);
  // Spans are drawn alike whoever announced them: nothing in them names an owner.
  const marks = await E.$$eval('svg[data-testid="round-svg"] rect.span', (els) => els.map((e) => [...e.attributes].map((a) => `${a.name}=${a.value}`).join(' ')));
  assert.ok(marks.every((m) => !/mine|own|peer|alice|bob/i.test(m)), `span bands carry no owner: ${marks.slice(0, 3).join(' | ')}`);
  await h.assertClean(A);
  await h.assertClean(E);
});

// poster.test.mjs — client/js/poster.js against every transcript vector in
// tests/vectors/poster/*.json (the files src/poster.rs passes too), with the comparison rule of
// docs/poster.md, plus unit tests of each transition: two engines posting one round together
// (kept → confirm, the peer's dropped → confirm again or key_void, confirmed with a mismatched
// tag), the late rule's limit, and the policies' differences. A vector's top-level
// `adapt: {floor_us, ceil_us}` has the poster adapt from the start, as tests/poster_vectors.rs does.
// Run: node --test client/test/*.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { Poster, lateLimitUs, POLICIES, DONE_MARGIN_US } from '../js/poster.js';
import * as secret from '../js/secret.js';

const VECTORS = new URL('../../tests/vectors/poster/', import.meta.url);
const files = readdirSync(VECTORS).filter((f) => f.endsWith('.json')).sort();

test('the poster vectors are there', () => {
  assert.ok(files.length > 0, `no vectors found in ${VECTORS.pathname}`);
});

/** Feeds one step's input to the engine: the vector key → the method. */
function feed(p, input, now) {
  const [k, ...more] = Object.keys(input);
  assert.equal(more.length, 0, `one input per step, got ${Object.keys(input)}`);
  const v = input[k];
  switch (k) {
    case 'start': return p.start(now);
    case 'synced': return p.synced(v, now);
    case 'server': return p.handle(v, now);
    case 'scheduled': return p.scheduled(v.times_us, v.labels, now);
    case 'timeout': return p.onTimeout(now);
    case 'leave': return p.leave(now);
    case 'sent': return p.sent({ sent_us: v.sent_us, label: v.label }, !!v.held, now);
    case 'done_sent': return p.doneSent(now);
    default: throw new Error(`unknown input ${k}`);
  }
}

/**
 * docs/poster.md: the same number of actions, each with the same one key, and every field the
 * vector gives deep-equal in the action (which may carry more).
 */
function compare(got, want, where) {
  const keys = (xs) => xs.map((a) => Object.keys(a).join('+'));
  assert.equal(got.length, want.length, `${where}: ${got.length} actions ${JSON.stringify(keys(got))}, want ${JSON.stringify(keys(want))}`);
  want.forEach((w, j) => {
    const [k] = Object.keys(w);
    assert.deepEqual(Object.keys(got[j]), [k], `${where}: action ${j} is ${keys([got[j]])}, want ${k}`);
    for (const [field, value] of Object.entries(w[k])) {
      assert.deepEqual(got[j][k][field], value, `${where}: action ${j} (${k}).${field}`);
    }
  });
}

for (const file of files) {
  test(`vector ${file}`, () => {
    const v = JSON.parse(readFileSync(new URL(file, VECTORS), 'utf8'));
    assert.ok(v.policy in POLICIES, `${file}: policy ${v.policy}`);
    const p = new Poster({ policy: v.policy, retries: v.retries, room: v.room, role: v.role, params: v.params });
    if (v.adapt) p.adapt(v.adapt.floor_us, v.adapt.ceil_us);
    assert.ok(v.steps.length > 0, `${file}: no steps`);
    v.steps.forEach((s, k) => {
      const where = `${v.name} step ${k} (${Object.keys(s.in)[0]})`;
      compare(feed(p, s.in, s.t_us), s.out, where);
      if ('next_deadline_us' in s) assert.equal(p.nextDeadline(), s.next_deadline_us, `${where}: next_deadline_us`);
    });
  });
}

// ---------------------------------------------------------------------------------------
// Two engines, one round: a tiny room that stamps each post with its predicted time.

const T = 1_764_000_000_000_000;
const SESSION = 'ffeeddccbbaa99887766554433221100';
const ROOM = 'ABCDE-FGHJK';
/** Small tags and target, so that one round of 100 entries reaches it (strength 24). */
const PARAMS = { tolerance_ms: 1, rate_hz: 125, guard_ms: 2, target_bits: 1, tag_bits: 8, duration_ms: 520 };
const SYNC = { offset_us: 1000, delay_us: 200 };
const keysOf = (actions) => actions.map((a) => Object.keys(a)[0]);
const find = (actions, k) => actions.find((a) => k in a)?.[k];

/** A poster synced and ready, at local time `now`. */
function ready(role, policy = 'terminal', params = PARAMS) {
  const p = new Poster({ policy, retries: 3, room: ROOM, role, params });
  assert.deepEqual(keysOf(p.start(0)), ['sync']);
  assert.deepEqual(p.synced(SYNC, 1), [{ send: { type: 'ready' } }]);
  return p;
}

/**
 * Posts one round with both engines: alice at T + 5 ms + 10 ms·k, bob 5 ms after, k < posts,
 * in a window ending 20 ms after the last,
 * each on time; the board has each post at its prediction unless `moved` says otherwise
 * (`{'A3': +800}`: alice's fourth post lands 800 µs later). Returns the board and the
 * actions each engine gave when it closed.
 */
function playRound(alice, bob, { posts = 50, labels = (who, k) => ((k * 7 + (who === 'A' ? 1 : 0)) % 3 === 0 ? 'B' : 'A'), moved = {} } = {}) {
  const start = { type: 'start', session: SESSION, round: 1, t_start_us: T, t_end_us: T + 10_000 * posts + 20_000, params: PARAMS };
  const entries = [];
  for (const [who, p, first] of [['A', alice, 5_000], ['B', bob, 10_000]]) {
    const sched = p.handle(start, 2);
    assert.deepEqual(keysOf(sched), ['schedule']);
    const times = Array.from({ length: posts }, (_, k) => T + first + 10_000 * k);
    const labs = times.map((_, k) => labels(who, k));
    assert.deepEqual(p.scheduled(times, labs.join(''), 3), []);
    for (let k = 0; k < posts; k++) {
      const at = p.nextDeadline();
      const out = p.onTimeout(at);
      assert.deepEqual(out, [{ post: { label: labs[k], target_us: at } }]);
      p.sent({ sent_us: at, label: labs[k] }, false, at + 5);
      entries.push({ t_us: times[k] + (moved[`${who}${k}`] || 0), label: labs[k] });
    }
    const doneAt = p.nextDeadline();
    assert.equal(doneAt, T + 10_000 * posts + 20_000 - 1100 + DONE_MARGIN_US + 2000);
    assert.deepEqual(p.onTimeout(doneAt), [{ done: {} }]);
    p.doneSent(doneAt);
    assert.equal(p.nextDeadline(), null);
  }
  entries.sort((x, y) => x.t_us - y.t_us);
  const board = entries.map((e, i) => ({ i, ...e }));
  const closed = { type: 'closed', session: SESSION, round: 1, board };
  return { board, a: alice.handle(closed, 10), b: bob.handle(closed, 10) };
}

/** The bits of a board where every entry is kept and its poster is the one its time says. */
function expectedBits(board) {
  return board.map((e) => {
    const poster = (e.t_us - T) % 10_000 === 5_000 ? 'A' : 'B';
    return e.label === poster ? 0 : 1;
  });
}

test('a round kept and the strength reached: key, then confirm; the tags match and the key is made', () => {
  const alice = ready('alice');
  const bob = ready('bob');
  const { board, a, b } = playRound(alice, bob);
  assert.deepEqual(keysOf(a), ['round', 'key', 'send']);
  assert.equal(find(a, 'round').outcome, 'kept');
  assert.equal(find(a, 'round').n, 100);
  assert.equal(find(a, 'round').a, 50);
  const bits = expectedBits(board);
  const k = secret.key(ROOM, SESSION, bits);
  const tag = secret.tag(k, PARAMS.tag_bits);
  assert.equal(find(a, 'key').key, secret.hex(k));
  assert.equal(find(a, 'key').bits, secret.bitsString(bits));
  assert.deepEqual(find(a, 'send'), { type: 'confirm', tag, drops: 0 });
  assert.deepEqual(find(b, 'send'), { type: 'confirm', tag, drops: 0 }, 'bob derives the same key');
  for (const [p, role] of [[alice, 'alice'], [bob, 'bob']]) p.handle({ type: 'confirm', role, tag }, 11);
  assert.deepEqual(alice.handle({ type: 'confirm', role: 'bob', tag }, 11), []);
  bob.handle({ type: 'confirm', role: 'alice', tag }, 11);
  assert.deepEqual(alice.handle({ type: 'confirmed', match: true }, 12), [{ confirmed: { matched: true } }]);
  assert.ok(alice.finished && !alice.running);
  assert.deepEqual(bob.handle({ type: 'confirmed', match: true }, 12), [{ confirmed: { matched: true } }]);
});

test('short of the strength: ready', () => {
  const params = { ...PARAMS, target_bits: 256 };
  const alice = new Poster({ policy: 'browser', room: ROOM, role: 'alice', params });
  alice.start(0);
  alice.synced(SYNC, 1);
  const bob = ready('bob', 'terminal', params);
  const { a } = playRound(alice, bob, { posts: 10 });
  assert.deepEqual(a, [{ round: a[0].round }, { send: { type: 'ready' } }]);
  assert.equal(a[0].round.strength, 0);
  assert.deepEqual(alice.readyFor, { next: true, session: SESSION, round: 1, strength: 0 });
});

test("own posts that missed: drop {spans} before the round and the verdict; the peer's dropped: derived again, confirmed again", () => {
  const alice = ready('alice');
  const bob = ready('bob');
  // Alice's post 10 lands 800 µs late (doubtful): a span from its prediction − 2τ to post 11's + τ.
  const { a, b } = playRound(alice, bob, { moved: { A10: 800 } });
  assert.deepEqual(keysOf(a), ['send', 'round', 'key', 'send']);
  const span = [T + 5_000 + 100_000 - 2000, T + 5_000 + 110_000 + 1000];
  assert.deepEqual(a[0], { send: { type: 'drop', spans: [span] } });
  assert.equal(a[1].round.left_out, 3, "alice's posts 10-11 and bob's 10 lie inside");
  assert.equal(find(a, 'key').n, 97);
  assert.equal(a[3].send.drops, 1);
  // Bob, who did not know of the span, confirms on 100 entries; the room relays alice's drop.
  assert.equal(find(b, 'key').n, 100);
  const again = bob.handle({ type: 'dropped', session: SESSION, round: 1, spans: [span] }, 20);
  assert.deepEqual(keysOf(again), ['dropped', 'key', 'send']);
  assert.equal(again[0].dropped.n, 97);
  assert.deepEqual(again[2].send, a[3].send, 'the same tag as alice, with drops 1');
});

test("the peer's dropped taking the strength below the target: key_void, then ready", () => {
  const params = { ...PARAMS, target_bits: 5 };
  const alice = ready('alice', 'browser', params);
  const bob = ready('bob', 'terminal', params);
  const { a } = playRound(alice, bob);
  assert.deepEqual(keysOf(a), ['round', 'key', 'send']);
  const out = alice.handle({ type: 'dropped', session: SESSION, round: 1, spans: [[T, T + 200_000]] }, 20);
  assert.deepEqual(keysOf(out), ['dropped', 'key_void', 'send']);
  assert.deepEqual(out[2], { send: { type: 'ready' } });
  assert.deepEqual(alice.handle({ type: 'dropped', session: SESSION, round: 2, spans: [[T, T + 1]] }, 21), [], 'not the open round');
});

test('out of sync: the round is aborted; the room’s aborted {desync} drops it and counts a failure', () => {
  const alice = ready('alice', 'browser');
  const bob = ready('bob');
  const moved = Object.fromEntries(Array.from({ length: 50 }, (_, k) => [`A${k}`, 3000]));
  const { a } = playRound(alice, bob, { moved });
  assert.deepEqual(keysOf(a), ['round', 'send']);
  assert.equal(a[0].round.outcome, 'desync');
  assert.deepEqual(a[1], { send: { type: 'abort', reason: 'desync' } });
  const out = alice.handle({ type: 'aborted', reason: 'desync' }, 30);
  assert.deepEqual(out[0].aborted.round, 1);
  assert.deepEqual(keysOf(out), ['aborted', 'sync'], 'the browser re-syncs: its posts all missed τ');
  assert.equal(alice.failures, 1);
});

test('confirmed with a mismatched tag: a failure, and a new session', () => {
  const alice = ready('alice');
  const bob = ready('bob');
  playRound(alice, bob);
  alice.handle({ type: 'confirm', role: 'bob', tag: '00' }, 11);
  const out = alice.handle({ type: 'confirmed', match: false }, 12);
  assert.deepEqual(out, [{ confirmed: { matched: false } }, { sync: { why: 'confirmation mismatch' } }]);
  assert.equal(alice.failures, 1);
  assert.equal(alice.session, null);
  assert.deepEqual(alice.kept, []);
  assert.deepEqual(alice.handle({ type: 'confirmed', match: true }, 13), [], 'no confirm of ours: nothing');
});

test('the late rule: half a mean gap, and no post within DONE_QUIET_US of done', () => {
  assert.equal(lateLimitUs(500), 1000);
  assert.equal(lateLimitUs(125), 4000);
  assert.ok(lateLimitUs(0) > 1e15);
  // At 50 Hz the late limit (10 ms) reaches past done − DONE_QUIET_US. Shift 1100; done at
  // T + 10 000 − 1100 + 5000; the post at T + 9 500 targets T + 8 400 local.
  const slow = { ...PARAMS, rate_hz: 50 };
  const p = ready('alice');
  p.handle({ type: 'start', session: SESSION, round: 1, t_start_us: T, t_end_us: T + 10_000, params: slow }, 2);
  p.scheduled([T + 9_500], 'A', 3);
  const doneAt = T + 10_000 - 1100 + 5000;
  assert.deepEqual(p.onTimeout(doneAt - 500), [{ post: { label: 'A', target_us: T + 8_400 } }], 'exactly DONE_QUIET_US before done: sent');
  const q = ready('alice');
  q.handle({ type: 'start', session: SESSION, round: 1, t_start_us: T, t_end_us: T + 10_000, params: slow }, 2);
  q.scheduled([T + 9_500], 'A', 3);
  assert.deepEqual(q.onTimeout(doneAt - 499), [], 'later: skipped');
  assert.equal(q.current.skipped, 1);
  assert.equal(q.nextDeadline(), doneAt);
});

test('the policies: bias, re-sync, peer left, reset', () => {
  const t = ready('alice', 'terminal');
  const b = ready('alice', 'browser');
  t.bias = 50;
  b.bias = 50;
  t.synced(SYNC, 5);
  b.synced(SYNC, 5);
  assert.equal(t.bias, 50, 'terminal: the bias is kept on a re-sync');
  assert.equal(b.bias, 0, 'browser: it starts over');
  assert.deepEqual(keysOf(t.handle({ type: 'reset' }, 6)), ['sync'], 'terminal: a reset is a failure, tried again');
  assert.deepEqual(b.handle({ type: 'reset' }, 6), [], 'browser: a reset stops it');
  assert.equal(b.running, false);
  const fresh = ready('bob', 'terminal');
  assert.deepEqual(fresh.handle({ type: 'peer', event: 'left', role: 'alice' }, 7), [], 'no round made yet: wait for another peer');
  const g = ready('alice', 'browser');
  assert.deepEqual(keysOf(g.handle({ type: 'aborted', reason: 'gave_up' }, 8)), ['aborted', 'fail'], 'browser: the peer gave up, stop');
  const h = ready('alice', 'terminal');
  assert.deepEqual(keysOf(h.handle({ type: 'aborted', reason: 'gave_up' }, 8)), ['aborted', 'sync'], 'terminal: a failure like any other');
});

test('coalesced posts are left out of the derivation, and refusals are ignored but too_early', () => {
  const p = ready('alice');
  p.handle({ type: 'start', session: SESSION, round: 1, t_start_us: T, t_end_us: T + 100_000, params: PARAMS }, 2);
  p.scheduled([T + 30_000, T + 50_000], 'AB', 3);
  for (let k = 0; k < 2; k++) {
    const at = p.nextDeadline();
    p.onTimeout(at);
    p.sent({ sent_us: at, label: 'AB'[k] }, false, at);
  }
  p.handle({ type: 'coalesced', post: 1, count: 5 }, 4);
  assert.deepEqual(p.current.coalesced, [1, 2], 'bounded by the posts sent');
  for (const code of ['round_running', 'round_dropped', 'stale_confirm', 'no_round', 'outside_window', 'too_many_posts', 'board_full']) {
    assert.deepEqual(p.handle({ type: 'error', code, message: 'x' }, 5), []);
  }
  assert.equal(p.nextDeadline(), T + 100_000 - 1100 + 5000, 'too_early before done: nothing to redo');
  p.handle({ type: 'error', code: 'too_early', message: 'x' }, 6);
  assert.equal(p.nextDeadline(), T + 100_000 - 1100 + 5000);
});

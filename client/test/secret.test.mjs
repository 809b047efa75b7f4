// secret.test.mjs — client/js/secret.js against every shared vector in tests/vectors/*.json
// (the same files src/secret.rs passes), from both posters' seats and with each other's spans,
// plus the unit tests of src/secret.rs with the same numbers (spans around late and doubtful
// posts, each post's own entry in send order, labels), SHA-256 known answers and exact
// binomials.
// Run: node --test client/test/*.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import {
  sha256, Sha256, hex, utf8, sift, deriveRound, ownSpans, skipSpans, mergeSpans, UNMATCHED_SHARE, SPAN_BEFORE, SURE, arrivalErrors, predictedUs,
  binomial, log2BinomialFloor, ledger, key, tag, packBits, bitsString, msToUs, sessionBytes,
} from '../js/secret.js';

const VECTORS = new URL('../../tests/vectors/', import.meta.url);
const files = readdirSync(VECTORS).filter((f) => f.endsWith('.json')).sort();

test('the shared vectors are there', () => {
  assert.ok(files.length > 0, `no vectors found in ${VECTORS.pathname}`);
});

/** The other poster's name. */
const OTHER = { alice: 'bob', bob: 'alice' };

for (const file of files) {
  test(`vector ${file}`, () => {
    const v = JSON.parse(readFileSync(new URL(file, VECTORS), 'utf8'));
    const tol = msToUs(v.params.tolerance_ms);
    const guard = msToUs(v.params.guard_ms);
    const session = { alice: { rounds: [], bits: [], desync: false }, bob: { rounds: [], bits: [], desync: false } };
    v.rounds.forEach((r, k) => {
      const where = `${v.name} round ${k + 1}`;
      const kept = sift(r.board, r.t_start_us, r.t_end_us, tol, guard).map((j) => r.board[j].i);
      assert.deepEqual(kept, r.expect.kept, `${where}: kept`);
      // As the posters do: each derives alone first (its own spans, which it sends as `drop`),
      // then again with the other's spans. Absent `spans` and `dropped` mean none.
      const derive = (who, peerSpans) => deriveRound(r.board, r.t_start_us, r.t_end_us, r[who].posts, r[who].sync, who === 'alice' ? 'A' : 'B', tol, guard, peerSpans);
      const alone = { alice: derive('alice', []), bob: derive('bob', []) };
      const dropped = r.expect.dropped ?? [];
      const counted = r.expect.kept.filter((i) => !dropped.includes(i));
      for (const who of ['alice', 'bob']) {
        const party = r[who];
        const want = r.expect[who];
        const peer = alone[OTHER[who]];
        const got = derive(who, peer.desync ? [] : peer.spans);
        if (want.desync) {
          assert.deepEqual(alone[who], { desync: true, unmatched: want.unmatched, total: want.total }, `${where}: ${who} desync`);
          assert.deepEqual(got, alone[who], `${where}: ${who} desync whatever the peer's spans`);
          session[who].desync = true;
          continue;
        }
        assert.equal(got.desync, false, `${where}: ${who} should not desync (${JSON.stringify(got)})`);
        assert.deepEqual(got.spans, want.spans ?? [], `${where}: ${who} spans`);
        assert.deepEqual(alone[who].spans, got.spans, `${where}: ${who}'s own spans do not depend on the peer's`);
        assert.deepEqual(got.dropped, dropped, `${where}: ${who} dropped`);
        assert.deepEqual(got.kept, counted, `${where}: ${who} kept (the sift less the spans)`);
        assert.deepEqual(got.kept.filter((_, j) => got.mine[j]), want.mine, `${where}: ${who} mine`);
        assert.equal(bitsString(got.bits), want.bits, `${where}: ${who} bits`);
        assert.equal(got.a, want.a, `${where}: ${who} a`);
        assert.equal(got.n, counted.length, `${where}: ${who} n`);
        session[who].rounds.push([got.n, got.a]);
        session[who].bits.push(...got.bits);
        // Arrival errors: a post whose nearest entry with its label is further than τ (or
        // that has none) is unmatched, so its poster has spans; a poster without spans had
        // every post matched, so every nearest entry within the sure distance (SURE of τ).
        const errs = arrivalErrors(r.board, party.posts, party.sync);
        assert.equal(errs.length, party.posts.length);
        const sure = Math.floor((tol * SURE[0]) / SURE[1]);
        const off = errs.filter((e) => e === null || Math.abs(e) > tol).length;
        const unsure = errs.filter((e) => e === null || Math.abs(e) > sure).length;
        const why = `${where}: ${who} arrival errors ${errs} against spans ${JSON.stringify(got.spans)}`;
        if (off > 0) assert.ok(got.spans.length > 0, why);
        if (got.spans.length === 0) assert.equal(unsure, 0, why);
        assert.ok(off * UNMATCHED_SHARE <= party.posts.length, `${where}: ${who} at most one post in ${UNMATCHED_SHARE} unmatched`);
      }
    });
    if (v.expect === null) {
      assert.ok(session.alice.desync || session.bob.desync, `${v.name}: expect null but nobody desynced`);
      return;
    }
    for (const who of ['alice', 'bob']) {
      const s = session[who];
      assert.equal(s.desync, false, `${v.name}: ${who} desynced but a key is expected`);
      const l = ledger(s.rounds, v.params.tag_bits);
      assert.equal(l.n, v.expect.n, `${v.name}: ${who} n`);
      assert.equal(l.a, v.expect.a, `${v.name}: ${who} a`);
      assert.equal(l.log2_binom, v.expect.log2_binom, `${v.name}: ${who} log2_binom`);
      assert.equal(l.strength, v.expect.strength, `${v.name}: ${who} strength`);
      assert.equal(l.margin_bits, 64);
      assert.equal(bitsString(s.bits), v.expect.bits, `${v.name}: ${who} bits`);
      const k = key(v.room, v.session, s.bits);
      assert.equal(hex(k), v.expect.key, `${v.name}: ${who} key`);
      assert.equal(tag(k, v.params.tag_bits), v.expect.tag, `${v.name}: ${who} tag`);
    }
  });
}

test('SHA-256 known answers', () => {
  assert.equal(hex(sha256('')), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(hex(sha256('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(
    hex(sha256('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')),
    '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
  );
  // 1 000 000 × "a", fed in uneven pieces to cross block boundaries.
  const h = new Sha256();
  const chunk = utf8('a'.repeat(997));
  let left = 1_000_000;
  while (left > 0) {
    const n = Math.min(left, chunk.length);
    h.update(chunk.subarray(0, n));
    left -= n;
  }
  assert.equal(hex(h.digest()), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
  // Every padding length around a block boundary agrees with one-shot hashing.
  for (let n = 50; n < 70; n++) {
    const s = 'x'.repeat(n);
    const split = new Sha256().update(s.slice(0, 7)).update(s.slice(7)).digest();
    assert.equal(hex(split), hex(sha256(s)), `length ${n}`);
  }
});

test('key and tag match hashlib (as in src/secret.rs)', () => {
  const bits = [...'101100111'].map((c) => (c === '1' ? 1 : 0));
  const k = key('K7QM2-9XD4R', '00112233445566778899aabbccddeeff', bits);
  assert.equal(hex(k), '89e62bdaa10f5470a6cbeb368db49e6cd83021fc620fbff0e5406da05579c69a');
  assert.equal(tag(k, 32), 'f0226ccf');
  assert.equal(tag(k, 128), 'f0226ccfe3c2a586920c06dda7e2ef96');
  assert.equal(hex(key('K7QM2-9XD4R', '00112233445566778899AABBCCDDEEFF', bits)), hex(k));
  assert.equal(
    hex(key('K7QM2-9XD4R', '00112233445566778899aabbccddeeff', [])),
    'd5bcad3e1b9f3fc9767c64dd89b83da25dbc03c4a46f105704fb1e4edd680ba1',
  );
  assert.deepEqual([...packBits(bits)], [0xb3, 0x80]);
  for (const bad of ['', '0011', '00112233445566778899aabbccddeeff00', '00112233445566778899aabbccddeefg', '+0112233445566778899aabbccddeeff']) {
    assert.throws(() => sessionBytes(bad), /32 hex digits/, bad);
  }
});

test('binomials are exact BigInts', () => {
  // Pascal's triangle, by addition only, against the multiplicative formula.
  let row = [1n];
  for (let n = 0; n <= 120; n++) {
    for (let k = 0; k <= n; k++) {
      assert.equal(binomial(n, k), row[k], `C(${n},${k})`);
      assert.equal(log2BinomialFloor([[n, k]]), row[k].toString(2).length - 1, `log2 C(${n},${k})`);
    }
    const next = [1n];
    for (let k = 1; k <= n; k++) next.push(row[k - 1] + row[k]);
    next.push(1n);
    row = next;
  }
  assert.equal(binomial(5, 6), 0n);
  assert.equal(binomial(64, 32), 1832624140942590534n);
  assert.equal(log2BinomialFloor([]), 0);
  assert.equal(log2BinomialFloor([[4, 2]]), 2);
  assert.equal(log2BinomialFloor([[10, 5]]), 7);
  assert.equal(log2BinomialFloor([[0, 0], [7, 0], [7, 7], [1, 1]]), 0);
  assert.equal(log2BinomialFloor([[1000, 500]]), 994);
  assert.equal(log2BinomialFloor([[50_000, 25_000]]), 49_991);
  // Of the product, not the sum of floors: 6 · 252 = 1512 → 10, not 2 + 7.
  assert.equal(log2BinomialFloor([[4, 2], [10, 5]]), 10);
  assert.equal(log2BinomialFloor([[1000, 500], [999, 1], [64, 32]]), 1065);
  assert.equal(log2BinomialFloor([[3, 5]]), 0);
});

test('the ledger never goes below zero', () => {
  assert.deepEqual(ledger([[4, 2], [10, 5]], 32), { n: 14, a: 7, log2_binom: 10, tag_bits: 32, margin_bits: 64, strength: 0 });
  assert.equal(ledger([[1000, 500]], 32).strength, 994 - 32 - 64);
  assert.equal(ledger([], 32).strength, 0);
  // docs/protocol.md §5.5: a 256-bit key needs at least 357 kept entries.
  assert.equal(ledger([[357, 178]], 32).strength, 256);
  assert.equal(ledger([[356, 178]], 32).strength, 255);
});

test('prediction floors half the delay; sift and arrival errors as in src/secret.rs', () => {
  assert.equal(predictedUs({ sent_us: 1000 }, { offset_us: -7, delay_us: 5 }), 1000 - 7 + 2);
  assert.equal(predictedUs({ sent_us: 1000 }, { offset_us: 0, delay_us: -3 }), 1000 - 2);
  const T0 = 1_764_000_000_000_000;
  const entries = (list) => list.map(([t, label], i) => ({ i, t_us: T0 + t, label }));
  const zero = { offset_us: 0, delay_us: 0 };
  // Sift ignores board order and keeps exactly g.
  const b2 = entries([[5000, 'A'], [2000, 'B'], [2500, 'A'], [7000, 'B'], [7499, 'A'], [999, 'B'], [9000, 'A'], [9000, 'B']]);
  assert.deepEqual(sift(b2, T0, T0 + 10_000, 250, 1000), [0, 1, 2]);
  // Arrival errors: nearest entry with the post's label.
  const b3 = entries([[1_000, 'A'], [1_040, 'B'], [2_000, 'A']]);
  const own = [{ sent_us: T0 + 990, label: 'A' }, { sent_us: T0 + 1_050, label: 'B' }, { sent_us: T0 + 1_600, label: 'A' }];
  assert.deepEqual(arrivalErrors(b3, own, { offset_us: 0, delay_us: 10 }), [5, -15, 395]);
  assert.deepEqual(arrivalErrors([], own.slice(0, 1), zero), [null]);
  assert.equal(msToUs(0.25), 250);
  assert.equal(msToUs(1), 1000);
});

// ---------------------------------------------------------------------------------------
// Spans around late posts: src/secret.rs's unit tests, with the same numbers.

const T0 = 1_764_000_000_000_000;
const ZERO = { offset_us: 0, delay_us: 0 };
const entriesAt = (list) => list.map(([t, label], i) => ({ i, t_us: T0 + t, label }));

test('a prediction halfway between two entries is doubtful and its span holds both (as src/secret.rs)', () => {
  assert.deepEqual(SURE, [3, 5]);
  // τ = 100 (sure within 60): entries at 10_000 and 10_200 are exactly g apart, both kept; my
  // post predicted at 10_100 is τ from both: doubtful, so it gets a span from its prediction
  // − 2τ to my next post's + τ: neither entry counts, nor my next post's entry at the span's
  // end; my previous post's (5_000) does.
  const board = entriesAt([[2_000, 'B'], [5_000, 'B'], [10_000, 'A'], [10_200, 'B'], [15_000, 'B']]);
  const own = (t) => [2_000, 5_000, t, 15_000].map((x) => ({ sent_us: T0 + x, label: 'B' }));
  const v = deriveRound(board, T0, T0 + 20_000, own(10_100), ZERO, 'B', 100, 0, []);
  assert.equal(v.desync, false, JSON.stringify(v));
  assert.deepEqual([v.spans, v.dropped, v.n], [[[T0 + 9_900, T0 + 15_100]], [2, 3, 4], 2]);
  // Predicted 40 µs from 10_200: sure, and 160 µs from 10_000: no ambiguity either.
  const w = deriveRound(board, T0, T0 + 20_000, own(10_160), ZERO, 'B', 100, 0, []);
  assert.equal(w.desync, false, JSON.stringify(w));
  assert.deepEqual([w.spans.length, w.n, w.mine.filter((m) => m).length], [0, 5, 4]);
  // Alone, a doubtful post is one in one: out of sync.
  const alone = [{ sent_us: T0 + 10_100, label: 'B' }];
  assert.deepEqual(deriveRound(board, T0, T0 + 20_000, alone, ZERO, 'B', 100, 0, []), { desync: true, unmatched: 1, total: 1 });
});

test('each post takes its own entry in send order (as src/secret.rs)', () => {
  // τ = 100. Posts at 3_000 and 3_050 (A) with one A entry between them: the first takes it,
  // the second finds none of its own and is unmatched. A post whose only entry lies before
  // the entry its previous post took is unmatched too (the board keeps a poster's order).
  const posts = (ts) => ts.map((t) => ({ sent_us: T0 + t, label: 'A' }));
  let board = entriesAt([[1_000, 'A'], [3_020, 'A'], [6_000, 'A'], [9_000, 'A']]);
  const spans = (ts) => ownSpans(board, T0, T0 + 10_000, posts(ts), ZERO, 100);
  assert.deepEqual(spans([1_000, 3_000, 3_050, 6_000, 9_000]), [[T0 + 2_900, T0 + 6_100]]);
  assert.deepEqual(spans([1_000, 3_000, 6_000, 9_000]), []);
  board = entriesAt([[1_000, 'A'], [2_990, 'A'], [3_040, 'A'], [6_000, 'A'], [9_000, 'A']]);
  // Sent at 3_000 then 3_030: 3_000 takes 2_990 (nearest), 3_030 takes 3_040.
  const own = posts([1_000, 3_000, 3_030, 6_000, 9_000]);
  assert.deepEqual(ownSpans(board, T0, T0 + 10_000, own, ZERO, 100), []);
  // Doubtful: 70 µs off with τ = 100 (sure within 60).
  board = entriesAt([[1_000, 'A'], [3_070, 'A'], [6_000, 'A'], [9_000, 'A']]);
  assert.deepEqual(ownSpans(board, T0, T0 + 10_000, posts([1_000, 3_000, 6_000, 9_000]), ZERO, 100), [[T0 + 2_800, T0 + 6_100]]);
});

/** τ = 100, no sync error: alice's posts at 1 000, 2 000, … 8 000 µs (A), those in `late`
 *  landing `by` µs late, and bob's entries at 1 500, 4 400 and 6 500 (B). As `late_board`. */
function lateBoard(late, by) {
  const own = [1, 2, 3, 4, 5, 6, 7, 8].map((k) => ({ sent_us: T0 + 1_000 * k, label: 'A' }));
  const times = [1, 2, 3, 4, 5, 6, 7, 8].map((k) => [1_000 * k + (late.includes(k) ? by : 0), 'A'])
    .concat([[1_500, 'B'], [4_400, 'B'], [6_500, 'B']])
    .sort((x, y) => x[0] - y[0]);
  return { board: entriesAt(times), own };
}

test('a late post costs a span, not the round (as src/secret.rs)', () => {
  // Post 4 (predicted 4 000) lands at 4 700: unmatched. Its span runs from its own
  // prediction − 2τ to post 5's + τ, and holds the late entry and bob's at 4 400.
  const { board, own } = lateBoard([4], 700);
  const v = deriveRound(board, T0, T0 + 10_000, own, ZERO, 'A', 100, 0, []);
  assert.equal(v.desync, false);
  assert.deepEqual(v.spans, [[T0 + 3_800, T0 + 5_100]]);
  const t = (i) => board.find((e) => e.i === i).t_us - T0;
  assert.deepEqual(v.dropped.map(t), [4_400, 4_700, 5_000]);
  assert.deepEqual(v.kept.map(t), [1_000, 1_500, 2_000, 3_000, 6_000, 6_500, 7_000, 8_000]);
  assert.deepEqual(v.mine, [true, false, true, true, true, false, true, true]);
  assert.deepEqual([v.n, v.a], [8, 6]);
  // Bob, told of the span, leaves out the same entries and sees the same split.
  const bob = [1_500, 4_400, 6_500].map((x) => ({ sent_us: T0 + x, label: 'B' }));
  const vb = deriveRound(board, T0, T0 + 10_000, bob, ZERO, 'B', 100, 0, v.spans);
  assert.equal(vb.desync, false);
  assert.deepEqual(vb.spans, []);
  assert.deepEqual([vb.kept, vb.dropped, vb.bits, vb.a], [v.kept, v.dropped, v.bits, v.a]);
  assert.ok(vb.mine.every((m, j) => m !== v.mine[j]), 'each counted entry is exactly one poster\'s');
  // Without the span, bob would count the late entry as his peer's and keep his own at 4 400.
  const alone = deriveRound(board, T0, T0 + 10_000, bob, ZERO, 'B', 100, 0, []);
  assert.equal(alone.n, 11);
  // The default: no peer spans.
  assert.deepEqual(deriveRound(board, T0, T0 + 10_000, bob, ZERO, 'B', 100, 0), alone);
});

test('spans reach the window edges and merge (as src/secret.rs)', () => {
  const spans = (late, tol) => {
    const { board, own } = lateBoard(late, 700);
    return ownSpans(board, T0, T0 + 10_000, own, ZERO, tol);
  };
  const window = (late) => spans(late, 100);
  assert.equal(SPAN_BEFORE, 2);
  // The first post late: from its prediction − 2τ (no earlier post). The last: to t_end.
  assert.deepEqual(window([1]), [[T0 + 800, T0 + 2_100]]);
  assert.deepEqual(window([8]), [[T0 + 7_800, T0 + 10_000]]);
  // Two late posts one matched post apart: two spans; at τ = 400 they overlap and merge.
  assert.deepEqual(window([3, 5]), [[T0 + 2_800, T0 + 4_100], [T0 + 4_800, T0 + 6_100]]);
  assert.deepEqual(spans([3, 5], 400), [[T0 + 2_200, T0 + 6_400]]);
  // Two in a row: one span.
  assert.deepEqual(window([3, 4]), [[T0 + 2_800, T0 + 5_100]]);
  assert.deepEqual(window([2, 6]), [[T0 + 1_800, T0 + 3_100], [T0 + 5_800, T0 + 7_100]]);
  // Never before t_start (the previous post's prediction − τ bounds it too: the skipped
  // posts' test, at a tie).
  assert.deepEqual(spans([1], 600), [[T0, T0 + 2_600]]);
  assert.deepEqual(spans([2], 600), [[T0 + 800, T0 + 3_600]]);
  assert.deepEqual(window([]), []);
  // Three of eight unmatched is more than one in four: out of sync.
  assert.equal(window([2, 4, 6]), null);
  const { board, own } = lateBoard([2, 4, 6], 700);
  assert.deepEqual(deriveRound(board, T0, T0 + 10_000, own, ZERO, 'A', 100, 0, []), { desync: true, unmatched: 3, total: 8 });
  // Two of eight is one in four: still spans. Posts given out of send order are sorted first.
  const two = lateBoard([2, 6], 700);
  assert.deepEqual(ownSpans(two.board, T0, T0 + 10_000, [...two.own].reverse(), ZERO, 100), [[T0 + 1_800, T0 + 3_100], [T0 + 5_800, T0 + 7_100]]);
  assert.equal(UNMATCHED_SHARE, 4);
});

/** A small seeded generator (mulberry32): the same rounds on every run. */
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { f64: next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)) };
}

test('both posters agree whatever posts are late (as src/secret.rs, with its own random rounds)', () => {
  // Random rounds: two Poisson posters, each post late (0.3–3 ms) with chance 1/40. Either both
  // views agree on every counted entry, or a poster is out of sync; and every late entry is
  // left out by the spans. (Rust draws its rounds with fastrand; these are drawn here, so the
  // counts differ, the checks do not.)
  const r = rng(7);
  const tol = 250;
  const rounds = 400;
  let spanned = 0;
  let agreed = 0;
  let blind = 0;
  for (let n = 0; n < rounds; n++) {
    const boardT = []; // [time, label, late]
    const posts = [[], []];
    for (const mine of posts) {
      let t = 0;
      let last = 0;
      for (;;) {
        t += Math.trunc(-Math.log(Math.max(r.f64(), 1e-12)) * 8 * tol) + 1;
        if (t > 80_000) break;
        const label = r.f64() < 0.5 ? 'A' : 'B';
        const late = r.int(0, 39) === 0;
        const jitter = r.int(-tol / 2, tol / 2);
        // Per-connection order: never before this poster's previous entry.
        const at = Math.max(t + (late ? r.int(300, 2_999) : jitter), last);
        last = at;
        mine.push({ sent_us: T0 + t, label });
        boardT.push([at, label, Math.abs(at - t) > tol]);
      }
    }
    // Entry k is post k's (alice's posts first, then bob's).
    const flat = posts.flat();
    const falselyMatched = flat.some((p, k) => {
      const t = p.sent_us - T0;
      return boardT[k][2] && boardT.some((e, j) => j !== k && e[1] === p.label && Math.abs(e[0] - t) <= tol);
    });
    const order = boardT.map((_, k) => k).sort((x, y) => boardT[x][0] - boardT[y][0]);
    const board = order.map((k, i) => ({ i, t_us: T0 + boardT[k][0], label: boardT[k][1] }));
    const lateT = order.filter((k) => boardT[k][2]).map((k) => T0 + boardT[k][0]);
    const d = (k, peer) => deriveRound(board, T0, T0 + 80_000, posts[k], ZERO, ['A', 'B'][k], tol, 2_000, peer);
    const a0 = d(0, []);
    const b0 = d(1, []);
    if (a0.desync || b0.desync) continue;
    const a = d(0, b0.spans);
    const b = d(1, a0.spans);
    assert.ok(!a.desync && !b.desync, 'a peer\'s spans never make a view out of sync');
    assert.deepEqual([a.spans, b.spans], [a0.spans, b0.spans]);
    // A late post with another same-label entry within τ of its prediction "matches" it:
    // neither poster can see that, and the confirmation catches the split. Counted, not checked.
    if (falselyMatched) {
      blind++;
      continue;
    }
    assert.deepEqual([a.kept, a.bits, a.a], [b.kept, b.bits, b.a]);
    assert.ok(a.mine.every((m, j) => m !== b.mine[j]));
    const counted = new Set(a.kept.map((i) => board[i].t_us));
    assert.ok(lateT.every((t) => !counted.has(t)), 'a late entry was counted');
    if (a.spans.length || b.spans.length) spanned++;
    agreed++;
  }
  // Most rounds have a late post, and most are checked (this one has 264 of 400 checked, 233
  // with spans, 136 blind; Rust's rounds, drawn differently, give other counts).
  assert.ok(agreed > rounds / 2 && spanned > rounds / 3, `${agreed} agreed, ${spanned} with spans, ${blind} blind`);
});

test('rounds recognise and check labels (as src/secret.rs)', () => {
  const board = entriesAt([[2000, 'A'], [3000, 'B'], [4000, 'B']]);
  const own = [{ sent_us: T0 + 2100, label: 'A' }, { sent_us: T0 + 3950, label: 'B' }];
  const sync = { offset_us: -200, delay_us: 201 };
  const v = deriveRound(board, T0, T0 + 10_000, own, sync, 'A', 250, 1000, []);
  assert.deepEqual([v.kept, v.mine, v.n, v.a], [[0, 1, 2], [true, false, true], 3, 2]);
  assert.equal(bitsString(v.bits), '001');
  assert.deepEqual([v.spans, v.dropped], [[], []]);
  // The same post with label A has only a B entry nearby.
  assert.deepEqual(deriveRound(board, T0, T0 + 10_000, [{ sent_us: T0 + 3900, label: 'A' }], sync, 'A', 250, 1000, []), { desync: true, unmatched: 1, total: 1 });
});

test('skipped posts cost spans between their sent neighbours (as src/secret.rs)', () => {
  const sync = { offset_us: 100, delay_us: 40 }; // prediction = sent + 120
  const own = [1000, 2000, 3000, 5000, 6000].map((t) => ({ sent_us: t, label: 'A' }));
  assert.deepEqual(skipSpans(own, [], sync, 50, 0, 10000), []);
  // From the skipped post's would-be prediction (4120) − 2τ to the next sent one's + τ.
  assert.deepEqual(skipSpans(own, [4000], sync, 50, 0, 10000), [[4020, 5170]]);
  // After the last sent post: to t_end; a tie with a sent post counts the sent one first, and
  // the span then starts at that post's prediction − τ; a run of skipped posts is one span.
  assert.deepEqual(skipSpans(own, [500, 2000, 4000, 7000, 8000], sync, 50, 0, 10000), [[520, 1170], [2070, 3170], [4020, 5170], [7020, 10000]]);
  assert.deepEqual(skipSpans([], [4000], sync, 50, 0, 10000), [[4020, 10000]]);
  // Overlapping spans merge; never before t_start.
  assert.deepEqual(skipSpans(own, [3010, 3900], sync, 500, 0, 10000), [[2620, 5620]]);
  assert.deepEqual(skipSpans(own, [10], sync, 500, 0, 10000), [[0, 1620]]);
  assert.deepEqual(mergeSpans([[5, 9], [1, 3], [2, 4], [9, 12]]), [[1, 4], [5, 12]]);
});

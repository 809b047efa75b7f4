// secret.test.mjs — client/js/secret.js against every shared vector in tests/vectors/*.json
// (the same files src/secret.rs passes), from both posters' seats, plus SHA-256 known answers
// and exact binomials. Run: node --test client/test/*.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import {
  sha256, Sha256, hex, utf8, sift, deriveRound, arrivalErrors, predictedUs, binomial,
  log2BinomialFloor, ledger, key, tag, packBits, bitsString, msToUs, sessionBytes,
} from '../js/secret.js';

const VECTORS = new URL('../../tests/vectors/', import.meta.url);
const files = readdirSync(VECTORS).filter((f) => f.endsWith('.json')).sort();

test('the shared vectors are there', () => {
  assert.ok(files.length > 0, `no vectors found in ${VECTORS.pathname}`);
});

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
      for (const [who, me] of [['alice', 'A'], ['bob', 'B']]) {
        const party = r[who];
        const want = r.expect[who];
        const got = deriveRound(r.board, r.t_start_us, r.t_end_us, party.posts, party.sync, me, tol, guard);
        if (want.desync) {
          assert.deepEqual(got, { desync: true, unmatched: want.unmatched, total: want.total }, `${where}: ${who} desync`);
          session[who].desync = true;
          continue;
        }
        assert.equal(got.desync, false, `${where}: ${who} should not desync (${JSON.stringify(got)})`);
        assert.deepEqual(got.kept, r.expect.kept, `${where}: ${who} kept`);
        assert.deepEqual(got.kept.filter((_, j) => got.mine[j]), want.mine, `${where}: ${who} mine`);
        assert.equal(bitsString(got.bits), want.bits, `${where}: ${who} bits`);
        assert.equal(got.a, want.a, `${where}: ${who} a`);
        assert.equal(got.n, r.expect.kept.length, `${where}: ${who} n`);
        session[who].rounds.push([got.n, got.a]);
        session[who].bits.push(...got.bits);
        // Arrival errors: every own post that matched is within τ of an entry with its label.
        const errs = arrivalErrors(r.board, party.posts, party.sync);
        assert.equal(errs.length, party.posts.length);
        assert.ok(errs.every((e) => e !== null && Math.abs(e) <= tol), `${where}: ${who} arrival errors ${errs}`);
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
  // PROTOCOL §6.4: a 256-bit key needs at least 357 kept entries.
  assert.equal(ledger([[357, 178]], 32).strength, 256);
  assert.equal(ledger([[356, 178]], 32).strength, 255);
});

test('prediction floors half the delay; ambiguity and labels as in src/secret.rs', () => {
  assert.equal(predictedUs({ sent_us: 1000 }, { offset_us: -7, delay_us: 5 }), 1000 - 7 + 2);
  assert.equal(predictedUs({ sent_us: 1000 }, { offset_us: 0, delay_us: -3 }), 1000 - 2);
  const T0 = 1_764_000_000_000_000;
  const entries = (list) => list.map(([t, label], i) => ({ i, t_us: T0 + t, label }));
  const zero = { offset_us: 0, delay_us: 0 };
  // Two kept entries exactly g apart with my prediction halfway: a desync, not a wrong bit.
  const board = entries([[10_000, 'A'], [10_200, 'B']]);
  assert.deepEqual(deriveRound(board, T0, T0 + 20_000, [{ sent_us: T0 + 10_100, label: 'B' }], zero, 'B', 100, 0), { desync: true, unmatched: 1, total: 1 });
  const ok = deriveRound(board, T0, T0 + 20_000, [{ sent_us: T0 + 10_101, label: 'B' }], zero, 'B', 100, 0);
  assert.equal(ok.desync, false);
  assert.equal(ok.n, 2);
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

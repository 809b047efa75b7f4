// codes.test.mjs — client/js/codes.js against tests/vectors/codes/codes.json (the file src/room/fields.rs passes too): every `make` case (8 bytes → code) and every `normalize` case (typed text → canonical code or null), and that drawing a code takes its bytes from the random source it is given.
// Run: node --test client/test/*.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { makeCode, normalizeCode, CODE_ALPHABET, CODE_LEN } from '../js/codes.js';

const doc = JSON.parse(readFileSync(new URL('../../tests/vectors/codes/codes.json', import.meta.url), 'utf8'));
const CANONICAL = /^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$/;

/** A random source that fills the buffer with `bytes` and counts its calls. */
function fixed(bytes) {
  const f = (buf) => {
    f.calls.push(buf.length);
    buf.set(bytes);
    return buf;
  };
  f.calls = [];
  return f;
}

test('the vectors are there', () => {
  assert.ok(doc.make.length >= 10, `${doc.make.length} make cases`);
  assert.ok(doc.normalize.length >= 10, `${doc.normalize.length} normalize cases`);
  assert.equal(CODE_ALPHABET.length, 32);
  assert.equal(CODE_LEN, 10);
});

test('make: every case of the vectors, bytes → code', () => {
  for (const c of doc.make) {
    assert.equal(c.bytes.length, 8, JSON.stringify(c));
    assert.equal(makeCode(fixed(c.bytes)), c.code, `bytes ${JSON.stringify(c.bytes)}`);
  }
});

test('normalize: every case of the vectors, typed text → canonical code or null', () => {
  for (const c of doc.normalize) {
    assert.equal(normalizeCode(c.input), c.code, `input ${JSON.stringify(c.input)}`);
  }
});

test('a drawn code comes from the random source, 8 bytes in one call, and is canonical', () => {
  const src = fixed([1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(makeCode(src), '1G060-2M06R');
  assert.deepEqual(src.calls, [8], 'one call for 8 bytes');
  // Another source, another code: nothing but the source decides it.
  assert.equal(makeCode(fixed([31, 0, 0, 0, 0, 0, 0, 255])), 'Z0000-00000');
  // The default source is the platform's crypto.getRandomValues.
  const orig = crypto.getRandomValues;
  const seen = [];
  crypto.getRandomValues = (buf) => {
    seen.push(buf.length);
    buf.set([212, 155, 187, 148, 89, 142, 56, 13]);
    return buf;
  };
  try {
    assert.equal(makeCode(), 'MY6QB-A6BE4', 'the default source is crypto.getRandomValues');
  } finally {
    crypto.getRandomValues = orig;
  }
  assert.deepEqual(seen, [8]);
  // Real draws: canonical, read back unchanged, and not all the same.
  const drawn = new Set();
  for (let i = 0; i < 50; i++) {
    const code = makeCode();
    assert.match(code, CANONICAL);
    assert.equal(normalizeCode(code), code, 'a drawn code is its own canonical form');
    drawn.add(code);
  }
  assert.ok(drawn.size > 45, `${drawn.size} different codes in 50 draws`);
});

test('normalize: what is not ASCII or not a string is never read as a code', () => {
  // toUpperCase() would turn these into I and S (and the Kelvin sign is not K).
  assert.equal(normalizeCode('ıBCDE-FGHJK'), null);
  assert.equal(normalizeCode('ſBCDE-FGHJK'), null);
  assert.equal(normalizeCode('\u212aBCDE-FGHJK'), null);
  assert.equal(normalizeCode('ABCDE\u00a0FGHJK'), null, 'a no-break space is not a space');
  assert.equal(normalizeCode('ABCDE\tFGHJK'), null);
  assert.equal(normalizeCode('😀BCDE-FGHJK'), null);
  for (const x of [null, undefined, 12345, {}, ['ABCDE-FGHJK']]) assert.equal(normalizeCode(x), null, String(x));
  // Every symbol of the alphabet, in either case, reads as itself.
  assert.equal(normalizeCode('01234-56789'), '01234-56789');
  assert.equal(normalizeCode('abcdefghjk mnpqrstvwx'), null, 'twenty symbols are not a code');
  assert.equal(normalizeCode('MNPQR-STVWX'.toLowerCase()), 'MNPQR-STVWX');
  assert.equal(normalizeCode('yz0Ab--Cdefg'), 'YZ0AB-CDEFG');
});

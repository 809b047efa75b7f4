// pings.test.mjs — client/js/pings.js: pongs answer the pings waiting for them, two pings that
// share a t0 each get one (a tab's first sync beside Start's, the clock read in one tick).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pings } from '../js/pings.js';

test('a pong answers the ping sent at its t0, once', () => {
  const p = new Pings();
  p.add(10, 'a');
  p.add(20, 'b');
  assert.equal(p.answer(20), 'b');
  assert.equal(p.answer(20), null, 'a second pong with the same t0 answers nothing');
  assert.equal(p.answer(10), 'a');
  assert.equal(p.size, 0);
});

test('two pings with the same t0 are both answered, in send order', () => {
  // The bug this module fixes: a Map from t0 to one waiter let the second ping replace the
  // first, whose sync then waited out its 5 s timeout and stopped the session (sync_failed):
  // the other tab sat at "waiting for the peer to press Start".
  const p = new Pings();
  p.add(7, 'first sync');
  p.add(7, 'start sync');
  assert.equal(p.size, 2);
  assert.equal(p.answer(7), 'first sync');
  assert.equal(p.answer(7), 'start sync');
  assert.equal(p.answer(7), null);
});

test('a ping given up leaves the others with its t0 waiting', () => {
  const p = new Pings();
  const a = { id: 'a' };
  const b = { id: 'b' };
  p.add(5, a);
  p.add(5, b);
  p.remove(5, a);
  p.remove(5, a); // twice: nothing more
  p.remove(6, b); // another t0: nothing
  assert.equal(p.answer(5), b);
  assert.equal(p.size, 0);
});

test('takeAll hands back every waiting ping and leaves none', () => {
  const p = new Pings();
  p.add(1, 'x');
  p.add(1, 'y');
  p.add(2, 'z');
  assert.deepEqual(p.takeAll().sort(), ['x', 'y', 'z']);
  assert.equal(p.size, 0);
  assert.equal(p.answer(1), null);
});

// rooms.test.mjs — every socket of a room names it in its URL (issue 17: rooms spread over many
// servers behind a proxy that routes by `?room=`): the page draws the code of a room it creates
// and opens `ws?room=CODE`, a joiner opens `ws?room=` with the code in canonical form whatever
// was typed, a code the server already holds makes the page draw another (on a new socket), five
// taken codes make it give up in words, and a code that cannot be one opens no socket at all.
//
// The sockets are read from Chromium's own network events (Playwright's `websocket`, which sees
// the worker's sockets): the URL each opened and the first frame each sent. To make the page
// draw a code that is taken, the test serves it a codes.js whose random source gives chosen
// bytes first (a route, the page's code untouched).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';
import { CODE_ALPHABET } from '../../js/codes.js';

let fx;
const s = {};

before(async () => {
  fx = await h.fixture();
});

after(async () => {
  if (fx) await fx.close();
});

/** Records every WebSocket `p` opens: [{url, sent: [first frames, parsed]}]. */
function sockets(p) {
  const list = [];
  p.on('websocket', (ws) => {
    const one = { url: ws.url(), sent: [] };
    list.push(one);
    ws.on('framesent', (f) => {
      if (one.sent.length < 4 && typeof f.payload === 'string') {
        try {
          one.sent.push(JSON.parse(f.payload));
        } catch {
          one.sent.push({ unparsed: f.payload });
        }
      }
    });
  });
  return list;
}

/** The sockets of `list` that name a room, and the room each names. */
const roomSockets = (list) => list.filter((w) => new URL(w.url).searchParams.has('room'))
  .map((w) => ({ ...w, room: new URL(w.url).searchParams.get('room') }));

/** The 8 bytes (little-endian) that codes.js turns into `code`. */
function bytesOf(code) {
  const b = new Array(8).fill(0);
  [...code.replace('-', '')].forEach((ch, k) => {
    const v = CODE_ALPHABET.indexOf(ch);
    for (let j = 0; j < 5; j++) {
      const bit = 5 * k + j;
      if ((v >> j) & 1) b[bit >> 3] |= 1 << (bit & 7);
    }
  });
  return b;
}

/** Serves `p` (its own context) a codes.js whose first draws give `forced` (lists of 8 bytes),
 *  then the platform's random bytes again. */
async function forceDraws(p, forced) {
  await p.context().route('**/js/codes.js', async (route) => {
    const resp = await route.fetch();
    const body = await resp.text();
    const from = 'const osRandom = (buf) => crypto.getRandomValues(buf);';
    assert.ok(body.includes(from), 'codes.js draws through osRandom');
    const to = `const forced = ${JSON.stringify(forced)};\n` +
      'const osRandom = (buf) => { const b = forced.shift(); if (b) { buf.set(b); return buf; } return crypto.getRandomValues(buf); };';
    await route.fulfill({ response: resp, body: body.replace(from, to) });
  });
}

const wsBase = () => fx.server.url.replace(/^http/, 'ws');

test('create opens ws?room= with the code the page drew, and names it in `create`; a joiner types it anyhow and opens the canonical one', { timeout: 120_000 }, async () => {
  s.A = await fx.page('alice (draws)');
  s.B = await fx.page('bob (types)');
  const { A, B } = s;
  const aws = sockets(A);
  const bws = sockets(B);
  const { code, link } = await h.createRoom(A, fx.server);
  await h.waitRole(A, 'alice');
  s.code = code;
  assert.match(code, /^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$/, 'the room code is canonical');
  const rooms = roomSockets(aws);
  assert.equal(rooms.length, 1, `one room socket: ${JSON.stringify(aws.map((w) => w.url))}`);
  assert.equal(rooms[0].url, `${wsBase()}/ws?room=${code}`, 'the socket names the room the page is in');
  const hello = rooms[0].sent[0];
  assert.equal(hello.type, 'create');
  assert.equal(hello.room, code, '`create` names the same code');
  assert.equal(typeof hello.params, 'object', 'with the room\'s params');
  // The other sockets (the calibration's pings) name no room.
  for (const w of aws) if (!new URL(w.url).searchParams.has('room')) assert.equal(w.url, `${wsBase()}/ws`);
  assert.equal(link, `${fx.server.url}/?room=${code}`, 'the room link carries the canonical code');

  // B types it in lower case, with a space for the dash, O for 0 and L for 1.
  const typed = code.toLowerCase().replace('-', ' ').replace(/0/g, 'o').replace(/1/g, 'l');
  await B.goto(`${fx.server.url}/`);
  await h.byTestid(B, 'join-code').fill(typed);
  await h.byTestid(B, 'join-code').press('Enter');
  await h.waitRole(B, 'bob');
  const brooms = roomSockets(bws);
  assert.equal(brooms.length, 1, `one room socket: ${JSON.stringify(bws.map((w) => w.url))}`);
  assert.equal(brooms[0].url, `${wsBase()}/ws?room=${code}`, `typed "${typed}": the socket names the canonical code`);
  assert.deepEqual(brooms[0].sent[0], { type: 'join', room: code }, '`join` names it too');
  assert.equal(await B.evaluate(() => location.href), `${fx.server.url}/?room=${code}`, 'the address bar has the canonical code');
  assert.equal((await h.state(B)).room, code);
});

test('a code the server holds already: the page draws another, on a new socket', { timeout: 120_000 }, async () => {
  assert.ok(s.code, 'needs the room of the first test');
  const C = await fx.page('creator (first code taken)');
  await forceDraws(C, [bytesOf(s.code)]);
  const cws = sockets(C);
  const { code } = await h.createRoom(C, fx.server);
  await h.waitRole(C, 'alice');
  assert.notEqual(code, s.code, 'a room of its own');
  const rooms = roomSockets(cws);
  assert.deepEqual(rooms.map((w) => w.room), [s.code, code], 'the taken code first, then a new one');
  assert.deepEqual(rooms.map((w) => w.sent[0] && w.sent[0].room), [s.code, code], 'each `create` names its socket\'s code');
  const errors = (await h.state(C)).errors;
  assert.deepEqual(errors.map((e) => [e.code, e.quiet]), [['room_taken', true]], 'the refusal is noted, quietly');
  // The first room is untouched.
  assert.equal((await h.state(s.A)).peers.bob, true);
  await C.context().close();
});

test('five taken codes: the page gives up and says so, back on the landing form', { timeout: 120_000 }, async () => {
  const D = await fx.page('creator (every code taken)');
  await forceDraws(D, Array.from({ length: 6 }, () => bytesOf(s.code)));
  h.expectErrors(D, { codes: ['room_taken'] });
  const dws = sockets(D);
  await D.goto(`${fx.server.url}/`);
  await h.click(D, 'create');
  const text = await h.waitText(D, 'alert-text', /\S/, 30_000);
  assert.match(text, /^Could not create a room: each of the 5 codes this page drew was already in use/, `in words: "${text}"`);
  const st = await h.state(D);
  assert.equal(st.statusId, 'refuse.roomTaken');
  assert.equal(st.role, null, 'in no room');
  assert.ok(await h.byTestid(D, 'create').isVisible(), 'back on the landing form');
  const rooms = roomSockets(dws);
  assert.deepEqual(rooms.map((w) => w.room), Array(5).fill(s.code), '5 sockets, 5 codes tried, then no more');
  assert.deepEqual(st.errors.map((e) => [e.code, !!e.quiet]), [...Array(4).fill(['room_taken', true]), ['room_taken', false]]);
  await D.context().close();
});

test('a code that cannot be one: the field says so and no socket opens, typed or in a link', { timeout: 120_000 }, async () => {
  const E = await fx.page('joiner (bad codes)');
  const ews = sockets(E);
  await E.goto(`${fx.server.url}/`);
  const field = h.byTestid(E, 'join-code');
  for (const bad of ['ABCDU-FGHJK', 'ABCDE-FGHJ', 'ABCDE-FGHJK-1']) {
    await field.fill(bad);
    await field.press('Enter');
    await E.waitForFunction(() => document.getElementById('join-code').classList.contains('is-invalid'), null, { timeout: 5_000 });
    assert.equal(await field.getAttribute('aria-invalid'), 'true', `${bad}: aria-invalid`);
    assert.ok(await E.locator('#join-invalid').isVisible(), `${bad}: the field's message is shown`);
    assert.equal((await h.state(E)).statusId, 'join.notACode');
  }
  await h.byTestid(E, 'watch').click();
  await h.sleep(500);
  assert.deepEqual(roomSockets(ews), [], 'no room socket opened');
  assert.equal((await h.state(E)).role, null);

  // A good code again clears the mark (and is turned away by the server: no such room).
  h.expectErrors(E, { codes: ['no_such_room'] });
  await field.fill('zzzzz zzzzz');
  await field.press('Enter');
  await h.waitText(E, 'alert-text', /^There is no room ZZZZZ-ZZZZZ/, 10_000);
  assert.equal(await field.getAttribute('aria-invalid'), null, 'no longer marked');
  assert.deepEqual(roomSockets(ews).map((w) => w.url), [`${wsBase()}/ws?room=ZZZZZ-ZZZZZ`]);

  // A link with a code that cannot be one: the landing form, the code to correct, said in the alert.
  const F = await fx.page('joiner (bad link)');
  const fws = sockets(F);
  await F.goto(`${fx.server.url}/?room=nope&watch`);
  const alert = await h.waitText(F, 'alert-text', /nope/, 10_000);
  assert.match(alert, /^"nope" cannot be a room code/);
  assert.equal(await h.byTestid(F, 'join-code').inputValue(), 'nope');
  assert.equal(await h.byTestid(F, 'join-code').getAttribute('aria-invalid'), 'true');
  assert.equal(await F.evaluate(() => location.href), `${fx.server.url}/`, 'the address bar is the landing page\'s');
  await h.sleep(500);
  assert.deepEqual(roomSockets(fws), [], 'no room socket opened');
  await E.context().close();
  await F.context().close();
});

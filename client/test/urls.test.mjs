// urls.test.mjs — client/js/urls.js: the socket (with the room's canonical code in its query, or none for pings), room link and landing page beside the page, at / and under a proxy's sub-path, http → ws and https → wss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pageFolder, socketUrl, roomLink, landingUrl } from '../js/urls.js';

test('the page at /: the socket is /ws?room=CODE (/ws with no room), the link /?room=CODE', () => {
  assert.equal(socketUrl('http://127.0.0.1:8080/'), 'ws://127.0.0.1:8080/ws');
  assert.equal(socketUrl('http://127.0.0.1:8080/', 'K7QM2-9XD4R'), 'ws://127.0.0.1:8080/ws?room=K7QM2-9XD4R');
  assert.equal(roomLink('http://127.0.0.1:8080/', 'K7QM2-9XD4R'), 'http://127.0.0.1:8080/?room=K7QM2-9XD4R');
  assert.equal(landingUrl('http://127.0.0.1:8080/?room=K7QM2-9XD4R'), 'http://127.0.0.1:8080/');
  assert.equal(socketUrl('http://127.0.0.1:8080/?room=K7QM2-9XD4R&watch'), 'ws://127.0.0.1:8080/ws');
});

test('the page under a sub-path: everything stays under it', () => {
  assert.equal(socketUrl('https://example.org/sgp/'), 'wss://example.org/sgp/ws');
  assert.equal(socketUrl('https://example.org/sgp/', 'ABCDE-FGHJK'), 'wss://example.org/sgp/ws?room=ABCDE-FGHJK');
  assert.equal(roomLink('https://example.org/sgp/', 'K7QM2-9XD4R'), 'https://example.org/sgp/?room=K7QM2-9XD4R');
  assert.equal(landingUrl('https://example.org/sgp/'), 'https://example.org/sgp/');
  // Deeper, and with a port.
  assert.equal(socketUrl('https://example.org:8443/a/b/sgp/'), 'wss://example.org:8443/a/b/sgp/ws');
  assert.equal(socketUrl('https://example.org:8443/a/b/sgp/', 'K7QM2-9XD4R'), 'wss://example.org:8443/a/b/sgp/ws?room=K7QM2-9XD4R');
  assert.equal(roomLink('https://example.org:8443/a/b/sgp/', 'K7QM2-9XD4R'), 'https://example.org:8443/a/b/sgp/?room=K7QM2-9XD4R');
});

test('a page with a room in its query: the query does not leak into the socket or the link', () => {
  const page = 'https://example.org/sgp/?room=00000-00000&watch#x';
  assert.equal(socketUrl(page), 'wss://example.org/sgp/ws');
  assert.equal(socketUrl(page, 'K7QM2-9XD4R'), 'wss://example.org/sgp/ws?room=K7QM2-9XD4R', 'the room asked for, not the page\'s');
  assert.equal(roomLink(page, 'K7QM2-9XD4R'), 'https://example.org/sgp/?room=K7QM2-9XD4R');
  assert.equal(landingUrl(page), 'https://example.org/sgp/');
  // The page opened as index.html: the same folder.
  assert.equal(socketUrl('https://example.org/sgp/index.html?room=X'), 'wss://example.org/sgp/ws');
  assert.equal(socketUrl('https://example.org/sgp/index.html?room=X', 'ZZZZZ-ZZZZZ'), 'wss://example.org/sgp/ws?room=ZZZZZ-ZZZZZ');
  assert.equal(roomLink('https://example.org/sgp/index.html?room=X', 'ZZZZZ-ZZZZZ'), 'https://example.org/sgp/?room=ZZZZZ-ZZZZZ');
  assert.equal(landingUrl('https://example.org/sgp/index.html?room=X'), 'https://example.org/sgp/');
});

test('https → wss, http → ws', () => {
  assert.equal(new URL(socketUrl('https://sgp.test:9443/')).protocol, 'wss:');
  assert.equal(new URL(socketUrl('http://sgp.test:9080/')).protocol, 'ws:');
  // The host and port are the page's, whatever they are.
  assert.equal(new URL(socketUrl('https://sgp.test:9443/sgp/')).host, 'sgp.test:9443');
  assert.equal(socketUrl('http://[::1]:8080/'), 'ws://[::1]:8080/ws');
});

test('the code in the socket and the link is the canonical one (a proxy hashes the string as it is); the watch link adds &watch', () => {
  for (const typed of ['abcde-fghjk', ' ab cde-fg hjk ', 'ABCDEFGHJK', 'ABCDE--FGHJK']) {
    assert.equal(socketUrl('https://example.org/sgp/', typed), 'wss://example.org/sgp/ws?room=ABCDE-FGHJK', typed);
    assert.equal(roomLink('https://example.org/sgp/', typed), 'https://example.org/sgp/?room=ABCDE-FGHJK', typed);
  }
  // O → 0, I and L → 1.
  assert.equal(socketUrl('http://127.0.0.1:8080/', 'OOOOO-IIIIL'), 'ws://127.0.0.1:8080/ws?room=00000-11111');
  assert.equal(roomLink('https://example.org/sgp/', 'K7QM2-9XD4R', { watch: true }), 'https://example.org/sgp/?room=K7QM2-9XD4R&watch');
  assert.equal(new URL(socketUrl('https://example.org/sgp/', 'k7qm29xd4r')).searchParams.get('room'), 'K7QM2-9XD4R');
});

test('what cannot be a room code makes no socket and no link', () => {
  for (const bad of ['X', 'a b&c', 'ABCDE-FGHJ', 'ABCDU-FGHJK', 'ABCDE_FGHJK', 'ABCDE-FGHJKM']) {
    assert.throws(() => socketUrl('https://example.org/sgp/', bad), /socketUrl: not a room code/, bad);
    assert.throws(() => roomLink('https://example.org/sgp/', bad), /roomLink: not a room code/, bad);
  }
  assert.throws(() => socketUrl('https://example.org/sgp/', null), /socketUrl: no room code/);
  assert.throws(() => socketUrl('https://example.org/sgp/', ''), /socketUrl: no room code/);
});

test('the page folder from a module in its js/ folder (as the worker finds it)', () => {
  assert.equal(pageFolder('https://example.org/sgp/js/worker.js'), 'https://example.org/sgp/');
  assert.equal(pageFolder('http://127.0.0.1:8080/js/urls.js'), 'http://127.0.0.1:8080/');
  assert.equal(socketUrl(pageFolder('https://example.org/sgp/js/worker.js')), 'wss://example.org/sgp/ws');
  assert.equal(socketUrl(pageFolder('https://example.org/sgp/js/worker.js'), 'K7QM2-9XD4R'), 'wss://example.org/sgp/ws?room=K7QM2-9XD4R');
  // This module's own folder, as loaded here: the directory above client/js.
  assert.equal(pageFolder(), new URL('../', import.meta.url).href);
});

test('bad input: a clear error, never a wrong URL', () => {
  assert.throws(() => socketUrl('file:///home/me/client/'), /served over http: or https:, not file:/);
  assert.throws(() => roomLink('file:///home/me/client/', 'K7QM2-9XD4R'), /served over http: or https:/);
  assert.throws(() => socketUrl('file:///home/me/client/', 'K7QM2-9XD4R'), /served over http: or https:, not file:/);
  assert.throws(() => landingUrl('data:text/html,x'), TypeError); // not a base URL at all
  assert.throws(() => socketUrl('not a url'), TypeError);
  assert.throws(() => roomLink('https://example.org/', ''), /no room code/);
  assert.throws(() => roomLink('https://example.org/', null), /no room code/);
});

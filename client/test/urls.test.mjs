// urls.test.mjs — client/js/urls.js: the socket, room link and landing page beside the page, at / and under a proxy's sub-path, http → ws and https → wss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pageFolder, socketUrl, roomLink, landingUrl } from '../js/urls.js';

test('the page at /: the socket is /ws, the link /?room=CODE', () => {
  assert.equal(socketUrl('http://127.0.0.1:8080/'), 'ws://127.0.0.1:8080/ws');
  assert.equal(roomLink('http://127.0.0.1:8080/', 'K7QM2-9XD4R'), 'http://127.0.0.1:8080/?room=K7QM2-9XD4R');
  assert.equal(landingUrl('http://127.0.0.1:8080/?room=K7QM2-9XD4R'), 'http://127.0.0.1:8080/');
  assert.equal(socketUrl('http://127.0.0.1:8080/?room=K7QM2-9XD4R&watch'), 'ws://127.0.0.1:8080/ws');
});

test('the page under a sub-path: everything stays under it', () => {
  assert.equal(socketUrl('https://example.org/sgp/'), 'wss://example.org/sgp/ws');
  assert.equal(roomLink('https://example.org/sgp/', 'K7QM2-9XD4R'), 'https://example.org/sgp/?room=K7QM2-9XD4R');
  assert.equal(landingUrl('https://example.org/sgp/'), 'https://example.org/sgp/');
  // Deeper, and with a port.
  assert.equal(socketUrl('https://example.org:8443/a/b/sgp/'), 'wss://example.org:8443/a/b/sgp/ws');
  assert.equal(roomLink('https://example.org:8443/a/b/sgp/', 'X'), 'https://example.org:8443/a/b/sgp/?room=X');
});

test('a page with a room in its query: the query does not leak into the socket or the link', () => {
  const page = 'https://example.org/sgp/?room=OLD&watch#x';
  assert.equal(socketUrl(page), 'wss://example.org/sgp/ws');
  assert.equal(roomLink(page, 'NEW'), 'https://example.org/sgp/?room=NEW');
  assert.equal(landingUrl(page), 'https://example.org/sgp/');
  // The page opened as index.html: the same folder.
  assert.equal(socketUrl('https://example.org/sgp/index.html?room=X'), 'wss://example.org/sgp/ws');
  assert.equal(roomLink('https://example.org/sgp/index.html?room=X', 'Y'), 'https://example.org/sgp/?room=Y');
  assert.equal(landingUrl('https://example.org/sgp/index.html?room=X'), 'https://example.org/sgp/');
});

test('https → wss, http → ws', () => {
  assert.equal(new URL(socketUrl('https://sgp.test:9443/')).protocol, 'wss:');
  assert.equal(new URL(socketUrl('http://sgp.test:9080/')).protocol, 'ws:');
  // The host and port are the page's, whatever they are.
  assert.equal(new URL(socketUrl('https://sgp.test:9443/sgp/')).host, 'sgp.test:9443');
  assert.equal(socketUrl('http://[::1]:8080/'), 'ws://[::1]:8080/ws');
});

test('room codes are encoded; the watch link adds &watch', () => {
  assert.equal(roomLink('https://example.org/sgp/', 'a b&c'), 'https://example.org/sgp/?room=a%20b%26c');
  assert.equal(roomLink('https://example.org/sgp/', 'X', { watch: true }), 'https://example.org/sgp/?room=X&watch');
  assert.equal(new URL(roomLink('https://example.org/sgp/', 'a b&c')).searchParams.get('room'), 'a b&c');
});

test('the page folder from a module in its js/ folder (as the worker finds it)', () => {
  assert.equal(pageFolder('https://example.org/sgp/js/worker.js'), 'https://example.org/sgp/');
  assert.equal(pageFolder('http://127.0.0.1:8080/js/urls.js'), 'http://127.0.0.1:8080/');
  assert.equal(socketUrl(pageFolder('https://example.org/sgp/js/worker.js')), 'wss://example.org/sgp/ws');
  // This module's own folder, as loaded here: the directory above client/js.
  assert.equal(pageFolder(), new URL('../', import.meta.url).href);
});

test('bad input: a clear error, never a wrong URL', () => {
  assert.throws(() => socketUrl('file:///home/me/client/'), /served over http: or https:, not file:/);
  assert.throws(() => roomLink('file:///home/me/client/', 'X'), /served over http: or https:/);
  assert.throws(() => landingUrl('data:text/html,x'), TypeError); // not a base URL at all
  assert.throws(() => socketUrl('not a url'), TypeError);
  assert.throws(() => roomLink('https://example.org/', ''), /no room code/);
  assert.throws(() => roomLink('https://example.org/', null), /no room code/);
});

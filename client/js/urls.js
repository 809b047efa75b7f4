// urls.js — the page's own addresses (its folder, the WebSocket, a room's link, the landing page), each relative to the folder the page is served from, so that a proxy may serve it under a sub-path (https://example.org/sgp/) as well as at /; a room's socket and link carry its code in canonical form (codes.js), as a proxy that routes rooms by `?room=` needs. Pure: URLs in, URLs out.

/**
 * The folder the page is served from, as an absolute URL ending in `/`, given the URL of a
 * module in its `js/` folder (this module's own by default): `https://example.org/sgp/js/x.js`
 * → `https://example.org/sgp/`. The worker, whose `location` is its script's, finds the
 * page's folder this way.
 */
export function pageFolder(moduleUrl = import.meta.url) {
  const u = new URL('../', moduleUrl);
  u.search = '';
  u.hash = '';
  return u.href;
}

import { normalizeCode } from './codes.js';

/** Throws a clear error unless `u` is an http: or https: URL. */
function httpOnly(u, what) {
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new Error(`${what}: the page must be served over http: or https:, not ${u.protocol} (${u.href})`);
  }
}

/** `code` in canonical form (`ABCDE-FGHJK`), or a clear error if it cannot be a room code. */
function canonical(code, what) {
  const c = normalizeCode(code);
  if (c === null) {
    throw new Error(`${what}: ${code == null || code === '' ? 'no room code' : `not a room code: ${JSON.stringify(String(code))}`}`);
  }
  return c;
}

/**
 * The WebSocket endpoint beside the page: `ws` in the page's folder, `wss:` for an `https:`
 * page and `ws:` for an `http:` one. `page` is the page's URL or its folder, with or without a
 * query. Every socket that concerns a room names it, in canonical form, in its query (a proxy
 * in front of many servers routes a room's members to one of them by it, docs/protocol.md §3):
 * `https://example.org/sgp/?room=X`, code `abcde fghjk` → `wss://example.org/sgp/ws?room=ABCDE-FGHJK`.
 * Without `code` (a socket that only pings), plain `ws`.
 */
export function socketUrl(page, code) {
  const u = new URL('ws', page);
  httpOnly(u, 'socketUrl');
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  if (code !== undefined) u.search = `?room=${canonical(code, 'socketUrl')}`;
  return u.href;
}

/**
 * The link that opens room `code` (as a poster; `watch` adds `&watch`, the eavesdropper's
 * seat) on the page at `page`, with the code in canonical form: `https://example.org/sgp/`
 * → `https://example.org/sgp/?room=ABCDE-FGHJK`.
 */
export function roomLink(page, code, { watch = false } = {}) {
  const c = canonical(code, 'roomLink');
  const u = new URL(`./?room=${c}${watch ? '&watch' : ''}`, page);
  httpOnly(u, 'roomLink');
  return u.href;
}

/** The landing page (no room) of the page at `page`: its folder, query and fragment dropped. */
export function landingUrl(page) {
  const u = new URL('./', page);
  httpOnly(u, 'landingUrl');
  return u.href;
}

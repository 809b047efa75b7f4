// urls.js — the page's own addresses (its folder, the WebSocket, a room's link, the landing page), each relative to the folder the page is served from, so that a proxy may serve it under a sub-path (https://example.org/sgp/) as well as at /. Pure: URLs in, URLs out.

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

/** Throws a clear error unless `u` is an http: or https: URL. */
function httpOnly(u, what) {
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new Error(`${what}: the page must be served over http: or https:, not ${u.protocol} (${u.href})`);
  }
}

/**
 * The WebSocket endpoint beside the page: `ws` in the page's folder, `wss:` for an `https:`
 * page and `ws:` for an `http:` one. `page` is the page's URL or its folder, with or without a
 * query: `https://example.org/sgp/?room=X` → `wss://example.org/sgp/ws`.
 */
export function socketUrl(page) {
  const u = new URL('ws', page);
  httpOnly(u, 'socketUrl');
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

/**
 * The link that opens room `code` (as a poster; `watch` adds `&watch`, the eavesdropper's
 * seat) on the page at `page`: `https://example.org/sgp/` → `https://example.org/sgp/?room=CODE`.
 */
export function roomLink(page, code, { watch = false } = {}) {
  const c = String(code ?? '');
  if (!c) throw new Error('roomLink: no room code');
  const u = new URL(`./?room=${encodeURIComponent(c)}${watch ? '&watch' : ''}`, page);
  httpOnly(u, 'roomLink');
  return u.href;
}

/** The landing page (no room) of the page at `page`: its folder, query and fragment dropped. */
export function landingUrl(page) {
  const u = new URL('./', page);
  httpOnly(u, 'landingUrl');
  return u.href;
}

// proxy.test.mjs — sgp over https (issue 15): behind the real nginx and Caddy running the shipped deploy/nginx.conf and deploy/Caddyfile at the sub-path /sgp/, and on sgp's own TLS; two Chromium tabs and two `sgp pair` make a key each way, and the proxy's Host decides, with --trust-proxy, whether the page's socket is let in.
//
// The pages open https://sgp.test:PORT/…, a name that is not localhost, which this file's
// Chromium maps to 127.0.0.1 (`--host-resolver-rules`, as lan.test.mjs) and whose certificate,
// from a throwaway CA made here with openssl, it accepts by its public key
// (`--ignore-certificate-errors-spki-list`). `sgp pair` cannot resolve sgp.test, so it
// connects to https://127.0.0.1:PORT/…, which the same certificate names too, and trusts the
// CA through `--ca-file` (and refuses the server without it). Every process and folder a test
// makes is removed when it ends. nginx, caddy and openssl come from `make proxies`; if one is
// missing the test fails, saying so. A test that needs an sgp flag (`sgp help`) that this
// build lacks is skipped, naming it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as h from './harness.mjs';
import * as px from './proxies.mjs';

const NAME = h.LAN_NAME; // sgp.test
let browser;
let certs;
let tmp;
let help = '';

/** Skips `t` (and says so) when `sgp help` does not list `flag`; returns whether it did. */
function lacks(t, ...flags) {
  const missing = flags.filter((f) => !help.includes(f));
  if (missing.length) t.skip(`${h.SGP_BIN} has no ${missing.join(', ')} (its \`sgp help\` does not list it): build sgp with issue 15's TLS and proxy flags`);
  return missing.length > 0;
}

before(async () => {
  for (const [path, pkg, env] of [[px.OPENSSL, 'openssl', 'OPENSSL'], [px.NGINX, 'nginx', 'NGINX'], [px.CADDY, 'caddy', 'CADDY']]) {
    px.requireTool(path, pkg, env);
  }
  try {
    help = execFileSync(h.SGP_BIN, ['help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`cannot run ${h.SGP_BIN} help: ${e.message} (build it with \`cargo build\`, or set SGP_BIN)`);
  }
  tmp = px.tempDir('sgp-proxy-test-');
  certs = px.makeCerts(tmp.dir, NAME);
  h.allowHost(NAME);
  browser = await h.launchBrowser({
    args: [...h.LAN_ARGS, `--ignore-certificate-errors-spki-list=${certs.spki}`],
  });
});

after(async () => {
  if (browser) {
    try {
      await h.within(20_000, 'browser close', browser.close());
    } catch {
      // a hung browser is killed with node
    }
  }
  if (tmp) tmp.remove();
});

/** Runs `fn(undo)`; whatever it pushed on `undo` (stop a process, remove a folder) runs after,
 *  last first, even when it throws. */
async function withCleanup(fn) {
  const undo = [];
  try {
    return await fn(undo);
  } finally {
    for (const f of undo.reverse()) {
      try {
        await f();
      } catch {
        // best effort: the next step still runs
      }
    }
  }
}

/** A folder of its own for one proxy's config, logs and data. */
function proxyDir(undo, prefix) {
  const d = px.tempDir(prefix);
  undo.push(() => d.remove());
  return d.dir;
}

/** `sgp serve` on 127.0.0.1 with `args`, stopped by `undo`. */
async function sgpServe(undo, args) {
  const s = await h.startServer(args);
  undo.push(() => s.stop());
  return s;
}

/** nginx with the shipped site in front of sgp on `upstreamPort`; stopped by `undo`. */
async function nginx(undo, upstreamPort, opts = {}) {
  const dir = proxyDir(undo, 'sgp-nginx-');
  const [httpsPort, httpPort] = [await h.freePort(), await h.freePort()];
  const site = px.nginxSite({ name: NAME, httpsPort, httpPort, upstreamPort, cert: certs.cert, key: certs.key, ...opts });
  const n = await px.startNginx(dir, px.nginxConf(dir, site), [httpsPort, httpPort]);
  undo.push(() => n.stop());
  return { ...n, httpsPort, httpPort, base: `https://${NAME}:${httpsPort}/sgp` };
}

/** Lines of nginx's log of whole requests (the test's: the shipped access log leaves the query
 *  out) that include `what`, once one of them includes `status` too or 5 s have passed: nginx
 *  logs a WebSocket when it ends, a moment after its page left. */
async function accessLines(n, what, status) {
  const lines = () => n.requestLog().split('\n').filter((l) => l.includes(what));
  for (let waited = 0; waited < 5_000 && !lines().some((l) => l.includes(status)); waited += 100) await h.sleep(100);
  return lines();
}

/**
 * Two tabs (a context each) of this file's Chromium open `base`/ (the page's folder, no
 * trailing slash in `base`), make a room and a key; checks the key, the room link and the
 * address bar (under `base`/, on joining and after leaving), that each page is a secure
 * context and cross-origin isolated, and that every request it made stayed under `base`/.
 * Returns {key, ms}.
 */
async function twoTabsKey(t, base, label, undo) {
  const A = await h.newPage(browser, `alice (${label})`);
  const B = await h.newPage(browser, `bob (${label})`);
  undo.push(() => A.context().close(), () => B.context().close());
  // The tolerance keys.test.mjs uses, for the same reason: this checks the path, not the
  // default, and a 2-core machine running the tests can be busy.
  const { code, link } = await h.twoPosters({ url: base }, A, B, { toleranceMs: 4 });
  assert.equal(link, `${base}/?room=${encodeURIComponent(code)}`, 'the room link is under the page\'s own folder');
  const t0 = Date.now();
  await h.startAll(A, B);
  const [ka, kb] = await h.waitKeys([A, B], 240_000);
  const ms = Date.now() - t0;
  h.checkKey(assert, ka, `A (${label})`);
  h.checkKey(assert, kb, `B (${label})`);
  assert.equal(ka.key, kb.key, 'both tabs show the same key');
  for (const [who, p] of [['A', A], ['B', B]]) {
    const env = await p.evaluate(() => ({ secure: isSecureContext, isolated: crossOriginIsolated, href: location.href }));
    assert.equal(env.secure, true, `${who}: isSecureContext at ${env.href}`);
    assert.equal(env.isolated, true, `${who}: crossOriginIsolated at ${env.href} (the proxy passed COOP and COEP on)`);
    const outside = p.sgpWatch.requests.filter((u) => !/^(data|blob|about):/.test(u) && !u.startsWith(`${base}/`));
    assert.deepEqual(outside, [], `${who}: every request under ${base}/`);
    assert.equal(env.href, `${base}/?room=${encodeURIComponent(code)}`, `${who}: the address bar names the room under the page's folder`);
  }
  // Leaving puts the landing page's address back: the folder, not the server's /.
  await h.click(B, 'leave');
  await h.byTestid(B, 'create').waitFor({ state: 'visible', timeout: 15_000 });
  assert.equal(await B.evaluate(() => location.href), `${base}/`, 'B left: its address bar is the page\'s folder');
  for (const p of [A, B]) await h.assertClean(p);
  t.diagnostic(`${label}: room ${code}, key ${ka.key.slice(0, 16)}… strength ${ka.strength} in ${ms} ms (${(await h.state(A)).rounds.length} round(s))`);
  return { key: ka.key, ms };
}

/** Two `sgp pair --json` with `args` (the server and its CA): the creator, then the joiner
 *  by the room's code; both must print the same confirmed key and exit 0. Returns {key, ms}. */
async function pairKey(t, args, label) {
  const t0 = Date.now();
  const alice = h.runPair([...args, '--retries', '1000'], { timeout: 180_000 });
  const room = await h.pairRoom(alice, `sgp pair (creator, ${label})`);
  assert.equal(room.role, 'alice');
  const bob = h.runPair([...args, '--room', room.code, '--retries', '1000'], { timeout: 180_000 });
  const [ra, rb] = await Promise.all([alice.done, bob.done]);
  const ms = Date.now() - t0;
  for (const [who, r] of [['creator', ra], ['joiner', rb]]) {
    assert.equal(r.code, 0, `sgp pair (${who}, ${label}) exits 0: stderr ${r.stderr.trim().slice(-800)}; last line ${JSON.stringify(r.lines.at(-1))}`);
    const k = r.lines.find((o) => o.key).key;
    assert.equal(k.confirmed, true, `${who}: confirmed`);
    assert.match(k.key, /^[0-9a-f]{64}$/);
  }
  assert.equal(ra.key.key, rb.key.key, 'both sgp pair print the same key');
  t.diagnostic(`${label}: sgp pair room ${room.code}, key ${ra.key.key.slice(0, 16)}… strength ${ra.key.strength} in ${ms} ms`);
  return { key: ra.key.key, ms };
}

/** `sgp pair` against `server` without `--ca-file`: the test CA is not the system's, so it must
 *  refuse the certificate and say so, never make a key. */
async function refusesUnknownCa(server) {
  const p = h.runPair(['--server', server], { timeout: 60_000 });
  const r = await p.done;
  const err = r.lines.find((o) => o.error);
  assert.notEqual(r.code, 0, `sgp pair without --ca-file must fail against a server whose CA it does not trust (lines ${JSON.stringify(r.lines)})`);
  assert.ok(!r.lines.some((o) => o.room || o.key), 'and never enter a room');
  assert.ok(err, `it prints an error line (stderr ${r.stderr.trim().slice(-500)})`);
  assert.equal(err.error.code, 5, `exit code 5, the server cannot be reached: ${err.error.message}`);
  return err.error.message;
}

test('nginx with deploy/nginx.conf at https://sgp.test:PORT/sgp/: redirects, two tabs make a key (secure, isolated), sgp pair makes one over wss with --ca-file', { timeout: 420_000 }, async (t) => {
  if (lacks(t, '--trust-proxy', '--ca-file')) return;
  await withCleanup(async (undo) => {
    const sgp = await sgpServe(undo, ['--trust-proxy']);
    const n = await nginx(undo, sgp.port);
    t.diagnostic(`nginx on 127.0.0.1:${n.httpsPort} (https) and :${n.httpPort} (http) in front of sgp on ${sgp.url}; page at ${n.base}/`);
    try {
      // /sgp without its slash goes to /sgp/; plain http goes to https.
      const noSlash = await px.httpsGet({ port: n.httpsPort, name: NAME, ca: certs.ca, path: '/sgp' });
      assert.equal(noSlash.status, 301, '/sgp is redirected');
      assert.equal(noSlash.headers.location, '/sgp/', 'to /sgp/');
      const plain = await px.httpGet({ port: n.httpPort, host: NAME, path: '/sgp/?room=X' });
      assert.equal(plain.status, 301, 'plain http is redirected');
      assert.equal(plain.headers.location, `https://${NAME}/sgp/?room=X`, 'to https, path and query kept');
      // sgp's isolation headers come through nginx as sgp sent them.
      const page = await px.httpsGet({ port: n.httpsPort, name: NAME, ca: certs.ca, path: '/sgp/' });
      assert.equal(page.status, 200);
      assert.equal(page.headers['cross-origin-opener-policy'], 'same-origin');
      assert.equal(page.headers['cross-origin-embedder-policy'], 'require-corp');
      assert.equal(page.headers['cross-origin-resource-policy'], 'same-origin');
      // The socket at the sub-path: the page's own origin is let in, another is not.
      const own = await px.upgrade({ port: n.httpsPort, name: NAME, ca: certs.ca, path: '/sgp/ws', origin: `https://${NAME}:${n.httpsPort}` });
      assert.equal(own.status, 101, `the page's origin opens /sgp/ws: ${own.body}`);
      const other = await px.upgrade({ port: n.httpsPort, name: NAME, ca: certs.ca, path: '/sgp/ws', origin: `https://evil.test:${n.httpsPort}` });
      assert.equal(other.status, 403, 'another origin is refused, --trust-proxy or not');

      await twoTabsKey(t, n.base, 'nginx', undo);
      const sockets = await accessLines(n, 'GET /sgp/ws?room=', '" 101 ');
      assert.ok(sockets.some((l) => /"GET \/sgp\/ws\?room=[0-9A-Z]{5}-[0-9A-Z]{5} HTTP\/1\.1" 101 /.test(l)),
        `the pages' room sockets went through nginx at /sgp/ws, naming the room (?room=CODE): ${sockets.join(' | ')}`);

      const server = `https://127.0.0.1:${n.httpsPort}/sgp/`;
      const message = await refusesUnknownCa(server);
      t.diagnostic(`sgp pair without --ca-file: ${message}`);
      await pairKey(t, ['--server', server, '--ca-file', certs.ca], 'nginx');
      // The join link (/sgp/?room=CODE), the sockets and the redirect above all named rooms:
      // the shipped access log keeps the path only.
      const log = n.accessLog();
      assert.match(log, /"GET \/sgp\/ws HTTP\/1\.1" 101 /, 'nginx\'s own access log has the pages\' sockets');
      assert.doesNotMatch(log, /room=/, 'and no room code: the access log leaves the query out');
    } catch (e) {
      e.message += `\n--- nginx log ---\n${n.log()}\n--- nginx requests (last lines) ---\n${n.requestLog().trim().split('\n').slice(-15).join('\n')}\n--- sgp serve stderr ---\n${sgp.stderr().slice(-2000)}`;
      throw e;
    }
  });
});

test('Caddy with deploy/Caddyfile at https://sgp.test:PORT/sgp/: a redirect, two tabs make a key (secure, isolated), sgp pair makes one over wss with --ca-file', { timeout: 300_000 }, async (t) => {
  if (lacks(t, '--trust-proxy')) return;
  await withCleanup(async (undo) => {
    const sgp = await sgpServe(undo, ['--trust-proxy']);
    const dir = proxyDir(undo, 'sgp-caddy-');
    const port = await h.freePort();
    const c = await px.startCaddy(dir, px.caddyfile(dir, { name: NAME, port, upstreamPort: sgp.port, cert: certs.cert, key: certs.key }), port);
    undo.push(() => c.stop());
    const base = `https://${NAME}:${port}/sgp`;
    t.diagnostic(`caddy on 127.0.0.1:${port} in front of sgp on ${sgp.url}; page at ${base}/`);
    try {
      // The shipped file is as `caddy fmt` writes it (Caddy warns otherwise).
      const fmt = execFileSync(px.CADDY, ['fmt', px.CADDYFILE], { encoding: 'utf8' });
      assert.equal(fmt, readFileSync(px.CADDYFILE, 'utf8'), 'deploy/Caddyfile is formatted (caddy fmt --overwrite deploy/Caddyfile)');
      const noSlash = await px.httpsGet({ port, name: NAME, ca: certs.ca, path: '/sgp' });
      assert.equal(noSlash.status, 308, '/sgp is redirected');
      assert.equal(noSlash.headers.location, '/sgp/', 'to /sgp/');
      await twoTabsKey(t, base, 'caddy', undo);
      await pairKey(t, ['--server', `https://127.0.0.1:${port}/sgp/`, '--ca-file', certs.ca], 'caddy');
    } catch (e) {
      e.message += `\n--- caddy log ---\n${c.log()}\n--- sgp serve stderr ---\n${sgp.stderr().slice(-2000)}`;
      throw e;
    }
  });
});

test('sgp\'s own TLS (--tls-cert, --tls-key), no proxy: two tabs make a key (secure, isolated), sgp pair makes one with --ca-file', { timeout: 360_000 }, async (t) => {
  if (lacks(t, '--tls-cert', '--tls-key', '--ca-file')) return;
  await withCleanup(async (undo) => {
    const sgp = await sgpServe(undo, ['--tls-cert', certs.cert, '--tls-key', certs.key]);
    assert.match(sgp.url, /^https:\/\/127\.0\.0\.1:\d+$/, `sgp serve says it listens on https (${sgp.url})`);
    const base = `https://${NAME}:${sgp.port}`;
    t.diagnostic(`sgp serve on ${sgp.url}; page at ${base}/`);
    try {
      await twoTabsKey(t, base, 'sgp TLS', undo);
      const message = await refusesUnknownCa(sgp.url);
      t.diagnostic(`sgp pair without --ca-file: ${message}`);
      await pairKey(t, ['--server', sgp.url, '--ca-file', certs.ca], 'sgp TLS');
    } catch (e) {
      e.message += `\n--- sgp serve stderr ---\n${sgp.stderr().slice(-2000)}`;
      throw e;
    }
  });
});

test('nginx with its default Host (127.0.0.1:PORT) and X-Forwarded-Host: the page\'s socket is refused without --trust-proxy, let in with it', { timeout: 240_000 }, async (t) => {
  if (lacks(t, '--trust-proxy')) return;
  for (const trust of [false, true]) {
    await withCleanup(async (undo) => {
      const label = trust ? 'with --trust-proxy' : 'without --trust-proxy';
      const sgp = await sgpServe(undo, trust ? ['--trust-proxy'] : []);
      const n = await nginx(undo, sgp.port, { defaultHost: true });
      const origin = `https://${NAME}:${n.httpsPort}`;
      try {
        const own = await px.upgrade({ port: n.httpsPort, name: NAME, ca: certs.ca, path: '/sgp/ws', origin });
        const other = await px.upgrade({ port: n.httpsPort, name: NAME, ca: certs.ca, path: '/sgp/ws', origin: 'https://evil.test' });
        t.diagnostic(`${label}: the page's origin gets ${own.status} ${own.body.trim()}; another origin gets ${other.status}`);
        assert.equal(own.status, trust ? 101 : 403, `${label}: an upgrade from the page's origin ${origin}`);
        assert.equal(other.status, 403, `${label}: another origin is refused`);

        const P = await h.newPage(browser, `page (${label})`);
        undo.push(() => P.context().close());
        if (trust) {
          await h.createRoom(P, { url: n.base });
          await h.waitRole(P, 'alice');
          assert.equal((await h.state(P)).connected, true, 'the page is connected');
          // nginx logs a WebSocket when it ends: leave, so that the room's socket closes.
          await h.click(P, 'leave');
        } else {
          // The page cannot open its socket (Chromium logs the refused handshake, the page
          // notes a closed connection): it says so, and never enters a room.
          h.expectErrors(P, { console: [/WebSocket connection to .* failed/], codes: ['connection'] });
          await P.goto(`${n.base}/`);
          await h.click(P, 'create');
          const st = await P.waitForFunction(() => {
            const s = window.sgpState;
            return s && s.errors.some((e) => e.code === 'connection') && !s.connected ? s : false;
          }, null, { timeout: 30_000, polling: 100 }).then((x) => x.jsonValue());
          assert.equal(st.role, null, 'no room without a socket');
          assert.match(st.status, /\S/, 'the page says what happened');
          t.diagnostic(`${label}: the page says "${st.status}"`);
        }
        // The page's room socket, named by its code (?room=), as nginx logged it once it ended.
        const ws = await accessLines(n, 'GET /sgp/ws?room=', `" ${trust ? 101 : 403} `);
        assert.ok(ws.some((l) => l.includes(`" ${trust ? 101 : 403} `)), `nginx logged the page's room socket as ${trust ? 101 : 403}: ${ws.join(' | ')}`);
        await h.assertClean(P);
      } catch (e) {
        e.message += `\n--- nginx log ---\n${n.log()}\n--- sgp serve stderr ---\n${sgp.stderr().slice(-2000)}`;
        throw e;
      }
    });
  }
});

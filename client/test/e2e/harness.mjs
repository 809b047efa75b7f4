// harness.mjs — what the browser end-to-end tests share: a real `sgp serve --port 0`, a
// headless Chromium (Debian's, through playwright-core) with a fresh profile, pages that
// record their own errors and every request they make, `sgp pair --json` as a child process,
// and small helpers to read the page through its DOM contract (`data-testid` attributes and
// `window.sgpState`, nothing else), and for tests that run other servers beside sgp (the proxy
// tests, with proxies.mjs): free ports, waiting for a port, children killed with the run.
//
// Strict by default: after EVERY test (a global afterEach), every page a test used must have
// had no uncaught error, no console error, no error the page itself noted in
// `sgpState.errors` (its caught exceptions, and any refusal it showed), no failed request and
// no request leaving this machine. A test that provokes an error on purpose says so first
// with `expectErrors(page, {console, codes})`; nothing else is excused.
//
// Environment: SGP_BIN (default target/debug/sgp of this repository), CHROMIUM (default
// /usr/bin/chromium), SGP_E2E_HEADED=1 to watch the browser, SGP_E2E_VERBOSE=1 to echo the
// pages' console.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { afterEach } from 'node:test';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The repository's root (client/test/e2e/../../..). */
export const REPO = resolve(HERE, '../../..');
export const SGP_BIN = process.env.SGP_BIN || resolve(HERE, '../../../target/debug/sgp');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const VERBOSE = !!process.env.SGP_E2E_VERBOSE;

/** The switches the brief asks for: no sandbox (root in a container), no GPU, nothing that
 *  phones home, so that every request a page makes is one the page asked for. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--no-proxy-server',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // The page speaks the browser's language (client/js/i18n.js): the tests run in English
  // whatever this machine's locale, unless a context asks for another (newPage opts.locale).
  '--lang=en-US',
];

/** Playwright's own defaults that keep background tabs at full speed. The background-tab test
 *  drops them so that a hidden tab is throttled the way a person's browser throttles it. */
export const NO_BACKGROUND_THROTTLING_DEFAULTS = [
  '--disable-background-timer-throttling',
  '--disable-backgrounding-occluded-windows',
  '--disable-renderer-backgrounding',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects after `ms` with a message naming what took too long. */
export function within(ms, what, promise) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------
// Processes started by the tests, killed on teardown and, as a last resort, when node exits.

const children = new Set();
function killChildren() {
  for (const c of children) {
    try {
      // SIGKILL, unless the child asked for another last signal: nginx's master killed
      // outright would leave its workers behind, SIGTERM makes it take them down.
      c.kill(c.lastSignal || 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.on('exit', killChildren);
// The test runner stops a file with a signal on timeout or Ctrl-C: leave no server or
// browser behind.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killChildren();
    process.exit(130);
  });
}

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Starts `cmd` as a child that is killed with the test run at the latest (as every child
 *  here): for the proxies and tools a test runs beside sgp. `lastSignal`: the signal that
 *  kills it then (SIGKILL by default). */
export function spawnTracked(cmd, args, opts, { lastSignal } = {}) {
  const child = track(spawn(cmd, args, opts));
  if (lastSignal) child.lastSignal = lastSignal;
  return child;
}

/** Stops a child: SIGTERM, then SIGKILL after `ms`; resolves once it is gone. */
export async function stopChild(child, ms = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = once(child, 'exit');
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), ms);
  await gone;
  clearTimeout(t);
}

// ---------------------------------------------------------------------------------------
// Ports.

/** A TCP port free on 127.0.0.1 right now (the kernel's pick; bind it soon). */
export async function freePort() {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise((res, rej) => {
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', res);
  });
  const { port } = srv.address();
  await new Promise((res) => srv.close(res));
  return port;
}

/**
 * Resolves once something accepts TCP connections on 127.0.0.1:`port`; rejects after `ms`, or
 * as soon as `child` (the process that should listen there) exits, with `what()` (its log).
 */
export async function waitPort(port, { child, ms = 30_000, what = () => '' } = {}) {
  const { connect } = await import('node:net');
  const t0 = Date.now();
  for (;;) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`exited (code ${child.exitCode}, signal ${child.signalCode}) before listening on 127.0.0.1:${port}: ${what()}`);
    }
    const ok = await new Promise((res) => {
      const sock = connect({ host: '127.0.0.1', port });
      sock.once('connect', () => {
        sock.destroy();
        res(true);
      });
      sock.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() - t0 > ms) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms: ${what()}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------
// The server.

/**
 * Starts `sgp serve --port 0` (or opts.port; plus `extra` arguments) and waits for its
 * `sgp listening on http://HOST:PORT/` line (https:// with TLS). Returns {url, port, host,
 * proc, stderr(), stop()}; `url` is on 127.0.0.1 (also when the server listens on every
 * address: --bind 0.0.0.0), with the scheme the line says.
 */
export async function startServer(extra = [], { port: askPort = 0 } = {}) {
  const proc = track(spawn(SGP_BIN, ['serve', '--port', String(askPort), ...extra], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const lines = createInterface({ input: proc.stdout });
  const spawnError = once(proc, 'error').then(([e]) => {
    throw new Error(`cannot start ${SGP_BIN}: ${e.message} (build it with \`cargo build\`, or set SGP_BIN)`);
  });
  const exited = once(proc, 'exit').then(([code]) => {
    throw new Error(`sgp serve exited (code ${code}) before listening: ${stderr.trim()}`);
  });
  const listening = (async () => {
    for await (const line of lines) {
      const m = /^sgp listening on (https?):\/\/(\[[0-9a-f:]+\]|[^/:\s]+):(\d+)\//i.exec(line);
      if (m) {
        const host = m[2];
        const local = host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host;
        return { url: `${m[1].toLowerCase()}://${local}:${m[3]}`, port: Number(m[3]), host };
      }
      throw new Error(`unexpected first line from sgp serve: ${JSON.stringify(line)}`);
    }
    throw new Error('sgp serve closed its stdout before listening');
  })();
  const { url, port, host } = await within(20_000, 'sgp serve to listen', Promise.race([listening, spawnError, exited]));
  // Keep draining stdout so the server never blocks on a full pipe.
  lines.on('line', (l) => VERBOSE && console.log(`[sgp serve] ${l}`));
  spawnError.catch(() => {});
  exited.catch(() => {});
  return {
    url, // http://127.0.0.1:PORT (no trailing slash; https:// with TLS)
    port,
    host, // as the listening line says it (0.0.0.0 with --bind 0.0.0.0)
    proc,
    stderr: () => stderr,
    stop: () => stopChild(proc),
    /** Kills it at once (SIGKILL), as a crash or a pulled plug would. */
    kill: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = once(proc, 'exit');
      proc.kill('SIGKILL');
      await gone;
    },
  };
}

// ---------------------------------------------------------------------------------------
// The browser.

/**
 * Launches Debian's Chromium headless. Every launch gets a fresh temporary profile
 * (playwright-core makes a new user-data-dir for each `launch` and deletes it on close).
 * opts.throttleBackground: drop Playwright's switches that keep hidden tabs at full speed.
 */
export async function launchBrowser(opts = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: !process.env.SGP_E2E_HEADED,
    args: [...CHROMIUM_ARGS, ...(opts.args || [])],
    ignoreDefaultArgs: opts.throttleBackground ? NO_BACKGROUND_THROTTLING_DEFAULTS : undefined,
    timeout: 60_000,
  });
}

/**
 * A Chromium whose tabs behave like a person's: one window, the tabs not in front are
 * `document.visibilityState === 'hidden'`, and hidden tabs are throttled as usual.
 *
 * Why not `launchBrowser`: Playwright turns on focus emulation for every page it drives
 * (CDP `Emulation.setFocusEmulationEnabled`), which keeps every tab "visible" even when it is
 * not the window's active tab, and it launches with switches that switch background
 * throttling off. So this starts Chromium itself (headless, the brief's switches, a fresh
 * temporary profile, DevTools on a free port) and attaches with
 * `connectOverCDP(…, {noDefaults: true})`: pages of the browser's default context then get no
 * focus emulation, and `page.bringToFront()` on one tab really hides the others.
 * Returns {browser, context, close()}.
 */
export async function launchRealTabs() {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const profile = mkdtempSync(resolve(tmpdir(), 'sgp-e2e-profile-'));
  const proc = track(spawn(CHROMIUM, [
    '--headless',
    ...CHROMIUM_ARGS,
    '--remote-debugging-port=0',
    `--user-data-dir=${profile}`,
    'about:blank',
  ], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let err = '';
  proc.stderr.setEncoding('utf8');
  const endpoint = await within(60_000, 'Chromium to open DevTools', new Promise((res, rej) => {
    proc.stderr.on('data', (d) => {
      err += d;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
      if (m) res(m[1]);
    });
    proc.once('error', rej);
    proc.once('exit', (code) => rej(new Error(`chromium exited (code ${code}): ${err.slice(-2000)}`)));
  }));
  proc.stderr.resume();
  const browser = await chromium.connectOverCDP(endpoint, { noDefaults: true, isLocal: true, timeout: 60_000 });
  const context = browser.contexts()[0];
  return {
    browser,
    context,
    proc,
    async close() {
      try {
        await within(15_000, 'browser close', browser.close());
      } catch {
        // disconnected already
      }
      await stopChild(proc);
      try {
        rmSync(profile, { recursive: true, force: true });
      } catch {
        // best effort
      }
    },
  };
}

/** Hosts a page may talk to: this machine's loopback, plus what a test adds (allowHost). */
const ALLOWED_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const INTERNAL = /^(data|blob|about|chrome-error|chrome):/;
const isLocal = (url) => {
  const m = /^(?:https?|wss?):\/\/(\[[^\]]+\]|[^/:]+)(?::\d+)?\//.exec(url);
  return !!m && ALLOWED_HOSTS.has(m[1]);
};

/** Lets pages talk to `host` too (a name the test maps to loopback, such as LAN_NAME). */
export function allowHost(host) {
  ALLOWED_HOSTS.add(host);
}

/**
 * The rule for every test and benchmark here: traffic goes only to the loopback range
 * (127.0.0.0/8, ::1) or to addresses inside network namespaces that the test itself creates,
 * never to this machine's own network address (no service of ours lives there, and such
 * traffic is watched for and flagged).
 *
 * So a page that sees the server as a second machine on a LAN would (plain http to a host that
 * is not potentially trustworthy: not a secure context, not cross-origin isolated) opens it at
 * LAN_NAME, a name that is not `localhost`, which Chromium resolves to 127.0.0.1 through
 * LAN_ARGS. The server stays on 127.0.0.1; only the page's idea of where it is changes.
 */
export const LAN_NAME = 'sgp.test';
export const LAN_ARGS = [`--host-resolver-rules=MAP ${LAN_NAME} 127.0.0.1`];

/** Every page watched, for the afterEach check. */
const watched = new Set();

/**
 * Wraps a Playwright page so it records what would make a test fail:
 * uncaught page errors, console errors, failed requests, and any request that leaves
 * 127.0.0.1 (which would break "works offline from the binary alone").
 */
export function watchPage(page, name) {
  const w = {
    name, pageErrors: [], consoleErrors: [], external: [], failed: [], requests: [],
    // What the afterEach check has seen already (so an error fails the test it happened in).
    seen: { pageErrors: 0, consoleErrors: 0, external: 0, failed: 0, errorSeq: 0 },
    allow: { console: [], codes: [] },
  };
  watched.add(page);
  page.on('pageerror', (e) => w.pageErrors.push(String(e && e.stack ? e.stack : e)));
  page.on('console', (m) => {
    if (VERBOSE) console.log(`[${name} console.${m.type()}] ${m.text()}`);
    if (m.type() === 'error') w.consoleErrors.push(m.text());
  });
  page.on('request', (r) => {
    const url = r.url();
    w.requests.push(url);
    if (!isLocal(url) && !INTERNAL.test(url)) w.external.push(url);
  });
  page.on('requestfailed', (r) => {
    // A page closed mid-load cancels its requests: that is not the page's fault.
    const f = r.failure();
    if (f && /ERR_ABORTED/.test(f.errorText)) return;
    w.failed.push(`${r.url()}: ${f ? f.errorText : '?'}`);
  });
  // The worker's errors surface as page errors through its onerror; its own requests (the
  // WebSocket) go through the page's network events in Chromium.
  page.on('worker', (wk) => {
    wk.on('console', (m) => {
      if (VERBOSE) console.log(`[${name} worker console.${m.type()}] ${m.text()}`);
      if (m.type() === 'error') w.consoleErrors.push(`(worker) ${m.text()}`);
    });
  });
  page.sgpWatch = w;
  return w;
}

/**
 * A new page (in `context`, or in a new context of `browser`) with its errors and requests
 * recorded. opts.viewport, opts.colorScheme, opts.permissions and opts.locale (default
 * en-US: the page's language follows it) pass to the new context.
 */
export async function newPage(target, name = 'page', opts = {}) {
  const context = typeof target.newContext === 'function'
    ? await target.newContext({
      viewport: opts.viewport || { width: 1280, height: 900 },
      colorScheme: opts.colorScheme,
      permissions: opts.permissions,
      locale: opts.locale || 'en-US',
    })
    : target;
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  watchPage(page, name);
  return page;
}

/**
 * Excuses errors a test provokes on purpose on `page`, from now on: console errors matching
 * one of `console` (regexps), `sgpState.errors` entries whose code is in `codes` (or whose
 * message matches one of `console`), and failed requests if `failedRequests`.
 */
export function expectErrors(page, { console: res = [], codes = [], failedRequests = false } = {}) {
  const a = page.sgpWatch.allow;
  a.console.push(...res);
  a.codes.push(...codes);
  if (failedRequests) a.failedRequests = true;
}

/** The page's own noted errors (sgpState.errors) with seq > `after`, or [] if it cannot say. */
async function pageNotedErrors(page, after) {
  if (page.isClosed()) return [];
  try {
    return await within(5_000, 'sgpState.errors', page.evaluate((after) => {
      const s = window.sgpState;
      return s && Array.isArray(s.errors) ? s.errors.filter((e) => !(e.seq <= after)) : [];
    }, after));
  } catch {
    return []; // closing, or navigated away: its console errors still count
  }
}

/**
 * Everything wrong with `page` since the last check (all of it with opts.all): uncaught
 * errors, console errors, errors in sgpState.errors that were not quiet, failed requests,
 * requests leaving this machine — minus what expectErrors excused. Marks it seen.
 */
async function problemsOf(page, opts = {}) {
  const w = page.sgpWatch;
  const from = opts.all ? { pageErrors: 0, consoleErrors: 0, external: 0, failed: 0, errorSeq: 0 } : w.seen;
  const excused = (t) => w.allow.console.some((re) => re.test(t));
  const pageErrors = w.pageErrors.slice(from.pageErrors);
  const consoleErrors = w.consoleErrors.slice(from.consoleErrors).filter((t) => !excused(t));
  const external = w.external.slice(from.external);
  const failed = w.allow.failedRequests ? [] : w.failed.slice(from.failed);
  const noted = await pageNotedErrors(page, from.errorSeq);
  const loud = noted.filter((e) => !e.quiet && !w.allow.codes.includes(e.code) && !excused(e.message));
  w.seen = {
    pageErrors: w.pageErrors.length,
    consoleErrors: w.consoleErrors.length,
    external: w.external.length,
    failed: w.failed.length,
    errorSeq: Math.max(w.seen.errorSeq, ...noted.map((e) => e.seq || 0)),
  };
  const problems = [];
  if (pageErrors.length) problems.push(`uncaught page errors:\n  ${pageErrors.join('\n  ')}`);
  if (consoleErrors.length) problems.push(`console errors:\n  ${consoleErrors.join('\n  ')}`);
  if (loud.length) problems.push(`errors the page noted (sgpState.errors):\n  ${loud.map((e) => `${e.code}: ${e.message}`).join('\n  ')}`);
  if (external.length) problems.push(`requests leaving this machine:\n  ${external.join('\n  ')}`);
  if (failed.length) problems.push(`failed requests:\n  ${failed.join('\n  ')}`);
  return problems;
}

/**
 * Throws if the page had, at any time so far, an uncaught error, a console error, an error it
 * noted in sgpState.errors, a request that failed, or a request for anything that is not on
 * this machine — minus what expectErrors excused. (The afterEach check does the same after
 * every test, for every page, with what is new since its last look.)
 */
export async function assertClean(page) {
  const problems = await problemsOf(page, { all: true });
  if (problems.length) throw new Error(`${page.sgpWatch.name}: ${problems.join('\n')}`);
}

// Registered only in test files (run by `node --test`, or directly as *.test.mjs); scripts
// that use the harness (bench-browser.mjs, audit-browser.mjs) are not test runs.
const IN_TEST = !!process.env.NODE_TEST_CONTEXT || /\.test\.mjs$/.test(process.argv[1] || '');
if (IN_TEST) afterEach(async () => {
  const all = [];
  for (const page of watched) {
    const problems = await problemsOf(page);
    if (problems.length) all.push(`${page.sgpWatch.name}: ${problems.join('\n')}`);
    if (page.isClosed()) watched.delete(page);
  }
  if (all.length) throw new Error(`a page was not clean:\n${all.join('\n')}`);
});

// ---------------------------------------------------------------------------------------
// Reading the page through its contract.

export const byTestid = (page, id) => page.locator(`[data-testid="${id}"]`);

/** The text of a `data-testid` element (trimmed). */
export async function text(page, id, timeout = 30_000) {
  const l = byTestid(page, id).first();
  await l.waitFor({ state: 'attached', timeout });
  return (await l.textContent()).trim();
}

/** An attribute of a `data-testid` element. */
export async function attr(page, id, name, timeout = 30_000) {
  const l = byTestid(page, id).first();
  await l.waitFor({ state: 'attached', timeout });
  return l.getAttribute(name);
}

/** The room link: an input's value or an anchor's href. */
export async function roomLink(page, timeout = 30_000) {
  await page.waitForFunction(() => {
    const e = document.querySelector('[data-testid="room-link"]');
    if (!e) return false;
    const v = 'value' in e && e.tagName !== 'A' ? e.value : e.href || e.getAttribute('href') || e.textContent;
    return /[?&]room=/.test(v || '');
  }, null, { timeout, polling: 100 });
  return page.evaluate(() => {
    const e = document.querySelector('[data-testid="room-link"]');
    const v = 'value' in e && e.tagName !== 'A' ? e.value : e.href || e.getAttribute('href') || e.textContent;
    return new URL(v.trim(), location.href).href;
  });
}

/** Waits until a `data-testid` element's data-state is one of `states`; returns it. */
export async function waitState(page, id, states, timeout = 120_000) {
  const h = await page.waitForFunction(([id, states]) => {
    const e = document.querySelector(`[data-testid="${id}"]`);
    const s = e && e.getAttribute('data-state');
    return states.includes(s) ? s : false;
  }, [id, states], { timeout, polling: 100 });
  return h.jsonValue();
}

/** Waits until `data-testid` text matches `re`; returns the text. */
export async function waitText(page, id, re, timeout = 30_000, polling = 100) {
  const h = await page.waitForFunction(([id, src, flags]) => {
    const e = document.querySelector(`[data-testid="${id}"]`);
    const t = e ? e.textContent.trim() : '';
    return new RegExp(src, flags).test(t) ? t : false;
  }, [id, re.source, re.flags], { timeout, polling });
  return h.jsonValue();
}

/** A one-paragraph account of where a page is, for failure messages. */
export async function describe(page) {
  try {
    const s = await state(page);
    const status = await page.evaluate(() => {
      const e = document.querySelector('[data-testid="status"]');
      return e ? e.textContent.trim() : '(no status element)';
    });
    const rounds = (s && s.rounds ? s.rounds : []).map((r) => `${r.round}:n${r.n}/kept ${r.kept}${r.dropped ? ' dropped' : ''}`);
    // Not part of the contract: the page's own per-round timing report, when it has one.
    const timing = (s && s.rounds ? s.rounds : []).slice(-4).filter((r) => r.timing).map((r) => {
      const t = r.timing;
      const e = t.error_us || {};
      return `${r.round}: ${t.within_tolerance ?? '?'}/${t.sent ?? '?'} posts within τ, arrival error p50 ${e.p50} p90 ${e.p90} max ${e.max} µs`;
    });
    return `status "${status}"; role ${s && s.role}; params ${JSON.stringify(s && s.params)}; ` +
      `${rounds.length} round(s) [${rounds.slice(-12).join(', ')}]; ` +
      (timing.length ? `page timing report [${timing.join('; ')}]; ` : '') +
      `key ${s && s.key ? JSON.stringify({ key: s.key.key, strength: s.key.strength, confirmed: s.key.confirmed }) : null}; ` +
      `errors ${JSON.stringify(s && s.errors ? s.errors.slice(-5) : [])}`;
  } catch (e) {
    return `(cannot read the page: ${e.message.split('\n')[0]})`;
  }
}

/** A JSON copy of window.sgpState. */
export const state = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.sgpState ?? null)));

/** Clicks a `data-testid` element once it is enabled. */
export async function click(page, id, timeout = 30_000) {
  const l = byTestid(page, id).first();
  await l.waitFor({ state: 'visible', timeout });
  await page.waitForFunction((id) => {
    const e = document.querySelector(`[data-testid="${id}"]`);
    return e && !e.disabled && e.getAttribute('aria-disabled') !== 'true';
  }, id, { timeout, polling: 100 });
  await l.click({ timeout });
}

/** Opens `/` and creates a room (tolerance and target bits left at the page's defaults
 *  unless given). Returns {code, link}. */
export async function createRoom(page, server, opts = {}) {
  await page.goto(`${server.url}/`);
  if (opts.toleranceMs != null) await byTestid(page, 'tolerance').fill(String(opts.toleranceMs));
  if (opts.targetBits != null) await byTestid(page, 'target-bits').fill(String(opts.targetBits));
  await click(page, 'create');
  const code = await waitText(page, 'room-code', /\S/);
  const link = await roomLink(page);
  return { code, link };
}

/** Waits for the page to show it is in a room with `role` (a name, or a pattern such as
 *  '(alice|bob)'), by data-role, the protocol's name, in any language; returns that name. */
export async function waitRole(page, role, timeout = 30_000) {
  const h = await page.waitForFunction((src) => {
    const e = document.querySelector('[data-testid="role"]');
    return e && e.textContent.trim() !== '' && new RegExp(`^(?:${src})$`).test(e.dataset.role) ? e.dataset.role : false;
  }, role, { timeout, polling: 100 });
  return h.jsonValue();
}

/**
 * After both posters pressed Start: waits for the confirmation and returns what the page shows
 * {state, key, strength, sgpKey, mismatches}. One mismatch is let through: the posters' views
 * of a round can differ where neither can tell (docs/protocol.md §5.3, about one 1024-bit key
 * in a hundred in the Chromium audits), which is what the confirmation is for, and the page
 * then starts a new session; the wait goes on for that one's key. A second mismatch is
 * returned (checkKey fails on it): twice is no longer chance.
 */
export async function waitKey(page, timeout = 180_000) {
  const t0 = Date.now();
  const who = page.sgpWatch ? page.sgpWatch.name : 'page';
  for (let mismatches = 0; ; mismatches++) {
    const k = await waitConfirmed(page, Math.max(1_000, timeout - (Date.now() - t0)));
    if (k.state !== 'mismatch' || mismatches >= 1) return { ...k, mismatches: mismatches + (k.state === 'mismatch' ? 1 : 0) };
    process.stderr.write(`${who}: a confirmation mismatch (the blind spot of docs/protocol.md §5.3); waiting for the next session's key\n`);
    await page.waitForFunction(() => document.querySelector('[data-testid="confirmed"]')?.getAttribute('data-state') !== 'mismatch', null, { timeout: Math.max(1_000, timeout - (Date.now() - t0)), polling: 100 });
  }
}

/** One confirmation, match or mismatch: {state, key, strength, sgpKey}. */
async function waitConfirmed(page, timeout) {
  let st;
  try {
    // A page that gave up (too many dropped rounds) will not confirm: say so at once.
    st = await page.waitForFunction(() => {
      const c = document.querySelector('[data-testid="confirmed"]');
      const s = c && c.getAttribute('data-state');
      if (s === 'match' || s === 'mismatch') return s;
      const g = window.sgpState;
      // By the status's message id (client/js/i18n/en.js), not its words: any language.
      const id = g && g.statusId;
      if (g && !g.running && ['status.gaveUp', 'status.peerGaveUp', 'status.posterGaveUpSeen'].includes(id)) return 'gave up';
      return g && !g.running && !g.key && ['status.peerLeft', 'status.peerLeftKept', 'status.posterLeftSeen'].includes(id) ? 'peer left' : false;
    }, null, { timeout, polling: 100 }).then((x) => x.jsonValue());
  } catch (e) {
    throw new Error(`${page.sgpWatch ? page.sgpWatch.name : 'page'}: no confirmation within ${timeout} ms (${e.message.split('\n')[0]}); ${await describe(page)}`);
  }
  if (st === 'gave up' || st === 'peer left') throw new Error(`${page.sgpWatch ? page.sgpWatch.name : 'page'}: ${st}; ${await describe(page)}`);
  return {
    state: st,
    key: await text(page, 'key'),
    strength: await text(page, 'strength'),
    sgpKey: (await state(page)).key,
  };
}

/**
 * Poster A creates a room on `pageA`, poster B opens its link on `pageB`; returns once both
 * show their roles: {code, link}.
 */
export async function twoPosters(server, pageA, pageB, opts = {}) {
  const { code, link } = await createRoom(pageA, server, opts);
  await waitRole(pageA, 'alice');
  await pageB.goto(link);
  await waitRole(pageB, 'bob');
  return { code, link };
}

/** Presses Start on every page given. */
export async function startAll(...pages) {
  for (const p of pages) await click(p, 'start');
}

/** Checks one page's finished key against the contract (strength ≥ `min`); returns it. */
export function checkKey(assert, k, who, min = 256) {
  assert.equal(k.state, 'match', `${who}: confirmed data-state`);
  assert.match(k.key, /^[0-9a-f]{64}$/, `${who}: key text is 64 hex`);
  assert.match(k.strength, /^\d+$/, `${who}: strength text is an integer`);
  assert.ok(Number(k.strength) >= min, `${who}: strength ${k.strength} ≥ ${min}`);
  assert.ok(k.sgpKey, `${who}: sgpState.key is set`);
  assert.equal(k.sgpKey.key, k.key, `${who}: sgpState.key.key equals the key shown`);
  assert.equal(Number(k.sgpKey.strength), Number(k.strength), `${who}: sgpState.key.strength equals the strength shown`);
  assert.equal(k.sgpKey.confirmed, true, `${who}: sgpState.key.confirmed`);
  return k;
}

/** waitKey on every page at once; a failure names where every page is. */
export async function waitKeys(pages, timeout = 240_000) {
  const results = await Promise.allSettled(pages.map((p) => waitKey(p, timeout)));
  const failed = results.filter((r) => r.status === 'rejected');
  if (failed.length) {
    const where = await Promise.all(pages.map(async (p) => `${p.sgpWatch ? p.sgpWatch.name : 'page'}: ${await describe(p)}`));
    throw new Error(`${failed.map((r) => r.reason.message.split(';')[0]).join(' | ')}\n${where.join('\n')}`);
  }
  return results.map((r) => r.value);
}

// ---------------------------------------------------------------------------------------
// `sgp pair --json` beside the browser.

/**
 * Runs `sgp pair --json` with `args`; resolves {code, lines: [parsed JSON], key, stderr} when it
 * exits. `onLine(obj)` sees each line as it comes. Killed after `timeout` ms.
 */
export function runPair(args, { timeout = 180_000, onLine } = {}) {
  const proc = track(spawn(SGP_BIN, ['pair', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => (stderr += d));
  const lines = [];
  createInterface({ input: proc.stdout }).on('line', (l) => {
    if (VERBOSE) console.log(`[sgp pair] ${l}`);
    let obj;
    try {
      obj = JSON.parse(l);
    } catch {
      obj = { unparsed: l };
    }
    lines.push(obj);
    if (onLine) onLine(obj);
  });
  const done = new Promise((resolveDone, reject) => {
    proc.once('error', reject);
    // 'close', not 'exit': a child may exit before node has read the last of its stdout (its
    // key line, on a busy machine); 'close' comes once its pipes are drained too.
    proc.once('close', (code, signal) => {
      // Let readline deliver the last lines.
      setImmediate(() => {
        const k = lines.find((o) => o.key);
        resolveDone({ code, signal, lines, key: k ? k.key : null, stderr });
      });
    });
  });
  const t = setTimeout(() => stopChild(proc, 2000), timeout);
  done.finally(() => clearTimeout(t)).catch(() => {});
  return { proc, done, lines, stop: () => stopChild(proc) };
}

/** Waits for a `runPair`'s `{"room": …}` line (it has entered its room) and returns it
 *  ({code, role, params}); throws, naming `what`, if it exits first or takes over `ms`. */
export async function pairRoom(pair, what, ms = 60_000) {
  return within(ms, `${what} to enter a room`, (async () => {
    for (;;) {
      const r = pair.lines.find((o) => o.room);
      if (r) return r.room;
      if (pair.proc.exitCode !== null) throw new Error(`${what} exited early (${pair.proc.exitCode}): ${JSON.stringify(pair.lines)}`);
      await sleep(50);
    }
  })());
}

/** Runs `sgp ARGS…` to its end (stopped after `timeout` ms): resolves {code, stdout, stderr}. */
export function runSgp(args, timeout = 60_000) {
  const proc = track(spawn(SGP_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  const t = setTimeout(() => stopChild(proc, 2000), timeout);
  return new Promise((resolveDone, reject) => {
    proc.once('error', reject);
    proc.once('close', (code) => {
      clearTimeout(t);
      resolveDone({ code, stdout, stderr });
    });
  });
}

/**
 * Runs `sgp eve --attack FILES… --json` (the eavesdropper audit on posters' records);
 * resolves {code, out: parsed JSON or null, stdout, stderr}.
 */
export async function runEveAttack(files, timeout = 60_000) {
  const r = await runSgp(['eve', '--attack', ...files, '--json'], timeout);
  let out = null;
  try {
    out = JSON.parse(r.stdout.trim().split('\n').at(-1));
  } catch {
    // not JSON: the caller shows stdout and stderr
  }
  return { ...r, out };
}

// ---------------------------------------------------------------------------------------
// Files.

/** target/screenshots under the repository root (created). */
export function screenshotDir() {
  const d = resolve(REPO, 'target/screenshots');
  mkdirSync(d, { recursive: true });
  return d;
}

/**
 * A fixture for one test file: a server and a browser, torn down by `close()`.
 * Pages made with `fx.page(name)` get a context of their own unless `sameContext`.
 */
export async function fixture(opts = {}) {
  const server = await startServer(opts.serverArgs || []);
  let browser;
  try {
    browser = await launchBrowser(opts);
  } catch (e) {
    await server.stop();
    throw e;
  }
  const pages = [];
  return {
    server,
    browser,
    pages,
    async page(name, popts = {}) {
      const p = await newPage(popts.context || browser, name, popts);
      pages.push(p);
      return p;
    },
    async close() {
      try {
        await within(20_000, 'browser close', browser.close());
      } catch {
        // a hung browser: the process is killed with node
      }
      await server.stop();
    },
  };
}

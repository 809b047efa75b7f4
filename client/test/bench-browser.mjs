// bench-browser.mjs — measures (not a test) how long two Chromium tabs take to reach a
// confirmed key on loopback or through a field profile, and how much the page weighs. Run by
// `make bench-browser` (`make bench-browser PROFILE=wifi`).
//
//   SGP_BIN=target/release/sgp CHROMIUM=/usr/bin/chromium node client/test/bench-browser.mjs
//   RUNS=10 (default)  TOLERANCE_MS=… (default: the page's own measured default; a typed one
//   gets its round size from the page's measurement, as a person typing it would)
//   PROFILE=loopback (default) | lan | wifi | busy: the path between each tab and the server,
//   as `sgp bench net`'s profiles (src/bench/net.rs) make it:
//     loopback  none
//     lan       0.2 ± 0.05 ms each way
//     wifi      3 ± 2 ms each way, 0.5 % loss, 0.1 % reordering
//     busy      none, with two busy loops (`sh -c 'while :; do :; done'`) running for all the runs
//   lan and wifi start `sgp bench relay` (SGP_BIN) on 127.0.0.1 in front of the server and
//   the tabs open the page through the relay's port: the relay gives every TCP connection the
//   path each way, and each tab's WebSocket is its own connection, so each tab has the path
//   (its page loads too). The relay and the busy loops are killed at the end, on an error and
//   on Ctrl-C / SIGTERM.
//   LAN=1: the tabs open the page (the server or the relay, still on 127.0.0.1) at
//   http://sgp.test:PORT/, a name Chromium maps to 127.0.0.1 (harness.mjs LAN_NAME; the rule
//   maps the host only, the port stays the URL's), as a second machine on a LAN would see
//   it: plain http to a host that is not localhost, so not cross-origin isolated. The default
//   for lan and wifi (a person on a LAN opens http://<the server's address>:PORT/); LAN=0
//   opens them at 127.0.0.1 instead. No traffic leaves loopback.
//   TLS=1: the server serves https itself (`--tls-cert`/`--tls-key`, a throwaway certificate
//   for sgp.test from proxies.mjs), and the tabs open https://sgp.test:PORT/: a LAN page
//   over https, a secure context, so cross-origin isolated. PROXY=nginx: the shipped
//   deploy/nginx.conf in front (TLS at nginx, sgp on plain http with --trust-proxy), the tabs
//   at https://sgp.test:PORT/sgp/. Chromium trusts the certificate by its public key
//   (--ignore-certificate-errors-spki-list), as the proxy tests do. Loopback or busy only.
//   DUMP=FILE: every run's figures as JSON, with the measurement the default came from.
//   CALIBRATE=N: also take N fresh jitter measurements per run (window.sgpCalibrate()) once the
//   key is made, to compare with the one the page took while loading.
//   RECORDS=DIR: keep each run's two records (the tabs' `sgpRecord()`, the file `sgp pair
//   --record` writes, with the page's state) as DIR/run-N-A.json and run-N-B.json, for
//   `audit/record_costs.py DIR` (where the rounds lost entries) or `sgp eve --attack`.
//
// Each run: a fresh pair of tabs (contexts) in one browser against one `sgp serve`; tab A
// loads `/`, waits for the page's tolerance default to settle (the page measures its delay
// after loading, and Create waits for it), creates a room; tab B opens the link; both press Start. Timed on the
// pages, from the second Start (its click handler) to the later of the two tabs' confirmation,
// on the clock the tabs share (sgpDebug.startedAt, confirmedAt); the harness's own view, which
// polls the pages every 100 ms, is kept as ms_polled. It prints one line per run and a
// summary (JSON with --json). The timing-error figures come from the page's own per-round
// report (`sgpState.rounds[].timing`, when the page provides it), the rates from `sent_us`.

import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as h from './e2e/harness.mjs';
import { defaultTolerance, roundSize } from '../js/timing.js';

const HERE = dirname(fileURLToPath(import.meta.url));
// harness.mjs reads SGP_BIN when it is imported (before this line runs) and falls back to the
// debug build, which would mislead a benchmark: so it must be given.
if (!process.env.SGP_BIN) {
  console.error(`SGP_BIN is required: the release build, e.g. SGP_BIN=${resolve(HERE, '../../target/release/sgp')} (make bench-browser sets it)`);
  process.exit(2);
}
const RUNS = Number(process.env.RUNS || 10);
const TOL = process.env.TOLERANCE_MS;
/** A folder to keep each run's two records and states in (RECORDS=DIR), for a look at each post. */
const RECORDS = process.env.RECORDS || '';
// The paths of `sgp bench net` (src/bench/net.rs PROFILES), the same each way.
const PROFILES = {
  loopback: { path: null, busy: 0 },
  lan: { path: { delay_ms: 0.2, jitter_ms: 0.05, loss: 0, reorder: 0 }, busy: 0 },
  wifi: { path: { delay_ms: 3, jitter_ms: 2, loss: 0.005, reorder: 0.001 }, busy: 0 },
  busy: { path: null, busy: 2 },
};
const PROFILE = process.env.PROFILE || 'loopback';
if (!PROFILES[PROFILE]) {
  console.error(`PROFILE=${PROFILE}: one of ${Object.keys(PROFILES).join(', ')}`);
  process.exit(2);
}
const { path: PATH, busy: BUSY } = PROFILES[PROFILE];
// The LAN name where a person on a LAN would use one: through a path (lan, wifi), or LAN=1.
const LAN = process.env.LAN ? process.env.LAN !== '0' : !!PATH;
const TLS = process.env.TLS === '1';
const PROXY = process.env.PROXY || '';
if ((TLS || PROXY) && PATH) {
  console.error('TLS=1 and PROXY=nginx go with PROFILE=loopback or busy (the relay speaks plain TCP to the page)');
  process.exit(2);
}
if (PROXY && PROXY !== 'nginx') {
  console.error(`PROXY=${PROXY}: only nginx`);
  process.exit(2);
}
const describePath = (p) => (p ? `${p.delay_ms}±${p.jitter_ms} ms${p.loss ? `, ${p.loss * 100}% loss` : ''}${p.reorder ? `, ${p.reorder * 100}% reorder` : ''}` : 'direct');
const CALIBRATE = Number(process.env.CALIBRATE || 0);
const JSON_OUT = process.argv.includes('--json');
let base; // the pages' origin

const GRID = [1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 3];
const share = (worst, tMs) => (worst.length ? Math.round((100 * worst.filter((w) => w <= tMs * 1000).length) / worst.length) / 100 : null);
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return null;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ---------------------------------------------------------------------------------------
// What this script starts beside the harness's server and browser: the profile's relay and
// busy loops. Stopped in order at the end (and on an error); killed when node exits for any
// other reason (the harness's Ctrl-C / SIGTERM handler exits, so does an uncaught error).

const mine = new Set();
const killMine = () => {
  for (const c of mine) {
    try {
      c.kill('SIGKILL');
    } catch {
      // gone already
    }
  }
};
process.on('exit', killMine);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killMine();
    process.exit(130);
  });
}

function spawnMine(cmd, args, opts) {
  const c = spawn(cmd, args, opts);
  mine.add(c);
  c.once('exit', () => mine.delete(c));
  c.once('error', () => mine.delete(c));
  return c;
}

async function stopMine(c) {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = once(c, 'exit');
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 3000);
  await gone;
  clearTimeout(t);
}

/** `sgp bench relay` on 127.0.0.1 in front of the server's port, with `path` each way (every
 *  connection its own draws); {proc, port} once it prints `listening PORT`. */
async function startRelay(serverPort, path) {
  const args = ['bench', 'relay', '--listen', '127.0.0.1:0', '--target', `127.0.0.1:${serverPort}`,
    '--delay-ms', String(path.delay_ms), '--jitter-ms', String(path.jitter_ms), '--loss', String(path.loss), '--reorder', String(path.reorder)];
  const proc = spawnMine(h.SGP_BIN, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const failed = Promise.race([
    once(proc, 'error').then(([e]) => {
      throw new Error(`cannot start ${h.SGP_BIN} bench relay: ${e.message}`);
    }),
    once(proc, 'exit').then(([code]) => {
      throw new Error(`${h.SGP_BIN} bench relay exited (code ${code})`);
    }),
  ]);
  failed.catch(() => {});
  const first = new Promise((res) => createInterface({ input: proc.stdout }).once('line', res));
  const line = await h.within(10_000, 'sgp bench relay to listen', Promise.race([first, failed]));
  proc.stdout.resume();
  const m = /^listening (\d+)$/.exec(line);
  if (!m) throw new Error(`sgp bench relay: unexpected first line ${JSON.stringify(line)}`);
  return { proc, port: Number(m[1]) };
}

/** The page's default once its measurement settled (Create is enabled again). */
async function settledTolerance(page) {
  await page.waitForFunction(() => window.sgpState && window.sgpState.calibrationDone && !document.getElementById('create').disabled,
    null, { timeout: 30_000, polling: 100 });
  return h.byTestid(page, 'tolerance').inputValue();
}

/**
 * The rounds both tabs saw: each at its own τ and rate (from A's record, `sgpRecord()`: every
 * round it posted in, with the τ, guard and rate of its `start`, which follow the posters'
 * asks), and the rounds dropped, over both tabs, by cause: `late` (a tab fell behind its own
 * schedule: the late rule), `desync` (a tab's posts were not where it expected them), `other`
 * (dropped by the room without either tab saying why).
 */
async function roundsOf(A, B) {
  const [sa, sb] = [await h.state(A), await h.state(B)];
  const rec = await h.within(10_000, 'sgpRecord()', A.evaluate(() => window.sgpRecord()));
  const own = new Map(rec.rounds.map((r) => [`${r.session}/${r.round}`, r]));
  const seen = new Map();
  for (const s of [sa, sb]) {
    for (const r of s ? s.rounds : []) {
      const k = `${r.session}/${r.round}`;
      const e = seen.get(k) || { late: false, desync: false, dropped: false };
      if (r.desync && r.desync.late) e.late = true;
      else if (r.desync) e.desync = true;
      if (r.dropped) e.dropped = true;
      seen.set(k, e);
    }
  }
  const v = [...seen.values()];
  const late = v.filter((e) => e.late).length;
  const desync = v.filter((e) => !e.late && e.desync).length;
  const other = v.filter((e) => !e.late && !e.desync && e.dropped).length;
  return {
    sa,
    sb,
    // ms of each round's window (A's record), by "session/round"
    windowOf: (r) => {
      const x = own.get(`${r.session}/${r.round}`);
      return x ? (x.t_end_us - x.t_start_us) / 1000 : null;
    },
    rounds: seen.size,
    dropped: late + desync + other,
    dropped_late: late,
    dropped_desync: desync,
    dropped_other: other,
    round_tolerance_ms: rec.rounds.map((r) => r.params.tolerance_us / 1000),
    round_rate_hz: rec.rounds.map((r) => r.params.rate_hz),
    windows_ms: rec.rounds.reduce((a, r) => a + (r.t_end_us - r.t_start_us) / 1000, 0),
    siftS: siftSeconds(sa && sa.key, own),
  };
}

/**
 * The sift's posting time for the key (s), as `sgp bench net` has it (src/bench/net.rs,
 * `sift_posting_s_per_key`): each kept round's kept entries at the ceiling 1/(4τe) a second for
 * the τ that round ran at. Null without a key or a round's τ.
 */
function siftSeconds(key, own) {
  if (!key || !Array.isArray(key.per_round)) return null;
  let s = 0;
  for (const r of key.per_round) {
    const x = own.get(`${key.session}/${r.round}`);
    if (!x || !x.params || !(x.params.tolerance_us > 0)) return null;
    s += r.n * 4 * (x.params.tolerance_us / 1e6) * Math.E;
  }
  return Math.round(s * 1000) / 1000;
}

/** min / median / max of xs (null if none). */
const spread = (xs) => (xs.length ? { min: Math.min(...xs), median: median(xs), max: Math.max(...xs) } : null);
const fmtSpread = (s, unit) => (s ? `${+s.min.toFixed(3)}/${+s.median.toFixed(3)}/${+s.max.toFixed(3)} ${unit}` : '-');

async function oneRun(fx, i) {
  const A = await fx.page(`A${i}`);
  const B = await fx.page(`B${i}`);
  try {
    return await tabsToKey(A, B, i);
  } catch (e) {
    // What the rounds did before it failed (they tell why), then the error.
    let r = null;
    try {
      r = await roundsOf(A, B);
    } catch {
      // a page that cannot say
    }
    const { sa, sb, windowOf, ...rounds } = r || {};
    e.rounds = r ? rounds : null;
    // The wait that timed out describes its own tab; the other one may be the stuck one.
    // Whether each tab's Start reached its click handler (the time it ran, page clock), and
    // the last phase its worker reported: a stuck start says which tab and where.
    const started = (p) => p.evaluate(() => ({ started_at: window.sgpDebug.startedAt ?? null, running: window.sgpState.running, connected: window.sgpState.connected })).catch(() => '?');
    e.message += `; both tabs: A ${await h.describe(A).catch(() => '?')} ${JSON.stringify(await started(A))}; B ${await h.describe(B).catch(() => '?')} ${JSON.stringify(await started(B))}`;
    throw e;
  } finally {
    // Closed whatever happened: a failed run's tabs would go on posting beside the next run.
    await A.context().close().catch(() => {});
    await B.context().close().catch(() => {});
  }
}

async function tabsToKey(A, B, i) {
  await A.goto(`${base}/`);
  // Settled either way: a typed tolerance gets its round size from the same measurement.
  const settled = await settledTolerance(A);
  const tol = TOL ?? settled;
  const atLoad = await A.evaluate(() => ({ all: (window.sgpDebug.calibrations || []).map((c) => (c.ok ? c.dev_series_us : null)), calibration: window.sgpState.calibration, calibrations: window.sgpState.calibrations, timing: window.sgpState.timing, isolated: window.crossOriginIsolated }));
  await h.byTestid(A, 'tolerance').fill(String(tol));
  await h.click(A, 'create');
  await h.waitRole(A, 'alice');
  const link = await h.roomLink(A);
  await B.goto(link);
  await h.waitRole(B, 'bob');
  await h.click(A, 'start');
  await h.click(B, 'start');
  const t0 = Date.now();
  const [ka, kb] = await Promise.all([h.waitKey(A, 300_000), h.waitKey(B, 300_000)]);
  // The time to a key as the pages saw it: from B's Start (its click handler) to the later of
  // the two tabs' last confirmation, on the clock the tabs share. The harness polls the pages
  // every 100 ms, so what it sees (`ms_polled`) is up to that much later, besides Playwright's
  // own round trips.
  const msPolled = Date.now() - t0;
  const started = await B.evaluate(() => window.sgpDebug.startedAt);
  const confirmed = await Promise.all([A, B].map((p) => p.evaluate(() => window.sgpDebug.confirmedAt)));
  const ms = started != null && confirmed.every((x) => x != null) ? Math.round(Math.max(...confirmed) - started) : msPolled;
  const ro = await roundsOf(A, B);
  const { sa, sb } = ro;
  if (RECORDS) {
    // Both tabs' records (`sgp pair --record`'s shape) and states, for a look at each post.
    mkdirSync(RECORDS, { recursive: true });
    for (const [name, tab, st] of [['A', A, sa], ['B', B, sb]]) {
      const rec = await h.within(10_000, 'sgpRecord()', tab.evaluate(() => window.sgpRecord()));
      writeFileSync(`${RECORDS}/run-${i}-${name}.json`, JSON.stringify({ record: rec, state: st }));
    }
  }
  // Where the time went: every closed round's window (each round's own: its length follows
  // its τ and rate), and, on the server's clock, the gaps from one round's t_end to the next
  // one's t_start (over the last 50 rounds, which the page keeps in full).
  const windowsMs = ro.windows_ms;
  const spans = await A.evaluate(() => window.sgpDebug.rounds.filter((m) => !m.observer && m.t_start_us != null).map((m) => [m.t_start_us, m.t_end_us]));
  const gapsMs = spans.slice(1).map(([s], k) => (s - spans[k][1]) / 1000);
  const later = [];
  for (let k = 0; k < CALIBRATE; k++) later.push(await A.evaluate(() => window.sgpCalibrate()));
  const ok = ka.state === 'match' && kb.state === 'match' && ka.key === kb.key;
  const { rounds, dropped } = ro;
  // Nothing a page asked for may leave this machine (harness.mjs watchPage).
  const external = [...A.sgpWatch.external, ...B.sgpWatch.external];
  if (external.length) throw new Error(`requests leaving this machine: ${external.slice(0, 5).join(' ')}`);
  // What the page's model expected of its rounds (at its default), against what they did.
  const model = TOL ? roundSize(atLoad.calibration, Number(TOL)) : defaultTolerance(atLoad.isolated, atLoad.timing && atLoad.timing.precision_us, atLoad.calibration);
  // Each round's worst |arrival error| over both tabs (Infinity: a tab has no timing for it,
  // or fell behind its own schedule): the round would have been in sync at any τ' above it.
  const worst = sa.rounds.filter((r) => r.timing).map((r) => {
    const o = sb.rounds.find((x) => x.round === r.round && x.session === r.session && x.timing);
    return Math.max(...[r, o].map((x) => (x?.timing.spoiled ? Infinity : x?.timing.abs_error_us?.max ?? Infinity)));
  });
  const perTab = [sa, sb].map((s) => {
    const rs = s.rounds.filter((r) => Array.isArray(r.sent_us) && r.sent_us.length);
    const posts = rs.reduce((a, r) => a + r.sent_us.length, 0);
    const t = s.rounds.map((r) => r.timing).filter(Boolean);
    const secs = rs.reduce((a, r) => a + (ro.windowOf(r) ?? sa.params.duration_ms), 0) / 1000;
    return {
      rate_hz: posts / secs,
      late_p50_us: median(t.map((x) => x.late_us && x.late_us.p50).filter((x) => x != null)),
      late_p90_us: median(t.map((x) => x.late_us && x.late_us.p90).filter((x) => x != null)),
      abs_err_p50_us: median(t.map((x) => x.abs_error_us && x.abs_error_us.p50).filter((x) => x != null)),
      abs_err_p90_us: median(t.map((x) => x.abs_error_us && x.abs_error_us.p90).filter((x) => x != null)),
      abs_err_p99_us: median(t.map((x) => x.abs_error_us && x.abs_error_us.p99).filter((x) => x != null)),
      abs_err_max_us: Math.max(...t.map((x) => (x.abs_error_us && x.abs_error_us.max) || 0)),
      skipped: t.reduce((a, x) => a + (x.skipped || 0), 0),
      planned: t.reduce((a, x) => a + (x.planned || 0), 0),
    };
  });
  return {
    run: i,
    ok,
    ms,
    ms_polled: msPolled,
    tolerance_ms: sa.params.tolerance_ms,
    default_ms: Number(settled),
    rate_hz: sa.params.rate_hz,
    duration_ms: sa.params.duration_ms,
    strength: Number(ka.strength),
    sift_s: ro.siftS,
    rounds,
    dropped,
    dropped_late: ro.dropped_late,
    dropped_desync: ro.dropped_desync,
    dropped_other: ro.dropped_other,
    round_tolerance_ms: ro.round_tolerance_ms,
    round_rate_hz: ro.round_rate_hz,
    predicted_success: model && model.success != null ? Math.round(100 * model.success) / 100 : null,
    actual_success: Math.round((100 * (rounds - dropped)) / rounds) / 100,
    posts_per_round: model ? model.posts : null,
    tabs: perTab,
    worst_error_us: worst,
    windows_ms: windowsMs,
    gap_ms_p50: median(gapsMs),
    gaps_ms: gapsMs,
    isolated: atLoad.isolated,
    precision_us: atLoad.timing && atLoad.timing.precision_us,
    calibration: pick(atLoad.calibration),
    calibrations: atLoad.calibrations,
    later_calibrations: later.map(pick),
    calibration_series_us: atLoad.calibration && atLoad.calibration.ok ? atLoad.calibration.dev_series_us : null,
    all_series_us: atLoad.all,
  };
}

const pick = (c) => (c && c.ok ? { samples: c.samples, p90: c.dev_p90_us, p99: c.dev_p99_us, p996: c.dev_p996_us, max: c.dev_max_us } : c);

/** What the page loads, gzipped (-9), fetched from the server the way the browser gets it. */
async function pageWeight(fx) {
  const p = await fx.page('weight');
  await p.goto(`${base}/`, { waitUntil: 'networkidle' });
  // Through TLS, node would not trust the throwaway certificate: the same files, weighed once
  // over plain http.
  if (TLS || PROXY) {
    await p.context().close();
    return { files: [], bytes: null, gzip9: null, wire: null };
  }
  await h.click(p, 'create');
  await h.waitRole(p, 'alice');
  await p.waitForLoadState('networkidle');
  const urls = [...new Set(p.sgpWatch.requests)].filter((u) => u.startsWith(base) && !u.endsWith('/healthz'));
  const files = [];
  for (const u of urls) {
    // node's fetch asks for gzip and inflates; straight to the server on 127.0.0.1 (node would
    // ask DNS for the LAN name, which only Chromium maps), past any relay: the same bytes.
    const res = await fetch(`${fx.server.url}${u.slice(base.length)}`);
    const wire = res.headers.get('content-encoding') === 'gzip' ? Number(res.headers.get('content-length')) : null;
    const body = Buffer.from(await res.arrayBuffer());
    // `gzip -9 -c FILE | wc -c`, as in the brief (zlib's level 9 for a cross-check).
    const cli = Number(execFileSync('sh', ['-c', 'gzip -9 -c | wc -c'], { input: body }).toString().trim());
    files.push({ path: u.slice(base.length), bytes: body.length, gzip9: cli, zlib9: gzipSync(body, { level: 9 }).length, wire_gzip: wire });
  }
  await p.context().close();
  return {
    files,
    bytes: files.reduce((a, f) => a + f.bytes, 0),
    gzip9: files.reduce((a, f) => a + f.gzip9, 0),
    // What the server sends a browser (it embeds the files gzipped), when it sends gzip.
    wire: files.every((f) => f.wire_gzip != null) ? files.reduce((a, f) => a + f.wire_gzip, 0) : null,
  };
}

// TLS, PROXY: a throwaway certificate for the LAN name, trusted by Chromium by its key.
const px = TLS || PROXY ? await import('./e2e/proxies.mjs') : null;
const certDir = px ? px.tempDir('sgp-bench-browser-') : null;
const certs = px ? px.makeCerts(certDir.dir, h.LAN_NAME) : null;
const fx = await h.fixture({
  ...(LAN || px ? { args: [...h.LAN_ARGS, ...(certs ? [`--ignore-certificate-errors-spki-list=${certs.spki}`] : [])] } : {}),
  serverArgs: TLS ? ['--tls-cert', certs.cert, '--tls-key', certs.key] : PROXY ? ['--trust-proxy'] : [],
});
if (LAN || px) h.allowHost(h.LAN_NAME);
let relay = null;
let nginx = null;
const busy = [];
try {
  // lan, wifi: the tabs reach the server only through the relay (pages, scripts, WebSockets).
  if (PATH) relay = await startRelay(fx.server.port, PATH);
  if (PROXY) {
    const [httpsPort, httpPort] = [await h.freePort(), await h.freePort()];
    const site = px.nginxSite({ name: h.LAN_NAME, httpsPort, httpPort, upstreamPort: fx.server.port, cert: certs.cert, key: certs.key });
    nginx = await px.startNginx(certDir.dir, px.nginxConf(certDir.dir, site), [httpsPort, httpPort]);
    base = `https://${h.LAN_NAME}:${httpsPort}/sgp`;
  } else if (TLS) {
    base = `https://${h.LAN_NAME}:${fx.server.port}`;
  } else {
    base = `http://${LAN ? h.LAN_NAME : '127.0.0.1'}:${relay ? relay.port : fx.server.port}`;
  }
  const weight = await pageWeight(fx);
  // busy: the loops run from before the first run's page loads (its measurement included) to
  // after the last key.
  for (let k = 0; k < BUSY; k++) busy.push(spawnMine('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
  if (!JSON_OUT) {
    for (const f of weight.files) console.log(`${f.path.padEnd(34)} ${String(f.bytes).padStart(8)} B  gzip -9 ${String(f.gzip9).padStart(7)} B  sent ${f.wire_gzip ?? '-'} B`);
    console.log(`${'page + assets'.padEnd(34)} ${String(weight.bytes).padStart(8)} B  gzip -9 ${String(weight.gzip9).padStart(7)} B  sent ${weight.wire ?? '-'} B`);
  }
  const runs = [];
  for (let i = 1; i <= RUNS; i++) {
    let r;
    try {
      r = await oneRun(fx, i);
    } catch (e) {
      r = { run: i, ok: false, error: e.message.split('\n')[0].slice(0, 300), ...(e.rounds || {}) };
    }
    runs.push(r);
    if (!JSON_OUT) {
      console.log(r.ok
        ? `run ${i} (${PROFILE}): ${r.ms} ms, ${r.rounds} rounds (${r.dropped} dropped: late ${r.dropped_late}, desync ${r.dropped_desync}, other ${r.dropped_other}; ` +
          `rounds' τ ${fmtSpread(spread(r.round_tolerance_ms), 'ms')}, rate ${fmtSpread(spread(r.round_rate_hz), 'Hz')} (min/median/max); in sync ${r.actual_success}, model ${r.predicted_success}, ${r.posts_per_round} posts each), strength ${r.strength}, sift's time ${r.sift_s} s, τ ${r.tolerance_ms} ms${TOL ? ` (default ${r.default_ms})` : ''}, ` +
          `rate ${r.rate_hz} Hz, window ${r.duration_ms} ms; tabs' rates ${r.tabs.map((t) => t.rate_hz.toFixed(1)).join('/')} Hz, ` +
          `late p50/p90 ${r.tabs.map((t) => `${t.late_p50_us}/${t.late_p90_us}`).join(', ')} µs, ` +
          `|arrival error| p50/p90/p99/max ${r.tabs.map((t) => `${t.abs_err_p50_us}/${t.abs_err_p90_us}/${t.abs_err_p99_us}/${t.abs_err_max_us}`).join(', ')} µs, ` +
          `skipped ${r.tabs.map((t) => `${t.skipped}/${t.planned}`).join(', ')}; isolated ${r.isolated}, precision ${r.precision_us} µs; ` +
          `windows ${Math.round(r.windows_ms)} ms, gaps p50 ${r.gap_ms_p50} ms; ` +
          `in sync at τ' ${GRID.map((t) => `${t}:${share(r.worst_error_us, t)}`).join(' ')}; ` +
          `calibration used ${JSON.stringify(r.calibration)} of ${JSON.stringify((r.calibrations || []).map((c) => c.dev_p90_us))} (p90s)${r.later_calibrations.length ? `, later ${JSON.stringify(r.later_calibrations)}` : ''}`
        : `run ${i} (${PROFILE}): FAILED ${r.error || 'keys differ or mismatch'}` +
          (r.rounds != null ? ` (${r.rounds} rounds, ${r.dropped} dropped: late ${r.dropped_late}, desync ${r.dropped_desync}, other ${r.dropped_other}; ` +
            `rounds' τ ${fmtSpread(spread(r.round_tolerance_ms), 'ms')}, rate ${fmtSpread(spread(r.round_rate_hz), 'Hz')})` : ''));
    }
  }
  for (const c of busy) await stopMine(c);
  const good = runs.filter((r) => r.ok);
  // Rounds of every run, the failed ones included (they tell why).
  const counted = runs.filter((r) => r.rounds != null);
  const sum = (k) => counted.reduce((a, r) => a + r[k], 0);
  const tabs = good.flatMap((r) => r.tabs);
  const summary = {
    profile: PROFILE,
    path_each_way: describePath(PATH),
    busy_loops: BUSY,
    runs: runs.length,
    failed: runs.length - good.length,
    time_to_key_ms_p50: median(good.map((r) => r.ms)),
    time_to_key_ms_p90: quantile(good.map((r) => r.ms), 0.9),
    time_to_key_ms_min: good.length ? Math.min(...good.map((r) => r.ms)) : null,
    time_to_key_ms_max: good.length ? Math.max(...good.map((r) => r.ms)) : null,
    // As the harness saw it, polling the pages every 100 ms (the figure before 2026-12-07).
    time_to_key_polled_ms_p50: median(good.map((r) => r.ms_polled)),
    // The sift's posting time per key (as `sgp bench net`), and the median time over it.
    sift_posting_s_p50: median(good.map((r) => r.sift_s).filter((x) => x != null)),
    time_over_sift_p50: median(good.filter((r) => r.sift_s > 0).map((r) => Math.round((100 * r.ms) / 1000 / r.sift_s) / 100)),
    rounds_per_key_p50: median(good.map((r) => r.rounds)),
    windows_share_p50: median(good.map((r) => Math.round((100 * r.windows_ms) / r.ms) / 100)),
    gap_between_rounds_ms_p50: median(good.flatMap((r) => r.gaps_ms)),
    dropped_round_rate: good.reduce((a, r) => a + r.dropped, 0) / Math.max(1, good.reduce((a, r) => a + r.rounds, 0)),
    predicted_success_p50: median(good.map((r) => r.predicted_success).filter((x) => x != null)),
    actual_success_p50: median(good.map((r) => r.actual_success)),
    tolerance_ms: [...new Set(good.map((r) => r.tolerance_ms))],
    // Each round at its own τ and rate (the room's above is where they start), over every
    // round of every run.
    round_tolerance_ms: spread(counted.flatMap((r) => r.round_tolerance_ms)),
    round_rate_hz: spread(counted.flatMap((r) => r.round_rate_hz)),
    rounds_all_runs: sum('rounds'),
    dropped_all_runs: { late: sum('dropped_late'), desync: sum('dropped_desync'), other: sum('dropped_other') },
    late_p50_us: median(tabs.map((t) => t.late_p50_us).filter((x) => x != null)),
    late_p90_us: median(tabs.map((t) => t.late_p90_us).filter((x) => x != null)),
    abs_arrival_error_p50_us: median(tabs.map((t) => t.abs_err_p50_us).filter((x) => x != null)),
    abs_arrival_error_p90_us: median(tabs.map((t) => t.abs_err_p90_us).filter((x) => x != null)),
    abs_arrival_error_p99_us: median(tabs.map((t) => t.abs_err_p99_us).filter((x) => x != null)),
    skipped_share: tabs.reduce((a, t) => a + t.skipped, 0) / Math.max(1, tabs.reduce((a, t) => a + t.planned, 0)),
    calibration_at_load_p996_us_p50: median(good.map((r) => r.calibration && r.calibration.p996).filter((x) => x != null)),
    calibration_later_p996_us_p50: median(good.flatMap((r) => r.later_calibrations.map((c) => c && c.p996)).filter((x) => x != null)),
    // The share of all rounds that would have been in sync at τ' (their worst error within it).
    in_sync_at: Object.fromEntries(GRID.map((t) => [t.toFixed(2), share(good.flatMap((r) => r.worst_error_us), t)])),
    lan: LAN,
    tls: TLS ? 'sgp' : PROXY ? PROXY : null,
    page_url: base,
    load_average: (await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' '),
    page_bytes: weight.bytes,
    page_gzip9_bytes: weight.gzip9,
    page_sent_gzip_bytes: weight.wire,
    sgp_bin: h.SGP_BIN,
  };
  if (process.env.DUMP) writeFileSync(process.env.DUMP, JSON.stringify(runs));
  if (JSON_OUT) console.log(JSON.stringify({ summary, runs: runs.map(({ calibration_series_us, all_series_us, ...r }) => r), weight }));
  else for (const [k, v] of Object.entries(summary)) console.log(`${k.padEnd(26)} ${JSON.stringify(v)}`);
} finally {
  for (const c of busy) await stopMine(c);
  if (relay) await stopMine(relay.proc);
  if (nginx) await nginx.stop();
  await fx.close();
  if (certDir) certDir.remove();
}

// bench-browser.mjs — measures (not a test) how long two Chromium tabs take to reach a
// confirmed key on loopback, and how much the page weighs. Run by `make bench-browser`.
//
//   SGP_BIN=target/release/sgp CHROMIUM=/usr/bin/chromium node client/test/bench-browser.mjs
//   RUNS=10 (default)  TOLERANCE_MS=… (default: the page's own measured default; a typed one
//   gets its round size from the page's measurement, as a person typing it would)
//   LAN=1: the tabs open the server (still on 127.0.0.1) at http://sgp.test:PORT/, a name
//   Chromium maps to loopback (harness.mjs LAN_NAME), as a second machine on a LAN would see
//   it: plain http to a host that is not localhost, so not cross-origin isolated. No traffic
//   leaves loopback.
//   DUMP=FILE: every run's figures as JSON, with the measurement the default came from.
//   CALIBRATE=N: also take N fresh jitter measurements per run (window.sgpCalibrate()) once the
//   key is made, to compare with the one the page took while loading.
//
// Each run: a fresh pair of tabs (contexts) in one browser against one `sgp serve`; tab A
// loads `/`, waits for the page's tolerance default to settle (the page measures its delay
// after loading, and Create waits for it), creates a room; tab B opens the link; both press Start. Timed from the
// second Start to both tabs showing data-state=match. It prints one line per run and a
// summary (JSON with --json). The timing-error figures come from the page's own per-round
// report (`sgpState.rounds[].timing`, when the page provides it), the rates from `sent_us`.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as h from './e2e/harness.mjs';
import { defaultTolerance, roundSize } from '../js/timing.js';

const HERE = dirname(fileURLToPath(import.meta.url));
if (!process.env.SGP_BIN) process.env.SGP_BIN = resolve(HERE, '../../target/release/sgp');
const RUNS = Number(process.env.RUNS || 10);
const TOL = process.env.TOLERANCE_MS;
const LAN = !!process.env.LAN;
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

/** The page's default once its measurement settled (Create is enabled again). */
async function settledTolerance(page) {
  await page.waitForFunction(() => window.sgpState && window.sgpState.calibrationDone && !document.getElementById('create').disabled,
    null, { timeout: 30_000, polling: 100 });
  return h.byTestid(page, 'tolerance').inputValue();
}

async function oneRun(fx, i) {
  const A = await fx.page(`A${i}`);
  const B = await fx.page(`B${i}`);
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
  const ms = Date.now() - t0;
  const [sa, sb] = [await h.state(A), await h.state(B)];
  // Where the time went: every closed round's window (a room's rounds all last duration_ms),
  // and, on the server's clock, the gaps from one round's t_end to the next one's t_start
  // (over the last 50 rounds, which the page keeps in full).
  const windowsMs = sa.rounds.length * sa.params.duration_ms;
  const spans = await A.evaluate(() => window.sgpDebug.rounds.filter((m) => !m.observer && m.t_start_us != null).map((m) => [m.t_start_us, m.t_end_us]));
  const gapsMs = spans.slice(1).map(([s], k) => (s - spans[k][1]) / 1000);
  const later = [];
  for (let k = 0; k < CALIBRATE; k++) later.push(await A.evaluate(() => window.sgpCalibrate()));
  const ok = ka.state === 'match' && kb.state === 'match' && ka.key === kb.key;
  const rounds = sa.rounds.length;
  const dropped = sa.rounds.filter((r) => r.dropped || r.desync).length;
  // What the page's model expected of its rounds (at its default), against what they did.
  const model = TOL ? roundSize(atLoad.calibration, Number(TOL)) : defaultTolerance(atLoad.isolated, atLoad.timing && atLoad.timing.precision_us, atLoad.calibration);
  const win = sa.params.duration_ms / 1000;
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
    return {
      rate_hz: posts / (rs.length * win),
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
  await A.context().close();
  await B.context().close();
  return {
    run: i,
    ok,
    ms,
    tolerance_ms: sa.params.tolerance_ms,
    default_ms: Number(settled),
    rate_hz: sa.params.rate_hz,
    duration_ms: sa.params.duration_ms,
    strength: Number(ka.strength),
    rounds,
    dropped,
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
  await h.click(p, 'create');
  await h.waitRole(p, 'alice');
  await p.waitForLoadState('networkidle');
  const urls = [...new Set(p.sgpWatch.requests)].filter((u) => u.startsWith(base) && !u.endsWith('/healthz'));
  const files = [];
  for (const u of urls) {
    const res = await fetch(u); // node's fetch asks for gzip and inflates
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

const fx = await h.fixture(LAN ? { args: h.LAN_ARGS } : {});
base = fx.server.url;
if (LAN) {
  h.allowHost(h.LAN_NAME);
  base = `http://${h.LAN_NAME}:${fx.server.port}`;
}
try {
  const weight = await pageWeight(fx);
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
      r = { run: i, ok: false, error: e.message.split('\n')[0].slice(0, 300) };
    }
    runs.push(r);
    if (!JSON_OUT) {
      console.log(r.ok
        ? `run ${i}: ${r.ms} ms, ${r.rounds} rounds (${r.dropped} dropped; in sync ${r.actual_success}, model ${r.predicted_success}, ${r.posts_per_round} posts each), strength ${r.strength}, τ ${r.tolerance_ms} ms${TOL ? ` (default ${r.default_ms})` : ''}, ` +
          `rate ${r.rate_hz} Hz, window ${r.duration_ms} ms; tabs' rates ${r.tabs.map((t) => t.rate_hz.toFixed(1)).join('/')} Hz, ` +
          `late p50/p90 ${r.tabs.map((t) => `${t.late_p50_us}/${t.late_p90_us}`).join(', ')} µs, ` +
          `|arrival error| p50/p90/p99/max ${r.tabs.map((t) => `${t.abs_err_p50_us}/${t.abs_err_p90_us}/${t.abs_err_p99_us}/${t.abs_err_max_us}`).join(', ')} µs, ` +
          `skipped ${r.tabs.map((t) => `${t.skipped}/${t.planned}`).join(', ')}; isolated ${r.isolated}, precision ${r.precision_us} µs; ` +
          `windows ${Math.round(r.windows_ms)} ms, gaps p50 ${r.gap_ms_p50} ms; ` +
          `in sync at τ' ${GRID.map((t) => `${t}:${share(r.worst_error_us, t)}`).join(' ')}; ` +
          `calibration used ${JSON.stringify(r.calibration)} of ${JSON.stringify((r.calibrations || []).map((c) => c.dev_p90_us))} (p90s)${r.later_calibrations.length ? `, later ${JSON.stringify(r.later_calibrations)}` : ''}`
        : `run ${i}: FAILED ${r.error || 'keys differ or mismatch'}`);
    }
  }
  const good = runs.filter((r) => r.ok);
  const tabs = good.flatMap((r) => r.tabs);
  const summary = {
    runs: runs.length,
    failed: runs.length - good.length,
    time_to_key_ms_p50: median(good.map((r) => r.ms)),
    time_to_key_ms_p90: quantile(good.map((r) => r.ms), 0.9),
    time_to_key_ms_min: good.length ? Math.min(...good.map((r) => r.ms)) : null,
    time_to_key_ms_max: good.length ? Math.max(...good.map((r) => r.ms)) : null,
    rounds_per_key_p50: median(good.map((r) => r.rounds)),
    windows_share_p50: median(good.map((r) => Math.round((100 * r.windows_ms) / r.ms) / 100)),
    gap_between_rounds_ms_p50: median(good.flatMap((r) => r.gaps_ms)),
    dropped_round_rate: good.reduce((a, r) => a + r.dropped, 0) / Math.max(1, good.reduce((a, r) => a + r.rounds, 0)),
    predicted_success_p50: median(good.map((r) => r.predicted_success).filter((x) => x != null)),
    actual_success_p50: median(good.map((r) => r.actual_success)),
    tolerance_ms: [...new Set(good.map((r) => r.tolerance_ms))],
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
    page_url: base,
    load_average: (await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' '),
    page_bytes: weight.bytes,
    page_gzip9_bytes: weight.gzip9,
    page_sent_gzip_bytes: weight.wire,
    sgp_bin: process.env.SGP_BIN,
  };
  if (process.env.DUMP) writeFileSync(process.env.DUMP, JSON.stringify(runs));
  if (JSON_OUT) console.log(JSON.stringify({ summary, runs: runs.map(({ calibration_series_us, all_series_us, ...r }) => r), weight }));
  else for (const [k, v] of Object.entries(summary)) console.log(`${k.padEnd(26)} ${JSON.stringify(v)}`);
} finally {
  await fx.close();
}

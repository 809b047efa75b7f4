// bench-shard.mjs — measures (not a test) sgp behind the shipped deploy/nginx-sharded.conf
// (issue 17): `sgp bench load` through nginx with 1, 2 and 3 sgp servers behind it, and
// against one server directly; `sgp bench key` through nginx against directly. Run by
// `make bench-shard`.
//
//   SGP_BIN=target/release/sgp node client/test/bench-shard.mjs [--json]
//   SERVERS=0,1,2,3 (default; 0: one server directly, no nginx)  ROOMS=200  SECONDS=2 (bench
//   load's --rooms and --seconds)  RUNS=1 (bench load runs per set-up, one set-up after the
//   other)  PAIRS=10 (bench key's --pairs; 0: no bench key)  WORKERS=auto (nginx's
//   worker_processes)
//
// Every process runs on 127.0.0.1: the sgp servers (`--trust-proxy`, with the caps bench uses
// for its own servers, since the loads come from one address), nginx with the shipped file
// (its ports, a throwaway certificate for sgp.test made with openssl, as the proxy tests do;
// worker_connections raised for the load), and `sgp bench` itself, which reaches nginx at
// https://127.0.0.1:PORT/sgp/ with --ca-file and is told the servers' PIDs (--pid), whose CPU
// it sums. nginx's own CPU (master and workers) is read from /proc around each run and divided
// by the posts the run put on boards (all its steps, set-up included). Prints one line per run
// and a summary (JSON with --json). Everything it started is stopped at the end or on an error.

import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as h from './e2e/harness.mjs';
import * as px from './e2e/proxies.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
if (!process.env.SGP_BIN) {
  console.error(`SGP_BIN is required: the release build, e.g. SGP_BIN=${resolve(HERE, '../../target/release/sgp')} (make bench-shard sets it)`);
  process.exit(2);
}
const JSON_OUT = process.argv.includes('--json');
const SETUPS = (process.env.SERVERS || '0,1,2,3').split(',').map(Number);
const ROOMS = process.env.ROOMS || '200';
const SECONDS = process.env.SECONDS || '2';
const RUNS = Number(process.env.RUNS || 1);
const PAIRS = Number(process.env.PAIRS ?? 10);
const WORKERS = process.env.WORKERS || 'auto';
/** The caps `sgp bench` gives the servers it starts itself (src/bench/mod.rs, LOAD_CAPS). */
const LOAD_CAPS = ['--max-per-address', '1000000', '--rooms-per-minute', '100000'];
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

const say = (line) => (JSON_OUT ? console.error(line) : console.log(line));

/** CPU seconds (user + system) of `pid`, from /proc; 0 if it is gone. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** nginx's master and its workers. */
function nginxPids(master) {
  const pids = [master];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === master) pids.push(Number(d));
    } catch {
      // gone
    }
  }
  return pids;
}

/** `sgp bench ARGS… --json`: its JSON, or an error with what it printed. */
async function bench(args) {
  const r = await h.runSgp(['bench', ...args, '--json'], 900_000);
  if (r.code !== 0) throw new Error(`sgp bench ${args.join(' ')} exited ${r.code}: ${r.stderr.trim().slice(-1500)}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

const uptime = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** Starts one set-up: `n` servers behind nginx (n ≥ 1), or one server alone (n = 0). */
async function setUp(n, certs) {
  const servers = [];
  for (let i = 0; i < Math.max(n, 1); i++) servers.push(await h.startServer([...(n ? ['--trust-proxy'] : []), '--metrics', '--drain-secs', '0', ...LOAD_CAPS]));
  if (n === 0) return { servers, url: servers[0].url, nginx: null, args: [] };
  const [httpsPort, httpPort] = [await h.freePort(), await h.freePort()];
  const { site } = px.nginxShardedSite({ name: h.LAN_NAME, httpsPort, httpPort, upstreamPorts: servers.map((s) => s.port), cert: certs.cert, key: certs.key });
  const dir = px.tempDir('sgp-bench-shard-nginx-');
  const nginx = await px.startNginx(dir.dir, px.nginxConf(dir.dir, site, { from: 'deploy/nginx-sharded.conf', workers: WORKERS, connections: 8192 }), [httpsPort, httpPort]);
  return { servers, url: `https://127.0.0.1:${httpsPort}/sgp/`, nginx, dir, args: ['--ca-file', certs.ca] };
}

async function tearDown(s) {
  if (s.nginx) await s.nginx.stop();
  if (s.dir) s.dir.remove();
  for (const x of s.servers) await x.stop();
}

/** Each server's sgp_rooms_created_total. */
async function roomsCreated(servers) {
  const out = [];
  for (const s of servers) {
    const r = await px.httpGet({ port: s.port, host: `127.0.0.1:${s.port}`, path: '/metrics' });
    out.push(Number((/^sgp_rooms_created_total (\d+)$/m.exec(r.body) || [])[1]));
  }
  return out;
}

const name = (n) => (n ? `nginx + ${n} server${n > 1 ? 's' : ''}` : 'one server, directly');

async function loadRun(n, run, certs) {
  const s = await setUp(n, certs);
  try {
    const pids = s.servers.map((x) => x.proc.pid);
    const ng = s.nginx ? nginxPids(s.nginx.proc.pid) : [];
    const cpu0 = ng.reduce((a, p) => a + cpuSeconds(p), 0);
    const load0 = uptime();
    const t0 = new Date();
    const out = await bench(['load', '--server', s.url, ...s.args, '--pid', pids.join(','), '--rooms', ROOMS, '--seconds', SECONDS]);
    const nginxCpu = ng.reduce((a, p) => a + cpuSeconds(p), 0) - cpu0;
    const posts = out.steps.reduce((a, st) => a + (st.on_boards || 0) + (st.probe_on_board || 0), 0);
    const knee = out.steps.find((st) => st.rooms === out.knee_rooms) || out.steps.at(-1);
    const best = out.steps.reduce((a, st) => (st.accepted_per_s > a.accepted_per_s ? st : a));
    const row = {
      setup: name(n),
      servers: n,
      run,
      started: t0.toISOString(),
      loadavg_before: load0,
      loadavg_after: uptime(),
      knee_rooms: out.knee_rooms,
      peak_accepted_per_s: out.peak_accepted_per_s,
      at_peak: {
        rooms: best.rooms,
        server_cpu_pct: best.server_cpu_pct,
        server_cpu_us_per_post: best.server_cpu_us_per_post,
        loader_cpu_pct: best.loader_cpu_pct,
        rate_limited: best.rate_limited,
        refused: best.refused,
        probe_dev_us_p99: best.dev_us_p99,
      },
      at_knee_cpu_us_per_post: knee.server_cpu_us_per_post,
      nginx_cpu_s: s.nginx ? Math.round(nginxCpu * 1000) / 1000 : null,
      nginx_cpu_us_per_post_whole_run: posts && s.nginx ? Math.round((nginxCpu * 1e6 / posts) * 100) / 100 : null,
      posts_on_boards_whole_run: posts,
      rooms_created_per_server: await roomsCreated(s.servers),
      steps: out.steps.map((st) => ({ rooms: st.rooms, accepted_per_s: st.accepted_per_s, server_cpu_pct: st.server_cpu_pct, server_cpu_us_per_post: st.server_cpu_us_per_post, loader_cpu_pct: st.loader_cpu_pct, rate_limited: st.rate_limited })),
    };
    say(`${row.setup}, run ${run}: peak ${row.peak_accepted_per_s} posts/s at ${best.rooms} rooms (knee ${row.knee_rooms}), sgp ${best.server_cpu_us_per_post} µs/post at ${best.server_cpu_pct} % CPU, loaders ${best.loader_cpu_pct} %, nginx ${row.nginx_cpu_us_per_post_whole_run ?? '-'} µs/post (whole run); rooms per server ${row.rooms_created_per_server.join('/')}; load ${load0} → ${row.loadavg_after}`);
    return row;
  } finally {
    await tearDown(s);
  }
}

async function keyRun(n, certs) {
  const s = await setUp(n, certs);
  try {
    const load0 = uptime();
    const t0 = new Date();
    const out = await bench(['key', '--server', s.url, ...s.args, '--pairs', String(PAIRS)]);
    const row = {
      setup: name(n),
      servers: n,
      started: t0.toISOString(),
      loadavg_before: load0,
      loadavg_after: uptime(),
      pairs_run: out.pairs_run ?? out.pairs,
      failed: out.failed,
      time_to_key_ms_p50: out.time_to_key_ms_p50,
      time_to_key_ms_p90: out.time_to_key_ms_p90,
      time_to_key_ms_max: out.time_to_key_ms_max,
      tolerance_ms: out.tolerance_ms,
      tolerance_ms_min: out.tolerance_ms_min,
      tolerance_ms_max: out.tolerance_ms_max,
      round_tolerance_ms_median: out.round_tolerance_ms_median,
      round_tolerance_ms_max: out.round_tolerance_ms_max,
      rounds_per_key: out.rounds_per_key,
      dropped_round_rate: out.dropped_round_rate,
      arrival_abs_us_max: out.arrival_abs_us_max,
    };
    say(`${row.setup}, bench key: p50 ${row.time_to_key_ms_p50} ms, p90 ${row.time_to_key_ms_p90} ms, τ chosen ${row.tolerance_ms_min ?? row.tolerance_ms}-${row.tolerance_ms_max ?? row.tolerance_ms} ms, rounds' τ median ${row.round_tolerance_ms_median} ms (max ${row.round_tolerance_ms_max}), ${row.rounds_per_key} rounds a key, ${row.failed} failed; load ${load0} → ${row.loadavg_after}`);
    return row;
  } finally {
    await tearDown(s);
  }
}

const tmp = px.tempDir('sgp-bench-shard-');
try {
  const certs = px.makeCerts(tmp.dir, h.LAN_NAME);
  const machine = {
    date: new Date().toISOString(),
    nproc: execFileSync('nproc', { encoding: 'utf8' }).trim(),
    cpu: (/^Model name:\s*(.*)$/m.exec(execFileSync('lscpu', { encoding: 'utf8' })) || [])[1],
    nginx: spawnSync(px.NGINX, ['-v'], { encoding: 'utf8' }).stderr.trim(),
    sgp: execFileSync(h.SGP_BIN, ['--version'], { encoding: 'utf8' }).trim(),
    nginx_workers: WORKERS,
  };
  say(`${machine.date}: ${machine.nproc} cores (${machine.cpu}), ${machine.sgp}, load ${uptime()}`);
  const load = [];
  for (let run = 1; run <= RUNS; run++) {
    for (const n of SETUPS) load.push(await loadRun(n, run, certs));
  }
  const key = [];
  if (PAIRS > 0) {
    for (const n of [0, Math.max(...SETUPS, 1)]) key.push(await keyRun(n, certs));
  }
  if (JSON_OUT) console.log(JSON.stringify({ machine, rooms: Number(ROOMS), seconds: Number(SECONDS), load, key }, null, 1));
} finally {
  tmp.remove();
}
process.exit(0);

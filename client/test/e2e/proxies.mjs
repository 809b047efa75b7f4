// proxies.mjs — what the proxy tests run beside sgp: a throwaway CA and a certificate for a name that is not localhost (openssl), and real nginx and Caddy started from a temporary folder with configs derived from the shipped deploy/nginx.conf, deploy/nginx-sharded.conf and deploy/Caddyfile; and where nginx's consistent hash sends a key.
//
// Environment: NGINX (default /usr/sbin/nginx), CADDY (/usr/bin/caddy), OPENSSL
// (/usr/bin/openssl); `make proxies` installs Debian's packages. A missing one fails the test
// that needs it, saying how to get it.

import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import * as h from './harness.mjs';

export const NGINX = process.env.NGINX || '/usr/sbin/nginx';
export const CADDY = process.env.CADDY || '/usr/bin/caddy';
export const OPENSSL = process.env.OPENSSL || '/usr/bin/openssl';

/** The shipped example configs. */
export const NGINX_SITE = resolve(h.REPO, 'deploy/nginx.conf');
export const NGINX_SHARDED_SITE = resolve(h.REPO, 'deploy/nginx-sharded.conf');
export const CADDYFILE = resolve(h.REPO, 'deploy/Caddyfile');

/** Throws, saying how to install it, unless `path` is an executable. */
export function requireTool(path, pkg, env) {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} is missing: \`make proxies\` installs Debian's ${pkg} (as root or with sudo), or set ${env} to another ${pkg}`);
  }
  return path;
}

/** A fresh temporary folder (mode 0700) and its removal. */
export function tempDir(prefix) {
  const dir = mkdtempSync(resolve(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------------------------------
// Certificates.

function openssl(args, cwd) {
  try {
    return execFileSync(OPENSSL, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  } catch (e) {
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

/**
 * A throwaway CA and a server certificate it signs, for DNS `name` and IP 127.0.0.1 (what
 * `sgp pair`, which cannot resolve `name`, connects to), both P-256, valid 2 days, in `dir`.
 * Returns {ca, cert, key} (file paths) and `spki`: the base64 SHA-256 of the server
 * certificate's public key, which Chromium's `--ignore-certificate-errors-spki-list` takes.
 */
export function makeCerts(dir, name) {
  requireTool(OPENSSL, 'openssl', 'OPENSSL');
  const f = (x) => resolve(dir, x);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=sgp test CA (throwaway)',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', `/CN=${name}`]);
  writeFileSync(f('server.ext'), [
    `subjectAltName=DNS:${name},IP:127.0.0.1`,
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    '',
  ].join('\n'));
  openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-days', '2', '-sha256', '-extfile', f('server.ext'), '-out', f('server.pem')]);
  const x = new X509Certificate(readFileSync(f('server.pem')));
  if (!x.checkHost(name) || !x.checkIP('127.0.0.1')) throw new Error(`the test certificate does not name ${name} and 127.0.0.1: ${x.subjectAltName}`);
  const spki = createHash('sha256').update(x.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), spki, subjectAltName: x.subjectAltName };
}

// ---------------------------------------------------------------------------------------
// Configs from the shipped files.

/**
 * `text` with each rule [pattern, replacement, count = 1] applied: every pattern must match
 * exactly `count` times, else it throws naming it, so that a change to a shipped config that
 * the tests would no longer exercise fails loudly rather than being tested half.
 */
export function rewrite(text, rules, what) {
  let out = text;
  for (const [pattern, replacement, count = 1] of rules) {
    const re = typeof pattern === 'string'
      ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g')
      : new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`);
    const n = (out.match(re) || []).length;
    if (n !== count) throw new Error(`${what}: ${re} matches ${n} time(s), the test expects ${count}; was the shipped file changed?`);
    out = out.replace(re, replacement); // `$1` in a replacement is the match's first group
  }
  return out;
}

/**
 * The shipped deploy/nginx.conf as a test runs it: on 127.0.0.1 (`httpsPort`, and `httpPort`
 * for the http → https redirect), for `name`, with the test certificate, in front of sgp on
 * `upstreamPort`. `defaultHost`: drop the `proxy_set_header Host` line, so nginx sends its
 * default Host ($proxy_host, 127.0.0.1:upstreamPort).
 */
export function nginxSite({ name, httpsPort, httpPort, upstreamPort, cert, key, defaultHost = false }) {
  const rules = [
    ...siteRules({ name, httpsPort, httpPort, cert, key }),
    [/^(\s*)proxy_pass http:\/\/127\.0\.0\.1:8080\/;$/m, `$1proxy_pass http://127.0.0.1:${upstreamPort}/;`],
  ];
  if (defaultHost) rules.push([/^\s*proxy_set_header Host \$http_host;\n/m, '']);
  return rewrite(readFileSync(NGINX_SITE, 'utf8'), rules, 'deploy/nginx.conf');
}

/** What both shipped nginx sites have the tests change: the ports (on 127.0.0.1 only), the
 *  name and the certificate. */
function siteRules({ name, httpsPort, httpPort, cert, key }) {
  return [
    [/^(\s*)listen 80;$/m, `$1listen 127.0.0.1:${httpPort};`],
    [/^\s*listen \[::\]:80;\n/m, ''],
    [/^(\s*)listen 443 ssl;$/m, `$1listen 127.0.0.1:${httpsPort} ssl;`],
    [/^\s*listen \[::\]:443 ssl;\n/m, ''],
    [/^(\s*)server_name example\.org;$/m, `$1server_name ${name};`, 2],
    [/^(\s*)ssl_certificate\s+\S+;$/m, `$1ssl_certificate ${cert};`],
    [/^(\s*)ssl_certificate_key\s+\S+;$/m, `$1ssl_certificate_key ${key};`],
  ];
}

/** How many `server 127.0.0.1:PORT …;` lines the shipped upstream has. */
export const SHARDED_SERVERS = 3;

/**
 * The shipped deploy/nginx-sharded.conf as a test runs it: as nginxSite, in front of the sgp
 * servers on `upstreamPorts` (127.0.0.1, in that order; each with the parameters of the
 * shipped first line, `max_fails=…` and the like). Returns {site, servers}: `servers` as the
 * upstream names them (`127.0.0.1:PORT`), which is what nginx's consistent hash places on its
 * ring.
 */
export function nginxShardedSite({ name, httpsPort, httpPort, upstreamPorts, cert, key }) {
  const servers = upstreamPorts.map((p) => `127.0.0.1:${p}`);
  let k = 0;
  // The shipped lines, each replaced: the first by one line per server, the others by nothing.
  const line = (_, indent, rest = '') => (k++ ? '' : servers.map((x) => `${indent}server ${x}${rest};\n`).join(''));
  const site = rewrite(readFileSync(NGINX_SHARDED_SITE, 'utf8'), [
    ...siteRules({ name, httpsPort, httpPort, cert, key }),
    [/^(\s*)server 127\.0\.0\.1:\d+( [^;\n]*)?;\n/m, line, SHARDED_SERVERS],
  ], 'deploy/nginx-sharded.conf');
  return { site, servers };
}

// ---------------------------------------------------------------------------------------
// nginx's `hash KEY consistent` (ngx_http_upstream_hash_module, the same since nginx 1.7.2):
// each server (weight 1) is 160 points on a ring of CRC-32 values, point j being
// crc32(HOST "\0" PORT PREV) with PREV the point before it (4 bytes, little-endian; zero for
// the first); a key goes to the first point at or after crc32(KEY), wrapping round, and a
// retry walks on to the next point whose server was not tried and is not left out. (An empty
// key goes round-robin instead: deploy/nginx-sharded.conf maps no room to the key `-`.)

/** The ring of `servers` (`host:port` as the upstream writes them): sorted points. */
export function nginxChashRing(servers) {
  const points = [];
  for (const server of servers) {
    const m = /^(.*):(\d+)$/.exec(server);
    const base = Buffer.concat([Buffer.from(m ? m[1] : server), Buffer.from([0]), Buffer.from(m ? m[2] : '')]);
    const prev = Buffer.alloc(4);
    for (let j = 0; j < 160; j++) {
      const hash = crc32(Buffer.concat([base, prev]));
      points.push({ hash, server });
      prev.writeUInt32LE(hash);
    }
  }
  points.sort((a, b) => a.hash - b.hash);
  return points.filter((p, i) => i === 0 || p.hash !== points[i - 1].hash);
}

/** The server nginx picks for `key` (not empty) on `ring`, passing over the servers in `out`
 *  (stopped, or left out after failing) as a retry does; null if every server is out. */
export function nginxChashPick(ring, key, out = []) {
  const h = crc32(Buffer.from(key));
  let i = ring.findIndex((p) => p.hash >= h);
  if (i < 0) i = 0;
  for (let n = 0; n < ring.length; n++) {
    const { server } = ring[(i + n) % ring.length];
    if (!out.includes(server)) return server;
  }
  return null;
}

/**
 * The whole nginx.conf around a site: everything nginx writes stays in `dir`. The site's own
 * access log (its `access_log … sgp;` lines, in its format) goes to `dir`/access.log, and
 * beside it the test's, `dir`/requests.log: each request whole (the query, room codes
 * included), which upstream servers were tried (`up=$upstream_addr`, comma-separated when
 * nginx went on to the next) and what each answered (`ups=$upstream_status`). `from` names the
 * shipped file the site comes from. `workers` (worker_processes: a number or `auto`) and
 * `connections` (worker_connections) are small for a test; a benchmark raises them.
 */
export function nginxConf(dir, site, { from = 'deploy/nginx.conf', workers = 1, connections = 256 } = {}) {
  mkdirSync(resolve(dir, 'tmp'), { recursive: true });
  // As root, nginx's workers drop to an unprivileged user: say which one exists here
  // (Debian's nginx defaults to `nobody` and a group `nobody` Debian does not have), and let
  // it into the folder (0711: it may reach files it is told of, not list them; the keys stay
  // 0600, read by the master process only).
  let user = '';
  if (process.getuid && process.getuid() === 0) {
    const groups = readFileSync('/etc/group', 'utf8');
    user = `user nobody ${/^nogroup:/m.test(groups) ? 'nogroup' : 'nobody'};`;
    chmodSync(dir, 0o711);
    chmodSync(resolve(dir, 'tmp'), 0o711);
  }
  site = rewrite(site, [
    [/^(\s*)access_log \S+ sgp;$/m, `$1access_log ${dir}/access.log sgp;\n$1access_log ${dir}/requests.log requests;`, 2],
  ], from);
  return `# nginx.conf for one proxy test: generated around ${from} (see below).
${user}
worker_processes ${workers};
worker_rlimit_nofile ${2 * connections + 64};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events {
    worker_connections ${connections};
}
http {
    access_log ${dir}/access.log;
    log_format requests '$remote_addr [$time_local] "$request" $status up=$upstream_addr ups=$upstream_status';
    client_body_temp_path ${dir}/tmp/client_body;
    proxy_temp_path ${dir}/tmp/proxy;
    fastcgi_temp_path ${dir}/tmp/fastcgi;
    uwsgi_temp_path ${dir}/tmp/uwsgi;
    scgi_temp_path ${dir}/tmp/scgi;

# ---- ${from}, with the test's ports, name and certificate ----
${site}
}
`;
}

/**
 * Runs nginx (`nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'`) with `conf` and waits until
 * it listens on each of `ports`. Returns {proc, dir, log(), accessLog(), requestLog(), stop()}:
 * the access log as the shipped site writes it, and the test's, with whole requests.
 */
export async function startNginx(dir, conf, ports) {
  requireTool(NGINX, 'nginx', 'NGINX');
  const file = resolve(dir, 'nginx.conf');
  writeFileSync(file, conf);
  let out = '';
  const proc = h.spawnTracked(NGINX, ['-p', `${dir}/`, '-e', 'stderr', '-c', file, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] }, { lastSignal: 'SIGTERM' });
  for (const s of [proc.stdout, proc.stderr]) {
    s.setEncoding('utf8');
    s.on('data', (d) => (out += d));
  }
  const errorLog = () => {
    try {
      return readFileSync(resolve(dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  const log = () => `${out}${errorLog()}`.trim().slice(-3000);
  const readLog = (name) => {
    try {
      return readFileSync(resolve(dir, name), 'utf8');
    } catch {
      return '';
    }
  };
  proc.once('error', (e) => (out += `cannot start ${NGINX}: ${e.message}\n`));
  for (const port of ports) await h.waitPort(port, { child: proc, what: () => `nginx: ${log()}` });
  return {
    proc,
    dir,
    log,
    accessLog: () => readLog('access.log'),
    requestLog: () => readLog('requests.log'),
    stop: () => h.stopChild(proc),
  };
}

/**
 * The shipped deploy/Caddyfile as a test runs it: the site at https://`name`:`port` (and
 * https://127.0.0.1:`port`) bound to 127.0.0.1 with the test certificate (so Caddy never asks a certificate authority), in front
 * of sgp on `upstreamPort`; no admin endpoint, no automatic https, nothing stored outside `dir`.
 */
export function caddyfile(dir, { name, port, upstreamPort, cert, key }) {
  return rewrite(readFileSync(CADDYFILE, 'utf8'), [
    [/^\{$/m, [
      '{',
      '\t# ---- the test\'s global options ----',
      '\tadmin off',
      '\tauto_https off',
      '\tskip_install_trust',
      `\tstorage file_system {\n\t\troot ${dir}/data\n\t}`,
    ].join('\n')],
    // Also at 127.0.0.1: `sgp pair` cannot resolve `name`, and Caddy picks a site by Host.
    [/^example\.org \{$/m, `https://${name}:${port}, https://127.0.0.1:${port} {\n\t# ---- the test's address and certificate ----\n\tbind 127.0.0.1\n\ttls ${cert} ${key}`],
    [/^(\t+)reverse_proxy 127\.0\.0\.1:8080 \{$/m, `\t\treverse_proxy 127.0.0.1:${upstreamPort} {`],
  ], 'deploy/Caddyfile');
}

/**
 * Runs `caddy run --config DIR/Caddyfile --adapter caddyfile` (HOME and XDG folders in `dir`)
 * and waits until it listens on `port`. Returns {proc, log(), stop()}.
 */
export async function startCaddy(dir, text, port) {
  requireTool(CADDY, 'caddy', 'CADDY');
  const file = resolve(dir, 'Caddyfile');
  writeFileSync(file, text);
  let out = '';
  const env = {
    ...process.env, HOME: dir, XDG_DATA_HOME: resolve(dir, 'data'), XDG_CONFIG_HOME: resolve(dir, 'config'),
  };
  const proc = h.spawnTracked(CADDY, ['run', '--config', file, '--adapter', 'caddyfile'], { stdio: ['ignore', 'pipe', 'pipe'], env, cwd: dir });
  for (const s of [proc.stdout, proc.stderr]) {
    s.setEncoding('utf8');
    s.on('data', (d) => {
      out += d;
      if (out.length > 200_000) out = out.slice(-100_000);
    });
  }
  proc.once('error', (e) => (out += `cannot start ${CADDY}: ${e.message}\n`));
  const log = () => out.trim().slice(-3000);
  await h.waitPort(port, { child: proc, what: () => `caddy: ${log()}` });
  return { proc, log, stop: () => h.stopChild(proc) };
}

// ---------------------------------------------------------------------------------------
// Requests from node, as a browser or a script would send them.

/**
 * One HTTPS request to 127.0.0.1:`port` for host `name` (SNI and Host), trusting `ca`;
 * resolves {status, headers, body}.
 */
export async function httpsGet({ port, name, ca, path, headers = {} }) {
  const https = await import('node:https');
  return new Promise((res, rej) => {
    const req = https.request({
      host: '127.0.0.1', port, path, servername: name, ca: readFileSync(ca), method: 'GET',
      headers: { Host: `${name}:${port}`, ...headers }, agent: false,
    }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d) => (body += d));
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, body }));
    });
    req.once('error', rej);
    req.setTimeout(15_000, () => req.destroy(new Error(`GET ${path}: no answer in 15 s`)));
    req.end();
  });
}

/** One plain-http request to 127.0.0.1:`port` with Host `host`; resolves {status, headers, body}. */
export async function httpGet({ port, host, path }) {
  const http = await import('node:http');
  return new Promise((res, rej) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { Host: host }, agent: false }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d) => (body += d));
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, body }));
    });
    req.once('error', rej);
    req.setTimeout(15_000, () => req.destroy(new Error(`GET ${path}: no answer in 15 s`)));
    req.end();
  });
}

/**
 * A WebSocket upgrade of `path` on https://127.0.0.1:`port` for host `name` with `origin`, as
 * a browser sends it; resolves {status, body}: 101 if the socket would open (it is closed at
 * once), else the refusal's status and text.
 */
export async function upgrade({ port, name, ca, path, origin }) {
  const https = await import('node:https');
  const { randomBytes } = await import('node:crypto');
  return new Promise((res, rej) => {
    const req = https.request({
      host: '127.0.0.1', port, path, servername: name, ca: readFileSync(ca), method: 'GET', agent: false,
      headers: {
        Host: `${name}:${port}`, Origin: origin, Connection: 'Upgrade', Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      },
    });
    req.once('upgrade', (r, socket) => {
      socket.destroy();
      res({ status: r.statusCode, body: '' });
    });
    req.once('response', (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d) => (body += d));
      r.on('end', () => res({ status: r.statusCode, body }));
    });
    req.once('error', rej);
    req.setTimeout(15_000, () => req.destroy(new Error(`upgrade ${path}: no answer in 15 s`)));
    req.end();
  });
}


// audit-browser.mjs — records real browser sessions for the eavesdropper audit (issue 7):
// two Chromium tabs in ONE window, one of them in the background (hidden and throttled, as
// client/test/e2e/background.test.mjs sets it up), run K sessions in one room, and both
// posters' records (the page's Download record, `window.sgpRecord()`: the format of
// `sgp pair --record FILE`) are written to a directory, for `sgp eve --attack`.
//
// Usage:
//   node client/test/audit-browser.mjs OUTDIR [--sessions K] [--target-bits N]
//        [--tolerance-ms T] [--background alice|bob] [--server URL]
//
//   OUTDIR          created if missing; gets alice.json and bob.json (mode 0600: key material;
//                   each rewritten after every session, so a failure part-way leaves what was
//                   made), then summary.json
//   --sessions K    confirmed keys to make (default 3); a session that fails (gave up) is
//                   started again, up to 2K attempts in all
//   --target-bits N the room's target (default 256)
//   --tolerance-ms T the room's tolerance (default: the page's own measured default)
//   --background R  which poster's tab is hidden (default bob); R presses Start first, then the
//                   front tab is brought forward and presses Start, every session
//   --server URL    use a running `sgp serve` at URL (default: start SGP_BIN serve --port 0)
//   env SGP_BIN     the sgp binary (default target/debug/sgp; target/release/sgp is faster),
//       CHROMIUM    the browser (default /usr/bin/chromium)
//
// stdout: one JSON line per session {session, ok, ms, rounds, dropped, strength, hidden},
// then {"summary": {...}}. Exit 0 if K sessions were confirmed with the background tab hidden
// throughout, 1 otherwise, 2 on a usage error. Audit the result with:
//   sgp eve --attack OUTDIR/alice.json OUTDIR/bob.json [--json]

import { mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import { resolve } from 'node:path';
import * as h from './e2e/harness.mjs';

function usage(msg) {
  console.error(`audit-browser: ${msg}\nusage: node client/test/audit-browser.mjs OUTDIR [--sessions K] [--target-bits N] [--tolerance-ms T] [--background alice|bob] [--server URL]`);
  process.exit(2);
}

const args = process.argv.slice(2);
const opts = { sessions: 3, targetBits: null, toleranceMs: null, background: 'bob', server: null, out: null };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const val = () => {
    if (i + 1 >= args.length) usage(`${a} needs a value`);
    return args[++i];
  };
  if (a === '--sessions') opts.sessions = Number(val());
  else if (a === '--target-bits') opts.targetBits = Number(val());
  else if (a === '--tolerance-ms') opts.toleranceMs = Number(val());
  else if (a === '--background') opts.background = val();
  else if (a === '--server') opts.server = val().replace(/\/+$/, '');
  else if (a.startsWith('-')) usage(`unknown option ${a}`);
  else if (opts.out === null) opts.out = a;
  else usage(`unexpected argument ${a}`);
}
if (!opts.out) usage('OUTDIR is required');
if (!(Number.isInteger(opts.sessions) && opts.sessions >= 1)) usage('--sessions must be a whole number ≥ 1');
if (opts.targetBits !== null && !(Number.isInteger(opts.targetBits) && opts.targetBits >= 1)) usage('--target-bits must be a whole number ≥ 1');
if (opts.toleranceMs !== null && !(opts.toleranceMs > 0)) usage('--tolerance-ms must be a positive number');
if (!['alice', 'bob'].includes(opts.background)) usage('--background is alice or bob');

const out = resolve(opts.out);
mkdirSync(out, { recursive: true });

const server = opts.server ? { url: opts.server, stop: async () => {} } : await h.startServer();
const rt = await h.launchRealTabs();
let exit = 1;
try {
  const A = await h.newPage(rt.context, 'alice');
  const B = await h.newPage(rt.context, 'bob');
  const tabs = { alice: A, bob: B };
  const hidden = tabs[opts.background];
  const front = tabs[opts.background === 'alice' ? 'bob' : 'alice'];

  await A.bringToFront();
  const { link, code } = await h.createRoom(A, server, {
    ...(opts.toleranceMs !== null ? { toleranceMs: opts.toleranceMs } : {}),
    ...(opts.targetBits !== null ? { targetBits: opts.targetBits } : {}),
  });
  await h.waitRole(A, 'alice');
  await B.bringToFront();
  await B.goto(link);
  await h.waitRole(B, 'bob');
  const params = (await h.state(A)).params;

  const save = async () => {
    for (const [role, p] of Object.entries(tabs)) {
      // Records are key material (own posts and sync rebuild the key): owner-only, as sgp pair's.
      const file = resolve(out, `${role}.json`);
      writeFileSync(file, JSON.stringify(await p.evaluate(() => window.sgpRecord())), { mode: 0o600 });
      chmodSync(file, 0o600);
    }
  };

  const results = [];
  let ok = 0;
  for (let attempt = 1; ok < opts.sessions && attempt <= 2 * opts.sessions; attempt++) {
    // The hidden tab's poster presses Start, then the person switches to the other tab.
    await hidden.bringToFront();
    await h.click(hidden, 'start');
    await front.bringToFront();
    await h.sleep(300);
    let visible = 0;
    const watch = setInterval(() => {
      hidden.evaluate(() => document.visibilityState).then((v) => {
        if (v !== 'hidden') visible++;
      }, () => {});
    }, 1000);
    const t0 = Date.now();
    await h.click(front, 'start');
    let r;
    try {
      const [kf, kh] = await h.waitKeys([front, hidden], 300_000);
      const st = await h.state(A);
      const rounds = st.rounds.filter((x) => x.session === st.key.session);
      r = {
        session: st.key.session, ok: kf.state === 'match' && kf.key === kh.key, ms: Date.now() - t0,
        rounds: rounds.length, dropped: rounds.filter((x) => x.dropped || x.desync).length, strength: Number(kf.strength),
      };
    } catch (e) {
      r = { session: null, ok: false, ms: Date.now() - t0, error: e.message.split('\n')[0].slice(0, 300) };
    } finally {
      clearInterval(watch);
    }
    r.hidden = visible === 0 && (await hidden.evaluate(() => document.visibilityState)) === 'hidden';
    if (r.ok && r.hidden) ok++;
    results.push(r);
    await save();
    console.log(JSON.stringify(r));
  }
  const summary = {
    room: code, params, background: opts.background, sessions_asked: opts.sessions, sessions_ok: ok, attempts: results.length,
    files: [resolve(out, 'alice.json'), resolve(out, 'bob.json')], server: server.url, sgp_bin: h.SGP_BIN,
  };
  writeFileSync(resolve(out, 'summary.json'), JSON.stringify({ summary, sessions: results }, null, 1));
  console.log(JSON.stringify({ summary }));
  exit = ok >= opts.sessions ? 0 : 1;
} finally {
  await rt.close();
  await server.stop();
}
process.exit(exit);

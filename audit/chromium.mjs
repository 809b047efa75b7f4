// audit/chromium.mjs — the Chromium part of the full audit (issue 7, run by audit/run.py):
// two tabs of one window, B in the background for the whole session, make keys one room
// after another; `sgp eve --record` watches each room; at the end of each key both tabs
// download their record. audit/run.py then runs `sgp eve --attack` on the files.
//
// What it needs from the page (the web client's record download):
//   - a button `[data-testid="download-record"]`, usable once a key is confirmed, that
//     downloads one JSON file with the shape `sgp pair --record` writes:
//     {room, role, params, rounds: [{session, round, t_start_us, t_end_us,
//      sync: {offset_us, delay_us}, posts: [{sent_us, label}], board, done_us?}],
//      messages: [{t_us, msg}]}, everything the page knew since it joined the room, local
//     times in µs on the page's clock, with predicted server time
//     = sent_us + sync.offset_us + floor(sync.delay_us / 2) as secret.js computes it.
// Until the page has that button this script prints why and exits 77 (skipped).
//
// usage: node audit/chromium.mjs --out DIR [--minutes M]   (SGP_BIN, CHROMIUM as harness.mjs)

import { spawn } from 'node:child_process';
import { writeFileSync, readFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import * as h from '../client/test/e2e/harness.mjs';

const arg = (name, dflt) => {
  const k = process.argv.indexOf(name);
  return k > 0 ? process.argv[k + 1] : dflt;
};
const OUT = arg('--out');
const MINUTES = Number(arg('--minutes', '10'));
if (!OUT) {
  console.error('usage: node audit/chromium.mjs --out DIR [--minutes M]');
  process.exit(2);
}

/** Clicks the page's download button and saves the file as `path` (0600: key material). */
async function download(page, path) {
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), h.click(page, 'download-record')]);
  await dl.saveAs(path);
  chmodSync(path, 0o600);
  const doc = JSON.parse(readFileSync(path, 'utf8'));
  for (const k of ['room', 'role', 'params', 'rounds', 'messages']) {
    if (!(k in doc)) throw new Error(`${path}: the downloaded record has no "${k}"`);
  }
  return doc;
}

/** `sgp eve --record` on a room, until the key is confirmed. */
function eve(server, code, path) {
  const p = spawn(h.SGP_BIN, ['eve', '--server', server.url, '--room', code, '--record', path], { stdio: ['ignore', 'ignore', 'inherit'] });
  return new Promise((resolve) => p.once('exit', resolve));
}

const server = await h.startServer();
const rt = await h.launchRealTabs();
let keys = 0;
let rounds = 0;
const began = Date.now();
try {
  const A = await h.newPage(rt.context, 'front tab (alice)');
  const B = await h.newPage(rt.context, 'background tab (bob)');
  for (let k = 0; Date.now() - began < MINUTES * 60_000; k++) {
    await A.bringToFront();
    const { code, link } = await h.createRoom(A, server);
    await h.waitRole(A, 'alice');
    if (k === 0 && (await h.byTestid(A, 'download-record').count()) === 0) {
      console.log('skipped: the web client has no record download yet ([data-testid="download-record"]); see the top of audit/chromium.mjs');
      process.exitCode = 77;
      break;
    }
    const watching = eve(server, code, join(OUT, `k${String(k).padStart(3, '0')}-eve.json`));
    await B.bringToFront();
    await B.goto(link);
    await h.waitRole(B, 'bob');
    await h.startAll(B);
    await A.bringToFront();
    await h.sleep(300);
    if ((await B.evaluate(() => document.visibilityState)) !== 'hidden') throw new Error('tab B is not in the background');
    await h.startAll(A);
    const ka = await h.waitKey(A, 300_000);
    const kb = await h.waitKey(B, 60_000);
    if (ka.key !== kb.key) throw new Error(`room ${code}: the tabs' keys differ`);
    await watching;
    const da = await download(A, join(OUT, `k${String(k).padStart(3, '0')}-alice.json`));
    await B.bringToFront();
    await download(B, join(OUT, `k${String(k).padStart(3, '0')}-bob.json`));
    keys++;
    rounds += da.rounds.length;
    console.error(`chromium: key ${keys} (room ${code}), ${rounds} rounds so far, ${Math.round((Date.now() - began) / 1000)} s`);
  }
  if (process.exitCode !== 77) {
    const summary = { keys, rounds, minutes: MINUTES, seconds: Math.round((Date.now() - began) / 1000) };
    writeFileSync(join(OUT, 'driver.txt'), JSON.stringify(summary) + '\n');
    console.log(JSON.stringify(summary));
  }
} finally {
  await rt.close();
  await server.stop();
}

// i18n.test.mjs — the page in French: a French-language browser gets the French page (texts
// checked against client/js/i18n/fr.js, not written out here), the switch turns it to English
// and back at once and is remembered (and still works where storage is refused), and two
// French tabs make a key (a French eavesdropper watching), one switched to English
// mid-session without disturbing it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import * as h from './harness.mjs';
import en from '../../js/i18n/en.js';
import fr from '../../js/i18n/fr.js';

let fx;
const FR = { locale: 'fr-FR' };

before(async () => {
  fx = await h.fixture();
});

after(async () => {
  if (fx) await fx.close();
});

/** The landing page's stable texts, and the page's language as it says it. */
async function landing(page) {
  // Create says "Measuring…" until the first jitter measurement: wait for its own label.
  await page.waitForFunction(() => !document.querySelector('[data-testid="create"]').disabled, null, { timeout: 30_000 });
  return page.evaluate(() => {
    const q = (sel) => document.querySelector(sel).textContent.trim();
    return {
      lang: document.documentElement.lang,
      switch: document.querySelector('[data-testid="lang"]').value,
      switchLabel: document.querySelector('[data-testid="lang"]').getAttribute('aria-label'),
      title: document.title,
      create: q('[data-testid="create"]'),
      join: q('[data-testid="join"]'),
      watch: q('[data-testid="watch"]'),
      theme: q('[data-testid="theme"]'),
      heading: q('#create-form h2'),
      why: q('[data-testid="tolerance-why"]'),
    };
  });
}

/** What `landing` should read in language table `m`. */
const expected = (m, lang) => ({
  lang,
  switch: lang,
  switchLabel: m['nav.lang'],
  title: m['page.title'],
  create: m['create.button'],
  join: m['join.button'],
  watch: m['join.watch'],
  theme: m['nav.theme'],
  heading: m['create.title'],
});

function checkLanding(got, m, lang, what) {
  const { why, ...rest } = got;
  assert.deepEqual(rest, expected(m, lang), what);
  // The tolerance explanation is built from parts: it starts with the default's sentence.
  const ms = why.match(/\d+(\.\d+)?/)[0];
  assert.ok(why.startsWith(m['tol.why']({ ms, base: '', measured: '' }).trim()), `${what}: tolerance-why in ${lang}: "${why.slice(0, 120)}"`);
}

/** A regexp for the head of a round's caption in language table `m`, up to its entry count. */
function captionHead(m) {
  let sample = m['caption.head']({ session: 'SESSION', round: 'ROUND', entries: 'ENTRIES', kept: 'KEPT' });
  sample = sample.slice(0, sample.indexOf('ENTRIES') + 'ENTRIES'.length);
  const re = sample.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace('SESSION', '\\S+').replace(/ROUND|ENTRIES|KEPT/g, '\\d+');
  return new RegExp(`^${re}`);
}

test('a French browser gets the French page; the switch turns it to English and back, remembered', { timeout: 120_000 }, async () => {
  const P = await fx.page('french browser', FR);
  await P.goto(`${fx.server.url}/`);
  assert.deepEqual(await P.evaluate(() => [...navigator.languages]), ['fr-FR'], 'the context speaks French');
  checkLanding(await landing(P), fr, 'fr', 'French at first');

  await h.byTestid(P, 'lang').selectOption('en');
  checkLanding(await landing(P), en, 'en', 'English at once, no reload');
  assert.equal(await P.evaluate(() => performance.getEntriesByType('navigation').length), 1, 'the page was not reloaded');

  await P.reload();
  checkLanding(await landing(P), en, 'en', 'English remembered over the browser\'s French');

  await h.byTestid(P, 'lang').selectOption('fr');
  checkLanding(await landing(P), fr, 'fr', 'French again');
  await P.reload();
  checkLanding(await landing(P), fr, 'fr', 'French remembered');
  await h.assertClean(P);

  // An English browser gets the English page.
  const E = await fx.page('english browser', { locale: 'en-GB' });
  await E.goto(`${fx.server.url}/`);
  checkLanding(await landing(E), en, 'en', 'English for en-GB');
  await h.assertClean(E);
});

test('where storage is refused the page still works in the browser\'s language, and the switch still switches', { timeout: 120_000 }, async () => {
  const P = await fx.page('no storage', FR);
  await P.addInitScript(() => {
    Object.defineProperty(window, 'localStorage', {
      get() {
        throw new DOMException('storage refused', 'SecurityError');
      },
    });
  });
  await P.goto(`${fx.server.url}/`);
  checkLanding(await landing(P), fr, 'fr', 'French without storage');
  await h.byTestid(P, 'lang').selectOption('en');
  checkLanding(await landing(P), en, 'en', 'the switch works without storage');
  await P.reload();
  checkLanding(await landing(P), fr, 'fr', 'not remembered: the browser\'s French again');
  await h.assertClean(P);
});

test('two French tabs make a key; one switched to English mid-session still gets it', { timeout: 300_000 }, async (t) => {
  const A = await fx.page('alice (fr)', FR);
  const B = await fx.page('bob (fr)', FR);
  // A generous tolerance, as keys.test.mjs: this test is about the words, not the timing.
  const { code } = await h.twoPosters(fx.server, A, B, { toleranceMs: 4 });
  // A French eavesdropper too: its role by the protocol's name (data-role), shown in French.
  const E = await fx.page('observer (fr)', FR);
  await E.goto(`${fx.server.url}/?room=${encodeURIComponent(code)}&watch`);
  await h.waitRole(E, 'observer');
  assert.equal(await h.text(E, 'role'), fr['role.observer']);
  for (const p of [A, B]) {
    assert.equal(await h.text(p, 'start'), fr['room.start'], 'Start in French');
    assert.equal(await h.byTestid(p, 'lang').inputValue(), 'fr');
  }
  // Bob's page says alice is here, in French and by its message id.
  const st = await h.state(B);
  assert.equal(st.statusId, 'status.peerHere');
  assert.equal(await h.text(B, 'status'), fr['status.peerHere']({ peer: 'Alice' }));

  await h.startAll(A, B);
  // Once A's session runs, switch A to English: the words change, the session goes on.
  await A.waitForFunction(() => window.sgpState.running && window.sgpState.rounds.length === 0, null, { timeout: 60_000 });
  await h.byTestid(A, 'lang').selectOption('en');
  assert.equal(await A.evaluate(() => document.documentElement.lang), 'en');
  const during = await A.evaluate(() => ({ running: window.sgpState.running, start: document.querySelector('[data-testid="start"]').textContent }));
  t.diagnostic(`A switched to English while running: ${JSON.stringify(during)}`);
  if (during.running) assert.equal(during.start, en['room.running'], 'the Start button reads Running… in English');

  const [ka, kb] = await h.waitKeys([A, B], 240_000);
  h.checkKey(assert, ka, 'alice (switched to English)');
  h.checkKey(assert, kb, 'bob (French)');
  assert.equal(ka.key, kb.key, 'the same key');
  assert.equal((await A.locator('#confirmed-text').textContent()), en['confirm.match'], 'A confirms in English');
  assert.equal((await B.locator('#confirmed-text').textContent()), fr['confirm.match'], 'B confirms in French');
  await h.waitState(E, 'confirmed', ['match'], 30_000);
  assert.equal((await E.locator('#confirmed-text').textContent()), fr['confirm.matchObserver'], 'the eavesdropper reads it in French');
  for (const [p, m] of [[A, en], [B, fr]]) {
    const s = await h.state(p);
    assert.equal(s.statusId, 'status.keyConfirmed');
    assert.equal(await h.text(p, 'status'), m['status.keyConfirmed']({ strength: s.key.strength }));
    assert.equal(s.status, await h.text(p, 'status'), 'sgpState.status is the sentence shown');
  }
  // For people reading the French: the finished page, whole.
  const shot = resolve(h.screenshotDir(), 'page-key-fr.png');
  await B.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);
  // The timeline's words follow the language too, pictures already drawn included.
  const capB = await B.locator('#timeline figcaption').first().textContent();
  assert.match(capB, captionHead(fr), `a French caption: "${capB}"`);
  await h.byTestid(B, 'lang').selectOption('en');
  const capEn = await B.locator('#timeline figcaption').first().textContent();
  assert.match(capEn, captionHead(en), `drawn again in English: "${capEn}"`);
  assert.equal((await B.locator('#confirmed-text').textContent()), en['confirm.match'], 'and the rest of B\'s page');
  assert.equal(await h.text(B, 'status'), en['status.keyConfirmed']({ strength: (await h.state(B)).key.strength }));
  for (const p of [A, B, E]) await h.assertClean(p);
});

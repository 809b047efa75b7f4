// i18n.test.mjs — the page's languages (client/js/i18n.js, i18n/en.js, i18n/fr.js): the same ids and parameters in each, no `undefined`/`NaN`, every id used and none missing, French typography, and the language a browser's list picks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import en from '../js/i18n/en.js';
import fr from '../js/i18n/fr.js';
import { LANGS, pickLang, t, msg } from '../js/i18n.js';

const CLIENT = join(dirname(fileURLToPath(import.meta.url)), '..');
const langs = Object.entries(LANGS);

/** A function message's parameters: it must be written `({ a, b }) => …`. */
function paramsOf(id, f) {
  const m = /^\(\{([^}]*)\}\)\s*=>/.exec(f.toString());
  assert.ok(m, `${id}: a function message takes one destructured object, ({ a, b }) => …: ${f.toString().slice(0, 80)}`);
  return m[1].split(',').map((x) => x.trim()).filter(Boolean).sort();
}

/** Every way of filling a message's parameters the tests try: numbers that pick each plural,
 *  a decimal, words, and '' (what the page passes for "not known", e.g. a tolerance). */
const SAMPLES = [0, 1, 2, 17, 1.5, '0.25', 'alice', 'x.', ''];

function renderings(f, names) {
  return SAMPLES.map((v) => f(Object.fromEntries(names.map((n) => [n, v]))));
}

test('English and French have exactly the same message ids, each a text or a function in both', () => {
  assert.deepEqual(Object.keys(LANGS).sort(), ['en', 'fr']);
  assert.deepEqual(Object.keys(fr).sort(), Object.keys(en).sort(), 'the same ids');
  for (const id of Object.keys(en)) {
    assert.equal(typeof fr[id], typeof en[id], `${id}: text in one language, function in the other`);
    assert.ok(['string', 'function'].includes(typeof en[id]), `${id}: a text or a function`);
    if (typeof en[id] === 'string') {
      assert.ok(en[id].length > 0 && fr[id].length > 0, `${id}: not empty`);
    }
  }
});

test('parameterised messages take the same parameters in both languages, use each, and never print undefined or NaN', () => {
  let n = 0;
  for (const id of Object.keys(en)) {
    if (typeof en[id] !== 'function') continue;
    n++;
    const names = paramsOf(id, en[id]);
    assert.deepEqual(paramsOf(id, fr[id]), names, `${id}: the same parameters`);
    assert.ok(names.length > 0, `${id}: a function message has parameters`);
    for (const [l, table] of langs) {
      const body = table[id].toString().replace(/^\(\{[^}]*\}\)\s*=>/, '');
      for (const p of names) assert.match(body, new RegExp(`\\b${p}\\b`), `${l} ${id}: parameter ${p} is used`);
      for (const out of renderings(table[id], names)) {
        assert.equal(typeof out, 'string', `${l} ${id}: a string`);
        assert.doesNotMatch(out, /undefined|NaN|\[object|null/, `${l} ${id}: "${out}"`);
        assert.ok(out.length > 0, `${l} ${id}: not empty`);
      }
      // A parameter left out prints as undefined: the page's t() says so on the console.
      const lost = table[id]({});
      assert.match(lost, /undefined/, `${l} ${id}: a missing parameter would show (t() reports it)`);
    }
  }
  assert.ok(n > 40, `${n} parameterised messages`);
  // Numbers keep their meaning and their decimal point in both languages.
  for (const l of ['en', 'fr']) {
    const out = t('tol.spread', { samples: 305, half: '0.25', p996: '1.50' }, l);
    for (const x of ['305', '0.25', '1.50']) assert.ok(out.includes(x), `${l}: "${out}" shows ${x}`);
  }
});

/** client/js (not the message tables) and index.html, as text. */
function sources() {
  const out = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'i18n') walk(p);
      } else if (e.name.endsWith('.js')) out.push([p, readFileSync(p, 'utf8')]);
    }
  };
  walk(join(CLIENT, 'js'));
  out.push([join(CLIENT, 'index.html'), readFileSync(join(CLIENT, 'index.html'), 'utf8')]);
  return out;
}

test('every message id is used by the page, and every id the page uses exists', () => {
  const ids = new Set(Object.keys(en));
  const namespaces = new Set([...ids].map((id) => id.split('.')[0]));
  const used = new Set();
  const missing = [];
  for (const [path, text] of sources()) {
    // Literal ids: 'ns.name' in the code, data-i18n="…" and data-i18n-ATTR="…" in the HTML.
    const found = [
      ...[...text.matchAll(/'([a-z][A-Za-z0-9]*\.[a-z][A-Za-z0-9]*)'/g)].map((m) => m[1]),
      ...[...text.matchAll(/data-i18n(?:-[a-z-]+)?="([^"]+)"/g)].map((m) => m[1]),
      ...[...text.matchAll(/dataset\.i18n = '([^']+)'/g)].map((m) => m[1]),
    ];
    for (const id of found) {
      if (!namespaces.has(id.split('.')[0])) continue; // a file name such as 'worker.js'
      if (ids.has(id)) used.add(id);
      else missing.push(`${path}: ${id}`);
    }
    // Ids built from a prefix (`role.${sgp.role}`): every id under it counts as used.
    for (const m of text.matchAll(/`([a-z][A-Za-z0-9]*\.)\$\{/g)) {
      for (const id of ids) if (id.startsWith(m[1])) used.add(id);
    }
  }
  assert.deepEqual(missing, [], 'ids used by the page but in no message table');
  assert.deepEqual([...ids].filter((id) => !used.has(id)), [], 'ids no part of the page uses');
  // The role names the page builds ids from are the protocol's.
  assert.deepEqual([...ids].filter((id) => id.startsWith('role.')).sort(), ['role.alice', 'role.bob', 'role.observer']);
});

test('the HTML text with no data-i18n is only what is not words: every other text node is filled', () => {
  const html = readFileSync(join(CLIENT, 'index.html'), 'utf8');
  const body = html.slice(html.indexOf('<body>')).replace(/<noscript>[\s\S]*?<\/noscript>/, '').replace(/<!--[\s\S]*?-->/g, '');
  // Text between tags, for every element that has no data-i18n (its own text only).
  const bare = [];
  const re = /<([a-z0-9]+)([^>]*)>([^<]*)/g;
  for (const m of body.matchAll(re)) {
    const text = m[3].trim();
    if (!text || /data-i18n="/.test(m[2])) continue;
    bare.push(text);
  }
  // What may stay: the brand, commands, the code format, units, language names, dashes, figures.
  const allowed = /^(sgp|sgp pair --record|sgp eve --attack alice\.json bob\.json|µs|ms|English|Français|—|\d+)$/;
  assert.deepEqual(bare.filter((x) => !allowed.test(x)), [], 'words in index.html without data-i18n');
  // Attributes with words carry their data-i18n-ATTR too.
  for (const m of body.matchAll(/\s(aria-label|title|placeholder)="([^"]*)"/g)) {
    if (m[1] === 'placeholder' && m[2] === 'ABCDE-FGHJK') continue; // a code's shape, not words
    assert.match(body, new RegExp(`data-i18n-${m[1]}="`), `${m[1]}="${m[2]}" has a data-i18n-${m[1]}`);
  }
});

test('French typography: a no-break space before : ; ? ! % and inside « », typographic apostrophes; English has neither', () => {
  for (const [id, m] of Object.entries(fr)) {
    const outs = typeof m === 'function' ? renderings(m, paramsOf(id, m)) : [m];
    for (const out of outs) {
      assert.doesNotMatch(out.replace(/:\/\//g, ''), /(^|[^\u00a0])[:;?!%]/, `fr ${id}: a no-break space before : ; ? ! %: "${out}"`);
      assert.doesNotMatch(out, /'/, `fr ${id}: ’ not ': "${out}"`);
      assert.doesNotMatch(out, /«(?!\u00a0)|(?<!\u00a0)»/, `fr ${id}: « » with no-break spaces`);
    }
  }
  for (const [id, m] of Object.entries(en)) {
    const out = typeof m === 'function' ? m(Object.fromEntries(paramsOf(id, m).map((p) => [p, 1]))) : m;
    assert.doesNotMatch(out, /\u00a0/, `en ${id}: no no-break spaces`);
  }
});

test('the language a browser\'s list picks: the first the page speaks, else English', () => {
  assert.equal(pickLang(['fr-FR', 'fr', 'en-US', 'en']), 'fr');
  assert.equal(pickLang(['fr']), 'fr');
  assert.equal(pickLang(['fr-CA']), 'fr');
  assert.equal(pickLang(['FR-be']), 'fr');
  assert.equal(pickLang(['en-US', 'fr-FR']), 'en', 'English first: English');
  assert.equal(pickLang(['de-DE', 'fr-FR']), 'fr', 'a language the page does not speak is passed over');
  assert.equal(pickLang(['de-DE', 'es']), 'en', 'none it speaks: English');
  assert.equal(pickLang(['fy-NL']), 'en', 'fy (Frisian) is not fr');
  assert.equal(pickLang([]), 'en');
  assert.equal(pickLang(undefined), 'en');
});

test('t(): a language chosen per call, messages as parameters, and a missing id said on the console', () => {
  assert.equal(t('room.start', undefined, 'en'), 'Start');
  assert.equal(t('room.start', undefined, 'fr'), fr['room.start']);
  // A message given as a parameter is translated in the same language.
  const which = msg('which.round', { round: 3 });
  assert.equal(t('status.dropped', { which, tol: 1 }, 'fr'), fr['status.dropped']({ which: fr['which.round']({ round: 3 }), tol: 1 }));
  assert.equal(t(msg('status.joining', { room: 'ABCDE-FGHJK' }), undefined, 'en'), 'Joining ABCDE-FGHJK…');
  const said = [];
  const orig = console.error;
  console.error = (x) => said.push(String(x));
  try {
    assert.equal(t('no.suchId', undefined, 'en'), '[no.suchId]');
    t('status.joining', {}, 'en');
  } finally {
    console.error = orig;
  }
  assert.equal(said.length, 2, `both said on the console: ${said.join(' | ')}`);
  assert.match(said[0], /no message "no\.suchId" in en/);
  assert.match(said[1], /status\.joining.*undefined/);
});

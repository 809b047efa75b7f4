// i18n.js — the page's language: picks English or French (navigator.languages, or the choice
// remembered from the switch), turns message ids into text (i18n/en.js, i18n/fr.js), fills the
// static HTML's data-i18n attributes, and tells the page when the switch changes the language.

import en from './i18n/en.js';
import fr from './i18n/fr.js';

/** The languages the page speaks: code → its messages (a flat object, id → text or function). */
export const LANGS = { en, fr };
export const DEFAULT_LANG = 'en';
const STORE = 'sgp-lang';

/**
 * The language for a browser's preferred list (navigator.languages): the first entry the page
 * speaks (`fr`, `fr-FR`, `fr-CA`… → French; `en-*` → English), else English.
 */
export function pickLang(languages) {
  for (const l of Array.isArray(languages) ? languages : []) {
    const base = String(l).toLowerCase().split(/[-_]/)[0];
    if (Object.hasOwn(LANGS, base)) return base;
  }
  return DEFAULT_LANG;
}

/** The language remembered from the switch, or null (none, or storage refused). */
function remembered() {
  try {
    const l = globalThis.localStorage ? localStorage.getItem(STORE) : null;
    return l && Object.hasOwn(LANGS, l) ? l : null;
  } catch {
    return null; // storage refused (privacy settings, sandboxed frame): follow the browser
  }
}

let current = DEFAULT_LANG;
const listeners = [];

export const lang = () => current;

/** A message to translate later (when shown, and again when the language changes). */
export const msg = (id, params) => ({ id, params });

/** Reports a page fault on the console (the browser tests fail on console errors). */
function fault(text) {
  console.error(`sgp i18n: ${text}`);
}

/**
 * The text of message `id` (or of a `msg(...)` object) in the current language. Parameters
 * that are themselves messages are translated first. A missing id, or a text that prints
 * `undefined` or `NaN`, is a bug of the page: said on the console, never hidden.
 */
export function t(id, params, language = current) {
  if (id && typeof id === 'object') return t(id.id, id.params, language);
  const table = LANGS[language] || LANGS[DEFAULT_LANG];
  const m = table[id];
  if (m === undefined) {
    fault(`no message "${id}" in ${language}`);
    return `[${id}]`;
  }
  if (typeof m !== 'function') return m;
  const p = {};
  for (const [k, v] of Object.entries(params || {})) p[k] = v && typeof v === 'object' && 'id' in v ? t(v, undefined, language) : v;
  const shown = m(p);
  if (/\bundefined\b|\bNaN\b/.test(shown)) fault(`message "${id}" printed "${shown}" with ${JSON.stringify(params)}`);
  return shown;
}

/** Fills every element under `root` that has data-i18n (its text) or data-i18n-ATTR (that
 *  attribute: data-i18n-aria-label, data-i18n-title, data-i18n-placeholder…). */
export function applyStatic(root = document) {
  for (const e of root.querySelectorAll('*')) {
    for (const a of e.getAttributeNames()) {
      if (a === 'data-i18n') {
        const text = t(e.getAttribute(a));
        if (e.textContent !== text) e.textContent = text;
      } else if (a.startsWith('data-i18n-')) {
        e.setAttribute(a.slice('data-i18n-'.length), t(e.getAttribute(a)));
      }
    }
  }
  document.documentElement.lang = current;
  document.title = t('page.title');
}

/** Calls `fn(lang)` after each change of language. */
export function onLangChange(fn) {
  listeners.push(fn);
}

/** Switches the page's language at once (no reload) and remembers it where storage allows. */
export function setLang(l, { remember = true } = {}) {
  if (!Object.hasOwn(LANGS, l)) throw new Error(`no such language: ${l}`);
  current = l;
  if (remember) {
    try {
      localStorage.setItem(STORE, l);
    } catch {
      // not remembered: the switch still works for this page
    }
  }
  applyStatic();
  for (const fn of listeners) fn(l);
}

/** The language at load: the switch's remembered choice, else the browser's. */
export function initLang() {
  current = remembered() || pickLang(globalThis.navigator ? navigator.languages : []);
  return current;
}

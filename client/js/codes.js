// codes.js — room codes (docs/protocol.md §3): drawing a new one (the page names the room it creates) and reading one as a person types it, the twin of src/room/fields.rs (make_code, normalize_code), held with it to tests/vectors/codes/codes.json. Pure: the random bytes come in as a function.

/** Crockford's base32: no I, L, O or U, so a code read aloud is typed right. */
export const CODE_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** Symbols in a code (50 bits), shown as two groups of five: `ABCDE-FGHJK`. */
export const CODE_LEN = 10;

/** The platform's generator (the page's and the worker's `crypto`). */
const osRandom = (buf) => crypto.getRandomValues(buf);

/**
 * A new room code in its canonical form `ABCDE-FGHJK`: `random(buf)` fills 8 bytes (the OS
 * generator by default), read as a little-endian u64, five bits at a time from the low end
 * (the top 14 bits are not used).
 */
export function makeCode(random = osRandom) {
  const b = new Uint8Array(8);
  random(b);
  let s = '';
  for (let k = 0; k < CODE_LEN; k++) {
    if (k === 5) s += '-';
    let v = 0;
    for (let j = 0; j < 5; j++) {
      const bit = 5 * k + j;
      v |= ((b[bit >> 3] >> (bit & 7)) & 1) << j;
    }
    s += CODE_ALPHABET[v];
  }
  return s;
}

/**
 * Reads a code as a person might type it: any case (ASCII only), dashes and spaces anywhere, O
 * for 0 and I or L for 1; then exactly 10 symbols of the alphabet. The canonical `ABCDE-FGHJK`,
 * or null where it cannot be a code (and for anything that is not a string).
 */
export function normalizeCode(input) {
  if (typeof input !== 'string') return null;
  let s = '';
  let n = 0;
  for (const ch of input) {
    // ASCII upper case only: toUpperCase() would read 'ı' as I and 'ſ' as S.
    let c = ch >= 'a' && ch <= 'z' ? String.fromCharCode(ch.charCodeAt(0) - 32) : ch;
    if (c === '-' || c === ' ') continue;
    if (c === 'O') c = '0';
    else if (c === 'I' || c === 'L') c = '1';
    else if (c.length !== 1 || !CODE_ALPHABET.includes(c)) return null;
    if (n === CODE_LEN) return null;
    if (n === 5) s += '-';
    s += c;
    n++;
  }
  return n === CODE_LEN ? s : null;
}

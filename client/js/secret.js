// secret.js — the derivation from board to key (docs/protocol.md §5), mirroring src/secret.rs:
// sift, recognise (with the self-check and the spans a poster leaves out around its late
// posts), bits, exact strength, key and confirmation tag, arrival errors, and the SHA-256
// they need. Pure: no DOM, no network, no clock, no randomness. Every time is an integer
// number of µs (epoch µs ~1.7e15 are exact in a double); every count is an exact integer
// (BigInt for the binomials). Held to the same answers as the Rust code by
// tests/vectors/*.json (client/test/secret.test.mjs).

/** Bits paid for privacy amplification: 2·log2(1/ε) with ε = 2⁻³². */
export const MARGIN_BITS = 64;

// ---------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4). Synchronous and self-contained: crypto.subtle is missing on pages
// that are not a secure context (plain http to a LAN address).

const K256 = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** Incremental SHA-256 over byte arrays. */
export class Sha256 {
  constructor() {
    this.h = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    this.block = new Uint8Array(64);
    this.fill = 0; // bytes waiting in `block`
    this.length = 0; // bytes hashed so far (a double: exact far beyond any input here)
    this.w = new Uint32Array(64);
    this.done = false;
  }

  /** Adds bytes (a Uint8Array, or a string taken as UTF-8). Returns `this`. */
  update(data) {
    if (this.done) throw new Error('sha256: update after digest');
    const bytes = typeof data === 'string' ? utf8(data) : data;
    let k = 0;
    this.length += bytes.length;
    if (this.fill > 0) {
      const take = Math.min(64 - this.fill, bytes.length);
      this.block.set(bytes.subarray(0, take), this.fill);
      this.fill += take;
      k = take;
      if (this.fill < 64) return this;
      this.compress(this.block, 0);
      this.fill = 0;
    }
    for (; k + 64 <= bytes.length; k += 64) this.compress(bytes, k);
    if (k < bytes.length) {
      this.block.set(bytes.subarray(k), 0);
      this.fill = bytes.length - k;
    }
    return this;
  }

  /** The 32-byte digest. */
  digest() {
    if (this.done) throw new Error('sha256: digest twice');
    const bitsHi = Math.floor(this.length / 0x20000000); // length·8 >> 32
    const bitsLo = (this.length * 8) >>> 0;
    const pad = new Uint8Array(((this.fill + 9 + 63) & ~63) - this.fill);
    pad[0] = 0x80;
    const n = pad.length;
    pad[n - 8] = bitsHi >>> 24;
    pad[n - 7] = bitsHi >>> 16;
    pad[n - 6] = bitsHi >>> 8;
    pad[n - 5] = bitsHi;
    pad[n - 4] = bitsLo >>> 24;
    pad[n - 3] = bitsLo >>> 16;
    pad[n - 2] = bitsLo >>> 8;
    pad[n - 1] = bitsLo;
    const len = this.length;
    this.update(pad);
    this.length = len;
    this.done = true;
    const out = new Uint8Array(32);
    for (let i = 0; i < 8; i++) {
      out[4 * i] = this.h[i] >>> 24;
      out[4 * i + 1] = this.h[i] >>> 16;
      out[4 * i + 2] = this.h[i] >>> 8;
      out[4 * i + 3] = this.h[i];
    }
    return out;
  }

  compress(bytes, at) {
    const w = this.w;
    for (let i = 0; i < 16; i++) {
      const j = at + 4 * i;
      w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15];
      const y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    const h = this.h;
    let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K256[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
}

/** SHA-256 of the concatenation of the parts (Uint8Arrays or UTF-8 strings). */
export function sha256(...parts) {
  const s = new Sha256();
  for (const p of parts) s.update(p);
  return s.digest();
}

/** A string's UTF-8 bytes. */
export function utf8(s) {
  return new TextEncoder().encode(s);
}

/** Lowercase hex. */
export function hex(bytes) {
  let s = '';
  for (const b of bytes) s += (b < 16 ? '0' : '') + b.toString(16);
  return s;
}

// ---------------------------------------------------------------------------------------
// Times and the derivation.

/** Integer µs from a parameter in ms, as Rust's `(ms * 1000.0).round()`. */
export function msToUs(ms) {
  const x = ms * 1000;
  // f64::round rounds half away from zero; Math.round rounds half up.
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/** Predicted arrival in server time: `sent_us + offset_us + floor(delay_us / 2)`. */
export function predictedUs(post, sync) {
  return post.sent_us + sync.offset_us + Math.floor(sync.delay_us / 2);
}

/** Index of the first element of ascending `sorted` that is ≥ x. */
function lowerBound(sorted, x) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Whether ascending `sorted` holds some t with |t − x| ≤ tol. */
function anyWithin(sorted, x, tol) {
  const k = lowerBound(sorted, x - tol);
  return k < sorted.length && sorted[k] <= x + tol;
}

/** How many t of ascending `sorted` have |t − x| ≤ tol. */
function countWithin(sorted, x, tol) {
  return lowerBound(sorted, x + tol + 1) - lowerBound(sorted, x - tol);
}

const byNumber = (a, b) => a - b;

/**
 * The public sift (docs/protocol.md §5.1): positions in `board` (board order) of the entries kept. An entry is
 * kept if `t_start + G ≤ t_us ≤ t_end − G` and no *other* entry of the whole board (kept or
 * not, in the window or not) is closer than g = 2τ; exactly g apart is kept.
 */
export function sift(board, tStartUs, tEndUs, toleranceUs, guardUs) {
  const g = 2 * Math.max(0, toleranceUs);
  const lo = tStartUs + guardUs;
  const hi = tEndUs - guardUs;
  const order = board.map((_, k) => k).sort((x, y) => board[x].t_us - board[y].t_us);
  const crowded = new Array(board.length).fill(false);
  for (let j = 1; j < order.length; j++) {
    const p = order[j - 1];
    const q = order[j];
    if (Math.abs(board[p].t_us - board[q].t_us) < g) {
      crowded[p] = true;
      crowded[q] = true;
    }
  }
  const kept = [];
  for (let k = 0; k < board.length; k++) {
    const t = board[k].t_us;
    if (!crowded[k] && t >= lo && t <= hi) kept.push(k);
  }
  return kept;
}

/**
 * At most this many of a poster's posts, as a share of them (1 in UNMATCHED_SHARE), may be
 * unmatched and covered by spans; more, and the round is out of sync (a clock problem, not a
 * late post or two): desync, re-sync, retry.
 */
export const UNMATCHED_SHARE = 4;

/**
 * A post's entry is *sure* within `τ × SURE[0] / SURE[1]` (floored) of its prediction, as `SURE`
 * in src/secret.rs. Between that and τ it is *doubtful*: a post's own entry is rarely that far
 * (τ covers its poster's delay with room to spare), while another entry with its label that
 * only happens to be near is as likely there as anywhere within τ. A doubtful post gets a
 * span, as an unmatched one does (docs/protocol.md §5.3).
 */
export const SURE = Object.freeze([3, 5]);

/**
 * A span starts SPAN_BEFORE τ before the predicted arrival of the first post it covers (not
 * before the previous matched or sent post's prediction − τ), as `SPAN_BEFORE` in
 * src/secret.rs: a post's entry is never that early (τ covers the spread of arrival errors;
 * only late posts are unmatched in practice).
 */
export const SPAN_BEFORE = 2;

/** Where a span whose first post is predicted at firstUs starts (prevUs: null if none). */
function spanFrom(firstUs, prevUs, tol, tStartUs) {
  const prev = prevUs === null ? -Infinity : prevUs - tol;
  return Math.max(firstUs - tol * SPAN_BEFORE, prev, tStartUs);
}

/**
 * Per own post, in the given order (send order), as `matched` in src/secret.rs: *matched*, i.e.
 * given an entry with its label whose time is sure (within SURE of τ of its prediction), not
 * before the entry given to the poster's previous matched post, and not given to another of
 * its posts (a poster's entries are on the board in its send order, one per post). Each post
 * takes the nearest such entry within τ (ties: the lowest board position), and is matched if
 * that one is sure; only then is the entry used up.
 */
function matched(board, own, sync, tol) {
  const sure = Math.floor((tol * SURE[0]) / SURE[1]);
  const times = { A: [], B: [] }; // [t_us, board position], ascending
  board.forEach((e, k) => times[e.label].push([e.t_us, k]));
  const byTimeThenPosition = (x, y) => x[0] - y[0] || x[1] - y[1];
  times.A.sort(byTimeThenPosition);
  times.B.sort(byTimeThenPosition);
  const used = new Array(board.length).fill(false);
  let last = -Infinity;
  return own.map((p) => {
    const t = times[p.label];
    const x = predictedUs(p, sync);
    let lo = 0;
    let hi = t.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (t[mid][0] < x - tol) lo = mid + 1;
      else hi = mid;
    }
    let best = null;
    for (let j = lo; j < t.length && t[j][0] <= x + tol; j++) {
      const [at, k] = t[j];
      if (at < last || used[k]) continue;
      const d = Math.abs(at - x);
      // The nearest; at equal distances (the same time, or either side of x), the lowest position.
      if (best === null || d < best.d || (d === best.d && k < best.k)) best = { d, k, at };
    }
    if (best === null || best.d > sure) return false;
    used[best.k] = true;
    last = best.at;
    return true;
  });
}

/**
 * The self-check on its own: own posts in send order (`posts`, sorted by sent_us, stably) and
 * whether each is matched (`ok`, as `matched`). ownSpans and deriveRound use it; so does a test
 * poster that must know whether a post it held back still passes for matched.
 */
export function matchedInSendOrder(board, own, sync, toleranceUs) {
  // Array.prototype.sort is stable, as Rust's sort_by_key: equal send times keep their order.
  const posts = [...own].sort((x, y) => x.sent_us - y.sent_us);
  return { posts, ok: matched(board, posts, sync, Math.max(0, toleranceUs)) };
}

/**
 * My spans for a round (step 1 of deriveRound), as `own_spans` in src/secret.rs: `[[from_us,
 * to_us], …]` ascending and disjoint, [] if every post matched, null if more than one in
 * UNMATCHED_SHARE did not. Posts in send order; each run of unmatched posts gets a span from
 * the first one's prediction − 2τ (SPAN_BEFORE; not before the previous matched post's − τ, or
 * t_start) to the next matched one's + τ (or t_end), kept inside the window; overlapping spans
 * merge. Why the late entry lies inside: the server reads each connection's frames in order
 * and stamps them as read, so my entries are in my send order on the board, a matched post's
 * entry is within τ of its prediction, and no entry comes 2τ early.
 */
export function ownSpans(board, tStartUs, tEndUs, own, sync, toleranceUs) {
  const tol = Math.max(0, toleranceUs);
  const { posts, ok } = matchedInSendOrder(board, own, sync, toleranceUs);
  const unmatched = ok.filter((m) => !m).length;
  if (unmatched === 0) return [];
  if (unmatched * UNMATCHED_SHARE > posts.length) return null;
  const spans = [];
  let k = 0;
  while (k < posts.length) {
    if (ok[k]) {
      k++;
      continue;
    }
    const first = k;
    while (k < posts.length && !ok[k]) k++;
    let from = spanFrom(predictedUs(posts[first], sync), first > 0 ? predictedUs(posts[first - 1], sync) : null, tol, tStartUs);
    let to = k < posts.length ? Math.min(predictedUs(posts[k], sync) + tol, tEndUs) : tEndUs;
    if (from > to) [from, to] = [to, from];
    const last = spans[spans.length - 1];
    if (last && from <= last[1]) last[1] = Math.max(last[1], to);
    else spans.push([from, to]);
  }
  return spans;
}

/**
 * The spans a poster's *skipped* posts cost (the late rule), as `skip_spans` in src/secret.rs:
 * `skippedUs` are their planned send times (local µs). Placed among the sent posts by time (a
 * sent post first at a tie), each run of skipped posts gets a span from the first skipped
 * post's would-be prediction − 2τ (not before the previous sent post's − τ, or t_start) to the
 * next sent one's + τ (or t_end), inside the window; overlapping spans merge.
 */
export function skipSpans(own, skippedUs, sync, toleranceUs, tStartUs, tEndUs) {
  const tol = Math.max(0, toleranceUs);
  const all = own.map((p) => [p.sent_us, 0, predictedUs(p, sync)]).concat(skippedUs.map((t) => [t, 1, predictedUs({ sent_us: t }, sync)]));
  all.sort((x, y) => x[0] - y[0] || x[1] - y[1] || x[2] - y[2]);
  const spans = [];
  let k = 0;
  while (k < all.length) {
    if (!all[k][1]) {
      k++;
      continue;
    }
    const first = k;
    while (k < all.length && all[k][1]) k++;
    const from = spanFrom(all[first][2], first > 0 ? all[first - 1][2] : null, tol, tStartUs);
    const to = k < all.length ? Math.min(all[k][2] + tol, tEndUs) : tEndUs;
    spans.push([Math.min(from, to), Math.max(from, to)]);
  }
  return mergeSpans(spans);
}

/** Spans sorted by start, overlapping ones merged. */
export function mergeSpans(spans) {
  const out = [];
  for (const [from, to] of [...spans].sort((x, y) => x[0] - y[0] || x[1] - y[1])) {
    const last = out[out.length - 1];
    if (last && from <= last[1]) last[1] = Math.max(last[1], to);
    else out.push([from, to]);
  }
  return out;
}

/**
 * deriveRound for a poster that skipped posts (`derive_with_skips` in src/secret.rs): their
 * skipSpans are left out with its own spans, and announced with them (`spans` of the view).
 */
export function deriveWithSkips(board, tStartUs, tEndUs, own, skippedUs, sync, me, toleranceUs, guardUs, peerSpans = []) {
  const skips = skipSpans(own, skippedUs, sync, toleranceUs, tStartUs, tEndUs);
  const view = deriveRound(board, tStartUs, tEndUs, own, sync, me, toleranceUs, guardUs, peerSpans.concat(skips));
  if (!view.desync && skips.length > 0) view.spans = mergeSpans(view.spans.concat(skips));
  return view;
}

/**
 * One poster's view of one closed round (§6.1–3, and the spans of docs/protocol.md §5.3), as
 * `derive_round` in src/secret.rs. `own` = [{sent_us, label}], `sync` = {offset_us, delay_us},
 * `me` = 'A' | 'B', `peerSpans` = the spans the other poster announced (`dropped`), [] if none.
 * Returns `{desync: false, spans, dropped: [i…], kept: [i…], mine: [bool…], bits: [0|1…], n, a}`
 * (per kept entry, in board order) or `{desync: true, unmatched, total}`:
 * - a post is matched if it is given a board entry *with its label* that is sure (within
 *   SURE of τ of its predicted arrival; see `matched`); more than one in UNMATCHED_SHARE
 *   unmatched (or doubtful) is a desync, fewer give my `spans` (ownSpans);
 * - kept = the sift less the entries inside my spans or peerSpans (both ends inclusive);
 *   `dropped` = the sifted entries left out, in board order;
 * - no prediction may be within τ of two kept entries (possible only exactly g apart);
 * - a kept entry is mine if some prediction is within τ of it; bit = 0 if the label names the
 *   true poster, else 1; a = kept entries whose true poster is alice.
 */
export function deriveRound(board, tStartUs, tEndUs, own, sync, me, toleranceUs, guardUs, peerSpans = []) {
  const tol = Math.max(0, toleranceUs);
  const spans = ownSpans(board, tStartUs, tEndUs, own, sync, toleranceUs);
  if (spans === null) {
    const unmatched = matchedInSendOrder(board, own, sync, toleranceUs).ok.filter((m) => !m).length;
    return { desync: true, unmatched, total: own.length };
  }
  const all = spans.concat(peerSpans);
  const inside = (t) => all.some((s) => s[0] <= t && t <= s[1]);
  const kept = [];
  const droppedPos = [];
  for (const k of sift(board, tStartUs, tEndUs, toleranceUs, guardUs)) {
    (inside(board[k].t_us) ? droppedPos : kept).push(k);
  }

  const predicted = own.map((p) => predictedUs(p, sync)).sort(byNumber);
  const keptTimes = kept.map((k) => board[k].t_us).sort(byNumber);
  let ambiguous = 0;
  for (const p of predicted) if (countWithin(keptTimes, p, tol) > 1) ambiguous++;
  if (ambiguous > 0) return { desync: true, unmatched: ambiguous, total: own.length };

  const other = me === 'A' ? 'B' : 'A';
  const view = { desync: false, spans, dropped: droppedPos.map((k) => board[k].i), kept: [], mine: [], bits: [], n: 0, a: 0 };
  for (const k of kept) {
    const e = board[k];
    const mine = anyWithin(predicted, e.t_us, tol);
    const poster = mine ? me : other;
    view.kept.push(e.i);
    view.mine.push(mine);
    view.bits.push(e.label === poster ? 0 : 1);
    if (poster === 'A') view.a++;
  }
  view.n = view.kept.length;
  return view;
}

/**
 * For each own post, `t − predicted` of the nearest board entry with the post's label, or
 * null if the board has none. The median corrects the clock sync's bias for the next round.
 */
export function arrivalErrors(board, own, sync) {
  const times = { A: [], B: [] };
  for (const e of board) times[e.label].push(e.t_us);
  times.A.sort(byNumber);
  times.B.sort(byNumber);
  return own.map((p) => {
    const t = times[p.label];
    const x = predictedUs(p, sync);
    const k = lowerBound(t, x);
    let best = null;
    for (const j of [k - 1, k]) {
      if (j < 0 || j >= t.length) continue;
      const d = t[j] - x;
      if (best === null || Math.abs(d) < Math.abs(best)) best = d;
    }
    return best;
  });
}

// ---------------------------------------------------------------------------------------
// Strength.

/** C(n, k) as a BigInt (0 when k > n). */
export function binomial(n, k) {
  if (k < 0 || k > n) return 0n;
  k = Math.min(k, n - k);
  let c = 1n;
  let num = 1;
  let den = 1;
  // Group small factors while they stay exact in a double; C(n−k+j, j) is whole at every j,
  // so the running quotient is exact however the factors are grouped.
  for (let i = 1; i <= k; i++) {
    const x = n - k + i;
    if (num * x > Number.MAX_SAFE_INTEGER || den * i > Number.MAX_SAFE_INTEGER) {
      c = (c * BigInt(num)) / BigInt(den);
      num = 1;
      den = 1;
    }
    num *= x;
    den *= i;
  }
  return (c * BigInt(num)) / BigInt(den);
}

/** floor(log2 x) for a BigInt x ≥ 1. */
export function log2Floor(x) {
  return x.toString(2).length - 1;
}

/**
 * floor(log2(∏ C(n_r, a_r))) over rounds `[[n, a], …]`, exactly; 0 for none. A round with
 * a > n (never produced by deriveRound) counts as 1.
 */
export function log2BinomialFloor(rounds) {
  let product = 1n;
  for (const [n, a] of rounds) {
    if (a <= n) product *= binomial(n, a);
  }
  return log2Floor(product);
}

/**
 * The strength ledger of docs/protocol.md §5.5 from a session's rounds `[[n, a], …]`:
 * `{n, a, log2_binom, tag_bits, margin_bits, strength}`, strength never below 0.
 */
export function ledger(rounds, tagBits) {
  const log2Binom = log2BinomialFloor(rounds);
  let n = 0;
  let a = 0;
  for (const [rn, ra] of rounds) {
    n += rn;
    a += ra;
  }
  return {
    n,
    a,
    log2_binom: log2Binom,
    tag_bits: tagBits,
    margin_bits: MARGIN_BITS,
    strength: Math.max(0, log2Binom - tagBits - MARGIN_BITS),
  };
}

// ---------------------------------------------------------------------------------------
// Key and tag.

/** Bits (0/1 or booleans) packed MSB-first, the last byte padded with zeros. */
export function packBits(bits) {
  const out = new Uint8Array(Math.ceil(bits.length / 8));
  bits.forEach((b, j) => {
    if (b) out[j >> 3] |= 0x80 >> (j & 7);
  });
  return out;
}

/** "0110…" */
export function bitsString(bits) {
  return bits.map((b) => (b ? '1' : '0')).join('');
}

/** The 16 bytes of a session nonce given as 32 hex digits (either case); throws otherwise. */
export function sessionBytes(sessionHex) {
  if (typeof sessionHex !== 'string' || !/^[0-9a-fA-F]{32}$/.test(sessionHex)) {
    throw new Error(`session must be 32 hex digits, got ${JSON.stringify(String(sessionHex).slice(0, 40))}`);
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(sessionHex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * K = SHA-256("sgp/1 key" ‖ room UTF-8 ‖ 16 session bytes ‖ n as u32 BE ‖ bits MSB-first),
 * n = bits.length. Returns 32 bytes.
 */
export function key(room, sessionHex, bits) {
  const session = sessionBytes(sessionHex);
  const n = bits.length;
  if (n > 0xffffffff) throw new Error(`${n} bits is too many`);
  const nBytes = new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
  return sha256('sgp/1 key', utf8(room), session, nBytes, packBits(bits));
}

/** The first `tagBits` (a multiple of 8, at most 256) of SHA-256("sgp/1 confirm" ‖ K), in hex. */
export function tag(keyBytes, tagBits) {
  const d = sha256('sgp/1 confirm', keyBytes);
  return hex(d.subarray(0, Math.min(32, Math.floor(tagBits / 8))));
}

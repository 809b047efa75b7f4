// poster.js — one poster's protocol logic as a state machine (docs/poster.md), the twin of src/poster.rs: when each post and `done` are due (the late rule), how a closed round is judged, the verdict, the peer's `dropped`, refusals, failures and giving up, its ask for the next round (adapt.js), under the `terminal` or the `browser` policy (their differences in POLICIES, nowhere else). No DOM, no socket, no timers, no clock, no randomness: time comes in as `now` (local µs), what to do goes out as actions, and the worker (client/js/worker.js) drives it.

import * as secret from './secret.js';
import { refineBias } from './timing.js';
import { Adapt } from './adapt.js';

/**
 * The late rule: a post may leave at most LATE_SHARE of the mean gap between this poster's
 * posts after its target. A poster held up longer (a stall on a busy machine) leaves a stretch
 * that only the other poster fills, and the eavesdropper's audit found those runs of one
 * poster (SECURITY.md). So a later post is skipped, and the stretch is left out: its run of
 * skipped posts gets a span (secret.skipSpans) as a run of unmatched posts does.
 */
export const LATE_SHARE = 0.5;
/**
 * A round with more than one planned post in SKIPPED_SHARE skipped is *spoiled*: once it
 * closes this poster drops it (`abort {desync}`), and it gives no bits.
 */
export const SKIPPED_SHARE = 4;
/**
 * `done` leaves DONE_MARGIN_US + 2τ after our estimate of the server's t_end, a time fixed by
 * t_end alone, and no post leaves less than DONE_QUIET_US before it (one that would is
 * skipped): so `done`, whose time the room sees as `closed`'s, never waits on a post
 * (docs/protocol.md §4), and a delay jitter of up to τ cannot bring it before t_end.
 */
export const DONE_MARGIN_US = 3_000;
export const DONE_QUIET_US = 500;
/**
 * `done` is said at most this many times in a round: after the server refuses it as
 * `too_early`, the k-th time (k = 2…DONE_TIMES) leaves 2·k ms after the refusal.
 */
export const DONE_TIMES = 5;
/** A round whose posts landed within τ of their predictions this often was in sync. */
export const ALIGNED_SHARE = 0.8;
/**
 * The browser gives up after more than RETRIES failed rounds or sessions in a row AND
 * GIVE_UP_US without a round that counted. A busy machine (measured: 2 shared cores at load
 * 4-6) delays a post by 5-20 ms in most rounds for tens of seconds whatever the tolerance, and
 * short rounds fail many times a second, so a count alone gave up on sessions that were still
 * getting somewhere (61 failures in a row after 260 rounds that had earned strength). A
 * tolerance that is simply too tight fails every round and gives up as surely.
 */
export const RETRIES = 20;
export const GIVE_UP_US = 30_000_000;
/** …and in all, per Start: only a bound against a loop. */
export const TOTAL_RETRIES = 3000;

/** The late rule's limit (µs) for a poster posting at `rateHz`: round(LATE_SHARE × mean gap). */
export function lateLimitUs(rateHz) {
  const gap = 1e6 / rateHz;
  return Number.isFinite(gap) && gap > 0 ? Math.round(LATE_SHARE * gap) : Number.MAX_SAFE_INTEGER;
}

/**
 * Where the two drivers differ (docs/poster.md, "the policy"). `sgp pair` re-syncs after every
 * failure and keeps what it learnt of the bias; a browser's fresh sync is often worse than the
 * bias just learnt from a round's posts, so it re-syncs only when a round showed the sync off
 * (and then starts the bias over), and it counts failures in a row against time, as a busy
 * machine fails many short rounds a second.
 */
export const POLICIES = Object.freeze({
  terminal: Object.freeze({
    name: 'terminal',
    resync: () => true,
    keepBias: true,
    /** After more than `retries` failures in all: the message, else null. */
    giveUp: (p, why) => (p.failures > p.retries ? { message: `gave up after ${p.failures} failed rounds or sessions (last: ${why})`, abort: false } : null),
    /** A round that counted for both posters does not reset the count. */
    progress: false,
    peerLeftFails: true,
    /** A room's `aborted {reason}` that ends the session for good (others: a failure, tried again). */
    stopsOn: new Set(['peer_left', 'idle']),
    resetStops: false,
  }),
  browser: Object.freeze({
    name: 'browser',
    resync: (p) => p.needSync,
    keepBias: false,
    giveUp: (p, why, now) => {
      const stuckUs = now - p.progressAt;
      const inARow = p.failures > RETRIES && stuckUs > GIVE_UP_US;
      if (!inARow && p.totalFailures <= TOTAL_RETRIES) return null;
      const n = inARow ? `${p.failures} failed rounds or sessions in a row, over ${Math.round(stuckUs / 1e6)} s` : `${p.totalFailures} failed rounds or sessions`;
      return {
        message: `gave up after ${n} (last: ${why})`, abort: true,
        extra: { failures: p.failures, total_failures: p.totalFailures, in_a_row: inARow, stuck_s: Math.round(stuckUs / 1e6), last: why },
      };
    },
    progress: true,
    peerLeftFails: false,
    stopsOn: new Set(['peer_left', 'idle', 'gave_up', 'user']),
    resetStops: true,
  }),
});

/** Spans as the server relays them (it checked them): `[[from_us, to_us], …]`, kept only if whole. */
export function cleanSpans(spans) {
  if (!Array.isArray(spans)) return [];
  return spans
    .filter((x) => Array.isArray(x) && x.length === 2 && Number.isSafeInteger(x[0]) && Number.isSafeInteger(x[1]) && x[0] <= x[1])
    .slice(0, 64)
    .map((x) => [x[0], x[1]]);
}

const FAIL_MESSAGES = {
  peer_left: 'peer left the room',
  idle: 'the room was closed for inactivity',
  gave_up: 'the peer gave up',
  user: 'the peer stopped the session',
};

export class Poster {
  /**
   * `policy`: 'terminal' | 'browser'; `retries`: failures allowed (terminal); `room`: its code;
   * `role`: 'alice' | 'bob'; `params`: the room's, as `joined` carries them.
   */
  constructor({ policy, retries = 3, room, role, params }) {
    this.policy = POLICIES[policy];
    if (!this.policy) throw new Error(`unknown policy ${policy}`);
    if (role !== 'alice' && role !== 'bob') throw new Error(`a poster is alice or bob, not ${role}`);
    this.retries = retries;
    this.room = room;
    this.role = role;
    this.me = role === 'alice' ? 'A' : 'B';
    this.params = params;
    this.sync = null; // {offset_us, delay_us}: the last clock sync
    this.bias = 0; // learnt from our own posts' arrival errors
    this.needSync = true; // the last round showed the sync off (browser)
    this.running = false;
    this.finished = false; // a key confirmed by both
    this.failures = 0; // terminal: in all; browser: in a row
    this.totalFailures = 0;
    this.progressAt = 0;
    this.lastOk = false; // the last closed round counted for us (the next `start` shows it did for both)
    this.session = null;
    this.kept = []; // [{round, n, a, bits}] of this session, the rounds that count
    this.lastClosed = null; // round (and session) of the last closed round we derived
    this.lastClosedSession = null;
    this.roundsUsed = 0;
    this.current = null; // the round being posted (see onStart)
    this.open = null; // the last closed round that counts for us, until the next `start`
    this.myTag = null;
    this.peerTag = null;
    /** Why the last `ready` was said: {why} after a sync or a failure, {next, session, round, strength} after a verdict. */
    this.readyFor = null;
    /** Our ask for the next round (`adapt`); null: the room's parameters, and every failure counts. */
    this.asking = null;
    /** The least lead (ms) we ask for with each ask (askLead); null: the room's default. */
    this.leadMs = null;
    /** Our own verdict on the last round's failure, if we made one: whether it came at the widest ask. */
    this.failedWidest = null;
  }

  /**
   * Ask for τ and the rate each round from our own outcomes (docs/poster.md, "Adapting"),
   * between `floorUs` (the tolerance rule's pick for our path) and `ceilUs` (widestUs of our
   * round trips). Failures then count only at the widest ask.
   */
  adapt(floorUs, ceilUs) {
    this.asking = new Adapt(floorUs, ceilUs);
  }

  /** Asks for a lead of `ms` (docs/protocol.md §3) with each ask (so only if we adapt). */
  askLead(ms) {
    this.leadMs = ms;
  }

  /** `ready`, with our ask if we adapt. */
  ready() {
    if (!this.asking) return { send: { type: 'ready' } };
    const ask = this.leadMs === null ? this.asking.ask() : { ...this.asking.ask(), lead_ms: this.leadMs };
    return { send: { type: 'ready', ask } };
  }

  /** Joined as a poster, to make a key: sync first. */
  start(now) {
    this.stop();
    Object.assign(this, { running: true, finished: false, failures: 0, totalFailures: 0, progressAt: now, lastOk: false, session: null, kept: [] });
    this.readyFor = { why: 'start' };
    return [{ sync: { why: 'start' } }];
  }

  /** Ends this poster's session locally (the driver's socket closed, or the page left). */
  stop() {
    this.running = false;
    this.current = null;
    this.open = null;
    this.myTag = null;
    this.peerTag = null;
  }

  /** A clock sync asked for (`sync`) is done: `ready`. */
  synced(sample, now) {
    this.sync = { offset_us: sample.offset_us, delay_us: sample.delay_us };
    if (!this.policy.keepBias) this.bias = 0;
    this.needSync = false;
    if (!this.running) return [];
    return [this.ready()];
  }

  /** The kept rounds' ledger (§6.4). */
  ledger() {
    return secret.ledger(this.kept.map((r) => [r.n, r.a]), this.params.tag_bits);
  }

  /** A message from the server, received at `now`. */
  handle(m, now) {
    switch (m && m.type) {
      case 'start':
        return this.onStart(m, now);
      case 'closed':
        return this.onClosed(m, now);
      case 'dropped':
        return this.onDropped(m, now);
      case 'confirm':
        if (m.role !== this.role) this.peerTag = m.tag;
        return [];
      case 'confirmed':
        return this.onConfirmed(m, now);
      case 'aborted':
        return this.onAborted(m, now);
      case 'reset':
        return this.onReset(now);
      case 'peer':
        return this.onPeer(m);
      case 'coalesced':
        return this.onCoalesced(m);
      case 'error':
        return this.onError(m, now);
      default: // joined, pong, board: nothing for the engine
        return [];
    }
  }

  onStart(m, now) {
    if (!this.sync) return []; // cannot happen (ready follows a sync): post nothing rather than blind
    this.running = true; // only our own `ready` can start a round
    if (this.session !== m.session) {
      this.session = m.session;
      this.kept = [];
    }
    if (this.lastOk && this.policy.progress) {
      this.failures = 0; // both posters counted the last round: progress
      this.progressAt = now;
    }
    this.lastOk = false;
    this.myTag = null;
    this.peerTag = null;
    this.open = null; // the last round's verdicts are in: no `dropped` can come for it now
    this.roundsUsed = m.round;
    // The round's own τ, guard and rate (they follow the posters' asks): its judgments use them.
    const params = m.params || this.params;
    const sync = { offset_us: this.sync.offset_us + this.bias, delay_us: this.sync.delay_us };
    const shift = sync.offset_us + Math.floor(sync.delay_us / 2);
    this.current = {
      session: m.session,
      round: m.round,
      t_start: m.t_start_us,
      t_end: m.t_end_us,
      sync, // the sync the round is posted with, bias included
      shift, // a post sent at local s is predicted at server time s + shift
      tol: secret.msToUs(params.tolerance_ms),
      guard: secret.msToUs(params.guard_ms),
      rateHz: params.rate_hz,
      doneAt: m.t_end_us - shift + DONE_MARGIN_US + 2 * secret.msToUs(params.tolerance_ms),
      lateLimit: lateLimitUs(params.rate_hz),
      times: null, // planned server times, once scheduled
      labels: null,
      next: 0, // the next planned post
      target: null, // the local target of the post last asked for
      posts: [], // [{sent_us, label}]
      late: [], // sent_us − target per post
      callUs: [], // how long each send call took (the driver's, for the record)
      held: [], // sent_us of the posts held back (testing)
      coalesced: [], // post numbers (from 1) the server said came in one piece with a later message
      skipped: 0,
      skippedUs: [], // planned send times (local µs) of the skipped posts
      skipLate: 0, // how long after its target the latest skipped post was due to leave
      doneTimes: 0, // `done` actions given
      redoAt: null, // when to say `done` again after `too_early`
      doneUs: null, // when `done` first left
    };
    return [{ schedule: { t_start_us: m.t_start_us, t_end_us: m.t_end_us, rate_hz: params.rate_hz, shift_us: shift } }];
  }

  /** The round's schedule: planned server times and labels ('AB…' or ['A', 'B', …]). */
  scheduled(timesUs, labels, now) {
    const c = this.current;
    if (!c || c.times !== null) return [];
    c.times = timesUs.map(Number);
    c.labels = [...labels];
    return [];
  }

  /** The local time at which the engine next wants `onTimeout`, or null. */
  nextDeadline() {
    const c = this.current;
    if (!c || c.times === null) return null;
    if (c.next < c.times.length) return c.times[c.next] - c.shift;
    if (c.doneTimes === 0) return c.doneAt;
    return c.redoAt;
  }

  /**
   * The late rule: every post with `now > min(target + lateLimit, doneAt − DONE_QUIET_US)` is
   * skipped; the next due one is `post`; once every post is past, `done` at doneAt.
   */
  onTimeout(now) {
    const c = this.current;
    if (!c || c.times === null) return [];
    while (c.next < c.times.length) {
      const target = c.times[c.next] - c.shift;
      if (now > Math.min(target + c.lateLimit, c.doneAt - DONE_QUIET_US)) {
        c.skipped++;
        c.skippedUs.push(target);
        c.skipLate = Math.max(c.skipLate, now - target);
        c.next++;
        continue;
      }
      if (now < target) return [];
      const label = c.labels[c.next];
      c.next++;
      c.target = target;
      return [{ post: { label, target_us: target } }];
    }
    if (c.doneTimes === 0 ? now >= c.doneAt : c.redoAt !== null && now >= c.redoAt) {
      c.doneTimes = Math.max(1, c.doneTimes);
      c.redoAt = null;
      return [{ done: {} }];
    }
    return [];
  }

  /**
   * The driver is about to send the post onTimeout handed out, and `now` is the clock read just
   * before the send (what it gives `sent` as `sent_us`), as `leave` in src/poster/mod.rs: [] if
   * the post may still leave; if it is now later than the late rule allows (a pause since
   * onTimeout let it go), it is skipped as onTimeout would have skipped it (its stretch a span),
   * and `skip` tells the driver to send nothing.
   */
  leave(now) {
    const c = this.current;
    if (!c || c.target === null) return [];
    if (now <= Math.min(c.target + c.lateLimit, c.doneAt - DONE_QUIET_US)) return [];
    const target = c.target;
    c.target = null;
    c.skipped++;
    c.skippedUs.push(target);
    c.skipLate = Math.max(c.skipLate, now - target);
    return [{ skip: { target_us: target } }];
  }

  /** A post left at `sent_us` (`held`: a testing hold; `call_us`: the send call's duration). */
  sent(post, held, now) {
    const c = this.current;
    if (!c) return [];
    c.posts.push({ sent_us: post.sent_us, label: post.label });
    c.late.push(c.target === null ? 0 : post.sent_us - c.target);
    c.callUs.push(post.call_us ?? 0);
    if (held) c.held.push(post.sent_us);
    c.target = null;
    return [];
  }

  /** `done` left. */
  doneSent(now) {
    const c = this.current;
    if (c && c.doneUs === null) c.doneUs = now;
    return [];
  }

  onCoalesced(m) {
    const c = this.current;
    if (!c) return [];
    const post = Number(m.post) || 0;
    const end = Math.min(post + (Number(m.count) || 0), c.posts.length + 1);
    for (let k = post; k < end; k++) c.coalesced.push(k);
    return [];
  }

  onError(m, now) {
    // `done` before t_end by the server's clock: say it again shortly (its timing depends on
    // the clock sync only, never on our posts). Other refusals need nothing from the engine.
    const c = this.current;
    if (m.code === 'too_early' && c && c.doneTimes > 0 && c.redoAt === null && c.doneTimes < DONE_TIMES) {
      c.doneTimes++;
      c.redoAt = now + 2_000 * c.doneTimes;
    }
    return [];
  }

  /** Judges a closed round we posted in (see `judge`); other rounds are not ours. */
  onClosed(m, now) {
    const c = this.current;
    if (!c || c.session !== m.session || c.round !== m.round) return [];
    this.current = null;
    this.open = null;
    this.lastClosed = m.round;
    this.lastClosedSession = m.session;
    return this.judge(c, m.board);
  }

  /**
   * A closed round: out of sync (`desync`), a held post passing for matched (`held`), the late
   * rule broken (`late`): `abort {desync}`; else `kept`: `drop {spans}` if some of our posts
   * missed, then the verdict. The bias learns from the round whatever its outcome.
   */
  judge(c, board) {
    const lateUs = c.late.length ? Math.max(...c.late) : 0;
    const spoiled = c.skipped * SKIPPED_SHARE > c.times.length || lateUs > c.lateLimit || c.doneUs === null;
    const timed = c.posts.filter((_, k) => !c.coalesced.includes(k + 1));
    const view = secret.deriveWithSkips(board, c.t_start, c.t_end, timed, c.skippedUs, c.sync, this.me, c.tol, c.guard, []);
    const errors = secret.arrivalErrors(board, timed, c.sync);
    const biasStep = refineBias(errors, c.tol);
    this.bias += biasStep;
    const within = errors.filter((e) => e !== null && Math.abs(e) <= c.tol).length;
    this.needSync = (timed.length > 0 && within < ALIGNED_SHARE * timed.length) || c.skipped * SKIPPED_SHARE > c.times.length;
    // What the driver shows and records (not compared by vectors).
    const facts = { posted: c, board, timed, view, errors, bias_step_us: biasStep, within, spoiled, late_us: lateUs, resync_next: this.needSync };
    const head = { session: c.session, round: c.round, tolerance_us: c.tol, rate_hz: c.rateHz };
    if (view.desync) {
      return this.roundFailed({ ...head, outcome: 'desync', unmatched: view.unmatched, total: view.total, facts }, 'desync');
    }
    if (c.held.length > 0) {
      const { posts, ok } = secret.matchedInSendOrder(board, timed, c.sync, c.tol);
      if (posts.some((q, k) => ok[k] && c.held.includes(q.sent_us))) return this.roundFailed({ ...head, outcome: 'held', facts }, null);
    }
    if (spoiled) {
      const late = { late: { late_us: Math.max(lateUs, c.skipLate), limit_us: c.lateLimit } };
      return this.roundFailed({ ...head, outcome: 'late', posts: c.posts.length, late_us: lateUs, skipped: c.skipped, facts }, late);
    }
    if (this.asking) this.asking.after({ kept: { n: view.n, left_out: view.dropped.length, spans: view.spans.length } });
    const out = [];
    const drops = view.spans.length > 0 ? 1 : 0;
    if (drops) out.push({ send: { type: 'drop', spans: view.spans.map((x) => [x[0], x[1]]) } });
    this.kept.push({ round: c.round, n: view.n, a: view.a, bits: view.bits });
    this.lastOk = true;
    out.push({
      round: {
        ...head, outcome: 'kept', board_n: board.length, n: view.n, a: view.a, left_out: view.dropped.length,
        spans: view.spans.map((x) => [x[0], x[1]]), posts: c.posts.length, strength: this.ledger().strength, facts,
        ...(c.skipped > 0 ? { skipped: c.skipped } : {}),
      },
    });
    this.open = { session: c.session, round: c.round, board, t_start: c.t_start, t_end: c.t_end, tol: c.tol, guard: c.guard, timed, skippedUs: c.skippedUs, sync: c.sync, peerSpans: [], drops };
    return out.concat(this.verdict(this.open));
  }

  /**
   * A round of ours we cannot use: our ask widens (the `desync` we send comes back as the
   * room's `aborted`, and that is the failure, counted if we asked the widest already; a held
   * post's, testing only, always is).
   */
  roundFailed(report, verdict) {
    if (this.asking) {
      this.failedWidest = verdict === null || this.asking.widest(verdict);
      if (verdict !== null) this.asking.after(verdict);
    }
    return [{ round: report }, { send: { type: 'abort', reason: 'desync' } }];
  }

  /**
   * The verdict on the session as it now stands: `confirm {tag, drops}` once the strength
   * reaches the target (with `key` before it), else `ready` (with `key_void` if a key said
   * before is void now).
   */
  verdict(o) {
    const l = this.ledger();
    if (l.strength >= this.params.target_bits) {
      const bits = this.kept.flatMap((r) => r.bits);
      const k = secret.key(this.room, o.session, bits);
      const t = secret.tag(k, this.params.tag_bits);
      this.myTag = t;
      const perRound = this.kept.map((r) => ({ round: r.round, n: r.n, a: r.a }));
      return [
        {
          key: {
            key: secret.hex(k), tag: t, strength: l.strength, n: l.n, a: l.a, bits: secret.bitsString(bits), rounds: this.kept.length,
            session: o.session, round: o.round, drops: o.drops, ledger: l, per_round: perRound,
          },
        },
        { send: { type: 'confirm', tag: t, drops: o.drops } },
      ];
    }
    const out = [];
    if (this.myTag !== null) {
      this.myTag = null;
      out.push({ key_void: { session: o.session, round: o.round, strength: l.strength } });
    }
    this.readyFor = { next: true, session: o.session, round: o.round, strength: l.strength };
    out.push(this.ready());
    return out;
  }

  /**
   * The peer left out spans of our open round: derive it again with them, replace its counts,
   * and say the verdict again if it was a confirm (a ready stands: fewer entries never make a
   * key where there was none). A round that is not open (we dropped it) ignores it.
   */
  onDropped(m, now) {
    const spans = cleanSpans(m.spans);
    const o = this.open;
    if (!o || o.session !== m.session || o.round !== m.round || spans.length === 0) return [];
    o.peerSpans.push(...spans);
    o.drops += 1;
    const view = secret.deriveWithSkips(o.board, o.t_start, o.t_end, o.timed, o.skippedUs, o.sync, this.me, o.tol, o.guard, o.peerSpans);
    if (view.desync) {
      // Cannot happen (spans only leave entries out), but never confirm on it.
      this.open = null;
      this.kept = this.kept.filter((r) => r.round !== o.round);
      this.lastOk = false;
      const out = [];
      if (this.myTag !== null) {
        this.myTag = null;
        out.push({ key_void: { session: o.session, round: o.round, strength: 0 } });
      }
      return out.concat({ send: { type: 'abort', reason: 'desync' } });
    }
    const k = this.kept.findIndex((r) => r.round === o.round);
    if (k >= 0) this.kept[k] = { round: o.round, n: view.n, a: view.a, bits: view.bits };
    const out = [{ dropped: { session: o.session, round: o.round, spans, n: view.n, a: view.a, left_out: view.dropped.length, view, peer_spans: o.peerSpans.map((x) => [x[0], x[1]]) } }];
    return this.myTag !== null ? out.concat(this.verdict(o)) : out;
  }

  /** The server's verdict on the tags: with ours matching, the key is made; else a new session. */
  onConfirmed(m, now) {
    if (this.myTag === null) return []; // not a confirm of ours (voided, or none)
    const matched = !!m.match && this.myTag === this.peerTag;
    this.session = null;
    this.kept = [];
    if (matched) {
      this.stop();
      this.finished = true;
      return [{ confirmed: { matched: true } }];
    }
    this.myTag = null;
    return [{ confirmed: { matched: false } }, ...this.failed('confirmation mismatch', true, now)];
  }

  onAborted(m, now) {
    const reason = String(m.reason);
    if (reason === 'desync' && this.session !== null) {
      // One of us found the last round out of sync: it is dropped, the session goes on.
      this.current = null;
      this.open = null;
      this.myTag = null;
      const dropped = this.lastClosed;
      this.lastClosed = null;
      if (dropped !== null) this.kept = this.kept.filter((r) => r.round !== dropped);
      const l = this.ledger();
      const out = [{ aborted: { reason, round: dropped, session: this.lastClosedSession, strength: l.strength, kept_total: l.n } }];
      const counts = this.desyncCounts();
      return this.running ? out.concat(this.failed('desync', counts, now)) : out;
    }
    const wasRunning = this.running;
    this.endSession();
    const out = [{ aborted: { reason, round: null } }];
    if (this.policy.stopsOn.has(reason) || !wasRunning) {
      this.stop();
      return out.concat({ fail: { reason, message: FAIL_MESSAGES[reason] ?? `the session was aborted (${reason})` } });
    }
    // disagree and anything else: a new session.
    return out.concat(this.failed(reason, true, now));
  }

  onReset(now) {
    const wasRunning = this.running;
    this.endSession();
    if (this.policy.resetStops || !wasRunning) {
      this.stop();
      return [];
    }
    return this.failed('reset', true, now);
  }

  /** The session is over (aborted or reset): nothing of it is kept. */
  endSession() {
    this.session = null;
    this.kept = [];
    this.current = null;
    this.open = null;
    this.myTag = null;
    this.failedWidest = null;
  }

  /** The other poster left: the terminal stops once rounds were made; the browser waits for the room's `aborted`. */
  onPeer(m) {
    const other = m.role !== this.role && m.role !== 'observer';
    if (m.event === 'left' && other && this.policy.peerLeftFails && this.running && (this.session !== null || this.roundsUsed > 0)) {
      this.stop();
      return [{ fail: { reason: 'peer_left', message: FAIL_MESSAGES.peer_left } }];
    }
    return [];
  }

  /**
   * Whether a dropped round counts toward giving up. Adapting, only if it failed at the widest
   * ask. The peer may have found it out of sync before we judged it (or without our finding
   * so): that is a desync for us too, and widens our ask as one of our own would. Not
   * adapting, every dropped round counts.
   */
  desyncCounts() {
    if (!this.asking) return true;
    const ours = this.failedWidest;
    this.failedWidest = null;
    if (ours !== null) return ours;
    const widest = this.asking.widest('desync');
    this.asking.after('desync');
    return widest;
  }

  /** A round or session failed: count it (if it `counts`), then sync again (per the policy) and say ready, or give up. */
  failed(why, counts, now) {
    if (counts) {
      this.failures++;
      this.totalFailures++;
    }
    this.lastOk = false;
    const stop = this.policy.giveUp(this, why, now);
    if (stop) {
      this.stop();
      const out = stop.abort ? [{ send: { type: 'abort', reason: 'gave_up' } }] : [];
      return out.concat({ fail: { reason: 'retries', message: stop.message, ...(stop.extra || {}) } });
    }
    this.readyFor = { why };
    if (this.policy.resync(this) || !this.sync) return [{ sync: { why } }];
    return [this.ready()];
  }
}

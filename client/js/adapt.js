// adapt.js — how wide the next round should be: one poster's ask for τ and the posting rate, from its own path and its own rounds' outcomes (docs/poster.md, "Adapting"); the twin of src/poster/adapt.rs, held with it to tests/vectors/adapt/rule.json. Pure integer arithmetic (µs); no DOM, no clock.

/** The narrowest ceiling for τ, µs: today's widest default. */
export const MIN_CEIL_US = 5_000;
/** τ is never asked wider than this, µs, however the round trips scatter. */
export const MAX_CEIL_US = 50_000;
/** The lowest rate asked: the room's rate for τ divided by this. */
export const MAX_RATE_DIV = 64;
/** Clean rounds in a row before the ask narrows one step. */
export const CALM_ROUNDS = 2;
/** A kept round that left out more than one kept entry in this many (our spans) widens τ. */
export const COSTLY_SHARE = 5;
/** Late rounds in a row before the rate comes down: one alone is a hiccup, two a busy machine. */
export const LATE_ROUNDS = 2;
/** The rate comes down by at most this factor at a time (one long stall would ask for rounds of minutes). */
export const MAX_SLOW_STEP = 4;

/** τ in 10 µs steps, rounding up. */
const up10 = (us) => Math.floor((us + 9) / 10) * 10;

/**
 * The widest τ a path needs, from its clock-sync round trips (µs): twice how far the median
 * lies above the quickest, in 10 µs steps, within [MIN_CEIL_US, MAX_CEIL_US].
 */
export function widestUs(delaysUs) {
  const d = [...(delaysUs || [])].sort((a, b) => a - b);
  const spread = d.length ? d[d.length >> 1] - d[0] : 0;
  return Math.min(Math.max(up10(2 * spread), MIN_CEIL_US), MAX_CEIL_US);
}

/**
 * One poster's ask and the state behind it. A verdict on a closed round of ours is, as the rule
 * vectors write it: `'desync'` (more than a quarter of our posts missed τ), `{late: {late_us,
 * limit_us}}` (the late rule: a post of ours left or was skipped that late, where limit_us was
 * allowed), or `{kept: {n, left_out, spans}}` (kept; our spans left out left_out of n + left_out).
 */
export class Adapt {
  /** Starting at `floorUs`, never wider than `ceilUs` (at least the floor). */
  constructor(floorUs, ceilUs) {
    this.floor_us = up10(Math.max(floorUs, 10));
    this.ceil_us = Math.max(ceilUs, this.floor_us);
    this.tau_us = this.floor_us;
    this.rate_div = 1;
    this.calm = 0; // clean rounds in a row
    this.lates = 0; // late rounds in a row
  }

  /** The ask, as `ready` carries it. */
  ask() {
    return { tolerance_ms: this.tau_us / 1000, rate_div: this.rate_div };
  }

  /** At the widest setting for what went wrong: a failure then counts toward giving up. */
  widest(v) {
    if (v === 'desync') return this.tau_us >= this.ceil_us;
    if (v.late) return this.rate_div >= MAX_RATE_DIV;
    return false;
  }

  /**
   * The next ask after a round of ours closed: a desync or a costly round doubles τ up to the
   * ceiling; the second late round in a row (and each after it) divides the rate so that the
   * late rule allows twice the lateness seen (at most MAX_SLOW_STEP at a time); CALM_ROUNDS clean rounds in a row narrow one step (τ by a fifth towards the floor,
   * else the rate back up by two).
   */
  after(v) {
    this.lates = v !== 'desync' && v.late ? this.lates + 1 : 0;
    if (v === 'desync') this.widenTau();
    else if (v.late && this.lates < LATE_ROUNDS) this.calm = 0;
    else if (v.late) this.slowDown(v.late.late_us, v.late.limit_us);
    else if (v.kept.left_out * COSTLY_SHARE > v.kept.n + v.kept.left_out) this.widenTau();
    else if (v.kept.spans > 0) this.calm = 0;
    else if (++this.calm >= CALM_ROUNDS) {
      this.calm = 0;
      this.narrow();
    }
  }

  widenTau() {
    this.calm = 0;
    this.tau_us = Math.min(2 * this.tau_us, this.ceil_us);
  }

  slowDown(lateUs, limitUs) {
    this.calm = 0;
    const most = Math.max(Math.min(MAX_SLOW_STEP, Math.floor(MAX_RATE_DIV / this.rate_div)), 1);
    let step = 2;
    while (step < most && step * Math.max(limitUs, 1) < 2 * lateUs) step *= 2;
    this.rate_div = Math.min(this.rate_div * step, MAX_RATE_DIV);
  }

  narrow() {
    if (this.tau_us > this.floor_us) this.tau_us = Math.max(up10(Math.floor((this.tau_us * 4) / 5)), this.floor_us);
    else if (this.rate_div > 1) this.rate_div /= 2;
  }
}

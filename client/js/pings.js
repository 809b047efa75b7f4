// pings.js — the clock-sync pings waiting for their pongs (docs/protocol.md §2). A pong names
// its ping by `t0_us` alone, and two pings can carry the same one: a tab's first sync (at
// `joined`) still running when Start begins the round's sync, both read the clock within one
// tick of its coarsened resolution. So each t0 keeps its pings in send order and a pong
// answers the oldest; a pong never answers two pings, and no ping loses its pong to another.
// No clock, no socket: the worker adds and answers.

export class Pings {
  constructor() {
    this.byT0 = new Map(); // t0 → waiters, oldest first
  }

  /** A ping sent at `t0` waits for its pong: `answer(t0)` hands back `waiter`. */
  add(t0, waiter) {
    const q = this.byT0.get(t0);
    if (q) q.push(waiter);
    else this.byT0.set(t0, [waiter]);
  }

  /** The oldest ping sent at `t0` that no pong has answered yet (now answered), or null. */
  answer(t0) {
    const q = this.byT0.get(t0);
    if (!q) return null;
    const waiter = q.shift();
    if (q.length === 0) this.byT0.delete(t0);
    return waiter;
  }

  /** A ping given up (no pong in time, or never sent): a later pong with its t0 answers the
   *  next one sent at that t0, if any (a sample of the same send time). */
  remove(t0, waiter) {
    const q = this.byT0.get(t0);
    const i = q ? q.indexOf(waiter) : -1;
    if (i < 0) return;
    q.splice(i, 1);
    if (q.length === 0) this.byT0.delete(t0);
  }

  /** Every ping still waiting, oldest first per t0, and none left (the socket closed). */
  takeAll() {
    const all = [...this.byT0.values()].flat();
    this.byT0.clear();
    return all;
  }

  get size() {
    let n = 0;
    for (const q of this.byT0.values()) n += q.length;
    return n;
  }
}

//! How wide the next round should be: one poster's ask for τ and the posting rate, from its own
//! path and its own rounds' outcomes (docs/poster.md, "Adapting"). Pure integer arithmetic, held
//! with `client/js/poster.js` (`Adapt`) to `tests/vectors/adapt/rule.json`.
//!
//! Each poster asks for what its side needs with its `ready` (`ask {tolerance_ms, rate_div}`);
//! the room runs the next round at the widest τ and the lowest rate asked (docs/protocol.md §6),
//! so a far or busy joiner counts as much as the creator. A poster adapts to what it judged of
//! its own posts (the self-check, the late rule, the spans), and to a desync the peer found
//! before it judged the round (that round failed for both).

/// The narrowest ceiling for τ, µs: today's widest default.
pub const MIN_CEIL_US: i64 = 5_000;
/// τ is never asked wider than this, µs, however the round trips scatter.
pub const MAX_CEIL_US: i64 = 50_000;
/// The lowest rate asked: the room's rate for τ divided by this.
pub const MAX_RATE_DIV: u32 = 64;
/// Clean rounds in a row before the ask narrows one step.
pub const CALM_ROUNDS: u32 = 2;
/// A kept round that left out more than one kept entry in this many (our spans) widens τ.
pub const COSTLY_SHARE: u32 = 5;
/// Late rounds in a row before the rate comes down: one alone is a hiccup (a round lost at
/// full rate costs less than the rest of a key at a lower one), two are a busy machine.
pub const LATE_ROUNDS: u32 = 2;
/// The rate comes down by at most this factor at a time: one long stall (a build starting,
/// a lost segment held a retransmission timeout) would otherwise ask for rounds of minutes,
/// which meet more stalls; a busy machine takes three steps to the lowest rate.
pub const MAX_SLOW_STEP: u32 = 4;

/// What a closed round of ours came to, as far as the ask is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Out of sync: more than a quarter of our posts missed τ (arrival errors too wide).
    Desync,
    /// The late rule: a post of ours left `late_us` after its target, or was skipped that
    /// late, where `limit_us` was allowed (the machine held us up).
    Late { late_us: i64, limit_us: i64 },
    /// Kept, but our spans left out `left_out` of the `n + left_out` kept entries.
    Kept { n: u32, left_out: u32, spans: u32 },
}

/// One poster's ask and the state behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adapt {
    /// The narrowest τ asked: the tolerance rule's pick for this poster's path, µs.
    pub floor_us: i64,
    /// The widest τ asked: what this path's round trips need (`widest_us`), µs.
    pub ceil_us: i64,
    pub tau_us: i64,
    pub rate_div: u32,
    /// Clean rounds in a row.
    pub calm: u32,
    /// Late rounds in a row.
    pub lates: u32,
}

/// τ in 10 µs steps, rounding up.
fn up10(us: i64) -> i64 {
    (us + 9).div_euclid(10) * 10
}

/// The widest τ a path needs, from its clock-sync round trips (µs): twice how far the median
/// lies above the quickest (a one-way delay that scatters by ±J puts the median round trip about
/// 1.4·J above the quickest of 16, and the self-check wants 3τ/5 to cover J), in 10 µs steps,
/// within [`MIN_CEIL_US`, `MAX_CEIL_US`].
pub fn widest_us(delays_us: &[i64]) -> i64 {
    let mut d = delays_us.to_vec();
    d.sort_unstable();
    let spread = match (d.first(), d.get(d.len() / 2)) {
        (Some(lo), Some(mid)) => mid - lo,
        _ => 0,
    };
    up10(2 * spread).clamp(MIN_CEIL_US, MAX_CEIL_US)
}

impl Adapt {
    /// Starting at `floor_us`, never wider than `ceil_us` (at least the floor).
    pub fn new(floor_us: i64, ceil_us: i64) -> Adapt {
        let floor_us = up10(floor_us.max(10));
        Adapt { floor_us, ceil_us: ceil_us.max(floor_us), tau_us: floor_us, rate_div: 1, calm: 0, lates: 0 }
    }

    /// The ask: τ in ms and the rate divisor.
    pub fn ask(&self) -> (f64, u32) {
        (self.tau_us as f64 / 1000.0, self.rate_div)
    }

    /// At the widest setting for what went wrong: a failure then is one this path or machine
    /// cannot be adapted to, and it counts toward giving up.
    pub fn widest(&self, v: Verdict) -> bool {
        match v {
            Verdict::Desync => self.tau_us >= self.ceil_us,
            Verdict::Late { .. } => self.rate_div >= MAX_RATE_DIV,
            Verdict::Kept { .. } => false,
        }
    }

    /// The next ask after a round of ours closed. A desync (or a costly round: more than one
    /// kept entry in `COSTLY_SHARE` left out by our spans) doubles τ, up to the ceiling: our
    /// arrival errors are wider than the self-check allows. The second late round in a row
    /// (and each after it) divides the rate so that the late rule (half a mean gap) allows
    /// twice the lateness seen, in powers of two, at most `MAX_SLOW_STEP` at a time, up to
    /// `MAX_RATE_DIV`: the machine holds us up longer than the gaps. `CALM_ROUNDS` clean
    /// rounds in a row (kept, no span) narrow one step: τ by a fifth towards the floor, else
    /// the rate back up by two.
    pub fn after(&mut self, v: Verdict) {
        self.lates = if matches!(v, Verdict::Late { .. }) { self.lates + 1 } else { 0 };
        match v {
            Verdict::Desync => self.widen_tau(),
            Verdict::Late { .. } if self.lates < LATE_ROUNDS => self.calm = 0,
            Verdict::Late { late_us, limit_us } => self.slow_down(late_us, limit_us),
            Verdict::Kept { n, left_out, .. } if left_out * COSTLY_SHARE > n + left_out => self.widen_tau(),
            Verdict::Kept { spans, .. } if spans > 0 => self.calm = 0,
            Verdict::Kept { .. } => {
                self.calm += 1;
                if self.calm >= CALM_ROUNDS {
                    self.calm = 0;
                    self.narrow();
                }
            }
        }
    }

    fn widen_tau(&mut self) {
        self.calm = 0;
        self.tau_us = (2 * self.tau_us).min(self.ceil_us);
    }

    fn slow_down(&mut self, late_us: i64, limit_us: i64) {
        self.calm = 0;
        let (mut step, most) = (2, MAX_SLOW_STEP.min(MAX_RATE_DIV / self.rate_div).max(1));
        while step < most && i64::from(step) * limit_us.max(1) < 2 * late_us {
            step *= 2;
        }
        self.rate_div = (self.rate_div * step).min(MAX_RATE_DIV);
    }

    fn narrow(&mut self) {
        if self.tau_us > self.floor_us {
            self.tau_us = up10(self.tau_us * 4 / 5).max(self.floor_us);
        } else if self.rate_div > 1 {
            self.rate_div /= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_follows_the_round_trips() {
        assert_eq!(widest_us(&[]), MIN_CEIL_US);
        assert_eq!(widest_us(&[60, 62, 61, 70, 64, 66, 63, 90]), MIN_CEIL_US);
        // 20 ± 5 ms each way: the median round trip 8.5 ms above the quickest → 17 ms.
        assert_eq!(widest_us(&[31_500, 38_000, 40_000, 41_000, 44_000, 36_000, 47_000, 39_000]), 17_000);
        assert_eq!(widest_us(&[1_000, 900_000, 900_000]), MAX_CEIL_US);
    }

    #[test]
    fn desyncs_widen_tau_to_the_ceiling_then_count() {
        let mut a = Adapt::new(100, 5_000);
        for _ in 0..5 {
            assert!(!a.widest(Verdict::Desync));
            a.after(Verdict::Desync);
        }
        assert_eq!((a.tau_us, a.rate_div), (3_200, 1));
        a.after(Verdict::Desync);
        assert_eq!((a.tau_us, a.rate_div), (5_000, 1), "100 µs doubled to the ceiling");
        assert!(a.widest(Verdict::Desync));
        assert!(!a.widest(Verdict::Late { late_us: 0, limit_us: 400 }), "the rate has room yet");
    }

    #[test]
    fn late_rounds_slow_the_rate_to_cover_twice_the_lateness() {
        let mut a = Adapt::new(100, 5_000);
        // One late round alone is a hiccup: the rate stays; a kept round in between starts over.
        a.after(Verdict::Late { late_us: 1_500, limit_us: 400 });
        a.after(Verdict::Kept { n: 100, left_out: 0, spans: 0 });
        a.after(Verdict::Late { late_us: 1_500, limit_us: 400 });
        assert_eq!((a.tau_us, a.rate_div), (100, 1));
        // 1250 Hz: the limit is 400 µs; a post 1.5 ms late asks for 3 ms: 8 times the limit,
        // but one step is at most 4.
        a.after(Verdict::Late { late_us: 1_500, limit_us: 400 });
        assert_eq!((a.tau_us, a.rate_div), (100, 4));
        // Cut short or barely late: halve.
        a.after(Verdict::Late { late_us: 0, limit_us: 1_600 });
        assert_eq!(a.rate_div, 8);
        // A stall of a second: 4 at a time, then what is left to the lowest rate.
        a.after(Verdict::Late { late_us: 1_000_000, limit_us: 3_200 });
        assert_eq!(a.rate_div, 32);
        a.after(Verdict::Late { late_us: 1_000_000, limit_us: 12_800 });
        assert_eq!(a.rate_div, MAX_RATE_DIV);
        assert!(a.widest(Verdict::Late { late_us: 0, limit_us: 1 }));
    }

    #[test]
    fn calm_rounds_narrow_to_the_floor_and_no_further() {
        let mut a = Adapt::new(100, 5_000);
        a.after(Verdict::Late { late_us: 0, limit_us: 400 });
        a.after(Verdict::Late { late_us: 0, limit_us: 400 });
        a.after(Verdict::Desync);
        assert_eq!((a.tau_us, a.rate_div), (200, 2));
        let clean = Verdict::Kept { n: 100, left_out: 0, spans: 0 };
        for _ in 0..20 {
            a.after(clean);
        }
        assert_eq!((a.tau_us, a.rate_div), (100, 1));
        a.after(Verdict::Kept { n: 100, left_out: 30, spans: 2 });
        assert_eq!(a.tau_us, 200, "a costly round widens τ");
        a.after(Verdict::Kept { n: 100, left_out: 5, spans: 1 });
        a.after(clean);
        assert_eq!(a.tau_us, 200, "a span breaks the calm run");
    }
}

//! The default-tolerance rule, one definition for both posters: `client/js/timing.js`
//! (`toleranceRule`, `defaultTolerance`) is its twin, and both are held to
//! `tests/vectors/tolerance/rule.json`. Pure arithmetic: no clock, no I/O.
//!
//! From a floor (a page's: `browser_floor`; a terminal's: `TERMINAL_FLOOR_MS`), a calibration's
//! deviations (µs: how far each of a burst of posting-like messages landed from the median
//! one-way delay; the page measures them) and clock-sync round trips (µs). With a calibration
//! of at least 120 messages: for each τ on a 0.25 ms grid from the floor to 5 ms and each round
//! size, the share of a round's worth that survives (a post beyond 3τ/5, stalls included,
//! costs a span, too many of them cost the round), and the pair with the least expected
//! time per bit. Without one: the floor, widened to six times the round trips' jitter (what
//! `sgp pair`'s creator measures). docs/protocol.md §6 and timing.js say why.

use crate::secret::UNMATCHED_SHARE;

/// The widest default, ms.
pub const MAX_DEFAULT_TOLERANCE_MS: f64 = 5.0;
/// A page's floor, cross-origin isolated or not (BENCHMARKS.md, "Web client").
pub const FLOOR_ISOLATED_MS: f64 = 0.25;
pub const FLOOR_NOT_ISOLATED_MS: f64 = 1.0;
/// A terminal's floor: what loopback and a quiet wired LAN sustain.
pub const TERMINAL_FLOOR_MS: f64 = 0.1;
/// Per round, besides its window (ms): the server's lead, `done`, the board and `ready`.
pub const ROUND_OVERHEAD_MS: f64 = 35.0;
/// Round sizes (posts per poster) to choose from: 120 at most, since a key's last round runs
/// to its end however little of it the key needs (timing.js `ROUND_SIZES` says more).
pub const ROUND_SIZES: [u32; 8] = [10, 15, 20, 30, 40, 60, 90, 120];
/// The fewest calibration deviations the rule uses (a page measures about 300).
pub const MIN_CALIBRATION: usize = 120;
/// Posts per poster per round without a measurement.
pub const POSTS_PER_ROUND: u32 = 40;
/// Below this estimated share of rounds in sync, a measurement says nothing useful.
pub const MIN_USEFUL_SUCCESS: f64 = 0.2;
/// A calibration's messages miss τ this many times as often as a round's posts do.
pub const CALIBRATION_EXCESS: f64 = 3.0;
/// Board a span costs, in τ.
pub const SPAN_TAUS: f64 = 18.0;
/// A post is surely matched within this share of τ (docs/protocol.md §5.3: 3τ/5).
const SURE_SHARE: f64 = 3.0 / 5.0;

/// What the rule picked.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub ms: f64,
    /// Posts per poster per round that go with it.
    pub posts: u32,
    pub widened: bool,
    pub floor: f64,
    /// The estimated share of a round's worth that survives (with a calibration).
    pub success: Option<f64>,
    /// Expected ms per bit of strength, to 2 decimals (with a useful calibration).
    pub ms_per_bit: Option<f64>,
    /// The calibration was too noisy to judge: the floor, in the shortest rounds.
    pub unsure: bool,
}

/// A page's floor: its isolation's, and ten ticks of its timer within τ (0.25 ms steps).
pub fn browser_floor(isolated: bool, precision_us: f64) -> f64 {
    let from_ticks = (10.0 * precision_us.max(0.0) / 250.0).ceil() * 0.25;
    let floor = if isolated { FLOOR_ISOLATED_MS } else { FLOOR_NOT_ISOLATED_MS };
    floor.max(from_ticks)
}

/// From round trips alone (µs): six times how far the median lies above the quickest, in
/// 10 µs steps, at most `MAX_DEFAULT_TOLERANCE_MS`; 0 for none.
pub fn from_pings(delays_us: &[i64]) -> f64 {
    if delays_us.is_empty() {
        return 0.0;
    }
    let mut d = delays_us.to_vec();
    d.sort_unstable();
    let us = (6 * (d[d.len() / 2] - d[0])).min((MAX_DEFAULT_TOLERANCE_MS * 1000.0) as i64);
    ((us + 9).div_euclid(10) * 10) as f64 / 1000.0
}

/// The rule (see the module's head). `devs`: a calibration's deviations, used if at least
/// `MIN_CALIBRATION`.
pub fn tolerance_rule(floor: f64, devs: Option<&[i64]>, ping_delays_us: &[i64]) -> Choice {
    let Some(devs) = devs.filter(|d| d.len() >= MIN_CALIBRATION) else {
        let ms = floor.max(from_pings(ping_delays_us));
        return Choice { ms, posts: POSTS_PER_ROUND, widened: ms > floor, floor, success: None, ms_per_bit: None, unsure: false };
    };
    let mut best: Option<(f64, Plan)> = None;
    let mut ms = floor;
    while ms <= MAX_DEFAULT_TOLERANCE_MS + 1e-9 {
        let plan = round_plan(devs, ms);
        // Ties (within 2 %) go to the narrower tolerance.
        if best.as_ref().is_none_or(|b| plan.ms_per_bit < b.1.ms_per_bit * 0.98) {
            best = Some((ms, plan));
        }
        ms += 0.25;
    }
    let Some((ms, plan)) = best else {
        return Choice { ms: floor, posts: POSTS_PER_ROUND, widened: false, floor, success: None, ms_per_bit: None, unsure: false };
    };
    if plan.success < MIN_USEFUL_SUCCESS {
        return Choice { ms: floor, posts: ROUND_SIZES[0], widened: false, floor, success: Some(plan.success), ms_per_bit: None, unsure: true };
    }
    let ms_per_bit = Some(round2(plan.ms_per_bit));
    Choice { ms, posts: plan.posts, widened: ms > floor, floor, success: Some(plan.success), ms_per_bit, unsure: false }
}

fn round2(x: f64) -> f64 {
    // As JavaScript's Math.round(x * 100) / 100 (halves up).
    (x * 100.0 + 0.5).floor() / 100.0
}

#[derive(Clone, Copy, Debug)]
struct Plan {
    posts: u32,
    success: f64,
    ms_per_bit: f64,
}

/// Of the round sizes within 2 % of the fastest at `tol_ms`, the longest.
fn round_plan(devs: &[i64], tol_ms: f64) -> Plan {
    let plans: Vec<Plan> = ROUND_SIZES
        .iter()
        .map(|&m| {
            let success = round_success(devs, tol_ms, 2 * m);
            Plan { posts: m, success, ms_per_bit: (round_duration_ms(tol_ms, m) + ROUND_OVERHEAD_MS) / (success * round_bits(m)) }
        })
        .collect();
    let least = plans.iter().map(|p| p.ms_per_bit).fold(f64::INFINITY, f64::min);
    plans.into_iter().rfind(|p| p.ms_per_bit <= least * 1.02).unwrap_or(Plan { posts: POSTS_PER_ROUND, success: 0.0, ms_per_bit: f64::INFINITY })
}

/// About what a round of m posts per poster is worth: log2 C(k, ⌊k/2⌋), k = round(2m/e).
pub fn round_bits(m: u32) -> f64 {
    let k = js_round(2.0 * f64::from(m) / std::f64::consts::E) as i64;
    let h = k / 2;
    (1..=h).map(|i| ((k - h + i) as f64 / i as f64).log2()).sum()
}

/// As JavaScript's Math.round (halves towards +∞).
fn js_round(x: f64) -> f64 {
    (x + 0.5).floor()
}

/// A message's chance of landing beyond `tol_ms`: the share of deviations beyond, with one
/// message's worth of doubt, over `CALIBRATION_EXCESS`.
pub fn miss_share(devs: &[i64], tol_ms: f64) -> f64 {
    let thr = tol_ms * 1000.0;
    let over = devs.iter().filter(|&&d| d as f64 > thr).count();
    (over as f64 + 1.0) / (devs.len() as f64 + 2.0) / CALIBRATION_EXCESS
}

/// P(X ≤ k) for X ~ Binomial(n, p).
fn binom_cdf(n: u32, p: f64, k: u32) -> f64 {
    let mut term = (1.0 - p).powf(f64::from(n));
    let mut sum = term;
    for i in 1..=k.min(n) {
        term *= (f64::from(n - i + 1) / f64::from(i)) * (p / (1.0 - p));
        sum += term;
    }
    sum.min(1.0)
}

/// The estimated share of a round's worth that survives, for rounds of `w` posts (both
/// posters'): each poster's doubtful posts (stalls included) at most a quarter of its own,
/// and what the spans leave.
pub fn round_success(devs: &[i64], tol_ms: f64, w: u32) -> f64 {
    let q = miss_share(devs, SURE_SHARE * tol_ms);
    let per_poster = w / 2;
    let in_sync = binom_cdf(per_poster, q, per_poster / UNMATCHED_SHARE as u32).powi(2);
    in_sync * (1.0 - (SPAN_TAUS / 4.0) * q).max(0.0)
}

/// The round length (ms) for about `posts` posts per poster at the rate 1/(8τ), plus the two
/// guard zones, within [10 ms, 120 s].
pub fn round_duration_ms(tol_ms: f64, posts: u32) -> f64 {
    let rate_hz = 1000.0 / (8.0 * tol_ms);
    let guard_ms = (20.0 * tol_ms).max(2.0);
    let ms = ((f64::from(posts) / rate_hz) * 1000.0 + 2.0 * guard_ms).ceil();
    ms.clamp(10.0, 120_000.0)
}

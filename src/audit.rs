//! The eavesdropper's audit (issue 7): from the public part of recorded rounds alone — server
//! times, labels, gaps to neighbours, position in the window, local density, run lengths,
//! per-round counts and the timing of the messages relayed to the room — an attacker tries to
//! tell (1) who posted each kept entry and (2) whether a kept entry has the same poster as the
//! previous kept entry. The truth (joined from the posters' own records by `eve.rs`) is used
//! only to train and to score. Pure: no I/O, no clock, no randomness.
//!
//! The method, meant to be checked by hand:
//! - rounds are de-duplicated by (room, session, round) and split by a hash of that key: one
//!   half trains, the other is scored (a quarter of the training half stops the boosting early);
//! - three predictors per target: always the training half's majority class, a logistic
//!   regression and gradient-boosted trees (`boost.rs`); the verdict takes the one most
//!   accurate on the scored half (hindsight that favours Eve, so the verdict errs her way);
//! - its accuracy p̂ over N scored entries gives the 99 % upper bound
//!   `p_u = max(½, p̂ + 2.576·sqrt(p̂(1−p̂)/(N−1)))` and `H = −log2 p_u` (NIST SP 800-90B's
//!   most-common-value estimate); the min-entropy per raw bit is the smaller H of the two
//!   targets. The full audit passes when `p_u ≤ 0.51` on both, over ≥ 100 000 entries each.

mod boost;

use crate::protocol::{Entry, Label};
pub use boost::{Boost, BoostParams, Data, Logistic};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Which round a round is: the key for de-duplicating and splitting.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RoundKey {
    pub room: String,
    pub session: String,
    pub round: u32,
}

/// Server times (µs) of the messages relayed to the room around one round, as any member of
/// the room sees them: Eve's own record if there is one, else a poster's, on server time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Relayed {
    /// When `start` left the server (≈ `t_start − lead`).
    pub start_us: Option<i64>,
    /// When `closed` left the server: the later poster's `done`, or the grace.
    pub closed_us: Option<i64>,
    /// When the previous round of the same session closed (the posters then said `ready`).
    pub prev_closed_us: Option<i64>,
}

/// One round with its truth: the public board and window, the kept entries (positions in
/// the board) and, per kept entry, whether alice posted it.
#[derive(Clone, Debug)]
pub struct TruthRound {
    pub key: RoundKey,
    pub board: Vec<Entry>,
    pub t_start_us: i64,
    pub t_end_us: i64,
    pub tolerance_us: i64,
    /// Each poster's Poisson rate as the room announced it (public).
    pub rate_hz: f64,
    /// Positions in `board` of the entries that counted: the public sift less the posters'
    /// spans.
    pub kept: Vec<usize>,
    pub by_alice: Vec<bool>,
    pub relayed: Relayed,
    /// The spans both posters announced (`dropped`, public): Eve knows them.
    pub spans: Vec<crate::secret::Span>,
}

/// The bound the full audit must meet on both targets.
pub const PASS_P_UPPER: f64 = 0.51;
/// Scored entries per target the full audit asks for.
pub const FULL_AUDIT_N: usize = 100_000;
/// z of the one-sided 99 % bound.
pub const Z99: f64 = 2.576;
/// Gradient steps of the logistic regression (with momentum, on standardised features).
const LOGISTIC_ITERATIONS: usize = 100;
/// The predictors compared on each target.
pub const MODELS: [&str; 3] = ["majority", "logistic", "boosting"];

/// What the audit concludes for one target.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub target: &'static str,
    /// Entries scored (the scored half).
    pub n: usize,
    /// Accuracy of the best predictor on the scored half.
    pub accuracy: f64,
    /// Which predictor that was.
    pub model: &'static str,
    /// Every predictor's accuracy on the scored half, in the order of [`MODELS`].
    pub accuracies: Vec<f64>,
    /// The 99 % upper bound of the accuracy, never below ½.
    pub p_upper: f64,
    /// Min-entropy per raw bit this target supports: `−log2 p_u`, at most 1.
    pub h: f64,
    /// `p_u ≤ 0.51`.
    pub pass: bool,
    /// The accuracy a fair coin's best predictor stays below with probability 99.9 % at this
    /// N, for both targets together (see [`coin_threshold`]).
    pub coin_threshold: f64,
    /// The accuracy is above `coin_threshold`: Eve does better than chance, significantly.
    pub beats_coin: bool,
}

/// `p_u` from `correct` right guesses out of `n`: the 99 % upper bound, floored at ½ (a
/// binary guess can always get ½, so no bound below it means anything: NIST's `max(P_u, 1/k)`).
/// No data gives 1 (and H = 0): nothing is proven.
pub fn p_upper(correct: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let p = correct as f64 / n as f64;
    let sd = (p * (1.0 - p) / n.saturating_sub(1).max(1) as f64).sqrt();
    (p + Z99 * sd).clamp(0.5, 1.0)
}

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383_577_518_672_69e2, -3.066479806614716e+01, 2.506628277459239e+00];
    const B: [f64; 5] = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01];
    const C: [f64; 6] = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00];
    const D: [f64; 4] = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        let q = (-2.0 * q.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail(p)
    } else if p > 1.0 - 0.02425 {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// False alarms allowed to the coin test: one small audit in a thousand, for both targets
/// and every predictor together.
pub const COIN_FALSE_ALARM: f64 = 0.001;

/// The accuracy above which Eve beats a coin at this N: if posters were fair coins to her,
/// each predictor's accuracy on N scored entries would be ≈ N(½, ¼/N), so the best of the
/// [`MODELS`] on both targets stays below `½ + z·½/√N` with probability ≥ 1 − α when
/// z = Φ⁻¹(1 − α / (2·models)) (Bonferroni over models and targets), α = [`COIN_FALSE_ALARM`]
/// (z ≈ 3.59). This is the looser bound a small audit can hold the honest schedule to, and
/// the bar a leak must clear to be caught; the full audit's bar is `p_u ≤ 0.51`.
pub fn coin_threshold(n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let z = normal_quantile(1.0 - COIN_FALSE_ALARM / (2.0 * MODELS.len() as f64));
    0.5 + z * 0.5 / (n as f64).sqrt()
}

/// The verdict on one target from each predictor's right guesses out of `n`.
pub fn verdict(target: &'static str, correct: &[usize], n: usize) -> Verdict {
    let (best, &c) = correct.iter().enumerate().max_by_key(|&(k, c)| (*c, std::cmp::Reverse(k))).unwrap_or((0, &0));
    let accuracies: Vec<f64> = correct.iter().map(|&c| if n == 0 { 0.0 } else { c as f64 / n as f64 }).collect();
    let accuracy = if n == 0 { 0.0 } else { c as f64 / n as f64 };
    let pu = p_upper(c, n);
    let coin = coin_threshold(n);
    Verdict {
        target,
        n,
        accuracy,
        model: MODELS.get(best).copied().unwrap_or("none"),
        accuracies,
        p_upper: pu,
        h: -pu.log2(),
        pass: n > 0 && pu <= PASS_P_UPPER,
        coin_threshold: coin,
        beats_coin: n > 0 && accuracy > coin,
    }
}

/// The whole audit's answer.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Rounds given, and of those left out as copies of a round already given.
    pub rounds_in: usize,
    pub duplicates: usize,
    pub rounds_trained: usize,
    pub rounds_scored: usize,
    /// Kept entries over all distinct rounds.
    pub kept: usize,
    /// Rounds with the timing of relayed messages (the rest have those features missing).
    pub rounds_with_relayed: usize,
    pub verdicts: [Verdict; 2],
    /// The smaller H of the two targets.
    pub min_entropy_per_bit: f64,
    /// Both targets have p_u ≤ 0.51.
    pub pass: bool,
    /// Both targets have ≥ 100 000 scored entries (else the verdict is only indicative).
    pub enough: bool,
    /// Neither target beats a coin at its N (the small audit's criterion).
    pub coin_like: bool,
}

/// Min-entropy per raw bit the audit supports: the smaller H of the two targets.
pub fn min_entropy(v: &[Verdict; 2]) -> f64 {
    v[0].h.min(v[1].h)
}

fn key_hash(k: &RoundKey) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"sgp/1 audit split")
        .chain_update(k.room.as_bytes())
        .chain_update([0])
        .chain_update(k.session.as_bytes())
        .chain_update([0])
        .chain_update(k.round.to_be_bytes())
        .finalize()
        .into()
}

/// Where a round goes: scored (bit 0 of the key's hash set), else trained on; a quarter of
/// the training rounds (bits 1–2 clear) only validate the boosting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Fit,
    Validate,
    Score,
}

pub fn part_of(k: &RoundKey) -> Part {
    let h = key_hash(k)[0];
    if h & 1 == 1 {
        Part::Score
    } else if h & 6 == 0 {
        Part::Validate
    } else {
        Part::Fit
    }
}

/// Distinct rounds (the first of each key), and how many copies were left out.
pub fn dedupe(rounds: &[TruthRound]) -> (Vec<&TruthRound>, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for r in rounds {
        if seen.insert(&r.key) {
            out.push(r);
        }
    }
    let dup = rounds.len() - out.len();
    (out, dup)
}

/// Samples `(features, truth)` for both targets.
#[derive(Default)]
pub struct Samples {
    pub poster: (Vec<Vec<f64>>, Vec<bool>),
    pub same: (Vec<Vec<f64>>, Vec<bool>),
}

impl Samples {
    fn add(&mut self, r: &TruthRound) {
        let Some(ctx) = Ctx::new(r) else { return };
        let mut prev: Option<Vec<f64>> = None;
        for j in 0..r.kept.len() {
            let f = ctx.entry(r, j);
            self.poster.0.push(f.clone());
            self.poster.1.push(r.by_alice[j]);
            if let Some(p) = prev.take() {
                let mut pair = p;
                pair.extend_from_slice(&f);
                pair.extend(ctx.pair(r, j));
                self.same.0.push(pair);
                self.same.1.push(r.by_alice[j] == r.by_alice[j - 1]);
            }
            prev = Some(f);
        }
    }

    pub fn of<'a>(rounds: impl IntoIterator<Item = &'a TruthRound>) -> Samples {
        let mut s = Samples::default();
        for r in rounds {
            s.add(r);
        }
        s
    }
}

/// The whole audit over the given rounds.
pub fn attack(rounds: &[TruthRound]) -> Report {
    let (distinct, duplicates) = dedupe(rounds);
    let (mut fit, mut valid, mut score) = (Samples::default(), Samples::default(), Samples::default());
    let (mut trained, mut scored) = (0, 0);
    for r in &distinct {
        match part_of(&r.key) {
            Part::Fit => {
                fit.add(r);
                trained += 1;
            }
            Part::Validate => {
                valid.add(r);
                trained += 1;
            }
            Part::Score => {
                score.add(r);
                scored += 1;
            }
        }
    }
    let one = |target: &'static str, fit: &(Vec<Vec<f64>>, Vec<bool>), valid: &(Vec<Vec<f64>>, Vec<bool>), test: &(Vec<Vec<f64>>, Vec<bool>)| {
        let mut train_x = fit.0.clone();
        train_x.extend_from_slice(&valid.0);
        let mut train_y = fit.1.clone();
        train_y.extend_from_slice(&valid.1);
        let all = Data { x: &train_x, y: &train_y };
        let majority = 2 * train_y.iter().filter(|&&y| y).count() >= train_y.len().max(1);
        let logistic = Logistic::train(&all, LOGISTIC_ITERATIONS);
        let n = fit.0.len();
        let params = BoostParams { min_leaf: (n / 400).clamp(20, 400), ..Default::default() };
        let boost = Boost::train(&Data { x: &fit.0, y: &fit.1 }, &Data { x: &valid.0, y: &valid.1 }, params);
        let count = |f: &dyn Fn(&[f64]) -> bool| test.0.iter().zip(&test.1).filter(|(x, &y)| f(x) == y).count();
        let correct = [count(&|_| majority), count(&|x| logistic.p(x) >= 0.5), count(&|x| boost.p(x) >= 0.5)];
        verdict(target, &correct, test.0.len())
    };
    let verdicts = [one("poster", &fit.poster, &valid.poster, &score.poster), one("same_as_previous", &fit.same, &valid.same, &score.same)];
    let h = min_entropy(&verdicts);
    Report {
        rounds_in: rounds.len(),
        duplicates,
        rounds_trained: trained,
        rounds_scored: scored,
        kept: distinct.iter().map(|r| r.kept.len()).sum(),
        rounds_with_relayed: distinct.iter().filter(|r| r.relayed.closed_us.is_some()).count(),
        pass: verdicts.iter().all(|v| v.pass),
        enough: verdicts.iter().all(|v| v.n >= FULL_AUDIT_N),
        coin_like: verdicts.iter().all(|v| v.n > 0 && !v.beats_coin),
        min_entropy_per_bit: h,
        verdicts,
    }
}

// ---------------------------------------------------------------------------------------
// Features. Everything here is public: the board, the window, the room's parameters, the
// public sift, and when the room's messages went out. `by_alice` is never read.

/// Stands for a missing value (no neighbour on that side, no timing recorded).
const MISSING: f64 = -1.0e3;
/// Gaps and distances are capped at this many mean gaps.
const CAP: f64 = 20.0;

fn label_sign(l: Label) -> f64 {
    if l == Label::A {
        1.0
    } else {
        -1.0
    }
}

/// One round's public context, in time order.
struct Ctx {
    /// Board times, sorted, and labels in the same order.
    t: Vec<i64>,
    label: Vec<f64>,
    /// Rank (time order) of each kept entry, in the order of `kept`.
    kept_rank: Vec<usize>,
    is_kept: Vec<bool>,
    /// The mean gap between entries: window / entries.
    unit: f64,
    tau: f64,
    /// By rank: length of the run of equal labels it is in, and its place in that run.
    label_run: Vec<(usize, usize)>,
    /// By rank: size of the run of entries linked by gaps below half a mean gap.
    cluster: Vec<usize>,
    /// By rank: length of the run of consecutive kept entries it is in.
    kept_run: Vec<usize>,
    /// Features of the whole round.
    round: Vec<f64>,
    /// The round's spans, sorted by start.
    spans: Vec<crate::secret::Span>,
}

/// Sizes of the runs that `linked(k)` (entry k joined to entry k+1) makes, per entry, and
/// each entry's place in its run.
fn runs(n: usize, linked: impl Fn(usize) -> bool) -> Vec<(usize, usize)> {
    let mut out = vec![(0, 0); n];
    let mut start = 0;
    for k in 0..n {
        if k + 1 == n || !linked(k) {
            for (m, o) in out.iter_mut().enumerate().take(k + 1).skip(start) {
                *o = (k + 1 - start, m - start);
            }
            start = k + 1;
        }
    }
    out
}

impl Ctx {
    fn new(r: &TruthRound) -> Option<Ctx> {
        if r.board.is_empty() || r.kept.is_empty() || r.kept.len() != r.by_alice.len() || r.kept.iter().any(|&k| k >= r.board.len()) {
            return None;
        }
        let mut order: Vec<usize> = (0..r.board.len()).collect();
        order.sort_by_key(|&k| r.board[k].t_us);
        let mut rank_of = vec![0; r.board.len()];
        for (p, &k) in order.iter().enumerate() {
            rank_of[k] = p;
        }
        let t: Vec<i64> = order.iter().map(|&k| r.board[k].t_us).collect();
        let label: Vec<f64> = order.iter().map(|&k| label_sign(r.board[k].label)).collect();
        let n = t.len();
        let span = (r.t_end_us - r.t_start_us).max(1) as f64;
        let unit = (span / n as f64).max(1.0);
        let kept_rank: Vec<usize> = r.kept.iter().map(|&k| rank_of[k]).collect();
        let mut is_kept = vec![false; n];
        for &p in &kept_rank {
            is_kept[p] = true;
        }
        let label_run = runs(n, |k| label[k] == label[k + 1]);
        let cluster = runs(n, |k| ((t[k + 1] - t[k]) as f64) < 0.5 * unit).into_iter().map(|c| c.0).collect();
        let kept_run = runs(n, |k| is_kept[k] && is_kept[k + 1]).into_iter().map(|c| c.0).collect();
        let expected = 2.0 * r.rate_hz * span / 1e6;
        let ms = |d: Option<i64>| d.map_or(MISSING, |d| d as f64 / 1000.0);
        let rel = r.relayed;
        let round = vec![
            // The round's own τ and rate, which adapting changes from round to round (public:
            // the room's `start` says them).
            r.tolerance_us as f64 / 1000.0,
            r.rate_hz,
            n as f64 / expected.max(1.0),
            n as f64,
            r.kept.len() as f64,
            label.iter().filter(|&&l| l > 0.0).count() as f64 / n as f64,
            ms(rel.closed_us.map(|c| c - r.t_end_us)),
            rel.closed_us.map_or(MISSING, |c| ((c - t[n - 1]) as f64 / unit).min(50.0)),
            ms(rel.start_us.zip(rel.prev_closed_us).map(|(s, p)| s - p)),
            ms(rel.start_us.map(|s| r.t_start_us - s)),
            ((t[0] - r.t_start_us) as f64 / unit).clamp(-CAP, CAP),
            ((r.t_end_us - t[n - 1]) as f64 / unit).clamp(-CAP, CAP),
        ];
        let mut spans = r.spans.clone();
        spans.sort_unstable();
        Some(Ctx { t, label, kept_rank, is_kept, unit, tau: r.tolerance_us.max(1) as f64, label_run, cluster, kept_run, round, spans })
    }

    /// Entries within `w` mean gaps of rank p, itself not counted.
    fn density(&self, p: usize, w: f64) -> f64 {
        let (lo, hi) = (self.t[p] as f64 - w * self.unit, self.t[p] as f64 + w * self.unit);
        let a = self.t.partition_point(|&x| (x as f64) < lo);
        let b = self.t.partition_point(|&x| (x as f64) <= hi);
        (b - a - 1) as f64
    }

    /// Public features of kept entry j (index into `kept`), for target 1.
    fn entry(&self, r: &TruthRound, j: usize) -> Vec<f64> {
        let p = self.kept_rank[j];
        let n = self.t.len();
        let nk = self.kept_rank.len();
        let t = self.t[p];
        let gap = |q: Option<usize>| q.filter(|&q| q < n).map_or(CAP, |q| ((t - self.t[q]).unsigned_abs() as f64 / self.unit).min(CAP));
        let gap_tau = |q: Option<usize>| q.filter(|&q| q < n).map_or(1e3, |q| ((t - self.t[q]).unsigned_abs() as f64 / self.tau).min(1e3));
        let lab = |q: Option<usize>| q.filter(|&q| q < n).map_or(0.0, |q| self.label[q]);
        let kept = |q: Option<usize>| q.filter(|&q| q < n).map_or(MISSING, |q| f64::from(u8::from(self.is_kept[q])));
        let (p1, p2, n1, n2) = (p.checked_sub(1), p.checked_sub(2), Some(p + 1), Some(p + 2));
        let prev_kept = j.checked_sub(1).map(|i| self.kept_rank[i]);
        let next_kept = self.kept_rank.get(j + 1).copied();
        let span = (r.t_end_us - r.t_start_us).max(1) as f64;
        let closed = r.relayed.closed_us;
        let mut f = vec![
            self.label[p],
            (t - r.t_start_us) as f64 / span,
            ((t - r.t_start_us) as f64 / self.unit).min(CAP * 5.0),
            ((r.t_end_us - t) as f64 / self.unit).min(CAP * 5.0),
            gap(p1),
            gap(n1),
            gap(p2),
            gap(n2),
            gap_tau(p1),
            gap_tau(n1),
            lab(p1),
            lab(n1),
            lab(p2),
            lab(n2),
            kept(p1),
            kept(n1),
            gap(prev_kept),
            gap(next_kept),
            self.density(p, 1.0),
            self.density(p, 2.0),
            self.density(p, 5.0),
            self.label_run[p].0 as f64,
            self.label_run[p].1 as f64,
            self.cluster[p] as f64,
            self.kept_run[p] as f64,
            j as f64,
            (nk - 1 - j) as f64,
            j as f64 / nk as f64,
            p as f64 / n as f64,
            (n - 1 - p) as f64,
            f64::from(u8::from(p + 1 == n)),
            f64::from(u8::from(j + 1 == nk)),
            closed.map_or(MISSING, |c| ((c - t) as f64 / self.unit).min(CAP * 5.0)),
            // A span is cut around a poster's late post and its matched neighbours: how near
            // the nearest span ends are, and how many spans the round has.
            self.spans.iter().filter(|s| s[1] < t).map(|s| (t - s[1]) as f64 / self.unit).fold(CAP, f64::min),
            self.spans.iter().filter(|s| s[0] > t).map(|s| (s[0] - t) as f64 / self.unit).fold(CAP, f64::min),
            self.spans.len() as f64,
        ];
        f.extend_from_slice(&self.round);
        f
    }

    /// Features of the pair (kept j−1, kept j) beyond those of its two entries, for target 2.
    fn pair(&self, _r: &TruthRound, j: usize) -> Vec<f64> {
        let (a, b) = (self.kept_rank[j - 1], self.kept_rank[j]);
        let (lo, hi) = (a.min(b), a.max(b));
        let between = hi - lo - 1;
        let between_a = (lo + 1..hi).filter(|&q| self.label[q] > 0.0).count() as f64;
        let d = self.t[b].abs_diff(self.t[a]) as f64;
        vec![
            f64::from(u8::from(self.label[a] == self.label[b])),
            (d / self.unit).min(CAP),
            (d / self.tau).min(1e4),
            between as f64,
            between_a - (between as f64 - between_a),
        ]
    }
}

/// Simulated rounds for checking the attacker itself (never for a verdict on sgp).
pub mod simulate {
    use super::{Relayed, RoundKey, TruthRound};
    use crate::protocol::{Entry, Label};

    /// How each poster schedules its posts in a window of `window_us`.
    #[derive(Clone, Copy, Debug)]
    pub enum Schedule {
        /// A Poisson process of rate `rate_hz` (sgp's schedule).
        Poisson { rate_hz: f64 },
        /// The original student client: `count` posts, each after a uniform wait in
        /// `[min_gap, min_gap + spread]` (100 ms + 0–4000 ms, scaled); the window must hold them.
        FixedGap { count: usize, min_gap_us: f64, spread_us: f64 },
    }

    fn times(s: Schedule, window_us: i64, rng: &mut fastrand::Rng) -> Vec<i64> {
        match s {
            Schedule::Poisson { rate_hz } => crate::schedule::poisson(0, window_us, rate_hz, rng),
            Schedule::FixedGap { count, min_gap_us, spread_us } => {
                let mut t = 0.0;
                (0..count)
                    .map(|_| {
                        t += min_gap_us + rng.f64() * spread_us;
                        t as i64
                    })
                    .collect()
            }
        }
    }

    /// `rounds` rounds with alice and bob on their schedules; server times are send times
    /// plus a small jitter; the sift of secret.rs decides what is kept; `closed` goes out a
    /// fixed 1 ms after the window.
    pub fn rounds(alice: Schedule, bob: Schedule, window_us: i64, tolerance_us: i64, guard_us: i64, rounds: usize, seed: u64) -> Vec<TruthRound> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let rate_hz = match alice {
            Schedule::Poisson { rate_hz } => rate_hz,
            Schedule::FixedGap { count, .. } => count as f64 / (window_us as f64 / 1e6),
        };
        (0..rounds)
            .map(|k| {
                let mut posts: Vec<(i64, bool)> = times(alice, window_us, &mut rng).into_iter().map(|t| (t, true)).collect();
                posts.extend(times(bob, window_us, &mut rng).into_iter().map(|t| (t, false)));
                for p in &mut posts {
                    p.0 += rng.i64(0..=tolerance_us / 4);
                }
                posts.sort();
                let board: Vec<Entry> = posts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Entry { i: i as u32, t_us: p.0, label: if rng.bool() { Label::A } else { Label::B } })
                    .collect();
                let kept = crate::secret::sift(&board, 0, window_us, tolerance_us, guard_us);
                let by_alice = kept.iter().map(|&k| posts[k].1).collect();
                let key = RoundKey { room: format!("SIM-{seed}"), session: "0".repeat(32), round: k as u32 + 1 };
                let relayed = Relayed { closed_us: Some(window_us + 1000), ..Default::default() };
                TruthRound { key, board, t_start_us: 0, t_end_us: window_us, tolerance_us, rate_hz, kept, by_alice, relayed, spans: Vec::new() }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::simulate::{rounds, Schedule};
    use super::*;

    #[test]
    fn verdict_arithmetic() {
        let v = verdict("x", &[4000, 5000, 4900], 10_000);
        assert_eq!(v.model, "logistic");
        assert!((v.accuracy - 0.5).abs() < 1e-12);
        assert!((v.p_upper - (0.5 + 2.576 * (0.25f64 / 9999.0).sqrt())).abs() < 1e-12);
        assert!((v.h - -v.p_upper.log2()).abs() < 1e-12);
        assert!(!v.pass && !v.beats_coin, "{v:?}");
        // Worse than a coin is still a coin: p_u never below ½, H never above 1.
        let v = verdict("x", &[45_000, 44_000, 40_000], 100_000);
        assert_eq!(v.p_upper, 0.5);
        assert_eq!(v.h, 1.0);
        assert!(v.pass);
        assert_eq!(verdict("x", &[0, 0, 0], 0).h, 0.0);
        assert!(!verdict("x", &[0, 0, 0], 0).pass);
        // The full audit's bound at N = 100 000: a coin passes with room to spare.
        assert!(p_upper(50_000, 100_000) < 0.505);
        assert!(!verdict("x", &[51_000, 0, 0], 100_000).pass);
    }

    #[test]
    fn the_coin_threshold_is_computed_from_n() {
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
        assert!((normal_quantile(0.99) - 2.326348).abs() < 1e-5);
        assert!((normal_quantile(0.001) + 3.090232).abs() < 1e-5);
        // 99.9 % over 3 models × 2 targets: z = Φ⁻¹(1 − 1/6000) ≈ 3.588.
        let z = (coin_threshold(10_000) - 0.5) / 0.005;
        assert!((z - 3.588).abs() < 0.001, "{z}");
        assert!(coin_threshold(100) > coin_threshold(10_000));
    }

    #[test]
    fn duplicates_are_dropped_and_the_split_follows_the_key() {
        let p = Schedule::Poisson { rate_hz: 125.0 };
        let r = rounds(p, p, 400_000, 1000, 20_000, 40, 3);
        let mut twice = r.clone();
        twice.extend(r.iter().cloned());
        let (d, dup) = dedupe(&twice);
        assert_eq!((d.len(), dup), (40, 40));
        let once = attack(&r);
        let again = attack(&twice);
        assert_eq!(again.duplicates, 40);
        assert_eq!(once.verdicts, again.verdicts, "copies change nothing");
        // The split depends on the key alone, and is roughly half and half.
        let scored = (0..2000).filter(|&k| part_of(&RoundKey { room: "R".into(), session: "s".into(), round: k }) == Part::Score).count();
        assert!((900..1100).contains(&scored), "{scored}");
    }

    #[test]
    fn runs_are_measured() {
        let r = runs(6, |k| [true, true, false, false, true][k]);
        assert_eq!(r, vec![(3, 0), (3, 1), (3, 2), (1, 0), (2, 0), (2, 1)]);
        assert_eq!(runs(0, |_| true), vec![]);
    }

    // τ = 1 ms, so a mean gap of 8τ per poster: the protocol's rate.
    const TOL: i64 = 1000;

    #[test]
    fn the_attacker_catches_the_original_fixed_gap_schedule() {
        // 16 posts each after 100 ms + U(0, 4000 ms), scaled ×1/100 (1 ms + U(0, 40 ms)),
        // with τ = 0.1 ms well below the smallest gap; a window that holds all 16.
        let s = Schedule::FixedGap { count: 16, min_gap_us: 1_000.0, spread_us: 40_000.0 };
        let r = rounds(s, s, 660_000, 100, 500, 500, 1);
        let rep = attack(&r);
        let v = &rep.verdicts[1];
        assert!(v.n > 5000, "{v:?}");
        assert!(v.accuracy >= 0.65, "same-as-previous must be caught: {v:?}");
        assert!(v.beats_coin && !rep.coin_like);
    }

    #[test]
    fn the_attacker_catches_unequal_rates() {
        let r = rounds(Schedule::Poisson { rate_hz: 125.0 }, Schedule::Poisson { rate_hz: 187.5 }, 400_000, TOL, 20_000, 80, 2);
        let rep = attack(&r);
        let v = &rep.verdicts[0];
        assert!(v.n > 1000, "{v:?}");
        assert!(v.beats_coin, "who posted must be caught: {v:?}");
    }

    #[test]
    fn the_poisson_schedule_is_a_coin_to_the_attacker() {
        let p = Schedule::Poisson { rate_hz: 125.0 };
        let r = rounds(p, p, 400_000, TOL, 20_000, 160, 3);
        let rep = attack(&r);
        for v in &rep.verdicts {
            assert!(v.n > 2000, "{v:?}");
            assert!(!v.beats_coin, "{v:?}");
        }
        assert!(rep.coin_like);
    }
}

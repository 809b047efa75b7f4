//! The eavesdropper's audit: from the public part of recorded rounds alone (server times,
//! labels, gaps, position in the window, local density), an attacker tries to tell
//! (1) who posted each kept entry and (2) whether a kept entry has the same poster as the
//! previous kept entry. The truth comes from the posters' own records and is used only to
//! score. Pure: no I/O; the model is a logistic regression over binned features, trained on
//! half of the rounds and scored on the other half, simple enough to check by hand.

use crate::protocol::{Entry, Label};

/// One round with its truth: the board, the window, the kept entries (positions in the
/// board) and, per kept entry, whether alice posted it.
#[derive(Clone, Debug)]
pub struct TruthRound {
    pub board: Vec<Entry>,
    pub t_start_us: i64,
    pub t_end_us: i64,
    pub tolerance_us: i64,
    pub kept: Vec<usize>,
    pub by_alice: Vec<bool>,
}

/// What the audit concludes for one target.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Verdict {
    pub target: &'static str,
    /// Entries scored (the test half).
    pub n: usize,
    pub accuracy: f64,
    /// 99 % upper bound: `p̂ + 2.576·sqrt(p̂(1−p̂)/(N−1))`.
    pub p_upper: f64,
    /// Min-entropy per raw bit this target supports: `−log2 p_u` (NIST SP 800-90B MCV).
    pub h: f64,
}

pub fn verdict(target: &'static str, correct: usize, n: usize) -> Verdict {
    let p = if n == 0 { 1.0 } else { correct as f64 / n as f64 };
    let p_upper = (p + 2.576 * (p * (1.0 - p) / (n.saturating_sub(1).max(1)) as f64).sqrt()).min(1.0);
    Verdict { target, n, accuracy: p, p_upper, h: -p_upper.log2() }
}

/// Bin edges for gaps, in units of the round's mean gap between board entries.
const GAP_BINS: &[f64] = &[0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0];
/// Bin edges for the position in the window (0 = t_start, 1 = t_end).
const POS_BINS: &[f64] = &[0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98];

fn one_hot(x: f64, edges: &[f64], out: &mut Vec<f64>) {
    let k = edges.iter().position(|&e| x < e).unwrap_or(edges.len());
    for j in 0..=edges.len() {
        out.push(if j == k { 1.0 } else { 0.0 });
    }
}

fn label_bit(l: Label) -> f64 {
    if l == Label::A {
        1.0
    } else {
        -1.0
    }
}

/// Public features of the kept entry `j` of a round (index into `kept`), for target 1.
fn poster_features(r: &TruthRound, order: &[usize], rank: &[usize], mean_gap: f64, j: usize) -> Vec<f64> {
    let k = r.kept[j];
    let e = r.board[k];
    let pos = rank[k];
    let t = e.t_us as f64;
    let prev = if pos > 0 { Some(r.board[order[pos - 1]]) } else { None };
    let next = order.get(pos + 1).map(|&o| r.board[o]);
    let gap_prev = prev.map_or(10.0, |p| (t - p.t_us as f64) / mean_gap);
    let gap_next = next.map_or(10.0, |n| (n.t_us as f64 - t) / mean_gap);
    let span = (r.t_end_us - r.t_start_us).max(1) as f64;
    let mut f = Vec::with_capacity(64);
    f.push(label_bit(e.label));
    one_hot((t - r.t_start_us as f64) / span, POS_BINS, &mut f);
    one_hot(gap_prev, GAP_BINS, &mut f);
    one_hot(gap_next, GAP_BINS, &mut f);
    f.push(prev.map_or(0.0, |p| label_bit(p.label)));
    f.push(next.map_or(0.0, |n| label_bit(n.label)));
    // Local density: entries within ±2 mean gaps, against the round's average (4).
    let lo = t - 2.0 * mean_gap;
    let hi = t + 2.0 * mean_gap;
    let around = order.iter().filter(|&&o| (lo..=hi).contains(&(r.board[o].t_us as f64))).count() as f64;
    f.push((around - 5.0) / 5.0);
    f
}

/// Public features of the pair (kept entry `j − 1`, kept entry `j`), for target 2.
fn same_features(r: &TruthRound, rank: &[usize], mean_gap: f64, j: usize) -> Vec<f64> {
    let (a, b) = (r.board[r.kept[j - 1]], r.board[r.kept[j]]);
    let gap = (b.t_us - a.t_us) as f64 / mean_gap;
    let between = rank[r.kept[j]].saturating_sub(rank[r.kept[j - 1]] + 1) as f64;
    let span = (r.t_end_us - r.t_start_us).max(1) as f64;
    let mut f = Vec::with_capacity(48);
    f.push(if a.label == b.label { 1.0 } else { -1.0 });
    one_hot(gap, GAP_BINS, &mut f);
    one_hot(between, &[0.5, 1.5, 2.5, 4.5, 8.5], &mut f);
    one_hot((b.t_us - r.t_start_us) as f64 / span, POS_BINS, &mut f);
    f
}

/// Samples `(features, truth)` for both targets over a set of rounds.
pub fn samples(rounds: &[TruthRound]) -> (Vec<(Vec<f64>, bool)>, Vec<(Vec<f64>, bool)>) {
    let (mut poster, mut same) = (Vec::new(), Vec::new());
    for r in rounds {
        if r.board.len() < 2 || r.kept.is_empty() {
            continue;
        }
        let mut order: Vec<usize> = (0..r.board.len()).collect();
        order.sort_by_key(|&k| r.board[k].t_us);
        let mut rank = vec![0; r.board.len()];
        for (p, &k) in order.iter().enumerate() {
            rank[k] = p;
        }
        let first = r.board[order[0]].t_us;
        let last = r.board[order[order.len() - 1]].t_us;
        let mean_gap = ((last - first) as f64 / (r.board.len() - 1) as f64).max(1.0);
        for j in 0..r.kept.len() {
            poster.push((poster_features(r, &order, &rank, mean_gap, j), r.by_alice[j]));
            if j > 0 {
                same.push((same_features(r, &rank, mean_gap, j), r.by_alice[j] == r.by_alice[j - 1]));
            }
        }
    }
    (poster, same)
}

/// Logistic regression, trained by full-batch gradient descent with a little L2.
pub struct Logistic {
    w: Vec<f64>,
    b: f64,
}

impl Logistic {
    pub fn train(data: &[(Vec<f64>, bool)], iterations: usize) -> Logistic {
        let dim = data.first().map_or(0, |d| d.0.len());
        let mut m = Logistic { w: vec![0.0; dim], b: 0.0 };
        if data.is_empty() {
            return m;
        }
        let (rate, l2) = (0.5, 1e-4);
        let n = data.len() as f64;
        for _ in 0..iterations {
            let mut gw = vec![0.0; dim];
            let mut gb = 0.0;
            for (x, y) in data {
                let err = m.p(x) - if *y { 1.0 } else { 0.0 };
                for (g, xi) in gw.iter_mut().zip(x) {
                    *g += err * xi;
                }
                gb += err;
            }
            for (w, g) in m.w.iter_mut().zip(&gw) {
                *w -= rate * (g / n + l2 * *w);
            }
            m.b -= rate * gb / n;
        }
        m
    }

    pub fn p(&self, x: &[f64]) -> f64 {
        let z: f64 = self.b + self.w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>();
        1.0 / (1.0 + (-z).exp())
    }

    /// Right guesses on `data`.
    pub fn correct(&self, data: &[(Vec<f64>, bool)]) -> usize {
        data.iter().filter(|(x, y)| (self.p(x) >= 0.5) == *y).count()
    }
}

/// The whole audit: train on the even rounds, score on the odd ones, both targets.
pub fn attack(rounds: &[TruthRound]) -> [Verdict; 2] {
    let (train_rounds, test_rounds): (Vec<TruthRound>, Vec<TruthRound>) = {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (k, r) in rounds.iter().enumerate() {
            if k % 2 == 0 { a.push(r.clone()) } else { b.push(r.clone()) }
        }
        (a, b)
    };
    let (p_train, s_train) = samples(&train_rounds);
    let (p_test, s_test) = samples(&test_rounds);
    let poster = Logistic::train(&p_train, 300);
    let same = Logistic::train(&s_train, 300);
    [verdict("poster", poster.correct(&p_test), p_test.len()), verdict("same_as_previous", same.correct(&s_test), s_test.len())]
}

/// Min-entropy per raw bit the audit supports: the smaller H of the two targets.
pub fn min_entropy(v: &[Verdict; 2]) -> f64 {
    v[0].h.min(v[1].h)
}

/// Simulated rounds for checking the attacker itself (never for a verdict on sgp).
pub mod simulate {
    use super::TruthRound;
    use crate::protocol::{Entry, Label};

    /// How each poster schedules its posts in a window of `window_us`.
    #[derive(Clone, Copy, Debug)]
    pub enum Schedule {
        /// A Poisson process of rate `rate_hz` (sgp's schedule).
        Poisson { rate_hz: f64 },
        /// The original student client: `count` posts, each after a uniform wait in
        /// `[min_gap, min_gap + spread]` (100 ms + 0–4000 ms, scaled).
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
                    .filter(|&t| t <= window_us)
                    .collect()
            }
        }
    }

    /// `rounds` rounds with alice and bob on their schedules; server times are send times
    /// plus a small jitter; the sift of secret.rs decides what is kept.
    pub fn rounds(alice: Schedule, bob: Schedule, window_us: i64, tolerance_us: i64, guard_us: i64, rounds: usize, seed: u64) -> Vec<TruthRound> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..rounds)
            .map(|_| {
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
                TruthRound { board, t_start_us: 0, t_end_us: window_us, tolerance_us, kept, by_alice }
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
        let v = verdict("x", 5000, 10_000);
        assert!((v.accuracy - 0.5).abs() < 1e-12);
        assert!((v.p_upper - (0.5 + 2.576 * (0.25f64 / 9999.0).sqrt())).abs() < 1e-12);
        assert!((v.h - -v.p_upper.log2()).abs() < 1e-12);
        assert_eq!(verdict("x", 0, 0).h, 0.0);
    }

    // τ = 1 ms, so a mean gap of 8τ per poster: the protocol's rate.
    const TOL: i64 = 1000;

    #[test]
    fn the_attacker_catches_the_original_fixed_gap_schedule() {
        // 16 posts each after 100 ms + U(0, 4000 ms), scaled ×1/100 (1 ms + U(0, 40 ms)),
        // with τ = 0.1 ms well below the smallest gap, as in the original.
        let s = Schedule::FixedGap { count: 16, min_gap_us: 1_000.0, spread_us: 40_000.0 };
        let r = rounds(s, s, 340_000, 100, 500, 700, 1);
        let v = attack(&r);
        assert!(v[1].n > 5000, "{v:?}");
        assert!(v[1].accuracy >= 0.65, "same-as-previous must be caught: {v:?}");
    }

    #[test]
    fn the_attacker_catches_unequal_rates() {
        let r = rounds(Schedule::Poisson { rate_hz: 125.0 }, Schedule::Poisson { rate_hz: 187.5 }, 400_000, TOL, 20_000, 120, 2);
        let v = attack(&r);
        assert!(v[0].n > 1500, "{v:?}");
        assert!(v[0].accuracy > 0.56, "who posted must be caught: {v:?}");
    }

    #[test]
    fn the_poisson_schedule_is_a_coin_to_the_attacker() {
        let p = Schedule::Poisson { rate_hz: 125.0 };
        let r = rounds(p, p, 400_000, TOL, 20_000, 240, 3);
        let v = attack(&r);
        for t in &v {
            assert!(t.n > 3000, "{v:?}");
            // A coin at this size: the 99 % bound of an unbiased guesser is ~0.52.
            assert!(t.p_upper < 0.53, "{v:?}");
        }
        assert!(min_entropy(&v) > 0.9);
    }
}

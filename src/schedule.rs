//! The posting schedule (docs/protocol.md §4): a Poisson process over the round window, and a
//! precise wait. A tokio timer wakes about a millisecond late, which would put a floor
//! under the gaps and tell an eavesdropper that close posts come from different posters;
//! so the wait sleeps on the runtime until shortly before, then on the thread, then spins
//! the last ~50 µs.
//!
//! It also holds the two schedules known to leak ([`Plan::FixedGap`], [`Plan::Rate`]), which
//! exist only so that the eavesdropper's audit can be shown to catch them: `sgp pair` refuses
//! them unless the environment names them on purpose ([`LEAKY_ENV`]).

use crate::clock::Clock;
use std::time::Duration;

/// The environment variable that must be `1` for `sgp pair --schedule` to take a schedule
/// other than `poisson`. Those schedules give the posters away: for testing the audit only.
pub const LEAKY_ENV: &str = "SGP_TESTING_LEAKY_SCHEDULES";

/// How a poster places its posts in a round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Plan {
    /// sgp's schedule (docs/protocol.md §4): a Poisson process at the room's rate. The default.
    Poisson,
    /// LEAKS (testing only): the original student client's schedule, 16 posts each after a
    /// uniform 0–4000 ms wait plus 100 ms, from `t_start`, all times multiplied by `scale`
    /// (1/100 in the tests: 1 ms + U(0, 40 ms), the same shape 100 times faster).
    FixedGap { scale: f64 },
    /// LEAKS (testing only): a Poisson process at `factor` times the room's rate.
    Rate { factor: f64 },
}

/// The fixed-gap schedule's posts per poster, minimum gap and spread (µs, before scaling).
pub const FIXED_GAP_POSTS: usize = 16;
pub const FIXED_GAP_MIN_US: f64 = 100_000.0;
pub const FIXED_GAP_SPREAD_US: f64 = 4_000_000.0;

impl Plan {
    /// `poisson`, `fixed-gap[:SCALE]` (default 1) or `unequal-rate[:FACTOR]` (default 1.5).
    pub fn parse(s: &str) -> Result<Plan, String> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let num = |default: f64| -> Result<f64, String> {
            match arg {
                None => Ok(default),
                Some(a) => match a.parse::<f64>() {
                    Ok(x) if x > 0.0 && x <= 100.0 => Ok(x),
                    _ => Err(format!("--schedule {s}: expected a number in (0, 100] after the colon")),
                },
            }
        };
        match name {
            "poisson" if arg.is_none() => Ok(Plan::Poisson),
            "fixed-gap" => Ok(Plan::FixedGap { scale: num(1.0)? }),
            "unequal-rate" => Ok(Plan::Rate { factor: num(1.5)? }),
            _ => Err(format!("unknown schedule {s:?} (poisson, or for testing the audit: fixed-gap[:SCALE], unequal-rate[:FACTOR])")),
        }
    }

    pub fn leaks(self) -> bool {
        self != Plan::Poisson
    }

    pub fn name(self) -> String {
        match self {
            Plan::Poisson => "poisson".into(),
            Plan::FixedGap { scale } => format!("fixed-gap:{scale}"),
            Plan::Rate { factor } => format!("unequal-rate:{factor}"),
        }
    }

    /// The round window this plan needs, in ms (the fixed-gap posts must all fit), if any.
    pub fn window_ms(self, guard_ms: f64) -> Option<u32> {
        match self {
            Plan::FixedGap { scale } => {
                let longest = FIXED_GAP_POSTS as f64 * (FIXED_GAP_MIN_US + FIXED_GAP_SPREAD_US) * scale / 1000.0;
                Some((longest + 2.0 * guard_ms + 1.0).ceil() as u32)
            }
            _ => None,
        }
    }

    /// The mean gap between this poster's posts, µs, at the room's `rate_hz`.
    pub fn mean_gap_us(self, rate_hz: f64) -> f64 {
        match self {
            Plan::Poisson => 1e6 / rate_hz,
            Plan::Rate { factor } => 1e6 / (rate_hz * factor),
            Plan::FixedGap { scale } => (FIXED_GAP_MIN_US + FIXED_GAP_SPREAD_US / 2.0) * scale,
        }
    }

    /// Planned arrival times (server µs) of one round's posts.
    pub fn times(self, t_start_us: i64, t_end_us: i64, rate_hz: f64, rng: &mut fastrand::Rng) -> Vec<i64> {
        match self {
            Plan::Poisson => poisson(t_start_us, t_end_us, rate_hz, rng),
            Plan::Rate { factor } => poisson(t_start_us, t_end_us, rate_hz * factor, rng),
            Plan::FixedGap { scale } => {
                let mut t = t_start_us as f64;
                (0..FIXED_GAP_POSTS)
                    .map(|_| {
                        t += (FIXED_GAP_MIN_US + rng.f64() * FIXED_GAP_SPREAD_US) * scale;
                        t.round() as i64
                    })
                    .filter(|&t| t <= t_end_us)
                    .collect()
            }
        }
    }
}

/// Arrival times of a Poisson process of rate `rate_hz` over `[t_start_us, t_end_us]`:
/// exponential gaps from `t_start`, stopping at `t_end`. No minimum gap, no fixed count.
pub fn poisson(t_start_us: i64, t_end_us: i64, rate_hz: f64, rng: &mut fastrand::Rng) -> Vec<i64> {
    let mut out = Vec::new();
    if !(rate_hz > 0.0) || t_end_us < t_start_us {
        return out;
    }
    let mean_us = 1e6 / rate_hz;
    let mut t = t_start_us as f64;
    loop {
        // 1 − U is in (0, 1]: ln never sees 0.
        t += -(1.0 - rng.f64()).ln() * mean_us;
        if t > t_end_us as f64 {
            return out;
        }
        out.push(t.round() as i64);
    }
}

/// Below this much time left, stop sleeping and spin.
const SPIN_US: i64 = 50;
/// The runtime's timer is trusted to wake no later than this.
const RUNTIME_SLACK_US: i64 = 2_000;

/// Returns when `clock` reads `target_us` or later.
pub async fn wait_until(clock: &Clock, target_us: i64) {
    let left = target_us - clock.now_us();
    if left > RUNTIME_SLACK_US {
        tokio::time::sleep(Duration::from_micros((left - RUNTIME_SLACK_US) as u64)).await;
    }
    wait_precisely(clock, target_us);
}

/// The blocking tail of `wait_until`: a thread sleep, then a spin.
pub fn wait_precisely(clock: &Clock, target_us: i64) {
    let left = target_us - clock.now_us();
    if left > SPIN_US {
        std::thread::sleep(Duration::from_micros((left - SPIN_US) as u64));
    }
    while clock.now_us() < target_us {
        std::hint::spin_loop();
    }
}

/// Labels from the operating system's generator: these bits make the secret.
pub fn os_labels(n: usize) -> Result<Vec<crate::protocol::Label>, String> {
    let mut bytes = vec![0u8; n.div_ceil(8)];
    getrandom::fill(&mut bytes).map_err(|e| format!("the OS random generator failed: {e}"))?;
    Ok((0..n)
        .map(|k| if bytes[k / 8] >> (k % 8) & 1 == 0 { crate::protocol::Label::A } else { crate::protocol::Label::B })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_has_the_right_rate_and_no_minimum_gap() {
        let mut rng = fastrand::Rng::with_seed(11);
        let t = poisson(0, 100_000_000, 500.0, &mut rng); // 100 s at 500 Hz
        let n = t.len() as f64;
        assert!((n - 50_000.0).abs() < 5.0 * 50_000f64.sqrt(), "{n}");
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        assert!(t.iter().all(|&x| (0..=100_000_000).contains(&x)));
        // Exponential gaps: P(gap < mean/10) = 1 − e^(−0.1) ≈ 9.5 %.
        let short = t.windows(2).filter(|w| w[1] - w[0] < 200).count() as f64 / n;
        assert!((0.08..0.11).contains(&short), "{short}");
        assert!(poisson(10, 5, 500.0, &mut rng).is_empty());
        assert!(poisson(0, 1000, 0.0, &mut rng).is_empty());
        assert!(poisson(0, 1000, f64::NAN, &mut rng).is_empty());
    }

    #[test]
    fn plans_parse_and_keep_their_shape() {
        assert_eq!(Plan::parse("poisson"), Ok(Plan::Poisson));
        assert_eq!(Plan::parse("fixed-gap:0.01"), Ok(Plan::FixedGap { scale: 0.01 }));
        assert_eq!(Plan::parse("unequal-rate"), Ok(Plan::Rate { factor: 1.5 }));
        for bad in ["", "poisson:2", "fixed-gap:0", "fixed-gap:x", "fast", "unequal-rate:1000"] {
            assert!(Plan::parse(bad).is_err(), "{bad}");
        }
        assert!(!Plan::Poisson.leaks() && Plan::FixedGap { scale: 1.0 }.leaks());
        let mut rng = fastrand::Rng::with_seed(4);
        let p = Plan::FixedGap { scale: 0.01 };
        let window = p.window_ms(5.0).unwrap();
        assert_eq!(window, 667);
        for _ in 0..100 {
            let t = p.times(0, window as i64 * 1000, 500.0, &mut rng);
            assert_eq!(t.len(), 16, "all 16 posts fit");
            assert!(t.windows(2).all(|w| (1000..=41_000).contains(&(w[1] - w[0]))), "{t:?}");
        }
        let fast = Plan::Rate { factor: 1.5 }.times(0, 100_000_000, 100.0, &mut rng).len() as f64;
        assert!((fast - 15_000.0).abs() < 5.0 * 15_000f64.sqrt(), "{fast}");
    }

    #[test]
    fn labels_are_both_kinds() {
        let l = os_labels(1000).unwrap();
        let a = l.iter().filter(|&&x| x == crate::protocol::Label::A).count();
        assert!((400..600).contains(&a), "{a}");
    }

    #[test]
    fn wait_is_never_early() {
        let c = Clock::new();
        for d in [0, 50, 400, 3000] {
            let target = c.now_us() + d;
            wait_precisely(&c, target);
            assert!(c.now_us() >= target);
        }
    }
}

//! The posting schedule (PROTOCOL §5): a Poisson process over the round window, and a
//! precise wait. A tokio timer wakes about a millisecond late, which would put a floor
//! under the gaps and tell an eavesdropper that close posts come from different posters;
//! so the wait sleeps on the runtime until shortly before, then on the thread, then spins
//! the last ~50 µs.

use crate::clock::Clock;
use std::time::Duration;

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

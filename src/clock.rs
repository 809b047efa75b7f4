//! Time: the process clock (µs since the Unix epoch that never jumps) and clock sync
//! (NTP/Cristian over `ping`/`pong`, docs/protocol.md §2). The sync arithmetic is pure.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The wall clock read once at start-up plus a monotonic clock's elapsed time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall0_us: i64,
    t0: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let t0 = Instant::now();
        let wall0_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        Clock { wall0_us, t0 }
    }

    /// Microseconds since the Unix epoch, monotonic.
    pub fn now_us(&self) -> i64 {
        self.wall0_us + self.t0.elapsed().as_micros() as i64
    }

    /// The `Instant` at which `now_us()` will read `t_us` (for timers).
    pub fn instant_at(&self, t_us: i64) -> Instant {
        let d = t_us - self.wall0_us;
        if d <= 0 {
            self.t0
        } else {
            self.t0 + std::time::Duration::from_micros(d as u64)
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// One ping/pong exchange: client send t0, server receive t1, server send t2, client receive t3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncSample {
    /// server clock − client clock
    pub offset_us: i64,
    /// round trip minus the server's hold time
    pub delay_us: i64,
}

pub fn sample(t0: i64, t1: i64, t2: i64, t3: i64) -> SyncSample {
    SyncSample {
        offset_us: ((t1 - t0) + (t2 - t3)).div_euclid(2),
        delay_us: (t3 - t0) - (t2 - t1),
    }
}

/// The sample with the smallest delay (its offset is the least disturbed by queueing).
pub fn best(samples: &[SyncSample]) -> Option<SyncSample> {
    samples.iter().copied().min_by_key(|s| s.delay_us)
}

/// Samples a client takes per sync (docs/protocol.md §2).
pub const SYNC_SAMPLES: usize = 16;

/// The tolerance (ms) a terminal creator picks when not told: the default-tolerance rule
/// (`tolerance::tolerance_rule`, one definition with the page's) from its round trips alone,
/// at the terminal's floor: six times how far the median round trip lies above the quickest
/// (a measure of this path's jitter), at least 0.1 ms (what loopback and a quiet wired LAN
/// sustain, BENCHMARKS.md) and at most 5 ms, in steps of 10 µs. A busy machine or a wireless
/// hop thus gets a wider tolerance by itself.
pub fn auto_tolerance_ms(samples: &[SyncSample]) -> f64 {
    let d: Vec<i64> = samples.iter().map(|s| s.delay_us).collect();
    crate::tolerance::tolerance_rule(crate::tolerance::TERMINAL_FLOOR_MS, None, &d).ms
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_automatic_tolerance_follows_the_round_trip_spread() {
        let at = |delays: &[i64]| super::auto_tolerance_ms(&delays.iter().map(|&d| super::SyncSample { offset_us: 0, delay_us: d }).collect::<Vec<_>>());
        // Loopback: a few µs of spread → the floor.
        assert_eq!(at(&[60, 62, 61, 70, 64, 66, 63, 90]), 0.1);
        // A busy machine: median 40 µs above the quickest → 0.24 ms.
        assert_eq!(at(&[50, 60, 90, 95, 88, 70, 300, 91]), 0.24);
        // A wireless hop: milliseconds → capped at 5 ms.
        assert_eq!(at(&[2_000, 9_000, 4_000, 30_000]), 5.0);
        assert_eq!(at(&[]), 0.1);
        // Rounded up to 10 µs.
        assert_eq!(at(&[100, 117, 130]), 0.11);
    }

    use super::*;

    #[test]
    fn sample_recovers_offset_and_delay() {
        // Server 1000 µs ahead, 40 µs each way, 10 µs hold.
        let s = sample(0, 1040, 1050, 90);
        assert_eq!(s, SyncSample { offset_us: 1000, delay_us: 80 });
    }

    #[test]
    fn best_takes_smallest_delay() {
        let v = [sample(0, 1040, 1050, 90), sample(0, 1020, 1021, 41), sample(0, 1500, 1500, 600)];
        assert_eq!(best(&v), Some(SyncSample { offset_us: 1000, delay_us: 40 }));
        assert_eq!(best(&[]), None);
    }

    #[test]
    fn clock_is_monotonic_and_near_wall_time() {
        let c = Clock::new();
        let a = c.now_us();
        let b = c.now_us();
        assert!(b >= a);
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
        assert!((wall - a).abs() < 5_000_000);
    }
}

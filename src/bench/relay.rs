//! The delay relay of `sgp bench net` (and the hidden `sgp bench relay`): a TCP relay that
//! makes one network path between a poster and the server, for kernels without `tc netem`.
//!
//! It accepts on a listen address and, for each connection, connects to the target and
//! pumps both directions. Every chunk read is released at `arrival + U(D − J, D + J)`, never
//! before the previous chunk of the same direction: TCP delivers in order, so a chunk that
//! drew a short delay waits for the one before it.
//!
//! Loss and reordering are what the application sees of them over TCP, since the relay sits
//! above TCP and cannot drop a byte:
//!
//! - **loss** `p`: with probability `p` a chunk is held an extra retransmission timeout,
//!   `RTO_MIN + D` (Linux's minimum RTO, 200 ms, plus the path's delay); everything behind
//!   it waits too (in order). This is the timeout path; a busy stream would often recover
//!   sooner by fast retransmit (three duplicate ACKs, about one round trip), so the model
//!   is on the pessimistic side.
//! - **reordering** `p`: the receiver's reassembly hides it; with probability `p` a chunk
//!   is held an extra `2·J` (the next segment arrived first and this one is waited for).
//!
//! Threads, not tokio tasks: tokio's timer ticks in whole milliseconds, and the `lan`
//! profile's path is 0.2 ms ± 0.05 ms. Each direction has a reader thread and a writer
//! thread that sleeps to each release time with a timer slack of 1 ns.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Linux's minimum retransmission timeout (`TCP_RTO_MIN`).
pub const RTO_MIN: Duration = Duration::from_millis(200);

/// One direction of a path (the same each way).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spec {
    pub delay_ms: f64,
    pub jitter_ms: f64,
    /// Probability that a chunk is held a retransmission timeout (0 to 1).
    pub loss: f64,
    /// Probability that a chunk is held `2·J` behind a segment that overtook it (0 to 1).
    pub reorder: f64,
}

impl Spec {
    /// Delay and jitter finite, `0 ≤ J ≤ D ≤ 10 s`, probabilities in [0, 1].
    pub fn check(&self) -> Result<(), String> {
        let Spec { delay_ms: d, jitter_ms: j, loss, reorder } = *self;
        if !(0.0..=10_000.0).contains(&d) {
            return Err(format!("--delay-ms {d}: takes 0 to 10000"));
        }
        if !(0.0..=d).contains(&j) {
            return Err(format!("--jitter-ms {j}: takes 0 to the delay ({d}): a delay may not go below zero"));
        }
        for (name, p) in [("--loss", loss), ("--reorder", reorder)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} {p}: a probability, 0 to 1"));
            }
        }
        Ok(())
    }

    /// How long a chunk that arrives now is held (before the in-order rule).
    pub fn hold(&self, rng: &mut fastrand::Rng) -> Duration {
        let mut ms = self.delay_ms + self.jitter_ms * (2.0 * rng.f64() - 1.0);
        if rng.f64() < self.loss {
            ms += RTO_MIN.as_secs_f64() * 1000.0 + self.delay_ms;
        }
        if rng.f64() < self.reorder {
            ms += 2.0 * self.jitter_ms;
        }
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// `D±J ms` and the loss and reordering if any, for tables.
    pub fn describe(&self) -> String {
        let mut s = format!("{}±{} ms", self.delay_ms, self.jitter_ms);
        if self.loss > 0.0 {
            s += &format!(", {}% loss", self.loss * 100.0);
        }
        if self.reorder > 0.0 {
            s += &format!(", {}% reorder", self.reorder * 100.0);
        }
        s
    }
}

/// Accepts on `listener` forever, relaying each connection to `target` through `spec`.
pub fn serve(listener: TcpListener, target: SocketAddr, spec: Spec) -> std::io::Result<()> {
    loop {
        let (client, _) = listener.accept()?;
        let seed = fastrand::u64(..);
        std::thread::spawn(move || connection(client, target, spec, seed));
    }
}

fn connection(client: TcpStream, target: SocketAddr, spec: Spec, seed: u64) {
    let Ok(upstream) = TcpStream::connect(target) else { return };
    let clones = (|| Some((client.try_clone().ok()?, upstream.try_clone().ok()?)))();
    let Some((client2, upstream2)) = clones else { return };
    for s in [&client, &upstream] {
        let _ = s.set_nodelay(true);
    }
    let up = std::thread::spawn(move || pump(client, upstream, spec, fastrand::Rng::with_seed(seed)));
    pump(upstream2, client2, spec, fastrand::Rng::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15));
    let _ = up.join();
}

/// Reads `src`, writes `dst`, each chunk held as `spec` says and in order; on the end of
/// `src` the writer drains and half-closes `dst`; on an error both sockets are shut down.
fn pump(mut src: TcpStream, dst: TcpStream, spec: Spec, mut rng: fastrand::Rng) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        let mut dst = dst;
        set_fine_timer_slack();
        for (release, data) in rx {
            let left = release.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                std::thread::sleep(left);
            }
            if dst.write_all(&data).is_err() {
                let _ = dst.shutdown(Shutdown::Both);
                return;
            }
        }
        let _ = dst.shutdown(Shutdown::Write);
    });
    let mut last = Instant::now();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let release = (Instant::now() + spec.hold(&mut rng)).max(last);
        last = release;
        if tx.send((release, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = src.shutdown(Shutdown::Read);
}

/// Timer slack of 1 ns for this thread: a sleep ends within tens of µs of its deadline
/// instead of the default 50 µs later.
fn set_fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and changes only this thread's slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

/// `sgp bench relay`: listens, prints `listening PORT`, and relays until killed.
pub fn run(listen: SocketAddr, target: SocketAddr, spec: Spec) -> Result<(), String> {
    spec.check()?;
    let listener = TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    println!("listening {port}");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    serve(listener, target, spec).map_err(|e| format!("relay: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_stay_within_the_model() {
        let mut rng = fastrand::Rng::with_seed(7);
        let plain = Spec { delay_ms: 3.0, jitter_ms: 2.0, loss: 0.0, reorder: 0.0 };
        for _ in 0..1000 {
            let h = plain.hold(&mut rng).as_secs_f64() * 1000.0;
            assert!((1.0..=5.0).contains(&h), "{h}");
        }
        let lossy = Spec { loss: 1.0, ..plain };
        for _ in 0..100 {
            let h = lossy.hold(&mut rng).as_secs_f64() * 1000.0;
            assert!((204.0..=208.0).contains(&h), "{h}");
        }
        let reordered = Spec { reorder: 1.0, ..plain };
        for _ in 0..100 {
            let h = reordered.hold(&mut rng).as_secs_f64() * 1000.0;
            assert!((5.0..=9.0).contains(&h), "{h}");
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        let ok = Spec { delay_ms: 1.0, jitter_ms: 1.0, loss: 0.0, reorder: 1.0 };
        assert!(ok.check().is_ok());
        for bad in [
            Spec { delay_ms: -1.0, ..ok },
            Spec { jitter_ms: 2.0, ..ok },
            Spec { loss: 1.5, ..ok },
            Spec { reorder: -0.1, ..ok },
            Spec { delay_ms: f64::NAN, ..ok },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}

//! Keys in the field (issue 14): two `sgp pair` make a key while two busy loops hold the
//! machine's two cores. Before τ and the rate followed the rounds, this made no key at all
//! (every round late or out of sync, exit 6). A generous limit, not a timing assertion: the
//! figures are in BENCHMARKS.md ("Field profiles").

mod common;
use common::*;
use std::process::{Child, Command};
use std::time::Duration;

/// Busy loops that end with the test, however it ends.
struct Busy(Vec<Child>);

impl Busy {
    fn start(n: usize) -> Busy {
        Busy((0..n).map(|_| Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("spawn sh")).collect())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn two_posters_make_a_key_on_a_busy_machine() {
    let server = Server::start(&[]);
    let busy = Busy::start(2);
    // Defaults as a user runs them: τ from the measured path, the default retries.
    let (creator, code, rest) = spawn_creator(&server, &[]);
    let joiner = spawn_pair(&server, &["--room", &code]);
    let reader = read_rest(rest);
    let b = wait_output(joiner, Duration::from_secs(240));
    let a = wait_output(creator, Duration::from_secs(30));
    drop(busy);
    let head = reader.join().unwrap();
    let (ka, kb) = (key_of(&a, &head), key_of(&b, ""));
    assert_eq!(ka["key"], kb["key"], "both sides must hold the same key");
    assert_eq!(ka["confirmed"], true);
    assert!(ka["strength"].as_u64().unwrap_or(0) >= 256, "{ka}");
    // Every round line says the τ and rate it ran at.
    let rounds: Vec<_> = json_lines(&head).into_iter().filter_map(|v| v.get("round").cloned()).collect();
    assert!(!rounds.is_empty());
    for r in &rounds {
        assert!(r["tolerance_ms"].as_f64().is_some_and(|t| t > 0.0) && r["rate_hz"].as_f64().is_some_and(|h| h > 0.0), "{r}");
    }
}

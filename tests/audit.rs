//! The eavesdropper's audit, small and end to end (issue 7): a real `sgp serve`, pairs of
//! `sgp pair --record` on each schedule with `sgp eve --record` watching, then
//! `sgp eve --attack --json` on the files. The leaky testing schedules must be caught (the
//! attacker beats a coin significantly) and the Poisson schedule must look like a coin, at the
//! looser bound its size allows (`audit::coin_threshold`, computed from N). The full audit, at
//! ≥ 100 000 entries per target, is `make audit` (SECURITY.md).

mod common;
use common::*;
use serde_json::Value;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sgp-audit-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits for children until `deadline`, then interrupts those still running, all at once
/// (Ctrl-C: each saves its record and exits); kills them 10 s later if they are still
/// there. Returns their outputs and whether they were interrupted.
fn finish(mut children: Vec<std::process::Child>, deadline: Instant) -> (Vec<std::process::Output>, bool) {
    let mut interrupted = false;
    loop {
        if children.iter_mut().all(|c| c.try_wait().unwrap().is_some()) {
            return (children.into_iter().map(|c| c.wait_with_output().unwrap()).collect(), interrupted);
        }
        let now = Instant::now();
        if now > deadline + Duration::from_secs(10) {
            children.iter_mut().for_each(|c| drop(c.kill()));
        } else if now > deadline && !interrupted {
            for c in &mut children {
                if c.try_wait().unwrap().is_none() {
                    // SAFETY: kill(2) on our own child's pid, with a plain signal number.
                    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
                }
            }
            interrupted = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One room: a creator with `alice` args, eve recording, a joiner with `bob` args, all with
/// `--record`, for at most `limit` (then interrupted). Returns the three record files (alice,
/// bob, eve).
fn recorded_pair(server: &Server, d: &Path, alice: &[&str], bob: &[&str], limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let path = |who: &str| d.join(format!("{who}.json")).to_str().unwrap().to_string();
    let (pa, pb, pe) = (path("alice"), path("bob"), path("eve"));
    let mut args_a = vec!["--record", pa.as_str(), "--retries", "200"];
    args_a.extend_from_slice(alice);
    let mut creator = poster(server, &args_a);
    let mut rest = std::io::BufReader::new(creator.stdout.take().unwrap());
    let mut first = String::new();
    rest.read_line(&mut first).unwrap();
    let code = serde_json::from_str::<Value>(&first).ok().and_then(|v| v["room"]["code"].as_str().map(String::from)).unwrap_or_else(|| panic!("first line: {first:?}"));
    let (eve, eve_out) = spawn_eve(server, &code, &["--record", &pe]);
    let eve_rest = read_rest(eve_out);
    let mut args_b = vec!["--room", code.as_str(), "--record", pb.as_str(), "--retries", "200"];
    args_b.extend_from_slice(bob);
    let joiner = poster(server, &args_b);
    let rest = read_rest(rest);
    let t = Instant::now();
    let (outs, stopped) = finish(vec![creator, joiner], deadline);
    let (a, b) = (&outs[0], &outs[1]);
    eprintln!("pair {alice:?} / {bob:?}: {:?}{}", t.elapsed(), if stopped { ", interrupted" } else { "" });
    if stopped {
        for (out, who) in [(a, "alice"), (b, "bob")] {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() || err.contains("interrupted") || err.contains("peer left"), "{who}: {err}");
        }
    } else {
        key_of(a, &format!("{first}{}", rest.join().unwrap()));
        key_of(b, "");
    }
    let (e, _) = finish(vec![eve], Instant::now() + Duration::from_secs(5));
    assert!(e[0].status.success(), "eve: {:?}", e[0].status);
    let _ = eve_rest.join();
    vec![pa, pb, pe]
}

/// `sgp pair --json`, allowed the testing schedules.
fn poster(server: &Server, args: &[&str]) -> std::process::Child {
    Command::new(SGP)
        .args(["pair", "--json", "--server", &server.url()])
        .args(args)
        .env("SGP_TESTING_LEAKY_SCHEDULES", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Rounds in the posters' records among `files`.
fn poster_rounds(files: &[String]) -> u64 {
    files
        .iter()
        .map(|p| serde_json::from_str::<Value>(&std::fs::read_to_string(p).unwrap()).unwrap())
        .filter(|d| d["role"] != "observer")
        .map(|d| d["rounds"].as_array().map_or(0, |r| r.len() as u64))
        .sum()
}

fn attack(files: &[String]) -> Value {
    let t = std::time::Instant::now();
    let out = Command::new(SGP).args(["eve", "--attack", "--json"]).args(files).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains(r#""late":"#) || out.status.success(), "{}{err}", BUSY);
    assert!(out.status.success(), "eve --attack failed: {err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("eve --attack on {} files ({:?}): {v}", files.len(), t.elapsed());
    let (late, joined) = (v["dropped"]["late"].as_u64().unwrap_or(0), v["joined"].as_u64().unwrap_or(0));
    assert!(late <= 3 * joined.max(1), "{BUSY}{late} rounds dropped as late, {joined} used: {v}");
    v
}

/// A poster that falls more than half a mean gap behind its schedule drops the round
/// (SECURITY.md): on a machine whose other work keeps the posters waiting for tens of ms,
/// too few rounds are left to audit. That is the client doing its job, but this test cannot.
const BUSY: &str = "the machine is too busy for sgp to keep its posting schedule (posts tens of ms late), so most rounds were dropped; rerun the test on a quieter machine. ";

fn verdict<'a>(report: &'a Value, target: &str) -> &'a Value {
    report["audit"]["verdicts"].as_array().unwrap().iter().find(|v| v["target"] == target).unwrap()
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// Each record is private, every round's `done` left after the last post by a fixed quiet
/// time, and the join used every round with the room's relayed-message timing.
fn check_records(files: &[String], report: &Value) {
    for p in files {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{p} is key material: mode {mode:o}");
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        for r in doc["rounds"].as_array().into_iter().flatten() {
            let (Some(done), Some(last)) = (r["done_us"].as_i64(), r["posts"].as_array().unwrap().iter().filter_map(|p| p["sent_us"].as_i64()).max()) else {
                continue;
            };
            // 500 µs by construction (DONE_QUIET_US), less a stall between the check and the send.
            assert!(done - last >= 300, "done {done} only {} µs after the last post", done - last);
        }
    }
    let joined = report["joined"].as_u64().unwrap();
    assert!(joined > 0);
    assert_eq!(report["relayed_from"]["observer"].as_u64(), Some(joined), "eve's record timed every round: {report}");
    assert_eq!(report["dropped"]["duplicate"], 0);
}

#[test]
fn leaky_schedules_are_refused_without_the_testing_switch() {
    let out = Command::new(SGP).args(["pair", "--schedule", "fixed-gap:0.01"]).env_remove("SGP_TESTING_LEAKY_SCHEDULES").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SGP_TESTING_LEAKY_SCHEDULES=1"));
    let out = Command::new(SGP).args(["pair", "--schedule", "sometimes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_small_audit_catches_the_leaky_schedules_and_sees_a_coin_in_poisson() {
    let server = Server::start(&[]);
    // A poster that falls more than half a mean gap behind its schedule drops the round, and
    // a debug build on a machine busy with other work is often several ms late: so the
    // honest rooms run at τ = 5 ms (25 Hz each, 20 ms of slack) in 2 s rounds.
    let (d_poisson, d_fixed, d_fixed2, d_rate, d_rate2) = (dir("poisson"), dir("fixed-gap"), dir("fixed-gap-2"), dir("unequal-rate"), dir("unequal-rate-2"));
    // Five rooms at once, each a real pair through the same server.
    // Bounded in time whatever the machine's load: a busy machine drops more rounds (desync).
    let limit = Duration::from_secs(60);
    let poisson = {
        let (s, d) = (&server, &d_poisson);
        move || recorded_pair(s, d, &["--tolerance-ms", "5", "--target-bits", "2500", "--duration-ms", "2000"], &[], limit)
    };
    // 16 posts each after 100 ms + U(0, 4 s), scaled ×1/100: the same shape 100 times
    // faster. Two rooms: these rounds are long and hold few entries.
    let fixed = |d: &'static Path| {
        let s = &server;
        move || recorded_pair(s, d, &["--schedule", "fixed-gap:0.01", "--target-bits", "700"], &["--schedule", "fixed-gap:0.01"], limit)
    };
    // Bob at twice alice's rate (the full audit has 1 : 1.5; at this size 1 : 2 leaves a
    // wider margin: nobody can beat 2/3 there, and the coin's bar is ~0.58). τ = 8 ms, so
    // that bob, at 31 Hz, may be 16 ms late; 2 s rounds, so that there are enough of them
    // to split. Two rooms.
    let rate = |d: &'static Path| {
        let s = &server;
        move || recorded_pair(s, d, &["--tolerance-ms", "8", "--target-bits", "2500", "--duration-ms", "2000"], &["--schedule", "unequal-rate:2"], limit)
    };
    let leak = |p: PathBuf| -> &'static Path { Box::leak(p.into_boxed_path()) };
    let (d_fixed, d_fixed2, d_rate, d_rate2) = (leak(d_fixed), leak(d_fixed2), leak(d_rate), leak(d_rate2));
    let (fp, ff, fr) = std::thread::scope(|sc| {
        let a = sc.spawn(poisson);
        let b = sc.spawn(fixed(d_fixed));
        let b2 = sc.spawn(fixed(d_fixed2));
        let c = sc.spawn(rate(d_rate));
        let c2 = sc.spawn(rate(d_rate2));
        let mut ff = b.join().unwrap();
        ff.extend(b2.join().unwrap());
        let mut fr = c.join().unwrap();
        fr.extend(c2.join().unwrap());
        (a.join().unwrap(), ff, fr)
    });

    // Poisson: a coin on both targets, at this size's bound.
    let rp = attack(&fp);
    check_records(&fp, &rp);
    for t in ["poster", "same_as_previous"] {
        let v = verdict(&rp, t);
        assert!(v["n"].as_u64().unwrap() >= 250, "{t}: too few scored entries: {v}");
        assert_eq!(v["beats_coin"], false, "the Poisson schedule must look like a coin to the attacker ({t}): {v}");
        assert!(f(v, "accuracy") <= f(v, "coin_threshold") && f(v, "h") <= 1.0, "{v}");
    }
    assert_eq!(rp["audit"]["coin_like"], true);
    assert_eq!(rp["audit"]["enough"], false, "a small audit is not the full one");

    // Fixed gaps: caught by same-as-previous (the symmetric leak).
    let rf = attack(&ff);
    check_records(&ff, &rf);
    let v = verdict(&rf, "same_as_previous");
    assert!(v["n"].as_u64().unwrap() >= 500, "{v}");
    assert_eq!(v["beats_coin"], true, "the fixed-gap schedule must be caught: {v}");
    assert!(f(v, "accuracy") >= 0.6, "{v}");

    // Unequal rates: caught by who-posted (the asymmetric leak).
    let rr = attack(&fr);
    check_records(&fr, &rr);
    let v = verdict(&rr, "poster");
    assert!(v["n"].as_u64().unwrap() >= 200, "{v}");
    assert_eq!(v["beats_coin"], true, "unequal rates must be caught: {v}");

    // The same files twice: every copy is left out, and the verdict does not move.
    let mut twice = ff.clone();
    twice.extend(ff.iter().cloned());
    let r2 = attack(&twice);
    assert_eq!(r2["dropped"]["duplicate"].as_u64(), Some(poster_rounds(&ff)), "{r2}");
    assert_eq!(r2["audit"]["verdicts"], rf["audit"]["verdicts"]);

    for d in [d_poisson.as_path(), d_fixed, d_fixed2, d_rate, d_rate2] {
        let _ = std::fs::remove_dir_all(d);
    }
}

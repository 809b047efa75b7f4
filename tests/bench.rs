//! `sgp bench`: each subcommand once, at a tiny size, against the real binary (which starts
//! its own server). The output is checked for shape and sanity, never for speed: the
//! machine running the tests may be busy.

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SGP: &str = env!("CARGO_BIN_EXE_sgp");

/// Runs `sgp bench ARGS --json` (killed after `limit`) and returns its one JSON object.
fn bench(args: &[&str], limit: Duration) -> Value {
    let mut child = Command::new(SGP)
        .arg("bench")
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sgp bench");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "sgp bench {args:?} failed ({:?})\nstdout: {stdout}\nstderr: {stderr}", out.status);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line expected: {stdout}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} is not a number in {v}"))
}

/// `field_p50 ≤ … ≤ field_max`, all ≥ 0, for the given suffixes.
fn ordered(v: &Value, prefix: &str, suffixes: &[&str]) {
    let xs: Vec<f64> = suffixes.iter().map(|s| num(v, &format!("{prefix}{s}"))).collect();
    assert!(xs[0] >= 0.0, "{prefix}: {xs:?} in {v}");
    assert!(xs.windows(2).all(|w| w[0] <= w[1]), "{prefix}: {xs:?} not in order in {v}");
}

/// A key row: times in order, counts that add up, rates and fractions in range.
fn key_row(v: &Value, pairs: u64, guards: &[Value]) {
    assert_eq!(v["pairs"], pairs);
    let failed = v["failed"].as_u64().unwrap();
    assert!(failed < pairs, "every pair failed: {v}");
    ordered(v, "time_to_key_ms_", &["p50", "p90", "max"]);
    assert!(num(v, "time_to_key_ms_p50") > 0.0);
    let rounds = num(v, "rounds_per_key") * (pairs - failed) as f64;
    assert!(rounds >= (pairs - failed) as f64, "{v}");
    for k in ["dropped_round_rate", "confirm_failure_rate"] {
        assert!((0.0..=1.0).contains(&num(v, k)), "{k} in {v}");
    }
    // Every dropped round has one cause, and there are no more of them than rounds.
    let dropped: u64 = ["dropped_late", "dropped_desync", "dropped_other"].iter().map(|k| v[*k].as_u64().unwrap()).sum();
    assert!((dropped as f64 - num(v, "dropped_round_rate") * rounds).abs() < 1.0, "{v}");
    // The rounds counted for each key hold exactly the key's kept entries.
    assert_eq!(v["ledger_mismatches"], 0, "{v}");
    let kept = num(v, "kept_entries");
    assert!(kept > 0.0 && num(v, "kept_per_s_of_posting") > 0.0, "{v}");
    // Over all rounds ≤ over the rounds that counted ≤ over those less their guards.
    ordered(v, "kept_fraction_", &["of_limit", "counted_rounds", "inside_guards"]);
    // `1/(4τe)` is the expected rate of the sift at the default posting rate: a few hundred
    // entries may pass it by chance, not by more than 4 standard deviations.
    let f = num(v, "kept_fraction_inside_guards");
    assert!(f > 0.0 && f < 1.0 + 4.0 / kept.sqrt(), "{v}");
    // The records were read: arrival errors in order, and the guard table is consistent.
    assert!(v["recorded_rounds"].as_u64().unwrap() > 0, "{v}");
    ordered(v, "arrival_abs_us_", &["p99", "p999", "max"]);
    assert!(guards.len() >= 2);
    for w in guards.windows(2) {
        assert!(num(&w[0], "guard_ms") < num(&w[1], "guard_ms"));
        // A wider guard keeps fewer entries and would have refused fewer posts.
        assert!(num(&w[0], "kept_vs_g0") >= num(&w[1], "kept_vs_g0"), "{v}");
        assert!(num(&w[0], "rounds_with_refusals") >= num(&w[1], "rounds_with_refusals"), "{v}");
    }
    assert_eq!(num(&guards[0], "kept_vs_g0"), 1.0);
    // The server took posts only within [t_start − G, t_end + G]: at the room's own guard,
    // no entry lies outside.
    assert_eq!(v["room_guard_refused_rounds"], 0, "{v}");
    let (lo, hi) = (num(v, "tolerance_ms_min"), num(v, "tolerance_ms_max"));
    assert!(lo <= num(v, "tolerance_ms") && num(v, "tolerance_ms") <= hi, "{v}");
}

#[test]
fn key_and_sweep() {
    let v = bench(&["key", "--pairs", "2", "--target-bits", "64"], Duration::from_secs(90));
    key_row(&v, 2, v["guards"].as_array().unwrap());
    assert_eq!(v["target_bits"], 64);
    // sgp pair picks the tolerance from its round trips: 0.1 ms at least, 5 ms at most.
    let tol = num(&v, "tolerance_ms");
    assert!((0.1..=5.0).contains(&tol), "{v}");
    assert_eq!(v["tolerance_chosen_by"], "sgp pair (measured)");

    let v = bench(&["sweep", "--tolerances", "0.5,1", "--pairs", "1", "--target-bits", "64"], Duration::from_secs(90));
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["tolerance_ms"], 0.5);
    assert_eq!(rows[1]["tolerance_ms"], 1.0);
    let guards = v["guards"].as_array().unwrap();
    for r in rows {
        let mine: Vec<Value> = guards.iter().filter(|g| g["tolerance_ms"] == r["tolerance_ms"]).cloned().collect();
        key_row(r, 1, &mine);
        assert_eq!(num(r, "guard_ms"), (20.0 * num(r, "tolerance_ms")).max(2.0));
        assert!(r.get("guards").is_none(), "the guard tables are moved out of the rows: {r}");
    }
    assert_eq!(v["pairs_per_tolerance"], 1);
    assert!(guards.iter().all(|g| g["tolerance_ms"] == 0.5 || g["tolerance_ms"] == 1.0));
}

/// The prober's figures in a jitter row: counts that add up, raw and bias-removed errors.
fn probe_row(p: &Value, at_rest: bool) {
    let posts = p["probe_posts"].as_u64().unwrap();
    assert!(posts > 0, "{p}");
    let (on_board, errors, coalesced) =
        (p["probe_on_board"].as_u64().unwrap(), p["probe_errors"].as_u64().unwrap(), p["probe_coalesced"].as_u64().unwrap());
    assert!(p["probe_skipped"].is_u64(), "{p}");
    if at_rest {
        // Every post sent reaches the board; each has an error of its own or was coalesced.
        assert_eq!(on_board, posts, "{p}");
        assert_eq!(p["probe_refused"], 0, "{p}");
        assert_eq!(errors + coalesced, posts, "{p}");
    } else {
        assert!(on_board <= posts && errors + coalesced <= posts, "{p}");
    }
    assert!(errors > 0, "{p}");
    ordered(p, "raw_abs_us_", &["p50", "p99", "p999", "max"]);
    let (lo, mid, hi) = (num(p, "raw_err_us_min"), num(p, "raw_err_us_median"), num(p, "raw_err_us_max"));
    assert!(lo <= mid && mid <= hi, "{p}");
    assert_eq!(lo.abs().max(hi.abs()), num(p, "raw_abs_us_max"), "{p}");
    ordered(p, "dev_us_", &["p50", "p99", "p999", "max"]);
    // A working clock sync puts a loopback post within milliseconds of its prediction.
    assert!(num(p, "raw_abs_us_p50") < 5_000.0 && num(p, "bias_us").abs() < 5_000.0, "{p}");
}

/// A row with loader rooms: they posted, the server put posts on boards, no more than offered.
fn load_row(p: &Value) {
    for k in ["offered_per_s", "sent_per_s", "accepted_per_s"] {
        assert!(num(p, k) > 0.0, "{k} in {p}");
    }
    // Loaders post at a steady rate and never catch up in a burst (a little slack for the
    // edges of the counted window).
    assert!(num(p, "sent_per_s") <= 1.05 * num(p, "offered_per_s"), "{p}");
    assert!(num(p, "accepted_per_s") <= 1.05 * num(p, "offered_per_s"), "{p}");
    assert!(p["on_boards"].as_u64().unwrap() > 0, "{p}");
    assert!(p["rate_limited"].as_u64().unwrap() <= p["refused"].as_u64().unwrap(), "{p}");
    // We started the server, so its CPU time is known.
    assert!(num(p, "server_cpu_pct") >= 0.0);
    assert!(num(p, "server_cpu_us_per_post") >= 0.0);
}

#[test]
fn jitter_at_rest_and_under_a_little_load() {
    let v = bench(&["jitter", "--rooms", "2", "--seconds", "1"], Duration::from_secs(60));
    let phases = v["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    assert_eq!((phases[0]["phase"].as_str(), phases[0]["rooms"].as_u64()), (Some("rest"), Some(0)));
    assert_eq!((phases[1]["phase"].as_str(), phases[1]["rooms"].as_u64()), (Some("load"), Some(2)));
    probe_row(&phases[0], true);
    probe_row(&phases[1], false);
    load_row(&phases[1]);
    // The prober skips as `sgp pair` does: half a mean gap late.
    assert_eq!(num(&v, "late_limit_us"), (0.5 * 1e6 / num(&v, "prober_rate_hz")).round());
}

#[test]
fn load_steps_up() {
    let v = bench(&["load", "--rooms", "2", "--seconds", "1"], Duration::from_secs(60));
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.iter().map(|s| s["rooms"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2]);
    for s in steps {
        load_row(s);
        probe_row(s, false);
    }
    assert!(num(&v, "peak_accepted_per_s") > 0.0);
    assert!([1, 2].contains(&v["knee_rooms"].as_u64().unwrap()));
    assert!(num(&v, "post_hz_per_poster") < num(&v, "rate_limit_hz_per_poster"));
}

#[test]
fn idle_connections() {
    let v = bench(&["idle", "--connections", "200"], Duration::from_secs(30));
    assert_eq!(v["connections"], 200);
    assert!(num(&v, "open_ms") > 0.0);
    // The server counts our connections, all open at once.
    assert_eq!(num(&v, "server_connections_after") - num(&v, "server_connections_before"), 200.0, "{v}");
    let (before, after) = (num(&v, "server_rss_kib_before"), num(&v, "server_rss_kib_after"));
    assert!(before > 0.0 && after > before, "{v}");
    // Measured 6–10 KiB: less than a page would mean nothing was measured, more than 64 KiB a leak.
    let kib = num(&v, "kib_per_connection");
    assert!(kib > 0.5 && kib < 64.0, "{v}");

    // The same, as a table for people.
    let out = Command::new(SGP).args(["bench", "idle", "--connections", "5"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["connections", "5"]), "{text}");
}

#[test]
fn legacy_flow_and_flood() {
    let v = bench(&["legacy", "--pairs", "1", "--time-scale", "0.01"], Duration::from_secs(30));
    assert_eq!(v["runs"], 1);
    assert_eq!(v["gaps"], "the original page's × 0.01 (scaled)");
    assert_eq!(v["gap_ms"], serde_json::json!([1.0, 41.0]));
    assert_eq!(v["runs_with_exact_table"], 1, "{v}");
    assert_eq!(v["rows_per_run"], 32.0);
    assert!(v["table_bytes"].as_u64().unwrap() > 0);
    for k in ["ids_ms_p50", "confirmation_ms_p50", "table_ms_p50"] {
        assert!(num(&v, k) >= 0.0, "{k} in {v}");
    }
    let e: Vec<f64> = ["min", "p50", "p99", "max"].iter().map(|s| num(&v, &format!("stamp_minus_send_us_{s}"))).collect();
    assert!(e.windows(2).all(|w| w[0] <= w[1]), "{e:?}");
    // Same machine, same wall clock: a row is never stamped before its value was sent.
    assert!(e[0] >= -1_000.0, "{v}");

    let v = bench(&["legacy", "--flood", "--seconds", "0.5", "--rate-hz", "2000"], Duration::from_secs(30));
    let (sent, rows) = (v["sent"].as_u64().unwrap(), v["rows"].as_u64().unwrap());
    assert!(sent > 0 && rows > 0 && rows <= sent, "{v}");
    assert!(num(&v, "rows_per_s") > 0.0);
    assert_eq!(v["closed_by_server"], serde_json::json!([]), "{v}");
}

/// A server without `--legacy` answers the dialect with `legacy_disabled`: the bench says so
/// at once (through `--server`), it does not wait for a timeout.
#[test]
fn legacy_against_a_server_without_the_dialect() {
    let mut server = Command::new(SGP).args(["serve", "--port", "0"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().unwrap()), &mut line).unwrap();
    let url = line.trim().strip_prefix("sgp listening on ").unwrap().to_string();
    let start = Instant::now();
    let out = Command::new(SGP).args(["bench", "legacy", "--server", &url, "--time-scale", "0.01"]).output().unwrap();
    let took = start.elapsed();
    let _ = server.kill();
    let _ = server.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("legacy_disabled") && err.contains("--legacy"), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {err}");
}

#[test]
fn key_and_load_through_tls() {
    // --tls: the server bench starts serves https (--tls-self-signed), and its clients, the
    // pairs it starts among them, trust that server's CA alone.
    let v = bench(&["key", "--tls", "--pairs", "1", "--target-bits", "64"], Duration::from_secs(90));
    key_row(&v, 1, v["guards"].as_array().unwrap());
    assert!(v["server"].as_str().unwrap().starts_with("https://127.0.0.1:"), "{v}");
    let v = bench(&["load", "--tls", "--rooms", "2", "--seconds", "1"], Duration::from_secs(90));
    assert!(v["server"].as_str().unwrap().starts_with("https://"), "{v}");
    assert!(v["steps"].as_array().is_some_and(|s| !s.is_empty()), "{v}");
    // Without --tls, plain http.
    let v = bench(&["idle", "--connections", "5"], Duration::from_secs(60));
    assert!(v["server"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{v}");
}

#[test]
fn bad_usage_is_refused() {
    for args in [
        &["bench"][..],
        &["bench", "nothing"],
        &["bench", "sweep", "--tolerances", "0.25,x"],
        &["bench", "load", "--tls", "--server", "https://127.0.0.1:9"],
        &["bench", "net", "--tls"],
        &["bench", "key", "--ca-file", "/nonexistent/ca.pem", "--server", "https://127.0.0.1:9"],
        &["bench", "load", "--pid", "abc", "--server", "http://127.0.0.1:9"],
        &["bench", "jitter", "--pid", "1,-2", "--server", "http://127.0.0.1:9"],
        &["bench", "load", "--pid", "", "--server", "http://127.0.0.1:9"],
        // --pid names the processes of a server bench does not start: --server must say which.
        &["bench", "load", "--pid", "1"],
    ] {
        let out = Command::new(SGP).args(args).env_remove("SGP_SERVER").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // A load never goes to another machine.
    let out = Command::new(SGP).args(["bench", "load", "--server", "http://192.0.2.1:8080"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1 only"));
}

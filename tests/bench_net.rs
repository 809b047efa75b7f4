//! `sgp bench net` and its delay relay (`sgp bench relay`), over real sockets. Timing is
//! checked from below only (a relay never delivers early); never from above: the machine
//! running the tests may be busy.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SGP: &str = env!("CARGO_BIN_EXE_sgp");

/// An echo server on 127.0.0.1: every byte read is written back. Its port.
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A `sgp bench relay` process, killed when dropped.
struct Relay {
    child: Child,
    port: u16,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn relay(target: u16, args: &[&str]) -> Relay {
    let mut child = Command::new(SGP)
        .args(["bench", "relay", "--listen", "127.0.0.1:0", "--target", &format!("127.0.0.1:{target}")])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sgp bench relay");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("listening ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("not a listening line: {line:?}"));
    Relay { child, port }
}

/// Round trips of `n` small messages, one after the other, through `port`.
fn round_trips(port: u16, n: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    (0..n)
        .map(|k| {
            let msg = format!("ping {k}\n");
            let t = Instant::now();
            s.write_all(msg.as_bytes()).unwrap();
            let mut got = vec![0u8; msg.len()];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, msg.as_bytes());
            t.elapsed()
        })
        .collect()
}

#[test]
fn the_relay_delays_each_way() {
    let echo = echo_server();
    let r = relay(echo, &["--delay-ms", "20", "--jitter-ms", "0"]);
    for rtt in round_trips(r.port, 5) {
        assert!(rtt >= Duration::from_millis(40), "20 ms each way, yet a round trip of {rtt:?}");
    }
    // Without delay the same echo is far quicker: the bound above is the relay's doing.
    let direct = round_trips(echo, 5).into_iter().min().unwrap();
    assert!(direct < Duration::from_millis(40), "{direct:?}");
}

#[test]
fn a_lost_segment_costs_a_retransmission_timeout() {
    let echo = echo_server();
    let r = relay(echo, &["--delay-ms", "0", "--jitter-ms", "0", "--loss", "1"]);
    // Every chunk is lost once each way: held ≥ 200 ms (the minimum RTO) each way.
    for rtt in round_trips(r.port, 2) {
        assert!(rtt >= Duration::from_millis(400), "{rtt:?}");
    }
}

#[test]
fn bad_relay_arguments_are_refused() {
    for args in [
        &["--delay-ms", "-1"][..],
        &["--delay-ms", "5", "--jitter-ms", "6"],
        &["--delay-ms", "5", "--loss", "1.5"],
        &["--delay-ms", "5", "--reorder", "-0.5"],
        &["--delay-ms", "five"],
        &["--delay-ms", "nan"],
    ] {
        let out = Command::new(SGP).args(["bench", "relay", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9"]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("");
        // Ours ("sgp: …") or the parser's ("error: …"): one line that says what is wrong.
        assert!((first.starts_with("sgp: ") || first.starts_with("error: ")) && first.len() > 10, "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: it must not listen");
    }
    for args in [&["--listen", "nowhere", "--target", "127.0.0.1:9", "--delay-ms", "1"][..], &["--listen", "127.0.0.1:0", "--delay-ms", "1"]] {
        let out = Command::new(SGP).args(["bench", "relay"]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn unknown_profiles_are_refused() {
    let out = Command::new(SGP).args(["bench", "net", "--profiles", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().next().unwrap_or("").contains("nosuch"), "{err}");
    let out = Command::new(SGP).args(["bench", "net", "--profiles", "lan,nosuch", "--pairs", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The tests that make keys take turns: each is a timing-sensitive run of real pairs, and two
/// at once on a 2-core machine make each other's rounds late.
static PAIRS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `sgp bench net ARGS --json` (killed after `limit`): its JSON object and stderr.
fn bench_net(args: &[&str], limit: Duration) -> (Value, String) {
    let _turn = PAIRS.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(SGP).args(["bench", "net", "--json"]).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(out.status.success(), "sgp bench net {args:?}: {:?}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    let v = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"));
    (v, stderr)
}

/// A profile's row: `pairs` run, all made a key, figures in range.
fn check_row(row: &Value, name: &str, pairs: u64) {
    assert_eq!(row["profile"], name, "{row}");
    assert_eq!(row["pairs_run"], pairs, "{row}");
    assert_eq!(row["ok"], pairs, "{row}");
    assert_eq!(row["success_rate"], 1.0, "{row}");
    let num = |k: &str| row[k].as_f64().unwrap_or_else(|| panic!("{k} in {row}"));
    assert!(num("time_to_key_s_p50") > 0.0 && num("time_to_key_s_p50") <= num("time_to_key_s_p90"), "{row}");
    for q in ["round_tolerance_ms", "round_rate_hz"] {
        let (lo, mid, hi) = (num(&format!("{q}_min")), num(&format!("{q}_median")), num(&format!("{q}_max")));
        assert!(0.0 < lo && lo <= mid && mid <= hi, "{q} in {row}");
    }
    assert!(num("kept_per_s_of_posting") > 0.0 && num("kept_limit_per_s") > 0.0, "{row}");
    assert!(num("kept_fraction_of_limit") > 0.0, "{row}");
    assert_eq!(row["failures"], Value::Array(vec![]), "{row}");
}

#[test]
fn loopback_and_lan_make_keys() {
    let (v, _) = bench_net(&["--pairs", "1", "--profiles", "loopback,lan"], Duration::from_secs(600));
    let rows = v["profiles"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    check_row(&rows[0], "loopback", 1);
    check_row(&rows[1], "lan", 1);
    assert_eq!(rows[0]["alice_path"], "direct");
    assert_eq!(rows[1]["bob_path"], "0.2±0.05 ms");
    assert_eq!(v["pairs_per_profile"], 1);
}

fn namespaces_available() -> Result<(), String> {
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    let probe = format!("sgp-net-probe-{}", std::process::id());
    let out = Command::new("ip").args(["netns", "add", &probe]).output().map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!("ip netns add: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let _ = Command::new("ip").args(["netns", "del", &probe]).output();
    Ok(())
}

fn our_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
    out.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with("sgp-net-")).map(String::from).collect()
}

/// One pair through the wifi profile (3 ms ± 2 ms, 0.5 % loss, 0.1 % reordering) in
/// network namespaces makes a key, and the namespaces are gone after.
#[test]
fn wifi_in_namespaces_makes_a_key() {
    if let Err(why) = namespaces_available() {
        eprintln!("SKIPPED: wifi_in_namespaces_makes_a_key needs root and ip netns ({why})");
        return;
    }
    let (v, stderr) = bench_net(&["--pairs", "1", "--profiles", "wifi"], Duration::from_secs(600));
    if !v["network"].as_str().unwrap_or("").starts_with("namespaces") {
        eprintln!("SKIPPED: wifi_in_namespaces_makes_a_key: bench net could not make namespaces: {stderr}");
        return;
    }
    let row = &v["profiles"][0];
    check_row(row, "wifi", 1);
    assert_eq!(row["bob_path"], "3±2 ms, 0.5% loss, 0.1% reorder", "{row}");
    // (Other runs may be going on at the same time: only this run's are checked.)
    let left: Vec<String> = our_namespaces();
    assert!(
        left.iter().all(|n| n.starts_with("sgp-net-probe-") || { std::path::Path::new(&format!("/proc/{}", n.split('-').nth(2).unwrap_or("0"))).exists() }),
        "namespaces left behind: {left:?}"
    );
}

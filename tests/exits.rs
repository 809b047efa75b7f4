//! How `sgp pair` ends without a key, over real loopback sockets: each failure has its
//! own exit code and a message that says what happened (README, "Exit codes"). The other
//! side of the room is a hand-driven WebSocket, so that each failure happens on cue.

mod common;
use common::*;
use serde_json::{json, Value};
use std::process::Output;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `error` line `--json` prints on failure carries the exit code too.
fn error_line(out: &Output) -> Value {
    json_lines(&String::from_utf8_lossy(&out.stdout)).into_iter().find_map(|v| v.get("error").cloned()).expect("an error line")
}

async fn wait_start(ws: &mut Ws) -> Value {
    recv_type_within(ws, "start", Duration::from_secs(20)).await
}

/// Skips messages until one of type `ty`, for up to `limit`.
async fn recv_type_within(ws: &mut Ws, ty: &str, limit: Duration) -> Value {
    tokio::time::timeout(limit, recv_type(ws, ty)).await.unwrap_or_else(|_| panic!("no {ty} within {limit:?}"))
}

/// A room whose alice is a hand-driven WebSocket (τ 1 ms, 200 ms rounds), and its code.
async fn hand_room(server: &Server) -> (Ws, String) {
    let mut alice = ws(server).await;
    let code = create_room(&mut alice, json!({"tolerance_ms": 1, "duration_ms": 200})).await;
    (alice, code)
}

#[test]
fn a_full_room_is_exit_4() {
    let server = Server::start(&[]);
    let rt = runtime();
    let (_alice, _bob, code) = rt.block_on(async {
        let mut alice = ws(&server).await;
        let code = create_room(&mut alice, json!({})).await;
        let mut bob = ws(&server).await;
        send(&mut bob, json!({"type": "join", "room": code})).await;
        assert_eq!(recv(&mut bob).await["role"], "bob");
        (alice, bob, code)
    });
    let out = wait_output(spawn_pair(&server, &["--room", &code]), Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("both posters"), "{}", stderr(&out));
    assert_eq!(error_line(&out)["code"], 4);
}

#[test]
fn a_server_gone_mid_session_is_exit_5() {
    let mut server = Server::start(&[]);
    let rt = runtime();
    let mut alice = rt.block_on(async {
        let mut alice = ws(&server).await;
        let code = create_room(&mut alice, json!({"tolerance_ms": 2, "duration_ms": 3000})).await;
        (alice, code)
    });
    let code = alice.1.clone();
    let bob = spawn_pair(&server, &["--room", &code]);
    rt.block_on(async {
        send(&mut alice.0, json!({"type": "ready"})).await;
        wait_start(&mut alice.0).await;
    });
    // The round runs: the server dies under it.
    server.child.kill().unwrap();
    let _ = server.child.wait();
    let out = wait_output(bob, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).to_lowercase().contains("server"), "{}", stderr(&out));
    assert_eq!(error_line(&out)["code"], 5);
}

#[test]
fn too_many_failed_rounds_is_exit_6() {
    let server = Server::start(&[]);
    let rt = runtime();
    let (mut alice, code) = rt.block_on(hand_room(&server));
    let bob = spawn_pair(&server, &["--room", &code, "--retries", "2", "--no-adapt"]);
    // Alice finds every round out of sync: bob (not adapting) retries twice, then gives up.
    rt.block_on(async {
        for _ in 0..3 {
            send(&mut alice, json!({"type": "ready"})).await;
            wait_start(&mut alice).await;
            send(&mut alice, json!({"type": "abort", "reason": "desync"})).await;
            recv_type(&mut alice, "aborted").await;
        }
    });
    let out = wait_output(bob, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("gave up after 3 failed rounds"), "{}", stderr(&out));
    assert_eq!(error_line(&out)["code"], 6);
}

/// Adapting, a desync first widens τ (bob's `ready` asks for it and the room's next `start`
/// carries it); only rounds that fail at the widest τ count against `--retries`.
#[test]
fn desyncs_widen_tolerance_and_count_only_at_the_widest() {
    let server = Server::start(&[]);
    let rt = runtime();
    let (mut alice, code) = rt.block_on(hand_room(&server));
    let bob = spawn_pair(&server, &["--room", &code, "--retries", "1"]);
    let taus = rt.block_on(async {
        let mut taus = Vec::new();
        loop {
            send(&mut alice, json!({"type": "ready"})).await;
            let v = loop {
                let v = tokio::time::timeout(Duration::from_secs(20), recv(&mut alice)).await.expect("start or left");
                if v["type"] == "start" || v["event"] == "left" {
                    break v;
                }
            };
            if v["event"] == "left" {
                return taus;
            }
            taus.push(v["params"]["tolerance_ms"].as_f64().unwrap());
            send(&mut alice, json!({"type": "abort", "reason": "desync"})).await;
            recv_type(&mut alice, "aborted").await;
            assert!(taus.len() < 40, "bob never gave up: {taus:?}");
        }
    });
    let out = wait_output(bob, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("gave up after 2 failed rounds"), "{}", stderr(&out));
    // τ only grows, from the room's 1 ms to at least the 5 ms floor of the widest setting, and
    // the two counted failures both came at the widest τ.
    assert_eq!(taus[0], 1.0, "{taus:?}");
    assert!(taus.windows(2).all(|w| w[1] >= w[0]), "{taus:?}");
    let widest = *taus.last().unwrap();
    assert!(widest >= 5.0, "{taus:?}");
    assert!(taus.len() >= 4, "failures before the widest τ were counted: {taus:?}");
    assert_eq!(taus[taus.len() - 2], widest, "{taus:?}");
}

#[test]
fn a_peer_leaving_between_sessions_is_exit_3() {
    let server = Server::start(&[]);
    let rt = runtime();
    let (mut alice, code) = rt.block_on(hand_room(&server));
    let bob = spawn_pair(&server, &["--room", &code]);
    rt.block_on(async {
        // One real round (alice posts nothing), then alice ends the session…
        send(&mut alice, json!({"type": "ready"})).await;
        let start = wait_start(&mut alice).await;
        let t_end = start["t_end_us"].as_i64().unwrap();
        loop {
            send(&mut alice, json!({"type": "ping", "t0_us": 0})).await;
            if recv_type(&mut alice, "pong").await["t1_us"].as_i64().unwrap() > t_end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        send(&mut alice, json!({"type": "done"})).await;
        recv_type(&mut alice, "closed").await;
        send(&mut alice, json!({"type": "abort", "reason": "user_quit"})).await;
        recv_type(&mut alice, "aborted").await;
    });
    // …and leaves before another: the server says only `peer left`, and bob stops waiting.
    drop(alice);
    drop(rt);
    let out = wait_output(bob, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("peer left"), "{}", stderr(&out));
}

#[test]
fn a_creator_prints_its_code_and_a_join_command() {
    let server = Server::start(&[]);
    let mut creator = std::process::Command::new(SGP)
        .args(["pair", "--server", &server.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The join command is a line of its own on stderr, ready to paste.
    let mut err = std::io::BufReader::new(creator.stderr.take().unwrap());
    let mut lines = Vec::new();
    let command = loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0, "stderr ended: {lines:?}");
        if let Some(i) = line.find("sgp pair --server") {
            break line[i..].trim().to_string();
        }
        lines.push(line);
    };
    let _ = creator.kill();
    let _ = creator.wait();
    let code = command.rsplit(' ').next().unwrap().to_string();
    assert!(lines.iter().any(|l| l.contains(&code)), "the code is printed on its own too: {lines:?}");
    assert_eq!(command, format!("sgp pair --server {} --room {code}", server.url()));
}

#[test]
fn eve_prints_each_board_for_people() {
    let server = Server::start(&[]);
    let (creator, code, rest) = spawn_creator(&server, &["--tolerance-ms", "1", "--target-bits", "32", "--retries", "60"]);
    let eve = std::process::Command::new(SGP)
        .args(["eve", "--server", &server.url(), "--room", &code])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let joiner = spawn_pair(&server, &["--room", &code, "--retries", "60"]);
    let reader = read_rest(rest);
    key_of(&wait_output(joiner, Duration::from_secs(60)), "");
    key_of(&wait_output(creator, Duration::from_secs(60)), &reader.join().unwrap());
    let out = wait_output(eve, Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let round = text.lines().position(|l| l.starts_with("round 1:") && l.contains("kept by the public sift")).expect(&text);
    // The board follows: entries as +ms and a label, the kept ones starred.
    let board: Vec<&str> = text.lines().skip(round + 1).take_while(|l| l.starts_with("  +") || l.starts_with("  -")).collect();
    let entries: Vec<&str> = board.iter().flat_map(|l| l.split_whitespace()).collect();
    let n: usize = text.lines().nth(round).unwrap().split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(entries.len(), n, "{text}");
    assert!(entries.iter().all(|e| e.trim_end_matches('*').ends_with('A') || e.trim_end_matches('*').ends_with('B')), "{entries:?}");
    assert!(entries.iter().any(|e| e.ends_with('*')), "{entries:?}");
    assert!(text.contains("confirm"), "{text}");
}

//! `sgp serve` as a user meets it: the listening line, a taken port, HTTP routes and
//! headers, /healthz, and a clean shutdown on SIGTERM or Ctrl-C (close 1001 to peers).

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn plain_sgp_serves_and_a_taken_port_is_a_readable_error() {
    // `sgp` with no subcommand is `sgp serve`.
    let mut first = Command::new(SGP).args(["--port", "0"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("sgp listening on http://127.0.0.1:"), "{line}");
    let port = line.trim().trim_end_matches('/').rsplit(':').next().unwrap().to_string();

    let out = Command::new(SGP).args(["serve", "--port", &port]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let _ = first.kill();
    let _ = first.wait();
}

#[test]
fn bad_usage_is_exit_2_with_the_usage() {
    for args in [vec!["serve", "--port", "x"], vec!["frobnicate"], vec!["eve"], vec!["pair", "--colour"]] {
        let out = Command::new(SGP).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"), "{args:?}");
    }
    let out = Command::new(SGP).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sgp pair"));
}

#[test]
fn routes_headers_and_health() {
    let server = Server::start(&[]);
    let resp = server.raw_http(&format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", server.port));
    let lower = resp.to_ascii_lowercase();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(lower.contains("content-type: text/html; charset=utf-8"));
    assert!(lower.contains("cross-origin-opener-policy: same-origin"));
    assert!(lower.contains("cross-origin-embedder-policy: require-corp"));
    assert!(resp.contains("anonymous"), "the page says what sgp is");
    assert!(resp.contains(r#"data-testid="create""#), "and lets a person create a room");
    let (status, css) = server.get("/vendor/bootstrap.min.css");
    assert_eq!(status, 200, "Bootstrap is embedded");
    assert!(css.contains("Bootstrap"));

    // Browsers get the embedded files as they are stored, gzipped.
    let resp = server.raw_http(&format!(
        "GET /vendor/bootstrap.min.css HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: close\r\n\r\n",
        server.port
    ));
    let lower = resp.to_ascii_lowercase();
    assert!(resp.starts_with("HTTP/1.1 200") && lower.contains("content-encoding: gzip"), "{}", &resp[..resp.len().min(400)]);
    assert!(!resp.contains("Bootstrap"), "the body is compressed");

    let (status, _) = server.get("/no/such/file");
    assert_eq!(status, 404);
    let resp = server.raw_http("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(resp.to_ascii_lowercase().contains("cross-origin-embedder-policy: require-corp"), "every response: {resp}");
    let resp = server.raw_http("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    let resp = server.raw_http("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");

    let h = server.healthz();
    assert_eq!(h["ok"], true);
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!((h["rooms"].as_u64(), h["connections"].as_u64()), (Some(0), Some(0)));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut a = ws(&server).await;
        let _code = create_room(&mut a, serde_json::json!({})).await;
        let mut b = ws(&server).await;
        send(&mut b, serde_json::json!({"type": "ping", "t0_us": 1})).await;
        recv_type(&mut b, "pong").await;
        let h = server.healthz();
        assert_eq!((h["rooms"].as_u64(), h["connections"].as_u64()), (Some(1), Some(2)));
        drop(a);
        for _ in 0..100 {
            if server.healthz()["rooms"] == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(server.healthz()["rooms"], 0, "an emptied room goes at once");
    });
}

fn shutdown_closes_peers_with_1001(signal: &str) {
    let mut server = Server::start(&[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut a = ws(&server).await;
        let _ = create_room(&mut a, serde_json::json!({})).await;
        let mut b = ws(&server).await;
        send(&mut b, serde_json::json!({"type": "ping", "t0_us": 1})).await;
        recv_type(&mut b, "pong").await;
        let status = Command::new("kill").args([signal, &server.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        assert_eq!(close_code(&mut a).await, Some(1001));
        assert_eq!(close_code(&mut b).await, Some(1001));
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            assert!(st.success(), "exit status after {signal}: {st:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the server did not exit after {signal}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_closes_every_websocket_with_1001_and_exits_0() {
    shutdown_closes_peers_with_1001("-TERM");
}

#[test]
fn ctrl_c_closes_every_websocket_with_1001_and_exits_0() {
    shutdown_closes_peers_with_1001("-INT");
}

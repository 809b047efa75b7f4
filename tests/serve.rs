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
fn bad_usage_is_exit_2_and_says_what_is_wrong() {
    for args in [vec!["serve", "--port", "x"], vec!["frobnicate"], vec!["eve"], vec!["pair", "--colour"]] {
        let out = Command::new(SGP).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        // What is wrong, and the usage or where to find it.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error:") && (err.contains("Usage:") || err.contains("--help")), "{args:?}: {err}");
    }
    let out = Command::new(SGP).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sgp pair"));
}

#[test]
fn flags_of_another_command_are_refused_and_each_command_has_its_help() {
    // A flag that belongs to another command, or to none, is exit 2 with the usage; it once
    // ran (`sgp serve --follow` served).
    for args in [
        &["serve", "--follow"][..],
        &["serve", "--room", "X"],
        &["--json"],
        &["pair", "--port", "1"],
        &["eve", "--room", "X", "--attack", "f.json"],
        &["bench", "net", "--server", "http://127.0.0.1:1"],
        &["bench", "load", "--tls", "--server", "http://127.0.0.1:1"],
        &["serve", "--tls-cert", "c.pem"],
        &["serve", "--ping-secs", "0"],
        &["completions", "tcsh"],
    ] {
        let out = Command::new(SGP).args(args).env_remove("SGP_SERVER").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    for cmd in ["serve", "pair", "eve", "bench", "completions"] {
        let out = Command::new(SGP).args(["help", cmd]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains(&format!("sgp {cmd}")), "help {cmd}: {text}");
    }
    let out = Command::new(SGP).args(["pair", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--ca-file"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("--testing-hold-post"), "testing flags stay hidden");
}

#[test]
fn environment_variables_stand_for_flags_and_flags_win() {
    let listening = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(SGP)
            .args(args)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(c.stdout.take().unwrap()), &mut line).unwrap();
        let _ = c.kill();
        let _ = c.wait();
        line
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let p = port.to_string();
    let line = listening(&["serve"], &[("SGP_PORT", &p), ("SGP_BIND", "127.0.0.1")]);
    assert_eq!(line.trim(), format!("sgp listening on http://127.0.0.1:{port}/"));
    let line = listening(&["serve", "--port", "0"], &[("SGP_PORT", &p)]);
    assert!(!line.contains(&format!(":{port}/")), "the flag wins: {line}");
    // SGP_SERVER is the clients' server; a bad value is the client's error, not ignored.
    let out = Command::new(SGP).args(["pair"]).env("SGP_SERVER", "ftp://nowhere").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ftp://nowhere"), "{}", String::from_utf8_lossy(&out.stderr));
    // SGP_ALLOW_ORIGIN: comma-separated origins.
    let s = Server::start_env(&[], &[("SGP_ALLOW_ORIGIN", "https://a.example,https://b.example")]);
    for (origin, ok) in [("https://a.example", true), ("https://b.example", true), ("https://c.example", false)] {
        let r = s.raw_http(&format!(
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            s.port
        ));
        assert_eq!(r.starts_with("HTTP/1.1 101"), ok, "{origin}: {r}");
    }
    // Bad values from the environment are usage errors too, before anything listens.
    for (var, bad) in [("SGP_PORT", "eighty"), ("SGP_PORT", "70000"), ("SGP_BIND", "nowhere.example"), ("SGP_ALLOW_ORIGIN", "a.example"), ("SGP_ALLOW_ORIGIN", "https://a.example,ftp://b")] {
        let out = Command::new(SGP).args(["serve"]).env(var, bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={bad}");
        assert!(out.stdout.is_empty() && String::from_utf8_lossy(&out.stderr).contains(bad.split(',').last().unwrap()), "{var}={bad}");
    }
}

#[test]
fn completions_and_a_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(SGP).args(["completions", shell]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("tls-self-signed") && text.contains("ca-file"), "{shell}");
    }
    // bash can load its script.
    if std::path::Path::new("/bin/bash").exists() {
        let out = Command::new("/bin/bash").args(["-c", &format!("source <({SGP} completions bash) && complete -p sgp")]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = Command::new(SGP).arg("man").output().unwrap();
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && man.starts_with(".ie") || man.contains(".TH sgp"), "{}", &man[..man.len().min(200)]);
    assert!(man.contains("pair") && man.contains("exit codes"));
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

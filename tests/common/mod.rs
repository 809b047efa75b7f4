//! Test harness shared by the integration tests: a real `sgp serve` on 127.0.0.1:0, raw
//! HTTP and WebSocket clients, and `sgp pair` / `sgp eve` processes.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub const SGP: &str = env!("CARGO_BIN_EXE_sgp");

/// A server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_env(extra, &[])
    }

    /// With these environment variables set for the server process.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(SGP)
            .args(["serve", "--port", "0"])
            .args(extra)
            // The server's info log (rooms, keys, closed connections) would fill the tests'
            // output; tests that read the log set RUST_LOG themselves.
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sgp serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the listening line");
        let port = line
            .trim()
            .strip_prefix("sgp listening on http://127.0.0.1:")
            .and_then(|r| r.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        Server { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// Sends raw bytes, returns everything the server answers until it closes or goes quiet.
    pub fn raw_http(&self, request: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    // A complete response with a body length we can see: stop.
                    let text = String::from_utf8_lossy(&buf);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)));
                        if len.map_or(head.starts_with("HTTP/1.1 101"), |n| body.len() >= n) {
                            break;
                        }
                    }
                }
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// `GET path`, returning (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let resp = self.raw_http(&format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", self.port));
        status_and_body(&resp)
    }

    pub fn healthz(&self) -> Value {
        let (status, body) = self.get("/healthz");
        assert_eq!(status, 200);
        serde_json::from_str(&body).unwrap()
    }

    /// Still serving HTTP and still alive.
    pub fn assert_alive(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "the server exited");
        assert_eq!(self.healthz()["ok"], true);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn status_and_body(resp: &str) -> (u16, String) {
    let status = resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws(server: &Server) -> Ws {
    tokio_tungstenite::connect_async_with_config(server.ws_url(), None, true).await.expect("websocket connect").0
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.expect("send");
}

pub async fn send_text(ws: &mut Ws, t: &str) {
    ws.send(Message::Text(t.to_string().into())).await.expect("send");
}

/// The next text message as JSON (fails the test after 5 s), passing over `coalesced`
/// notices: a poster gets one whenever its post and its next frame arrive in one piece,
/// which a busy machine makes happen at any time (`recv_all` keeps them).
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let v = recv_all(ws).await;
        if v["type"] != "coalesced" {
            return v;
        }
    }
}

/// The next text message as JSON, whatever it is (fails the test after 5 s).
pub async fn recv_all(ws: &mut Ws) -> Value {
    let deadline = Duration::from_secs(5);
    loop {
        match tokio::time::timeout(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).expect("server sent JSON"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Skips messages until one of type `ty`.
pub async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] == ty {
            return v;
        }
    }
}

/// The close frame's code, once the server closes (fails after 5 s).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return None,
            Err(_) => break,
        }
    }
    panic!("the server did not close the connection");
}

/// Creates a room over a raw WebSocket; returns the code.
pub async fn create_room(ws: &mut Ws, params: Value) -> String {
    send(ws, serde_json::json!({"type": "create", "params": params})).await;
    let v = recv_type(ws, "joined").await;
    v["room"].as_str().unwrap().to_string()
}

/// `sgp pair` with JSON output, running.
pub fn spawn_pair(server: &Server, args: &[&str]) -> Child {
    Command::new(SGP)
        .args(["pair", "--json", "--server", &server.url()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sgp pair")
}

/// Starts a creating `sgp pair` and reads its room code from its first JSON line.
pub fn spawn_creator(server: &Server, args: &[&str]) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut child = spawn_pair(server, args);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("first line not JSON: {line:?}"));
    let code = v["room"]["code"].as_str().expect("room code").to_string();
    (child, code, out)
}

/// `sgp eve --json` on a room (with `extra` arguments, e.g. `--record FILE`), running, its
/// first line (the room it joined) read and checked.
pub fn spawn_eve(server: &Server, code: &str, extra: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut eve = Command::new(SGP)
        .args(["eve", "--json", "--server", &server.url(), "--room", code])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sgp eve");
    let mut out = BufReader::new(eve.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("eve's first line not JSON: {line:?}"));
    assert_eq!(v["room"]["code"], code, "eve joins first: {line}");
    (eve, out)
}

/// Waits for a child with a time limit; kills it past the limit and fails.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "process still running after {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// JSON lines of a pair's stdout, the rest of them.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect()
}

/// The `key` object of a finished pair, asserting success.
pub fn key_of(out: &Output, head: &str) -> Value {
    let stdout = format!("{head}{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "pair failed ({:?})\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&stdout).into_iter().find_map(|v| v.get("key").cloned()).expect("a key line")
}

/// Two `sgp pair` processes in one new room; returns both `key` objects (creator first).
/// Quick, forgiving parameters unless given: the point is that the server still serves a
/// live pair, on a machine that may be busy (a busy machine delays posts by milliseconds).
pub fn live_pair(server: &Server, args: &[&str]) -> (Value, Value) {
    let args: Vec<&str> =
        if args.is_empty() { vec!["--tolerance-ms", "1", "--target-bits", "32", "--retries", "60"] } else { args.to_vec() };
    let (creator, code, rest) = spawn_creator(server, &args);
    let joiner = spawn_pair(server, &["--room", &code, "--retries", "60"]);
    let reader = read_rest(rest);
    let b = wait_output(joiner, Duration::from_secs(60));
    let a = wait_output(creator, Duration::from_secs(60));
    let ka = key_of(&a, &reader.join().unwrap());
    let kb = key_of(&b, "");
    assert_eq!(ka["key"], kb["key"], "both sides must hold the same key");
    assert_eq!(ka["confirmed"], true);
    (ka, kb)
}

/// Reads the rest of a child's stdout on a thread (the child's time limit ends it).
pub fn read_rest(mut r: BufReader<std::process::ChildStdout>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

//! Hostile input over real loopback sockets (docs/protocol.md §8, §9). Each test starts its own
//! `sgp serve`, sends something a hostile or broken client would send, checks the exact
//! answer (an `error` with its stable code, a close code, an HTTP status), checks that the
//! same connection still works where the protocol keeps it open, and ends by proving the
//! server still serves: it is alive and two real `sgp pair` processes in a new room agree
//! on a confirmed key.
//!
//! Frames no client library would send (invalid UTF-8, unmasked or reserved frames, a
//! client that never reads, half-open handshakes) go over a plain `TcpStream` with the
//! handshake and the framing written by hand (`raw_*` below).

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A runtime for the async part of a test (the blocking `live_pair` runs outside it).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Runs the async part of a test to the end; its sockets are dropped with the runtime.
fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// How every test ends: the server process is alive and serves HTTP, and two real
/// `sgp pair` processes in a new room agree on a confirmed key.
fn still_serves(server: &mut Server) {
    server.assert_alive();
    live_pair(server, &[]);
    server.assert_alive();
}

fn short(text: &str) -> String {
    if text.len() <= 120 {
        text.to_string()
    } else {
        format!("{}… ({} bytes)", &text[..text.char_indices().nth(100).map_or(text.len(), |(i, _)| i)], text.len())
    }
}

/// The next message must be `error {code}` with a message a person can read.
async fn expect_error(ws: &mut Ws, code: &str, what: &str) -> Value {
    let v = recv(ws).await;
    assert_eq!(v["type"], "error", "{what}: expected error {code}, got {v}");
    assert_eq!(v["code"], code, "{what}: {v}");
    let message = v["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "{what}: an error without a message: {v}");
    v
}

/// Sends `text` as one text frame; the answer must be `error {code}`.
async fn refused(ws: &mut Ws, text: &str, code: &str) -> Value {
    send_text(ws, text).await;
    expect_error(ws, code, &short(text)).await
}

/// The connection still answers, and nothing else was queued for it first: the very next
/// message is the pong of this ping.
async fn assert_usable(ws: &mut Ws) {
    let t0 = 4_242_424_242i64;
    send(ws, json!({"type": "ping", "t0_us": t0})).await;
    let v = recv(ws).await;
    assert_eq!(v["type"], "pong", "a ping must be answered by a pong, got {v}");
    assert_eq!(v["t0_us"], t0);
    assert!(v["t1_us"].as_i64().unwrap() <= v["t2_us"].as_i64().unwrap());
}

/// A ping answered (messages before the pong are skipped): everything sent before it on
/// this connection has been handled by the server.
async fn sync(ws: &mut Ws) -> Value {
    send(ws, json!({"type": "ping", "t0_us": 1})).await;
    recv_type(ws, "pong").await
}

/// The server's clock, read over a connection that is in no room.
async fn server_now(ws: &mut Ws) -> i64 {
    sync(ws).await["t2_us"].as_i64().unwrap()
}

/// Sleeps until the server's clock reads at least `t_us` (asked over a fresh connection).
async fn sleep_until_server_time(server: &Server, t_us: i64) {
    let mut c = ws(server).await;
    loop {
        let now = server_now(&mut c).await;
        if now >= t_us {
            return;
        }
        let wait = ((t_us - now) as u64).min(50_000) + 200;
        tokio::time::sleep(Duration::from_micros(wait)).await;
    }
}

/// A room with its two posters and an observer, every `joined` and `peer` read.
struct Room {
    code: String,
    alice: Ws,
    bob: Ws,
    eve: Ws,
}

async fn expect_peer_joined(ws: &mut Ws, role: &str) {
    let v = recv(ws).await;
    assert_eq!(v["type"], "peer", "{v}");
    assert_eq!(v["event"], "joined", "{v}");
    assert_eq!(v["role"], role, "{v}");
}

async fn join(ws: &mut Ws, code: &str, observer: bool) -> Value {
    let msg = if observer { json!({"type": "join", "room": code, "as": "observer"}) } else { json!({"type": "join", "room": code}) };
    send(ws, msg).await;
    let v = recv(ws).await;
    assert_eq!(v["type"], "joined", "{v}");
    v
}

async fn room_of_three(server: &Server, params: Value) -> Room {
    let mut alice = ws(server).await;
    let code = create_room(&mut alice, params).await;
    let mut bob = ws(server).await;
    assert_eq!(join(&mut bob, &code, false).await["role"], "bob");
    expect_peer_joined(&mut alice, "bob").await;
    let mut eve = ws(server).await;
    assert_eq!(join(&mut eve, &code, true).await["role"], "observer");
    expect_peer_joined(&mut alice, "observer").await;
    expect_peer_joined(&mut bob, "observer").await;
    Room { code, alice, bob, eve }
}

/// Both posters send `ready`; everyone in the room gets the same `start`, which is returned.
async fn start_round(room: &mut Room) -> Value {
    send(&mut room.alice, json!({"type": "ready"})).await;
    send(&mut room.bob, json!({"type": "ready"})).await;
    let s = recv(&mut room.alice).await;
    assert_eq!(s["type"], "start", "{s}");
    assert_eq!(recv(&mut room.bob).await, s);
    assert_eq!(recv(&mut room.eve).await, s);
    s
}

struct Window {
    t_start: i64,
    t_end: i64,
    guard: i64,
}

fn window(start: &Value) -> Window {
    Window {
        t_start: start["t_start_us"].as_i64().unwrap(),
        t_end: start["t_end_us"].as_i64().unwrap(),
        guard: (start["params"]["guard_ms"].as_f64().unwrap() * 1000.0).round() as i64,
    }
}

/// The board as an observer (or anyone in the room) reads it; other messages are skipped.
async fn board_entries(ws: &mut Ws) -> Vec<Value> {
    send(ws, json!({"type": "board"})).await;
    let v = recv_type(ws, "board").await;
    v["entries"].as_array().unwrap_or_else(|| panic!("board without entries: {v}")).clone()
}

fn labels(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|e| e["label"].as_str().unwrap()).collect()
}

/// Polls `/healthz` until its connection count is `want`; fails after `limit`.
fn wait_connections(server: &Server, want: u64, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let n = server.healthz()["connections"].as_u64().unwrap();
        if n == want {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "healthz still counts {n} connections after {limit:?}, expected {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Raw WebSocket over std::net::TcpStream -------------------------------------------------

/// RFC 6455's sample key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn upgrade_request(server: &Server, headers: &str) -> String {
    format!("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}\r\n", server.port)
}

fn full_upgrade(server: &Server, extra: &str) -> String {
    upgrade_request(
        server,
        &format!("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}"),
    )
}

/// Connects and sends the upgrade request, without reading the answer.
fn raw_ws_start(server: &Server) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(full_upgrade(server, "").as_bytes()).unwrap();
    s
}

/// Reads the 101 answer byte by byte (so no frame byte is consumed) and checks it.
fn raw_ws_finish(s: &mut TcpStream) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("read the handshake answer");
        head.push(b[0]);
        assert!(head.len() < 4096, "handshake answer too long");
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "expected 101, got {head}");
    assert!(head.contains(ACCEPT), "wrong Sec-WebSocket-Accept: {head}");
}

/// A WebSocket on a plain socket, handshake done.
fn raw_ws(server: &Server) -> TcpStream {
    let mut s = raw_ws_start(server);
    raw_ws_finish(&mut s);
    s
}

/// One frame: `b0` is FIN/RSV/opcode, the payload is masked when `mask` is set.
fn frame(b0: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let m = if mask { 0x80 } else { 0 };
    let mut f = vec![b0];
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n <= 0xffff => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if mask {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// A complete, masked text frame.
fn text_frame(text: &str) -> Vec<u8> {
    frame(0x81, text.as_bytes(), true)
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// One server frame: (first byte, payload).
fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    assert_eq!(h[1] & 0x80, 0, "a server frame must not be masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    s.read_exact(&mut p)?;
    Ok((h[0], p))
}

/// The next text message on a raw socket, as JSON (control frames skipped).
fn raw_recv(s: &mut TcpStream) -> Value {
    loop {
        let (b0, p) = read_frame(s).expect("a frame from the server");
        match b0 & 0x0f {
            0x1 => {
                let v: Value = serde_json::from_slice(&p).expect("server sent JSON");
                if v["type"] != "coalesced" {
                    return v;
                }
            }
            0x8 => panic!("the server closed: {:?}", close_payload(&p)),
            _ => continue,
        }
    }
}

fn close_payload(p: &[u8]) -> (Option<u16>, String) {
    if p.len() >= 2 {
        (Some(u16::from_be_bytes([p[0], p[1]])), String::from_utf8_lossy(&p[2..]).into_owned())
    } else {
        (None, String::new())
    }
}

/// Reads until the server's close frame and returns its code; `None` if the socket ended
/// without one. Fails if the server neither closes nor ends the socket within 5 s.
fn raw_close_code(s: &mut TcpStream) -> Option<u16> {
    loop {
        match read_frame(s) {
            Ok((b0, p)) if b0 & 0x0f == 0x8 => {
                assert_eq!(b0 & 0x80, 0x80, "a close frame is final");
                return Some(close_payload(&p).0.unwrap_or(1005));
            }
            Ok(_) => continue,
            Err(e) if is_timeout(&e) => panic!("the server did not close the connection"),
            Err(_) => return None,
        }
    }
}

/// A raw connection works: a ping sent as a hand-made frame gets its pong.
fn raw_assert_usable(s: &mut TcpStream) {
    s.write_all(&text_frame(r#"{"type":"ping","t0_us":77}"#)).unwrap();
    let v = raw_recv(s);
    assert_eq!(v["type"], "pong", "{v}");
    assert_eq!(v["t0_us"], 77);
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split("\r\n\r\n").next().unwrap_or("");
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// ---------------------------------------------------------------------------------------
// 1–7: malformed messages get an error with a stable code; the connection stays usable.
// ---------------------------------------------------------------------------------------

#[test]
fn invalid_json_is_bad_json_and_the_connection_stays_usable() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut c = ws(&server).await;
        for text in ["{", "nonsense", "[1,2]", "\"ready\"", "", "   ", "null", "42", "{\"type\":\"ping\",", "{\"type\":\"create\"}}", "{'type':'create'}"] {
            refused(&mut c, text, "bad_json").await;
            assert_usable(&mut c).await;
        }
        send(&mut c, json!({"type": "create"})).await;
        assert_eq!(recv(&mut c).await["type"], "joined");
    });
    still_serves(&mut server);
}

#[test]
fn unknown_type_is_unknown_type_with_a_short_message() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut c = ws(&server).await;
        for text in [
            r#"{"type":"shout"}"#,
            r#"{"type":""}"#,
            r#"{"type":"Create"}"#,
            r#"{"type":"pong","t0_us":1,"t1_us":2,"t2_us":3}"#,
            r#"{"type":"joined"}"#,
            r#"{"type":"error","code":"bad_json","message":"x"}"#,
        ] {
            refused(&mut c, text, "unknown_type").await;
            assert_usable(&mut c).await;
        }
        let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(10_000));
        let e = refused(&mut c, &long, "unknown_type").await;
        let message = e["message"].as_str().unwrap();
        assert!(message.len() < 300, "the message echoes the type unbounded: {} bytes", message.len());
        assert_usable(&mut c).await;
        send(&mut c, json!({"type": "create"})).await;
        assert_eq!(recv(&mut c).await["type"], "joined");
    });
    still_serves(&mut server);
}

#[test]
fn missing_fields_are_bad_field() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut c = ws(&server).await;
        for text in [
            r#"{"type":"post"}"#,
            r#"{"type":"join"}"#,
            r#"{"type":"join","as":"observer"}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"confirm"}"#,
            r#"{"type":"confirm","drops":1}"#,
            r#"{"type":"drop"}"#,
            r#"{"type":"abort"}"#,
            r#"{"label":"A"}"#,
            r#"{}"#,
        ] {
            refused(&mut c, text, "bad_field").await;
            assert_usable(&mut c).await;
        }
        send(&mut c, json!({"type": "create"})).await;
        assert_eq!(recv(&mut c).await["type"], "joined");
    });
    still_serves(&mut server);
}

/// `ready {ask}` (docs/protocol.md §6, "Adapting"): every malformed or hostile ask is refused
/// with `bad_field`, is not taken as ready, and the room goes on; a valid one reaches `start`.
/// (`"ask": null` is no ask, as `"params": null` is no params in `create`.)
#[test]
fn malformed_asks_are_bad_field_and_not_ready() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut room = room_of_three(&server, json!({"tolerance_ms": 1, "duration_ms": 1000})).await;
        for text in [
            r#"{"type":"ready","ask":{}}"#,
            r#"{"type":"ready","ask":[]}"#,
            r#"{"type":"ready","ask":1}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":"1"}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"x":1}}"#,
            r#"{"type":"ready","ask":{"rate_div":2}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":0}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":-3}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1e308}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1001}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":0.01}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"rate_div":0}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"rate_div":65}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"rate_div":-1}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"rate_div":1.5}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"rate_div":18446744073709551617}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"tolerance_ms":2}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"lead_ms":0}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"lead_ms":0.99}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"lead_ms":-5}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"lead_ms":1001}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"lead_ms":1e308}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"lead_ms":"10"}}"#,
            r#"{"type":"ready","ask":{"tolerance_ms":1,"lead_ms":[10]}}"#,
        ] {
            refused(&mut room.alice, text, "bad_field").await;
            assert_usable(&mut room.alice).await;
        }
        // None of those made alice ready: bob's ready alone starts nothing…
        send(&mut room.bob, json!({"type": "ready"})).await;
        assert_usable(&mut room.bob).await;
        // …and alice's valid ask starts the round at its τ and rate.
        let now_us = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
        let sent_us = now_us();
        send(&mut room.alice, json!({"type": "ready", "ask": {"tolerance_ms": 2, "rate_div": 2, "lead_ms": 1000}})).await;
        let s = recv(&mut room.alice).await;
        assert_eq!(s["type"], "start", "{s}");
        let lead = s["t_start_us"].as_i64().unwrap() - sent_us;
        assert!((990_000..1_500_000).contains(&lead), "the asked lead of 1 s stands: {s}");
        assert_eq!(s["params"]["tolerance_ms"], 2.0, "{s}");
        assert_eq!(s["params"]["rate_hz"], 125.0 / 2.0 / 2.0, "{s}");
        assert_eq!(recv(&mut room.eve).await, s, "observers see the round's parameters");
    });
    still_serves(&mut server);
}

#[test]
fn extra_fields_are_bad_field() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut c = ws(&server).await;
        for text in [
            r#"{"type":"ready","x":1}"#,
            r#"{"type":"post","label":"A","x":1}"#,
            r#"{"type":"create","x":null}"#,
            r#"{"type":"create","params":{"speed":3}}"#,
            r#"{"type":"join","room":"ABCDE-FGHJK","as":"observer","x":1}"#,
            r#"{"type":"ping","t0_us":1,"t1_us":2}"#,
            r#"{"type":"board","entries":[]}"#,
            r#"{"type":"drop","spans":[[1,2]],"who":"alice"}"#,
            r#"{"type":"confirm","tag":"deadbeef","drops":0,"x":1}"#,
        ] {
            refused(&mut c, text, "bad_field").await;
            assert_usable(&mut c).await;
        }
        send(&mut c, json!({"type": "create"})).await;
        assert_eq!(recv(&mut c).await["type"], "joined");
    });
    still_serves(&mut server);
}

#[test]
fn wrongly_typed_fields_are_bad_field() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut c = ws(&server).await;
        for text in [
            r#"{"type":"ping","t0_us":"now"}"#,
            r#"{"type":"ping","t0_us":1.5}"#,
            r#"{"type":"ping","t0_us":null}"#,
            r#"{"type":"ping","t0_us":[1]}"#,
            r#"{"type":"join","room":5}"#,
            r#"{"type":"join","room":{"code":"ABCDE-FGHJK"}}"#,
            r#"{"type":"join","room":"ABCDE-FGHJK","as":"alice"}"#,
            r#"{"type":"create","params":{"tolerance_ms":"big"}}"#,
            r#"{"type":"create","params":{"target_bits":-1}}"#,
            r#"{"type":"create","params":{"duration_ms":4294967296}}"#,
            r#"{"type":"create","params":"fast"}"#,
            r#"{"type":"confirm","tag":12345678}"#,
            r#"{"type":"confirm","tag":"deadbeef","drops":-1}"#,
            r#"{"type":"confirm","tag":"deadbeef","drops":"one"}"#,
            r#"{"type":"confirm","tag":"deadbeef","drops":4294967296}"#,
            r#"{"type":"drop","spans":"all"}"#,
            r#"{"type":"drop","spans":[1,2]}"#,
            r#"{"type":"drop","spans":[[1]]}"#,
            r#"{"type":"drop","spans":[[1,2,3]]}"#,
            r#"{"type":"drop","spans":[[1.5,2]]}"#,
            r#"{"type":"drop","spans":[["1","2"]]}"#,
            r#"{"type":"drop","spans":[[1,9223372036854775808]]}"#,
            r#"{"type":"drop","spans":{"from":1,"to":2}}"#,
            r#"{"type":"abort","reason":false}"#,
            r#"{"type":7}"#,
            r#"{"type":null}"#,
            r#"{"type":["create"]}"#,
        ] {
            refused(&mut c, text, "bad_field").await;
            assert_usable(&mut c).await;
        }
        send(&mut c, json!({"type": "create"})).await;
        assert_eq!(recv(&mut c).await["type"], "joined");
    });
    still_serves(&mut server);
}

#[test]
fn huge_fields_are_bad_field_and_the_connection_stays_usable() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut alice = ws(&server).await;
        let big = "X".repeat(60_000);
        // A 60 000-character room code, on a connection in no room yet.
        refused(&mut alice, &json!({"type": "join", "room": big}).to_string(), "bad_field").await;
        assert_usable(&mut alice).await;
        // Parameters far out of range.
        for params in [
            json!({"tolerance_ms": 1e308}),
            json!({"tolerance_ms": -1e308}),
            json!({"rate_hz": 1e300}),
            json!({"guard_ms": 1e300}),
            json!({"tolerance_ms": 0.01}), // its default rate is above 10 kHz
            json!({"target_bits": 4_000_000_000u32}),
            json!({"duration_ms": 4_000_000_000u32}),
            json!({"rate_hz": 10000, "duration_ms": 120000}),
        ] {
            refused(&mut alice, &json!({"type": "create", "params": params}).to_string(), "bad_field").await;
            assert_usable(&mut alice).await;
        }
        // t0_us beyond i64.
        refused(&mut alice, r#"{"type":"ping","t0_us":1e30}"#, "bad_field").await;
        refused(&mut alice, r#"{"type":"ping","t0_us":9223372036854775808}"#, "bad_field").await;
        assert_usable(&mut alice).await;
        // After all that, the same connection creates a room and runs a round in it.
        let code = create_room(&mut alice, json!({"tolerance_ms": 1, "duration_ms": 100})).await;
        let mut bob = ws(&server).await;
        join(&mut bob, &code, false).await;
        expect_peer_joined(&mut alice, "bob").await;
        let mut room = Room { code, alice, bob, eve: ws(&server).await };
        join(&mut room.eve, &room.code, true).await;
        expect_peer_joined(&mut room.alice, "observer").await;
        expect_peer_joined(&mut room.bob, "observer").await;
        let w = window(&start_round(&mut room).await);
        sleep_until_server_time(&server, w.t_end + 1_000).await;
        send(&mut room.alice, json!({"type": "done"})).await;
        send(&mut room.bob, json!({"type": "done"})).await;
        for c in [&mut room.alice, &mut room.bob, &mut room.eve] {
            assert_eq!(recv(c).await["type"], "closed");
        }
        // The round is closed: a 60 000-character confirm tag, then a valid one.
        refused(&mut room.alice, &json!({"type": "confirm", "tag": "0".repeat(60_000)}).to_string(), "bad_field").await;
        refused(&mut room.alice, &json!({"type": "confirm", "tag": "f".repeat(9)}).to_string(), "bad_field").await;
        assert_usable(&mut room.alice).await;
        send(&mut room.alice, json!({"type": "confirm", "tag": "DEADBEEF"})).await;
        send(&mut room.bob, json!({"type": "confirm", "tag": "deadbeef"})).await;
        for c in [&mut room.alice, &mut room.bob, &mut room.eve] {
            assert_eq!(recv(c).await, json!({"type": "confirm", "role": "alice", "tag": "deadbeef"}));
            assert_eq!(recv(c).await, json!({"type": "confirm", "role": "bob", "tag": "deadbeef"}));
            assert_eq!(recv(c).await, json!({"type": "confirmed", "match": true}));
        }
        // A 60 000-character abort reason (and other bad ones), then a valid abort.
        for reason in ["r".repeat(60_000), "x".repeat(33), "<script>".into(), String::new(), "Peer Left".into()] {
            refused(&mut room.bob, &json!({"type": "abort", "reason": reason}).to_string(), "bad_field").await;
        }
        assert_usable(&mut room.bob).await;
        send(&mut room.bob, json!({"type": "abort", "reason": "user_quit"})).await;
        for c in [&mut room.alice, &mut room.bob, &mut room.eve] {
            assert_eq!(recv(c).await, json!({"type": "aborted", "reason": "user_quit"}));
        }
    });
    still_serves(&mut server);
}

#[test]
fn multibyte_text_quoted_in_an_error_is_cut_safely() {
    // Errors quote what the client sent, cut to a few hundred bytes: the cut must fall
    // between characters wherever 2-, 3- and 4-byte characters put it.
    let mut server = Server::start(&[]);
    block_on(async {
        let mut alice = ws(&server).await;
        let code = create_room(&mut alice, json!({})).await;
        let mut bob = ws(&server).await;
        join(&mut bob, &code, false).await;
        for ch in ["À", "€", "😀"] {
            for pad in 0..4 {
                let text = format!("{}{}", "x".repeat(pad), ch.repeat(400));
                // In no room: an unknown field.
                let mut c = ws(&server).await;
                refused(&mut c, &format!(r#"{{"type":"ready","{text}":1}}"#), "bad_field").await;
                assert_usable(&mut c).await;
                // A poster: a label that is neither A nor B.
                refused(&mut bob, &json!({"type": "post", "label": text}).to_string(), "bad_field").await;
                assert_usable(&mut bob).await;
            }
        }
        // Bob still holds his seat and nobody else can take it; his leaving frees it.
        let mut carol = ws(&server).await;
        refused(&mut carol, &json!({"type": "join", "room": code}).to_string(), "room_full").await;
        drop(bob);
        assert_eq!(recv(&mut alice).await, json!({"type": "peer", "event": "joined", "role": "bob"}));
        assert_eq!(recv(&mut alice).await, json!({"type": "peer", "event": "left", "role": "bob"}));
        join(&mut carol, &code, false).await;
    });
    still_serves(&mut server);
}

#[test]
fn labels_other_than_a_and_b_are_bad_field_and_never_reach_the_board() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut room = room_of_three(&server, json!({"tolerance_ms": 1, "duration_ms": 3000})).await;
        let w = window(&start_round(&mut room).await);
        sleep_until_server_time(&server, w.t_start).await;
        for label in [json!("C"), json!("a"), json!("b"), json!(null), json!(1), json!(""), json!("AB"), json!(["A"]), json!({"A": 1})] {
            refused(&mut room.alice, &json!({"type": "post", "label": label}).to_string(), "bad_field").await;
        }
        assert_usable(&mut room.alice).await;
        assert!(board_entries(&mut room.eve).await.is_empty(), "a refused post reached the board");
        // The same connections still post (a label may name either party: it is a claim).
        send(&mut room.alice, json!({"type": "post", "label": "B"})).await;
        assert_usable(&mut room.alice).await;
        send(&mut room.bob, json!({"type": "post", "label": "A"})).await;
        assert_usable(&mut room.bob).await;
        let entries = board_entries(&mut room.eve).await;
        assert_eq!(labels(&entries), ["B", "A"], "{entries:?}");
        assert_eq!(entries[0]["i"], 0);
        assert_eq!(entries[1]["i"], 1);
    });
    still_serves(&mut server);
}

// ---------------------------------------------------------------------------------------
// 8–10: posts out of place or out of measure are refused and kept off the board.
// ---------------------------------------------------------------------------------------

#[test]
fn posts_before_the_round_or_after_its_window_are_not_allowed_and_not_on_the_board() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut room = room_of_three(&server, json!({"tolerance_ms": 1, "duration_ms": 300})).await;
        // No round yet.
        refused(&mut room.alice, r#"{"type":"post","label":"A"}"#, "no_round").await;
        refused(&mut room.bob, r#"{"type":"post","label":"B"}"#, "no_round").await;
        assert_usable(&mut room.alice).await;
        assert!(board_entries(&mut room.eve).await.is_empty());

        let start = start_round(&mut room).await;
        let w = window(&start);
        assert_eq!(w.t_end - w.t_start, 300_000, "{start}");
        sleep_until_server_time(&server, w.t_start).await;
        send(&mut room.alice, json!({"type": "post", "label": "A"})).await;
        assert_usable(&mut room.alice).await;
        // Past t_end + guard: refused, whoever posts, whatever the label.
        sleep_until_server_time(&server, w.t_end + w.guard + 10_000).await;
        refused(&mut room.alice, r#"{"type":"post","label":"A"}"#, "outside_window").await;
        refused(&mut room.bob, r#"{"type":"post","label":"A"}"#, "outside_window").await;
        refused(&mut room.bob, r#"{"type":"post","label":"B"}"#, "outside_window").await;
        let entries = board_entries(&mut room.eve).await;
        assert_eq!(entries.len(), 1, "only the post inside the window is on the board: {entries:?}");
        assert_eq!(entries[0]["label"], "A");
        let t = entries[0]["t_us"].as_i64().unwrap();
        assert!(t >= w.t_start - w.guard && t <= w.t_end + w.guard, "{t} outside the window");
        // The refused posters still finish the round.
        send(&mut room.alice, json!({"type": "done"})).await;
        send(&mut room.bob, json!({"type": "done"})).await;
        for c in [&mut room.alice, &mut room.bob] {
            let closed = recv(c).await;
            assert_eq!(closed["type"], "closed", "{closed}");
            assert_eq!(closed["board"].as_array().unwrap().len(), 1);
        }
        // And once closed (done sent), posts are refused too.
        refused(&mut room.alice, r#"{"type":"post","label":"A"}"#, "no_round").await;
    });
    still_serves(&mut server);
}

#[test]
fn observers_may_not_post_or_steer_the_room() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut room = room_of_three(&server, json!({"tolerance_ms": 1, "duration_ms": 3000})).await;
        let w = window(&start_round(&mut room).await);
        sleep_until_server_time(&server, w.t_start).await;
        for text in [
            r#"{"type":"post","label":"A"}"#,
            r#"{"type":"post","label":"B"}"#,
            r#"{"type":"ready"}"#,
            r#"{"type":"done"}"#,
            r#"{"type":"reset"}"#,
            r#"{"type":"abort","reason":"desync"}"#,
            r#"{"type":"confirm","tag":"deadbeef"}"#,
        ] {
            refused(&mut room.eve, text, "not_allowed").await;
        }
        assert!(board_entries(&mut room.eve).await.is_empty(), "an observer's post reached the board");
        // The posters heard nothing of it (no reset, no aborted) and their round runs on.
        assert_usable(&mut room.alice).await;
        assert_usable(&mut room.bob).await;
        send(&mut room.bob, json!({"type": "post", "label": "B"})).await;
        assert_usable(&mut room.bob).await;
        assert_eq!(labels(&board_entries(&mut room.eve).await), ["B"]);
    });
    still_serves(&mut server);
}

/// A flood that does not read ends with 1008: either the frame-rate rule of src/conn.rs
/// or the write timeout of a client that no longer reads its rate_limited replies.
#[test]
fn a_post_flood_is_rate_limited_or_closed_and_kept_off_the_board() {
    const FLOOD: usize = 20_000;
    let mut server = Server::start(&[]);
    block_on(async {
        let mut room = room_of_three(&server, json!({"tolerance_ms": 1, "duration_ms": 2000})).await;
        let mut clock = ws(&server).await;
        let before_ready = server_now(&mut clock).await;
        let start = start_round(&mut room).await;
        let w = window(&start);
        let rate_hz = start["params"]["rate_hz"].as_f64().unwrap();
        sleep_until_server_time(&server, w.t_start).await;

        // As fast as it can, without reading.
        let t0 = Instant::now();
        let post = Message::Text(r#"{"type":"post","label":"A"}"#.into());
        let mut send_failed = false;
        for _ in 0..FLOOD {
            if room.alice.feed(post.clone()).await.is_err() {
                send_failed = true;
                break;
            }
        }
        if !send_failed {
            send_failed = room.alice.flush().await.is_err();
        }
        let flood_took = t0.elapsed();
        // Then reads what came back. The round is still open for a while: while the
        // connection lives, a ping marks the end of what the flood caused.
        let (mut codes, mut close, mut other) = (Vec::new(), None, 0);
        if !send_failed {
            let _ = room.alice.send(Message::Text(r#"{"type":"ping","t0_us":5}"#.into())).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, room.alice.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    match v["type"].as_str().unwrap() {
                        "error" => codes.push(v["code"].as_str().unwrap().to_string()),
                        "pong" => break,
                        _ => other += 1,
                    }
                }
                Ok(Some(Ok(Message::Close(f)))) => {
                    eprintln!("flood: close frame {f:?}");
                    close = f.map(|f| u16::from(f.code));
                    break;
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => break,
                Err(_) => panic!("after the flood the server neither answered nor closed within 20 s"),
            }
        }
        let limited = codes.iter().filter(|c| *c == "too_many_posts").count();
        eprintln!(
            "flood: {FLOOD} posts written in {flood_took:?} (send failed: {send_failed}); read {} errors ({limited} too_many_posts, others {:?}), {other} other messages, close {close:?}",
            codes.len(),
            codes.iter().filter(|c| *c != "too_many_posts").collect::<std::collections::BTreeSet<_>>()
        );
        assert!(limited > 0 || close == Some(1008), "a flood must be rate limited or closed with 1008 (policy): close {close:?}");
        if let Some(code) = close {
            assert_eq!(code, 1008, "a flood closes with 1008 (policy)");
        }
        // Refusals are too_many_posts, or outside_window / no_round once the window has passed; never anything else.
        assert!(codes.iter().all(|c| c == "too_many_posts" || c == "outside_window" || c == "no_round"), "{codes:?}");

        // The board holds at most the bucket's burst plus its steady allowance over the
        // time posts were taken (Limits::default: burst 64, 4 × rate_hz + 100 per second).
        let entries = board_entries(&mut room.eve).await;
        let span_s = (w.t_end + w.guard - before_ready) as f64 / 1e6;
        let bound = (64.0 + (4.0 * rate_hz + 100.0) * span_s).ceil() as usize;
        eprintln!("flood: {} entries on the board (bound {bound})", entries.len());
        assert!(entries.len() <= bound, "{} entries on the board, above the bound {bound}", entries.len());
        assert!(entries.len() >= 64, "the first posts of the flood (the burst) belong on the board: {}", entries.len());
        assert!(entries.iter().all(|e| e["label"] == "A"));
        // The other poster is not affected by the flood: it hears that alice left if she
        // was closed, and its connection works.
        if close.is_some() {
            assert_eq!(recv(&mut room.bob).await, json!({"type": "peer", "event": "left", "role": "alice"}));
            assert_eq!(recv(&mut room.bob).await, json!({"type": "aborted", "reason": "peer_left"}));
        }
        assert_usable(&mut room.bob).await;
    });
    still_serves(&mut server);
}

/// The other side of the flood rule: replies the engine queues for a connection (here
/// errors: `done` with no round running) must not pile up while the connection could write them. A client that reads
/// everything, sends one frame at a time and stays well under the flood limit
/// (`FLOOD_BURST` = 4000 frames in src/conn.rs) is not "too slow".
#[test]
fn a_client_that_reads_its_replies_is_not_closed_as_too_slow() {
    const N: usize = 2000;
    let mut server = Server::start(&[]);
    block_on(async {
        let mut c = ws(&server).await;
        create_room(&mut c, json!({})).await;
        let (mut tx, mut rx) = c.split();
        let reader = tokio::spawn(async move {
            let mut pongs = 0;
            while let Some(frame) = rx.next().await {
                match frame {
                    Ok(Message::Text(t)) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        assert_eq!((&v["type"], &v["code"]), (&json!("error"), &json!("no_round")), "{v}");
                        pongs += 1;
                        if pongs == N {
                            return (pongs, None);
                        }
                    }
                    Ok(Message::Close(f)) => return (pongs, Some(format!("{f:?}"))),
                    Ok(_) => {}
                    Err(e) => return (pongs, Some(format!("{e}"))),
                }
            }
            (pongs, Some("end of stream".to_string()))
        });
        for _ in 0..N {
            if tx.send(Message::Text(r#"{"type":"done"}"#.into())).await.is_err() {
                break;
            }
        }
        let (pongs, ended) = tokio::time::timeout(Duration::from_secs(20), reader).await.expect("replies within 20 s").unwrap();
        assert_eq!(ended, None, "closed after {pongs} of {N} replies");
        assert_eq!(pongs, N);
    });
    still_serves(&mut server);
}

/// Every `board` answer is the whole board: a stream of requests is rate limited (each
/// one still answered, with `rate_limited` past the allowance), and another connection
/// is answered meanwhile.
#[test]
fn board_requests_are_rate_limited() {
    const N: usize = 500;
    let mut server = Server::start(&[]);
    block_on(async {
        let mut alice = ws(&server).await;
        let code = create_room(&mut alice, json!({})).await;
        let mut eve = ws(&server).await;
        join(&mut eve, &code, true).await;
        let began = Instant::now();
        for _ in 0..N {
            send_text(&mut eve, r#"{"type":"board"}"#).await;
        }
        let (mut boards, mut limited) = (0, 0);
        while boards + limited < N {
            let v = recv(&mut eve).await;
            match v["type"].as_str() {
                Some("board") => boards += 1,
                Some("error") if v["code"] == "rate_limited" => limited += 1,
                _ => panic!("unexpected {v}"),
            }
        }
        // 20 at once, then 10 a second (src/room.rs `Limits`), however slow this machine.
        let allowed = 20 + (10.0 * began.elapsed().as_secs_f64()).ceil() as usize + 1;
        assert!(boards >= 20 && boards <= allowed, "{boards} boards, {limited} refused, {allowed} allowed");
        assert_usable(&mut eve).await;
        expect_peer_joined(&mut alice, "observer").await;
        assert_usable(&mut alice).await;
    });
    still_serves(&mut server);
}

// ---------------------------------------------------------------------------------------
// 11–12: frames too large, binary frames.
// ---------------------------------------------------------------------------------------

async fn oversized_text_closes_1009(server: &Server, len: usize) {
    let mut c = ws(server).await;
    assert_usable(&mut c).await;
    // The send may fail if the server has closed before the whole frame went out; the
    // close frame is written before the server drains, so it is read all the same.
    let _ = c.send(Message::Text("x".repeat(len).into())).await;
    assert_eq!(close_code(&mut c).await, Some(1009), "a {len}-byte text frame");
}

#[test]
fn a_one_mib_text_frame_closes_with_1009() {
    let mut server = Server::start(&[]);
    block_on(oversized_text_closes_1009(&server, 1 << 20));
    still_serves(&mut server);
}

#[test]
fn a_100_kib_text_frame_closes_with_1009() {
    let mut server = Server::start(&[]);
    block_on(oversized_text_closes_1009(&server, 100 << 10));
    // Just under the limit is a normal (if useless) message: a bad_field, connection open.
    block_on(async {
        let mut c = ws(&server).await;
        refused(&mut c, &json!({"type": "join", "room": "Y".repeat(64 * 1024 - 40)}).to_string(), "bad_field").await;
        assert_usable(&mut c).await;
    });
    still_serves(&mut server);
}

#[test]
fn oversized_fragmented_messages_and_lying_headers_close_with_1009() {
    let mut server = Server::start(&[]);
    // A message in two fragments is fine when it is small…
    let mut s = raw_ws(&server);
    let msg = br#"{"type":"ping","t0_us":99}"#;
    s.write_all(&frame(0x01, &msg[..10], true)).unwrap();
    s.write_all(&frame(0x80, &msg[10..], true)).unwrap();
    let v = raw_recv(&mut s);
    assert_eq!((v["type"].as_str(), v["t0_us"].as_i64()), (Some("pong"), Some(99)));
    // …and closed with 1009 once its fragments add up to more than 64 KiB.
    let chunk = vec![b' '; 40 * 1024];
    s.write_all(&frame(0x01, &chunk, true)).unwrap();
    let _ = s.write_all(&frame(0x80, &chunk, true));
    assert_eq!(raw_close_code(&mut s), Some(1009), "two 40 KiB fragments");
    // A header announcing 2^62 bytes (and none following): closed at once, nothing allocated.
    let mut s = raw_ws(&server);
    raw_assert_usable(&mut s);
    let mut f = vec![0x81, 0x80 | 127];
    f.extend_from_slice(&(1u64 << 62).to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&f).unwrap();
    assert_eq!(raw_close_code(&mut s), Some(1009), "a header announcing 4 EiB");
    still_serves(&mut server);
}

#[test]
fn a_binary_frame_closes_with_1003() {
    let mut server = Server::start(&[]);
    block_on(async {
        for payload in [vec![0u8, 1, 2, 255], br#"{"type":"create"}"#.to_vec()] {
            let mut c = ws(&server).await;
            assert_usable(&mut c).await;
            c.send(Message::Binary(payload.into())).await.unwrap();
            assert_eq!(close_code(&mut c).await, Some(1003));
        }
    });
    still_serves(&mut server);
}

// ---------------------------------------------------------------------------------------
// 13–14: clients that never read, connections dropped without a close.
// ---------------------------------------------------------------------------------------

#[test]
fn a_client_that_never_reads_is_disconnected_and_stalls_no_one() {
    let mut server = Server::start(&[]);
    let rt = runtime();
    // A room with a large board: the poster paces its posts under the allowance.
    let (mut room, board_len) = rt.block_on(async {
        let mut room = room_of_three(&server, json!({"rate_hz": 10000, "duration_ms": 2000})).await;
        let w = window(&start_round(&mut room).await);
        sleep_until_server_time(&server, w.t_start).await;
        let post = Message::Text(r#"{"type":"post","label":"A"}"#.into());
        for _ in 0..320 {
            for _ in 0..25 {
                room.alice.feed(post.clone()).await.unwrap();
            }
            room.alice.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sync(&mut room.alice).await;
        let n = board_entries(&mut room.eve).await.len();
        assert!(n >= 4000, "the board should be large for this test, it has {n} entries");
        (room, n)
    });
    wait_connections(&server, 3, Duration::from_secs(5));

    // The non-reader joins as an observer and asks for the (~45 bytes × n) board as often
    // as the server allows (20 at once, then 10 a second): soon far more than the socket
    // buffers hold. It never reads.
    let mut lazy = raw_ws(&server);
    let mut requests = text_frame(&json!({"type": "join", "room": room.code, "as": "observer"}).to_string());
    for _ in 0..20 {
        requests.extend(text_frame(r#"{"type":"board"}"#));
    }
    lazy.write_all(&requests).unwrap();
    let t0 = Instant::now();
    let asking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let asker = {
        let (mut s, asking) = (lazy.try_clone().unwrap(), asking.clone());
        std::thread::spawn(move || {
            while asking.load(std::sync::atomic::Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(110));
                if s.write_all(&text_frame(r#"{"type":"board"}"#)).is_err() {
                    break;
                }
            }
        })
    };
    wait_connections(&server, 4, Duration::from_secs(5));

    // Meanwhile another room makes a key.
    live_pair(&server, &[]);
    let pair_done = t0.elapsed();

    // The non-reader is dropped within 15 s: healthz stops counting it…
    wait_connections(&server, 3, Duration::from_secs(15).saturating_sub(t0.elapsed()));
    let dropped_at = t0.elapsed();
    asking.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = asker.join();
    // …and its socket ends (once it reads what the kernel still holds for it).
    lazy.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    let ended = loop {
        match lazy.read(&mut buf) {
            Ok(0) => break "eof",
            Ok(n) => got += n,
            Err(e) if is_timeout(&e) => panic!("the non-reader's socket is still open {:?} after it stopped reading", t0.elapsed()),
            Err(_) => break "reset",
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "the non-reader's socket is still open after 20 s");
    };
    let socket_ended_at = t0.elapsed();
    eprintln!(
        "non-reader: board of {board_len} entries; live pair done after {pair_done:?}; dropped from healthz after {dropped_at:?}; socket ended ({ended}) after {socket_ended_at:?} with {got} bytes unread"
    );
    // The server did fill the non-reader's socket before giving up on it.
    assert!(got > 64 << 10, "the server should have sent the non-reader its boards until the socket filled, sent {got} bytes");

    // The room the non-reader sat in is unaffected.
    rt.block_on(async {
        let v = sync(&mut room.eve).await;
        assert_eq!(v["type"], "pong");
        assert_eq!(board_entries(&mut room.eve).await.len(), board_len);
        sync(&mut room.alice).await;
        sync(&mut room.bob).await;
    });
    drop(room);
    drop(rt);
    still_serves(&mut server);
}

#[test]
fn a_thousand_connections_dropped_without_a_close_are_all_forgotten() {
    // 200 at once from one address, over its default cap (tests/limits.rs tests the caps); the
    // caps must give every one back too, or the next batches would be refused.
    let mut server = Server::start(&["--max-per-address", "200"]);
    const BATCH: usize = 200;
    for batch in 0..5 {
        let mut socks: Vec<TcpStream> = (0..BATCH).map(|_| raw_ws_start(&server)).collect();
        for s in &mut socks {
            raw_ws_finish(s);
        }
        if batch == 0 {
            // All of them count while open…
            wait_connections(&server, BATCH as u64, Duration::from_secs(10));
        }
        // …and are dropped without a close frame.
        drop(socks);
    }
    let took = wait_connections(&server, 0, Duration::from_secs(10));
    eprintln!("1000 dropped connections forgotten {took:?} after the last drop");
    still_serves(&mut server);
}

// ---------------------------------------------------------------------------------------
// 15–18: HTTP on /ws.
// ---------------------------------------------------------------------------------------

#[test]
fn plain_get_on_ws_is_426_with_a_readable_body() {
    let mut server = Server::start(&[]);
    let resp = server.raw_http(&format!("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", server.port));
    let (status, body) = status_and_body(&resp);
    assert_eq!(status, 426, "{resp}");
    assert_eq!(header(&resp, "sec-websocket-version"), Some("13"), "{resp}");
    assert!(header(&resp, "content-type").map_or(false, |t| t.starts_with("text/plain")), "{resp}");
    assert!(body.contains("WebSocket") && body.is_ascii() && body.len() > 20, "body: {body:?}");
    // A browser-like GET (Connection: close) gets the same.
    let (status, body) = server.get("/ws");
    assert_eq!(status, 426);
    assert!(body.contains("WebSocket"));
    still_serves(&mut server);
}

#[test]
fn an_upgrade_without_a_key_is_400() {
    let mut server = Server::start(&[]);
    for headers in [
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".to_string(),
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: \r\n".to_string(),
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n".to_string(),
        format!("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}==\r\n", "A".repeat(5000)),
    ] {
        let resp = server.raw_http(&upgrade_request(&server, &headers));
        let (status, body) = status_and_body(&resp);
        assert_eq!(status, 400, "{resp}");
        assert!(body.contains("Sec-WebSocket-Key"), "{body:?}");
        assert!(header(&resp, "sec-websocket-accept").is_none());
    }
    // The same request with the key is switched.
    let resp = server.raw_http(&full_upgrade(&server, ""));
    assert_eq!(status_and_body(&resp).0, 101, "{resp}");
    assert_eq!(header(&resp, "sec-websocket-accept"), Some(ACCEPT));
    still_serves(&mut server);
}

#[test]
fn a_wrong_websocket_version_is_426_naming_13() {
    let mut server = Server::start(&[]);
    for version in ["8", "12", "14", "13, 8", "abc"] {
        let resp = server.raw_http(&upgrade_request(
            &server,
            &format!("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: {version}\r\n"),
        ));
        assert_eq!(status_and_body(&resp).0, 426, "version {version}: {resp}");
        assert_eq!(header(&resp, "sec-websocket-version"), Some("13"), "{resp}");
        assert!(header(&resp, "sec-websocket-accept").is_none());
    }
    still_serves(&mut server);
}

#[test]
fn a_foreign_origin_is_403_unless_allowed() {
    let mut server = Server::start(&[]);
    let port = server.port;
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1.evil.example"] {
        let resp = server.raw_http(&full_upgrade(&server, &format!("Origin: {origin}\r\n")));
        assert_eq!(status_and_body(&resp).0, 403, "origin {origin}: {resp}");
        assert!(header(&resp, "sec-websocket-accept").is_none());
    }
    // Same origin as the Host, and no Origin at all (a script): switched.
    for extra in [format!("Origin: http://127.0.0.1:{port}\r\n"), String::new()] {
        let resp = server.raw_http(&full_upgrade(&server, &extra));
        assert_eq!(status_and_body(&resp).0, 101, "{extra:?}: {resp}");
        assert_eq!(header(&resp, "sec-websocket-accept"), Some(ACCEPT));
    }
    still_serves(&mut server);

    let mut allowing = Server::start(&["--allow-origin", "http://evil.example"]);
    let resp = allowing.raw_http(&full_upgrade(&allowing, "Origin: http://evil.example\r\n"));
    assert_eq!(status_and_body(&resp).0, 101, "{resp}");
    assert_eq!(header(&resp, "sec-websocket-accept"), Some(ACCEPT));
    let resp = allowing.raw_http(&full_upgrade(&allowing, "Origin: http://other.example\r\n"));
    assert_eq!(status_and_body(&resp).0, 403, "{resp}");
    let resp = allowing.raw_http(&full_upgrade(&allowing, ""));
    assert_eq!(status_and_body(&resp).0, 101, "{resp}");
    // An allowed foreign origin really gets a working socket.
    let mut s = TcpStream::connect(("127.0.0.1", allowing.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(full_upgrade(&allowing, "Origin: http://evil.example\r\n").as_bytes()).unwrap();
    raw_ws_finish(&mut s);
    raw_assert_usable(&mut s);
    drop(s);
    still_serves(&mut allowing);
}

#[test]
fn malformed_http_requests_are_refused_and_the_server_stays_up() {
    let mut server = Server::start(&[]);
    let port = server.port;
    let upgrade_headers = format!("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n");
    // An upgrade by POST, and one over HTTP/1.0.
    let resp = server.raw_http(&format!("POST /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n{upgrade_headers}\r\n"));
    assert_eq!(status_and_body(&resp).0, 405, "{resp}");
    assert_eq!(header(&resp, "allow"), Some("GET"), "{resp}");
    let resp = server.raw_http(&format!("GET /ws HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{upgrade_headers}\r\n"));
    assert_eq!(status_and_body(&resp).0, 400, "{resp}");
    // Upgrade to something else.
    let resp = server.raw_http(&upgrade_request(&server, &format!("Upgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n")));
    assert_eq!(status_and_body(&resp).0, 400, "{resp}");
    // Not HTTP at all.
    let resp = server.raw_http("HELLO THERE\r\n\r\n");
    assert_eq!(status_and_body(&resp).0, 400, "{resp}");
    // A head far larger than the server reads (16 KiB).
    let resp = server.raw_http(&upgrade_request(&server, &format!("{upgrade_headers}X-Junk: {}\r\n", "j".repeat(64 * 1024))));
    assert_eq!(status_and_body(&resp).0, 431, "an oversized head: {resp:?}");
    still_serves(&mut server);
}

// ---------------------------------------------------------------------------------------
// 19: more of what a hostile client tries.
// ---------------------------------------------------------------------------------------

#[test]
fn deeply_nested_json_is_bad_json() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut c = ws(&server).await;
        let depth = 10_000;
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        refused(&mut c, &arrays, "bad_json").await;
        let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
        refused(&mut c, &objects, "bad_json").await;
        let inside = format!(r#"{{"type":"create","params":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
        refused(&mut c, &inside, "bad_json").await;
        let unclosed = "[".repeat(60_000);
        refused(&mut c, &unclosed, "bad_json").await;
        assert_usable(&mut c).await;
        send(&mut c, json!({"type": "create"})).await;
        assert_eq!(recv(&mut c).await["type"], "joined");
    });
    still_serves(&mut server);
}

#[test]
fn invalid_utf8_in_a_text_frame_closes_the_connection() {
    let mut server = Server::start(&[]);
    let mut codes = Vec::new();
    for payload in [&b"{\"type\":\"\xff\xfe\"}"[..], &b"\xc3\x28"[..], &b"\xed\xa0\x80"[..]] {
        let mut s = raw_ws(&server);
        raw_assert_usable(&mut s);
        s.write_all(&frame(0x81, payload, true)).unwrap();
        codes.push(raw_close_code(&mut s));
    }
    eprintln!("invalid UTF-8 close codes: {codes:?}");
    for c in &codes {
        assert_eq!(*c, Some(1007), "invalid UTF-8 must close with 1007: {codes:?}");
    }
    still_serves(&mut server);
}

#[test]
fn protocol_violations_close_with_1002() {
    let mut server = Server::start(&[]);
    let ping = br#"{"type":"ping","t0_us":1}"#;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an unmasked frame", frame(0x81, ping, false)),
        ("a reserved data opcode", frame(0x83, ping, true)),
        ("a reserved control opcode", frame(0x8b, b"", true)),
        ("RSV1 without an extension", frame(0xc1, ping, true)),
        ("a ping of 126 bytes", frame(0x89, &[b'p'; 126], true)),
        ("a fragmented ping", frame(0x09, b"p", true)),
        ("a continuation with nothing to continue", frame(0x80, ping, true)),
        ("a new message inside a fragmented one", [frame(0x01, b"{", true), frame(0x81, ping, true)].concat()),
        ("a close frame of one byte", frame(0x88, &[3], true)),
    ];
    for (what, bytes) in cases {
        let mut s = raw_ws(&server);
        raw_assert_usable(&mut s);
        s.write_all(&bytes).unwrap();
        assert_eq!(raw_close_code(&mut s), Some(1002), "{what}");
    }
    // Text that is not UTF-8, even in a close reason, is 1007 (RFC 6455 §7.4.1).
    let mut s = raw_ws(&server);
    raw_assert_usable(&mut s);
    s.write_all(&frame(0x88, &[0x03, 0xe8, 0xff], true)).unwrap();
    assert_eq!(raw_close_code(&mut s), Some(1007), "a close reason in invalid UTF-8");
    still_serves(&mut server);
}

#[test]
fn joining_a_full_room_is_room_full_and_the_connection_may_watch_instead() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut room = room_of_three(&server, json!({})).await;
        let mut third = ws(&server).await;
        refused(&mut third, &json!({"type": "join", "room": room.code}).to_string(), "room_full").await;
        // Whatever way the code is typed.
        refused(&mut third, &json!({"type": "join", "room": room.code.to_lowercase().replace('-', " ")}).to_string(), "room_full").await;
        assert_usable(&mut third).await;
        let v = join(&mut third, &room.code, true).await;
        assert_eq!(v["role"], "observer");
        assert_eq!(v["peers"], json!({"alice": true, "bob": true, "observers": 2}));
        for c in [&mut room.alice, &mut room.bob, &mut room.eve] {
            expect_peer_joined(c, "observer").await;
        }
        // No such room, in both shapes.
        let mut lost = ws(&server).await;
        refused(&mut lost, r#"{"type":"join","room":"ZZZZZ-ZZZZZ"}"#, "no_such_room").await;
        refused(&mut lost, r#"{"type":"join","room":"<script>"}"#, "no_such_room").await;
        refused(&mut lost, r#"{"type":"join","room":""}"#, "no_such_room").await;
        assert_usable(&mut lost).await;
    });
    still_serves(&mut server);
}

#[test]
fn creating_or_joining_twice_on_one_connection_is_not_allowed() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut c = ws(&server).await;
        let code = create_room(&mut c, json!({})).await;
        refused(&mut c, r#"{"type":"create"}"#, "not_allowed").await;
        refused(&mut c, &json!({"type": "join", "room": code}).to_string(), "not_allowed").await;
        refused(&mut c, &json!({"type": "join", "room": code, "as": "observer"}).to_string(), "not_allowed").await;
        assert_usable(&mut c).await;
        // Still alone in its first room, and only that one exists.
        let v = board_entries(&mut c).await;
        assert!(v.is_empty());
        assert_eq!(server.healthz()["rooms"], 1);
        // After leave, it may create again.
        send(&mut c, json!({"type": "leave"})).await;
        let code2 = create_room(&mut c, json!({})).await;
        assert_ne!(code, code2);
        assert_eq!(server.healthz()["rooms"], 1);
    });
    still_serves(&mut server);
}

#[test]
fn confirm_without_a_session_is_not_allowed() {
    let mut server = Server::start(&[]);
    block_on(async {
        // In no room at all.
        let mut c = ws(&server).await;
        refused(&mut c, r#"{"type":"confirm","tag":"deadbeef"}"#, "not_allowed").await;
        for text in [r#"{"type":"ready"}"#, r#"{"type":"done"}"#, r#"{"type":"board"}"#, r#"{"type":"reset"}"#, r#"{"type":"post","label":"A"}"#] {
            refused(&mut c, text, "not_allowed").await;
        }
        assert_usable(&mut c).await;
        // In a room, before any round.
        let mut room = room_of_three(&server, json!({})).await;
        refused(&mut room.alice, r#"{"type":"confirm","tag":"deadbeef"}"#, "not_allowed").await;
        refused(&mut room.bob, r#"{"type":"confirm","tag":"deadbeef"}"#, "not_allowed").await;
        assert_usable(&mut room.alice).await;
        assert_usable(&mut room.bob).await;
        // And nothing was relayed to the room.
        assert_usable(&mut room.eve).await;
    });
    still_serves(&mut server);
}

#[test]
fn drops_out_of_turn_or_out_of_the_window_are_refused_and_relay_nothing() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut c = ws(&server).await;
        refused(&mut c, r#"{"type":"drop","spans":[[1,2]]}"#, "not_allowed").await; // in no room
        let mut room = room_of_three(&server, json!({"tolerance_ms": 1, "duration_ms": 300})).await;
        refused(&mut room.alice, r#"{"type":"drop","spans":[[1,2]]}"#, "not_allowed").await; // no round
        let w = window(&start_round(&mut room).await);
        let span = |a: i64, b: i64| json!({"type": "drop", "spans": [[a, b]]}).to_string();
        refused(&mut room.alice, &span(w.t_start, w.t_start + 10), "not_allowed").await; // running
        sleep_until_server_time(&server, w.t_end + 1_000).await;
        send(&mut room.alice, json!({"type": "done"})).await;
        send(&mut room.bob, json!({"type": "done"})).await;
        for ws in [&mut room.alice, &mut room.bob, &mut room.eve] {
            assert_eq!(recv(ws).await["type"], "closed");
        }
        // Observers post nothing; spans outside the window, reversed, overlapping, too many or
        // none are bad fields, each with a message that says which.
        refused(&mut room.eve, &span(w.t_start, w.t_start), "not_allowed").await;
        for (text, says) in [
            (span(w.t_start - 1, w.t_start + 10), "not inside the round's window"),
            (span(w.t_start, w.t_end + 1), "not inside the round's window"),
            (span(w.t_start + 10, w.t_start + 9), "ends before it starts"),
            (json!({"type": "drop", "spans": [[w.t_start, w.t_start + 9], [w.t_start + 9, w.t_start + 20]]}).to_string(), "ascending and disjoint"),
            (json!({"type": "drop", "spans": []}).to_string(), "1 to 64 spans"),
            (json!({"type": "drop", "spans": (0..65).map(|k| [w.t_start + 2 * k, w.t_start + 2 * k]).collect::<Vec<_>>()}).to_string(), "1 to 64 spans"),
        ] {
            let e = refused(&mut room.alice, &text, "bad_field").await;
            assert!(e["message"].as_str().unwrap().contains(says), "{e}");
        }
        // A confirm claiming a drop that never was.
        refused(&mut room.bob, r#"{"type":"confirm","tag":"deadbeef","drops":1}"#, "bad_field").await;
        assert_usable(&mut room.alice).await;
        assert_usable(&mut room.bob).await;
        // None of it reached the room; a good drop then reaches bob and eve, not alice.
        assert_usable(&mut room.eve).await;
        send(&mut room.alice, json!({"type": "drop", "spans": [[w.t_start + 5, w.t_start + 50]]})).await;
        for ws in [&mut room.bob, &mut room.eve] {
            let m = recv(ws).await;
            assert_eq!((m["type"].as_str(), &m["spans"]), (Some("dropped"), &json!([[w.t_start + 5, w.t_start + 50]])), "{m}");
        }
        assert_usable(&mut room.alice).await;
        // Once per round, and not after one's verdict.
        refused(&mut room.alice, &span(w.t_start, w.t_start), "not_allowed").await;
        send(&mut room.bob, json!({"type": "ready"})).await;
        refused(&mut room.bob, &span(w.t_start, w.t_start), "not_allowed").await;
        // A confirm that missed the drop is refused, one that counts it stands.
        refused(&mut room.alice, r#"{"type":"confirm","tag":"deadbeef","drops":0}"#, "stale_confirm").await;
        assert_usable(&mut room.eve).await;
    });
    still_serves(&mut server);
}

#[test]
fn done_before_t_end_is_not_allowed() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut room = room_of_three(&server, json!({"tolerance_ms": 1, "duration_ms": 5000})).await;
        refused(&mut room.alice, r#"{"type":"done"}"#, "no_round").await; // no round yet
        let w = window(&start_round(&mut room).await);
        refused(&mut room.alice, r#"{"type":"done"}"#, "too_early").await; // before t_start
        sleep_until_server_time(&server, w.t_start).await;
        refused(&mut room.alice, r#"{"type":"done"}"#, "too_early").await; // mid-round
        refused(&mut room.bob, r#"{"type":"done"}"#, "too_early").await;
        refused(&mut room.bob, r#"{"type":"ready"}"#, "round_running").await; // a round is running
        refused(&mut room.alice, r#"{"type":"confirm","tag":"deadbeef"}"#, "round_running").await;
        assert_usable(&mut room.alice).await;
        assert_usable(&mut room.bob).await;
        // The round was not closed by the early dones: nobody got `closed`, and posts still land.
        assert_usable(&mut room.eve).await;
        send(&mut room.alice, json!({"type": "post", "label": "A"})).await;
        assert_usable(&mut room.alice).await;
        assert_eq!(board_entries(&mut room.eve).await.len(), 1);
    });
    still_serves(&mut server);
}


/// The server pings every `--ping-secs` and closes a connection from which no frame came
/// for `--silence-secs` (checked at each ping), with 1001; a client that answers the pings
/// (as every WebSocket library does) is not silent, however long it says nothing else.
#[test]
fn a_silent_client_is_pinged_then_closed_and_one_that_answers_stays() {
    let mut server = Server::start(&["--ping-secs", "1", "--silence-secs", "2"]);
    // The silent one: a raw socket that never sends a frame, nor a pong.
    let mut silent = raw_ws(&server);
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    let (mut pings, mut closed) = (0, None);
    while closed.is_none() {
        match read_frame(&mut silent) {
            Ok((b0, _)) if b0 & 0x0f == 0x9 => pings += 1,
            Ok((b0, p)) if b0 & 0x0f == 0x8 => closed = Some((close_payload(&p), t0.elapsed())),
            Ok(_) => {}
            Err(e) => panic!("the silent client was not closed: {e} after {:?}", t0.elapsed()),
        }
    }
    let ((code, reason), after) = closed.unwrap();
    assert_eq!(code, Some(1001), "{reason}");
    assert!(reason.contains("silent"), "{reason}");
    assert!(pings >= 1, "pinged before being closed");
    // Silence is checked at pings: closed between 2 and 3 s (plus a busy machine's delay).
    assert!(after >= Duration::from_secs(2) && after < Duration::from_secs(8), "closed after {after:?}");
    // The talkative one: a tungstenite client (it answers pings when it reads) that sends
    // nothing for 4 s is still open and usable.
    block_on(async {
        let mut c = ws(&server).await;
        let until = tokio::time::Instant::now() + Duration::from_secs(4);
        let mut pings = 0;
        while let Ok(m) = tokio::time::timeout_at(until, c.next()).await {
            match m {
                Some(Ok(Message::Ping(_))) => pings += 1,
                other => panic!("nothing but pings should arrive: {other:?}"),
            }
        }
        assert!(pings >= 2, "{pings} pings in 4 s");
        assert_usable(&mut c).await;
    });
    still_serves(&mut server);
}

/// A poster that never says `done` cannot hold a round open: the running server closes it
/// `t_end` + 2 s (the grace) later by itself, for the whole room.
#[test]
fn a_round_without_done_is_closed_after_the_grace() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut room = room_of_three(&server, json!({"tolerance_ms": 1, "duration_ms": 100})).await;
        let w = window(&start_round(&mut room).await);
        sleep_until_server_time(&server, w.t_end + 1_000).await;
        send(&mut room.alice, json!({"type": "done"})).await; // bob never does
        let closed = tokio::time::timeout(Duration::from_secs(10), recv_type(&mut room.eve, "closed")).await.expect("closed in time");
        let at = server_now(&mut room.eve).await;
        assert!(at >= w.t_end + 2_000_000, "closed {} µs after t_end, before the grace", at - w.t_end);
        assert!(at < w.t_end + 8_000_000, "closed {} µs after t_end", at - w.t_end);
        assert_eq!(closed["round"], 1);
        for c in [&mut room.alice, &mut room.bob] {
            assert_eq!(recv_type(c, "closed").await, closed);
        }
    });
    still_serves(&mut server);
}

/// Posts that reach the server in one piece (one write here; on a busy server, any posts
/// that wait unread) share one receive time: the server tells their poster, privately,
/// which of its posts carry a later message's time (`coalesced {post}`), exactly those.
#[test]
fn posts_read_together_are_named_coalesced_to_their_poster() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut room = room_of_three(&server, json!({"tolerance_ms": 1, "duration_ms": 1500})).await;
        let w = window(&start_round(&mut room).await);
        sleep_until_server_time(&server, w.t_start + 5_000).await;
        let post = |l: &str| Message::Text(format!(r#"{{"type":"post","label":"{l}"}}"#).into());
        // 20 bursts of two or three posts written at once, 20 ms apart, then one lone post.
        let mut total = 0;
        for k in 0..20 {
            for j in 0..2 + k % 2 {
                room.alice.feed(post(if j % 2 == 0 { "A" } else { "B" })).await.unwrap();
                total += 1;
            }
            room.alice.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        room.alice.send(post("B")).await.unwrap();
        total += 2; // that one, and the last below
        sleep_until_server_time(&server, w.t_end + 1_000).await;
        // The last post and `done` in one piece: the post carries done's time.
        room.alice.feed(post("A")).await.unwrap();
        room.alice.feed(Message::Text(r#"{"type":"done"}"#.into())).await.unwrap();
        room.alice.flush().await.unwrap();
        send(&mut room.bob, json!({"type": "done"})).await;
        let mut named = Vec::new();
        let board = loop {
            let v = recv_all(&mut room.alice).await;
            match v["type"].as_str() {
                Some("coalesced") => {
                    let (post, count) = (v["post"].as_u64().unwrap(), v["count"].as_u64().unwrap());
                    assert!(count >= 1, "{v}");
                    named.extend(post..post + count);
                }
                Some("closed") => break v["board"].as_array().unwrap().clone(),
                _ => panic!("unexpected {v}"),
            }
        };
        // Alice is the only poster: board entry k is her post k + 1.
        assert_eq!(board.len(), total);
        let t = |k: usize| board[k]["t_us"].as_i64().unwrap();
        let mut same: Vec<u64> = (0..total - 1).filter(|&k| t(k) == t(k + 1)).map(|k| k as u64 + 1).collect();
        assert!(!same.is_empty(), "no two posts were read together (are kernel receive stamps off?)");
        // …and the last, read with `done` (which is not on the board).
        same.push(total as u64);
        assert_eq!(named, same, "named exactly the posts that share the next message's time");
        // Nobody else hears of it.
        for c in [&mut room.bob, &mut room.eve] {
            assert_eq!(recv(c).await["type"], "closed");
            assert_usable(c).await;
        }
    });
    still_serves(&mut server);
}

//! Caps that hold under abuse (issue 16): WebSockets per address and in all, rooms created per
//! address per minute, pings and pongs under the flood limit, a close frame answered. Each
//! abuse comes from its own loopback address (127.0.0.2 and up: all of 127/8 is this
//! machine), while a pair from 127.0.0.1 still makes its key.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// A TCP connection to the server from `from` (a loopback address).
async fn tcp_from(server: &Server, from: &str) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(format!("127.0.0.1:{}", server.port).parse().unwrap()).await.unwrap()
}

/// A WebSocket from `from` that asks to watch room `code`: the socket and the server's answer.
async fn watch_from(server: &Server, from: &str, code: &str) -> (Ws, serde_json::Value) {
    let tcp = tcp_from(server, from).await;
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url(), tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await.unwrap();
    send(&mut ws, serde_json::json!({"type": "join", "room": code, "as": "observer"})).await;
    let v = recv(&mut ws).await;
    (ws, v)
}

/// Fills 127.0.0.9's `cap` places as an observer of room `code`, and checks that the next
/// one is turned away (the room itself would still take more): the watching sockets.
async fn fill_watchers(server: &Server, code: &str, cap: usize) -> Vec<Ws> {
    let mut watchers = Vec::new();
    for k in 0..=cap {
        let (ws, v) = watch_from(server, "127.0.0.9", code).await;
        if k < cap {
            assert_eq!(v["type"], "joined", "observer {k}: {v}");
            watchers.push(ws);
        } else {
            assert_eq!(v["code"], "too_many_observers", "{v}");
        }
    }
    watchers
}

/// A WebSocket upgrade from `from` with `extra` headers: the status, and the open socket.
async fn upgrade_from(server: &Server, from: &str, extra: &str) -> (u16, String, TcpStream) {
    let mut s = tcp_from(server, from).await;
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
        server.port
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !head.ends_with(b"\r\n\r\n") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
            Ok(Ok(1)) => head.push(b[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    // A refusal's body: its stable code comes first.
    let mut body = String::new();
    if status != 101 {
        let mut rest = vec![0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut rest)).await {
            body = String::from_utf8_lossy(&rest[..n]).into_owned();
        }
    }
    (status, body, s)
}

/// Two `sgp pair` from 127.0.0.1 make a key. Blocking, on purpose: the held sockets need no
/// polling, and the server is another process.
fn pair_meanwhile(server: &Server) {
    let (a, b) = live_pair(server, &[]);
    assert_eq!(a["key"], b["key"]);
}

#[tokio::test(flavor = "current_thread")]
async fn per_address_cap_refuses_with_429_and_others_go_on() {
    let server = Server::start(&["--max-per-address", "8"]);
    let mut held = Vec::new();
    for k in 0..8 {
        let (status, _, s) = upgrade_from(&server, "127.0.0.2", "").await;
        assert_eq!(status, 101, "socket {k}");
        held.push(s);
    }
    let (status, body, _) = upgrade_from(&server, "127.0.0.2", "").await;
    assert_eq!(status, 429);
    assert!(body.contains("too_many_connections"), "{body}");
    // Another address is not affected: a pair from 127.0.0.1 makes its key.
    pair_meanwhile(&server);
    // One closes: one more may open.
    drop(held.pop());
    let mut ok = false;
    for _ in 0..50 {
        let (status, _, s) = upgrade_from(&server, "127.0.0.2", "").await;
        if status == 101 {
            held.push(s);
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a closed socket gives its place back");
    assert_eq!(server.healthz()["connections"], 8);
}

#[tokio::test(flavor = "current_thread")]
async fn the_server_cap_keeps_healthz_and_refuses_the_rest() {
    let server = Server::start(&["--max-connections", "6", "--max-per-address", "100"]);
    let mut held = Vec::new();
    for _ in 0..6 {
        let (status, _, s) = upgrade_from(&server, "127.0.0.3", "").await;
        assert_eq!(status, 101);
        held.push(s);
    }
    for from in ["127.0.0.3", "127.0.0.4", "127.0.0.1"] {
        let (status, body, _) = upgrade_from(&server, from, "").await;
        assert_eq!((status, body.starts_with("server_full")), (429, true), "{from}: {body}");
    }
    // The page and /healthz are still served at the cap.
    assert_eq!(server.healthz()["connections"], 6);
    assert_eq!(server.get("/").0, 200);
}

#[tokio::test(flavor = "current_thread")]
async fn rooms_per_address_per_minute() {
    let server = Server::start(&["--rooms-per-minute", "3"]);
    let create_from = |from: &'static str| {
        let server = &server;
        async move {
            let tcp = tcp_from(server, from).await;
            let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url(), tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await.unwrap();
            send(&mut ws, serde_json::json!({"type": "create"})).await;
            let v = recv(&mut ws).await;
            (v, ws)
        }
    };
    let mut rooms = Vec::new();
    for _ in 0..3 {
        let (v, ws) = create_from("127.0.0.5").await;
        assert_eq!(v["type"], "joined", "{v}");
        rooms.push(ws);
    }
    let (v, _) = create_from("127.0.0.5").await;
    assert_eq!((v["type"].as_str(), v["code"].as_str()), (Some("error"), Some("too_many_rooms")), "{v}");
    // Another address creates as it likes.
    let (v, _) = create_from("127.0.0.1").await;
    assert_eq!(v["type"], "joined", "{v}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_ping_flood_is_closed_with_1008() {
    let server = Server::start(&[]);
    let tcp = tcp_from(&server, "127.0.0.6").await;
    let (ws, _) = tokio_tungstenite::client_async(server.ws_url(), tcp).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    let flood = tokio::spawn(async move {
        for _ in 0..2_000_000u32 {
            if tx.feed(Message::Ping(Default::default())).await.is_err() {
                break;
            }
        }
        let _ = tx.flush().await;
    });
    let code = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(m) = rx.next().await {
            match m {
                Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("closed within 30 s");
    flood.abort();
    assert_eq!(code, Some(1008), "a ping flood is a flood");
    assert_eq!(server.healthz()["ok"], true);
}

#[tokio::test(flavor = "current_thread")]
async fn a_close_frame_is_answered_with_one() {
    let server = Server::start(&[]);
    let mut ws = ws(&server).await;
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() }))).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = ws.next().await {
            if let Ok(Message::Close(f)) = m {
                return f.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("an answer within 5 s");
    assert_eq!(answer, Some(1000), "the server answers a close frame with its own (RFC 6455 §5.5.1)");
}

#[tokio::test(flavor = "current_thread")]
async fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    let xff = |a: &str| format!("X-Forwarded-For: 203.0.113.50, {a}\r\n");
    let trusting = Server::start(&["--trust-proxy", "--max-per-address", "2"]);
    let mut held = Vec::new();
    for _ in 0..2 {
        let (status, _, s) = upgrade_from(&trusting, "127.0.0.7", &xff("198.51.100.1")).await;
        assert_eq!(status, 101);
        held.push(s);
    }
    assert_eq!(upgrade_from(&trusting, "127.0.0.7", &xff("198.51.100.1")).await.0, 429);
    // Through the same proxy (one peer address), another client is another address.
    assert_eq!(upgrade_from(&trusting, "127.0.0.7", &xff("198.51.100.2")).await.0, 101);
    // Without --trust-proxy the header is ignored: the peer's address is the one counted.
    let plain = Server::start(&["--max-per-address", "2"]);
    let mut held = Vec::new();
    for a in ["198.51.100.1", "198.51.100.2"] {
        let (status, _, s) = upgrade_from(&plain, "127.0.0.8", &xff(a)).await;
        assert_eq!(status, 101);
        held.push(s);
    }
    assert_eq!(upgrade_from(&plain, "127.0.0.8", &xff("198.51.100.3")).await.0, 429);
}

#[tokio::test(flavor = "current_thread")]
async fn observers_that_never_read_do_not_hold_up_a_pair() {
    let server = Server::start(&[]);
    let args = ["--tolerance-ms", "1", "--target-bits", "64", "--retries", "60"];
    let (creator, code, rest) = spawn_creator(&server, &args);
    // 16 observers from one address join the pair's room and never read a byte; the 17th is
    // turned away.
    let watchers = fill_watchers(&server, &code, 16).await;
    let joiner = spawn_pair(&server, &["--room", &code, "--retries", "60"]);
    let reader = read_rest(rest);
    let (b, a) = tokio::task::spawn_blocking(move || (wait_output(joiner, Duration::from_secs(90)), wait_output(creator, Duration::from_secs(90))))
        .await
        .unwrap();
    let ka = key_of(&a, &reader.join().unwrap());
    assert_eq!(ka["key"], key_of(&b, "")["key"]);
    assert_eq!(ka["confirmed"], true);
    // Another address may still watch.
    let mut ws = ws(&server).await;
    send(&mut ws, serde_json::json!({"type": "join", "room": code, "as": "observer"})).await;
    let v = recv(&mut ws).await;
    assert!(v["type"] == "joined" || v["code"] == "no_such_room", "{v}");
    drop(watchers);
}

#[tokio::test(flavor = "current_thread")]
async fn observers_per_address_is_a_flag() {
    // Raised above the default of 16 (an audit's eves, or a class behind one NAT, watch from
    // one address), and still a cap: the 21st of one address is turned away.
    let server = Server::start(&["--observers-per-address", "20"]);
    let mut owner = ws(&server).await;
    let code = create_room(&mut owner, serde_json::json!({})).await;
    let mut watchers = fill_watchers(&server, &code, 20).await;
    // One leaves: its place is free again.
    let mut gone = watchers.pop().unwrap();
    send(&mut gone, serde_json::json!({"type": "leave"})).await;
    drop(gone);
    let mut again = None;
    for _ in 0..50 {
        let (w, v) = watch_from(&server, "127.0.0.9", &code).await;
        if v["type"] == "joined" {
            again = Some(w);
            break;
        }
        assert_eq!(v["code"], "too_many_observers", "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a freed place takes an observer again");
}

#[tokio::test(flavor = "current_thread")]
async fn a_long_message_goes_out_in_fragments() {
    // A reader that holds back is sent a big message a fragment at a time (64 KiB), so its
    // connection holds one fragment, not a copy of the whole: a legacy table of 3000 rows.
    let server = Server::start(&["--legacy"]);
    let (status, _, mut s) = upgrade_from(&server, "127.0.0.1", "").await;
    assert_eq!(status, 101);
    let frame = |text: &str| {
        let mut f = vec![0x81, 0x80 | 126];
        f.extend_from_slice(&(text.len() as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]); // mask of zeros: the payload as it is
        f.extend_from_slice(text.as_bytes());
        f
    };
    let mut out = frame(r#"{"reset_tableau":true}"#);
    for _ in 0..3000 {
        out.extend(frame(r#"{"nouvelle_valeur":3}"#));
    }
    out.extend(frame(r#"{"obtenir_tableau":true}"#));
    s.write_all(&out).await.unwrap();
    // Frames until a final one: (fin, opcode, length) each, and the long payload put together.
    let mut frames = Vec::new();
    let mut payload = Vec::new();
    let read = async {
        loop {
            let mut h = [0u8; 2];
            s.read_exact(&mut h).await.unwrap();
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    s.read_exact(&mut b).await.unwrap();
                    u16::from_be_bytes(b) as usize
                }
                127 => {
                    let mut b = [0u8; 8];
                    s.read_exact(&mut b).await.unwrap();
                    u64::from_be_bytes(b) as usize
                }
                n => n as usize,
            };
            let mut p = vec![0u8; len];
            s.read_exact(&mut p).await.unwrap();
            let (fin, op) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            frames.push((fin, op, len));
            if op == 0x1 && fin && payload.is_empty() {
                continue; // a short message (an acknowledgement), whole
            }
            payload.extend(p);
            if fin {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the table within 20 s (a short one would never end this loop)");
    let table: serde_json::Value = serde_json::from_slice(&payload).expect("the fragments make the table");
    assert_eq!(table.as_array().map(|t| t.len()), Some(3000));
    let parts: Vec<_> = frames.iter().filter(|f| !(f.0 && f.1 == 1)).collect();
    assert!(parts.len() >= 2 && parts[0].1 == 0x1 && !parts[0].0, "first fragment: text, not final: {frames:?}");
    assert!(parts[1..].iter().all(|f| f.1 == 0x0 && f.2 <= 64 * 1024), "then continuations of ≤ 64 KiB: {frames:?}");
    assert!(parts.last().unwrap().0, "the last one final");
}

#[test]
fn bad_cap_values_are_exit_2() {
    for args in [
        &["--max-connections", "0"][..],
        &["--max-connections", "-1"],
        &["--max-connections", "many"],
        &["--max-per-address", "0"],
        &["--max-per-address", "99999999999"],
        &["--rooms-per-minute", "0"],
        &["--rooms-per-minute", "1e3"],
        &["--observers-per-address", "0"],
        &["--observers-per-address", "1000001"],
        &["--observers-per-address", "-2"],
        &["--observers-per-address", "sixteen"],
    ] {
        let out = std::process::Command::new(SGP).args(["serve", "--port", "0"]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing listened");
    }
}

//! Rooms spread over servers (issue 17; docs/protocol.md §3 "Codes in the URL", §8 "Drain"):
//! the room code in the upgrade's URL, a creator's own code, and a stop that drains — new
//! rooms refused, busy ones let finish, then 1001 for everyone and no `peer left` on the way.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

async fn ws_room(server: &Server, room: &str) -> Ws {
    let url = format!("{}?room={room}", server.ws_url());
    tokio_tungstenite::connect_async_with_config(url, None, true).await.expect("websocket connect").0
}

fn upgrade(server: &Server, path: &str) -> (u16, String) {
    status_and_body(&server.raw_http(&format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.port
    )))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn kill(server: &Server, signal: &str) {
    assert!(Command::new("kill").args([signal, &server.child.id().to_string()]).status().unwrap().success());
}

/// Waits for the server to exit; returns how long that took.
fn exits(server: &mut Server, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}");
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "the server did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_malformed_room_in_the_url_is_refused_before_any_socket() {
    let mut server = Server::start(&[]);
    for bad in ["room=", "room", "room=abcde-fghjk", "room=ABCDEFGHJK", "room=ABCDE-FGHJ", "room=ABCDE%2DFGHJK", "room=ABCDE-FGHJK&room=ABCDE-FGHJK", "room=%00%ff"] {
        let (status, body) = upgrade(&server, &format!("/ws?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.starts_with("bad_room: "), "{bad}: a stable code first: {body}");
    }
    assert_eq!(upgrade(&server, "/ws?room=ABCDE-FGHJK").0, 101);
    assert_eq!(upgrade(&server, "/ws?v=1").0, 101, "other parameters are ignored");
    assert_eq!(server.healthz()["connections"], 0, "no socket was made for a refused upgrade");
    server.assert_alive();
}

#[test]
fn a_creator_brings_its_code_and_every_member_names_it_in_the_url() {
    let server = Server::start(&[]);
    rt().block_on(async {
        let code = "7MZQ4-K2XVB";
        let mut a = ws_room(&server, code).await;
        send(&mut a, json!({"type": "create", "room": code})).await;
        let j = recv_type(&mut a, "joined").await;
        assert_eq!((j["room"].as_str(), j["role"].as_str()), (Some(code), Some("alice")));

        // The same code again: taken (a creator draws another).
        let mut other = ws_room(&server, code).await;
        send(&mut other, json!({"type": "create", "room": code})).await;
        assert_eq!(recv(&mut other).await["code"], "room_taken");
        // A create without a code on a URL that names one takes the URL's: taken too.
        send(&mut other, json!({"type": "create"})).await;
        assert_eq!(recv(&mut other).await["code"], "room_taken");

        // A message naming another room than the URL: wrong_room, for create, join and watch.
        let mut c = ws_room(&server, "00000-00000").await;
        send(&mut c, json!({"type": "create", "room": code})).await;
        assert_eq!(recv(&mut c).await["code"], "wrong_room");
        send(&mut c, json!({"type": "join", "room": code})).await;
        assert_eq!(recv(&mut c).await["code"], "wrong_room");
        send(&mut c, json!({"type": "join", "room": code, "as": "observer"})).await;
        assert_eq!(recv(&mut c).await["code"], "wrong_room");

        // The URL's code, as a person typed it in the message: the same room.
        let mut b = ws_room(&server, code).await;
        send(&mut b, json!({"type": "join", "room": "7mzq4 k2xvb"})).await;
        assert_eq!(recv_type(&mut b, "joined").await["role"], "bob");
        assert_eq!(recv_type(&mut a, "peer").await["event"], "joined");

        // Without a code anywhere, a server still draws one (a single server, old clients).
        let mut d = ws(&server).await;
        let drawn = create_room(&mut d, json!({})).await;
        assert_ne!(drawn, code);
        assert_eq!(server.healthz()["rooms"], 2);
    });
}

/// alice and bob in a room; alice has said `ready` (the room is busy: it waits for bob's).
async fn busy_room(server: &Server, code: &str) -> (Ws, Ws) {
    let mut a = ws_room(server, code).await;
    send(&mut a, json!({"type": "create", "room": code})).await;
    recv_type(&mut a, "joined").await;
    let mut b = ws_room(server, code).await;
    send(&mut b, json!({"type": "join", "room": code})).await;
    recv_type(&mut b, "joined").await;
    recv_type(&mut a, "peer").await;
    send(&mut a, json!({"type": "ready"})).await;
    (a, b)
}

/// Every message up to the close, and the close code.
async fn until_close(ws: &mut Ws) -> (Vec<serde_json::Value>, Option<u16>) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await.expect("closed within 15 s") {
            Some(Ok(Message::Text(t))) => seen.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(f))) => return (seen, f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (seen, None),
        }
    }
}

#[test]
fn a_stop_drains_busy_rooms_then_closes_them_as_a_shutdown() {
    let mut server = Server::start(&["--drain-secs", "2"]);
    rt().block_on(async {
        let code = "AAAAA-BBBBB";
        let (mut a, mut b) = busy_room(&server, code).await;
        let t0 = Instant::now();
        kill(&server, "-TERM");
        // Draining: /healthz is 503, a new room is refused at the upgrade (a proxy tries the
        // next server) and by `create` on a connection to a room the server holds.
        let mut h = (0, String::new());
        for _ in 0..100 {
            h = server.get("/healthz");
            if h.0 == 503 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(h.0, 503, "{h:?}");
        let v: serde_json::Value = serde_json::from_str(&h.1).unwrap();
        assert_eq!((v["ok"].as_bool(), v["draining"].as_bool()), (Some(false), Some(true)));
        let (status, body) = upgrade(&server, "/ws?room=CCCCC-DDDDD");
        assert_eq!(status, 503, "{body}");
        assert!(body.starts_with("draining: "), "{body}");
        assert_eq!(upgrade(&server, "/ws").0, 503, "a create without a code would start a room too");
        let mut late = ws_room(&server, code).await;
        send(&mut late, json!({"type": "create", "room": code})).await;
        assert_eq!(recv(&mut late).await["code"], "draining");
        // The busy room goes on meanwhile: bob's ready starts its round.
        send(&mut b, json!({"type": "ready"})).await;
        assert_eq!(recv_type(&mut a, "start").await["round"], 1);
        // Then the drain time is up: 1001 to each, and nothing that reads as a peer leaving.
        for (who, ws) in [("alice", &mut a), ("bob", &mut b)] {
            let (seen, code) = until_close(ws).await;
            assert_eq!(code, Some(1001), "{who}");
            let last = seen.iter().filter(|m| m["type"] == "peer" || m["type"] == "aborted").collect::<Vec<_>>();
            assert!(last.is_empty(), "{who} was told {last:?} before the shutdown");
        }
        assert!(t0.elapsed() >= Duration::from_millis(1500), "closed after {:?}, before the drain time", t0.elapsed());
    });
    exits(&mut server, Duration::from_secs(10));
}

#[test]
fn a_drain_ends_as_soon_as_no_room_is_busy_or_at_a_second_signal() {
    for second_signal in [false, true] {
        let mut server = Server::start(&["--drain-secs", "120"]);
        rt().block_on(async {
            let (mut a, b) = busy_room(&server, "EEEEE-FFFFF").await;
            // A room at rest (no session, no ready) does not hold the drain up.
            let mut idle = ws(&server).await;
            create_room(&mut idle, json!({})).await;
            kill(&server, "-TERM");
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(server.get("/healthz").0, 503, "still draining: alice's ready waits");
            if second_signal {
                kill(&server, "-TERM");
            } else {
                send(&mut a, json!({"type": "leave"})).await;
            }
            drop(b);
        });
        let took = exits(&mut server, Duration::from_secs(20));
        assert!(took < Duration::from_secs(20), "second signal {second_signal}: {took:?}");
    }
}

#[test]
fn two_pairs_stopped_mid_session_both_say_the_server_went() {
    let mut server = Server::start(&["--drain-secs", "0"]);
    // Long rounds and a large target: the session is still running when the server stops.
    let (alice, code, out) = spawn_creator(&server, &["--target-bits", "4096", "--tolerance-ms", "1"]);
    let bob = spawn_pair(&server, &["--room", &code]);
    let rest = read_rest(out);
    std::thread::sleep(Duration::from_millis(1500));
    kill(&server, "-TERM");
    exits(&mut server, Duration::from_secs(10));
    for (who, child) in [("alice", alice), ("bob", bob)] {
        let out = wait_output(child, Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{who} exits 5 (server gone), not 3 (peer left): {err}");
    }
    drop(rest);
}

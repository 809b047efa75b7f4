//! `sgp serve --legacy`: the original student client's dialect over real sockets — the
//! whole flow with exact field names and timestamps, and everything that broke the
//! original server, each followed by a legacy pair and an sgp pair that still complete.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// `2026-11-25T10:04:05.123456789+01:00` → µs since the epoch (checks the exact shape).
fn parse_rfc3339_nanos(s: &str) -> i64 {
    let b = s.as_bytes();
    assert!(b.len() >= 30 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':' && b[19] == b'.', "{s}");
    let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap_or_else(|_| panic!("{s}"));
    let (y, mo, d, h, mi, sec) = (num(0..4), num(5..7), num(8..10), num(11..13), num(14..16), num(17..19));
    let nanos = num(20..29);
    let offset = match &s[29..] {
        "Z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            assert!(z.len() == 6 && &z[3..4] == ":", "{s}");
            sign * (z[1..3].parse::<i64>().unwrap() * 3600 + z[4..6].parse::<i64>().unwrap() * 60)
        }
    };
    // Days from civil (H. Hinnant).
    let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + h * 3600 + mi * 60 + sec - offset) * 1_000_000 + nanos / 1000
}

async fn send_json(w: &mut Ws, v: Value) {
    w.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn connect(ws_url: &str) -> Ws {
    // Nagle off, as browsers do: timestamps are compared with send times.
    tokio_tungstenite::connect_async_with_config(ws_url, None, true).await.expect("websocket connect").0
}

/// How far after its send a row's stamp may be. A server stamping on arrival is within a
/// millisecond on a quiet machine; CI has seen 3.4 ms. A server stamping at some later step
/// (the table request in `timestamps_carry_the_local_utc_offset` comes `TABLE_AFTER` later)
/// is not within this.
const STAMP_SLACK_US: i64 = 250_000;
/// The original server's confirmation, word for word (written out here, not taken from
/// src/legacy.rs, so that a changed sentence fails).
const ORIGINAL_CONFIRMATION: &str = "Tous les clients ont terminé d'envoyer des requêtes.";
const TABLE_AFTER: Duration = Duration::from_millis(400);

/// Two legacy clients through the whole original flow; returns the table.
async fn legacy_run(ws_url: &str, posts: usize) -> Vec<Value> {
    let (mut a, mut b) = (connect(ws_url).await, connect(ws_url).await);
    send_json(&mut a, json!({"client_pret": true})).await;
    send_json(&mut b, json!({"client_pret": true})).await;
    let ida = recv(&mut a).await["client_id"].as_u64().expect("client_id for a");
    let idb = recv(&mut b).await["client_id"].as_u64().expect("client_id for b");
    assert_ne!(ida, idb);
    send_json(&mut a, json!({"reset_tableau": true})).await;
    let mut sent = Vec::new();
    for k in 0..posts {
        for (w, id) in [(&mut a, ida), (&mut b, idb)] {
            let before = now_us();
            send_json(w, json!({"nouvelle_valeur": id})).await;
            sent.push((id, before, now_us()));
        }
        if k % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    send_json(&mut a, json!({"client_a_terminer_denvoyer": ida})).await;
    send_json(&mut b, json!({"client_a_terminer_denvoyer": idb})).await;
    for w in [&mut a, &mut b] {
        let c = recv(w).await;
        assert_eq!(c["confirmation"], ORIGINAL_CONFIRMATION, "{c}");
    }
    let confirmed = now_us();
    send_json(&mut a, json!({"obtenir_tableau": true})).await;
    let table = recv(&mut a).await;
    let rows = table.as_array().expect("the table is a JSON array").clone();
    assert_eq!(rows.len(), 2 * posts);
    // The two connections race each other; each one's rows keep its own order.
    for id in [ida, idb] {
        let mine: Vec<&Value> = rows.iter().filter(|r| r["Value"].as_u64() == Some(id)).collect();
        let times: Vec<(i64, i64)> = sent.iter().filter(|s| s.0 == id).map(|s| (s.1, s.2)).collect();
        assert_eq!(mine.len(), posts);
        for (row, (before, after)) in mine.iter().zip(&times) {
            let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["Timestamp", "Value"], "exact field names");
            // Stamped when the frame arrived (the two clocks are this machine's): not before
            // the send began, not after the confirmation came back, and well within
            // `STAMP_SLACK_US` of the send (a shared machine can stall the server that long).
            let ts = parse_rfc3339_nanos(row["Timestamp"].as_str().unwrap());
            assert!(ts >= before - 1_000 && ts <= confirmed, "timestamp {ts} vs sent in [{before}, {after}], confirmed at {confirmed}: {row}");
            assert!(ts <= after + STAMP_SLACK_US, "timestamp {ts} is {} µs after the send returned: {row}", ts - after);
        }
    }
    rows
}

fn legacy_pair_completes(server: &Server) {
    block_on(async { legacy_run(&server.ws_url(), 16).await });
}

fn both_dialects_still_work(server: &mut Server) {
    legacy_pair_completes(server);
    live_pair(server, &[]);
    server.assert_alive();
}

#[test]
fn two_clients_run_the_original_flow() {
    let mut server = Server::start(&["--legacy"]);
    let rows = block_on(async { legacy_run(&server.ws_url(), 16).await });
    let ts: Vec<i64> = rows.iter().map(|r| parse_rfc3339_nanos(r["Timestamp"].as_str().unwrap())).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "rows in receive order");
    // An empty table is [] (the original sent null).
    block_on(async {
        let mut c = ws(&server).await;
        send_json(&mut c, json!({"reset_tableau": true})).await;
        send_json(&mut c, json!({"obtenir_tableau": true})).await;
        assert_eq!(recv(&mut c).await, json!([]));
    });
    // Legacy traffic never makes a room.
    assert_eq!(server.healthz()["rooms"], 0);
    both_dialects_still_work(&mut server);
}

#[test]
fn ids_follow_connection_order_not_who_says_ready_first() {
    let mut server = Server::start(&["--legacy"]);
    block_on(async {
        let mut first = connect(&server.ws_url()).await;
        let mut second = connect(&server.ws_url()).await;
        send_json(&mut second, json!({"client_pret": true})).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        send_json(&mut first, json!({"client_pret": true})).await;
        assert_eq!(recv(&mut first).await, json!({"client_id": 1}));
        assert_eq!(recv(&mut second).await, json!({"client_id": 2}));
    });
    both_dialects_still_work(&mut server);
}

#[test]
fn timestamps_carry_the_local_utc_offset() {
    // A POSIX TZ string (no zone files needed): five and a half hours east of UTC.
    let mut server = Server::start_env(&["--legacy"], &[("TZ", "XST-5:30")]);
    block_on(async {
        let mut c = connect(&server.ws_url()).await;
        send_json(&mut c, json!({"reset_tableau": true})).await;
        let before = now_us();
        send_json(&mut c, json!({"nouvelle_valeur": 1})).await;
        let after = now_us();
        tokio::time::sleep(TABLE_AFTER).await;
        send_json(&mut c, json!({"obtenir_tableau": true})).await;
        let rows = recv(&mut c).await;
        let ts = rows[0]["Timestamp"].as_str().unwrap().to_string();
        assert!(ts.ends_with("+05:30"), "{ts}");
        // The offset is right (a wrong one is hours out) and the stamp is the post's arrival,
        // not the table request's.
        let t = parse_rfc3339_nanos(&ts);
        assert!(t >= before - 1_000 && t <= after + STAMP_SLACK_US, "{ts} is {} µs from the moment it was sent", t - after);
    });
    both_dialects_still_work(&mut server);
}

#[test]
fn without_the_flag_the_dialect_is_refused_by_name() {
    let mut server = Server::start(&[]);
    block_on(async {
        let mut c = ws(&server).await;
        send_json(&mut c, json!({"client_pret": true})).await;
        let e = recv(&mut c).await;
        assert_eq!(e["code"], "legacy_disabled");
        assert!(e["message"].as_str().unwrap().contains("--legacy"));
        // The connection still speaks sgp.
        send_json(&mut c, json!({"type": "ping", "t0_us": 1})).await;
        assert_eq!(recv(&mut c).await["type"], "pong");
    });
    live_pair(&server, &[]);
    server.assert_alive();
}

#[test]
fn both_dialects_side_by_side() {
    let mut server = Server::start(&["--legacy"]);
    let url = server.ws_url();
    let legacy = std::thread::spawn(move || block_on(async { legacy_run(&url, 16).await }));
    live_pair(&server, &[]);
    legacy.join().unwrap();
    server.assert_alive();
}

#[test]
fn bad_values_get_an_error_and_leave_everyone_working() {
    let mut server = Server::start(&["--legacy"]);
    block_on(async {
        let mut c = ws(&server).await;
        send_json(&mut c, json!({"client_pret": true})).await; // speaks legacy from now on
        for bad in [
            r#"{"nouvelle_valeur":"12"}"#,
            r#"{"nouvelle_valeur":1.5}"#,
            r#"{"nouvelle_valeur":null}"#,
            r#"{"nouvelle_valeur":99999999999999999999999}"#,
            r#"{"nothing":1}"#,
            "[1,2]",
            "\"hello\"",
            "garbage",
            "{",
        ] {
            c.send(Message::Text(bad.into())).await.unwrap();
            let e = recv(&mut c).await;
            assert!(e["error"].as_str().map_or(false, |m| m.len() > 10), "{bad}: {e}");
        }
        send_json(&mut c, json!({"obtenir_tableau": true})).await;
        assert_eq!(recv(&mut c).await, json!([]), "nothing bad reached the table");
    });
    both_dialects_still_work(&mut server);
}

#[test]
fn plain_gets_and_keyless_upgrades_break_nothing() {
    let mut server = Server::start(&["--legacy"]);
    let (status, _) = server.get("/ws");
    assert_eq!(status, 426);
    let resp = server.raw_http("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    both_dialects_still_work(&mut server);
}

#[test]
fn a_closed_connection_leaves_the_broadcast_list_at_once() {
    let mut server = Server::start(&["--legacy"]);
    block_on(async {
        let mut a = ws(&server).await;
        let mut gone = ws(&server).await;
        send_json(&mut gone, json!({"nouvelle_valeur": 1})).await;
        send_json(&mut gone, json!({"client_pret": true})).await;
        gone.close(None).await.unwrap();
        drop(gone);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = ws(&server).await;
        // The departed client's ready does not count: a's alone triggers nothing.
        send_json(&mut a, json!({"client_pret": true})).await;
        assert!(tokio::time::timeout(Duration::from_millis(300), a.next()).await.is_err(), "a half-count carried over");
        send_json(&mut c, json!({"client_pret": true})).await;
        let (ia, ic) = (recv(&mut a).await["client_id"].clone(), recv(&mut c).await["client_id"].clone());
        assert!(ia.is_u64() && ic.is_u64() && ia != ic);
    });
    both_dialects_still_work(&mut server);
}

#[test]
fn a_peer_leaving_mid_run_does_not_poison_the_next_run() {
    let mut server = Server::start(&["--legacy"]);
    block_on(async {
        let mut a = ws(&server).await;
        let mut b = ws(&server).await;
        send_json(&mut a, json!({"client_pret": true})).await;
        send_json(&mut b, json!({"client_pret": true})).await;
        recv(&mut a).await;
        recv(&mut b).await;
        send_json(&mut b, json!({"nouvelle_valeur": 2})).await;
        send_json(&mut b, json!({"client_a_terminer_denvoyer": 2})).await;
        drop(b); // mid-run, without a close frame
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        // b's "done" left with b: one new client saying done is not two.
        let (mut c, mut d) = (ws(&server).await, ws(&server).await);
        send_json(&mut c, json!({"client_a_terminer_denvoyer": 1})).await;
        assert!(tokio::time::timeout(Duration::from_millis(300), c.next()).await.is_err(), "a half-count carried over");
        send_json(&mut d, json!({"client_a_terminer_denvoyer": 2})).await;
        assert_eq!(recv(&mut c).await["confirmation"], ORIGINAL_CONFIRMATION);
        assert_eq!(recv(&mut d).await["confirmation"], ORIGINAL_CONFIRMATION);
    });
    // A new pair runs the whole flow (legacy_run resets the table and checks ids and rows).
    both_dialects_still_work(&mut server);
}

#[test]
fn a_client_that_never_reads_stalls_no_one() {
    let mut server = Server::start(&["--legacy"]);
    let lazy = block_on(async {
        let mut w = ws(&server).await;
        for k in 0..40 {
            for _ in 0..1000 {
                w.feed(Message::Text(r#"{"nouvelle_valeur":7}"#.into())).await.unwrap();
            }
            w.flush().await.unwrap();
            if k % 2 == 1 {
                tokio::time::sleep(Duration::from_millis(60)).await; // under the flood limit
            }
        }
        // Ask for the ~2.6 MB table as often as allowed (10 at once) and never read: more
        // than the socket buffers hold.
        for _ in 0..10 {
            w.send(Message::Text(r#"{"obtenir_tableau":true}"#.into())).await.unwrap();
        }
        w
    });
    let start = std::time::Instant::now();
    assert_eq!(server.healthz()["connections"], 1);
    // Both dialects go on meanwhile (the legacy pair shares the table: it resets it first).
    both_dialects_still_work(&mut server);
    // And the non-reader is let go (the write to it times out after 5 s).
    while server.healthz()["connections"] != 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "the non-reader is still counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(lazy);
}

#[test]
fn frames_over_the_limit_close_only_that_connection() {
    let mut server = Server::start(&["--legacy"]);
    block_on(async {
        let mut other = ws(&server).await;
        send_json(&mut other, json!({"reset_tableau": true})).await;
        let mut big = ws(&server).await;
        send_json(&mut big, json!({"client_pret": true})).await;
        let huge = format!(r#"{{"nouvelle_valeur":1,"pad":"{}"}}"#, "x".repeat(200_000));
        let _ = big.send(Message::Text(huge.into())).await;
        assert_eq!(close_code(&mut big).await, Some(1009));
        send_json(&mut other, json!({"obtenir_tableau": true})).await;
        assert_eq!(recv(&mut other).await, json!([]));
    });
    both_dialects_still_work(&mut server);
}

#[test]
fn the_table_has_a_bound_with_a_clear_error() {
    let mut server = Server::start(&["--legacy"]);
    block_on(async {
        let mut c = ws(&server).await;
        send_json(&mut c, json!({"reset_tableau": true})).await;
        // Paced under the flood limit: 100 000 rows in batches.
        for batch in 0..50 {
            for _ in 0..2000 {
                c.feed(Message::Text(r#"{"nouvelle_valeur":3}"#.into())).await.unwrap();
            }
            c.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(if batch % 2 == 0 { 80 } else { 40 })).await;
        }
        send_json(&mut c, json!({"nouvelle_valeur": 3})).await;
        let e = recv(&mut c).await;
        assert!(e["error"].as_str().unwrap().contains("100000"), "{e}");
        send_json(&mut c, json!({"obtenir_tableau": true})).await;
        assert_eq!(recv(&mut c).await.as_array().unwrap().len(), 100_000);
        send_json(&mut c, json!({"reset_tableau": true})).await;
    });
    both_dialects_still_work(&mut server);
}

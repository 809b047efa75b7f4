//! The original student client's dialect (docs/protocol.md §11), served with `sgp serve --legacy`:
//! one shared table of `{Value, Timestamp}` rows, ids (in connection order) sent out on
//! every second `client_pret`, and a confirmation once two connections say they are done. A state
//! machine with no I/O: time comes in, replies go out as `(connections, JSON text)`.
//! It never touches a room. This dialect leaks who posted what by design: each row's
//! `Value` is its poster's id.

use crate::room::{Bucket, ConnId, FastMap};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// Keys that mark a message of this dialect.
pub const KEYS: &[&str] = &["client_pret", "nouvelle_valeur", "obtenir_tableau", "reset_tableau", "client_a_terminer_denvoyer"];
/// Most rows the table keeps.
pub const MAX_ROWS: usize = 100_000;
/// `obtenir_tableau` requests a connection may send at once, and per second after that:
/// each answer is the whole table (up to 6 MB), and the original page asks once per run.
pub const TABLE_BURST: f64 = 10.0;
pub const TABLE_PER_SEC: f64 = 5.0;
/// The confirmation's text, the original server's French sentence word for word (its page
/// shows whatever string comes, but a class comparing the two servers sees the same words).
pub const CONFIRMATION: &str = "Tous les clients ont terminé d'envoyer des requêtes.";

/// Does this first message speak the legacy dialect? (An object without `type` that has
/// one of its keys.)
pub fn looks_legacy(text: &str) -> bool {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => !m.contains_key("type") && KEYS.iter().any(|k| m.contains_key(*k)),
        _ => false,
    }
}

#[derive(Debug, PartialEq)]
pub struct Out {
    pub to: Vec<ConnId>,
    pub text: Utf8Bytes,
}

struct Row {
    value: i64,
    t_us: i64,
}

/// The shared table and who is connected.
#[derive(Default)]
pub struct Legacy {
    /// Open legacy connections, in connection order (connection ids count up from the
    /// upgrade), and the id each was given; `None` until the first id broadcast.
    ids: BTreeMap<ConnId, Option<u64>>,
    next_id: u64,
    /// The `client_pret` messages since the last id broadcast, by connection.
    ready: Vec<ConnId>,
    /// Connections that have sent `client_a_terminer_denvoyer` since the last confirmation.
    done: BTreeSet<ConnId>,
    table: Vec<Row>,
    /// The rows as JSON, comma-separated, kept up to date as rows are appended (a row
    /// stamped earlier than the last one, from another connection, marks it stale).
    rows_json: String,
    rows_stale: bool,
    /// The answer to `obtenir_tableau`, kept until the table changes.
    cached: Option<Utf8Bytes>,
    /// Each connection's allowance of `obtenir_tableau`.
    asks: FastMap<ConnId, Bucket>,
    /// The server's offset from UTC, in seconds, for timestamps.
    utc_offset_s: i32,
}

fn error(to: ConnId, text: &str) -> Vec<Out> {
    vec![Out { to: vec![to], text: json!({ "error": text }).to_string().into() }]
}

impl Legacy {
    pub fn new(utc_offset_s: i32) -> Legacy {
        Legacy { utc_offset_s, ..Default::default() }
    }

    pub fn rows(&self) -> usize {
        self.table.len()
    }

    /// A connection's first legacy message makes it a legacy connection. Ids start again
    /// from 1 once no legacy connection is left.
    fn enrol(&mut self, conn: ConnId) {
        if self.ids.is_empty() {
            self.next_id = 0;
        }
        self.ids.entry(conn).or_insert(None);
    }

    /// Gives every legacy connection without an id the next one, in connection order (as
    /// the original did when they connected: which one says ready first does not matter).
    fn number(&mut self) {
        for id in self.ids.values_mut().filter(|id| id.is_none()) {
            self.next_id += 1;
            *id = Some(self.next_id);
        }
    }

    fn row_json(&self, row: &Row) -> String {
        format!("{{\"Value\":{},\"Timestamp\":\"{}\"}}", row.value, rfc3339_nanos(row.t_us, self.utc_offset_s))
    }

    /// One text frame from a legacy connection, received at `now` (µs since the epoch).
    pub fn handle(&mut self, conn: ConnId, text: &str, now: i64) -> Vec<Out> {
        self.enrol(conn);
        let msg = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return error(conn, "a message must be a JSON object such as {\"client_pret\":true}"),
            Err(e) => return error(conn, &format!("not valid JSON: {e}")),
        };
        let known: Vec<&str> = KEYS.iter().copied().filter(|k| msg.contains_key(*k)).collect();
        let key = match known.as_slice() {
            [k] => *k,
            [] => return error(conn, &format!("unknown message: expected one of {}", KEYS.join(", "))),
            _ => return error(conn, "one message, one key: send each on its own"),
        };
        match key {
            "client_pret" => {
                self.ready.push(conn);
                if self.ready.len() < 2 {
                    return Vec::new();
                }
                self.ready.clear();
                self.number();
                self.ids
                    .iter()
                    .filter_map(|(&c, &id)| Some(Out { to: vec![c], text: json!({ "client_id": id? }).to_string().into() }))
                    .collect()
            }
            "nouvelle_valeur" => {
                let Some(value) = msg[key].as_i64() else {
                    return error(conn, "nouvelle_valeur must be an integer");
                };
                if self.table.len() >= MAX_ROWS {
                    return error(conn, &format!("the table is full ({MAX_ROWS} rows); send reset_tableau"));
                }
                // In time order, as the board (stamps may come from the kernel, per connection).
                let k = self.table.partition_point(|r| r.t_us <= now);
                let row = Row { value, t_us: now };
                if k == self.table.len() && !self.rows_stale {
                    let json = self.row_json(&row);
                    if k > 0 {
                        self.rows_json.push(',');
                    }
                    self.rows_json.push_str(&json);
                } else {
                    self.rows_stale = true;
                }
                self.table.insert(k, row);
                self.cached = None;
                Vec::new()
            }
            "obtenir_tableau" => {
                if !self.asks.entry(conn).or_insert(Bucket::full(TABLE_BURST, now)).take(now, TABLE_BURST, TABLE_PER_SEC) {
                    return error(conn, &format!("obtenir_tableau: at most {TABLE_PER_SEC} requests a second"));
                }
                if let Some(text) = &self.cached {
                    return vec![Out { to: vec![conn], text: text.clone() }];
                }
                if self.rows_stale {
                    let rows: Vec<String> = self.table.iter().map(|r| self.row_json(r)).collect();
                    self.rows_json = rows.join(",");
                    self.rows_stale = false;
                }
                let mut text = String::with_capacity(self.rows_json.len() + 2);
                text.push('[');
                text.push_str(&self.rows_json);
                text.push(']');
                let text = Utf8Bytes::from(text);
                self.cached = Some(text.clone());
                vec![Out { to: vec![conn], text }]
            }
            "reset_tableau" => {
                self.table.clear();
                self.rows_json.clear();
                self.rows_stale = false;
                self.cached = None;
                Vec::new()
            }
            _ => {
                // client_a_terminer_denvoyer: the original sends an int; accept any number.
                if !msg[key].is_number() {
                    return error(conn, "client_a_terminer_denvoyer must be a number");
                }
                self.done.insert(conn);
                if self.done.len() < 2 {
                    return Vec::new();
                }
                self.done.clear();
                let text = json!({ "confirmation": CONFIRMATION }).to_string().into();
                vec![Out { to: self.ids.keys().copied().collect(), text }]
            }
        }
    }

    /// The connection is gone: it leaves the broadcast list and any count it was part of.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.ids.remove(&conn);
        self.ready.retain(|&c| c != conn);
        self.done.remove(&conn);
        self.asks.remove(&conn);
    }
}

/// `2026-11-25T10:04:05.123456000+01:00` (or `Z`): RFC 3339 with nanoseconds, as the
/// original server's Go `time.RFC3339Nano` but always nine digits.
pub fn rfc3339_nanos(t_us: i64, offset_s: i32) -> String {
    let local = t_us.div_euclid(1_000_000) + offset_s as i64;
    let nanos = t_us.rem_euclid(1_000_000) * 1000;
    let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let zone = if offset_s == 0 {
        "Z".to_string()
    } else {
        let sign = if offset_s < 0 { '-' } else { '+' };
        let a = offset_s.unsigned_abs();
        format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
    };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}{zone}", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The local offset from UTC now, in seconds (0 if the C library cannot tell).
pub fn local_utc_offset_s() -> i32 {
    #[cfg(unix)]
    {
        // SAFETY: localtime_r writes only into the `tm` we pass; `time` is a plain integer.
        unsafe {
            let t = libc::time(std::ptr::null_mut());
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&t, &mut tm).is_null() {
                return 0;
            }
            tm.tm_gmtoff as i32
        }
    }
    #[cfg(not(unix))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_with_nanoseconds() {
        assert_eq!(rfc3339_nanos(0, 0), "1970-01-01T00:00:00.000000000Z");
        // 2025-11-25 10:04:05.123456 UTC
        let t = 1_764_065_045_123_456;
        assert_eq!(rfc3339_nanos(t, 0), "2025-11-25T10:04:05.123456000Z");
        assert_eq!(rfc3339_nanos(t, 3600), "2025-11-25T11:04:05.123456000+01:00");
        assert_eq!(rfc3339_nanos(t, -(5 * 3600 + 1800)), "2025-11-25T04:34:05.123456000-05:30");
        assert_eq!(rfc3339_nanos(951_782_400_000_000, 0), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(rfc3339_nanos(-1, 0), "1969-12-31T23:59:59.999999000Z");
    }

    #[test]
    fn looks_legacy_only_for_its_keys() {
        assert!(looks_legacy(r#"{"client_pret":true}"#));
        assert!(looks_legacy(r#"{"nouvelle_valeur":3}"#));
        assert!(!looks_legacy(r#"{"type":"ready","client_pret":true}"#));
        assert!(!looks_legacy(r#"{"type":"ready"}"#));
        assert!(!looks_legacy("[1]"));
        assert!(!looks_legacy("{"));
    }

    #[test]
    fn a_full_run() {
        let mut l = Legacy::new(0);
        assert!(l.handle(7, r#"{"client_pret":true}"#, 1).is_empty());
        let out = l.handle(9, r#"{"client_pret":true}"#, 2);
        assert_eq!(
            out,
            vec![Out { to: vec![7], text: r#"{"client_id":1}"#.into() }, Out { to: vec![9], text: r#"{"client_id":2}"#.into() }]
        );
        l.handle(7, r#"{"nouvelle_valeur":1}"#, 1_000_000);
        l.handle(9, r#"{"nouvelle_valeur":2}"#, 2_000_001);
        assert!(l.handle(7, r#"{"client_a_terminer_denvoyer":1}"#, 3).is_empty());
        assert!(l.handle(7, r#"{"client_a_terminer_denvoyer":1}"#, 3).is_empty(), "one connection twice is not two");
        let out = l.handle(9, r#"{"client_a_terminer_denvoyer":2}"#, 4);
        assert_eq!(out[0].to, vec![7, 9]);
        assert_eq!(out[0].text, r#"{"confirmation":"Tous les clients ont terminé d'envoyer des requêtes."}"#);
        let out = l.handle(9, r#"{"obtenir_tableau":true}"#, 5);
        assert_eq!(
            out[0].text,
            r#"[{"Value":1,"Timestamp":"1970-01-01T00:00:01.000000000Z"},{"Value":2,"Timestamp":"1970-01-01T00:00:02.000001000Z"}]"#
        );
        // Asked again, the same (cached) table; after a reset, [].
        assert_eq!(l.handle(7, r#"{"obtenir_tableau":true}"#, 6)[0].text, out[0].text);
        l.handle(7, r#"{"reset_tableau":true}"#, 6);
        assert_eq!(l.handle(7, r#"{"obtenir_tableau":true}"#, 7)[0].text, "[]");
        l.handle(7, r#"{"nouvelle_valeur":4}"#, 8);
        assert_eq!(l.handle(7, r#"{"obtenir_tableau":true}"#, 9)[0].text.as_str().matches("Value").count(), 1);
    }

    #[test]
    fn ids_follow_connection_order_and_every_second_ready_counts() {
        let mut l = Legacy::new(0);
        // Connection 9 connected after 7 but says ready first: 7 is still 1.
        assert!(l.handle(9, r#"{"client_pret":true}"#, 1).is_empty());
        let out = l.handle(7, r#"{"client_pret":true}"#, 2);
        assert_eq!(
            out,
            vec![Out { to: vec![7], text: r#"{"client_id":1}"#.into() }, Out { to: vec![9], text: r#"{"client_id":2}"#.into() }]
        );
        // Every second client_pret, from whichever connection: ids are kept, a newcomer
        // gets the next one.
        l.handle(12, r#"{"obtenir_tableau":true}"#, 3);
        assert!(l.handle(9, r#"{"client_pret":true}"#, 3).is_empty());
        let out = l.handle(9, r#"{"client_pret":true}"#, 4);
        let ids: Vec<(u64, &str)> = out.iter().map(|o| (o.to[0], o.text.as_str())).collect();
        assert_eq!(ids, [(7, r#"{"client_id":1}"#), (9, r#"{"client_id":2}"#), (12, r#"{"client_id":3}"#)]);
        // A ready from a connection that then leaves does not count.
        l.handle(7, r#"{"client_pret":true}"#, 5);
        l.disconnect(7);
        assert!(l.handle(9, r#"{"client_pret":true}"#, 6).is_empty());
    }

    #[test]
    fn the_table_json_follows_every_insert() {
        let mut l = Legacy::new(0);
        let table = |l: &mut Legacy, conn: ConnId, now: i64| l.handle(conn, r#"{"obtenir_tableau":true}"#, now)[0].text.to_string();
        let expect = |rows: &[(i64, i64)]| {
            let rows: Vec<String> = rows
                .iter()
                .map(|&(v, t)| format!(r#"{{"Value":{v},"Timestamp":"{}"}}"#, rfc3339_nanos(t, 0)))
                .collect();
            format!("[{}]", rows.join(","))
        };
        l.handle(1, r#"{"nouvelle_valeur":1}"#, 10);
        l.handle(2, r#"{"nouvelle_valeur":2}"#, 20);
        assert_eq!(table(&mut l, 1, 21), expect(&[(1, 10), (2, 20)]));
        // A row stamped before the last one (another connection's, read later) goes in its place.
        l.handle(1, r#"{"nouvelle_valeur":3}"#, 15);
        l.handle(2, r#"{"nouvelle_valeur":4}"#, 30);
        assert_eq!(table(&mut l, 2, 31), expect(&[(1, 10), (3, 15), (2, 20), (4, 30)]));
        l.handle(1, r#"{"nouvelle_valeur":5}"#, 40);
        assert_eq!(table(&mut l, 2, 41), expect(&[(1, 10), (3, 15), (2, 20), (4, 30), (5, 40)]));
        l.handle(1, r#"{"reset_tableau":true}"#, 50);
        l.handle(1, r#"{"nouvelle_valeur":6}"#, 60);
        assert_eq!(table(&mut l, 1, 61), expect(&[(6, 60)]));
    }

    #[test]
    fn asking_for_the_table_is_rate_limited_per_connection() {
        let mut l = Legacy::new(0);
        let ask = |l: &mut Legacy, conn: ConnId, now: i64| l.handle(conn, r#"{"obtenir_tableau":true}"#, now)[0].text.to_string();
        for k in 0..TABLE_BURST as i64 {
            assert_eq!(ask(&mut l, 1, k), "[]");
        }
        assert!(ask(&mut l, 1, 10).contains("error"));
        assert_eq!(ask(&mut l, 2, 10), "[]", "another connection has its own allowance");
        assert_eq!(ask(&mut l, 1, 10 + 200_000), "[]", "5 a second come back");
    }

    #[test]
    fn bad_messages_get_an_error_and_change_nothing() {
        let mut l = Legacy::new(0);
        for bad in [r#"{"nouvelle_valeur":"x"}"#, r#"{"nouvelle_valeur":1.5}"#, r#"{"nouvelle_valeur":null}"#, "[]", "{", r#"{"other":1}"#, r#"{"client_pret":true,"reset_tableau":true}"#, r#"{"client_a_terminer_denvoyer":"soon"}"#] {
            let out = l.handle(1, bad, 0);
            assert_eq!(out.len(), 1, "{bad}");
            assert!(out[0].text.starts_with(r#"{"error":"#), "{bad}: {}", out[0].text);
        }
        assert_eq!(l.rows(), 0);
    }

    #[test]
    fn a_peer_leaving_does_not_poison_the_next_run() {
        let mut l = Legacy::new(0);
        l.handle(1, r#"{"client_pret":true}"#, 0);
        l.handle(1, r#"{"client_a_terminer_denvoyer":1}"#, 0);
        l.disconnect(1);
        // A new pair: ids from 1 again, and neither half-count carries over.
        assert!(l.handle(2, r#"{"client_pret":true}"#, 0).is_empty());
        let out = l.handle(3, r#"{"client_pret":true}"#, 0);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].text, r#"{"client_id":1}"#);
        assert!(l.handle(2, r#"{"client_a_terminer_denvoyer":1}"#, 0).is_empty());
        assert_eq!(l.handle(3, r#"{"client_a_terminer_denvoyer":1}"#, 0).len(), 1);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut l = Legacy::new(0);
        for k in 0..MAX_ROWS {
            assert!(l.handle(1, r#"{"nouvelle_valeur":5}"#, k as i64).is_empty());
        }
        let out = l.handle(1, r#"{"nouvelle_valeur":5}"#, 0);
        assert!(out[0].text.contains("full"));
        assert_eq!(l.rows(), MAX_ROWS);
    }
}

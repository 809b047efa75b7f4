//! The server's aggregate counters and their `/metrics` page (Prometheus text format 0.0.4):
//! kept as events happen, never per room, per connection or per post, so a scrape costs the
//! same whatever the boards hold. One thread, so `Cell`s; every label comes from a fixed set.

use std::cell::{Cell, RefCell};
use std::fmt::{Display, Write};

/// Upper bounds of the frame-delay histogram's buckets, in µs (rendered in seconds).
pub const DELAY_BUCKETS_US: [u64; 13] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000];

/// Why a WebSocket connection ended, as `sgp_connections_closed_total` names it.
pub const CLOSE_REASONS: &[&str] = &["peer", "shutdown", "silence", "flood", "too_slow", "size", "utf8", "protocol", "binary", "other"];

/// `aborted` reasons kept apart; any other reason a client gives counts as `other`.
pub const ABORT_REASONS: &[&str] = &["desync", "peer_left", "disagree", "idle", "gave_up"];

/// Counts by a label from a small fixed set (error codes, reasons, HTTP statuses).
struct Tally<K>(RefCell<Vec<(K, u64)>>);

impl<K: Copy + PartialEq + Display> Tally<K> {
    fn new() -> Self {
        Tally(RefCell::new(Vec::new()))
    }

    fn add(&self, key: K) {
        let mut v = self.0.borrow_mut();
        match v.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => v.push((key, 1)),
        }
    }

    fn get(&self, key: K) -> u64 {
        self.0.borrow().iter().find(|(k, _)| *k == key).map_or(0, |(_, n)| *n)
    }

    fn render(&self, out: &mut String, name: &str, label: &str) {
        for (k, n) in self.0.borrow().iter() {
            let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {n}");
        }
    }
}

/// A histogram of µs values with fixed buckets.
struct Histogram {
    counts: [Cell<u64>; DELAY_BUCKETS_US.len()],
    count: Cell<u64>,
    sum_us: Cell<u64>,
}

impl Histogram {
    fn observe(&self, us: u64) {
        if let Some(k) = DELAY_BUCKETS_US.iter().position(|&b| us <= b) {
            self.counts[k].set(self.counts[k].get() + 1);
        }
        self.count.set(self.count.get() + 1);
        self.sum_us.set(self.sum_us.get().saturating_add(us));
    }

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (b, c) in DELAY_BUCKETS_US.iter().zip(&self.counts) {
            cumulative += c.get();
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", seconds(*b));
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count.get());
        let _ = writeln!(out, "{name}_sum {}", seconds(self.sum_us.get()));
        let _ = writeln!(out, "{name}_count {}", self.count.get());
    }
}

/// µs as decimal seconds, exactly (no float rounding).
fn seconds(us: u64) -> String {
    let s = format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// Everything `/metrics` reports but the two gauges, which the server reads when asked.
pub struct Metrics {
    connections_opened: Cell<u64>,
    rooms_created: Cell<u64>,
    rooms_removed: Cell<u64>,
    posts_accepted: Cell<u64>,
    posts_refused: Tally<&'static str>,
    errors: Tally<&'static str>,
    rounds_closed: Cell<u64>,
    aborts: Tally<&'static str>,
    span_drops: Cell<u64>,
    keys_confirmed: Cell<u64>,
    keys_mismatched: Cell<u64>,
    board_requests: Cell<u64>,
    legacy_rows: Cell<u64>,
    closed: Tally<&'static str>,
    refused_connections: Tally<&'static str>,
    upgrades_refused: Tally<u16>,
    frame_delay: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections_opened: Cell::new(0),
            rooms_created: Cell::new(0),
            rooms_removed: Cell::new(0),
            posts_accepted: Cell::new(0),
            posts_refused: Tally::new(),
            errors: Tally::new(),
            rounds_closed: Cell::new(0),
            aborts: Tally::new(),
            span_drops: Cell::new(0),
            keys_confirmed: Cell::new(0),
            keys_mismatched: Cell::new(0),
            board_requests: Cell::new(0),
            legacy_rows: Cell::new(0),
            closed: Tally::new(),
            refused_connections: Tally::new(),
            upgrades_refused: Tally::new(),
            frame_delay: Histogram { counts: Default::default(), count: Cell::new(0), sum_us: Cell::new(0) },
        }
    }
}

impl Metrics {
    pub fn connection_opened(&self) {
        bump(&self.connections_opened);
    }
    pub fn room_created(&self) {
        bump(&self.rooms_created);
    }
    pub fn room_removed(&self) {
        bump(&self.rooms_removed);
    }
    pub fn post_accepted(&self) {
        bump(&self.posts_accepted);
    }
    /// A `post` refused with this code (also counted by [`Metrics::refused`]).
    pub fn post_refused(&self, code: &'static str) {
        self.posts_refused.add(code);
    }
    /// An `error` sent to a client, for any message: its code (docs/protocol.md §8).
    pub fn refused(&self, code: &'static str) {
        self.errors.add(code);
    }
    pub fn round_closed(&self) {
        bump(&self.rounds_closed);
    }
    /// An `aborted` sent to a room; `reason` is mapped into [`ABORT_REASONS`] or `other`.
    pub fn aborted(&self, reason: &str) -> &'static str {
        let r = ABORT_REASONS.iter().find(|r| **r == reason).copied().unwrap_or("other");
        self.aborts.add(r);
        r
    }
    pub fn span_drop(&self) {
        bump(&self.span_drops);
    }
    pub fn key(&self, matched: bool) {
        bump(if matched { &self.keys_confirmed } else { &self.keys_mismatched });
    }
    pub fn board_request(&self) {
        bump(&self.board_requests);
    }
    pub fn legacy_rows(&self, n: u64) {
        self.legacy_rows.set(self.legacy_rows.get() + n);
    }
    /// A WebSocket connection ended; `reason` should be one of [`CLOSE_REASONS`].
    pub fn closed(&self, reason: &'static str) {
        self.closed.add(reason);
    }
    /// A connection turned away before it became a WebSocket (a server limit), by reason.
    pub fn connection_refused(&self, reason: &'static str) {
        self.refused_connections.add(reason);
    }
    /// A request to `/ws` answered with this status instead of `101`.
    pub fn upgrade_refused(&self, status: u16) {
        self.upgrades_refused.add(status);
    }
    /// From a frame's kernel receive stamp to its handling, in µs.
    pub fn frame_delay(&self, us: i64) {
        self.frame_delay.observe(us.max(0) as u64);
    }

    /// Connections closed for `reason` so far (for tests and logs).
    pub fn closed_count(&self, reason: &'static str) -> u64 {
        self.closed.get(reason)
    }

    /// The `/metrics` page, with the two gauges read by the caller.
    pub fn render(&self, connections: usize, rooms: usize) -> String {
        let mut o = String::with_capacity(4096);
        gauge(&mut o, "sgp_connections", "WebSocket connections open now", connections as u64);
        gauge(&mut o, "sgp_rooms", "rooms open now", rooms as u64);
        counter(&mut o, "sgp_connections_opened_total", "WebSocket connections upgraded", self.connections_opened.get());
        counter(&mut o, "sgp_rooms_created_total", "rooms created", self.rooms_created.get());
        counter(&mut o, "sgp_rooms_removed_total", "rooms removed (emptied, or idle)", self.rooms_removed.get());
        counter(&mut o, "sgp_posts_accepted_total", "posts put on a board", self.posts_accepted.get());
        head(&mut o, "sgp_posts_refused_total", "posts refused, by error code", "counter");
        self.posts_refused.render(&mut o, "sgp_posts_refused_total", "code");
        head(&mut o, "sgp_errors_total", "error replies to any message, by error code", "counter");
        self.errors.render(&mut o, "sgp_errors_total", "code");
        counter(&mut o, "sgp_rounds_closed_total", "rounds closed (closed sent to the room)", self.rounds_closed.get());
        head(&mut o, "sgp_aborts_total", "aborted sent to a room, by reason: desync drops the round, the others end the session", "counter");
        self.aborts.render(&mut o, "sgp_aborts_total", "reason");
        counter(&mut o, "sgp_span_drops_total", "drop messages relayed (spans left out of a closed round)", self.span_drops.get());
        counter(&mut o, "sgp_keys_confirmed_total", "sessions whose two confirmation tags matched (one per room's key)", self.keys_confirmed.get());
        counter(&mut o, "sgp_keys_mismatched_total", "sessions whose two confirmation tags differed", self.keys_mismatched.get());
        counter(&mut o, "sgp_board_requests_total", "board requests, refused ones included", self.board_requests.get());
        counter(&mut o, "sgp_legacy_rows_total", "rows added to the legacy dialect's table", self.legacy_rows.get());
        head(&mut o, "sgp_connections_closed_total", "WebSocket connections ended, by reason", "counter");
        self.closed.render(&mut o, "sgp_connections_closed_total", "reason");
        head(&mut o, "sgp_connections_refused_total", "connections turned away by a server limit before the upgrade, by reason", "counter");
        self.refused_connections.render(&mut o, "sgp_connections_refused_total", "reason");
        head(&mut o, "sgp_upgrades_refused_total", "requests to /ws refused, by HTTP status", "counter");
        self.upgrades_refused.render(&mut o, "sgp_upgrades_refused_total", "status");
        head(&mut o, "sgp_frame_delay_seconds", "from a text frame's kernel receive stamp to its handling", "histogram");
        self.frame_delay.render(&mut o, "sgp_frame_delay_seconds");
        o
    }
}

fn head(o: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(o, "# HELP {name} {help}.\n# TYPE {name} {kind}");
}

fn gauge(o: &mut String, name: &str, help: &str, v: u64) {
    head(o, name, help, "gauge");
    let _ = writeln!(o, "{name} {v}");
}

fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    head(o, name, help, "counter");
    let _ = writeln!(o, "{name} {v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_labels_and_buckets() {
        let m = Metrics::default();
        m.post_accepted();
        m.post_accepted();
        m.refused("too_many_posts");
        m.post_refused("too_many_posts");
        m.refused("bad_json");
        m.refused("bad_json");
        assert_eq!(m.aborted("desync"), "desync");
        assert_eq!(m.aborted("anything_a_client_says"), "other");
        m.closed("flood");
        m.upgrade_refused(403);
        m.connection_refused("max_connections");
        m.frame_delay(7);
        m.frame_delay(40);
        m.frame_delay(1_000_000);
        let text = m.render(3, 1);
        for line in [
            "sgp_connections 3",
            "sgp_rooms 1",
            "sgp_posts_accepted_total 2",
            "sgp_posts_refused_total{code=\"too_many_posts\"} 1",
            "sgp_errors_total{code=\"bad_json\"} 2",
            "sgp_aborts_total{reason=\"other\"} 1",
            "sgp_connections_closed_total{reason=\"flood\"} 1",
            "sgp_upgrades_refused_total{status=\"403\"} 1",
            "sgp_connections_refused_total{reason=\"max_connections\"} 1",
            "sgp_frame_delay_seconds_bucket{le=\"0.000005\"} 0",
            "sgp_frame_delay_seconds_bucket{le=\"0.00001\"} 1",
            "sgp_frame_delay_seconds_bucket{le=\"0.00005\"} 2",
            "sgp_frame_delay_seconds_bucket{le=\"0.1\"} 2",
            "sgp_frame_delay_seconds_bucket{le=\"+Inf\"} 3",
            "sgp_frame_delay_seconds_sum 1.000047",
            "sgp_frame_delay_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert_eq!(m.closed_count("flood"), 1);
        assert_eq!(seconds(0), "0");
    }
}

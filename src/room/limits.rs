//! The engine's timings and limits, and the token bucket that enforces rates. Plain values
//! and arithmetic on times passed in: nothing here knows a room, a message or a clock.

/// Timings and limits of the engine. `Default` is what `sgp serve` uses.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A room with no message for this long is removed.
    pub idle_room_us: i64,
    /// The least lead a poster needs that has not asked for its own (`ask.lead_ms`): `start`
    /// announces a window beginning at least this far ahead (see [`Limits::lead_for`]).
    pub lead_us: i64,
    /// The lead once both posters' turnarounds are known is at least `lead_turns` × the
    /// slower one's, and never more than `lead_max_us`.
    pub lead_turns: i64,
    pub lead_max_us: i64,
    /// A round is closed this long after `t_end` even if a poster never sent `done`.
    pub grace_us: i64,
    /// Posts a poster may send at once above its steady allowance.
    pub post_burst: f64,
    /// Steady allowance: this many times the room's `rate_hz`, plus `post_slack_hz`.
    pub post_rate_factor: f64,
    pub post_slack_hz: f64,
    /// At most this many rooms at once.
    pub max_rooms: usize,
    /// At most this many observers in one room (each is sent every board).
    pub max_observers: usize,
    /// At most this many entries on one round's board (bounds memory and every reply).
    pub max_board: usize,
    /// `board` requests a connection may send at once, and per second after that: each
    /// answer is the whole board, so an unbounded stream of them is a way to load the server.
    pub board_burst: f64,
    pub board_per_sec: f64,
}

impl Limits {
    /// How far ahead `start` puts `t_start`, given each poster's last turnaround (`closed`
    /// sent → its verdict received, µs) and the lead each asked for (µs; none: `lead_us`).
    /// A turnaround is at least a round trip, so twice it is at least four one-way delays:
    /// the `start` reaches the slower poster well before the window opens, however far away
    /// it is. The asked leads are the posters' own floors: 50 ms for a poster that asks for
    /// none, what a page needed when a missed post cost its round (it is still drawing the
    /// last round when it has said `ready`: with 20 ms, measured in two Chromium tabs,
    /// 11-20 % of the posts of a round's first 25 ms missed τ, 0.4-2 % later). The page now
    /// asks for 20 ms and `sgp pair` for 10 (docs/protocol.md §3).
    pub fn lead_for(&self, turns: [Option<i64>; 2], asked: [Option<i64>; 2]) -> i64 {
        let floor = asked.iter().map(|a| a.unwrap_or(self.lead_us)).max().unwrap_or(self.lead_us);
        let turn = match turns {
            [Some(a), Some(b)] => self.lead_turns * a.max(b),
            _ => 0,
        };
        floor.max(turn).min(self.lead_max_us)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_room_us: 10 * 60 * 1_000_000,
            lead_us: 50_000,
            lead_turns: 2,
            lead_max_us: 1_000_000,
            grace_us: 2_000_000,
            post_burst: 64.0,
            post_rate_factor: 4.0,
            post_slack_hz: 100.0,
            max_rooms: 100_000,
            max_observers: 64,
            max_board: 100_000,
            board_burst: 20.0,
            board_per_sec: 10.0,
        }
    }
}

/// A token bucket: `burst` at once, refilled at `per_sec`, time passed in (µs).
#[derive(Clone, Debug)]
pub struct Bucket {
    tokens: f64,
    at_us: i64,
}

impl Bucket {
    pub fn full(burst: f64, now: i64) -> Bucket {
        Bucket { tokens: burst, at_us: now }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: i64, burst: f64, per_sec: f64) -> bool {
        self.tokens = (self.tokens + (now - self.at_us).max(0) as f64 * (per_sec / 1e6)).min(burst);
        self.at_us = now;
        let ok = self.tokens >= 1.0;
        if ok {
            self.tokens -= 1.0;
        }
        ok
    }
}

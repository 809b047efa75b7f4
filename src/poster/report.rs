//! What the poster engine reports: its actions, the closed rounds and keys they carry, with
//! their form in the transcript vectors (docs/poster.md), and the facts of a round that the
//! late rule judges (`RoundFacts::spoiled`).

use crate::clock::SyncSample;
use crate::protocol::{ClientMsg, Entry, Label};
use crate::secret::{self, Ledger, OwnPost, RoundView, Span};
use serde_json::{json, Value};

/// How a closed round was judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// In sync: it counts (perhaps less our spans).
    Kept,
    /// Out of sync: dropped with `abort {desync}`.
    Desync,
    /// Spoiled by the late rule (or cut short): dropped with `abort {desync}`.
    Late,
    /// Testing only (`--testing-hold-post`): a post held back passed for matched.
    Held,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Kept => "kept",
            Outcome::Desync => "desync",
            Outcome::Late => "late",
            Outcome::Held => "held",
        }
    }
}

/// What this poster did in one round, for reports and records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundFacts {
    pub t_start: i64,
    pub t_end: i64,
    /// The clock sync the round was posted with (bias included).
    pub sync: SyncSample,
    pub posts: Vec<OwnPost>,
    /// Per post: how long after its target it left, µs.
    pub late: Vec<i64>,
    /// Posts (from 1) the server said came in one piece with our next message.
    pub coalesced: Vec<u32>,
    /// `--testing-hold-post`: the recorded send times of the posts held back.
    pub held: Vec<i64>,
    pub planned: usize,
    /// The planned send times (local µs) of the posts skipped by the late rule.
    pub skipped: Vec<i64>,
    /// How long after its target the latest skipped post was due to leave, µs.
    pub skip_late_us: i64,
    /// Local time `done` was sent (None: cut short).
    pub done_us: Option<i64>,
    pub late_limit_us: i64,
    /// The round's τ and guard (µs) and rate, from its `start` (they change as posters ask).
    pub tol_us: i64,
    pub guard_us: i64,
    pub rate_hz: f64,
}

impl RoundFacts {
    /// The latest a post left after its target, µs.
    pub fn late_us(&self) -> i64 {
        self.late.iter().copied().max().unwrap_or(0)
    }
    /// The late rule spoiled the round: more than one planned post in `SKIPPED_SHARE`
    /// skipped, a post that left later than the limit, or no `done`. (Fewer skipped posts
    /// cost spans, not the round.)
    pub fn spoiled(&self) -> bool {
        self.skipped.len() * super::SKIPPED_SHARE > self.planned || self.late_us() > self.late_limit_us || self.done_us.is_none()
    }
    /// The posts whose time the board reflects: all but those coalesced with a later message.
    pub fn timed(&self) -> Vec<OwnPost> {
        self.posts.iter().enumerate().filter(|(k, _)| !self.coalesced.contains(&(*k as u32 + 1))).map(|(_, p)| *p).collect()
    }
}

/// A closed round, judged.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundReport {
    pub session: String,
    pub round: u32,
    pub outcome: Outcome,
    pub board: Vec<Entry>,
    pub facts: RoundFacts,
    /// Kept: our view of it (spans, kept entries, bits).
    pub view: Option<RoundView>,
    /// Kept: the strength of the session so far.
    pub ledger: Option<Ledger>,
    /// Desync: (unmatched, total).
    pub unmatched: Option<(u32, u32)>,
    /// The room's target, for reports.
    pub target_bits: u32,
}

/// A key our verdict confirms (not yet confirmed by the peer).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyMade {
    pub session: String,
    pub key: [u8; 32],
    pub bits: Vec<bool>,
    pub tag: String,
    pub ledger: Ledger,
    /// The round that completed it, and how many rounds count.
    pub round: u32,
    pub rounds: u32,
    pub drops: u32,
}

/// What the engine wants done.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Send(ClientMsg),
    /// Measure the clock, then call `synced`.
    Sync,
    /// Draw this round's posting times and labels, then call `scheduled`.
    /// (`shift_us`: a post sent at local time s is predicted at server time s + shift.)
    Schedule { t_start_us: i64, t_end_us: i64, rate_hz: f64, shift_us: i64 },
    /// Send this post now: read the clock, call `leave` with it, and unless that says `Skip`,
    /// send and call `sent` (with that time as `sent_us`).
    Post { label: Label, target_us: i64 },
    /// The post `Post` handed out was too late by the time it was to leave: send nothing.
    Skip { target_us: i64 },
    /// Send `done` now, then call `done_sent`.
    Done,
    Round(Box<RoundReport>),
    /// The peer's `dropped` narrowed our open round.
    Dropped { session: String, round: u32, spans: Vec<Span>, view: RoundView, ledger: Ledger },
    Key(Box<KeyMade>),
    KeyVoid { session: String, round: u32, strength: u32 },
    /// The server's verdict; `key` is ours when both tags matched.
    Confirmed { matched: bool, key: Option<Box<KeyMade>> },
    /// The session ended, or (`session_goes_on`: a `desync`) only the round `round`.
    Aborted { reason: String, round: Option<u32>, session_goes_on: bool },
    /// The engine stops: `peer_left`, `idle`, `retries`, or (browser) the peer's `gave_up`,
    /// `user`, or any abort while not running.
    Fail { reason: String, message: String },
}

impl Action {
    /// The action in the transcript vectors' form (docs/poster.md): one key, the fields a
    /// vector may compare.
    pub fn to_json(&self) -> Value {
        match self {
            Action::Send(m) => json!({"send": m}),
            Action::Sync => json!({"sync": {}}),
            Action::Schedule { t_start_us, t_end_us, rate_hz, shift_us } => {
                json!({"schedule": {"t_start_us": t_start_us, "t_end_us": t_end_us, "rate_hz": rate_hz, "shift_us": shift_us}})
            }
            Action::Post { label, target_us } => json!({"post": {"label": label, "target_us": target_us}}),
            Action::Skip { target_us } => json!({"skip": {"target_us": target_us}}),
            Action::Done => json!({"done": {}}),
            Action::Round(r) => json!({ "round": r.to_json() }),
            Action::Dropped { session, round, spans, view, .. } => {
                json!({"dropped": {"session": session, "round": round, "spans": spans, "n": view.n, "a": view.a, "left_out": view.dropped.len()}})
            }
            Action::Key(k) => json!({ "key": k.to_json() }),
            Action::KeyVoid { session, round, strength } => json!({"key_void": {"session": session, "round": round, "strength": strength}}),
            Action::Confirmed { matched, .. } => json!({"confirmed": {"matched": matched}}),
            Action::Aborted { reason, round, .. } => json!({"aborted": {"reason": reason, "round": round}}),
            Action::Fail { reason, message } => json!({"fail": {"reason": reason, "message": message}}),
        }
    }
}

impl RoundReport {
    /// The round in the vectors' form: the fields of its outcome (docs/poster.md).
    pub fn to_json(&self) -> Value {
        let mut v = json!({"session": self.session, "round": self.round, "outcome": self.outcome.as_str(),
            "tolerance_us": self.facts.tol_us, "rate_hz": self.facts.rate_hz});
        let f = &self.facts;
        match (self.outcome, &self.view, self.unmatched) {
            (Outcome::Kept, Some(view), _) => {
                v["board_n"] = json!(self.board.len());
                v["n"] = json!(view.n);
                v["a"] = json!(view.a);
                v["left_out"] = json!(view.dropped.len());
                v["spans"] = json!(view.spans);
                v["posts"] = json!(f.posts.len());
                v["strength"] = json!(self.ledger.as_ref().map_or(0, |l| l.strength));
                if !f.skipped.is_empty() {
                    v["skipped"] = json!(f.skipped.len());
                }
            }
            (Outcome::Desync, _, Some((unmatched, total))) => {
                v["unmatched"] = json!(unmatched);
                v["total"] = json!(total);
            }
            _ => {
                v["posts"] = json!(f.posts.len());
                v["late_us"] = json!(f.late_us());
                v["skipped"] = json!(f.skipped.len());
            }
        }
        v
    }
}

impl KeyMade {
    pub fn to_json(&self) -> Value {
        json!({"key": secret::hex(&self.key), "tag": self.tag, "session": self.session, "strength": self.ledger.strength, "n": self.ledger.n,
            "a": self.ledger.a, "bits": secret::bits_string(&self.bits), "round": self.round, "rounds": self.rounds, "drops": self.drops})
    }
}

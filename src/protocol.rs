//! The wire protocol: message types, parameters and error codes, and nothing else.
//! No I/O, no clock, no room logic. `docs/protocol.md` is the prose version of this file.
//!
//! Every message is one JSON text frame holding one object whose `type` comes first.
//!
//! ```text
//! client → server                          server → client
//! create  {params?}                    ->  joined    {room, role, params, peers}
//! join    {room, as?: "observer"}      ->  joined | error
//!                                          peer      {event: "joined"|"left", role}   (to the others)
//! ping    {t0_us}                      ->  pong      {t0_us, t1_us, t2_us}
//! ready                                ->  start     {session, round, t_start_us, t_end_us, params}  (room, once both are ready)
//! post    {label: "A"|"B"}             ->  (nothing; an error if refused)
//!                                          coalesced {post, count}   (to the poster only: its posts
//!                                          post … post+count−1 of this round arrived in one piece
//!                                          with its next message, so the board has them at that
//!                                          message's time, see conn.rs)
//! done                                 ->  closed    {session, round, board}  (room, once both are done or the grace has passed)
//! board                                ->  board     {session, round, entries}
//! reset                                ->  reset     (room)
//! confirm {tag}                        ->  confirm   {role, tag} ×2 then confirmed {match}  (room, once both have sent one)
//! abort   {reason}                     ->  aborted   {reason}  (room)
//! leave                                ->  (the others get peer {left} and, from a poster, aborted {reason: "peer_left"})
//! anything malformed or out of place   ->  error     {code, message}
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;

/// A post's public label: it names the party the poster claims to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Label {
    A,
    B,
}

/// A seat in a room. Only `alice` and `bob` post; observers read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Alice,
    Bob,
    Observer,
}

impl Role {
    /// The label that names this role, for posters.
    pub fn label(self) -> Option<Label> {
        match self {
            Role::Alice => Some(Label::A),
            Role::Bob => Some(Label::B),
            Role::Observer => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Alice => "alice",
            Role::Bob => "bob",
            Role::Observer => "observer",
        }
    }
}

/// One board entry: the server's receive time of a post and its label. Never its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position on the board, from 0, in time order (of the server's receive times).
    pub i: u32,
    /// Server receive time, µs since the Unix epoch.
    pub t_us: i64,
    pub label: Label,
}

/// The parameters of a room, fixed by its creator (see docs/protocol.md §6 and `Params::resolve`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// τ: a post is recognised if its server time is within τ of its predicted arrival.
    pub tolerance_ms: f64,
    /// Each poster's Poisson rate.
    pub rate_hz: f64,
    /// G: entries closer than G to either end of the round window are sifted out.
    pub guard_ms: f64,
    pub target_bits: u32,
    pub tag_bits: u32,
    /// Length of one round's posting window.
    pub duration_ms: u32,
}

/// What a creator may send: every field optional, the rest follow from τ.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamsIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_hz: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_bits: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_bits: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u32>,
}

/// A poster's ask for the next round: τ, and the rate divided by `rate_div` (1 … 64). The
/// room runs each round at the widest τ and the largest divisor its two posters asked
/// (`Params::tuned`), a poster without an ask counting as the room's own τ and divisor 1.
/// `lead_ms`, if given, is the least lead this poster needs before a window opens (the
/// room's default, 50 ms, if not).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    pub tolerance_ms: f64,
    #[serde(default = "one")]
    pub rate_div: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_ms: Option<f64>,
}

/// The range of an ask's `lead_ms`.
pub const ASK_LEAD_MS: std::ops::RangeInclusive<f64> = 1.0..=1000.0;

impl Ask {
    /// τ and the divisor alone (no lead asked).
    pub fn new(tolerance_ms: f64, rate_div: u32) -> Ask {
        Ask { tolerance_ms, rate_div, lead_ms: None }
    }

    /// The lead asked, in µs, once [`Ask::check_lead`] has passed.
    pub fn lead_us(&self) -> Option<i64> {
        self.lead_ms.map(|ms| (ms * 1000.0).round() as i64)
    }

    pub fn check_lead(&self) -> Result<(), String> {
        match self.lead_ms {
            Some(ms) if !ASK_LEAD_MS.contains(&ms) => Err(format!(
                "ready: ask.lead_ms must be in [{}, {}], got {ms}",
                ASK_LEAD_MS.start(),
                ASK_LEAD_MS.end()
            )),
            _ => Ok(()),
        }
    }
}

fn one() -> u32 {
    1
}

/// The largest rate divisor an ask may carry.
pub const MAX_ASK_RATE_DIV: u32 = 64;

/// Default tolerance for terminal clients on one machine or a LAN, in ms
/// (chosen from `sgp bench` measurements: see BENCHMARKS.md).
pub const DEFAULT_TOLERANCE_MS: f64 = 0.25;
/// Bits of margin paid for privacy amplification: 2·log2(1/ε) with ε = 2⁻³².
pub const MARGIN_BITS: u32 = 64;
/// Most posts one poster may be expected to make in one round (`rate_hz · duration`).
pub const MAX_EXPECTED_POSTS: f64 = 20_000.0;

impl Params {
    /// Fills in the defaults of docs/protocol.md §6 and checks every field's range.
    pub fn resolve(p: &ParamsIn) -> Result<Params, String> {
        let tol = p.tolerance_ms.unwrap_or(DEFAULT_TOLERANCE_MS);
        if !(0.01..=1000.0).contains(&tol) {
            return Err(format!("params.tolerance_ms must be in [0.01, 1000], got {tol}"));
        }
        let rate = p.rate_hz.unwrap_or(1000.0 / (8.0 * tol));
        if !(rate > 0.0 && rate <= 10_000.0) {
            return Err(format!("params.rate_hz must be in (0, 10000], got {rate}"));
        }
        let guard = p.guard_ms.unwrap_or_else(|| default_guard_ms(tol));
        if !(0.0..=10_000.0).contains(&guard) {
            return Err(format!("params.guard_ms must be in [0, 10000], got {guard}"));
        }
        let target = p.target_bits.unwrap_or(256);
        if !(1..=8192).contains(&target) {
            return Err(format!("params.target_bits must be in [1, 8192], got {target}"));
        }
        let tag = p.tag_bits.unwrap_or(32);
        if !(8..=128).contains(&tag) || tag % 8 != 0 {
            return Err(format!("params.tag_bits must be a multiple of 8 in [8, 128], got {tag}"));
        }
        let duration = match p.duration_ms {
            Some(d) => d,
            None => default_duration_ms(tol, rate, guard, target, tag),
        };
        if !(10..=120_000).contains(&duration) {
            return Err(format!("params.duration_ms must be in [10, 120000], got {duration}"));
        }
        if 2.0 * guard >= duration as f64 {
            return Err(format!(
                "params.guard_ms ({guard}) leaves nothing of a {duration} ms round"
            ));
        }
        if rate * duration as f64 / 1000.0 > MAX_EXPECTED_POSTS {
            return Err(format!(
                "params.rate_hz × duration_ms asks for more than {MAX_EXPECTED_POSTS} posts per round"
            ));
        }
        Ok(Params {
            tolerance_ms: tol,
            rate_hz: rate,
            guard_ms: guard,
            target_bits: target,
            tag_bits: tag,
            duration_ms: duration,
        })
    }

    /// These (the room's own) parameters at the τ and rate divisor of `ask`: the rate scaled
    /// as 1/τ and divided, the guard scaled as τ (at least the room's own or 2 ms, whichever
    /// is less), and the posting window long enough for as many kept entries as the room's own
    /// (docs/protocol.md §6, "Adapting"). The same τ and divisor 1 give these parameters back
    /// unchanged.
    pub fn tuned(&self, ask: &Ask) -> Result<Params, String> {
        if !(0.01..=1000.0).contains(&ask.tolerance_ms) {
            return Err(format!("ready: ask.tolerance_ms must be in [0.01, 1000], got {}", ask.tolerance_ms));
        }
        if !(1..=MAX_ASK_RATE_DIV).contains(&ask.rate_div) {
            return Err(format!("ready: ask.rate_div must be in [1, {MAX_ASK_RATE_DIV}], got {}", ask.rate_div));
        }
        if ask.tolerance_ms == self.tolerance_ms && ask.rate_div == 1 {
            return Ok(self.clone());
        }
        let k = ask.tolerance_ms / self.tolerance_ms;
        let rate = self.rate_hz / k / f64::from(ask.rate_div);
        let guard = (self.guard_ms * k).max(self.guard_ms.min(2.0));
        // Kept entries per second of posting, up to a constant: λ·e^(−2gλ), λ = 2·rate, g = 2τ.
        let kept = |rate: f64, tol_ms: f64| rate * (-8.0 * tol_ms / 1000.0 * rate).exp();
        let posting_ms = (f64::from(self.duration_ms) - 2.0 * self.guard_ms).max(1.0) * kept(self.rate_hz, self.tolerance_ms) / kept(rate, ask.tolerance_ms);
        let duration = (posting_ms + 2.0 * guard).ceil().clamp(10.0, 120_000.0) as u32;
        let tuned = ParamsIn {
            tolerance_ms: Some(ask.tolerance_ms),
            rate_hz: Some(rate),
            guard_ms: Some(guard.min(f64::from(duration) / 4.0)),
            target_bits: Some(self.target_bits),
            tag_bits: Some(self.tag_bits),
            duration_ms: Some(duration),
        };
        Params::resolve(&tuned).map_err(|e| format!("ready: the ask gives no valid round ({e})"))
    }

    pub fn tolerance_us(&self) -> i64 {
        (self.tolerance_ms * 1000.0).round() as i64
    }
    pub fn guard_us(&self) -> i64 {
        (self.guard_ms * 1000.0).round() as i64
    }
}

/// The guard zone by default: `max(20τ, 2 ms)`.
///
/// What it must cover: near `t_start` the two posters' entries are not yet a steady Poisson
/// stream (one may have had `start` later, or its first timer fired late). In a round that
/// counts, each post left at most half a mean gap after its planned time (the late rule of
/// both clients) and landed within τ of where its poster predicted it (the self-check), so
/// that stretch ends by `t_start + τ + ½ gap`, and a kept entry's sift looks 2τ either side:
/// `4τ + ½ gap` (8τ at the default rate) would cover it with τ to spare. The default stays
/// 20τ, the guard the audit passed at N ≥ 100 000: a trial at 8τ was coin-like over 40 000
/// entries only (SECURITY.md), and its gain did not show beside the key time's spread.
pub fn default_guard_ms(tol_ms: f64) -> f64 {
    (20.0 * tol_ms).max(2.0)
}

/// Rounds a key normally takes. One late post spoils a whole round (docs/protocol.md §5.3), and
/// hiccups come at a rate per second, so several short rounds beat one long one.
pub const ROUNDS_PER_KEY: f64 = 3.0;

/// A round long enough for a third of the target, with 25 % to spare: the kept entries
/// per second of two Poisson posters at `rate` each are `λ·e^(−2gλ)` with `λ = 2·rate`.
pub fn default_duration_ms(tol_ms: f64, rate_hz: f64, guard_ms: f64, target: u32, tag: u32) -> u32 {
    let lambda = 2.0 * rate_hz;
    let g_s = 2.0 * tol_ms / 1000.0;
    let kept_per_s = lambda * (-2.0 * g_s * lambda).exp();
    // log2 C(n, n/2) ≈ n − ½·log2(πn/2): ask for a few bits more than needed.
    let need_bits = (target + tag + MARGIN_BITS) as f64;
    let n = need_bits + 0.5 * (std::f64::consts::PI * need_bits / 2.0).log2() + 8.0;
    let ms = 1.25 * n / ROUNDS_PER_KEY / kept_per_s * 1000.0 + 2.0 * guard_ms;
    ms.ceil().clamp(10.0, 120_000.0) as u32
}

/// Presence in a room, as sent in `joined`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    pub alice: bool,
    pub bob: bool,
    pub observers: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerEvent {
    Joined,
    Left,
}

/// Client → server. Struct variants everywhere so that unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    Create {
        /// The code the creator drew (docs/protocol.md §3, "Codes in the URL"); none: the
        /// server draws one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<ParamsIn>,
    },
    Join {
        room: String,
        #[serde(rename = "as", default, skip_serializing_if = "Option::is_none")]
        as_: Option<JoinAs>,
    },
    Ping {
        t0_us: i64,
    },
    Ready {
        /// This poster's ask for the next round (docs/protocol.md §6, "Adapting"); none: the
        /// room's own parameters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ask: Option<Ask>,
    },
    Post {
        label: Label,
    },
    Done {},
    Board {},
    Reset {},
    Confirm {
        tag: String,
        /// How many `drop`s of this round (its own and the peer's relayed one) the poster had
        /// applied when it made the tag; a confirm made before one it had not heard of is
        /// refused, and the poster confirms again once it has (docs/protocol.md §5.3).
        #[serde(default, skip_serializing_if = "is_zero")]
        drops: u32,
    },
    /// After `closed`, before this poster's verdict: leave out the kept entries inside these
    /// spans of the round's server time (`[from_us, to_us]`, inclusive, ascending, disjoint,
    /// inside the window), each around a post of this poster's that missed τ.
    Drop {
        spans: Vec<[i64; 2]>,
    },
    Abort {
        reason: String,
    },
    Leave {},
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinAs {
    Observer,
}

/// Server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMsg {
    Joined {
        room: String,
        role: Role,
        params: Params,
        peers: Peers,
    },
    Peer {
        event: PeerEvent,
        role: Role,
    },
    Pong {
        t0_us: i64,
        t1_us: i64,
        t2_us: i64,
    },
    Start {
        session: String,
        round: u32,
        t_start_us: i64,
        t_end_us: i64,
        params: Params,
    },
    Closed {
        session: String,
        round: u32,
        board: Vec<Entry>,
    },
    Board {
        session: Option<String>,
        round: u32,
        entries: Vec<Entry>,
    },
    Confirm {
        role: Role,
        tag: String,
    },
    Confirmed {
        #[serde(rename = "match")]
        matched: bool,
    },
    Aborted {
        reason: String,
    },
    /// A poster's `drop` for the last closed round, relayed to the rest of the room (not to
    /// the poster that sent it; the server does not say which poster that was).
    Dropped {
        session: String,
        round: u32,
        spans: Vec<[i64; 2]>,
    },
    Reset {},
    /// To a poster only: its posts `post` … `post + count − 1` of this round (from 1,
    /// counting every post the server received in the round, refused ones included) came in
    /// one piece with the message after them, so they carry that message's receive time.
    /// On the board they have the same `t_us` as that message's entry (so they are never
    /// kept), but not their own time: the poster leaves them out of its self-check and
    /// recognition.
    Coalesced {
        post: u32,
        count: u32,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Stable error codes (docs/protocol.md §8). Clients match on them, never on the text: every
/// refusal a client reacts to has a code of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    UnknownType,
    BadField,
    NoSuchRoom,
    RoomFull,
    NotAllowed,
    RateLimited,
    TooLarge,
    LegacyDisabled,
    /// `ready` or `confirm` while a round is running.
    RoundRunning,
    /// `confirm` after the last round was dropped (desync): `ready` is due.
    RoundDropped,
    /// `confirm` made before a drop of this round reached the poster: confirm again.
    StaleConfirm,
    /// `done` before `t_end`: send it again once `t_end` has passed.
    TooEarly,
    /// `post` or `done` with no round running.
    NoRound,
    /// `post` after the poster's own `done`, or outside [t_start − G, t_end + G].
    OutsideWindow,
    /// `post` above the poster's token bucket.
    TooManyPosts,
    /// `post` onto a round's board that is full.
    BoardFull,
    /// `create` above this address's rate of new rooms (`--rooms-per-minute`).
    TooManyRooms,
    /// `join` as an observer of a room that has `max_observers` of them.
    TooManyObservers,
    /// `create` with a code that names a room this server holds: draw another.
    RoomTaken,
    /// `create` or `join` naming another room than the upgrade's `?room=`.
    WrongRoom,
    /// `create` while the server drains before it stops: draw a new code (it may route to
    /// another server) or try again later.
    Draining,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadField => "bad_field",
            ErrorCode::NoSuchRoom => "no_such_room",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::NotAllowed => "not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::LegacyDisabled => "legacy_disabled",
            ErrorCode::RoundRunning => "round_running",
            ErrorCode::RoundDropped => "round_dropped",
            ErrorCode::StaleConfirm => "stale_confirm",
            ErrorCode::TooEarly => "too_early",
            ErrorCode::NoRound => "no_round",
            ErrorCode::OutsideWindow => "outside_window",
            ErrorCode::TooManyPosts => "too_many_posts",
            ErrorCode::BoardFull => "board_full",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::TooManyObservers => "too_many_observers",
            ErrorCode::RoomTaken => "room_taken",
            ErrorCode::WrongRoom => "wrong_room",
            ErrorCode::Draining => "draining",
        }
    }
}

/// A refusal: the code and a sentence a person can act on.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtoError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtoError { code, message: message.into() }
    }
    pub fn to_msg(&self) -> ServerMsg {
        ServerMsg::Error { code: self.code, message: self.message.clone() }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// A post as clients write it (see `parse_client`).
pub const POST_A_TEXT: &str = r#"{"type":"post","label":"A"}"#;
pub const POST_B_TEXT: &str = r#"{"type":"post","label":"B"}"#;

const CLIENT_TYPES: &[&str] = &[
    "create", "join", "ping", "ready", "post", "done", "board", "reset", "confirm", "drop", "abort",
    "leave",
];

/// Parses one client text frame, telling apart bad JSON, an unknown type and a bad field.
pub fn parse_client(text: &str) -> Result<ClientMsg, ProtoError> {
    // Fastest path: a post exactly as `sgp pair` and `JSON.stringify` write it, the one
    // message that comes by the thousand. serde's internally tagged enum buffers every
    // field before it can pick the variant; these exact texts need no parser. Any other
    // spelling (spaces, key order, escapes) takes the general path below, same result.
    match text {
        POST_A_TEXT => return Ok(ClientMsg::Post { label: Label::A }),
        POST_B_TEXT => return Ok(ClientMsg::Post { label: Label::B }),
        _ => {}
    }
    // Fast path: a well-formed message parses in one go.
    let strict = match serde_json::from_str::<ClientMsg>(text) {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ProtoError::new(ErrorCode::BadJson, format!("not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ProtoError::new(ErrorCode::BadJson, "a message must be a JSON object"))?;
    let ty = match obj.get("type") {
        None => return Err(ProtoError::new(ErrorCode::BadField, "missing field `type`")),
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(_) => return Err(ProtoError::new(ErrorCode::BadField, "field `type` must be a string")),
    };
    if !CLIENT_TYPES.contains(&ty) {
        let shown: String = ty.chars().take(40).collect();
        return Err(ProtoError::new(
            ErrorCode::UnknownType,
            format!("unknown message type {shown:?}; expected one of {}", CLIENT_TYPES.join(", ")),
        ));
    }
    // The strict parse failed, so the message is refused even if its `Value` form (which
    // keeps the last of duplicate keys) would pass: say why, from whichever parse knows.
    let ty = ty.to_string();
    let e = serde_json::from_value::<ClientMsg>(value).err().map_or(strict.to_string(), |e| e.to_string());
    let msg = format!("{ty}: {e}");
    Err(ProtoError::new(ErrorCode::BadField, clip(&msg, 300)))
}

/// At most `max` bytes of `s`, cut at a character boundary: error messages quote what the
/// client sent, and a cut inside a multi-byte character would panic.
pub fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Serialises a server message (never fails: every field is a plain value).
pub fn to_text(msg: &ServerMsg) -> String {
    match msg {
        ServerMsg::Closed { session, round, board } => board_text("closed", Some(session), *round, "board", board),
        ServerMsg::Board { session, round, entries } => board_text("board", session.as_deref(), *round, "entries", entries),
        _ => serde_json::to_string(msg).unwrap_or_else(|_| String::from("{\"type\":\"error\"}")),
    }
}

/// What serde writes for a message that carries a board, written by hand: boards are the
/// one long thing the server sends (every post is written once), and serde's derived
/// code spent some 400 instructions per entry. `to_text_matches_serde` holds the bytes equal.
pub fn board_text(ty: &str, session: Option<&str>, round: u32, field: &str, entries: &[Entry]) -> String {
    let mut s: Vec<u8> = Vec::with_capacity(80 + entries.len() * 44);
    s.extend_from_slice(b"{\"type\":\"");
    s.extend_from_slice(ty.as_bytes());
    s.extend_from_slice(b"\",\"session\":");
    match session {
        Some(x) => s.extend_from_slice(serde_json::to_string(x).unwrap_or_default().as_bytes()),
        None => s.extend_from_slice(b"null"),
    }
    s.extend_from_slice(b",\"round\":");
    push_int(&mut s, round.into());
    s.extend_from_slice(b",\"");
    s.extend_from_slice(field.as_bytes());
    s.extend_from_slice(b"\":[");
    for (k, e) in entries.iter().enumerate() {
        if k > 0 {
            s.push(b',');
        }
        s.extend_from_slice(b"{\"i\":");
        push_int(&mut s, e.i.into());
        s.extend_from_slice(b",\"t_us\":");
        push_int(&mut s, e.t_us);
        s.extend_from_slice(match e.label {
            Label::A => b",\"label\":\"A\"}",
            Label::B => b",\"label\":\"B\"}",
        });
    }
    s.extend_from_slice(b"]}");
    // Every piece is ASCII or came from serde_json: the check cannot fail.
    String::from_utf8(s).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
}

/// An integer in decimal, as JSON writes it, two digits at a time.
fn push_int(s: &mut Vec<u8>, v: i64) {
    const PAIRS: [u8; 200] = {
        let mut t = [0u8; 200];
        let mut i = 0;
        while i < 100 {
            t[2 * i] = b'0' + (i / 10) as u8;
            t[2 * i + 1] = b'0' + (i % 10) as u8;
            i += 1;
        }
        t
    };
    let mut buf = [0u8; 20];
    let (mut n, mut k) = (v.unsigned_abs(), buf.len());
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        k -= 2;
        buf[k..k + 2].copy_from_slice(&PAIRS[d..d + 2]);
    }
    if n >= 10 {
        k -= 2;
        buf[k..k + 2].copy_from_slice(&PAIRS[n as usize * 2..n as usize * 2 + 2]);
    } else {
        k -= 1;
        buf[k] = b'0' + n as u8;
    }
    if v < 0 {
        s.push(b'-');
    }
    s.extend_from_slice(&buf[k..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse_client(text).unwrap_err().code
    }

    #[test]
    fn parses_every_client_message() {
        assert_eq!(parse_client(r#"{"type":"ready"}"#).unwrap(), ClientMsg::Ready { ask: None });
        assert_eq!(
            parse_client(r#"{"type":"post","label":"B"}"#).unwrap(),
            ClientMsg::Post { label: Label::B }
        );
        assert_eq!(
            parse_client(r#"{"type":"join","room":"x","as":"observer"}"#).unwrap(),
            ClientMsg::Join { room: "x".into(), as_: Some(JoinAs::Observer) }
        );
        assert_eq!(
            parse_client(r#"{"type":"create","params":{"tolerance_ms":0.5}}"#).unwrap(),
            ClientMsg::Create { room: None, params: Some(ParamsIn { tolerance_ms: Some(0.5), ..Default::default() }) }
        );
        assert_eq!(parse_client(r#"{"type":"create"}"#).unwrap(), ClientMsg::Create { room: None, params: None });
        assert_eq!(parse_client(r#"{"type":"ping","t0_us":5}"#).unwrap(), ClientMsg::Ping { t0_us: 5 });
    }

    #[test]
    fn post_fast_path_agrees_with_serde() {
        for (text, label) in [(POST_A_TEXT, Label::A), (POST_B_TEXT, Label::B)] {
            assert_eq!(serde_json::from_str::<ClientMsg>(text).unwrap(), ClientMsg::Post { label });
            assert_eq!(parse_client(text).unwrap(), ClientMsg::Post { label });
            assert_eq!(serde_json::to_string(&ClientMsg::Post { label }).unwrap(), text);
        }
        // Other spellings of the same message take the general path to the same answer.
        for text in [r#"{"label":"A","type":"post"}"#, r#"{ "type": "post", "label": "A" }"#, r#"{"type":"post","label":"\u0041"}"#] {
            assert_eq!(parse_client(text).unwrap(), ClientMsg::Post { label: Label::A }, "{text}");
        }
        // Near misses are still refused as before.
        assert_eq!(code(r#"{"type":"post","label":"a"}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"post","label":"A"} x"#), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"post","label":"A","label":"A"}"#), ErrorCode::BadField);
    }

    #[test]
    fn tells_bad_input_apart() {
        assert_eq!(code("{"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code("\"ready\""), ErrorCode::BadJson);
        assert_eq!(code(r#"{"label":"A"}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"shout"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"post"}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"post","label":"C"}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"post","label":"A","extra":1}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"ready","extra":1}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"ping","t0_us":1.5}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"ping","t0_us":1e30}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"create","params":{"speed":3}}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"join","room":"x","as":"alice"}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"post","label":"A","label":"B"}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"ready","type":"post","label":"A"}"#), ErrorCode::BadField);
    }

    #[test]
    fn unknown_type_message_is_bounded() {
        let long = "x".repeat(10_000);
        let e = parse_client(&format!(r#"{{"type":"{long}"}}"#)).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownType);
        assert!(e.message.len() < 300);
    }

    #[test]
    fn server_messages_round_trip() {
        let m = ServerMsg::Confirmed { matched: true };
        let t = to_text(&m);
        assert_eq!(t, r#"{"type":"confirmed","match":true}"#);
        assert_eq!(serde_json::from_str::<ServerMsg>(&t).unwrap(), m);
        let e = ServerMsg::Error { code: ErrorCode::RoomFull, message: "full".into() };
        assert_eq!(to_text(&e), r#"{"type":"error","code":"room_full","message":"full"}"#);
    }

    #[test]
    fn to_text_matches_serde() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut entries: Vec<Entry> = (0..200)
            .map(|k| Entry { i: k, t_us: rng.i64(..), label: if rng.bool() { Label::A } else { Label::B } })
            .collect();
        entries.extend([
            Entry { i: u32::MAX, t_us: i64::MIN, label: Label::A },
            Entry { i: 0, t_us: i64::MAX, label: Label::B },
            Entry { i: 7, t_us: 0, label: Label::A },
            Entry { i: 8, t_us: -1, label: Label::B },
        ]);
        for board in [vec![], entries[..1].to_vec(), entries.clone()] {
            for session in ["0123456789abcdef0123456789abcdef", "", "quote\" back\\ \u{1} é"] {
                for round in [0, 1, u32::MAX] {
                    let msgs = [
                        ServerMsg::Closed { session: session.into(), round, board: board.clone() },
                        ServerMsg::Board { session: Some(session.into()), round, entries: board.clone() },
                        ServerMsg::Board { session: None, round, entries: board.clone() },
                    ];
                    for m in msgs {
                        assert_eq!(to_text(&m), serde_json::to_string(&m).unwrap());
                    }
                }
            }
        }
    }

    #[test]
    fn params_defaults_follow_tolerance() {
        let p = Params::resolve(&ParamsIn { tolerance_ms: Some(0.25), ..Default::default() }).unwrap();
        assert_eq!(p.rate_hz, 500.0);
        assert_eq!(p.guard_ms, 5.0);
        assert_eq!((p.target_bits, p.tag_bits), (256, 32));
        // A browser's 2 ms: 20τ; the 2 ms floor below 0.1 ms.
        let web = Params::resolve(&ParamsIn { tolerance_ms: Some(2.0), ..Default::default() }).unwrap();
        assert_eq!((web.rate_hz, web.guard_ms), (62.5, 40.0));
        let fine = Params::resolve(&ParamsIn { tolerance_ms: Some(0.05), ..Default::default() }).unwrap();
        assert_eq!(fine.guard_ms, 2.0);
        let set = Params::resolve(&ParamsIn { tolerance_ms: Some(2.0), guard_ms: Some(40.0), ..Default::default() }).unwrap();
        assert_eq!(set.guard_ms, 40.0, "a guard the creator sets is kept");
        // ~357 kept entries at ~368/s, 25 % margin, over three rounds, two guards: ~0.42 s.
        assert!((380..480).contains(&p.duration_ms), "{}", p.duration_ms);
    }

    #[test]
    fn params_refuse_hostile_values() {
        for bad in [
            ParamsIn { tolerance_ms: Some(0.0), ..Default::default() },
            ParamsIn { tolerance_ms: Some(f64::MAX), ..Default::default() },
            ParamsIn { rate_hz: Some(-1.0), ..Default::default() },
            ParamsIn { rate_hz: Some(1e9), ..Default::default() },
            ParamsIn { tag_bits: Some(12), ..Default::default() },
            ParamsIn { target_bits: Some(0), ..Default::default() },
            ParamsIn { duration_ms: Some(5), ..Default::default() },
            ParamsIn { guard_ms: Some(600.0), duration_ms: Some(1000), ..Default::default() },
            ParamsIn { rate_hz: Some(10_000.0), duration_ms: Some(120_000), ..Default::default() },
        ] {
            assert!(Params::resolve(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tuned_parameters_keep_the_kept_entries_per_round() {
        let own = Params::resolve(&ParamsIn { tolerance_ms: Some(0.1), ..Default::default() }).unwrap();
        assert_eq!(own.tuned(&Ask::new(0.1, 1)).unwrap(), own, "the same ask is the room's own");
        // Expected kept entries in a round's posting window: λ·e^(−2gλ)·(duration − 2G).
        let kept = |p: &Params| {
            let lambda = 2.0 * p.rate_hz;
            lambda * (-4.0 * p.tolerance_ms / 1000.0 * lambda).exp() * (f64::from(p.duration_ms) - 2.0 * p.guard_ms) / 1000.0
        };
        for (tol, div) in [(0.2, 1), (1.0, 1), (0.1, 8), (3.2, 4), (0.1, 64), (5.0, 64)] {
            let p = own.tuned(&Ask::new(tol, div)).unwrap();
            assert_eq!(p.tolerance_ms, tol);
            assert!((p.rate_hz - own.rate_hz * 0.1 / tol / f64::from(div)).abs() < 1e-9, "{p:?}");
            assert!(p.guard_ms >= own.guard_ms.min(2.0) && p.guard_ms * 4.0 <= f64::from(p.duration_ms), "{p:?}");
            let ratio = kept(&p) / kept(&own);
            if p.duration_ms == 120_000 {
                assert!(ratio < 1.0, "at the 120 s cap a round keeps fewer ({p:?})");
            } else {
                assert!((0.99..1.02).contains(&ratio), "{tol} ms ÷{div}: {ratio} of the room's kept entries ({p:?})");
            }
            assert_eq!((p.target_bits, p.tag_bits), (own.target_bits, own.tag_bits));
        }
    }
}

//! Rooms, roles and rounds (docs/protocol.md §3, §8): the engine, a state machine with no
//! I/O and no clock. It owns the rooms and who sits where, and routes each message to its
//! room; what a message does to a room's phase is `phase.rs`'s. Time comes in as `now` (µs,
//! server clock); replies go out as `Out` values that the server delivers. The board keeps
//! receive times and labels only: who posted an entry is never stored, so it cannot leak
//! through a log, a message or a memory dump.
//!
//! - `phase.rs`: one room and its phase as a type, one function per transition.
//! - `limits.rs`: timings, limits and the token bucket.
//! - `fields.rs`: room codes and the checks on a client's fields.

mod fields;
mod limits;
mod phase;

pub use fields::{make_code, normalize_code, MAX_SPANS};
pub use limits::{Bucket, Limits};

use crate::protocol::{ClientMsg, Entry, ErrorCode, JoinAs, Params, ParamsIn, PeerEvent, ProtoError, Role, ServerMsg};
use phase::{Env, Room};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub type ConnId = u64;

/// A multiply-rotate hash (rustc's Fx) for the server's maps, in place of SipHash, which
/// was a tenth of the work of a post. It does not resist chosen keys, and need not: every
/// key these maps hold is the server's own (connection ids count up, room codes come from
/// the OS generator), so no client can crowd a bucket; a client's lookup costs one probe.
#[derive(Clone, Copy, Default)]
pub struct FastHasher(u64);

impl FastHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    fn add(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(Self::K);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        // The product's best bits are its high ones; the table indexes with the low ones.
        self.0.rotate_left(26)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, x: u8) {
        self.add(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.add(x);
    }
    fn write_usize(&mut self, x: usize) {
        self.add(x as u64);
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A message and the connections it goes to (serialised once by the server).
#[derive(Clone, Debug, PartialEq)]
pub struct Out {
    pub to: Vec<ConnId>,
    pub msg: ServerMsg,
}

fn seat_index(role: Role) -> Option<usize> {
    match role {
        Role::Alice => Some(0),
        Role::Bob => Some(1),
        Role::Observer => None,
    }
}

const ROLES: [Role; 2] = [Role::Alice, Role::Bob];

/// All rooms of a server.
pub struct Engine {
    rooms: FastMap<String, Room>,
    seats: FastMap<ConnId, (String, Role)>,
    random: Box<dyn FnMut(&mut [u8])>,
    limits: Limits,
    /// Each connection's allowance of `board` requests.
    board_asks: FastMap<ConnId, Bucket>,
    /// The last board version handed out.
    versions: u64,
    /// Rooms removed since the last `take_removed`, and why (`empty` or `idle`).
    removed: Vec<(String, &'static str)>,
}

/// A board as a `board` request sees it, borrowed from the engine. Equal `version`s mean
/// equal boards (in any room), so the server may answer from a copy it serialised before.
pub struct BoardView<'a> {
    pub version: u64,
    pub session: Option<&'a str>,
    pub round: u32,
    pub entries: &'a [Entry],
}

fn err(to: ConnId, code: ErrorCode, message: impl Into<String>) -> Vec<Out> {
    vec![Out { to: vec![to], msg: ProtoError::new(code, message).to_msg() }]
}

impl Engine {
    /// `random` fills buffers with unpredictable bytes (the OS generator in the server,
    /// a seeded one in tests); room codes and session nonces come from it.
    pub fn new(limits: Limits, random: Box<dyn FnMut(&mut [u8])>) -> Engine {
        Engine {
            rooms: FastMap::default(),
            seats: FastMap::default(),
            random,
            limits,
            board_asks: FastMap::default(),
            versions: 0,
            removed: Vec::new(),
        }
    }

    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Whether a room with this code (canonical form) exists.
    pub fn has_room(&self, code: &str) -> bool {
        self.rooms.contains_key(code)
    }

    /// Rooms with a session running, or a poster's `ready` waiting for its peer: what a
    /// draining server waits for (a room at rest, its key made or not yet asked for, is not).
    pub fn busy_rooms(&self) -> usize {
        self.rooms.values().filter(|r| r.is_busy()).count()
    }

    /// The rooms removed since the last call (their codes, and `empty` or `idle`), for the
    /// server's log and counters. A caller that never asks keeps a growing list.
    pub fn take_removed(&mut self) -> Vec<(String, &'static str)> {
        std::mem::take(&mut self.removed)
    }

    /// The role a connection holds, if any (for tests and the server's bookkeeping).
    pub fn seat(&self, conn: ConnId) -> Option<(&str, Role)> {
        self.seats.get(&conn).map(|(c, r)| (c.as_str(), *r))
    }

    /// One message from a connection, received at `now`.
    pub fn handle(&mut self, conn: ConnId, msg: ClientMsg, now: i64) -> Vec<Out> {
        match msg {
            ClientMsg::Create { room, params } => self.create(conn, room.as_deref(), params.unwrap_or_default(), now),
            ClientMsg::Join { room, as_ } => self.join(conn, &room, as_, now),
            ClientMsg::Leave {} => {
                if !self.seats.contains_key(&conn) {
                    return err(conn, ErrorCode::NotAllowed, "leave: not in a room");
                }
                self.leave(conn)
            }
            // Clock sync is answered by the connection itself; nothing to do here.
            ClientMsg::Ping { .. } => Vec::new(),
            other => self.in_room(conn, other, now),
        }
    }

    /// The connection is gone: same as `leave`.
    pub fn disconnect(&mut self, conn: ConnId) -> Vec<Out> {
        self.leave(conn)
    }

    /// `create`: a room with the creator's code (`room`), or with one drawn here.
    fn create(&mut self, conn: ConnId, room: Option<&str>, params: ParamsIn, now: i64) -> Vec<Out> {
        if let Some((code, _)) = self.seats.get(&conn) {
            return err(conn, ErrorCode::NotAllowed, format!("already in room {code}; send leave first"));
        }
        let params = match Params::resolve(&params) {
            Ok(p) => p,
            Err(e) => return err(conn, ErrorCode::BadField, e),
        };
        if self.rooms.len() >= self.limits.max_rooms {
            return err(conn, ErrorCode::NotAllowed, "the server has as many rooms as it takes; try later");
        }
        let code = match room {
            Some(r) => match normalize_code(r) {
                None => return err(conn, ErrorCode::BadField, "create: field `room` is not a room code (ABCDE-FGHJK)"),
                Some(c) if self.rooms.contains_key(&c) => return err(conn, ErrorCode::RoomTaken, format!("room {c} exists; draw another code")),
                Some(c) => c,
            },
            None => loop {
                let c = make_code(&mut *self.random);
                if !self.rooms.contains_key(&c) {
                    break c;
                }
            },
        };
        let room = Room::new(params.clone(), conn, now);
        let peers = room.peers();
        self.rooms.insert(code.clone(), room);
        self.seats.insert(conn, (code.clone(), Role::Alice));
        vec![Out { to: vec![conn], msg: ServerMsg::Joined { room: code, role: Role::Alice, params, peers } }]
    }

    fn join(&mut self, conn: ConnId, room: &str, as_: Option<JoinAs>, now: i64) -> Vec<Out> {
        if let Some((code, _)) = self.seats.get(&conn) {
            return err(conn, ErrorCode::NotAllowed, format!("already in room {code}; send leave first"));
        }
        if room.len() > 64 {
            return err(conn, ErrorCode::BadField, "join: field `room` is too long for a room code");
        }
        let Some(code) = normalize_code(room) else {
            return err(conn, ErrorCode::NoSuchRoom, "no such room: codes look like ABCDE-FGHJK");
        };
        let Some(r) = self.rooms.get_mut(&code) else {
            return err(conn, ErrorCode::NoSuchRoom, format!("no such room {code}"));
        };
        let role = if as_ == Some(JoinAs::Observer) {
            if r.observers.len() >= self.limits.max_observers {
                let n = self.limits.max_observers;
                return err(conn, ErrorCode::TooManyObservers, format!("room {code} has {n} observers already, the most one room takes"));
            }
            r.observers.push(conn);
            Role::Observer
        } else if let Some(k) = r.posters.iter().position(Option::is_none) {
            r.posters[k] = Some(conn);
            r.turn_us[k] = None; // a new poster: its way to the server is not yet known
            r.asks[k] = None;
            ROLES[k]
        } else {
            return err(conn, ErrorCode::RoomFull, format!("room {code} has both posters; join as an observer to watch"));
        };
        r.last_activity_us = now;
        self.seats.insert(conn, (code.clone(), role));
        let others = r.others(conn);
        let mut out = vec![Out {
            to: vec![conn],
            msg: ServerMsg::Joined { room: code, role, params: r.params.clone(), peers: r.peers() },
        }];
        if !others.is_empty() {
            out.push(Out { to: others, msg: ServerMsg::Peer { event: PeerEvent::Joined, role } });
        }
        out
    }

    fn leave(&mut self, conn: ConnId) -> Vec<Out> {
        self.board_asks.remove(&conn);
        let Some((code, role)) = self.seats.remove(&conn) else {
            return Vec::new();
        };
        let Some(r) = self.rooms.get_mut(&code) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match seat_index(role) {
            Some(k) => {
                r.posters[k] = None;
                r.turn_us[k] = None;
                r.asks[k] = None;
            }
            None => r.observers.retain(|&c| c != conn),
        }
        if r.is_empty() {
            self.rooms.remove(&code);
            self.removed.push((code, "empty"));
            return out;
        }
        let members = r.members();
        out.push(Out { to: members.clone(), msg: ServerMsg::Peer { event: PeerEvent::Left, role } });
        if let Some(k) = seat_index(role) {
            out.extend(r.poster_left(k, members));
        }
        out
    }

    fn in_room(&mut self, conn: ConnId, msg: ClientMsg, now: i64) -> Vec<Out> {
        let Some((code, role)) = self.seats.get(&conn) else {
            return err(conn, ErrorCode::NotAllowed, "join or create a room first");
        };
        let role = *role;
        let Some(r) = self.rooms.get_mut(code) else {
            return err(conn, ErrorCode::NotAllowed, "join or create a room first");
        };
        r.last_activity_us = now;
        if let ClientMsg::Board {} = msg {
            return match self.board(conn, now) {
                Ok(b) => vec![Out {
                    to: vec![conn],
                    msg: ServerMsg::Board { session: b.session.map(str::to_string), round: b.round, entries: b.entries.to_vec() },
                }],
                Err(out) => out,
            };
        }
        let Some(k) = seat_index(role) else {
            return err(conn, ErrorCode::NotAllowed, "observers read the board; only alice and bob post");
        };
        let mut env = Env { limits: &self.limits, versions: &mut self.versions, random: &mut *self.random };
        match msg {
            ClientMsg::Post { label } => r.post(k, conn, label, now, &mut env),
            ClientMsg::Ready { ask } => r.ready(k, conn, ask, now, &mut env),
            ClientMsg::Confirm { tag, drops } => r.confirm(k, conn, &tag, drops, now, &mut env),
            ClientMsg::Done {} => r.done(k, conn, now),
            ClientMsg::Drop { spans } => r.drop_spans(k, conn, spans),
            ClientMsg::Abort { reason } => r.abort(conn, reason),
            ClientMsg::Reset {} => r.reset(&mut env),
            // Handled by `handle` and above.
            ClientMsg::Create { .. } | ClientMsg::Join { .. } | ClientMsg::Leave {} | ClientMsg::Ping { .. } | ClientMsg::Board {} => {
                Vec::new()
            }
        }
    }

    /// Answers a `board` request from `conn` at `now`: the room's current board, or the
    /// error to send instead (not in a room, or asking faster than `Limits::board_per_sec`).
    pub fn board(&mut self, conn: ConnId, now: i64) -> Result<BoardView<'_>, Vec<Out>> {
        let Some((code, _)) = self.seats.get(&conn) else {
            return Err(err(conn, ErrorCode::NotAllowed, "join or create a room first"));
        };
        let Some(r) = self.rooms.get_mut(code) else {
            return Err(err(conn, ErrorCode::NotAllowed, "join or create a room first"));
        };
        r.last_activity_us = now;
        let (burst, per_sec) = (self.limits.board_burst, self.limits.board_per_sec);
        if !self.board_asks.entry(conn).or_insert(Bucket::full(burst, now)).take(now, burst, per_sec) {
            return Err(err(
                conn,
                ErrorCode::RateLimited,
                format!("board: at most {} requests a second; the board also comes with every `closed`", self.limits.board_per_sec),
            ));
        }
        let (session, round) = r.session_view();
        Ok(BoardView { version: r.board_version, session, round, entries: &r.board })
    }

    /// Tells `conn`, privately, that `count` of its posts came in one piece with the frame
    /// after them (see `ServerMsg::Coalesced`): the run that ends `skip` posts before its
    /// latest one. Nothing if `conn` is not posting in a running round.
    pub fn tell_coalesced(&mut self, conn: ConnId, skip: u32, count: u32) -> Vec<Out> {
        let Some((code, role)) = self.seats.get(&conn) else { return Vec::new() };
        let (Some(k), Some(r)) = (seat_index(*role), self.rooms.get(code)) else { return Vec::new() };
        r.coalesced(k, conn, skip, count)
    }

    /// Closes rounds whose grace has passed and removes idle rooms.
    pub fn on_timeout(&mut self, now: i64) -> Vec<Out> {
        let mut out = Vec::new();
        let mut idle = Vec::new();
        for (code, r) in self.rooms.iter_mut() {
            out.extend(r.on_timeout(now, &self.limits));
            if now - r.last_activity_us >= self.limits.idle_room_us {
                idle.push(code.clone());
            }
        }
        for code in idle {
            if let Some(r) = self.rooms.remove(&code) {
                let members = r.members();
                for c in &members {
                    self.seats.remove(c);
                    self.board_asks.remove(c);
                }
                out.push(Out { to: members, msg: ServerMsg::Aborted { reason: "idle".into() } });
                self.removed.push((code, "idle"));
            }
        }
        out
    }

    /// The earliest time at which `on_timeout` has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        self.rooms.values().map(|r| r.deadline(&self.limits)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Label, ParamsIn, Peers};

    const T0: i64 = 1_764_000_000_000_000;

    fn engine() -> Engine {
        let mut rng = fastrand::Rng::with_seed(7);
        Engine::new(Limits::default(), Box::new(move |b: &mut [u8]| rng.fill(b)))
    }

    fn params() -> ParamsIn {
        ParamsIn { tolerance_ms: Some(1.0), duration_ms: Some(1000), ..Default::default() }
    }

    fn joined_code(out: &[Out]) -> String {
        match &out[0].msg {
            ServerMsg::Joined { room, .. } => room.clone(),
            m => panic!("expected joined, got {m:?}"),
        }
    }

    fn error_code(out: &[Out]) -> ErrorCode {
        match &out[0].msg {
            ServerMsg::Error { code, .. } => *code,
            m => panic!("expected an error, got {m:?}"),
        }
    }

    #[test]
    fn a_creator_may_bring_its_own_code() {
        let mut e = engine();
        let create = |room: &str| ClientMsg::Create { room: Some(room.into()), params: None };
        assert_eq!(joined_code(&e.handle(1, create("abcde fghjk"), T0)), "ABCDE-FGHJK");
        assert!(e.has_room("ABCDE-FGHJK"));
        assert_eq!(error_code(&e.handle(2, create("ABCDE-FGHJK"), T0)), ErrorCode::RoomTaken);
        for bad in ["", "ABCDE-FGHJ", "ABCDU-FGHJK", "ABCDE-FGHJK-0", &"A".repeat(70)] {
            assert_eq!(error_code(&e.handle(2, create(bad), T0)), ErrorCode::BadField, "{bad:?}");
        }
        // The refused creator has no seat; the room's creator still sits alone.
        assert_eq!(e.seat(2), None);
        assert_eq!(e.rooms(), 1);
        let out = e.handle(2, ClientMsg::Join { room: "ABCDE-FGHJK".into(), as_: None }, T0);
        assert!(matches!(out[0].msg, ServerMsg::Joined { role: Role::Bob, .. }));
    }

    #[test]
    fn a_room_is_busy_while_a_session_runs_or_a_ready_waits() {
        let mut e = engine();
        room_with_three(&mut e);
        assert_eq!(e.busy_rooms(), 0);
        e.handle(1, ClientMsg::Ready { ask: None }, T0);
        assert_eq!(e.busy_rooms(), 1, "alice's ready waits for bob");
        e.handle(2, ClientMsg::Reset {}, T0);
        e.handle(1, ClientMsg::Leave {}, T0);
        assert_eq!(e.busy_rooms(), 0);
    }

    /// Alice = 1, Bob = 2, an observer = 3; returns the room code.
    fn room_with_three(e: &mut Engine) -> String {
        let code = joined_code(&e.handle(1, ClientMsg::Create { room: None, params: Some(params()) }, T0));
        let out = e.handle(2, ClientMsg::Join { room: code.to_lowercase(), as_: None }, T0);
        assert!(matches!(out[0].msg, ServerMsg::Joined { role: Role::Bob, .. }));
        assert_eq!(out[1], Out { to: vec![1], msg: ServerMsg::Peer { event: PeerEvent::Joined, role: Role::Bob } });
        let out = e.handle(3, ClientMsg::Join { room: code.clone(), as_: Some(JoinAs::Observer) }, T0);
        assert!(matches!(out[0].msg, ServerMsg::Joined { role: Role::Observer, .. }));
        code
    }

    fn start(e: &mut Engine, now: i64) -> (i64, i64) {
        assert!(e.handle(1, ClientMsg::Ready { ask: None }, now).is_empty());
        let out = e.handle(2, ClientMsg::Ready { ask: None }, now);
        match &out[0].msg {
            ServerMsg::Start { t_start_us, t_end_us, .. } => {
                assert_eq!(out[0].to, vec![1, 2, 3]);
                (*t_start_us, *t_end_us)
            }
            m => panic!("expected start, got {m:?}"),
        }
    }

    #[test]
    fn fast_hash_spreads_ids_and_codes() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<FastHasher>::default();
        // The low bits index the table: ids counting up and random codes must spread over them.
        let ids: std::collections::HashSet<u64> = (1u64..=1024).map(|id| b.hash_one(id) & 1023).collect();
        let mut rng = fastrand::Rng::with_seed(9);
        let codes: std::collections::HashSet<u64> =
            (0..1024).map(|_| b.hash_one(make_code(&mut |x: &mut [u8]| rng.fill(x))) & 1023).collect();
        // 1024 random draws into 1024 slots fill about 647 of them.
        assert!(ids.len() > 550 && codes.len() > 550, "{} {}", ids.len(), codes.len());
        let mut m: FastMap<String, u32> = FastMap::default();
        m.insert("ABCDE-FGHJK".into(), 1);
        assert_eq!(m.get("ABCDE-FGHJK"), Some(&1));
        assert_eq!(m.get("ABCDE-FGHJM"), None);
    }

    #[test]
    fn codes_are_readable_and_normalised() {
        let mut rng = fastrand::Rng::with_seed(1);
        let code = make_code(&mut |b: &mut [u8]| rng.fill(b));
        assert_eq!(code.len(), 11);
        assert_eq!(normalize_code(&code), Some(code.clone()));
        assert_eq!(normalize_code(&code.to_lowercase().replace('-', " ")), Some(code.clone()));
        assert_eq!(normalize_code("abcde-fghjo"), Some("ABCDE-FGHJ0".into()));
        assert_eq!(normalize_code("ilabc-12345"), Some("11ABC-12345".into()));
        assert_eq!(normalize_code("ABCDE-FGHJ"), None);
        assert_eq!(normalize_code("ABCDE-FGHJKM"), None);
        assert_eq!(normalize_code("ABCDE-FGHJU"), None);
        assert_eq!(normalize_code("ÀBCDE-FGHJK"), None);
    }

    #[test]
    fn full_session_reaches_confirmed() {
        let mut e = engine();
        room_with_three(&mut e);
        let (ts, te) = start(&mut e, T0);
        assert_eq!(te - ts, 1_000_000);
        assert!(e.handle(1, ClientMsg::Post { label: Label::A }, ts + 10).is_empty());
        assert!(e.handle(2, ClientMsg::Post { label: Label::A }, ts + 500).is_empty());
        assert!(e.handle(1, ClientMsg::Done {}, te + 1).is_empty());
        let out = e.handle(2, ClientMsg::Done {}, te + 2);
        let ServerMsg::Closed { board, round, .. } = &out[0].msg else { panic!("{out:?}") };
        assert_eq!(*round, 1);
        assert_eq!(out[0].to, vec![1, 2, 3]);
        assert_eq!(
            board,
            &vec![Entry { i: 0, t_us: ts + 10, label: Label::A }, Entry { i: 1, t_us: ts + 500, label: Label::A }]
        );
        assert!(e.handle(1, ClientMsg::Confirm { tag: "DEADBEEF".into(), drops: 0 }, te + 3).is_empty());
        let out = e.handle(2, ClientMsg::Confirm { tag: "deadbeef".into(), drops: 0 }, te + 4);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].msg, ServerMsg::Confirmed { matched: true });
        assert_eq!(out[0].msg, ServerMsg::Confirm { role: Role::Alice, tag: "deadbeef".into() });
        // A new session starts with a new nonce at round 1.
        let out = e.handle(1, ClientMsg::Ready { ask: None }, te + 5);
        assert!(out.is_empty());
        let out = e.handle(2, ClientMsg::Ready { ask: None }, te + 5);
        assert!(matches!(out[0].msg, ServerMsg::Start { round: 1, .. }));
    }

    #[test]
    fn confirm_mismatch_and_disagreement() {
        let mut e = engine();
        room_with_three(&mut e);
        let (_, te) = start(&mut e, T0);
        e.handle(1, ClientMsg::Done {}, te);
        e.handle(2, ClientMsg::Done {}, te);
        e.handle(1, ClientMsg::Confirm { tag: "00000000".into(), drops: 0 }, te);
        let out = e.handle(2, ClientMsg::Confirm { tag: "00000001".into(), drops: 0 }, te);
        assert_eq!(out[2].msg, ServerMsg::Confirmed { matched: false });
        // One wants another round, the other confirms: the session is aborted.
        let (_, te) = start(&mut e, te);
        e.handle(1, ClientMsg::Done {}, te);
        e.handle(2, ClientMsg::Done {}, te);
        e.handle(1, ClientMsg::Confirm { tag: "00000000".into(), drops: 0 }, te);
        let out = e.handle(2, ClientMsg::Ready { ask: None }, te);
        assert_eq!(out[0].msg, ServerMsg::Aborted { reason: "disagree".into() });
        // After an abort, a stale confirm is refused.
        assert_eq!(error_code(&e.handle(1, ClientMsg::Confirm { tag: "00000000".into(), drops: 0 }, te)), ErrorCode::NotAllowed);
    }

    #[test]
    fn second_round_continues_the_session() {
        let mut e = engine();
        room_with_three(&mut e);
        let (_, te) = start(&mut e, T0);
        e.handle(1, ClientMsg::Done {}, te);
        let out = e.handle(2, ClientMsg::Done {}, te);
        let ServerMsg::Closed { session: s1, .. } = &out[0].msg else { panic!() };
        let s1 = s1.clone();
        e.handle(1, ClientMsg::Ready { ask: None }, te);
        let out = e.handle(2, ClientMsg::Ready { ask: None }, te);
        let ServerMsg::Start { session, round, .. } = &out[0].msg else { panic!() };
        assert_eq!((session, *round), (&s1, 2));
    }

    /// The lead follows the posters' turnarounds once both are known, within its bounds, and
    /// a dropped round, a new poster or a re-sync in between does not count as one.
    #[test]
    fn lead_follows_the_slower_posters_turnaround() {
        let l = Limits::default();
        let mut e = engine();
        let code = room_with_three(&mut e);
        let begin = |e: &mut Engine, a: i64, b: i64, closed: i64| -> i64 {
            e.handle(1, ClientMsg::Ready { ask: None }, closed + a);
            let out = e.handle(2, ClientMsg::Ready { ask: None }, closed + b);
            let ServerMsg::Start { t_start_us, .. } = &out[0].msg else { panic!("{out:?}") };
            *t_start_us - (closed + a.max(b))
        };
        let close = |e: &mut Engine, te: i64| {
            e.handle(1, ClientMsg::Done {}, te);
            let out = e.handle(2, ClientMsg::Done {}, te);
            assert!(matches!(out[0].msg, ServerMsg::Closed { .. }), "{out:?}");
        };
        // First round: nothing measured yet.
        let (ts, te) = start(&mut e, T0);
        assert_eq!(ts - T0, l.lead_us);
        close(&mut e, te);
        // Turnarounds of 3 and 5 ms (one machine): twice 5 ms is below the floor of 50 ms.
        assert_eq!(begin(&mut e, 3_000, 5_000, te), l.lead_us);
        let te = te + l.lead_us + 5_000 + 1_000_000;
        close(&mut e, te);
        // 30 and 80 ms (a long way to bob): twice the slower one.
        assert_eq!(begin(&mut e, 30_000, 80_000, te), 160_000);
        let te = te + 160_000 + 80_000 + 1_000_000;
        close(&mut e, te);
        // Ten seconds (a stalled client): capped.
        assert_eq!(begin(&mut e, 1_000, 10_000_000, te), l.lead_max_us);
        let te = te + l.lead_max_us + 10_000_000 + 1_000_000;
        close(&mut e, te);
        // A dropped round: the verdicts after it come after a re-sync and are not timed.
        e.handle(1, ClientMsg::Abort { reason: "desync".into() }, te + 1_000);
        assert_eq!(begin(&mut e, 400_000, 400_000, te), l.lead_max_us, "the last turnarounds stand");
        let te = te + l.lead_max_us + 400_000 + 1_000_000;
        close(&mut e, te);
        assert_eq!(begin(&mut e, 2_000, 4_000, te), l.lead_us);
        let te = te + l.lead_us + 4_000 + 1_000_000;
        close(&mut e, te);
        // Bob leaves and someone else takes the seat: back to the default until measured.
        e.handle(2, ClientMsg::Leave {}, te + 1_000);
        let out = e.handle(4, ClientMsg::Join { room: code, as_: None }, te + 2_000);
        assert!(matches!(out[0].msg, ServerMsg::Joined { role: Role::Bob, .. }), "{out:?}");
        e.handle(1, ClientMsg::Ready { ask: None }, te + 3_000);
        let out = e.handle(4, ClientMsg::Ready { ask: None }, te + 3_000);
        let ServerMsg::Start { t_start_us, .. } = &out[0].msg else { panic!("{out:?}") };
        assert_eq!(*t_start_us - (te + 3_000), l.lead_us);
        assert_eq!(l.lead_for([Some(1_000), None], [None, None]), l.lead_us);
    }

    /// Each poster's asked lead is its floor: the larger of the two stands, the turnarounds
    /// still widen it, and a poster that asks for none counts as asking the default.
    #[test]
    fn lead_is_the_larger_asked_and_a_missing_ask_is_the_default() {
        let l = Limits::default();
        let lead = |a: f64| Some(crate::protocol::Ask { lead_ms: Some(a), ..crate::protocol::Ask::new(0.1, 1) });
        let mut e = engine();
        room_with_three(&mut e);
        let begin = |e: &mut Engine, a, b, at: i64| -> i64 {
            e.handle(1, ClientMsg::Ready { ask: a }, at);
            let out = e.handle(2, ClientMsg::Ready { ask: b }, at);
            let ServerMsg::Start { t_start_us, t_end_us, .. } = &out[0].msg else { panic!("{out:?}") };
            e.handle(1, ClientMsg::Done {}, *t_end_us);
            e.handle(2, ClientMsg::Done {}, *t_end_us);
            e.handle(1, ClientMsg::Abort { reason: "desync".into() }, *t_end_us); // not timed
            *t_start_us - at
        };
        assert_eq!(begin(&mut e, lead(10.0), lead(4.0), T0), 10_000, "the larger asked lead");
        assert_eq!(begin(&mut e, lead(10.0), None, T0 + 10_000_000), l.lead_us, "no ask: the default");
        assert_eq!(begin(&mut e, lead(2.0), lead(2.0), T0 + 20_000_000), 2_000);
        assert_eq!(l.lead_for([Some(3_000), Some(9_000)], [Some(2_000), Some(2_000)]), 18_000, "turnarounds widen it");
        assert_eq!(l.lead_for([None, None], [Some(1_000_000), None]), l.lead_max_us);
    }

    #[test]
    fn observer_never_learns_a_sender() {
        let mut e = engine();
        room_with_three(&mut e);
        let (ts, te) = start(&mut e, T0);
        let mut seen = Vec::new();
        for (k, conn) in [1u64, 2, 1, 2, 2].iter().enumerate() {
            let label = if k % 2 == 0 { Label::A } else { Label::B };
            seen.extend(e.handle(*conn, ClientMsg::Post { label }, ts + 1000 * k as i64));
        }
        assert!(seen.is_empty(), "posts have no reply: {seen:?}");
        e.handle(1, ClientMsg::Done {}, te);
        let out = e.handle(2, ClientMsg::Done {}, te);
        // The observer gets the very same message as the posters, and it has no sender in it.
        assert_eq!(out.len(), 1);
        assert!(out[0].to.contains(&3) && out[0].to.contains(&1));
        let text = crate::protocol::to_text(&out[0].msg);
        assert!(!text.contains("alice") && !text.contains("bob") && !text.contains("role"), "{text}");
        let board = e.handle(3, ClientMsg::Board {}, te);
        let text = crate::protocol::to_text(&board[0].msg);
        assert!(!text.contains("alice") && !text.contains("bob"), "{text}");
    }

    #[test]
    fn room_full_and_observers() {
        let mut e = engine();
        let code = room_with_three(&mut e);
        assert_eq!(error_code(&e.handle(4, ClientMsg::Join { room: code.clone(), as_: None }, T0)), ErrorCode::RoomFull);
        let out = e.handle(4, ClientMsg::Join { room: code.clone(), as_: Some(JoinAs::Observer) }, T0);
        assert!(matches!(out[0].msg, ServerMsg::Joined { role: Role::Observer, peers: Peers { observers: 2, .. }, .. }));
        assert_eq!(error_code(&e.handle(5, ClientMsg::Join { room: "ZZZZZ-ZZZZZ".into(), as_: None }, T0)), ErrorCode::NoSuchRoom);
        assert_eq!(error_code(&e.handle(5, ClientMsg::Join { room: "nope".into(), as_: None }, T0)), ErrorCode::NoSuchRoom);
        assert_eq!(error_code(&e.handle(5, ClientMsg::Join { room: "x".repeat(100_000), as_: None }, T0)), ErrorCode::BadField);
        assert_eq!(error_code(&e.handle(1, ClientMsg::Join { room: code, as_: None }, T0)), ErrorCode::NotAllowed);
        assert_eq!(error_code(&e.handle(1, ClientMsg::Create { room: None, params: None }, T0)), ErrorCode::NotAllowed);
    }

    #[test]
    fn observers_are_capped_per_room() {
        let mut e = engine();
        let code = room_with_three(&mut e); // one observer already
        let max = Limits::default().max_observers as u64;
        for c in 10..10 + max - 1 {
            let out = e.handle(c, ClientMsg::Join { room: code.clone(), as_: Some(JoinAs::Observer) }, T0);
            assert!(matches!(out[0].msg, ServerMsg::Joined { role: Role::Observer, .. }), "{c}");
        }
        let late = 10 + max;
        assert_eq!(error_code(&e.handle(late, ClientMsg::Join { room: code.clone(), as_: Some(JoinAs::Observer) }, T0)), ErrorCode::TooManyObservers);
        // One leaves: one more may watch.
        e.disconnect(10);
        let out = e.handle(late, ClientMsg::Join { room: code, as_: Some(JoinAs::Observer) }, T0);
        assert!(matches!(out[0].msg, ServerMsg::Joined { role: Role::Observer, .. }));
    }

    #[test]
    fn leave_mid_round_aborts_and_frees_the_seat() {
        let mut e = engine();
        let code = room_with_three(&mut e);
        let (ts, _) = start(&mut e, T0);
        e.handle(1, ClientMsg::Post { label: Label::B }, ts);
        let out = e.disconnect(2);
        assert_eq!(out[0], Out { to: vec![1, 3], msg: ServerMsg::Peer { event: PeerEvent::Left, role: Role::Bob } });
        assert_eq!(out[1], Out { to: vec![1, 3], msg: ServerMsg::Aborted { reason: "peer_left".into() } });
        // No round runs any more: a post is refused, a new bob can join and a new session start.
        assert_eq!(error_code(&e.handle(1, ClientMsg::Post { label: Label::A }, ts + 10)), ErrorCode::NoRound);
        let out = e.handle(9, ClientMsg::Join { room: code, as_: None }, ts + 20);
        assert!(matches!(out[0].msg, ServerMsg::Joined { role: Role::Bob, .. }));
        e.handle(1, ClientMsg::Ready { ask: None }, ts + 30);
        let out = e.handle(9, ClientMsg::Ready { ask: None }, ts + 30);
        assert!(matches!(out[0].msg, ServerMsg::Start { round: 1, .. }));
        // A poster leaving before any round aborts nothing: the other waits for a new peer.
        let mut g = engine();
        let code3 = joined_code(&g.handle(1, ClientMsg::Create { room: None, params: Some(params()) }, T0));
        g.handle(1, ClientMsg::Ready { ask: None }, T0);
        g.handle(2, ClientMsg::Join { room: code3.clone(), as_: None }, T0);
        let out = g.disconnect(2);
        assert_eq!(out, vec![Out { to: vec![1], msg: ServerMsg::Peer { event: PeerEvent::Left, role: Role::Bob } }]);
        g.handle(5, ClientMsg::Join { room: code3, as_: None }, T0);
        let out = g.handle(5, ClientMsg::Ready { ask: None }, T0);
        assert!(matches!(out[0].msg, ServerMsg::Start { .. }), "alice's ready still stands: {out:?}");
        // An observer leaving aborts nothing.
        let out = e.handle(3, ClientMsg::Leave {}, ts + 40);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].msg, ServerMsg::Peer { event: PeerEvent::Left, role: Role::Observer });
    }

    #[test]
    fn posts_outside_the_window_or_from_observers_are_refused() {
        let mut e = engine();
        room_with_three(&mut e);
        assert_eq!(error_code(&e.handle(1, ClientMsg::Post { label: Label::A }, T0)), ErrorCode::NoRound);
        let (ts, te) = start(&mut e, T0);
        let g = 20_000; // the guard for τ = 1 ms: max(20τ, 2 ms) (protocol::default_guard_ms)
        assert_eq!(error_code(&e.handle(1, ClientMsg::Post { label: Label::A }, ts - g - 1)), ErrorCode::OutsideWindow);
        assert_eq!(error_code(&e.handle(1, ClientMsg::Post { label: Label::A }, te + g + 1)), ErrorCode::OutsideWindow);
        assert_eq!(error_code(&e.handle(3, ClientMsg::Post { label: Label::A }, ts + 5)), ErrorCode::NotAllowed);
        assert_eq!(error_code(&e.handle(1, ClientMsg::Done {}, te - 1)), ErrorCode::TooEarly);
        assert!(e.handle(1, ClientMsg::Post { label: Label::A }, ts - g).is_empty());
        e.handle(1, ClientMsg::Done {}, te);
        assert_eq!(error_code(&e.handle(1, ClientMsg::Post { label: Label::A }, te + 1)), ErrorCode::OutsideWindow);
        let board = e.handle(3, ClientMsg::Board {}, te + 2);
        let ServerMsg::Board { entries, .. } = &board[0].msg else { panic!() };
        assert_eq!(entries.len(), 1);
        assert_eq!(error_code(&e.handle(3, ClientMsg::Ready { ask: None }, te)), ErrorCode::NotAllowed);
        assert_eq!(error_code(&e.handle(1, ClientMsg::Ready { ask: None }, te)), ErrorCode::RoundRunning);
        assert_eq!(error_code(&e.handle(7, ClientMsg::Ready { ask: None }, te)), ErrorCode::NotAllowed);
    }

    #[test]
    fn post_flood_is_rate_limited_and_kept_off_the_board() {
        let mut e = engine();
        room_with_three(&mut e);
        let (ts, te) = start(&mut e, T0);
        let mut limited = 0;
        for k in 0..1000 {
            let out = e.handle(1, ClientMsg::Post { label: Label::A }, ts + k);
            if !out.is_empty() {
                assert_eq!(error_code(&out), ErrorCode::TooManyPosts);
                limited += 1;
            }
        }
        assert!(limited > 900, "{limited}");
        // Bob is not affected by Alice's flood.
        assert!(e.handle(2, ClientMsg::Post { label: Label::B }, ts + 2000).is_empty());
        e.handle(1, ClientMsg::Done {}, te);
        let out = e.handle(2, ClientMsg::Done {}, te);
        let ServerMsg::Closed { board, .. } = &out[0].msg else { panic!() };
        assert_eq!(board.len(), 1000 - limited + 1);
        // A Poisson poster at the room's rate is never limited: 125 Hz here, 1 s window.
        let mut e = engine();
        room_with_three(&mut e);
        let (ts, te) = start(&mut e, T0);
        let mut rng = fastrand::Rng::with_seed(3);
        for t in crate::schedule::poisson(ts, te, 125.0, &mut rng) {
            assert!(e.handle(1, ClientMsg::Post { label: Label::A }, t).is_empty());
        }
    }

    #[test]
    fn board_requests_are_rate_limited_per_connection() {
        let mut e = engine();
        room_with_three(&mut e);
        let burst = Limits::default().board_burst as i64;
        for k in 0..burst {
            assert!(e.board(3, T0 + k).is_ok());
        }
        let out = e.board(3, T0 + burst).err().expect("refused past the burst");
        assert_eq!(error_code(&out), ErrorCode::RateLimited);
        // Through `handle` too, and only for that connection.
        assert_eq!(error_code(&e.handle(3, ClientMsg::Board {}, T0 + burst)), ErrorCode::RateLimited);
        assert!(e.board(1, T0 + burst).is_ok());
        // 10 a second come back.
        assert!(e.board(3, T0 + burst + 100_000).is_ok());
        assert!(e.board(3, T0 + burst + 100_001).is_err());
        // Not in a room: refused as before.
        assert_eq!(error_code(&e.board(9, T0).err().unwrap()), ErrorCode::NotAllowed);
    }

    #[test]
    fn board_versions_change_with_the_board_and_differ_between_rooms() {
        let mut e = engine();
        room_with_three(&mut e);
        let (ts, te) = start(&mut e, T0);
        let v0 = e.board(3, ts).ok().unwrap().version;
        assert_eq!(e.board(3, ts).ok().unwrap().version, v0, "unchanged board, same version");
        e.handle(1, ClientMsg::Post { label: Label::A }, ts + 10);
        let b = e.board(3, ts + 11).ok().unwrap();
        assert!(b.version != v0);
        assert_eq!(b.entries.len(), 1);
        let v1 = b.version;
        // A refused post changes nothing.
        assert_eq!(error_code(&e.handle(3, ClientMsg::Post { label: Label::A }, ts + 12)), ErrorCode::NotAllowed);
        assert_eq!(e.board(3, ts + 13).ok().unwrap().version, v1);
        // A new round clears the board: a new version.
        e.handle(1, ClientMsg::Done {}, te);
        e.handle(2, ClientMsg::Done {}, te);
        e.handle(1, ClientMsg::Ready { ask: None }, te + 1);
        e.handle(2, ClientMsg::Ready { ask: None }, te + 1);
        let v2 = e.board(3, te + 2).ok().unwrap().version;
        assert!(v2 != v1 && v2 != v0);
        // Another room with a post of its own never shares a version with this one.
        let code = joined_code(&e.handle(11, ClientMsg::Create { room: None, params: Some(params()) }, te));
        e.handle(12, ClientMsg::Join { room: code, as_: None }, te);
        e.handle(11, ClientMsg::Ready { ask: None }, te);
        let out = e.handle(12, ClientMsg::Ready { ask: None }, te);
        let ServerMsg::Start { t_start_us, .. } = out[0].msg else { panic!() };
        e.handle(11, ClientMsg::Post { label: Label::B }, t_start_us);
        let other = e.board(11, t_start_us).ok().unwrap().version;
        assert!(![v0, v1, v2].contains(&other));
    }

    #[test]
    fn a_round_board_has_a_bound() {
        let mut rng = fastrand::Rng::with_seed(7);
        let limits = Limits { max_board: 5, post_burst: 100.0, ..Limits::default() };
        let mut e = Engine::new(limits, Box::new(move |b: &mut [u8]| rng.fill(b)));
        room_with_three(&mut e);
        let (ts, te) = start(&mut e, T0);
        for k in 0..5 {
            assert!(e.handle(1 + k % 2, ClientMsg::Post { label: Label::A }, ts + k as i64).is_empty());
        }
        let out = e.handle(2, ClientMsg::Post { label: Label::B }, ts + 9);
        assert_eq!(error_code(&out), ErrorCode::BoardFull);
        e.handle(1, ClientMsg::Done {}, te);
        let out = e.handle(2, ClientMsg::Done {}, te);
        let ServerMsg::Closed { board, .. } = &out[0].msg else { panic!() };
        assert_eq!(board.len(), 5);
    }

    #[test]
    fn coalesced_posts_are_told_to_their_poster_only() {
        let mut e = engine();
        room_with_three(&mut e);
        // Between rounds, and before any post, there is nothing to say.
        assert!(e.tell_coalesced(1, 0, 1).is_empty());
        let (ts, te) = start(&mut e, T0);
        assert!(e.tell_coalesced(1, 0, 1).is_empty(), "no post yet");
        let told = |post, count| ServerMsg::Coalesced { post, count };
        for k in 0..5 {
            e.handle(1, ClientMsg::Post { label: Label::A }, ts + k);
        }
        // Posts 3 and 4 shared post 5's time (a frame of another time came next) …
        assert_eq!(e.tell_coalesced(1, 1, 2), vec![Out { to: vec![1], msg: told(3, 2) }]);
        // … or 4 and 5 shared the time of the `done` after them.
        assert_eq!(e.tell_coalesced(1, 0, 2)[0].msg, told(4, 2));
        // Never more posts than were sent, nor from observers.
        assert_eq!(e.tell_coalesced(1, 0, 99)[0].msg, told(1, 5));
        assert!(e.tell_coalesced(1, 9, 1).is_empty());
        assert!(e.tell_coalesced(3, 0, 1).is_empty(), "observers post nothing");
        // Refused posts count too: the poster numbers every post it sent.
        assert_eq!(error_code(&e.handle(2, ClientMsg::Post { label: Label::B }, te + 1_000_000)), ErrorCode::OutsideWindow);
        assert_eq!(e.tell_coalesced(2, 0, 1)[0].msg, told(1, 1));
        // A closed round says nothing; a new one counts from 1 again.
        e.handle(1, ClientMsg::Done {}, te);
        e.handle(2, ClientMsg::Done {}, te);
        assert!(e.tell_coalesced(1, 0, 1).is_empty(), "the round is closed");
        let (ts, _) = start(&mut e, te + 10);
        e.handle(1, ClientMsg::Post { label: Label::A }, ts);
        assert_eq!(e.tell_coalesced(1, 0, 1)[0].msg, told(1, 1));
    }

    #[test]
    fn round_closes_after_grace_without_done() {
        let mut e = engine();
        room_with_three(&mut e);
        let (_, te) = start(&mut e, T0);
        e.handle(1, ClientMsg::Done {}, te);
        assert_eq!(e.next_deadline(), Some(te + 2_000_000));
        assert!(e.on_timeout(te + 1_999_999).is_empty());
        let out = e.on_timeout(te + 2_000_000);
        assert!(matches!(out[0].msg, ServerMsg::Closed { .. }));
    }

    #[test]
    fn rooms_are_pruned() {
        let mut e = engine();
        let code = room_with_three(&mut e);
        assert_eq!(e.rooms(), 1);
        let idle = T0 + 10 * 60 * 1_000_000;
        assert!(e.on_timeout(idle - 1).is_empty());
        let out = e.on_timeout(idle);
        assert_eq!(out[0], Out { to: vec![1, 2, 3], msg: ServerMsg::Aborted { reason: "idle".into() } });
        assert_eq!(e.rooms(), 0);
        assert_eq!(e.seat(1), None);
        assert_eq!(error_code(&e.handle(4, ClientMsg::Join { room: code, as_: None }, idle)), ErrorCode::NoSuchRoom);
        // An emptied room goes at once.
        let code = joined_code(&e.handle(1, ClientMsg::Create { room: None, params: None }, idle));
        e.handle(2, ClientMsg::Join { room: code.clone(), as_: None }, idle);
        e.handle(1, ClientMsg::Leave {}, idle);
        assert_eq!(e.rooms(), 1);
        e.disconnect(2);
        assert_eq!(e.rooms(), 0);
        assert_eq!(e.next_deadline(), None);
        // Both removals are told once, with their reasons.
        let removed = e.take_removed();
        assert_eq!(removed.iter().map(|(_, why)| *why).collect::<Vec<_>>(), ["idle", "empty"]);
        assert_eq!(removed[1].0, code);
        assert!(e.take_removed().is_empty());
    }

    #[test]
    fn hostile_fields_are_refused() {
        let mut e = engine();
        room_with_three(&mut e);
        let bad = ParamsIn { tolerance_ms: Some(-1.0), ..Default::default() };
        assert_eq!(error_code(&e.handle(8, ClientMsg::Create { room: None, params: Some(bad) }, T0)), ErrorCode::BadField);
        assert_eq!(error_code(&e.handle(1, ClientMsg::Abort { reason: "x".repeat(33) }, T0)), ErrorCode::BadField);
        assert_eq!(error_code(&e.handle(1, ClientMsg::Abort { reason: "<script>".into() }, T0)), ErrorCode::BadField);
        let (_, te) = start(&mut e, T0);
        e.handle(1, ClientMsg::Done {}, te);
        e.handle(2, ClientMsg::Done {}, te);
        for tag in ["", "xyzxyzxy", "0000000", "000000000", &"0".repeat(100_000)] {
            assert_eq!(error_code(&e.handle(1, ClientMsg::Confirm { tag: tag.into(), drops: 0 }, te)), ErrorCode::BadField);
        }
    }

    /// [`start`], then both posters' `done` at `t_end`: the round is closed.
    fn start_and_close(e: &mut Engine, now: i64) -> (i64, i64) {
        let (ts, te) = start(e, now);
        e.handle(1, ClientMsg::Done {}, te);
        e.handle(2, ClientMsg::Done {}, te);
        (ts, te)
    }

    #[test]
    fn a_drop_is_relayed_and_voids_a_confirm_made_without_it() {
        let mut e = engine();
        room_with_three(&mut e);
        let (ts, te) = start(&mut e, T0);
        // Not before the round closes.
        assert_eq!(error_code(&e.handle(1, ClientMsg::Drop { spans: vec![[ts, ts + 10]] }, ts)), ErrorCode::NotAllowed);
        e.handle(1, ClientMsg::Done {}, te);
        let out = e.handle(2, ClientMsg::Done {}, te);
        let ServerMsg::Closed { session, round, .. } = out[0].msg.clone() else { panic!() };
        // Bob confirms first (his view had no spans); alice's drop voids it and reaches bob and
        // the observer, never alice herself.
        assert!(e.handle(2, ClientMsg::Confirm { tag: "0000000b".into(), drops: 0 }, te).is_empty());
        let spans = vec![[ts + 100, ts + 200], [ts + 300, ts + 300]];
        let out = e.handle(1, ClientMsg::Drop { spans: spans.clone() }, te);
        assert_eq!(out, vec![Out { to: vec![2, 3], msg: ServerMsg::Dropped { session, round, spans } }]);
        // A second drop from alice, or one after her verdict, is refused.
        assert_eq!(error_code(&e.handle(1, ClientMsg::Drop { spans: vec![[ts, ts]] }, te)), ErrorCode::NotAllowed);
        // Alice confirms having applied her drop: bob's old confirm no longer counts.
        assert!(e.handle(1, ClientMsg::Confirm { tag: "0000000a".into(), drops: 1 }, te).is_empty());
        assert_eq!(error_code(&e.handle(1, ClientMsg::Drop { spans: vec![[ts, ts]] }, te)), ErrorCode::NotAllowed);
        // A confirm claiming drops that never were is a bad field; one made before the drop
        // reached bob is refused; once bob has it, his confirm counts.
        assert_eq!(error_code(&e.handle(2, ClientMsg::Confirm { tag: "0000000a".into(), drops: 2 }, te)), ErrorCode::BadField);
        assert_eq!(error_code(&e.handle(2, ClientMsg::Confirm { tag: "0000000a".into(), drops: 0 }, te)), ErrorCode::StaleConfirm);
        let out = e.handle(2, ClientMsg::Confirm { tag: "0000000a".into(), drops: 1 }, te);
        assert_eq!(out.last().unwrap().msg, ServerMsg::Confirmed { matched: true });
    }

    #[test]
    fn drops_from_both_posters_and_a_ready_that_stands() {
        let mut e = engine();
        room_with_three(&mut e);
        let (ts, te) = start_and_close(&mut e, T0);
        // Both drop; alice's ready (made before bob's drop) still stands: fewer entries never
        // turn a ready into a key.
        assert_eq!(e.handle(1, ClientMsg::Drop { spans: vec![[ts, ts + 1]] }, te)[0].to, vec![2, 3]);
        assert!(e.handle(1, ClientMsg::Ready { ask: None }, te).is_empty());
        assert_eq!(e.handle(2, ClientMsg::Drop { spans: vec![[te - 1, te]] }, te)[0].to, vec![1, 3]);
        let out = e.handle(2, ClientMsg::Ready { ask: None }, te + 1);
        assert!(matches!(out[0].msg, ServerMsg::Start { round: 2, .. }), "{out:?}");
        // After a desync drops the round whole, a drop says nothing more.
        let ServerMsg::Start { t_start_us: ts, t_end_us: te, .. } = out[0].msg else { unreachable!() };
        e.handle(1, ClientMsg::Done {}, te);
        e.handle(2, ClientMsg::Done {}, te);
        assert_eq!(e.handle(2, ClientMsg::Abort { reason: "desync".into() }, te)[0].msg, ServerMsg::Aborted { reason: "desync".into() });
        assert!(e.handle(1, ClientMsg::Drop { spans: vec![[ts, ts]] }, te).is_empty());
    }

    #[test]
    fn hostile_spans_are_refused() {
        let mut e = engine();
        room_with_three(&mut e);
        let (ts, te) = start_and_close(&mut e, T0);
        let many: Vec<[i64; 2]> = (0..=MAX_SPANS as i64).map(|k| [ts + 2 * k, ts + 2 * k]).collect();
        for (spans, why) in [
            (vec![], "must hold 1 to"),
            (many, "must hold 1 to"),
            (vec![[ts + 5, ts + 4]], "ends before it starts"),
            (vec![[ts - 1, ts + 4]], "not inside the round's window"),
            (vec![[ts, te + 1]], "not inside the round's window"),
            (vec![[i64::MIN, i64::MAX]], "not inside the round's window"),
            (vec![[ts + 10, ts + 20], [ts + 20, ts + 30]], "ascending and disjoint"),
            (vec![[ts + 10, ts + 20], [ts, ts + 5]], "ascending and disjoint"),
        ] {
            let out = e.handle(1, ClientMsg::Drop { spans }, te);
            let ServerMsg::Error { code, message } = &out[0].msg else { panic!("{out:?}") };
            assert_eq!(*code, ErrorCode::BadField);
            assert!(message.contains(why), "{message}");
        }
        // Observers post nothing; a refused drop did not use up the poster's one drop.
        assert_eq!(error_code(&e.handle(3, ClientMsg::Drop { spans: vec![[ts, ts]] }, te)), ErrorCode::NotAllowed);
        assert_eq!(e.handle(1, ClientMsg::Drop { spans: vec![[ts, te]] }, te)[0].to, vec![2, 3]);
    }

    #[test]
    fn desync_drops_one_round_and_the_session_goes_on() {
        let mut e = engine();
        room_with_three(&mut e);
        let (_, te) = start(&mut e, T0);
        e.handle(1, ClientMsg::Done {}, te);
        let out = e.handle(2, ClientMsg::Done {}, te);
        let ServerMsg::Closed { session: s1, .. } = out[0].msg.clone() else { panic!() };
        // Alice thinks the round completes the key; Bob found it out of sync.
        e.handle(1, ClientMsg::Confirm { tag: "00000000".into(), drops: 0 }, te);
        let out = e.handle(2, ClientMsg::Abort { reason: "desync".into() }, te);
        assert_eq!(out[0], Out { to: vec![1, 2, 3], msg: ServerMsg::Aborted { reason: "desync".into() } });
        // Alice's second desync for the same round is not relayed again.
        assert!(e.handle(1, ClientMsg::Abort { reason: "desync".into() }, te).is_empty());
        // A confirm sent before hearing of the drop is refused; ready is what counts.
        assert_eq!(error_code(&e.handle(1, ClientMsg::Confirm { tag: "00000000".into(), drops: 0 }, te)), ErrorCode::RoundDropped);
        e.handle(1, ClientMsg::Ready { ask: None }, te);
        let out = e.handle(2, ClientMsg::Ready { ask: None }, te);
        let ServerMsg::Start { session, round, .. } = &out[0].msg else { panic!("{out:?}") };
        assert_eq!((session, *round), (&s1, 2), "same session, next round");
    }

    #[test]
    fn reset_and_abort_reach_the_whole_room() {
        let mut e = engine();
        room_with_three(&mut e);
        let (ts, _) = start(&mut e, T0);
        e.handle(1, ClientMsg::Post { label: Label::A }, ts);
        let out = e.handle(2, ClientMsg::Abort { reason: "user".into() }, ts + 1);
        assert_eq!(out[0], Out { to: vec![1, 2, 3], msg: ServerMsg::Aborted { reason: "user".into() } });
        assert_eq!(error_code(&e.handle(1, ClientMsg::Done {}, ts + 2_000_000)), ErrorCode::NoRound);
        let out = e.handle(1, ClientMsg::Reset {}, ts + 2);
        assert_eq!(out[0], Out { to: vec![1, 2, 3], msg: ServerMsg::Reset {} });
        let out = e.handle(3, ClientMsg::Board {}, ts + 3);
        assert_eq!(out[0].msg, ServerMsg::Board { session: None, round: 0, entries: vec![] });
        assert_eq!(error_code(&e.handle(3, ClientMsg::Reset {}, ts + 3)), ErrorCode::NotAllowed);
    }

    #[test]
    fn the_board_stays_in_time_order_when_stamps_arrive_out_of_order() {
        let mut e = engine();
        room_with_three(&mut e);
        let (ts, te) = start(&mut e, T0);
        for (conn, dt) in [(1u64, 30), (2, 10), (1, 50), (2, 40)] {
            assert!(e.handle(conn, ClientMsg::Post { label: Label::A }, ts + dt).is_empty());
        }
        e.handle(1, ClientMsg::Done {}, te);
        let out = e.handle(2, ClientMsg::Done {}, te);
        let ServerMsg::Closed { board, .. } = &out[0].msg else { panic!() };
        let times: Vec<i64> = board.iter().map(|b| b.t_us - ts).collect();
        assert_eq!(times, vec![10, 30, 40, 50]);
        assert!(board.iter().enumerate().all(|(k, b)| b.i == k as u32));
    }

    fn start_params(out: &[Out]) -> Params {
        match &out[0].msg {
            ServerMsg::Start { params, .. } => params.clone(),
            m => panic!("expected start, got {m:?}"),
        }
    }

    fn ask(tolerance_ms: f64, rate_div: u32) -> Option<crate::protocol::Ask> {
        Some(crate::protocol::Ask::new(tolerance_ms, rate_div))
    }

    #[test]
    fn a_round_runs_at_the_widest_tolerance_and_lowest_rate_asked() {
        let mut e = engine();
        room_with_three(&mut e);
        let own = Params::resolve(&params()).unwrap();
        assert!(e.handle(1, ClientMsg::Ready { ask: ask(2.0, 1) }, T0).is_empty());
        let out = e.handle(2, ClientMsg::Ready { ask: ask(1.5, 4) }, T0);
        let p = start_params(&out);
        let ServerMsg::Start { t_end_us: t_end, .. } = out[0].msg else { unreachable!() };
        assert_eq!(p, own.tuned(&crate::protocol::Ask::new(2.0, 4)).unwrap());
        assert_eq!(p.tolerance_ms, 2.0);
        assert!((p.rate_hz - own.rate_hz / 2.0 / 4.0).abs() < 1e-9, "{p:?}");
        assert_eq!((p.target_bits, p.tag_bits), (own.target_bits, own.tag_bits));
        // The asks are spent with the round: the next one, asked for nothing, is the room's own.
        e.handle(1, ClientMsg::Done {}, t_end);
        e.handle(2, ClientMsg::Done {}, t_end);
        e.handle(1, ClientMsg::Abort { reason: "desync".into() }, t_end);
        assert!(e.handle(1, ClientMsg::Ready { ask: None }, t_end).is_empty());
        assert_eq!(start_params(&e.handle(2, ClientMsg::Ready { ask: None }, t_end)), own);
    }

    #[test]
    fn an_ask_that_gives_no_valid_round_is_bad_field_and_not_ready() {
        let mut e = engine();
        room_with_three(&mut e);
        for (tol, div) in [(0.0, 1), (-1.0, 1), (f64::NAN, 1), (1001.0, 1), (1.0, 0), (1.0, 65), (0.01, 1)] {
            let out = e.handle(1, ClientMsg::Ready { ask: ask(tol, div) }, T0);
            assert_eq!(error_code(&out), ErrorCode::BadField, "{tol} {div}");
        }
        for lead in [0.0, 0.5, -1.0, f64::NAN, f64::INFINITY, 1000.5] {
            let a = Some(crate::protocol::Ask { lead_ms: Some(lead), ..crate::protocol::Ask::new(1.0, 1) });
            assert_eq!(error_code(&e.handle(1, ClientMsg::Ready { ask: a }, T0)), ErrorCode::BadField, "lead {lead}");
        }
        // Nothing of those stands: bob's ready alone starts nothing; alice's valid one does.
        assert!(e.handle(2, ClientMsg::Ready { ask: None }, T0).is_empty());
        assert_eq!(start_params(&e.handle(1, ClientMsg::Ready { ask: ask(1.0, 1) }, T0)), Params::resolve(&params()).unwrap());
    }

    #[test]
    fn a_leaving_posters_ask_leaves_with_it() {
        let mut e = engine();
        let code = room_with_three(&mut e);
        assert!(e.handle(2, ClientMsg::Ready { ask: ask(8.0, 16) }, T0).is_empty());
        e.handle(2, ClientMsg::Leave {}, T0);
        e.handle(4, ClientMsg::Join { room: code, as_: None }, T0);
        assert!(e.handle(4, ClientMsg::Ready { ask: None }, T0).is_empty());
        assert_eq!(start_params(&e.handle(1, ClientMsg::Ready { ask: None }, T0)), Params::resolve(&params()).unwrap());
    }
}

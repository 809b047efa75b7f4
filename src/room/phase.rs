//! One room: its members, its board and its phase, and one function per message or event
//! that moves the phase (the transition table of docs/protocol.md §3 is this file). It must
//! not do I/O, read a clock or draw randomness of its own: time comes in as `now`, random
//! bytes and board versions through [`Env`]; seats and other rooms are the engine's.

use super::fields::{valid_reason, valid_spans, valid_tag};
use super::limits::{Bucket, Limits};
use super::{err, ConnId, Out};
use crate::protocol::{Ask, Entry, ErrorCode, Label, Params, Peers, Role, ServerMsg};

/// What a poster has said about the last closed (or dropped) round.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Verdict {
    None,
    Ready,
    Confirm(String),
}

/// A session: the run of rounds that makes one key.
#[derive(Clone, Debug)]
pub(super) struct Session {
    /// 16 random bytes as 32 lowercase hex digits.
    nonce: String,
    /// The current (or last closed) round, from 1.
    round: u32,
}

/// A round whose posters have not both said `done` and whose grace has not passed.
#[derive(Clone, Debug)]
pub(super) struct Running {
    t_start: i64,
    t_end: i64,
    done: [bool; 2],
    buckets: [Bucket; 2],
    /// Posts each poster sent in this round (refused ones included), for `coalesced`.
    posts: [u32; 2],
    /// The round's parameters: the room's, tuned to its posters' asks.
    params: Params,
}

/// A closed round, awaiting its posters' drops and verdicts.
#[derive(Clone, Debug)]
pub(super) struct Closed {
    /// The round's window: what a `drop`'s spans must lie in.
    t_start: i64,
    t_end: i64,
    /// When `closed` went out, to time each poster's first verdict (the lead).
    at: i64,
    verdicts: [Verdict; 2],
    /// The poster has sent a `drop` or a verdict (a stale confirm too): its one drop is spent.
    spent: [bool; 2],
}

impl Closed {
    /// Times poster `k`'s first verdict on this `closed` (a repeated one, or one after a
    /// drop voided its confirm, is timed again). Call it before the verdict is recorded.
    fn time_verdict(&self, k: usize, now: i64, turn_us: &mut [Option<i64>; 2]) {
        if self.verdicts[k] == Verdict::None {
            turn_us[k] = Some(now - self.at);
        }
    }
}

/// Where a room stands. Each variant holds what its phase needs and nothing else.
#[derive(Clone, Debug)]
pub(super) enum Phase {
    /// No session: who has said `ready` (with both seated and ready, round 1 starts).
    Idle { ready: [bool; 2] },
    Running { session: Session, round: Running },
    Closed { session: Session, round: Closed },
    /// `abort {desync}` dropped the round (running or closed); the session goes on. A poster
    /// whose verdict is still `None` has not said `ready` since: its confirm is refused.
    /// Verdicts after a drop are not timed (a re-sync sits in between).
    Dropped { session: Session, verdicts: [Verdict; 2] },
}

impl Phase {
    const IDLE: Phase = Phase::Idle { ready: [false, false] };

    fn session(&self) -> Option<&Session> {
        match self {
            Phase::Idle { .. } => None,
            Phase::Running { session, .. } | Phase::Closed { session, .. } | Phase::Dropped { session, .. } => Some(session),
        }
    }
}

/// What the engine lends a room for one message: its limits, the engine-wide board
/// version counter (so versions differ between rooms) and the random generator.
pub(super) struct Env<'a> {
    pub limits: &'a Limits,
    /// The last board version handed out.
    pub versions: &'a mut u64,
    pub random: &'a mut dyn FnMut(&mut [u8]),
}

pub(super) struct Room {
    /// The creator's parameters (what `joined` says); a round runs them tuned to the asks.
    pub params: Params,
    /// Each poster's ask with its last `ready` (none: the room's own τ and rate).
    pub asks: [Option<Ask>; 2],
    pub posters: [Option<ConnId>; 2],
    pub observers: Vec<ConnId>,
    pub last_activity_us: i64,
    pub phase: Phase,
    /// The current round's board, or the last closed one.
    pub board: Vec<Entry>,
    /// Changes whenever `board` does, unique across rooms (see `BoardView::version`).
    pub board_version: u64,
    /// Each poster's last turnaround (`closed` → its `ready` or `confirm`), for the lead.
    pub turn_us: [Option<i64>; 2],
    /// `drop`s received for the last closed round. Like the board it outlives its round
    /// until the next one closes (a session's end does not clear it): a `confirm` after a
    /// dropped round is checked against it too.
    drops: u32,
}

fn nonce(random: &mut dyn FnMut(&mut [u8])) -> String {
    let mut nonce = [0u8; 16];
    random(&mut nonce);
    nonce.iter().map(|b| format!("{b:02x}")).collect()
}

impl Room {
    /// A room made by `conn` (alice), with no session.
    pub fn new(params: Params, conn: ConnId, now: i64) -> Room {
        Room {
            params,
            asks: [None, None],
            posters: [Some(conn), None],
            observers: Vec::new(),
            last_activity_us: now,
            phase: Phase::IDLE,
            board: Vec::new(),
            board_version: 0,
            turn_us: [None, None],
            drops: 0,
        }
    }

    pub fn members(&self) -> Vec<ConnId> {
        self.posters.iter().flatten().copied().chain(self.observers.iter().copied()).collect()
    }
    pub fn others(&self, conn: ConnId) -> Vec<ConnId> {
        self.members().into_iter().filter(|&c| c != conn).collect()
    }
    pub fn peers(&self) -> Peers {
        Peers {
            alice: self.posters[0].is_some(),
            bob: self.posters[1].is_some(),
            observers: self.observers.len() as u32,
        }
    }
    /// A session runs, or a poster has said `ready` and waits for the other.
    pub fn is_busy(&self) -> bool {
        !matches!(self.phase, Phase::Idle { ready: [false, false] })
    }

    pub fn is_empty(&self) -> bool {
        self.posters.iter().all(Option::is_none) && self.observers.is_empty()
    }
    /// The session nonce and round a `board` reply names (`None`, 0 without a session).
    pub fn session_view(&self) -> (Option<&str>, u32) {
        match self.phase.session() {
            Some(s) => (Some(s.nonce.as_str()), s.round),
            None => (None, 0),
        }
    }
    fn touch_board(&mut self, versions: &mut u64) {
        *versions += 1;
        self.board_version = *versions;
    }
    /// Any phase → Idle (abort, reset, a poster left, confirmed, disagree).
    fn end_session(&mut self) {
        self.phase = Phase::IDLE;
    }

    /// `ready {ask?}`: Idle, Closed or Dropped record it (and the ask, if it gives a valid
    /// round), then [`Room::advance`].
    pub fn ready(&mut self, k: usize, conn: ConnId, ask: Option<Ask>, now: i64, env: &mut Env) -> Vec<Out> {
        if let Phase::Running { .. } = self.phase {
            return err(conn, ErrorCode::RoundRunning, "a round is running; send done after t_end");
        }
        if let Some(Err(e)) = ask.map(|a| a.check_lead().and_then(|_| self.params.tuned(&a))) {
            return err(conn, ErrorCode::BadField, e);
        }
        self.asks[k] = ask;
        self.record(k, Verdict::Ready, now);
        self.advance(now, env)
    }

    /// `confirm {tag, drops}`: Closed, or Dropped once this poster has said `ready` again.
    pub fn confirm(&mut self, k: usize, conn: ConnId, tag: &str, drops: u32, now: i64, env: &mut Env) -> Vec<Out> {
        match &self.phase {
            Phase::Idle { .. } => return err(conn, ErrorCode::NotAllowed, "no session to confirm"),
            Phase::Running { .. } => {
                return err(conn, ErrorCode::RoundRunning, "a round is running; confirm after it closes")
            }
            Phase::Dropped { verdicts, .. } if verdicts[k] == Verdict::None => {
                return err(conn, ErrorCode::RoundDropped, "the last round was dropped (desync); send ready")
            }
            Phase::Closed { .. } | Phase::Dropped { .. } => {}
        }
        if !valid_tag(tag, self.params.tag_bits) {
            return err(conn, ErrorCode::BadField, format!("confirm: `tag` must be {} hex digits", self.params.tag_bits / 4));
        }
        if drops > self.drops {
            return err(conn, ErrorCode::BadField, format!("confirm: `drops` is {drops}, but this round has {} drops", self.drops));
        }
        if let Phase::Closed { round, .. } = &mut self.phase {
            round.spent[k] = true;
        }
        if drops < self.drops {
            // Made before a drop this poster had not heard of: its `dropped` is on the
            // way, and the poster confirms again (or says ready) once it has it.
            return err(conn, ErrorCode::StaleConfirm, "confirm: made before a drop of this round reached you; confirm again");
        }
        self.record(k, Verdict::Confirm(tag.to_ascii_lowercase()), now);
        self.advance(now, env)
    }

    /// Stores poster `k`'s verdict (timing it after a `closed`); not in Running.
    fn record(&mut self, k: usize, verdict: Verdict, now: i64) {
        match &mut self.phase {
            Phase::Idle { ready } => ready[k] = verdict == Verdict::Ready,
            Phase::Running { .. } => {}
            Phase::Closed { round, .. } => {
                round.time_verdict(k, now, &mut self.turn_us);
                round.verdicts[k] = verdict;
                round.spent[k] = true;
            }
            Phase::Dropped { verdicts, .. } => verdicts[k] = verdict,
        }
    }

    /// Both posters seated and decided: Idle/Closed/Dropped → Running (both `ready`), or
    /// Closed/Dropped → Idle (both `confirm`: `confirmed`; one of each: `disagree`).
    fn advance(&mut self, now: i64, env: &mut Env) -> Vec<Out> {
        if self.posters.iter().any(Option::is_none) {
            return Vec::new();
        }
        let verdicts = match &self.phase {
            Phase::Idle { ready: [true, true] } => return vec![self.start(now, env)],
            Phase::Closed { round, .. } => &round.verdicts,
            Phase::Dropped { verdicts, .. } => verdicts,
            Phase::Idle { .. } | Phase::Running { .. } => return Vec::new(),
        };
        let members = self.members();
        match verdicts {
            [Verdict::None, _] | [_, Verdict::None] => Vec::new(),
            [Verdict::Ready, Verdict::Ready] => vec![self.start(now, env)],
            [Verdict::Confirm(a), Verdict::Confirm(b)] => {
                let matched = a == b;
                let out = vec![
                    Out { to: members.clone(), msg: ServerMsg::Confirm { role: Role::Alice, tag: a.clone() } },
                    Out { to: members.clone(), msg: ServerMsg::Confirm { role: Role::Bob, tag: b.clone() } },
                    Out { to: members, msg: ServerMsg::Confirmed { matched } },
                ];
                self.end_session();
                out
            }
            _ => {
                self.end_session();
                vec![Out { to: members, msg: ServerMsg::Aborted { reason: "disagree".into() } }]
            }
        }
    }

    /// The next round's parameters: the room's at the widest τ and the largest rate divisor
    /// asked (a poster without an ask: the room's τ, divisor 1).
    fn round_params(&self) -> Params {
        let own = Ask::new(self.params.tolerance_ms, 1);
        let [a, b] = self.asks.map(|x| x.unwrap_or(own));
        let widest = Ask::new(a.tolerance_ms.max(b.tolerance_ms), a.rate_div.max(b.rate_div));
        // Each ask alone gives a valid round (checked at `ready`); their widest almost surely
        // does too, and the room's own parameters if not.
        self.params.tuned(&widest).unwrap_or_else(|_| self.params.clone())
    }

    /// → Running: round 1 of a new session from Idle, the next round otherwise. Clears the
    /// board and refills both posters' buckets.
    fn start(&mut self, now: i64, env: &mut Env) -> Out {
        let session = match self.phase.session() {
            Some(s) => Session { nonce: s.nonce.clone(), round: s.round + 1 },
            None => Session { nonce: nonce(env.random), round: 1 },
        };
        let params = self.round_params();
        let t_start = now + env.limits.lead_for(self.turn_us, self.asks.map(|a| a.and_then(|a| a.lead_us())));
        let t_end = t_start + params.duration_ms as i64 * 1000;
        self.board.clear();
        self.touch_board(env.versions);
        let bucket = Bucket::full(env.limits.post_burst, now);
        let msg = ServerMsg::Start {
            session: session.nonce.clone(),
            round: session.round,
            t_start_us: t_start,
            t_end_us: t_end,
            params: params.clone(),
        };
        let round = Running { t_start, t_end, done: [false, false], buckets: [bucket.clone(), bucket], posts: [0, 0], params };
        self.phase = Phase::Running { session, round };
        Out { to: self.members(), msg }
    }

    /// `post {label}`: Running only; onto the board in time order unless refused.
    pub fn post(&mut self, k: usize, conn: ConnId, label: Label, now: i64, env: &mut Env) -> Vec<Out> {
        let Phase::Running { round, .. } = &mut self.phase else {
            return err(conn, ErrorCode::NoRound, "post: no round is running");
        };
        let guard = round.params.guard_us();
        round.posts[k] = round.posts[k].saturating_add(1);
        if round.done[k] {
            return err(conn, ErrorCode::OutsideWindow, "post: you already sent done for this round");
        }
        if now < round.t_start - guard || now > round.t_end + guard {
            return err(conn, ErrorCode::OutsideWindow, "post: outside the round window");
        }
        let limits = env.limits;
        let per_sec = round.params.rate_hz * limits.post_rate_factor + limits.post_slack_hz;
        if !round.buckets[k].take(now, limits.post_burst, per_sec) {
            return err(conn, ErrorCode::TooManyPosts, "post: too many posts; this one is not on the board");
        }
        if self.board.len() >= limits.max_board {
            return err(conn, ErrorCode::BoardFull, format!("post: this round's board is full ({} entries)", limits.max_board));
        }
        self.touch_board(env.versions);
        // The board stays in time order: stamps are the kernel's arrival times, and a connection
        // handled a moment later may bring an earlier one (almost always this is the end).
        let k = self.board.partition_point(|e| e.t_us <= now);
        self.board.insert(k, Entry { i: k as u32, t_us: now, label });
        for (j, e) in self.board.iter_mut().enumerate().skip(k + 1) {
            e.i = j as u32;
        }
        Vec::new()
    }

    /// `done`: Running only, once `t_end` has passed; the second one closes the round.
    pub fn done(&mut self, k: usize, conn: ConnId, now: i64) -> Vec<Out> {
        let Phase::Running { round, .. } = &mut self.phase else {
            return err(conn, ErrorCode::NoRound, "no round is running");
        };
        if now < round.t_end {
            return err(conn, ErrorCode::TooEarly, "done before t_end would date your last post; send it once t_end has passed");
        }
        round.done[k] = true;
        if round.done == [true, true] {
            self.close(now).into_iter().collect()
        } else {
            Vec::new()
        }
    }

    /// The grace after `t_end` has passed: Running → Closed without both `done`s.
    pub fn on_timeout(&mut self, now: i64, limits: &Limits) -> Option<Out> {
        match self.phase {
            Phase::Running { ref round, .. } if now >= round.t_end + limits.grace_us => self.close(now),
            _ => None,
        }
    }

    /// When [`Room::on_timeout`] or the idle rule has something to do.
    pub fn deadline(&self, limits: &Limits) -> i64 {
        let idle = self.last_activity_us + limits.idle_room_us;
        match &self.phase {
            Phase::Running { round, .. } => idle.min(round.t_end + limits.grace_us),
            _ => idle,
        }
    }

    /// Running → Closed: the whole room gets `closed {session, round, board}`.
    fn close(&mut self, now: i64) -> Option<Out> {
        let Phase::Running { session, round } = &self.phase else { return None };
        let msg = ServerMsg::Closed { session: session.nonce.clone(), round: session.round, board: self.board.clone() };
        let closed = Closed {
            t_start: round.t_start,
            t_end: round.t_end,
            at: now,
            verdicts: [Verdict::None, Verdict::None],
            spent: [false, false],
        };
        self.phase = Phase::Closed { session: session.clone(), round: closed };
        self.drops = 0;
        Some(Out { to: self.members(), msg })
    }

    /// `drop {spans}`: Closed, once per poster before its verdict; relayed to the others,
    /// and it voids a stored confirm. Silently nothing after a desync dropped the round.
    pub fn drop_spans(&mut self, k: usize, conn: ConnId, spans: Vec<[i64; 2]>) -> Vec<Out> {
        let (session, round) = match &mut self.phase {
            Phase::Dropped { .. } => return Vec::new(), // dropped whole (desync): nothing to narrow
            Phase::Closed { session, round } => (session, round),
            Phase::Idle { .. } | Phase::Running { .. } => {
                return err(conn, ErrorCode::NotAllowed, "drop: no closed round to drop from")
            }
        };
        if round.spent[k] {
            return err(conn, ErrorCode::NotAllowed, "drop: once per round, before your ready or confirm");
        }
        if let Err(why) = valid_spans(&spans, round.t_start, round.t_end) {
            return err(conn, ErrorCode::BadField, format!("drop: {why}"));
        }
        round.spent[k] = true;
        // A confirm made without these spans no longer holds; a ready still does
        // (fewer entries never make a key where there was none).
        for v in &mut round.verdicts {
            if matches!(v, Verdict::Confirm(_)) {
                *v = Verdict::None;
            }
        }
        let msg = ServerMsg::Dropped { session: session.nonce.clone(), round: session.round, spans };
        self.drops += 1;
        vec![Out { to: self.others(conn), msg }]
    }

    /// `abort {reason}`: a desync in Running or Closed → Dropped (ignored in Dropped); any
    /// other abort, or a desync without a session → Idle. The whole room is told.
    pub fn abort(&mut self, conn: ConnId, reason: String) -> Vec<Out> {
        if !valid_reason(&reason) {
            return err(conn, ErrorCode::BadField, "abort: `reason` must be a snake_case word of at most 32 characters");
        }
        match &self.phase {
            Phase::Dropped { .. } if reason == "desync" => return Vec::new(), // the other poster's, same round
            Phase::Running { session, .. } | Phase::Closed { session, .. } if reason == "desync" => {
                let session = session.clone();
                self.phase = Phase::Dropped { session, verdicts: [Verdict::None, Verdict::None] };
            }
            _ => self.end_session(),
        }
        vec![Out { to: self.members(), msg: ServerMsg::Aborted { reason } }]
    }

    /// `reset`: any phase → Idle, and the board is emptied.
    pub fn reset(&mut self, env: &mut Env) -> Vec<Out> {
        self.end_session();
        self.board.clear();
        self.touch_board(env.versions);
        vec![Out { to: self.members(), msg: ServerMsg::Reset {} }]
    }

    /// Poster `k` left (its seat is already free): in Idle its `ready` is forgotten and the
    /// other waits; otherwise the session ends and `to` get `aborted {peer_left}`.
    pub fn poster_left(&mut self, k: usize, to: Vec<ConnId>) -> Option<Out> {
        if let Phase::Idle { ready } = &mut self.phase {
            ready[k] = false;
            return None;
        }
        self.end_session();
        Some(Out { to, msg: ServerMsg::Aborted { reason: "peer_left".into() } })
    }

    /// `coalesced` for poster `k`'s run of `count` posts ending `skip` before its latest;
    /// nothing outside Running.
    pub fn coalesced(&self, k: usize, conn: ConnId, skip: u32, count: u32) -> Vec<Out> {
        let Phase::Running { round, .. } = &self.phase else { return Vec::new() };
        let last = round.posts[k].saturating_sub(skip);
        let count = count.min(last);
        if count == 0 {
            return Vec::new();
        }
        vec![Out { to: vec![conn], msg: ServerMsg::Coalesced { post: last - count + 1, count } }]
    }
}

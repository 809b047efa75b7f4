//! The poster engine: one poster's protocol logic as a state machine (docs/poster.md). Server
//! messages and local facts (the clock sync it asked for, the schedule drawn, posts sent) in,
//! actions out (send this, post now, derive and report, give up); time passed in as `now`
//! (local µs), `next_deadline()` says when it next wants `on_timeout`. No sockets, no tokio, no
//! clock, no randomness: `sgp pair` drives it, and `client/js/poster.js` is its twin, held to
//! the same transcript vectors (`tests/vectors/poster/`).

mod adapt;
mod report;

pub use adapt::{widest_us, Adapt, Verdict};
pub use report::{Action, KeyMade, Outcome, RoundFacts, RoundReport};

use crate::clock::SyncSample;
use crate::protocol::{Ask, ClientMsg, Entry, ErrorCode, Label, Params, PeerEvent, Role, ServerMsg};
use crate::secret::{self, Ledger, OwnPost, RoundOutcome, RoundView, Span};

/// How late a post may leave, as a share of the mean gap between this poster's posts. A
/// poster held up for longer (a busy machine, a stall) posts nothing for a while, and the
/// other poster's posts fill that stretch: runs of one poster, which the audit measured
/// (SECURITY.md). So a later post is skipped, and the stretch is left out: its run of
/// skipped posts gets a span (`secret::skip_spans`) like a run of unmatched ones. A
/// hold-up of at most half a mean gap changes the posters' order only if it holds a post of
/// each, and then only moves one past a neighbour or two (and a post that late misses τ
/// and gets a span of its own).
pub const LATE_SHARE: f64 = 0.5;
/// A round in which more than one planned post in this many was skipped is *spoiled*: this
/// poster drops it (`abort {desync}`) once it closes, and it gives no bits. The machine held
/// it up for much of the round; spans would leave little.
pub const SKIPPED_SHARE: usize = 4;
/// `done` leaves `DONE_MARGIN_US + 2τ` after our estimate of the server's `t_end`: late
/// enough that no post can still be on its way, and that a delay jitter of up to τ cannot
/// bring it to the server before `t_end` (which it would refuse).
pub const DONE_MARGIN_US: i64 = 3_000;
/// No post leaves later than this before `done`: so `done`, which the room sees as the
/// time of `closed`, never waits on a post (docs/protocol.md §4: what others see must not
/// depend on one's own posts).
pub const DONE_QUIET_US: i64 = 500;
/// `done` is said at most this many times a round: after a `too_early` refusal of the k-th,
/// again 2·(k+1) ms later.
pub const DONE_TIMES: u32 = 5;
/// Browser policy: a round re-syncs the clock when fewer of its timed posts than this share
/// landed within τ of their prediction (or more than a quarter were skipped).
pub const ALIGNED_SHARE: f64 = 0.8;
/// Browser policy: give up after more than this many failures in a row …
pub const RETRIES_IN_A_ROW: u32 = 20;
/// … that span more than this long without a round that counted for both posters …
pub const GIVE_UP_US: i64 = 30_000_000;
/// … or after this many in all.
pub const TOTAL_RETRIES: u32 = 3_000;

/// A post may leave at most this long after its planned time: `LATE_SHARE` of the mean gap
/// between this poster's posts (1 ms at the default 500 Hz).
pub fn late_limit_us(mean_gap_us: f64) -> i64 {
    if mean_gap_us.is_finite() && mean_gap_us > 0.0 {
        (LATE_SHARE * mean_gap_us).round() as i64
    } else {
        i64::MAX / 4
    }
}

/// Where the two drivers differ (docs/poster.md, "the policy").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `sgp pair`: re-sync after every failure, keep the bias, give up after `retries`
    /// failures in all, and a peer that leaves ends the run.
    Terminal { retries: u32 },
    /// The page: re-sync only when a round showed the sync off, start the bias again with
    /// each sync, give up after a long run of failures without progress.
    Browser,
}

/// The round being posted.
struct Posting {
    session: String,
    round: u32,
    facts: RoundFacts,
    /// Local targets and labels, once scheduled.
    plan: Vec<(i64, Label)>,
    scheduled: bool,
    next: usize,
    /// The target of the post last handed out, until `sent`.
    target: Option<i64>,
    done_at: i64,
    /// `done` actions given this round, and when to give it again after `too_early`.
    done_times: u32,
    redo_at: Option<i64>,
}

/// The last closed round that counts for us, until the next `start`: a peer's `drop` can still
/// narrow it (docs/protocol.md §5.3), and then it is derived again.
struct Open {
    session: String,
    round: u32,
    board: Vec<Entry>,
    facts: RoundFacts,
    timed: Vec<OwnPost>,
    peer_spans: Vec<Span>,
    /// Drops of this round applied: ours (if we sent one) and the peer's.
    drops: u32,
}

enum Stage {
    /// Not posting: waiting for a sync, a `start` or a verdict.
    Between,
    Posting(Box<Posting>),
    Open(Box<Open>),
}

/// A round of this session that counts: (round, n, a, bits).
type Counted = (u32, u32, u32, Vec<bool>);

/// One poster (docs/poster.md).
pub struct Poster {
    policy: Policy,
    room: String,
    role: Role,
    me: Label,
    params: Params,
    sync: Option<SyncSample>,
    /// Learnt from our own posts (`refine`).
    bias_us: i64,
    session: Option<String>,
    counted: Vec<Counted>,
    last_closed: Option<u32>,
    stage: Stage,
    peer_tag: Option<String>,
    /// The key our outstanding `confirm` stands for (its tag is what we confirmed).
    key: Option<KeyMade>,
    failures_in_a_row: u32,
    failures: u32,
    progress_at: i64,
    last_ok: bool,
    need_sync: bool,
    rounds_used: u32,
    /// Making a key: from `start` (or a round's `start`) until a key, a failure or the end.
    running: bool,
    /// Our ask for the next round (`adapt`); none: the room's parameters, and every failure
    /// counts.
    adapt: Option<Adapt>,
    /// The least lead we ask for with each adapting `ready` (ms; none: the room's default).
    lead_ms: Option<f64>,
    /// Our own verdict on the last round's failure, if we made one: whether it came at the
    /// widest ask (and so counts toward giving up).
    failed_widest: Option<bool>,
}

impl Poster {
    /// A poster of `room` as `role` (alice or bob) under the room's `params`.
    pub fn new(policy: Policy, room: &str, role: Role, params: Params) -> Result<Poster, String> {
        let me = role.label().ok_or("an observer does not post")?;
        Ok(Poster {
            policy,
            room: room.to_string(),
            role,
            me,
            params,
            sync: None,
            bias_us: 0,
            session: None,
            counted: Vec::new(),
            last_closed: None,
            stage: Stage::Between,
            peer_tag: None,
            key: None,
            failures_in_a_row: 0,
            failures: 0,
            progress_at: 0,
            last_ok: false,
            need_sync: true,
            rounds_used: 0,
            running: false,
            adapt: None,
            lead_ms: None,
            failed_widest: None,
        })
    }

    /// Ask for τ and the rate each round from our own outcomes (docs/poster.md, "Adapting"),
    /// between `floor_us` (the tolerance rule's pick for our path) and `ceil_us`
    /// (`widest_us` of our round trips). Failures then count only at the widest ask.
    pub fn adapt(&mut self, floor_us: i64, ceil_us: i64) {
        self.adapt = Some(Adapt::new(floor_us, ceil_us));
    }

    /// Asks for a lead of `ms` (docs/protocol.md §3) with each ask (so only if we adapt).
    pub fn ask_lead(&mut self, ms: f64) {
        self.lead_ms = Some(ms);
    }

    /// Our current ask, if we adapt.
    pub fn ask(&self) -> Option<&Adapt> {
        self.adapt.as_ref()
    }

    fn ready(&self) -> Action {
        let ask = self.adapt.as_ref().map(|a| {
            let (tolerance_ms, rate_div) = a.ask();
            Ask { tolerance_ms, rate_div, lead_ms: self.lead_ms }
        });
        Action::Send(ClientMsg::Ready { ask })
    }

    /// The last round number started (for reports).
    pub fn rounds_used(&self) -> u32 {
        self.rounds_used
    }

    /// The room's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// To make a key: measure the clock first.
    pub fn start(&mut self, now: i64) -> Vec<Action> {
        self.stage = Stage::Between;
        self.session = None;
        self.counted.clear();
        self.failures_in_a_row = 0;
        self.failures = 0;
        self.progress_at = now;
        self.last_ok = false;
        self.running = true;
        vec![Action::Sync]
    }

    /// The clock sync asked for by `Action::Sync`: say `ready`.
    pub fn synced(&mut self, sample: SyncSample, _now: i64) -> Vec<Action> {
        if self.policy == Policy::Browser {
            // The bias was learnt against the old sync; a new one starts from the pings alone.
            self.bias_us = 0;
        }
        self.sync = Some(sample);
        self.need_sync = false;
        if !self.running {
            return Vec::new();
        }
        vec![self.ready()]
    }

    /// When the engine next wants `on_timeout`: the next post's target, then `done`'s time,
    /// then a `done` to say again.
    pub fn next_deadline(&self) -> Option<i64> {
        let Stage::Posting(p) = &self.stage else { return None };
        if !p.scheduled {
            return None;
        }
        match p.plan.get(p.next) {
            Some(x) => Some(x.0),
            None if p.done_times == 0 => Some(p.done_at),
            None => p.redo_at,
        }
    }

    /// Time has come (`now ≥ next_deadline()`): the late rule skips the posts it is too late
    /// for, then the next post or `done` is due (`leave` checks it again at the send).
    pub fn on_timeout(&mut self, now: i64) -> Vec<Action> {
        let Stage::Posting(p) = &mut self.stage else { return Vec::new() };
        if !p.scheduled {
            return Vec::new();
        }
        while let Some(&(target, label)) = p.plan.get(p.next) {
            let latest = (target + p.facts.late_limit_us).min(p.done_at - DONE_QUIET_US);
            if now > latest {
                p.facts.skipped.push(target);
                p.facts.skip_late_us = p.facts.skip_late_us.max(now - target);
                p.next += 1;
            } else if now >= target {
                p.next += 1;
                p.target = Some(target);
                return vec![Action::Post { label, target_us: target }];
            } else {
                return Vec::new();
            }
        }
        let due = if p.done_times == 0 { now >= p.done_at } else { p.redo_at.is_some_and(|t| now >= t) };
        if due {
            p.done_times = p.done_times.max(1);
            p.redo_at = None;
            return vec![Action::Done];
        }
        Vec::new()
    }

    /// The schedule asked for by `Action::Schedule`: planned server times and labels, and the
    /// schedule's mean gap between posts (for the late rule).
    pub fn scheduled(&mut self, times_us: &[i64], labels: &[Label], mean_gap_us: f64, _now: i64) -> Vec<Action> {
        let Stage::Posting(p) = &mut self.stage else { return Vec::new() };
        if p.scheduled {
            return Vec::new();
        }
        let s = p.facts.sync;
        let shift = s.offset_us + s.delay_us.div_euclid(2);
        p.plan = times_us.iter().zip(labels).map(|(t, l)| (t - shift, *l)).collect();
        p.facts.planned = p.plan.len();
        p.facts.late_limit_us = late_limit_us(mean_gap_us);
        p.scheduled = true;
        Vec::new()
    }

    /// The driver is about to send the post `Action::Post` handed out, and `now` is the clock
    /// read just before the send (what it will give `sent` as `sent_us`). Nothing if the post
    /// may still leave; if it is now later than the late rule allows (a pause since
    /// `on_timeout` let it go), it is skipped as `on_timeout` would have skipped it (its
    /// stretch a span), and `Action::Skip` tells the driver to send nothing.
    pub fn leave(&mut self, now: i64) -> Vec<Action> {
        let Stage::Posting(p) = &mut self.stage else { return Vec::new() };
        let Some(target) = p.target else { return Vec::new() };
        if now <= (target + p.facts.late_limit_us).min(p.done_at - DONE_QUIET_US) {
            return Vec::new();
        }
        p.target = None;
        p.facts.skipped.push(target);
        p.facts.skip_late_us = p.facts.skip_late_us.max(now - target);
        vec![Action::Skip { target_us: target }]
    }

    /// A post handed out by `Action::Post` left at `post.sent_us` (for a post held back on
    /// purpose, `held`, the time recorded for it).
    pub fn sent(&mut self, post: OwnPost, held: bool, _now: i64) -> Vec<Action> {
        let Stage::Posting(p) = &mut self.stage else { return Vec::new() };
        p.facts.late.push(p.target.take().map_or(0, |t| post.sent_us - t));
        p.facts.posts.push(post);
        if held {
            p.facts.held.push(post.sent_us);
        }
        Vec::new()
    }

    /// `done` left.
    pub fn done_sent(&mut self, now: i64) -> Vec<Action> {
        if let Stage::Posting(p) = &mut self.stage {
            p.facts.done_us.get_or_insert(now);
        }
        Vec::new()
    }

    /// A message from the server, received at `now`.
    pub fn handle(&mut self, msg: ServerMsg, now: i64) -> Vec<Action> {
        match msg {
            ServerMsg::Start { session, round, t_start_us, t_end_us, params } => self.on_start(session, round, (t_start_us, t_end_us), params, now),
            ServerMsg::Closed { session, round, board } => self.on_closed(&session, round, board),
            ServerMsg::Dropped { session, round, spans } => self.on_dropped(&session, round, spans),
            ServerMsg::Confirm { role, tag } => {
                if role != self.role {
                    self.peer_tag = Some(tag);
                }
                Vec::new()
            }
            ServerMsg::Confirmed { matched } => self.on_confirmed(matched, now),
            ServerMsg::Aborted { reason } => self.on_aborted(reason, now),
            ServerMsg::Reset {} => self.on_reset(now),
            ServerMsg::Error { code, .. } => self.on_error(code, now),
            ServerMsg::Peer { event, role } => self.on_peer(event, role),
            ServerMsg::Coalesced { post, count } => {
                if let Stage::Posting(p) = &mut self.stage {
                    let sent = p.facts.posts.len();
                    p.facts.coalesced.extend(coalesced_range(post, count, sent));
                }
                Vec::new()
            }
            ServerMsg::Joined { .. } | ServerMsg::Pong { .. } | ServerMsg::Board { .. } => Vec::new(),
        }
    }
}

/// The posts a `coalesced {post, count}` names, within the `sent` we made.
fn coalesced_range(post: u32, count: u32, sent: usize) -> std::ops::Range<u32> {
    let end = post.saturating_add(count).min(u32::try_from(sent).unwrap_or(u32::MAX).saturating_add(1));
    post.min(end)..end
}

/// The transitions, one per message (docs/poster.md).
impl Poster {
    fn on_start(&mut self, session: String, round: u32, (t_start, t_end): (i64, i64), params: Params, now: i64) -> Vec<Action> {
        let Some(sync) = self.sync else {
            // Cannot happen (`ready` follows a sync): post nothing rather than post blind.
            return Vec::new();
        };
        if self.session.as_deref() != Some(session.as_str()) {
            self.session = Some(session.clone());
            self.counted.clear();
        }
        if self.last_ok {
            self.failures_in_a_row = 0; // both posters counted the last round: progress
            self.progress_at = now;
        }
        self.last_ok = false;
        self.running = true; // only our own `ready` can start a round
        self.key = None;
        self.peer_tag = None;
        self.rounds_used = round;
        let sync = SyncSample { offset_us: sync.offset_us + self.bias_us, delay_us: sync.delay_us };
        let shift = sync.offset_us + sync.delay_us.div_euclid(2);
        let done_at = t_end - shift + DONE_MARGIN_US + 2 * params.tolerance_us();
        let rate_hz = params.rate_hz;
        let (tol_us, guard_us) = (params.tolerance_us(), params.guard_us());
        let late_limit_us = late_limit_us(1e6 / rate_hz);
        let facts = RoundFacts { t_start, t_end, sync, late_limit_us, tol_us, guard_us, rate_hz, ..RoundFacts::default() };
        let p = Posting { session, round, facts, plan: Vec::new(), scheduled: false, next: 0, target: None, done_at, done_times: 0, redo_at: None };
        self.stage = Stage::Posting(Box::new(p));
        vec![Action::Schedule { t_start_us: t_start, t_end_us: t_end, rate_hz, shift_us: shift }]
    }

    fn on_closed(&mut self, session: &str, round: u32, board: Vec<Entry>) -> Vec<Action> {
        let p = match std::mem::replace(&mut self.stage, Stage::Between) {
            Stage::Posting(p) if p.session == session && p.round == round => p,
            other => {
                self.stage = other;
                return Vec::new();
            }
        };
        self.last_closed = Some(round);
        let facts = p.facts;
        let tol = facts.tol_us;
        let timed = facts.timed();
        let outcome = derive(&board, &facts, &timed, self.me, &[]);
        let errors = secret::arrival_errors(&board, &timed, to_sync(facts.sync));
        self.bias_us += refine(&errors, tol);
        let within = errors.iter().flatten().filter(|e| e.abs() <= tol).count();
        self.need_sync = (!timed.is_empty() && (within as f64) < ALIGNED_SHARE * timed.len() as f64) || facts.skipped.len() * SKIPPED_SHARE > facts.planned;
        let mut report = RoundReport {
            session: session.to_string(),
            round,
            outcome: Outcome::Kept,
            board,
            facts,
            view: None,
            ledger: None,
            unmatched: None,
            target_bits: self.params.target_bits,
        };
        let view = match outcome {
            RoundOutcome::Desync { unmatched, total } => {
                report.outcome = Outcome::Desync;
                report.unmatched = Some((unmatched, total));
                return self.round_failed(report, Some(Verdict::Desync));
            }
            RoundOutcome::Ok(_) if held_passed(&report, &timed, tol) => {
                report.outcome = Outcome::Held;
                return self.round_failed(report, None);
            }
            RoundOutcome::Ok(_) if report.facts.spoiled() => {
                report.outcome = Outcome::Late;
                let f = &report.facts;
                let late = Verdict::Late { late_us: f.late_us().max(f.skip_late_us), limit_us: f.late_limit_us };
                return self.round_failed(report, Some(late));
            }
            RoundOutcome::Ok(v) => v,
        };
        if let Some(a) = &mut self.adapt {
            a.after(Verdict::Kept { n: view.n, left_out: view.dropped.len() as u32, spans: view.spans.len() as u32 });
        }
        self.keep_round(report, view, timed)
    }

    /// A round of ours we cannot use: our ask widens (the `desync` we send comes back as the
    /// room's `aborted`, and that is the failure, counted if we asked the widest already; a
    /// held post's, testing only, always is).
    fn round_failed(&mut self, report: RoundReport, verdict: Option<Verdict>) -> Vec<Action> {
        if let Some(a) = &mut self.adapt {
            self.failed_widest = Some(verdict.is_none_or(|v| a.widest(v)));
            if let Some(v) = verdict {
                a.after(v);
            }
        }
        vec![Action::Round(Box::new(report)), abort_desync()]
    }

    /// A round in sync: our spans go out first (so that the peer and the room leave out the
    /// same entries), then our verdict, made without the peer's spans.
    fn keep_round(&mut self, mut report: RoundReport, view: RoundView, timed: Vec<OwnPost>) -> Vec<Action> {
        let drops = u32::from(!view.spans.is_empty());
        self.counted.push((report.round, view.n, view.a, view.bits.clone()));
        self.last_ok = true;
        report.ledger = Some(self.ledger());
        let spans = view.spans.clone();
        report.view = Some(view);
        let open = Open {
            session: report.session.clone(),
            round: report.round,
            board: report.board.clone(),
            facts: report.facts.clone(),
            timed,
            peer_spans: Vec::new(),
            drops,
        };
        let mut out = Vec::new();
        if drops > 0 {
            out.push(Action::Send(ClientMsg::Drop { spans }));
        }
        out.push(Action::Round(Box::new(report)));
        out.extend(self.verdict(&open.session, open.round, drops));
        self.stage = Stage::Open(Box::new(open));
        out
    }

    /// The peer left out spans of the round we just derived: derive it again with them, and
    /// say our verdict again if it was a confirm (the server voided it; a `ready` stands:
    /// fewer entries never make a key where there was none).
    fn on_dropped(&mut self, session: &str, round: u32, spans: Vec<Span>) -> Vec<Action> {
        let Stage::Open(o) = &mut self.stage else { return Vec::new() };
        if o.session != session || o.round != round || spans.is_empty() {
            return Vec::new();
        }
        o.peer_spans.extend_from_slice(&spans);
        o.drops += 1;
        let outcome = derive(&o.board, &o.facts, &o.timed, self.me, &o.peer_spans);
        let (session, drops) = (o.session.clone(), o.drops);
        let RoundOutcome::Ok(view) = outcome else {
            // Cannot happen (spans only leave entries out), but never confirm on it.
            self.stage = Stage::Between;
            self.counted.retain(|k| k.0 != round);
            self.last_ok = false;
            let mut out = self.void_key(&session, round, 0);
            out.push(abort_desync());
            return out;
        };
        if let Some(k) = self.counted.iter_mut().find(|k| k.0 == round) {
            *k = (round, view.n, view.a, view.bits.clone());
        }
        let mut out = vec![Action::Dropped { session: session.clone(), round, spans, view, ledger: self.ledger() }];
        if self.key.is_some() {
            out.extend(self.verdict(&session, round, drops));
        }
        out
    }

    /// Our verdict on the session so far: `confirm` with the key's tag once the strength
    /// reaches the target (`drops` = the drops of this round applied), else `ready`.
    fn verdict(&mut self, session: &str, round: u32, drops: u32) -> Vec<Action> {
        let ledger = self.ledger();
        if ledger.strength < self.params.target_bits {
            let mut out = self.void_key(session, round, ledger.strength);
            out.push(self.ready());
            return out;
        }
        let bits: Vec<bool> = self.counted.iter().flat_map(|r| r.3.iter().copied()).collect();
        let Ok(key) = secret::key(&self.room, session, &bits) else {
            return vec![self.ready()];
        };
        let tag = secret::tag(&key, self.params.tag_bits);
        let made = KeyMade { session: session.to_string(), key, bits, tag: tag.clone(), ledger, round, rounds: self.counted.len() as u32, drops };
        self.key = Some(made.clone());
        vec![Action::Key(Box::new(made)), Action::Send(ClientMsg::Confirm { tag, drops })]
    }

    /// The key our last confirm stood for no longer holds.
    fn void_key(&mut self, session: &str, round: u32, strength: u32) -> Vec<Action> {
        match self.key.take() {
            Some(_) => vec![Action::KeyVoid { session: session.to_string(), round, strength }],
            None => Vec::new(),
        }
    }

    /// The server's verdict on the tags: with ours matching, the key is made; else a new
    /// session. Without a confirm of ours out (voided, or none) it is not ours.
    fn on_confirmed(&mut self, matched: bool, now: i64) -> Vec<Action> {
        let Some(mine) = &self.key else {
            return Vec::new();
        };
        let matched = matched && self.peer_tag.as_deref() == Some(mine.tag.as_str());
        self.session = None;
        self.counted.clear();
        if matched {
            let key = self.key.take().map(Box::new);
            self.stop();
            return vec![Action::Confirmed { matched: true, key }];
        }
        self.key = None;
        let mut out = vec![Action::Confirmed { matched: false, key: None }];
        out.extend(self.failed("confirmation mismatch", true, now));
        out
    }

    fn on_aborted(&mut self, reason: String, now: i64) -> Vec<Action> {
        if reason == "desync" && self.session.is_some() {
            // One of us found the last round out of sync: it is dropped, the session goes on.
            self.stage = Stage::Between;
            self.key = None;
            let dropped = self.last_closed.take();
            if let Some(r) = dropped {
                self.counted.retain(|k| k.0 != r);
            }
            let mut out = vec![Action::Aborted { reason, round: dropped, session_goes_on: true }];
            let counts = self.desync_counts();
            if self.running {
                out.extend(self.failed("desync", counts, now));
            }
            return out;
        }
        let was_running = self.running;
        self.end_session();
        let mut out = vec![Action::Aborted { reason: reason.clone(), round: None, session_goes_on: false }];
        let stops = match self.policy {
            Policy::Terminal { .. } => matches!(reason.as_str(), "peer_left" | "idle"),
            Policy::Browser => matches!(reason.as_str(), "peer_left" | "idle" | "gave_up" | "user"),
        };
        if stops || !was_running {
            let message = match reason.as_str() {
                "peer_left" => "peer left the room".to_string(),
                "idle" => "the room was closed for inactivity".to_string(),
                "gave_up" => "the peer gave up".to_string(),
                "user" => "the peer stopped the session".to_string(),
                other => format!("the session was aborted ({other})"),
            };
            out.push(self.finish(&reason, message));
        } else {
            // `disagree` and anything else: a new session.
            out.extend(self.failed(&reason, true, now));
        }
        out
    }

    /// The room was reset: `sgp pair` starts again; the page stops (the person presses Start).
    fn on_reset(&mut self, now: i64) -> Vec<Action> {
        let was_running = self.running;
        self.end_session();
        if self.policy == Policy::Browser || !was_running {
            self.stop();
            return Vec::new();
        }
        self.failed("reset", true, now)
    }

    fn end_session(&mut self) {
        self.session = None;
        self.counted.clear();
        self.stage = Stage::Between;
        self.key = None;
        self.failed_widest = None;
    }

    fn on_error(&mut self, code: ErrorCode, now: i64) -> Vec<Action> {
        // Our `done` came before t_end (our estimate was early): say it again shortly, rather
        // than wait for the round's grace. Its timing depends on the sync only. Every other
        // refusal needs nothing from the engine (`expected_refusal` says which are routine).
        if code == ErrorCode::TooEarly {
            if let Stage::Posting(p) = &mut self.stage {
                if p.done_times > 0 && p.redo_at.is_none() && p.done_times < DONE_TIMES {
                    p.done_times += 1;
                    p.redo_at = Some(now + 2_000 * i64::from(p.done_times));
                }
            }
        }
        Vec::new()
    }

    /// A peer we already made rounds with is gone (between sessions the server says no more
    /// than this): for `sgp pair`, waiting for a stranger is not what was asked. The page
    /// waits: the room's `aborted {peer_left}` ends a running session.
    fn on_peer(&mut self, event: PeerEvent, role: Role) -> Vec<Action> {
        let other_poster = role != self.role && role != Role::Observer;
        let made_rounds = self.session.is_some() || self.rounds_used > 0;
        let terminal = matches!(self.policy, Policy::Terminal { .. });
        if terminal && self.running && event == PeerEvent::Left && other_poster && made_rounds {
            return vec![self.finish("peer_left", "peer left the room".into())];
        }
        Vec::new()
    }

    /// A round or a session failed: count it, then re-sync (or not) and say `ready` again,
    /// or give up.
    /// Adapting, a dropped round counts only if it failed at the widest ask. The peer may
    /// have found it out of sync before we judged it (or without our finding so): that is a
    /// desync for us too, and widens our ask as one of our own would. Not adapting, every
    /// dropped round counts.
    fn desync_counts(&mut self) -> bool {
        let Some(a) = &mut self.adapt else { return true };
        self.failed_widest.take().unwrap_or_else(|| {
            let widest = a.widest(Verdict::Desync);
            a.after(Verdict::Desync);
            widest
        })
    }

    fn failed(&mut self, why: &str, counts: bool, now: i64) -> Vec<Action> {
        if counts {
            self.failures += 1;
            self.failures_in_a_row += 1;
        }
        self.last_ok = false;
        match self.policy {
            Policy::Terminal { retries } => {
                if self.failures > retries {
                    let msg = format!("gave up after {} failed rounds or sessions (last: {why})", self.failures);
                    return vec![self.finish("retries", msg)];
                }
                vec![Action::Sync]
            }
            Policy::Browser => {
                let stuck_us = now - self.progress_at;
                let in_a_row = self.failures_in_a_row > RETRIES_IN_A_ROW && stuck_us > GIVE_UP_US;
                if in_a_row || self.failures > TOTAL_RETRIES {
                    let n = if in_a_row {
                        format!("{} failed rounds or sessions in a row, over {} s", self.failures_in_a_row, (stuck_us as f64 / 1e6).round())
                    } else {
                        format!("{} failed rounds or sessions", self.failures)
                    };
                    let abort = Action::Send(ClientMsg::Abort { reason: "gave_up".into() });
                    return vec![abort, self.finish("retries", format!("gave up after {n} (last: {why})"))];
                }
                if self.need_sync || self.sync.is_none() {
                    vec![Action::Sync]
                } else {
                    vec![self.ready()]
                }
            }
        }
    }

    /// Ends this poster's work locally: no posting goes on, no verdict is said.
    fn stop(&mut self) {
        self.running = false;
        self.stage = Stage::Between;
        self.key = None;
        self.peer_tag = None;
    }

    fn finish(&mut self, reason: &str, message: String) -> Action {
        self.stop();
        Action::Fail { reason: reason.to_string(), message }
    }

    fn ledger(&self) -> Ledger {
        let counts: Vec<(u32, u32)> = self.counted.iter().map(|r| (r.1, r.2)).collect();
        secret::ledger(&counts, self.params.tag_bits)
    }
}

fn abort_desync() -> Action {
    Action::Send(ClientMsg::Abort { reason: "desync".into() })
}

/// Our view of a closed round: its entries, less our spans (unmatched and skipped posts) and
/// the peer's.
fn derive(board: &[Entry], f: &RoundFacts, timed: &[OwnPost], me: Label, peer_spans: &[Span]) -> RoundOutcome {
    secret::derive_with_skips(board, (f.t_start, f.t_end), timed, &f.skipped, to_sync(f.sync), me, (f.tol_us, f.guard_us), peer_spans)
}

fn to_sync(s: SyncSample) -> secret::Sync {
    secret::Sync { offset_us: s.offset_us, delay_us: s.delay_us }
}

/// Testing only: a post held back on purpose passed for matched (the blind spot of
/// docs/protocol.md §5.3), so the tags would differ: the poster, knowing it, drops the round.
fn held_passed(r: &RoundReport, timed: &[OwnPost], tol: i64) -> bool {
    if r.facts.held.is_empty() {
        return false;
    }
    let mut sorted = timed.to_vec();
    sorted.sort_by_key(|q| q.sent_us);
    let ok = secret::matched_in_send_order(&r.board, &sorted, to_sync(r.facts.sync), tol);
    sorted.iter().zip(ok).any(|(q, m)| m && r.facts.held.contains(&q.sent_us))
}

/// The median error of this round's recognisable posts (within 2τ, at least 20 of them):
/// added to the offset, it centres the next round's predictions (ping and post paths differ
/// by tens of µs). Private: it uses only this poster's own posts and changes nothing anyone
/// else sees.
pub fn refine(errors: &[Option<i64>], tol_us: i64) -> i64 {
    let mut errs: Vec<i64> = errors.iter().flatten().copied().filter(|e| e.abs() <= 2 * tol_us).collect();
    if errs.len() < 20 {
        return 0;
    }
    errs.sort_unstable();
    errs[errs.len() / 2]
}

/// Refusals that come in the normal course of a round and need no word to people: a post
/// refused once the round was stopped or over (the self-check judges the round anyway), a
/// `ready` that crossed the peer's desync, a confirm during or after a dropped round, or made
/// before the peer's drop reached us (we confirm again when its `dropped` comes), and an early
/// `done` (said again).
pub fn expected_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NoRound
            | ErrorCode::OutsideWindow
            | ErrorCode::TooManyPosts
            | ErrorCode::BoardFull
            | ErrorCode::RoundRunning
            | ErrorCode::RoundDropped
            | ErrorCode::StaleConfirm
            | ErrorCode::TooEarly
    )
}

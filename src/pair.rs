//! `sgp pair`: one poster from a terminal. Creates or joins a room, syncs its clock, posts
//! on a Poisson schedule each round, derives the bits from the closed board, and confirms
//! the key with its peer. Rounds that fall out of sync are aborted and retried by themselves.
//! With `--record`, it keeps what this poster knows (key material: see `save_record`).

use crate::client::{Client, ClientError};
use crate::clock::{SyncSample, SYNC_SAMPLES};
use crate::protocol::{ClientMsg, ErrorCode, Label, Params, ParamsIn, PeerEvent, Role, ServerMsg};
use crate::schedule;
use crate::secret::{self, OwnPost, RoundOutcome};
use serde::Serialize;
use serde_json::json;
use std::time::Instant;

/// What `sgp pair` was asked for.
#[derive(Clone, Debug)]
pub struct Opts {
    pub server: String,
    pub room: Option<String>,
    pub tolerance_ms: Option<f64>,
    pub target_bits: Option<u32>,
    pub json: bool,
    /// Rounds and sessions that may fail (desync, disagreement, mismatched tags) before giving up.
    pub retries: u32,
    /// Write what this poster knows (own posts, sync, boards, messages heard) to this JSON
    /// file when it ends, however it ends.
    pub record: Option<String>,
    /// The round window, for a creator (default: PROTOCOL §7).
    pub duration_ms: Option<u32>,
    /// How to place posts: Poisson, or a leaky schedule for testing the audit (main.rs
    /// refuses those unless `schedule::LEAKY_ENV` is set).
    pub schedule: schedule::Plan,
    /// Testing only (`--testing-hold-post`, not in the usage): each post, with chance 1/16
    /// (fastrand: lateness is not secret, and a network's does not follow post numbers),
    /// leaves 3τ after the time this poster records for it, as if the network had held it.
    /// It misses τ, so the round takes the `drop` path; 3τ is less than the late rule's 4τ,
    /// so the posts after it keep their schedule. When another entry with its label
    /// happens to be within 3τ/5 of a held post's prediction, the post passes for matched (the
    /// blind spot of docs/protocol.md §5.3) and the session's tags would differ: knowing which
    /// posts it held, this poster drops such a round (`abort {desync}`) instead. It costs bits,
    /// and the audit's `loopback-held` scenario checks that the spans give nothing away.
    pub hold_post: bool,
}

/// The confirmed key and the ledger behind its strength.
#[derive(Clone, Debug, Serialize)]
pub struct KeyReport {
    pub room: String,
    pub role: Role,
    pub key: String,
    pub bits: String,
    pub strength: u32,
    pub n: u32,
    pub a: u32,
    pub log2_binom: u32,
    pub tag_bits: u32,
    pub margin_bits: u32,
    pub tag: String,
    pub rounds: u32,
    pub elapsed_ms: u64,
    pub confirmed: bool,
}

/// Why `sgp pair` ends without a key, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

pub const EXIT_OTHER: i32 = 1;
pub const EXIT_PEER_LEFT: i32 = 3;
pub const EXIT_ROOM: i32 = 4;
pub const EXIT_GONE: i32 = 5;
pub const EXIT_RETRIES: i32 = 6;

fn fail(code: i32, message: impl Into<String>) -> Failure {
    Failure { code, message: message.into() }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        match e {
            ClientError::Gone(m) => fail(EXIT_GONE, m),
            ClientError::Protocol(m) => fail(EXIT_OTHER, m),
        }
    }
}

/// How late a post may leave, as a share of the mean gap between this poster's posts. A
/// poster held up for longer (a busy machine, a stall) posts nothing for a while, and the
/// other poster's posts fill that stretch: runs of one poster, which the audit measured
/// (SECURITY.md). So a later post is skipped, and the round is *spoiled*: this poster drops
/// it (`abort {desync}`) once it closes, and it gives no bits. A hold-up of at most half a
/// mean gap changes the posters' order only if it holds a post of each, and then only
/// moves one past a neighbour or two.
const LATE_SHARE: f64 = 0.5;
/// `done` leaves `DONE_MARGIN_US + 2τ` after our estimate of the server's `t_end`: late
/// enough that no post can still be on its way, and that a delay jitter of up to τ cannot
/// bring it to the server before `t_end` (which it would refuse).
const DONE_MARGIN_US: i64 = 3_000;
/// No post leaves later than this before `done`: so `done`, which the room sees as the
/// time of `closed`, never waits on a post (PROTOCOL §4: what others see must not depend on
/// one's own posts).
const DONE_QUIET_US: i64 = 500;

struct Out {
    json: bool,
}

impl Out {
    /// One JSON line `{tag: value}` on stdout with --json, else a line for people on stderr.
    fn event(&self, tag: &str, value: serde_json::Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{}", json!({ tag: value }));
        } else {
            eprintln!("{}", human());
        }
    }
}

/// A round as this poster saw it while posting.
/// The last closed round that counts for us, until the next `start`: a peer's `drop` can still
/// narrow it (docs/protocol.md §5.3), and then it is derived again.
struct Open {
    session: String,
    round: u32,
    board: Vec<crate::protocol::Entry>,
    t_start: i64,
    t_end: i64,
    timed: Vec<OwnPost>,
    sync: secret::Sync,
    peer_spans: Vec<secret::Span>,
    /// Drops of this round applied: ours (if we sent one) and the peer's.
    drops: u32,
}

struct Posted {
    t_start: i64,
    t_end: i64,
    posts: Vec<OwnPost>,
    /// Posts (from 1) the server says came in one piece with our next message: they carry
    /// that message's time, not theirs, so they are left out of the derivation.
    coalesced: Vec<u32>,
    /// How long each post's send call took (µs), for --record.
    call_us: Vec<i64>,
    /// The clock sync the round was posted with (bias included).
    sync: SyncSample,
    /// Local time `done` was sent (None if the round was cut short).
    done_us: Option<i64>,
    /// How this poster kept its schedule.
    timing: Kept,
    /// `--testing-hold-post`: the recorded send times of the posts held back.
    held: Vec<i64>,
}

/// How well a poster kept its schedule in one round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    /// The latest a post left after its planned time, µs.
    pub late_us: i64,
    /// Posts not sent because they were too late.
    pub skipped: u32,
    /// Some post was later than the limit (or skipped): the round must be dropped.
    pub spoiled: bool,
}

/// What `--record` keeps, filled in as the run goes and written once when it ends.
#[derive(Default)]
struct Recorder {
    /// Known once the room has answered.
    joined: Option<(String, Role, Params)>,
    rounds: Vec<serde_json::Value>,
    /// Every message the room sent us, with its local receive time.
    heard: Vec<serde_json::Value>,
}

/// One poster, from connecting to a confirmed key (or a failure). With `--record`, what it
/// knew is written when it ends, whichever way: key, failure or Ctrl-C.
pub async fn run(opts: &Opts) -> Result<KeyReport, Failure> {
    let mut rec = Recorder::default();
    let result = {
        let work = run_inner(opts, &mut rec);
        tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => Err(fail(EXIT_OTHER, "interrupted")),
        }
    };
    if let (Some(path), Some((room, role, params))) = (&opts.record, &rec.joined) {
        save_record(path, room, *role, params, opts.schedule, &rec.rounds, &rec.heard)?;
    }
    result
}

async fn run_inner(opts: &Opts, rec: &mut Recorder) -> Result<KeyReport, Failure> {
    let began = Instant::now();
    let out = Out { json: opts.json };
    let mut c = Client::connect(&opts.server).await?;
    // A creator not told its tolerance measures this path first (`clock::auto_tolerance_ms`).
    let mut first_sync = None;
    let hello = match &opts.room {
        None => {
            let tolerance_ms = match opts.tolerance_ms {
                Some(t) => t,
                None => {
                    let samples = c.sync_samples(SYNC_SAMPLES).await?;
                    first_sync = crate::clock::best(&samples);
                    crate::clock::auto_tolerance_ms(&samples)
                }
            };
            ClientMsg::Create { params: Some(creator_params(opts, tolerance_ms)) }
        }
        Some(r) => ClientMsg::Join { room: r.clone(), as_: None },
    };
    c.send(&hello).await?;
    let (room, role, params) = loop {
        match c.recv().await? {
            ServerMsg::Joined { room, role, params, .. } => break (room, role, params),
            ServerMsg::Error { code, message } => {
                let exit = match code {
                    ErrorCode::NoSuchRoom | ErrorCode::RoomFull | ErrorCode::BadField => EXIT_ROOM,
                    _ => EXIT_OTHER,
                };
                return Err(fail(exit, message));
            }
            _ => continue,
        }
    };
    let me = role.label().ok_or_else(|| fail(EXIT_OTHER, "joined as an observer"))?;
    rec.joined = Some((room.clone(), role, params.clone()));
    if opts.hold_post {
        eprintln!("sgp pair: TESTING ONLY: one post in 16, at random, is held back 3τ after its recorded send time");
    }
    if opts.schedule.leaks() {
        eprintln!("sgp pair: TESTING ONLY: schedule {} gives the posters away; this key is not secret", opts.schedule.name());
    }
    if opts.room.is_none() {
        eprintln!("room {room}");
        eprintln!("join it with: sgp pair --server {} --room {room}", opts.server);
    }
    out.event("room", json!({"code": room, "role": role, "params": params}), || {
        format!("joined room {room} as {}; tolerance {} ms, target {} bits", role.as_str(), params.tolerance_ms, params.target_bits)
    });

    let mut sync = match first_sync {
        Some(s) => s,
        None => c.sync(SYNC_SAMPLES).await?,
    };
    emit_sync(&out, sync);
    // Learnt from our own posts (see `refine`); kept across re-syncs.
    let mut bias_us = 0i64;
    c.send(&ClientMsg::Ready {}).await?;

    let mut rng = fastrand::Rng::new();
    let mut session: Option<String> = None;
    // The rounds of this session that count: (round, n, a, bits).
    let mut kept_rounds: Vec<(u32, u32, u32, Vec<bool>)> = Vec::new();
    let mut last_closed: Option<u32> = None;
    let mut posted: Option<Posted> = None;
    let mut my_tag: Option<String> = None;
    let mut peer_tag: Option<String> = None;
    let mut failures = 0u32;
    let mut rounds_used = 0u32;
    let mut pending: Option<(ServerMsg, i64)> = None;
    let mut open: Option<Open> = None;

    loop {
        let (msg, heard_at) = match pending.take() {
            Some(m) => m,
            None => c.recv_timed().await?,
        };
        if opts.record.is_some() && !matches!(msg, ServerMsg::Pong { .. }) {
            rec.heard.push(json!({"t_us": heard_at, "msg": msg}));
        }
        // Set when a round or a session failed: count it, re-sync, and say ready again.
        let mut failed: Option<String> = None;
        match msg {
            ServerMsg::Start { session: s, round, t_start_us, t_end_us, params: p } => {
                if session.as_deref() != Some(s.as_str()) {
                    session = Some(s);
                    kept_rounds.clear();
                }
                my_tag = None;
                peer_tag = None;
                open = None;
                let round_sync = SyncSample { offset_us: sync.offset_us + bias_us, delay_us: sync.delay_us };
                let (sent, done_us, timing, interrupt) = post_round(&mut c, &p, t_start_us, t_end_us, round_sync, (opts.schedule, opts.hold_post), &mut rng, opts.record.is_some().then_some(&mut rec.heard)).await?;
                rounds_used = round;
                posted = Some(Posted {
                    t_start: t_start_us,
                    t_end: t_end_us,
                    posts: sent.posts,
                    coalesced: sent.coalesced,
                    call_us: sent.call_us,
                    held: sent.held,
                    sync: round_sync,
                    done_us,
                    timing,
                });
                pending = interrupt;
            }
            ServerMsg::Closed { session: s, round, board } => {
                let Some(p) = posted.take() else { continue };
                if session.as_deref() != Some(s.as_str()) {
                    continue;
                }
                last_closed = Some(round);
                if opts.record.is_some() {
                    rec.rounds.push(json!({"session": s, "round": round, "t_start_us": p.t_start, "t_end_us": p.t_end,
                        "sync": {"offset_us": p.sync.offset_us, "delay_us": p.sync.delay_us}, "posts": p.posts, "board": board,
                        "coalesced": p.coalesced, "send_call_us": p.call_us,
                        "done_us": p.done_us, "late_us": p.timing.late_us, "skipped": p.timing.skipped, "spoiled": p.timing.spoiled}));
                }
                let timed = timed_posts(&p.posts, &p.coalesced);
                let outcome = secret::derive_round(
                    &board, p.t_start, p.t_end, &timed, to_sync(p.sync), me, params.tolerance_us(), params.guard_us(), &[],
                );
                bias_us += refine(p.sync, &board, &timed, params.tolerance_us());
                let blind = || {
                    let mut sorted = timed.clone();
                    sorted.sort_by_key(|q| q.sent_us);
                    let ok = secret::matched_in_send_order(&board, &sorted, to_sync(p.sync), params.tolerance_us());
                    sorted.iter().zip(ok).any(|(q, m)| m && p.held.contains(&q.sent_us))
                };
                match outcome {
                    RoundOutcome::Ok(_) if opts.hold_post && blind() => {
                        out.event("round", json!({"session": s, "round": round, "n": board.len(), "kept": null, "aborted": "held_post_matched"}), || {
                            format!("round {round}: a held post passes for matched (testing only); dropping it")
                        });
                        c.send(&ClientMsg::Abort { reason: "desync".into() }).await?;
                    }
                    RoundOutcome::Ok(_) if p.timing.spoiled => {
                        out.event(
                            "round",
                            json!({"session": s, "round": round, "n": board.len(), "kept": null, "posts": p.posts.len(), "aborted": "late", "late_us": p.timing.late_us, "skipped": p.timing.skipped}),
                            || format!("round {round}: this poster could not keep its schedule (a post {} µs late, {} skipped); dropping it", p.timing.late_us, p.timing.skipped),
                        );
                        c.send(&ClientMsg::Abort { reason: "desync".into() }).await?;
                    }
                    RoundOutcome::Desync { unmatched, total } => {
                        out.event(
                            "round",
                            json!({"session": s, "round": round, "n": board.len(), "kept": null, "posts": total, "aborted": "desync", "unmatched": unmatched}),
                            || format!("round {round}: out of sync ({unmatched} of my {total} posts not found on the board); retrying"),
                        );
                        c.send(&ClientMsg::Abort { reason: "desync".into() }).await?;
                    }
                    RoundOutcome::Ok(v) => {
                        let drops = u32::from(!v.spans.is_empty());
                        if drops > 0 {
                            if let Some(r) = rec.rounds.last_mut().filter(|_| opts.record.is_some()) {
                                r["spans"] = json!(v.spans);
                            }
                            out.event(
                                "drop",
                                json!({"session": s, "round": round, "spans": v.spans, "left_out": v.dropped.len()}),
                                || format!("round {round}: some of my posts missed τ; leaving out the {} kept entries around them", v.dropped.len()),
                            );
                            c.send(&ClientMsg::Drop { spans: v.spans.clone() }).await?;
                        }
                        let left_out = v.dropped.len();
                        kept_rounds.push((round, v.n, v.a, v.bits));
                        let (counts, _) = totals(&kept_rounds);
                        let ledger = secret::ledger(&counts, params.tag_bits);
                        out.event(
                            "round",
                            json!({"session": s, "round": round, "n": board.len(), "kept": v.n, "left_out": left_out, "posts": p.posts.len(), "strength": ledger.strength}),
                            || format!("round {round}: {} entries, {} kept; strength so far {} of {} bits", board.len(), counts.last().map_or(0, |c| c.0), ledger.strength, params.target_bits),
                        );
                        my_tag = verdict(&mut c, &kept_rounds, &params, &room, &s, drops).await?;
                        open = Some(Open {
                            session: s,
                            round,
                            board,
                            t_start: p.t_start,
                            t_end: p.t_end,
                            timed,
                            sync: to_sync(p.sync),
                            peer_spans: Vec::new(),
                            drops,
                        });
                    }
                }
            }
            ServerMsg::Dropped { session: s, round, spans } => {
                // The peer left out spans of the round we just derived: derive it again with
                // them, and say our verdict again if it was a confirm (the server voided it).
                let Some(o) = open.as_mut().filter(|o| o.session == s && o.round == round) else { continue };
                o.peer_spans.extend_from_slice(&spans);
                o.drops += 1;
                match secret::derive_round(&o.board, o.t_start, o.t_end, &o.timed, o.sync, me, params.tolerance_us(), params.guard_us(), &o.peer_spans) {
                    RoundOutcome::Ok(v) => {
                        out.event("dropped", json!({"session": s, "round": round, "spans": spans, "kept": v.n, "left_out": v.dropped.len()}), || {
                            format!("round {round}: the peer left out {} span(s) around its late posts; {} entries kept", spans.len(), v.n)
                        });
                        if let Some(k) = kept_rounds.iter_mut().find(|k| k.0 == round) {
                            *k = (round, v.n, v.a, v.bits);
                        }
                        // A `ready` stands whatever the peer drops; a `confirm` (we hold a tag) does not.
                        if my_tag.is_some() {
                            my_tag = verdict(&mut c, &kept_rounds, &params, &room, &s, o.drops).await?;
                        }
                    }
                    // Cannot happen (spans only leave entries out), but never confirm on it.
                    RoundOutcome::Desync { .. } => {
                        open = None;
                        c.send(&ClientMsg::Abort { reason: "desync".into() }).await?;
                    }
                }
            }
            ServerMsg::Confirm { role: r, tag } => {
                if r != role {
                    peer_tag = Some(tag);
                }
            }
            ServerMsg::Confirmed { matched } => {
                if matched && my_tag.is_some() && my_tag == peer_tag {
                    let (counts, bits) = totals(&kept_rounds);
                    let ledger = secret::ledger(&counts, params.tag_bits);
                    let key = secret::key(&room, session.as_deref().unwrap_or(""), &bits).map_err(|e| fail(EXIT_OTHER, e))?;
                    let report = KeyReport {
                        room: room.clone(),
                        role,
                        key: secret::hex(&key),
                        bits: secret::bits_string(&bits),
                        strength: ledger.strength,
                        n: ledger.n,
                        a: ledger.a,
                        log2_binom: ledger.log2_binom,
                        tag_bits: ledger.tag_bits,
                        margin_bits: ledger.margin_bits,
                        tag: my_tag.clone().unwrap_or_default(),
                        rounds: rounds_used,
                        elapsed_ms: began.elapsed().as_millis() as u64,
                        confirmed: true,
                    };
                    c.close().await;
                    return Ok(report);
                }
                out.event("confirmed", json!({"match": false}), || "confirmation tags differ: discarding the key and starting again".into());
                failed = Some("confirmation mismatch".into());
            }
            ServerMsg::Aborted { reason } if reason == "desync" && session.is_some() => {
                // One of us found the last round out of sync: it is dropped, the session goes on.
                posted = None;
                open = None;
                my_tag = None;
                let dropped = last_closed.take();
                if let Some(r) = dropped {
                    kept_rounds.retain(|k| k.0 != r);
                }
                out.event("aborted", json!({"reason": reason, "round": dropped}), || "round dropped (out of sync); posting another".into());
                failed = Some("desync".into());
            }
            ServerMsg::Aborted { reason } => {
                session = None;
                posted = None;
                match reason.as_str() {
                    "peer_left" => return Err(fail(EXIT_PEER_LEFT, "peer left the room")),
                    "idle" => return Err(fail(EXIT_OTHER, "the room was closed for inactivity")),
                    _ => {
                        out.event("aborted", json!({"reason": reason}), || format!("session aborted ({reason}); starting again"));
                        failed = Some(reason);
                    }
                }
            }
            ServerMsg::Reset {} => {
                session = None;
                posted = None;
                out.event("reset", json!({}), || "the room was reset; starting again".into());
                failed = Some("reset".into());
            }
            // Our confirm crossed the peer's drop: we confirm again when its `dropped` comes.
            ServerMsg::Error { code: ErrorCode::StaleConfirm, .. } => {}
            ServerMsg::Error { code, message } => {
                out.event("error", json!({"code": code, "message": message}), || format!("server: {message}"));
            }
            ServerMsg::Peer { event, role: r } => {
                out.event("peer", json!({"event": event, "role": r}), || format!("{} {:?}", r.as_str(), event).to_lowercase());
                // A peer we already made rounds with is gone (between sessions the server
                // says no more than this): waiting for a stranger is not what was asked.
                if event == PeerEvent::Left && r != role && r != Role::Observer && (session.is_some() || rounds_used > 0) {
                    return Err(fail(EXIT_PEER_LEFT, "peer left the room"));
                }
            }
            ServerMsg::Coalesced { post, count } => {
                if let Some(p) = posted.as_mut() {
                    p.coalesced.extend(coalesced_range(post, count, p.posts.len()));
                }
            }
            ServerMsg::Joined { .. } | ServerMsg::Pong { .. } | ServerMsg::Board { .. } => {}
        }
        if let Some(why) = failed {
            failures += 1;
            if failures > opts.retries {
                return Err(fail(EXIT_RETRIES, format!("gave up after {failures} failed rounds or sessions (last: {why})")));
            }
            sync = c.sync(SYNC_SAMPLES).await?;
            emit_sync(&out, sync);
            c.send(&ClientMsg::Ready {}).await?;
        }
    }
}

/// Says our verdict on the session so far: `confirm` with the key's tag once the strength
/// reaches the target (`drops` = the drops of this round applied), else `ready`. Returns the
/// tag confirmed.
async fn verdict(
    c: &mut Client,
    kept_rounds: &[(u32, u32, u32, Vec<bool>)],
    params: &Params,
    room: &str,
    session: &str,
    drops: u32,
) -> Result<Option<String>, Failure> {
    let (counts, bits) = totals(kept_rounds);
    if secret::ledger(&counts, params.tag_bits).strength >= params.target_bits {
        let key = secret::key(room, session, &bits).map_err(|e| fail(EXIT_OTHER, e))?;
        let tag = secret::tag(&key, params.tag_bits);
        c.send(&ClientMsg::Confirm { tag: tag.clone(), drops }).await?;
        Ok(Some(tag))
    } else {
        c.send(&ClientMsg::Ready {}).await?;
        Ok(None)
    }
}

/// The creator's room parameters, at tolerance `tol` (ms).
fn creator_params(opts: &Opts, tol: f64) -> ParamsIn {
    let mut p = ParamsIn { tolerance_ms: Some(tol), target_bits: opts.target_bits, duration_ms: opts.duration_ms, ..Default::default() };
    // A fixed-gap schedule needs a window that holds its 16 posts.
    if p.duration_ms.is_none() {
        p.duration_ms = opts.schedule.window_ms(crate::protocol::default_guard_ms(tol));
    }
    p
}

/// Writes what this poster knows (`--record`): its rounds (own posts with send times, sync,
/// boards, when it sent `done`) and every message it heard, with local times. This is key
/// material — own posts and sync rebuild the key — so the file is created 0600 (written to a
/// temporary file beside it, then renamed over it).
fn save_record(
    path: &str,
    room: &str,
    role: Role,
    params: &Params,
    plan: schedule::Plan,
    rounds: &[serde_json::Value],
    heard: &[serde_json::Value],
) -> Result<(), Failure> {
    let doc = json!({"room": room, "role": role, "params": params, "schedule": plan.name(),
        "clock": "local µs; predicted server time = sent_us + sync.offset_us + floor(sync.delay_us / 2)",
        "rounds": rounds, "messages": heard});
    write_private(path, doc.to_string().as_bytes()).map_err(|e| fail(EXIT_OTHER, format!("cannot write {path}: {e}")))
}

/// Writes `bytes` to `path` readable by its owner only.
pub fn write_private(path: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = format!("{path}.tmp{}", std::process::id());
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    let written = f.write_all(bytes).and_then(|_| f.sync_all()).and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The posts whose time the board reflects: all but those the server said were coalesced
/// with a later message (their entries share that message's `t_us`, so the public sift
/// never keeps them; counting them would only make the self-check fail).
fn timed_posts(posts: &[OwnPost], coalesced: &[u32]) -> Vec<OwnPost> {
    posts.iter().enumerate().filter(|(k, _)| !coalesced.contains(&(*k as u32 + 1))).map(|(_, p)| *p).collect()
}

/// The posts a `coalesced {post, count}` names, within the `sent` we made.
fn coalesced_range(post: u32, count: u32, sent: usize) -> std::ops::Range<u32> {
    let end = post.saturating_add(count).min(u32::try_from(sent).unwrap_or(u32::MAX).saturating_add(1));
    post.min(end)..end
}

/// The counts and the concatenated bits of the rounds that count.
fn totals(rounds: &[(u32, u32, u32, Vec<bool>)]) -> (Vec<(u32, u32)>, Vec<bool>) {
    (rounds.iter().map(|r| (r.1, r.2)).collect(), rounds.iter().flat_map(|r| r.3.iter().copied()).collect())
}

/// The median error of this round's recognisable posts: added to the offset, it centres the
/// next round's predictions (ping and post paths differ by tens of µs). Private: it uses
/// only this poster's own posts and changes nothing anyone else sees.
fn refine(sync: SyncSample, board: &[crate::protocol::Entry], posts: &[OwnPost], tol_us: i64) -> i64 {
    let mut errs: Vec<i64> = secret::arrival_errors(board, posts, to_sync(sync))
        .into_iter()
        .flatten()
        .filter(|e| e.abs() <= 2 * tol_us)
        .collect();
    if errs.len() < 20 {
        return 0;
    }
    errs.sort_unstable();
    errs[errs.len() / 2]
}

fn emit_sync(out: &Out, s: SyncSample) {
    out.event("sync", json!({"offset_us": s.offset_us, "delay_us": s.delay_us}), || {
        format!("clock offset {} µs, round-trip delay {} µs", s.offset_us, s.delay_us)
    });
}

fn to_sync(s: SyncSample) -> secret::Sync {
    secret::Sync { offset_us: s.offset_us, delay_us: s.delay_us }
}

const POST_A: &str = r#"{"type":"post","label":"A"}"#;
const POST_B: &str = r#"{"type":"post","label":"B"}"#;

/// What one round's posting produced.
#[derive(Default)]
struct Sent {
    /// The posts, with their real send times.
    posts: Vec<OwnPost>,
    /// The posts the server said were coalesced (`ServerMsg::Coalesced`), from 1.
    coalesced: Vec<u32>,
    /// How long each post's send call took.
    call_us: Vec<i64>,
    /// `--testing-hold-post`: the recorded send times of the posts held back.
    held: Vec<i64>,
}

/// Posts one round on its schedule (Poisson unless testing), then sends `done` at a time
/// fixed by `t_end` alone. Returns what was sent, when `done` left, how the schedule was
/// kept, and a message that cut the round short.
#[allow(clippy::too_many_arguments)]
async fn post_round(
    c: &mut Client,
    params: &Params,
    t_start: i64,
    t_end: i64,
    sync: SyncSample,
    (plan, hold_post): (schedule::Plan, bool),
    rng: &mut fastrand::Rng,
    mut heard: Option<&mut Vec<serde_json::Value>>,
) -> Result<(Sent, Option<i64>, Kept, Option<(ServerMsg, i64)>), Failure> {
    let planned = plan.times(t_start, t_end, params.rate_hz, rng);
    let labels = schedule::os_labels(planned.len()).map_err(|e| fail(EXIT_OTHER, e))?;
    // A post sent at local time s is predicted to arrive at server time s + shift.
    let shift = sync.offset_us + sync.delay_us.div_euclid(2);
    let clock = c.clock;
    let mut sent = Sent { posts: Vec::with_capacity(planned.len()), ..Sent::default() };
    let done_at = t_end - shift + DONE_MARGIN_US + 2 * params.tolerance_us();
    let late_limit = late_limit_us(plan.mean_gap_us(params.rate_hz));
    let mut kept = Kept::default();
    let targets = planned.iter().map(|p| p - shift).chain(std::iter::once(done_at));
    for (k, target) in targets.enumerate() {
        let is_done = k == planned.len();
        let now = clock.now_us();
        if !is_done && (now > target + late_limit || now > done_at - DONE_QUIET_US) {
            kept.skipped += 1;
            continue;
        }
        loop {
            tokio::select! {
                biased;
                m = c.recv_timed() => match m? {
                    m @ (ServerMsg::Aborted { .. } | ServerMsg::Reset {} | ServerMsg::Closed { .. }, _) => return Ok((sent, None, kept, Some(m))),
                    (m, t) => {
                        if let ServerMsg::Coalesced { post, count } = m {
                            let n = sent.posts.len();
                            sent.coalesced.extend(coalesced_range(post, count, n));
                        }
                        if let Some(h) = heard.as_deref_mut() {
                            if !matches!(m, ServerMsg::Pong { .. }) {
                                h.push(json!({"t_us": t, "msg": m}));
                            }
                        }
                    }
                },
                _ = schedule::wait_until(&clock, target) => break,
            }
        }
        if is_done {
            let done_us = c.send(&ClientMsg::Done {}).await?;
            kept.spoiled = kept.skipped > 0 || kept.late_us > late_limit;
            return Ok((sent, Some(done_us), kept, None));
        } else if clock.now_us() > (done_at - DONE_QUIET_US).min(target + late_limit) {
            // Woken too late (a busy machine): skipped, as above.
            kept.skipped += 1;
            continue;
        } else {
            let label = labels[k];
            let held = (hold_post && rng.u32(..16) == 0).then(|| clock.now_us());
            if held.is_some() {
                schedule::wait_until(&clock, clock.now_us() + 3 * params.tolerance_us()).await;
            }
            let (sent_us, after) = c.send_text_timed(if label == Label::A { POST_A } else { POST_B }.to_string()).await?;
            let sent_us = held.unwrap_or(sent_us);
            kept.late_us = kept.late_us.max(sent_us - target);
            sent.posts.push(OwnPost { sent_us, label });
            if held.is_some() {
                sent.held.push(sent_us);
            }
            sent.call_us.push(after - sent_us);
        }
    }
    kept.spoiled = true; // `done` was never sent: cut short
    Ok((sent, None, kept, None))
}

/// A post may leave at most this long after its planned time: `LATE_SHARE` of the mean gap
/// between this poster's posts (1 ms at the default 500 Hz).
pub fn late_limit_us(mean_gap_us: f64) -> i64 {
    if mean_gap_us.is_finite() && mean_gap_us > 0.0 {
        (LATE_SHARE * mean_gap_us).round() as i64
    } else {
        i64::MAX / 4
    }
}

/// Prints the key for people.
pub fn print_human(r: &KeyReport) {
    println!("key       {}", r.key);
    println!(
        "strength  {} bits = floor(log2 ∏C) {} − tag {} − margin {}  (n = {} kept entries, a = {} from alice)",
        r.strength, r.log2_binom, r.tag_bits, r.margin_bits, r.n, r.a
    );
    println!("confirmed {}  (tag {})", if r.confirmed { "yes" } else { "no" }, r.tag);
    println!("rounds    {}  elapsed {} ms", r.rounds, r.elapsed_ms);
    println!("bits      {}", r.bits);
}

//! `sgp pair`: one poster from a terminal. Creates or joins a room, syncs its clock, posts
//! on a Poisson schedule each round, derives the bits from the closed board, and confirms
//! the key with its peer. Rounds that fall out of sync are aborted and retried by themselves.

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
    /// Write what this poster knows (own posts, sync, boards) to this JSON file after each round.
    pub record: Option<String>,
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

/// A post is skipped, not sent late, when the schedule is this far behind.
const LATE_SKIP_US: i64 = 2_000;
/// `done` leaves this long after our estimate of the server's `t_end`.
const DONE_MARGIN_US: i64 = 1_000;

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
struct Posted {
    t_start: i64,
    t_end: i64,
    posts: Vec<OwnPost>,
    /// Posts (from 1) the server says came in one piece with our next message: they carry
    /// that message's time, not theirs, so they are left out of the derivation.
    coalesced: Vec<u32>,
    /// The clock sync the round was posted with (bias included).
    sync: SyncSample,
}

pub async fn run(opts: &Opts) -> Result<KeyReport, Failure> {
    let began = Instant::now();
    let out = Out { json: opts.json };
    let mut c = Client::connect(&opts.server).await?;
    let hello = match &opts.room {
        None => ClientMsg::Create {
            params: Some(ParamsIn { tolerance_ms: opts.tolerance_ms, target_bits: opts.target_bits, ..Default::default() }),
        },
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
    if opts.room.is_none() {
        eprintln!("room {room}");
        eprintln!("join it with: sgp pair --server {} --room {room}", opts.server);
    }
    out.event("room", json!({"code": room, "role": role, "params": params}), || {
        format!("joined room {room} as {}; tolerance {} ms, target {} bits", role.as_str(), params.tolerance_ms, params.target_bits)
    });

    let mut sync = c.sync(SYNC_SAMPLES).await?;
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
    let mut record: Vec<serde_json::Value> = Vec::new();
    // Every message the room sent us, with its local receive time (for --record).
    let mut heard: Vec<serde_json::Value> = Vec::new();

    loop {
        let (msg, heard_at) = match pending.take() {
            Some(m) => m,
            None => c.recv_timed().await?,
        };
        if opts.record.is_some() && !matches!(msg, ServerMsg::Pong { .. }) {
            heard.push(json!({"t_us": heard_at, "msg": msg}));
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
                let round_sync = SyncSample { offset_us: sync.offset_us + bias_us, delay_us: sync.delay_us };
                let (posts, coalesced, interrupt) = post_round(&mut c, &p, t_start_us, t_end_us, round_sync, me, &mut rng).await?;
                rounds_used = round;
                posted = Some(Posted { t_start: t_start_us, t_end: t_end_us, posts, coalesced, sync: round_sync });
                pending = interrupt;
            }
            ServerMsg::Closed { session: s, round, board } => {
                let Some(p) = posted.take() else { continue };
                if session.as_deref() != Some(s.as_str()) {
                    continue;
                }
                last_closed = Some(round);
                if let Some(path) = &opts.record {
                    record.push(json!({"session": s, "round": round, "t_start_us": p.t_start, "t_end_us": p.t_end,
                        "sync": {"offset_us": p.sync.offset_us, "delay_us": p.sync.delay_us}, "posts": p.posts,
                        "coalesced": p.coalesced, "board": board}));
                    save_record(path, &room, role, &params, &record, &heard)?;
                }
                let timed = timed_posts(&p.posts, &p.coalesced);
                let outcome = secret::derive_round(
                    &board, p.t_start, p.t_end, &timed, to_sync(p.sync), me, params.tolerance_us(), params.guard_us(),
                );
                bias_us += refine(p.sync, &board, &timed, params.tolerance_us());
                match outcome {
                    RoundOutcome::Desync { unmatched, total } => {
                        out.event(
                            "round",
                            json!({"session": s, "round": round, "n": board.len(), "kept": null, "posts": total, "aborted": "desync", "unmatched": unmatched}),
                            || format!("round {round}: out of sync ({unmatched} of my {total} posts not found on the board); retrying"),
                        );
                        c.send(&ClientMsg::Abort { reason: "desync".into() }).await?;
                    }
                    RoundOutcome::Ok(v) => {
                        kept_rounds.push((round, v.n, v.a, v.bits));
                        let (counts, bits) = totals(&kept_rounds);
                        let ledger = secret::ledger(&counts, params.tag_bits);
                        out.event(
                            "round",
                            json!({"session": s, "round": round, "n": board.len(), "kept": v.n, "posts": p.posts.len(), "strength": ledger.strength}),
                            || format!("round {round}: {} entries, {} kept; strength so far {} of {} bits", board.len(), counts.last().map_or(0, |c| c.0), ledger.strength, params.target_bits),
                        );
                        if ledger.strength >= params.target_bits {
                            let key = secret::key(&room, &s, &bits).map_err(|e| fail(EXIT_OTHER, e))?;
                            let tag = secret::tag(&key, params.tag_bits);
                            my_tag = Some(tag.clone());
                            c.send(&ClientMsg::Confirm { tag }).await?;
                        } else {
                            c.send(&ClientMsg::Ready {}).await?;
                        }
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
                    if let Some(path) = &opts.record {
                        save_record(path, &room, role, &params, &record, &heard)?;
                    }
                    c.close().await;
                    return Ok(report);
                }
                out.event("confirmed", json!({"match": false}), || "confirmation tags differ: discarding the key and starting again".into());
                failed = Some("confirmation mismatch".into());
            }
            ServerMsg::Aborted { reason } if reason == "desync" && session.is_some() => {
                // One of us found the last round out of sync: it is dropped, the session goes on.
                posted = None;
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
            ServerMsg::Coalesced { post } => {
                if let Some(p) = posted.as_mut() {
                    p.coalesced.push(post);
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

/// Writes what this poster knows (`--record`): its rounds (own posts, sync, boards) and
/// every message it heard, with local times.
fn save_record(
    path: &str,
    room: &str,
    role: Role,
    params: &Params,
    rounds: &[serde_json::Value],
    heard: &[serde_json::Value],
) -> Result<(), Failure> {
    let doc = json!({"room": room, "role": role, "params": params,
        "clock": "local µs; predicted server time = sent_us + sync.offset_us + floor(sync.delay_us / 2)",
        "rounds": rounds, "messages": heard});
    std::fs::write(path, doc.to_string()).map_err(|e| fail(EXIT_OTHER, format!("cannot write {path}: {e}")))
}

/// The posts whose time the board reflects: all but those the server said were coalesced
/// with a later message (their entries share that message's `t_us`, so the public sift
/// never keeps them; counting them would only make the self-check fail).
fn timed_posts(posts: &[OwnPost], coalesced: &[u32]) -> Vec<OwnPost> {
    posts.iter().enumerate().filter(|(k, _)| !coalesced.contains(&(*k as u32 + 1))).map(|(_, p)| *p).collect()
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

/// Posts one round on a Poisson schedule, then sends `done` once `t_end` has passed.
/// Returns the posts with their real send times, the posts the server said were coalesced
/// (`ServerMsg::Coalesced`), and a message that cut the round short.
async fn post_round(
    c: &mut Client,
    params: &Params,
    t_start: i64,
    t_end: i64,
    sync: SyncSample,
    _me: Label,
    rng: &mut fastrand::Rng,
) -> Result<(Vec<OwnPost>, Vec<u32>, Option<(ServerMsg, i64)>), Failure> {
    let planned = schedule::poisson(t_start, t_end, params.rate_hz, rng);
    let labels = schedule::os_labels(planned.len()).map_err(|e| fail(EXIT_OTHER, e))?;
    // A post sent at local time s is predicted to arrive at server time s + shift.
    let shift = sync.offset_us + sync.delay_us.div_euclid(2);
    let clock = c.clock;
    let mut posts = Vec::with_capacity(planned.len());
    let mut coalesced = Vec::new();
    let targets = planned.iter().map(|p| p - shift).chain(std::iter::once(t_end - shift + DONE_MARGIN_US));
    for (k, target) in targets.enumerate() {
        let is_done = k == planned.len();
        if !is_done && clock.now_us() > target + LATE_SKIP_US {
            continue;
        }
        loop {
            tokio::select! {
                biased;
                m = c.recv_timed() => match m? {
                    m @ (ServerMsg::Aborted { .. } | ServerMsg::Reset {} | ServerMsg::Closed { .. }, _) => return Ok((posts, coalesced, Some(m))),
                    (ServerMsg::Coalesced { post }, _) => coalesced.push(post),
                    _ => {}
                },
                _ = schedule::wait_until(&clock, target) => break,
            }
        }
        if is_done {
            c.send(&ClientMsg::Done {}).await?;
        } else {
            let label = labels[k];
            let sent_us = c.send_text(if label == Label::A { POST_A } else { POST_B }.to_string()).await?;
            posts.push(OwnPost { sent_us, label });
        }
    }
    Ok((posts, coalesced, None))
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

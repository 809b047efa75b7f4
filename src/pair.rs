//! `sgp pair`: one poster from a terminal, the I/O around the poster engine (`poster.rs`,
//! which decides everything: docs/poster.md). Creates or joins a room, then carries out the
//! engine's actions — clock syncs, the Poisson schedule drawn with the OS generator, posts
//! sent on time, messages — and says what it concluded, for people or as JSON lines. With
//! `--record`, it keeps what this poster knows (key material: see `save_record`).

use crate::client::{Client, ClientError};
use crate::clock::{SyncSample, SYNC_SAMPLES};
use crate::poster::{expected_refusal, Action, KeyMade, Outcome, Policy, Poster, RoundReport};
use crate::protocol::{ClientMsg, ErrorCode, Label, Params, ParamsIn, Role, ServerMsg};
use crate::schedule;
use crate::secret::{self, OwnPost};
use serde::Serialize;
use serde_json::json;
use std::collections::VecDeque;
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
    /// The round window, for a creator (default: docs/protocol.md §6).
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
    /// Ask for τ and the rate each round from this poster's path and outcomes (the default;
    /// `--no-adapt` asks nothing: every round at the room's parameters, every failure counted).
    pub adapt: bool,
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

/// The least lead `sgp pair` asks for (ms): a window opens this long after the second
/// `ready` at the soonest. A page asks for 10 ms too (`PAGE_LEAD_MS`, client/js/worker.js).
pub const TERMINAL_LEAD_MS: f64 = 10.0;

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
    let (c, Entered { room, role, params, samples }) = enter(opts, &out).await?;
    rec.joined = Some((room.clone(), role, params.clone()));
    let first_sync = crate::clock::best(&samples);
    let mut poster = Poster::new(Policy::Terminal { retries: opts.retries }, &room, role, params).map_err(|e| fail(EXIT_OTHER, e))?;
    if opts.adapt {
        let (floor, ceil) = ask_range(opts, &samples);
        poster.adapt(floor, ceil);
        poster.ask_lead(lead_ms(&samples));
    }
    let mut d = Driver { c, out, opts, rec, rng: fastrand::Rng::new(), first_sync, call_us: Vec::new(), room, role, began };
    let mut queue: VecDeque<Action> = poster.start(d.c.clock.now_us()).into();
    loop {
        while let Some(a) = queue.pop_front() {
            match d.act(&mut poster, a).await? {
                Step::More(more) => more.into_iter().rev().for_each(|m| queue.push_front(m)),
                Step::Key(report) => {
                    d.c.close().await;
                    return Ok(*report);
                }
            }
        }
        queue = d.wait(&mut poster).await?.into();
    }
}

/// What `enter` found: the room, our role, its parameters, and the first clock sync's round
/// trips (µs), which the first sync and our asks' floor and ceiling come from.
struct Entered {
    room: String,
    role: Role,
    params: Params,
    samples: Vec<SyncSample>,
}

/// Codes a creator draws before it gives up: another is drawn when the first is taken or
/// the server drains (a new code may route to another server behind a proxy).
const CREATE_ATTEMPTS: usize = 5;

/// Connects for the room and creates or joins it (a creator not told its tolerance measures
/// this path first: `clock::auto_tolerance_ms`; a joiner measures once it has joined), and
/// says so. The code travels in the URL (docs/protocol.md §3, "Codes in the URL").
async fn enter(opts: &Opts, out: &Out) -> Result<(Client, Entered), Failure> {
    let mut attempt = 0;
    let (mut c, room, role, params, mut samples) = loop {
        attempt += 1;
        let code = match &opts.room {
            Some(r) => crate::room::normalize_code(r).ok_or_else(|| fail(EXIT_ROOM, format!("{r:?} is not a room code: codes look like ABCDE-FGHJK")))?,
            None => crate::room::make_code(&mut crate::server::os_random),
        };
        let mut c = Client::connect_room(&opts.server, Some(&code)).await?;
        let mut samples = Vec::new();
        let hello = match &opts.room {
            None => {
                let tolerance_ms = match opts.tolerance_ms {
                    Some(t) => t,
                    None => {
                        samples = c.sync_samples(SYNC_SAMPLES).await?;
                        crate::clock::auto_tolerance_ms(&samples)
                    }
                };
                ClientMsg::Create { room: Some(code), params: Some(creator_params(opts, tolerance_ms)) }
            }
            Some(_) => ClientMsg::Join { room: code, as_: None },
        };
        c.send(&hello).await?;
        match joined(&mut c).await? {
            Ok((room, role, params)) => break (c, room, role, params, samples),
            Err((ErrorCode::RoomTaken | ErrorCode::Draining, _)) if opts.room.is_none() && attempt < CREATE_ATTEMPTS => c.close().await,
            Err((code, message)) => {
                let exit = match code {
                    ErrorCode::NoSuchRoom | ErrorCode::RoomFull | ErrorCode::BadField => EXIT_ROOM,
                    ErrorCode::Draining => EXIT_GONE,
                    _ => EXIT_OTHER,
                };
                return Err(fail(exit, message));
            }
        }
    };
    if role.label().is_none() {
        return Err(fail(EXIT_OTHER, "joined as an observer"));
    }
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
    if samples.is_empty() {
        samples = c.sync_samples(SYNC_SAMPLES).await?;
    }
    Ok((c, Entered { room, role, params, samples }))
}

/// The answer to `create` or `join`: the room, or the refusal's code and text.
async fn joined(c: &mut Client) -> Result<Result<(String, Role, Params), (ErrorCode, String)>, Failure> {
    loop {
        match c.recv().await? {
            ServerMsg::Joined { room, role, params, .. } => return Ok(Ok((room, role, params))),
            ServerMsg::Error { code, message } => return Ok(Err((code, message))),
            _ => continue,
        }
    }
}

/// Our asks' range (docs/poster.md, "Adapting"): from the tolerance rule's pick for our path
/// (or the τ we were told) to what our round trips need (`widest_us`); a τ we were told is
/// also the ceiling, so that only the rate adapts.
fn ask_range(opts: &Opts, samples: &[SyncSample]) -> (i64, i64) {
    let delays: Vec<i64> = samples.iter().map(|s| s.delay_us).collect();
    match opts.tolerance_ms {
        Some(t) => {
            let us = (t * 1000.0).round() as i64;
            (us, us)
        }
        None => {
            let floor = crate::tolerance::tolerance_rule(crate::tolerance::TERMINAL_FLOOR_MS, None, &delays).ms;
            ((floor * 1000.0).round() as i64, crate::poster::widest_us(&delays))
        }
    }
}

/// The least lead a terminal poster needs (docs/protocol.md §3): it draws nothing, so only
/// for `start` to reach it with time to spare: twice its median round trip, at least
/// `TERMINAL_LEAD_MS`.
fn lead_ms(samples: &[SyncSample]) -> f64 {
    let mut delays: Vec<i64> = samples.iter().map(|s| s.delay_us).collect();
    delays.sort_unstable();
    let median_ms = delays.get(delays.len() / 2).map_or(0.0, |&d| d as f64 / 1000.0);
    (2.0 * median_ms).ceil().clamp(TERMINAL_LEAD_MS, *crate::protocol::ASK_LEAD_MS.end())
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

fn emit_sync(out: &Out, s: SyncSample) {
    out.event("sync", json!({"offset_us": s.offset_us, "delay_us": s.delay_us}), || {
        format!("clock offset {} µs, round-trip delay {} µs", s.offset_us, s.delay_us)
    });
}

const POST_A: &str = r#"{"type":"post","label":"A"}"#;
const POST_B: &str = r#"{"type":"post","label":"B"}"#;

/// What carrying out an action led to.
enum Step {
    /// More actions, to carry out first.
    More(Vec<Action>),
    /// The key, confirmed by both.
    Key(Box<KeyReport>),
}

/// The I/O around the poster engine: the socket, the timers, the OS generator, the output
/// and the record.
struct Driver<'a> {
    c: Client,
    out: Out,
    opts: &'a Opts,
    rec: &'a mut Recorder,
    rng: fastrand::Rng,
    /// The creator's tolerance measurement, used as the first sync.
    first_sync: Option<SyncSample>,
    /// How long each post's send call took this round (µs), for --record.
    call_us: Vec<i64>,
    room: String,
    role: Role,
    began: Instant,
}

impl Driver<'_> {
    /// Waits for the next message, or for the engine's deadline, and hands it over.
    async fn wait(&mut self, poster: &mut Poster) -> Result<Vec<Action>, Failure> {
        let clock = self.c.clock;
        let heard = match poster.next_deadline() {
            None => self.c.recv_timed().await?,
            Some(t) => tokio::select! {
                biased;
                m = self.c.recv_timed() => m?,
                _ = schedule::wait_until(&clock, t) => return Ok(poster.on_timeout(clock.now_us())),
            },
        };
        let (msg, heard_at) = heard;
        if self.opts.record.is_some() && !matches!(msg, ServerMsg::Pong { .. }) {
            self.rec.heard.push(json!({"t_us": heard_at, "msg": msg}));
        }
        self.tell_heard(&msg);
        Ok(poster.handle(msg, heard_at))
    }

    /// Carries out one action of the engine.
    async fn act(&mut self, poster: &mut Poster, a: Action) -> Result<Step, Failure> {
        let clock = self.c.clock;
        let now = || clock.now_us();
        let more = match a {
            Action::Send(m) => {
                self.c.send(&m).await?;
                Vec::new()
            }
            Action::Sync => {
                let s = match self.first_sync.take() {
                    Some(s) => s,
                    None => self.c.sync(SYNC_SAMPLES).await?,
                };
                emit_sync(&self.out, s);
                poster.synced(s, now())
            }
            Action::Schedule { t_start_us, t_end_us, rate_hz, .. } => {
                let plan = self.opts.schedule;
                let times = plan.times(t_start_us, t_end_us, rate_hz, &mut self.rng);
                let labels = schedule::os_labels(times.len()).map_err(|e| fail(EXIT_OTHER, e))?;
                self.call_us.clear();
                poster.scheduled(&times, &labels, plan.mean_gap_us(rate_hz), now())
            }
            Action::Post { label, .. } => self.post(poster, label).await?,
            Action::Done => {
                let done_us = self.c.send(&ClientMsg::Done {}).await?;
                poster.done_sent(done_us)
            }
            Action::Confirmed { matched: true, key: Some(k) } => return Ok(Step::Key(Box::new(self.report(poster, &k)))),
            Action::Fail { reason, message } => return Err(fail(exit_code(&reason), message)),
            other => {
                self.tell(&other);
                Vec::new()
            }
        };
        Ok(Step::More(more))
    }

    /// Sends one post now (`--testing-hold-post`: one in 16 leaves 3τ after the time recorded
    /// for it, as if the network had held it).
    async fn post(&mut self, poster: &mut Poster, label: Label) -> Result<Vec<Action>, Failure> {
        let clock = self.c.clock;
        let held = (self.opts.hold_post && self.rng.u32(..16) == 0).then(|| clock.now_us());
        if held.is_some() {
            schedule::wait_until(&clock, clock.now_us() + 3 * poster.params().tolerance_us()).await;
        }
        let text = if label == Label::A { POST_A } else { POST_B }.to_string();
        // The late rule once more at the send (a held post was let go at its recorded time).
        let Some((sent_us, after)) = self.c.send_text_if(text, |t| held.is_some() || poster.leave(t).is_empty()).await? else {
            return Ok(Vec::new());
        };
        let sent_us = held.unwrap_or(sent_us);
        self.call_us.push(after - sent_us);
        Ok(poster.sent(OwnPost { sent_us, label }, held.is_some(), clock.now_us()))
    }

    /// The key report, once both tags matched.
    fn report(&self, poster: &Poster, k: &KeyMade) -> KeyReport {
        let l = &k.ledger;
        KeyReport {
            room: self.room.clone(),
            role: self.role,
            key: secret::hex(&k.key),
            bits: secret::bits_string(&k.bits),
            strength: l.strength,
            n: l.n,
            a: l.a,
            log2_binom: l.log2_binom,
            tag_bits: l.tag_bits,
            margin_bits: l.margin_bits,
            tag: k.tag.clone(),
            rounds: poster.rounds_used(),
            elapsed_ms: self.began.elapsed().as_millis() as u64,
            confirmed: true,
        }
    }

    /// Says what the room said that the engine draws no conclusion from: who comes and goes,
    /// a reset, and the refusals that are not routine.
    fn tell_heard(&self, msg: &ServerMsg) {
        let out = &self.out;
        match msg {
            ServerMsg::Peer { event, role } => {
                out.event("peer", json!({"event": event, "role": role}), || format!("{} {:?}", role.as_str(), event).to_lowercase());
            }
            ServerMsg::Reset {} => out.event("reset", json!({}), || "the room was reset; starting again".into()),
            ServerMsg::Error { code, message } if !expected_refusal(*code) => {
                out.event("error", json!({"code": code, "message": message}), || format!("server: {message}"));
            }
            _ => {}
        }
    }

    /// Says what the engine concluded: a line for people, or a JSON line (`--json`); and
    /// keeps each closed round for `--record`.
    fn tell(&mut self, a: &Action) {
        let out = &self.out;
        match a {
            Action::Round(r) => {
                if self.opts.record.is_some() {
                    self.rec.rounds.push(record_row(r, &self.call_us));
                }
                tell_round(out, r);
            }
            Action::Dropped { session, round, spans, view, .. } => {
                out.event("dropped", json!({"session": session, "round": round, "spans": spans, "kept": view.n, "left_out": view.dropped.len()}), || {
                    format!("round {round}: the peer left out {} span(s) around its late posts; {} entries kept", spans.len(), view.n)
                });
            }
            Action::Confirmed { matched: false, .. } => {
                out.event("confirmed", json!({"match": false}), || "confirmation tags differ: discarding the key and starting again".into());
            }
            Action::Aborted { reason, round, session_goes_on: true } => {
                out.event("aborted", json!({"reason": reason, "round": round}), || "round dropped (out of sync); posting another".into());
            }
            Action::Aborted { reason, .. } if reason != "peer_left" && reason != "idle" => {
                out.event("aborted", json!({"reason": reason}), || format!("session aborted ({reason}); starting again"));
            }
            _ => {}
        }
    }
}

fn exit_code(reason: &str) -> i32 {
    match reason {
        "peer_left" => EXIT_PEER_LEFT,
        "retries" => EXIT_RETRIES,
        _ => EXIT_OTHER,
    }
}

/// One line on a closed round (and, for a kept round with spans of ours, the drop first).
fn tell_round(out: &Out, r: &RoundReport) {
    let (s, round, n, f) = (&r.session, r.round, r.board.len(), &r.facts);
    match (r.outcome, &r.view) {
        (Outcome::Held, _) => out.event("round", with_params(f, json!({"session": s, "round": round, "n": n, "kept": null, "aborted": "held_post_matched"})), || {
            format!("round {round}: a held post passes for matched (testing only); dropping it")
        }),
        (Outcome::Late, _) => out.event(
            "round",
            with_params(f, json!({"session": s, "round": round, "n": n, "kept": null, "posts": f.posts.len(), "aborted": "late", "late_us": f.late_us(), "skipped": f.skipped.len()})),
            || format!("round {round}: this poster could not keep its schedule (a post {} µs late, {} skipped); dropping it", f.late_us(), f.skipped.len()),
        ),
        (Outcome::Desync, _) => {
            let (unmatched, total) = r.unmatched.unwrap_or_default();
            out.event(
                "round",
                with_params(f, json!({"session": s, "round": round, "n": n, "kept": null, "posts": total, "aborted": "desync", "unmatched": unmatched})),
                || format!("round {round}: out of sync ({unmatched} of my {total} posts not found on the board); retrying"),
            )
        }
        (Outcome::Kept, Some(v)) => {
            if !v.spans.is_empty() {
                out.event("drop", json!({"session": s, "round": round, "spans": v.spans, "left_out": v.dropped.len()}), || {
                    format!("round {round}: some of my posts missed τ; leaving out the {} kept entries around them", v.dropped.len())
                });
            }
            let strength = r.ledger.as_ref().map_or(0, |l| l.strength);
            out.event(
                "round",
                with_params(f, json!({"session": s, "round": round, "n": n, "kept": v.n, "left_out": v.dropped.len(), "posts": f.posts.len(), "strength": strength})),
                || format!("round {round}: {n} entries, {} kept; strength so far {strength} of {} bits", v.n, r.target_bits),
            );
        }
        (Outcome::Kept, None) => {}
    }
}

/// A round line with the round's τ and rate (they follow the posters' asks).
fn with_params(f: &crate::poster::RoundFacts, mut v: serde_json::Value) -> serde_json::Value {
    v["tolerance_ms"] = json!(f.tol_us as f64 / 1000.0);
    v["rate_hz"] = json!(f.rate_hz);
    v["duration_ms"] = json!((f.t_end - f.t_start) / 1000);
    v["guard_ms"] = json!(f.guard_us as f64 / 1000.0);
    v
}

/// A closed round as `--record` keeps it.
fn record_row(r: &RoundReport, call_us: &[i64]) -> serde_json::Value {
    let f = &r.facts;
    let mut row = json!({"session": r.session, "round": r.round, "t_start_us": f.t_start, "t_end_us": f.t_end,
        "sync": {"offset_us": f.sync.offset_us, "delay_us": f.sync.delay_us}, "posts": f.posts, "board": r.board,
        "coalesced": f.coalesced, "send_call_us": call_us,
        "done_us": f.done_us, "late_us": f.late_us(), "skipped": f.skipped.len(), "skipped_us": f.skipped, "spoiled": f.spoiled(),
        "params": {"tolerance_us": f.tol_us, "guard_us": f.guard_us, "rate_hz": f.rate_hz}});
    if let Some(v) = r.view.as_ref().filter(|v| !v.spans.is_empty()) {
        row["spans"] = json!(v.spans);
    }
    row
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

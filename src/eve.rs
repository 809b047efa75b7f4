//! `sgp eve`: the eavesdropper's seat. Joins a room as an observer and prints what anyone
//! can see: each round's board, the public sift, the confirmation tags. It knows no sender.
//! With `--record FILE` it keeps every message heard with its time on the server's clock
//! (Eve's own view of the room's timing); `sgp eve --attack` joins posters' records for the
//! eavesdropper's audit (`audit.rs`).

use crate::client::Client;
use crate::clock::SYNC_SAMPLES;
use crate::pair::{Failure, EXIT_GONE, EXIT_OTHER, EXIT_ROOM};
use crate::protocol::{ClientMsg, ErrorCode, JoinAs, Label, ServerMsg};
use crate::secret;
use serde_json::json;

#[derive(Clone, Debug)]
pub struct Opts {
    pub server: String,
    pub room: String,
    pub json: bool,
    /// Keep watching after a key is confirmed.
    pub follow: bool,
    /// Write every message heard, with server-synced times, to this JSON file at the end.
    pub record: Option<String>,
}

/// Eve's record: what she heard, when, on her clock and (estimated) on the server's.
#[derive(Default)]
struct Heard {
    joined: Option<(String, serde_json::Value)>,
    syncs: Vec<serde_json::Value>,
    messages: Vec<serde_json::Value>,
    /// The latest sync: server time a message left ≈ local receive time + offset − delay/2.
    sync: Option<crate::clock::SyncSample>,
}

impl Heard {
    fn note_sync(&mut self, at: i64, s: crate::clock::SyncSample) {
        self.syncs.push(json!({"t_us": at, "offset_us": s.offset_us, "delay_us": s.delay_us}));
        self.sync = Some(s);
    }

    fn note(&mut self, at: i64, msg: &ServerMsg) {
        let server = self.sync.map(|s| at + s.offset_us - s.delay_us.div_euclid(2));
        self.messages.push(json!({"t_us": at, "server_us": server, "msg": msg}));
    }

    fn save(&self, path: &str) -> Result<(), Failure> {
        let Some((room, params)) = &self.joined else { return Ok(()) };
        let doc = json!({"room": room, "role": "observer", "params": params,
            "clock": "t_us: local µs at receipt; server_us: when the message left the server, on its clock = t_us + offset_us − floor(delay_us / 2) of the latest sync",
            "syncs": self.syncs, "messages": self.messages});
        crate::pair::write_private(path, doc.to_string().as_bytes()).map_err(|e| Failure { code: EXIT_OTHER, message: format!("cannot write {path}: {e}") })
    }
}

/// The board for people: each entry as its time after `t_start` in ms, its label, and `*`
/// if the public sift keeps it, wrapped to lines of about 100 characters.
fn board_lines(board: &[crate::protocol::Entry], kept: &[u32], t_start: i64) -> String {
    let mut out = String::new();
    let mut line = String::from(" ");
    for e in board {
        let item = format!(
            " {:+.3}{}{}",
            (e.t_us - t_start) as f64 / 1000.0,
            if e.label == Label::A { 'A' } else { 'B' },
            if kept.binary_search(&e.i).is_ok() { "*" } else { "" }
        );
        if line.len() + item.len() > 100 {
            out.push_str(&line);
            out.push('\n');
            line = String::from(" ");
        }
        line.push_str(&item);
    }
    out.push_str(&line);
    out
}

fn say(json: bool, tag: &str, value: serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!("{}", json!({ tag: value }));
    } else {
        println!("{}", human());
    }
}

/// Watches until a key is confirmed (or for ever with `follow`, until Ctrl-C). With
/// `--record`, what was heard is written when it ends, whichever way.
pub async fn run(opts: &Opts) -> Result<(), Failure> {
    let mut heard = Heard::default();
    let result = {
        let work = watch(opts, &mut heard);
        tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    };
    if let Some(path) = &opts.record {
        heard.save(path)?;
    }
    result
}

async fn watch(opts: &Opts, heard: &mut Heard) -> Result<(), Failure> {
    let Some(room) = crate::room::normalize_code(&opts.room) else {
        return Err(Failure { code: EXIT_ROOM, message: format!("{:?} is not a room code: codes look like ABCDE-FGHJK", opts.room) });
    };
    let mut c = Client::connect_room(&opts.server, Some(&room)).await?;
    c.send(&ClientMsg::Join { room, as_: Some(JoinAs::Observer) }).await?;
    let mut params = None;
    let mut window = None;
    loop {
        let (msg, at) = c.recv_timed().await.map_err(|e| Failure { code: EXIT_GONE, message: e.to_string() })?;
        if opts.record.is_some() && !matches!(msg, ServerMsg::Pong { .. }) {
            heard.note(at, &msg);
        }
        match msg {
            ServerMsg::Joined { room, params: p, peers, .. } => {
                if opts.record.is_some() {
                    heard.joined = Some((room.clone(), serde_json::to_value(&p).unwrap_or_default()));
                    let s = c.sync(SYNC_SAMPLES).await?;
                    heard.note_sync(c.clock.now_us(), s);
                }
                say(opts.json, "room", json!({"code": room, "params": p, "peers": peers}), || {
                    format!("watching room {room} (alice {}, bob {}, {} observers)", yes(peers.alice), yes(peers.bob), peers.observers)
                });
                params = Some(p);
            }
            ServerMsg::Error { code, message } => {
                if params.is_none() && matches!(code, ErrorCode::NoSuchRoom | ErrorCode::BadField) {
                    return Err(Failure { code: EXIT_ROOM, message });
                }
                say(opts.json, "error", json!({"code": code, "message": message}), || format!("server: {message}"));
            }
            ServerMsg::Start { session, round, t_start_us, t_end_us, params: p } => {
                window = Some((t_start_us, t_end_us));
                params = Some(p);
                say(opts.json, "start", json!({"session": session, "round": round, "t_start_us": t_start_us, "t_end_us": t_end_us}), || {
                    format!("round {round} of session {session}: {} ms window", (t_end_us - t_start_us) / 1000)
                });
            }
            ServerMsg::Closed { session, round, board } => {
                let (Some(p), Some(window)) = (&params, window.take()) else { continue };
                say_round(opts.json, &session, round, &board, window, p);
                if opts.record.is_some() {
                    // Between rounds: keep the clock sync fresh for the next round's times.
                    let s = c.sync(SYNC_SAMPLES).await?;
                    heard.note_sync(c.clock.now_us(), s);
                }
            }
            ServerMsg::Dropped { session, round, spans } => {
                let n = spans.len();
                say(opts.json, "dropped", json!({"session": session, "round": round, "spans": spans}), || {
                    let list: Vec<String> = spans.iter().map(|s| format!("{}–{} µs", s[0], s[1])).collect();
                    format!("round {round}: a poster leaves out the kept entries in {n} span(s) around posts that missed τ: {}", list.join(", "))
                });
            }
            ServerMsg::Confirm { role, tag } => {
                say(opts.json, "confirm", json!({"role": role, "tag": tag}), || format!("{} confirms with tag {tag}", role.as_str()));
            }
            ServerMsg::Confirmed { matched } => {
                say(opts.json, "confirmed", json!({"match": matched}), || format!("tags match: {}", yes(matched)));
                if matched && !opts.follow {
                    c.close().await;
                    return Ok(());
                }
            }
            ServerMsg::Aborted { reason } => {
                window = None;
                say(opts.json, "aborted", json!({"reason": reason}), || match reason.as_str() {
                    "desync" => "round dropped: a poster found it out of sync".into(),
                    _ => format!("session aborted: {reason}"),
                });
                if reason == "idle" {
                    return Err(Failure { code: EXIT_OTHER, message: "the room was closed for inactivity".into() });
                }
            }
            ServerMsg::Reset {} => {
                window = None;
                say(opts.json, "reset", json!({}), || "the room was reset".into());
            }
            ServerMsg::Peer { event, role } => {
                say(opts.json, "peer", json!({"event": event, "role": role}), || format!("{} {:?}", role.as_str(), event).to_lowercase());
            }
            ServerMsg::Pong { .. } | ServerMsg::Board { .. } | ServerMsg::Coalesced { .. } => {}
        }
    }
}

/// A closed round as Eve sees it: the board, the public sift, the kept entries' labels.
fn say_round(json: bool, session: &str, round: u32, board: &[crate::protocol::Entry], (ts, te): (i64, i64), p: &crate::protocol::Params) {
    let kept: Vec<u32> = secret::sift(board, ts, te, p.tolerance_us(), p.guard_us())
        .into_iter()
        .map(|k| board[k].i)
        .collect();
    let labels: String = kept
        .iter()
        .filter_map(|&i| board.get(i as usize))
        .map(|e| if e.label == Label::A { 'A' } else { 'B' })
        .collect();
    say(
        json,
        "round",
        json!({"session": session, "round": round, "t_start_us": ts, "t_end_us": te, "n": board.len(), "kept": kept, "board": board}),
        || {
            format!(
                "round {round}: {} entries on the board, {} kept by the public sift (*)\n{}\n  kept labels: {labels}\n  \
                 (each kept bit is 0 if its label names its true poster; without the posters' send times that is a coin toss)",
                board.len(),
                kept.len(),
                board_lines(board, &kept, ts)
            )
        },
    );
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `sgp eve --attack RECORDS…`: joins the posters' `--record` files (and observers', for the
/// timing of relayed messages) round by round, takes the truth from both posters' own views,
/// runs the audit's attacker on the public part and prints its verdict.
pub fn attack(files: &[String], json: bool) -> Result<(), Failure> {
    let bad = |m: String| Failure { code: EXIT_OTHER, message: m };
    let mut records: Vec<serde_json::Value> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| bad(format!("{f}: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("{f}: not a record: {e}")))?;
        if !v.is_object() || !v["role"].is_string() || !v["room"].is_string() {
            return Err(bad(format!("{f}: not a record of sgp pair, sgp eve or the web client (no room and role)")));
        }
        records.push(v);
    }
    let join = join_records(&records);
    if join.rounds.is_empty() {
        return Err(bad(format!("no round is recorded by both of its posters (dropped: {})", serde_json::to_string(&join.dropped).unwrap_or_default())));
    }
    let report = crate::audit::attack(&join.rounds);
    if json {
        println!("{}", json!({"files": files.len(), "joined": join.rounds.len(), "dropped": join.dropped, "relayed_from": join.relayed_from, "audit": report}));
        return Ok(());
    }
    let d = &join.dropped;
    println!("{} records; {} rounds joined from both posters' views, {} distinct ({} kept entries)", files.len(), join.rounds.len(), join.rounds.len() - report.duplicates, report.kept);
    println!(
        "left out: {} recorded by one poster only, {} out of sync in a poster's view, {} dropped by a poster that fell behind its schedule, {} where the views disagree, {} whose boards differ, {} unreadable, {} copies",
        d.one_poster_only,
        d.desync,
        d.late,
        d.disagree,
        d.board_differs,
        d.unreadable,
        d.duplicate + report.duplicates
    );
    let r = &join.relayed_from;
    println!("relayed-message timing from: eve's record {}, a poster's record {}, none {}", r.observer, r.poster, r.none);
    println!("split by a hash of (room, session, round): {} rounds trained on, {} scored", report.rounds_trained, report.rounds_scored);
    println!("{:<17} {:>8}  {:>8}  {:<9} {:>8} {:>8} {:>8}  {:>9}  {:>6}  {:>8}", "target", "scored", "accuracy", "model", "majority", "logistic", "boosting", "99% bound", "H", "vs coin");
    for v in &report.verdicts {
        let a = |k: usize| v.accuracies.get(k).map_or("-".to_string(), |x| format!("{x:.4}"));
        println!(
            "{:<17} {:>8}  {:>8.4}  {:<9} {:>8} {:>8} {:>8}  {:>9.4}  {:>6.4}  {}",
            v.target,
            v.n,
            v.accuracy,
            v.model,
            a(0),
            a(1),
            a(2),
            v.p_upper,
            v.h,
            if v.beats_coin { format!("BEATS a coin (> {:.4})", v.coin_threshold) } else { format!("coin-like (≤ {:.4})", v.coin_threshold) }
        );
    }
    println!("min-entropy per raw bit: {:.4}", report.min_entropy_per_bit);
    let verdict = if report.pass { "PASS" } else { "FAIL" };
    println!("verdict: {verdict} (99 % bound ≤ {} on both targets: {})", crate::audit::PASS_P_UPPER, if report.pass { "yes" } else { "no" });
    if !report.enough {
        println!(
            "warning: fewer than {} scored entries on a target: the full audit asks for more (at this size, compare the accuracy with the coin's bar above)",
            crate::audit::FULL_AUDIT_N
        );
    }
    Ok(())
}

/// Why recorded rounds did not reach the audit.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    /// Only one poster's record has the round (the other's file was not given, or it ended first).
    pub one_poster_only: usize,
    /// A poster's view of the round is out of sync (no key bits came from it either).
    pub desync: usize,
    /// A poster could not keep its schedule and dropped the round (`spoiled` in its record).
    pub late: usize,
    /// Both views are in sync but do not split the kept entries between the posters.
    pub disagree: usize,
    /// The two posters recorded different boards for the round.
    pub board_differs: usize,
    /// A round whose fields do not parse.
    pub unreadable: usize,
    /// Not left out: rounds joined with spans dropped around late posts (counted here too).
    pub spanned: usize,
    /// A poster's round given twice (the same file, or two files of the same poster).
    pub duplicate: usize,
}

/// Where the timing of the room's messages came from, in rounds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RelayedFrom {
    pub observer: usize,
    pub poster: usize,
    pub none: usize,
}

pub struct Join {
    pub rounds: Vec<crate::audit::TruthRound>,
    pub dropped: Dropped,
    pub relayed_from: RelayedFrom,
}

/// (kind, session, round) → server time the message left, for `start` and `closed`.
type Timeline = std::collections::HashMap<(&'static str, String, u32), i64>;

/// The server times of a record's `start` and `closed` messages: an observer's record says
/// them (`server_us`); a poster's are its local receive times put on server time with the
/// round's sync, less half the round trip.
fn timeline(rec: &serde_json::Value) -> Timeline {
    let mut syncs: std::collections::HashMap<(String, u32), (i64, i64)> = std::collections::HashMap::new();
    for r in rec["rounds"].as_array().into_iter().flatten() {
        if let (Some(s), Some(n), Some(o), Some(d)) = (r["session"].as_str(), r["round"].as_u64(), r["sync"]["offset_us"].as_i64(), r["sync"]["delay_us"].as_i64()) {
            syncs.insert((s.to_string(), n as u32), (o, d));
        }
    }
    let mut out = Timeline::new();
    for m in rec["messages"].as_array().into_iter().flatten() {
        let kind = match m["msg"]["type"].as_str() {
            Some("start") => "start",
            Some("closed") => "closed",
            _ => continue,
        };
        let (Some(s), Some(n)) = (m["msg"]["session"].as_str(), m["msg"]["round"].as_u64()) else { continue };
        let key = (kind, s.to_string(), n as u32);
        let server = match m["server_us"].as_i64() {
            Some(t) => Some(t),
            None => m["t_us"].as_i64().zip(syncs.get(&(key.1.clone(), key.2))).map(|(t, &(o, d))| t + o - d.div_euclid(2)),
        };
        if let Some(t) = server {
            out.entry(key).or_insert(t);
        }
    }
    out
}

/// Rounds with their truth, from the records of both posters (and any observers) of rooms.
pub fn join_records(records: &[serde_json::Value]) -> Join {
    let mut dropped = Dropped::default();
    let mut relayed_from = RelayedFrom::default();
    let gathered = gather(records, &mut dropped);
    let [alice, bob] = &gathered.views;
    dropped.one_poster_only += bob.keys().filter(|k| !alice.contains_key(k)).count();
    let mut rounds = Vec::new();
    for (key, (ra, params)) in alice {
        let Some((rb, _)) = bob.get(key) else {
            dropped.one_poster_only += 1;
            continue;
        };
        let Some(mut truth) = join_round(key, ra, rb, params, &mut dropped) else { continue };
        truth.relayed = relayed(key, &gathered, &mut relayed_from);
        rounds.push(truth);
    }
    Join { rounds, dropped, relayed_from }
}

/// A round as one poster's record has it, with the params of that record.
type Recorded<'a> = (&'a serde_json::Value, &'a serde_json::Value);

/// The records sorted out: each poster's rounds by key, and the timelines of the room's
/// messages in observers' and in posters' records, by room.
struct Gathered<'a> {
    views: [std::collections::BTreeMap<crate::audit::RoundKey, Recorded<'a>>; 2],
    observers: std::collections::HashMap<String, Vec<Timeline>>,
    posters: std::collections::HashMap<String, Vec<Timeline>>,
}

/// Sorts the records out, counting the rounds that do not parse or come twice.
fn gather<'a>(records: &'a [serde_json::Value], dropped: &mut Dropped) -> Gathered<'a> {
    let mut g = Gathered { views: Default::default(), observers: Default::default(), posters: Default::default() };
    for rec in records {
        let room = rec["room"].as_str().unwrap_or_default().to_string();
        let side = match rec["role"].as_str() {
            Some("alice") => 0,
            Some("bob") => 1,
            Some("observer") => {
                g.observers.entry(room).or_default().push(timeline(rec));
                continue;
            }
            _ => continue,
        };
        g.posters.entry(room.clone()).or_default().push(timeline(rec));
        for r in rec["rounds"].as_array().into_iter().flatten() {
            let (Some(session), Some(round)) = (r["session"].as_str(), r["round"].as_u64().and_then(|n| u32::try_from(n).ok())) else {
                dropped.unreadable += 1;
                continue;
            };
            let key = crate::audit::RoundKey { room: room.clone(), session: session.to_string(), round };
            if g.views[side].insert(key, (r, &rec["params"])).is_some() {
                dropped.duplicate += 1;
            }
        }
    }
    g
}

/// The planned send times of the posts a poster skipped (the late rule), which its spans
/// cover; none in records made before skipped posts cost spans (a round with any was spoiled).
fn skipped_us(v: &serde_json::Value) -> Vec<i64> {
    v["skipped_us"].as_array().map(|a| a.iter().filter_map(|x| x.as_i64()).collect()).unwrap_or_default()
}

/// A poster's view of a round: the board, its own posts, its sync, the window's start and end.
type View = (Vec<crate::protocol::Entry>, Vec<secret::OwnPost>, secret::Sync, i64, i64);

fn round_view(v: &serde_json::Value) -> Option<View> {
    // Posts the server said were coalesced carry a later message's time (and are never
    // kept): the poster left them out of its derivation, and so does the join.
    let posts: Vec<secret::OwnPost> = serde_json::from_value(v["posts"].clone()).ok()?;
    let coalesced: Vec<u64> = v["coalesced"].as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).collect()).unwrap_or_default();
    let posts = posts.into_iter().enumerate().filter(|(k, _)| !coalesced.contains(&(*k as u64 + 1))).map(|(_, p)| p).collect();
    Some((
        serde_json::from_value(v["board"].clone()).ok()?,
        posts,
        serde_json::from_value(v["sync"].clone()).ok()?,
        v["t_start_us"].as_i64()?,
        v["t_end_us"].as_i64()?,
    ))
}

/// A round both posters recorded, derived again from each side as the posters did, with
/// who posted each counted entry; `None` (and the reason counted in `dropped`) if the two
/// records do not make one round the audit can use. Its `relayed` is left for the caller.
fn join_round(key: &crate::audit::RoundKey, ra: &serde_json::Value, rb: &serde_json::Value, params: &serde_json::Value, dropped: &mut Dropped) -> Option<crate::audit::TruthRound> {
    use secret::{derive_with_skips, OwnPost, RoundOutcome};
    let (Some((board, posts_a, sync_a, ts, te)), Some((board_b, posts_b, sync_b, _, _)), Ok(params)) =
        (round_view(ra), round_view(rb), serde_json::from_value::<crate::protocol::Params>(params.clone()))
    else {
        dropped.unreadable += 1;
        return None;
    };
    if board != board_b {
        dropped.board_differs += 1;
        return None;
    }
    if ra["spoiled"] == true || rb["spoiled"] == true {
        dropped.late += 1;
        return None;
    }
    // The round's own τ, guard and rate where the record has them (they follow the posters'
    // asks), else the room's.
    let p = &ra["params"];
    let (tol, guard, rate_hz) = match (p["tolerance_us"].as_i64(), p["guard_us"].as_i64(), p["rate_hz"].as_f64()) {
        (Some(t), Some(g), Some(r)) => (t, g, r),
        _ => (params.tolerance_us(), params.guard_us(), params.rate_hz),
    };
    // Each poster's own spans first (what its `drop` said: unmatched and skipped posts), then
    // each view with the other's, as the posters derived them.
    let (skip_a, skip_b) = (skipped_us(ra), skipped_us(rb));
    let d = |posts: &[OwnPost], skipped: &[i64], sync, me, peer: &[secret::Span]| derive_with_skips(&board, (ts, te), posts, skipped, sync, me, (tol, guard), peer);
    let (RoundOutcome::Ok(a0), RoundOutcome::Ok(b0)) = (d(&posts_a, &skip_a, sync_a, Label::A, &[]), d(&posts_b, &skip_b, sync_b, Label::B, &[])) else {
        dropped.desync += 1;
        return None;
    };
    let (RoundOutcome::Ok(va), RoundOutcome::Ok(vb)) = (d(&posts_a, &skip_a, sync_a, Label::A, &b0.spans), d(&posts_b, &skip_b, sync_b, Label::B, &a0.spans)) else {
        dropped.desync += 1;
        return None;
    };
    if !a0.spans.is_empty() || !b0.spans.is_empty() {
        dropped.spanned += 1;
    }
    if va.kept != vb.kept || va.mine.iter().zip(&vb.mine).any(|(x, y)| x == y) {
        dropped.disagree += 1;
        return None;
    }
    let spans: Vec<secret::Span> = a0.spans.iter().chain(&b0.spans).copied().collect();
    // The counted entries as positions in the board (the views name them by `i`).
    let at: std::collections::HashMap<u32, usize> = board.iter().enumerate().map(|(k, e)| (e.i, k)).collect();
    let kept: Vec<usize> = va.kept.iter().filter_map(|i| at.get(i).copied()).collect();
    Some(crate::audit::TruthRound {
        key: key.clone(),
        board,
        t_start_us: ts,
        t_end_us: te,
        tolerance_us: tol,
        rate_hz,
        kept,
        by_alice: va.mine,
        relayed: crate::audit::Relayed::default(),
        spans,
    })
}

/// The server times of the room's messages around a round: from an observer's record if
/// one has them, else from a poster's (counted in `from`).
fn relayed(key: &crate::audit::RoundKey, g: &Gathered, from: &mut RelayedFrom) -> crate::audit::Relayed {
    use crate::audit::Relayed;
    let find = |lines: Option<&Vec<Timeline>>| -> Option<Relayed> {
        let at = |kind: &'static str, round: u32| lines.into_iter().flatten().find_map(|l| l.get(&(kind, key.session.clone(), round)).copied());
        let r = Relayed { start_us: at("start", key.round), closed_us: at("closed", key.round), prev_closed_us: key.round.checked_sub(1).and_then(|p| at("closed", p)) };
        r.closed_us.is_some().then_some(r)
    };
    match (find(g.observers.get(&key.room)), find(g.posters.get(&key.room))) {
        (Some(r), _) => {
            from.observer += 1;
            r
        }
        (None, Some(r)) => {
            from.poster += 1;
            r
        }
        (None, None) => {
            from.none += 1;
            Relayed::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::join_records;
    use serde_json::{json, Value};

    /// A poster's record of one room: rounds (session "s", numbered) on a board of four
    /// entries 10 ms apart, alice posting the even ones, bob the odd ones, with sync 0.
    fn record(role: &str, rounds: &[u32], board_shift: i64) -> Value {
        let params = crate::protocol::Params::resolve(&Default::default()).unwrap();
        let me = if role == "alice" { 0 } else { 1 };
        let rs: Vec<Value> = rounds
            .iter()
            .map(|&n| {
                let board: Vec<Value> = (0..4).map(|k| json!({"i": k, "t_us": 100_000 + 10_000 * k + board_shift, "label": if k % 3 == 0 { "A" } else { "B" }})).collect();
                let posts: Vec<Value> = (0..4).filter(|k| k % 2 == me).map(|k| json!({"sent_us": 100_000 + 10_000 * k, "label": if k % 3 == 0 { "A" } else { "B" }})).collect();
                json!({"session": "s", "round": n, "t_start_us": 0, "t_end_us": 200_000, "sync": {"offset_us": 0, "delay_us": 0}, "posts": posts, "board": board})
            })
            .collect();
        let msgs: Vec<Value> = rounds.iter().map(|&n| json!({"t_us": 210_000, "msg": {"type": "closed", "session": "s", "round": n, "board": []}})).collect();
        json!({"room": "R", "role": role, "params": params, "rounds": rs, "messages": msgs})
    }

    #[test]
    fn the_join_counts_what_it_leaves_out() {
        let a = record("alice", &[1, 2, 3], 0);
        let b = record("bob", &[1, 2, 4], 0);
        let j = join_records(&[a.clone(), b.clone(), a.clone()]);
        assert_eq!(j.rounds.len(), 2);
        assert_eq!(j.rounds[0].by_alice, vec![true, false, true, false]);
        assert_eq!((j.dropped.one_poster_only, j.dropped.duplicate), (2, 3));
        assert_eq!((j.relayed_from.poster, j.relayed_from.observer), (2, 0));
        assert_eq!(j.rounds[0].relayed.closed_us, Some(210_000));
        // Another board in bob's view; then a desync (bob's posts land nowhere near).
        let j = join_records(&[a.clone(), record("bob", &[1], 3)]);
        assert_eq!((j.rounds.len(), j.dropped.board_differs), (0, 1));
        let mut far = record("bob", &[1], 0);
        far["rounds"][0]["sync"]["offset_us"] = json!(5_000);
        let j = join_records(&[a.clone(), far]);
        assert_eq!((j.rounds.len(), j.dropped.desync), (0, 1));
        let mut late = record("bob", &[1], 0);
        late["rounds"][0]["spoiled"] = json!(true);
        let j = join_records(&[a.clone(), late]);
        assert_eq!((j.rounds.len(), j.dropped.late), (0, 1));
        // Eve's record, when given, times the room's messages.
        let eve = json!({"room": "R", "role": "observer", "messages": [{"t_us": 1, "server_us": 205_000, "msg": {"type": "closed", "session": "s", "round": 1}}]});
        let j = join_records(&[a, b, eve]);
        assert_eq!(j.rounds[0].relayed.closed_us, Some(205_000));
        assert_eq!((j.relayed_from.observer, j.relayed_from.poster), (1, 1));
    }
}

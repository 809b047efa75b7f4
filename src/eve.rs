//! `sgp eve`: the eavesdropper's seat. Joins a room as an observer and prints what anyone
//! can see: each round's board, the public sift, the confirmation tags. It knows no sender.

use crate::client::Client;
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
}

fn say(json: bool, tag: &str, value: serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!("{}", json!({ tag: value }));
    } else {
        println!("{}", human());
    }
}

/// Watches until a key is confirmed (or for ever with `follow`).
pub async fn run(opts: &Opts) -> Result<(), Failure> {
    let mut c = Client::connect(&opts.server).await?;
    c.send(&ClientMsg::Join { room: opts.room.clone(), as_: Some(JoinAs::Observer) }).await?;
    let mut params = None;
    let mut window = None;
    loop {
        let msg = c.recv().await.map_err(|e| Failure { code: EXIT_GONE, message: e.to_string() })?;
        match msg {
            ServerMsg::Joined { room, params: p, peers, .. } => {
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
                let (Some(p), Some((ts, te))) = (&params, window.take()) else { continue };
                let kept: Vec<u32> = secret::sift(&board, ts, te, p.tolerance_us(), p.guard_us())
                    .into_iter()
                    .map(|k| board[k].i)
                    .collect();
                let labels: String = kept
                    .iter()
                    .filter_map(|&i| board.get(i as usize))
                    .map(|e| if e.label == Label::A { 'A' } else { 'B' })
                    .collect();
                say(
                    opts.json,
                    "round",
                    json!({"session": session, "round": round, "t_start_us": ts, "t_end_us": te, "n": board.len(), "kept": kept, "board": board}),
                    || {
                        format!(
                            "round {round}: {} entries on the board, {} kept by the public sift\n  kept labels: {labels}\n  \
                             (each kept bit is 0 if its label names its true poster; without the posters' send times that is a coin toss)",
                            board.len(),
                            kept.len()
                        )
                    },
                );
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

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `sgp eve --attack RECORDS…`: joins the posters' `--record` files room by room, takes the
/// truth from both posters' own views (rounds where they disagree are left out), and runs
/// the audit's attacker on the public part.
pub fn attack(files: &[String], json: bool) -> Result<(), Failure> {
    let bad = |m: String| Failure { code: EXIT_OTHER, message: m };
    let mut records: Vec<serde_json::Value> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| bad(format!("{f}: {e}")))?;
        records.push(serde_json::from_str(&text).map_err(|e| bad(format!("{f}: not a record: {e}")))?);
    }
    let rounds = truth_rounds(&records).map_err(bad)?;
    if rounds.is_empty() {
        return Err(bad("no round is recorded by both of its posters".into()));
    }
    let verdicts = crate::audit::attack(&rounds);
    let h = crate::audit::min_entropy(&verdicts);
    if json {
        println!("{}", json!({"rounds": rounds.len(), "verdicts": verdicts, "min_entropy_per_bit": h}));
    } else {
        println!("{} rounds, {} kept entries", rounds.len(), rounds.iter().map(|r| r.kept.len()).sum::<usize>());
        for v in &verdicts {
            println!("{:<17} scored {:>7}  accuracy {:.4}  99% bound {:.4}  H {:.4}", v.target, v.n, v.accuracy, v.p_upper, v.h);
        }
        println!("min-entropy per raw bit: {h:.4}");
    }
    Ok(())
}

/// Rounds with their truth, from records of both posters of the same rooms.
fn truth_rounds(records: &[serde_json::Value]) -> Result<Vec<crate::audit::TruthRound>, String> {
    use crate::secret::{derive_round, OwnPost, RoundOutcome, Sync};
    let parse = |v: &serde_json::Value| -> Result<(Vec<crate::protocol::Entry>, Vec<OwnPost>, Sync), String> {
        let board = serde_json::from_value(v["board"].clone()).map_err(|e| format!("board: {e}"))?;
        let posts = serde_json::from_value(v["posts"].clone()).map_err(|e| format!("posts: {e}"))?;
        let sync = serde_json::from_value(v["sync"].clone()).map_err(|e| format!("sync: {e}"))?;
        Ok((board, posts, sync))
    };
    let mut out = Vec::new();
    for a in records.iter().filter(|r| r["role"] == "alice") {
        let Some(b) = records.iter().find(|r| r["role"] == "bob" && r["room"] == a["room"]) else { continue };
        let params: crate::protocol::Params = serde_json::from_value(a["params"].clone()).map_err(|e| format!("params: {e}"))?;
        let (tol, guard) = (params.tolerance_us(), params.guard_us());
        for ra in a["rounds"].as_array().into_iter().flatten() {
            let Some(rb) = b["rounds"].as_array().into_iter().flatten().find(|r| r["session"] == ra["session"] && r["round"] == ra["round"]) else {
                continue;
            };
            let (board, posts_a, sync_a) = parse(ra)?;
            let (_, posts_b, sync_b) = parse(rb)?;
            let (ts, te) = (ra["t_start_us"].as_i64().unwrap_or(0), ra["t_end_us"].as_i64().unwrap_or(0));
            let va = derive_round(&board, ts, te, &posts_a, sync_a, Label::A, tol, guard);
            let vb = derive_round(&board, ts, te, &posts_b, sync_b, Label::B, tol, guard);
            if let (RoundOutcome::Ok(va), RoundOutcome::Ok(vb)) = (va, vb) {
                if va.mine.iter().zip(&vb.mine).all(|(x, y)| x != y) {
                    let kept = crate::secret::sift(&board, ts, te, tol, guard);
                    out.push(crate::audit::TruthRound { board, t_start_us: ts, t_end_us: te, tolerance_us: tol, kept, by_alice: va.mine });
                }
            }
        }
    }
    Ok(out)
}

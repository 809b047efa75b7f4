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
            ServerMsg::Pong { .. } | ServerMsg::Board { .. } => {}
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

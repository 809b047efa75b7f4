//! The poster engine's transitions, and its transcript vectors (docs/poster.md).
//!
//! Each scenario below drives `sgp::poster::Poster` through a story (a round kept and the key
//! confirmed, short of the target, late posts, the late rule, out of sync, the peer's drop, a
//! peer that leaves, retries, mismatched tags, an early `done`; adapting: a late round slows the
//! ask, desyncs widen τ and count only at the widest, a peer's desync widens ours, a round judged
//! at its own `start`'s parameters) and checks what it did. A vector with a top-level
//! `"adapt": {"floor_us", "ceil_us"}` has its poster adapt (`Poster::adapt`) from the start. With
//! `SGP_WRITE_POSTER_VECTORS=1` each story is also written to `tests/vectors/poster/NAME.json`,
//! and every file there (these, and any written by hand) is replayed against the engine:
//! `client/test/poster.test.mjs` replays the same files against `client/js/poster.js`.

use serde_json::{json, Value};
use sgp::clock::SyncSample;
use sgp::poster::{Action, Policy, Poster};
use sgp::protocol::{Ask, Entry, Label, Params, ParamsIn, Role, ServerMsg};
use sgp::secret::OwnPost;
use std::path::Path;

const DIR: &str = "tests/vectors/poster";
const T0: i64 = 1_764_000_000_000_000;
const ROOM: &str = "ABCDE-FGHJK";
const SESSION: &str = "0123456789abcdef0123456789abcdef";
/// Posts per poster per round in the stories: 50 each, 5 ms apart, all kept.
const POSTS: usize = 50;
const GAP_US: i64 = 10_000;

fn params(target_bits: u32) -> Params {
    let p = ParamsIn { tolerance_ms: Some(1.0), rate_hz: Some(100.0), guard_ms: Some(2.0), target_bits: Some(target_bits), tag_bits: Some(8), duration_ms: Some(550) };
    Params::resolve(&p).unwrap()
}

/// Calls the engine's input named by the vector step's `in`.
fn apply(p: &mut Poster, input: &Value, t: i64) -> Vec<Action> {
    let (name, v) = input.as_object().and_then(|o| o.iter().next()).expect("one input per step");
    match name.as_str() {
        "start" => p.start(t),
        "synced" => p.synced(SyncSample { offset_us: v["offset_us"].as_i64().unwrap(), delay_us: v["delay_us"].as_i64().unwrap() }, t),
        "server" => p.handle(serde_json::from_value::<ServerMsg>(v.clone()).expect("a server message"), t),
        "scheduled" => {
            let times: Vec<i64> = v["times_us"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            let labels: Vec<Label> = v["labels"].as_str().unwrap().chars().map(|c| if c == 'A' { Label::A } else { Label::B }).collect();
            let gap = v.get("mean_gap_us").and_then(Value::as_f64).unwrap_or(1e6 / p.params().rate_hz);
            p.scheduled(&times, &labels, gap, t)
        }
        "timeout" => p.on_timeout(t),
        "leave" => p.leave(t),
        "sent" => {
            let label = if v["label"] == "A" { Label::A } else { Label::B };
            p.sent(OwnPost { sent_us: v["sent_us"].as_i64().unwrap(), label }, v["held"].as_bool().unwrap_or(false), t)
        }
        "done_sent" => p.done_sent(t),
        other => panic!("unknown input {other}"),
    }
}

/// A story being told: the engine, and the vector it makes.
struct Story {
    p: Poster,
    head: Value,
    steps: Vec<Value>,
    /// The next round's parameters: the room's, tuned to our last ask as the room would
    /// (`Params::tuned`; the peer asks nothing).
    next: Params,
    /// The round being posted: its start and parameters.
    round: Option<(i64, Params)>,
    /// The post at this index is held up this long between its `timeout` and its `leave`.
    pause: Option<(usize, i64)>,
}

impl Story {
    fn new(name: &str, description: &str, policy: Policy, role: Role, params: Params) -> Story {
        let (pol, retries) = match policy {
            Policy::Terminal { retries } => ("terminal", Some(retries)),
            Policy::Browser => ("browser", None),
        };
        let head = json!({"name": name, "description": description, "policy": pol, "retries": retries, "room": ROOM, "role": role, "params": params});
        Story { p: Poster::new(policy, ROOM, role, params.clone()).unwrap(), head, steps: Vec::new(), next: params, round: None, pause: None }
    }

    /// The poster adapts between `floor_us` and `ceil_us` (the vector's `adapt`).
    fn adapt(mut self, floor_us: i64, ceil_us: i64) -> Story {
        self.p.adapt(floor_us, ceil_us);
        self.head["adapt"] = json!({"floor_us": floor_us, "ceil_us": ceil_us});
        self
    }

    /// The `ready` our poster says now: with its ask if it adapts.
    fn ready(&self) -> Value {
        match self.p.ask().map(|a| a.ask()) {
            Some((tolerance_ms, rate_div)) => json!({"send": {"type": "ready", "ask": {"tolerance_ms": tolerance_ms, "rate_div": rate_div}}}),
            None => json!({"send": {"type": "ready"}}),
        }
    }

    /// One input at `t`: the actions, in the vectors' form.
    fn step(&mut self, t: i64, input: Value) -> Vec<Value> {
        let out: Vec<Value> = apply(&mut self.p, &input, t).iter().map(Action::to_json).collect();
        self.steps.push(json!({"t_us": t, "in": input, "out": out, "next_deadline_us": self.p.next_deadline()}));
        for a in &out {
            if let Some(ask) = a["send"].get("ask") {
                let room: Params = serde_json::from_value(self.head["params"].clone()).unwrap();
                self.next = room.tuned(&serde_json::from_value::<Ask>(ask.clone()).unwrap()).unwrap();
            }
        }
        out
    }

    fn server(&mut self, t: i64, m: ServerMsg) -> Vec<Value> {
        self.step(t, json!({ "server": serde_json::to_value(m).unwrap() }))
    }

    /// Start, sync (offset and delay 0: local time is server time), ready.
    fn begin(&mut self) {
        assert_eq!(self.step(T0, json!({"start": {}})), vec![json!({"sync": {}})]);
        let ready = self.ready();
        assert_eq!(self.step(T0 + 10, json!({"synced": {"offset_us": 0, "delay_us": 0}})), vec![ready]);
    }

    /// Round `round` starts at `ts` (at the room's parameters, tuned to our last ask); we post
    /// on schedule (`late`: the post at that index is woken this late) and send `done`.
    /// Returns our posts (server time = local time).
    fn post_round(&mut self, round: u32, ts: i64, labels: &str, late: Option<(usize, i64)>) -> Vec<(i64, Label)> {
        let params = self.next.clone();
        let te = ts + i64::from(params.duration_ms) * 1000;
        let rate_hz = params.rate_hz;
        self.round = Some((ts, params.clone()));
        let out = self.server(ts - 50_000, ServerMsg::Start { session: SESSION.into(), round, t_start_us: ts, t_end_us: te, params });
        assert!(out[0]["schedule"].is_object(), "{out:?}");
        let me = if self.head["role"] == "alice" { 0 } else { 5_000 };
        let times: Vec<i64> = (0..POSTS as i64).map(|k| ts + 5_000 + me + k * GAP_US).collect();
        let mut scheduled = json!({"times_us": times, "labels": labels});
        if rate_hz != self.p.params().rate_hz {
            // The schedule's mean gap at the round's own rate (the replay assumes the room's).
            scheduled["mean_gap_us"] = json!(1e6 / rate_hz);
        }
        assert!(self.step(ts - 40_000, json!({ "scheduled": scheduled })).is_empty());
        let mut sent = Vec::new();
        let mut late = late;
        while let Some(d) = self.p.next_deadline() {
            let at = match late {
                Some((j, by)) if times.get(j) == Some(&d) => {
                    late = None;
                    d + by
                }
                _ => d,
            };
            let out = self.step(at, json!({"timeout": {}}));
            match out.first() {
                Some(a) if a["post"].is_object() => {
                    let label = a["post"]["label"].as_str().unwrap().to_string();
                    let leaves = match self.pause {
                        Some((j, by)) if times.get(j) == Some(&d) => at + by,
                        _ => at,
                    };
                    if self.step(leaves, json!({"leave": {}})).is_empty() {
                        self.step(leaves, json!({"sent": {"sent_us": leaves, "label": label, "held": false}}));
                        sent.push((leaves, if label == "A" { Label::A } else { Label::B }));
                    }
                }
                Some(a) if a["done"].is_object() => {
                    self.step(at, json!({"done_sent": {}}));
                    break;
                }
                _ => {}
            }
        }
        sent
    }

    /// The closed board: our posts where they landed (`moved`: (index, by µs); `missing`: left
    /// out) and the peer's, 5 ms after each of ours, with the other label pattern.
    fn close(&mut self, round: u32, ts: i64, mine: &[(i64, Label)], moved: &[(usize, i64)], missing: &[usize]) -> Vec<Value> {
        let duration_ms = self.round.as_ref().filter(|r| r.0 == ts).map_or(self.p.params().duration_ms, |r| r.1.duration_ms);
        let te = ts + i64::from(duration_ms) * 1000;
        let peer_first = self.head["role"] == "bob";
        let mut times: Vec<(i64, Label)> = Vec::new();
        for k in 0..POSTS {
            let slot = ts + 5_000 + k as i64 * GAP_US;
            let peer = (if peer_first { slot } else { slot + 5_000 }, if k % 3 == 0 { Label::A } else { Label::B });
            times.push(peer);
        }
        for (k, &(t, l)) in mine.iter().enumerate() {
            if !missing.contains(&k) {
                times.push((t + moved.iter().find(|m| m.0 == k).map_or(0, |m| m.1), l));
            }
        }
        times.sort_by_key(|x| x.0);
        let board: Vec<Entry> = times.iter().enumerate().map(|(i, &(t_us, label))| Entry { i: i as u32, t_us, label }).collect();
        self.server(te + 10_000, ServerMsg::Closed { session: SESSION.into(), round, board })
    }

    /// The vector, written when asked, and replayed here whether written or not.
    fn finish(self) {
        let mut v = self.head;
        v["steps"] = json!(self.steps);
        if std::env::var_os("SGP_WRITE_POSTER_VECTORS").is_some() {
            std::fs::create_dir_all(DIR).unwrap();
            let path = format!("{DIR}/{}.json", v["name"].as_str().unwrap());
            std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
        }
        replay(&v).unwrap();
    }
}

fn labels(pattern: &str) -> String {
    pattern.chars().cycle().take(POSTS).collect()
}

fn keys(out: &[Value]) -> Vec<String> {
    out.iter().map(|a| a.as_object().unwrap().keys().next().unwrap().clone()).collect()
}

/// Whether `actual` has every field `expected` gives, deep-equal (docs/poster.md).
fn covers(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e.iter().all(|(k, ev)| a.get(k).is_some_and(|av| covers(av, ev))),
        _ => actual == expected,
    }
}

/// Replays one vector against the engine; the first difference, if any.
fn replay(v: &Value) -> Result<(), String> {
    let policy = match v["policy"].as_str() {
        Some("terminal") => Policy::Terminal { retries: v["retries"].as_u64().unwrap_or(3) as u32 },
        Some("browser") => Policy::Browser,
        other => return Err(format!("unknown policy {other:?}")),
    };
    let role: Role = serde_json::from_value(v["role"].clone()).map_err(|e| e.to_string())?;
    let params: Params = serde_json::from_value(v["params"].clone()).map_err(|e| e.to_string())?;
    let mut p = Poster::new(policy, v["room"].as_str().unwrap_or(ROOM), role, params)?;
    if let Some(a) = v.get("adapt") {
        p.adapt(a["floor_us"].as_i64().ok_or("adapt.floor_us")?, a["ceil_us"].as_i64().ok_or("adapt.ceil_us")?);
    }
    for (k, s) in v["steps"].as_array().ok_or("no steps")?.iter().enumerate() {
        let got: Vec<Value> = apply(&mut p, &s["in"], s["t_us"].as_i64().ok_or("no t_us")?).iter().map(Action::to_json).collect();
        let want = s["out"].as_array().ok_or("no out")?;
        if got.len() != want.len() || !got.iter().zip(want).all(|(g, w)| covers(g, w)) {
            return Err(format!("step {k} ({}): got {got:?}, want {want:?}", s["in"]));
        }
        if let Some(d) = s.get("next_deadline_us") {
            if json!(p.next_deadline()) != *d {
                return Err(format!("step {k}: next_deadline {:?}, want {d}", p.next_deadline()));
            }
        }
    }
    Ok(())
}

#[test]
fn every_vector_file_replays() {
    let mut n = 0;
    for e in std::fs::read_dir(DIR).expect("tests/vectors/poster").flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        replay(&v).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 8, "only {n} vectors in {DIR}");
    assert!(Path::new(DIR).join("kept_and_confirmed.json").exists());
}

const TS: i64 = T0 + 100_000;

#[test]
fn a_round_kept_with_the_strength_reached_confirms_and_the_key_is_confirmed() {
    let mut s = Story::new("kept_and_confirmed", "one round in sync reaches the target: key, confirm, confirmed", Policy::Terminal { retries: 3 }, Role::Alice, params(1));
    s.begin();
    let mine = s.post_round(1, TS, &labels("AABAB"), None);
    assert_eq!(mine.len(), POSTS);
    let out = s.close(1, TS, &mine, &[], &[]);
    assert_eq!(keys(&out), ["round", "key", "send"]);
    assert_eq!(out[0]["round"]["outcome"], "kept");
    assert_eq!(out[0]["round"]["n"], 2 * POSTS);
    let tag = out[1]["key"]["tag"].as_str().unwrap().to_string();
    assert_eq!(out[2], json!({"send": {"type": "confirm", "tag": tag}}), "drops 0 is left out on the wire");
    let t = TS + 600_000;
    assert!(s.server(t, ServerMsg::Confirm { role: Role::Alice, tag: tag.clone() }).is_empty());
    assert!(s.server(t, ServerMsg::Confirm { role: Role::Bob, tag }).is_empty());
    let out = s.server(t + 1, ServerMsg::Confirmed { matched: true });
    assert_eq!((keys(&out), &out[0]["confirmed"]["matched"]), (vec!["confirmed".to_string()], &json!(true)));
    s.finish();
}

#[test]
fn a_round_short_of_the_target_says_ready() {
    let mut s = Story::new("short_of_target", "a round in sync but short of the target: ready, and the next round adds to it", Policy::Terminal { retries: 3 }, Role::Bob, params(60));
    s.begin();
    let mine = s.post_round(1, TS, &labels("BAB"), None);
    let out = s.close(1, TS, &mine, &[], &[]);
    assert_eq!(keys(&out), ["round", "send"]);
    assert_eq!(out[1], json!({"send": {"type": "ready"}}));
    let ts2 = TS + 1_000_000;
    let mine = s.post_round(2, ts2, &labels("ABBA"), None);
    let out = s.close(2, ts2, &mine, &[], &[]);
    assert_eq!(keys(&out), ["round", "key", "send"], "two rounds reach 40 bits");
    s.finish();
}

#[test]
fn own_posts_that_missed_tau_are_dropped_as_spans_before_the_verdict() {
    let mut s = Story::new("own_late_posts_drop", "two own posts land 0.8τ late: a drop with their spans, then the verdict", Policy::Terminal { retries: 3 }, Role::Alice, params(1));
    s.begin();
    let mine = s.post_round(1, TS, &labels("AB"), None);
    let out = s.close(1, TS, &mine, &[(7, 800), (20, 800)], &[]);
    assert_eq!(keys(&out), ["send", "round", "key", "send"], "the drop goes out before the round's verdict");
    let spans = out[1]["round"]["spans"].as_array().unwrap().clone();
    assert_eq!(spans.len(), 2);
    assert_eq!(out[0], json!({"send": {"type": "drop", "spans": spans}}));
    assert_eq!(out[3]["send"]["drops"], 1);
    s.finish();
}

#[test]
fn the_peers_drop_derives_the_round_again_and_confirms_again_or_voids_the_key() {
    let mut s = Story::new("peer_dropped", "the peer's dropped narrows the round: derived again, confirmed again; a second narrows it below the target: key void, ready", Policy::Terminal { retries: 3 }, Role::Alice, params(1));
    s.begin();
    let mine = s.post_round(1, TS, &labels("AAB"), None);
    let out = s.close(1, TS, &mine, &[], &[]);
    assert_eq!(keys(&out), ["round", "key", "send"]);
    let t = TS + 600_000;
    let out = s.server(t, ServerMsg::Dropped { session: SESSION.into(), round: 1, spans: vec![[TS + 4_000, TS + 31_000]] });
    assert_eq!(keys(&out), ["dropped", "key", "send"]);
    assert_eq!(out[0]["dropped"]["n"], 2 * POSTS - 6);
    assert_eq!(out[2]["send"]["drops"], 1);
    let out = s.server(t + 1, ServerMsg::Dropped { session: SESSION.into(), round: 1, spans: vec![[TS + 100_000, TS + 300_000]] });
    assert_eq!(keys(&out), ["dropped", "key_void", "send"]);
    assert_eq!(out[1]["key_void"]["round"], 1);
    assert_eq!(out[2], json!({"send": {"type": "ready"}}));
    s.finish();
}

#[test]
fn a_round_out_of_sync_is_aborted_and_retried_after_a_new_sync() {
    let mut s = Story::new("desync_then_retry", "most own posts are missing from the board: abort desync; the room's aborted drops the round; sync again", Policy::Terminal { retries: 3 }, Role::Bob, params(1));
    s.begin();
    let mine = s.post_round(1, TS, &labels("AB"), None);
    let out = s.close(1, TS, &mine, &[], &(0..15).collect::<Vec<_>>());
    assert_eq!(keys(&out), ["round", "send"]);
    assert_eq!(out[0]["round"]["outcome"], "desync");
    assert_eq!(out[0]["round"]["unmatched"], 15);
    assert_eq!(out[1], json!({"send": {"type": "abort", "reason": "desync"}}));
    let out = s.server(TS + 600_000, ServerMsg::Aborted { reason: "desync".into() });
    assert_eq!(keys(&out), ["aborted", "sync"]);
    assert_eq!((&out[0]["aborted"]["reason"], &out[0]["aborted"]["round"]), (&json!("desync"), &json!(1)));
    s.finish();
}

#[test]
fn the_late_rule_skips_a_post_too_late_and_leaves_out_its_stretch() {
    let mut s = Story::new("late_rule", "the poster wakes 6 ms after post 3's target (the limit is half the 10 ms mean gap): it is skipped, and the stretch from post 3's would-be prediction − 2τ to post 4's + τ is left out (a span, announced with drop); the round is kept", Policy::Terminal { retries: 3 }, Role::Alice, params(1));
    s.begin();
    let mine = s.post_round(1, TS, &labels("AB"), Some((3, 6_000)));
    assert_eq!(mine.len(), POSTS - 1);
    let out = s.close(1, TS, &mine, &[], &[]);
    assert_eq!(keys(&out), ["send", "round", "key", "send"]);
    let (t3, t4) = (TS + 5_000 + 3 * GAP_US, TS + 5_000 + 4 * GAP_US);
    assert_eq!(out[0], json!({"send": {"type": "drop", "spans": [[t3 - 2_000, t4 + 1_000]]}}));
    assert_eq!((out[1]["round"]["outcome"].as_str(), out[1]["round"]["skipped"].as_u64()), (Some("kept"), Some(1)));
    s.finish();

    let mut s = Story::new("late_rule_at_the_send", "the poster wakes 4.5 ms after post 3's target, inside the 5 ms limit, and is held up 1 ms more before the send: leave skips it (send nothing), its stretch a span; the round is kept", Policy::Terminal { retries: 3 }, Role::Alice, params(1));
    s.begin();
    s.pause = Some((3, 1_000));
    let mine = s.post_round(1, TS, &labels("AB"), Some((3, 4_500)));
    assert_eq!(mine.len(), POSTS - 1);
    let out = s.close(1, TS, &mine, &[], &[]);
    assert_eq!(keys(&out), ["send", "round", "key", "send"]);
    assert_eq!(out[0], json!({"send": {"type": "drop", "spans": [[t3 - 2_000, t4 + 1_000]]}}));
    assert_eq!((out[1]["round"]["outcome"].as_str(), out[1]["round"]["skipped"].as_u64()), (Some("kept"), Some(1)));
    s.finish();

    let mut s = Story::new("late_rule_edge", "the poster wakes 4.5 ms after post 3's target and leaves at 5 ms, exactly the limit: it is posted, and the round is kept without a span", Policy::Terminal { retries: 3 }, Role::Alice, params(1));
    s.begin();
    s.pause = Some((3, 500));
    let mine = s.post_round(1, TS, &labels("AB"), Some((3, 4_500)));
    assert_eq!(mine.len(), POSTS);
    let out = s.close(1, TS, &mine, &[], &[]);
    assert_eq!(keys(&out), ["round", "key", "send"]);
    assert_eq!((out[0]["round"]["outcome"].as_str(), out[0]["round"]["skipped"].as_u64()), (Some("kept"), None));
    s.finish();

    let mut s = Story::new("late_rule_spoils", "the poster wakes 150 ms after post 3's target: posts 3-17 are skipped, more than one in 4 of the round's 50, so the round is dropped", Policy::Terminal { retries: 3 }, Role::Alice, params(1));
    s.begin();
    let mine = s.post_round(1, TS, &labels("AB"), Some((3, 150_000)));
    assert_eq!(mine.len(), POSTS - 15);
    let out = s.close(1, TS, &mine, &[], &[]);
    assert_eq!(keys(&out), ["round", "send"]);
    assert_eq!((out[0]["round"]["outcome"].as_str(), out[0]["round"]["skipped"].as_u64()), (Some("late"), Some(15)));
    assert_eq!(out[1], json!({"send": {"type": "abort", "reason": "desync"}}));
    s.finish();
}

#[test]
fn a_peer_that_leaves_ends_the_terminal_but_not_the_page() {
    let mut s = Story::new("peer_left_terminal", "the other poster leaves after a round: sgp pair stops (exit 3)", Policy::Terminal { retries: 3 }, Role::Alice, params(60));
    s.begin();
    let mine = s.post_round(1, TS, &labels("AB"), None);
    s.close(1, TS, &mine, &[], &[]);
    let out = s.server(TS + 600_000, ServerMsg::Peer { event: sgp::protocol::PeerEvent::Left, role: Role::Bob });
    assert_eq!(keys(&out), ["fail"]);
    assert_eq!(out[0]["fail"]["reason"], "peer_left");
    s.finish();

    let mut s = Story::new("peer_left_browser", "the page waits on peer left; the room's aborted {peer_left} stops it", Policy::Browser, Role::Alice, params(60));
    s.begin();
    let mine = s.post_round(1, TS, &labels("AB"), None);
    s.close(1, TS, &mine, &[], &[]);
    assert!(s.server(TS + 600_000, ServerMsg::Peer { event: sgp::protocol::PeerEvent::Left, role: Role::Bob }).is_empty());
    let out = s.server(TS + 600_001, ServerMsg::Aborted { reason: "peer_left".into() });
    assert_eq!(keys(&out), ["aborted", "fail"]);
    assert_eq!(out[1]["fail"]["reason"], "peer_left");
    s.finish();
}

#[test]
fn retries_are_counted_per_policy() {
    let mut s = Story::new("retries_terminal", "sgp pair --retries 1: the second failed round gives up", Policy::Terminal { retries: 1 }, Role::Alice, params(1));
    s.begin();
    for (round, ts) in [(1, TS), (2, TS + 1_000_000)] {
        let mine = s.post_round(round, ts, &labels("AB"), None);
        s.close(round, ts, &mine, &[], &(0..20).collect::<Vec<_>>());
        let out = s.server(ts + 600_000, ServerMsg::Aborted { reason: "desync".into() });
        if round == 1 {
            assert_eq!(keys(&out), ["aborted", "sync"]);
            s.step(ts + 600_010, json!({"synced": {"offset_us": 0, "delay_us": 0}}));
        } else {
            assert_eq!(keys(&out), ["aborted", "fail"]);
            assert_eq!(out[1]["fail"]["reason"], "retries");
        }
    }
    s.finish();

    let mut s = Story::new("retry_browser_keeps_sync", "the page keeps a round with one post skipped (a span) without a new sync; it drops one held up 150 ms (15 of 50 posts skipped) and syncs again", Policy::Browser, Role::Bob, params(60));
    s.begin();
    let mine = s.post_round(1, TS, &labels("AB"), Some((5, 6_000)));
    let out = s.close(1, TS, &mine, &[], &[]);
    assert_eq!(keys(&out), ["send", "round", "send"], "drop, then ready: short of 60 bits");
    assert_eq!((out[1]["round"]["outcome"].as_str(), &out[2]), (Some("kept"), &json!({"send": {"type": "ready"}})));
    let ts = TS + 1_000_000;
    let mine = s.post_round(2, ts, &labels("AB"), Some((5, 150_000)));
    let out = s.close(2, ts, &mine, &[], &[]);
    assert_eq!(out[0]["round"]["outcome"], "late");
    let out = s.server(ts + 600_000, ServerMsg::Aborted { reason: "desync".into() });
    assert_eq!(keys(&out), ["aborted", "sync"]);
    s.finish();
}

#[test]
fn mismatched_tags_discard_the_key_and_start_again() {
    let mut s = Story::new("mismatched_tags", "the peer's tag differs: confirmed without a match, the session is discarded, sync again", Policy::Terminal { retries: 3 }, Role::Alice, params(1));
    s.begin();
    let mine = s.post_round(1, TS, &labels("AB"), None);
    let out = s.close(1, TS, &mine, &[], &[]);
    assert_eq!(keys(&out), ["round", "key", "send"]);
    let t = TS + 600_000;
    assert!(s.server(t, ServerMsg::Confirm { role: Role::Bob, tag: "00".into() }).is_empty());
    let out = s.server(t + 1, ServerMsg::Confirmed { matched: false });
    assert_eq!(keys(&out), ["confirmed", "sync"]);
    assert_eq!(out[0]["confirmed"]["matched"], false);
    s.finish();
}

#[test]
fn an_early_done_is_said_again() {
    let mut s = Story::new("done_too_early", "the server refuses our done as too_early: it is said again 4 ms later", Policy::Terminal { retries: 3 }, Role::Alice, params(1));
    s.begin();
    s.post_round(1, TS, &labels("AB"), None);
    let t = TS + 555_000;
    let out = s.server(t, ServerMsg::Error { code: sgp::protocol::ErrorCode::TooEarly, message: "done before t_end".into() });
    assert!(out.is_empty());
    assert_eq!(s.p.next_deadline(), Some(t + 4_000), "the second done, 2·2 ms after the refusal");
    assert_eq!(s.step(t + 4_000, json!({"timeout": {}})), vec![json!({"done": {}})]);
    s.finish();
}

/// A story of a poster adapting between `floor_us` and `ceil_us`, begun (synced, ready).
fn adapting(name: &str, description: &str, policy: Policy, role: Role, params: Params, (floor_us, ceil_us): (i64, i64)) -> Story {
    let mut s = Story::new(name, description, policy, role, params).adapt(floor_us, ceil_us);
    s.begin();
    s
}

/// The ask a `ready` carries: (τ ms, rate divisor).
fn ask_of(out: &[Value]) -> (f64, u64) {
    let ready = out.iter().find(|a| a["send"]["type"] == "ready").unwrap_or_else(|| panic!("no ready in {out:?}"));
    let ask = &ready["send"]["ask"];
    (ask["tolerance_ms"].as_f64().unwrap(), ask["rate_div"].as_u64().unwrap())
}

#[test]
fn adapting_a_late_round_asks_for_a_lower_rate_and_does_not_count() {
    let mut s = adapting("adapt_late_slows_rate", "adapting (τ 1-5 ms), sgp pair --retries 0: held up 150 ms (limit 5 ms), 15 of 50 posts skipped, the round is dropped, which does not count; one late round is a hiccup (the next ready asks the same), the second in a row asks for a quarter of the rate (the most one step takes), and the next round runs at it", Policy::Terminal { retries: 0 }, Role::Alice, params(1), (1_000, 5_000));
    let mut ts = TS;
    for (round, want) in [(1, (1.0, 1)), (2, (1.0, 4))] {
        let mine = s.post_round(round, ts, &labels("AB"), Some((3, 150_000)));
        let out = s.close(round, ts, &mine, &[], &[]);
        assert_eq!(keys(&out), ["round", "send"]);
        assert_eq!((out[0]["round"]["outcome"].as_str(), out[0]["round"]["rate_hz"].as_f64()), (Some("late"), Some(100.0)));
        let out = s.server(ts + 600_000, ServerMsg::Aborted { reason: "desync".into() });
        assert_eq!(keys(&out), ["aborted", "sync"], "not at the lowest rate yet: no failure counted, no giving up");
        let out = s.step(ts + 600_010, json!({"synced": {"offset_us": 0, "delay_us": 0}}));
        assert_eq!(ask_of(&out), want, "round {round}");
        ts += 1_000_000;
    }
    let mine = s.post_round(3, ts, &labels("AB"), None);
    let out = s.close(3, ts, &mine, &[], &[]);
    assert_eq!(keys(&out), ["round", "key", "send"]);
    assert_eq!((out[0]["round"]["rate_hz"].as_f64(), out[0]["round"]["tolerance_us"].as_i64()), (Some(25.0), Some(1_000)));
    s.finish();
}

#[test]
fn adapting_desyncs_double_tau_up_to_the_ceiling_and_count_only_there() {
    let mut s = adapting("adapt_desync_widens_tau", "adapting (τ 1-4 ms), sgp pair --retries 1: out of sync at 1 and 2 ms asks 2 then 4 ms without counting; at 4 ms (the widest) the first desync counts and the second gives up", Policy::Terminal { retries: 1 }, Role::Bob, params(1), (1_000, 4_000));
    let mut ts = TS;
    for (round, want) in [(1, Some(2.0)), (2, Some(4.0)), (3, Some(4.0)), (4, None)] {
        let mine = s.post_round(round, ts, &labels("AB"), None);
        let out = s.close(round, ts, &mine, &[], &(0..20).collect::<Vec<_>>());
        assert_eq!(out[0]["round"]["outcome"], "desync");
        let out = s.server(ts + 2_000_000, ServerMsg::Aborted { reason: "desync".into() });
        match want {
            Some(tau) => {
                assert_eq!(keys(&out), ["aborted", "sync"], "round {round}");
                let out = s.step(ts + 2_000_010, json!({"synced": {"offset_us": 0, "delay_us": 0}}));
                assert_eq!(ask_of(&out), (tau, 1), "round {round}");
            }
            None => {
                assert_eq!(keys(&out), ["aborted", "fail"]);
                assert_eq!(out[1]["fail"]["reason"], "retries");
            }
        }
        ts += 3_000_000;
    }
    s.finish();
}

#[test]
fn adapting_a_desync_the_peer_found_first_widens_our_ask() {
    let mut s = adapting("adapt_peer_desync_widens", "adapting (τ 1-5 ms), sgp pair --retries 0: the room's aborted {desync} comes before our round closed (the peer found it out of sync): our ask doubles τ, uncounted; the late closed is not ours to judge", Policy::Terminal { retries: 0 }, Role::Alice, params(60), (1_000, 5_000));
    let mine = s.post_round(1, TS, &labels("AB"), None);
    let out = s.server(TS + 556_000, ServerMsg::Aborted { reason: "desync".into() });
    assert_eq!(keys(&out), ["aborted", "sync"]);
    assert_eq!(out[0]["aborted"]["round"], Value::Null, "no round of ours closed yet");
    let out = s.step(TS + 556_010, json!({"synced": {"offset_us": 0, "delay_us": 0}}));
    assert_eq!(ask_of(&out), (2.0, 1));
    assert!(s.close(1, TS, &mine, &[], &[]).is_empty());
    s.finish();
}

#[test]
fn a_round_is_judged_at_its_starts_parameters() {
    let mut s = adapting("adapt_round_params_from_start", "a joiner whose own path wants τ 2 ms in a 1 ms room: the round starts at 2 ms and 50 Hz; a post woken 6 ms late is within that rate's limit (10 ms), and 20 posts landing 1 ms off are sure at 2 ms (within 3τ/5; at 1 ms they would be out of sync): kept", Policy::Terminal { retries: 3 }, Role::Alice, params(1), (2_000, 5_000));
    let mine = s.post_round(1, TS, &labels("AB"), Some((3, 6_000)));
    assert_eq!(mine.len(), POSTS, "nothing skipped at 50 Hz");
    let moved: Vec<(usize, i64)> = (10..30).map(|k| (k, 1_000)).collect();
    let out = s.close(1, TS, &mine, &moved, &[]);
    let round = &out.iter().find(|a| a["round"].is_object()).unwrap()["round"];
    assert_eq!(round["outcome"], "kept", "{out:?}");
    assert_eq!((round["tolerance_us"].as_i64(), round["rate_hz"].as_f64()), (Some(2_000), Some(50.0)));
    s.finish();
}

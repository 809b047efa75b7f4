//! `jitter` and `load`: timing error of posts with known send times, and throughput.
//!
//! - The **prober** is alice in a room of its own with a passive bob (bob says `ready` and
//!   `done`, never posts). It syncs its clock as `sgp pair` does, posts on a Poisson schedule
//!   at the room's rate, notes each send time just before the send, and reads the error
//!   `server_t − predicted_t` of every post off the closed board (only the prober posts, so
//!   board entry k is post k).
//! - The **loaders** are M rooms of two posters each, on a thread (and runtime) of their own,
//!   each poster sending `post` frames at a steady rate in batches (`feed` … one `flush`),
//!   under the server's rate limit. Accepted posts are counted from the `closed` boards, over
//!   the window in which every loader room posts; the server's CPU time is read from
//!   /proc/PID/stat at the two ends of that window.

use super::{cpu_s, cpu_split_s, quantile, r3, require_loopback, thread_cpu_s, Opts};
use crate::client::{ws_url, Client, ClientError};
use crate::clock::{self, Clock, SYNC_SAMPLES};
use crate::protocol::{ClientMsg, ErrorCode, Label, Params, ParamsIn, ServerMsg};
use crate::room::Limits;
use crate::schedule;
use crate::secret::{self, OwnPost};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const POST_A: &str = crate::protocol::POST_A_TEXT;
const POST_B: &str = crate::protocol::POST_B_TEXT;
/// Any single wait on the server longer than this is a failure.
const WAIT: Duration = Duration::from_secs(30);
/// A loader sends at most this many posts per flush (the post bucket holds 64).
const MAX_BATCH: u64 = 48;
/// Loaders aim at this fraction of the server's post rate limit.
const UNDER_LIMIT: f64 = 0.9;

fn gone(e: ClientError) -> String {
    e.to_string()
}

async fn recv(c: &mut Client) -> Result<ServerMsg, String> {
    tokio::time::timeout(WAIT, c.recv()).await.map_err(|_| "the server did not answer in time".to_string())?.map_err(gone)
}

/// What the prober saw.
#[derive(Default)]
struct Probe {
    sent: usize,
    on_board: usize,
    refused: usize,
    /// Posts not sent because the prober fell behind its schedule by more than `sgp pair`'s
    /// late limit (half a mean gap): `sgp pair` would have dropped such a round.
    skipped: usize,
    /// Posts the server said came in one piece with the next message (`coalesced`): their
    /// entry carries that message's time, so they have no error of their own and `sgp pair`
    /// leaves them out. Not in the errors below.
    coalesced: usize,
    /// `server_t − predicted_t` of every other post, µs (the raw error).
    raw: Vec<f64>,
    /// `|server_t − predicted_t − its round's median|`, µs (the bias removed, as `sgp pair`
    /// does once it has refined its offset).
    dev: Vec<f64>,
    /// Each round's median error, µs (the clock sync's bias, which `sgp pair` learns away).
    bias: Vec<f64>,
}

/// The default room's posting rate per poster (Hz).
fn default_rate_hz() -> f64 {
    Params::resolve(&ParamsIn::default()).map(|p| p.rate_hz).unwrap_or(500.0)
}

/// One prober room posting for `seconds` in rounds of at most 5 s, each after a fresh sync.
async fn probe(url: String, seconds: f64, tolerance_ms: Option<f64>) -> Result<Probe, String> {
    let total_ms = (seconds * 1000.0).round().max(200.0);
    let round_ms = total_ms.min(5000.0) as u32;
    let rounds = (total_ms / round_ms as f64).ceil() as usize;
    let code = crate::room::make_code(&mut crate::server::os_random);
    let mut alice = Client::connect_room(&url, Some(&code)).await.map_err(gone)?;
    let params = ParamsIn { duration_ms: Some(round_ms), tolerance_ms, ..Default::default() };
    alice.send(&ClientMsg::Create { room: Some(code.clone()), params: Some(params) }).await.map_err(gone)?;
    let (room, params) = loop {
        match recv(&mut alice).await? {
            ServerMsg::Joined { room, params, .. } => break (room, params),
            ServerMsg::Error { message, .. } => return Err(format!("prober: {message}")),
            _ => {}
        }
    };
    let mut bob = Client::connect_room(&url, Some(&code)).await.map_err(gone)?;
    bob.send(&ClientMsg::Join { room, as_: None }).await.map_err(gone)?;
    loop {
        match recv(&mut bob).await? {
            ServerMsg::Joined { .. } => break,
            ServerMsg::Error { message, .. } => return Err(format!("prober: {message}")),
            _ => {}
        }
    }
    let mut rng = fastrand::Rng::new();
    let mut out = Probe::default();
    for _ in 0..rounds {
        let sync = alice.sync(SYNC_SAMPLES).await.map_err(gone)?;
        alice.send(&ClientMsg::Ready { ask: None }).await.map_err(gone)?;
        bob.send(&ClientMsg::Ready { ask: None }).await.map_err(gone)?;
        let (t_start, t_end) = loop {
            match recv(&mut alice).await? {
                ServerMsg::Start { t_start_us, t_end_us, .. } => break (t_start_us, t_end_us),
                ServerMsg::Error { message, .. } => return Err(format!("prober: {message}")),
                _ => {}
            }
        };
        // As `sgp pair` does: a post sent at local s is predicted at server s + shift.
        let shift = sync.offset_us + sync.delay_us.div_euclid(2);
        let clock = alice.clock;
        let planned = schedule::poisson(t_start, t_end, params.rate_hz, &mut rng);
        // As `sgp pair`: a post more than half a mean gap behind its schedule is not sent.
        let late_limit = crate::poster::late_limit_us(1e6 / params.rate_hz);
        let mut posts = Vec::with_capacity(planned.len());
        for p in planned {
            let target = p - shift;
            if clock.now_us() > target + late_limit {
                out.skipped += 1;
                continue;
            }
            schedule::wait_until(&clock, target).await;
            if clock.now_us() > target + late_limit {
                out.skipped += 1; // woken too late
                continue;
            }
            let label = if rng.bool() { Label::A } else { Label::B };
            let sent_us = alice.send_text(if label == Label::A { POST_A } else { POST_B }.to_string()).await.map_err(gone)?;
            posts.push(OwnPost { sent_us, label });
        }
        schedule::wait_until(&clock, t_end - shift + 2_000).await;
        let mut coalesced = Vec::new();
        let board = finish_round(&mut alice, &mut bob, &mut out.refused, &mut coalesced).await?;
        let s = secret::Sync { offset_us: sync.offset_us, delay_us: sync.delay_us };
        // Only the prober posts, and one connection's frames are read in order: entry k is
        // post k, unless a post was refused (then: the nearest entry with the label).
        let errs: Vec<Option<i64>> = if board.len() == posts.len() {
            board.iter().zip(&posts).map(|(e, p)| Some(e.t_us - secret::predicted_us(p, s))).collect()
        } else {
            secret::arrival_errors(&board, &posts, s)
        };
        let mut errs: Vec<f64> = errs
            .into_iter()
            .enumerate()
            .filter(|(k, _)| !coalesced.contains(&(*k as u32 + 1)))
            .filter_map(|(_, e)| e.map(|e| e as f64))
            .collect();
        out.sent += posts.len();
        out.on_board += board.len();
        out.coalesced += coalesced.iter().filter(|&&k| (k as usize) <= posts.len()).count();
        errs.sort_by(f64::total_cmp);
        let median = quantile(&errs, 0.5);
        if median.is_finite() {
            out.bias.push(median);
        }
        out.dev.extend(errs.iter().map(|e| (e - median).abs()));
        out.raw.extend(errs);
    }
    alice.close().await;
    bob.close().await;
    Ok(out)
}

/// Both posters send `done` (again, if the server found one early) until the board closes.
/// `coalesced` gets the prober's posts (from 1) that the server says were read in one piece
/// with the next message.
async fn finish_round(
    alice: &mut Client,
    bob: &mut Client,
    refused: &mut usize,
    coalesced: &mut Vec<u32>,
) -> Result<Vec<crate::protocol::Entry>, String> {
    alice.send(&ClientMsg::Done {}).await.map_err(gone)?;
    bob.send(&ClientMsg::Done {}).await.map_err(gone)?;
    let (mut board, mut bob_closed) = (None, false);
    while board.is_none() || !bob_closed {
        tokio::select! {
            m = recv(alice), if board.is_none() => match m? {
                ServerMsg::Closed { board: b, .. } => board = Some(b),
                ServerMsg::Error { code: ErrorCode::TooEarly, .. } => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    alice.send(&ClientMsg::Done {}).await.map_err(gone)?;
                }
                ServerMsg::Error { .. } => *refused += 1,
                ServerMsg::Coalesced { post, count } => coalesced.extend(post..post.saturating_add(count)),
                ServerMsg::Aborted { reason } => return Err(format!("prober: round aborted ({reason})")),
                _ => {}
            },
            m = recv(bob), if !bob_closed => match m? {
                ServerMsg::Closed { .. } => bob_closed = true,
                ServerMsg::Error { code: ErrorCode::TooEarly, .. } => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    bob.send(&ClientMsg::Done {}).await.map_err(gone)?;
                }
                _ => {}
            },
        }
    }
    Ok(board.unwrap_or_default())
}

/// The loaders' common posting window, in server and local time (µs).
#[derive(Clone, Copy, Debug)]
struct Window {
    srv_start: i64,
    srv_end: i64,
    local_start: i64,
    local_end: i64,
}

struct LoadPlan {
    rooms: usize,
    /// Each poster's sending rate.
    post_hz: f64,
    /// The loader rooms' `rate_hz` (their rate limit follows from it), if not the default.
    room_rate_hz: Option<f64>,
    duration_ms: u32,
}

#[derive(Default)]
struct LoadOutcome {
    /// Server times of the entries on each loader room's closed board.
    boards: Vec<Vec<i64>>,
    sent: u64,
    /// Posts a loader left out rather than send late in a burst (it fell behind).
    skipped: u64,
    /// Posts the server refused: over the post bucket or onto a full board (`too_many_posts`, `board_full`; counted as `rate_limited`), or outside the round
    /// window (a loader held up past `t_end + G`; outside the counted window anyway).
    refused: u64,
    rate_limited: u64,
    /// Loader connections the server closed or lost.
    lost: u64,
    loader_cpu_s: f64,
}

/// The loaders, on a thread with a runtime of their own. The first receiver gets the common
/// window once every room has started; the second the outcome once every board has closed.
fn spawn_loaders(
    url: String,
    plan: LoadPlan,
    clock: Clock,
) -> (oneshot::Receiver<Window>, oneshot::Receiver<Result<LoadOutcome, String>>) {
    let (wtx, wrx) = oneshot::channel();
    let (otx, orx) = oneshot::channel();
    let limit = Duration::from_millis(plan.duration_ms as u64) + Duration::from_secs(90);
    let spawned = std::thread::Builder::new().name("sgp-bench-load".into()).spawn(move || {
        let result = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => tokio::task::LocalSet::new().block_on(&rt, async move {
                tokio::time::timeout(limit, loaders(&url, &plan, clock, wtx)).await.unwrap_or_else(|_| Err("the load did not finish in time".into()))
            }),
            Err(e) => Err(format!("cannot start the loaders' runtime: {e}")),
        };
        let _ = otx.send(result);
    });
    if let Err(e) = spawned {
        let (otx, orx) = oneshot::channel();
        let _ = otx.send(Err(format!("cannot start the loaders' thread: {e}")));
        return (wrx, orx);
    }
    (wrx, orx)
}

async fn connect(ws: &str) -> Result<Ws, String> {
    match tokio::time::timeout(WAIT, crate::client::open(ws)).await {
        Ok(Ok(w)) => Ok(w),
        Ok(Err(e)) => Err(format!("cannot connect a loader: {e} (raise `ulimit -n`?)")),
        Err(_) => Err("a loader's connection timed out".into()),
    }
}

async fn send_value(ws: &mut Ws, v: Value) -> Result<(), String> {
    ws.send(Message::Text(v.to_string().into())).await.map_err(|e| format!("a loader lost its connection: {e}"))
}

/// The next message of one of `types` (an `error` fails).
async fn recv_type(ws: &mut Ws, types: &[&str]) -> Result<Value, String> {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next()).await.map_err(|_| "the server did not answer a loader in time".to_string())?;
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                if v["type"] == "error" {
                    return Err(format!("loader: {}", v["message"]));
                }
                if types.iter().any(|t| v["type"] == *t) {
                    return Ok(v);
                }
            }
            Some(Ok(_)) => {}
            _ => return Err("the server closed a loader's connection".into()),
        }
    }
}

async fn make_room(ws: &str, params: &Value) -> Result<(Ws, Ws), String> {
    let mut a = connect(ws).await?;
    send_value(&mut a, json!({"type": "create", "params": params})).await?;
    let joined = recv_type(&mut a, &["joined"]).await?;
    let code = joined["room"].as_str().ok_or("no room code")?.to_string();
    let mut b = connect(ws).await?;
    send_value(&mut b, json!({"type": "join", "room": code})).await?;
    recv_type(&mut b, &["joined"]).await?;
    Ok((a, b))
}

/// server clock − `clock`, from the least delayed of 8 pings.
async fn offset(ws: &mut Ws, clock: Clock) -> Result<i64, String> {
    let mut samples = Vec::new();
    for _ in 0..8 {
        let t0 = clock.now_us();
        send_value(ws, json!({"type": "ping", "t0_us": t0})).await?;
        let pong = recv_type(ws, &["pong"]).await?;
        let t3 = clock.now_us();
        let t = |k: &str| pong[k].as_i64().unwrap_or(0);
        if t("t0_us") == t0 {
            samples.push(clock::sample(t0, t("t1_us"), t("t2_us"), t3));
        }
    }
    clock::best(&samples).map(|s| s.offset_us).ok_or_else(|| "no clock sample".into())
}

async fn sleep_until(clock: Clock, local_us: i64) {
    let left = local_us - clock.now_us();
    if left > 0 {
        tokio::time::sleep(Duration::from_micros(left as u64)).await;
    }
}

async fn loaders(url: &str, plan: &LoadPlan, clock: Clock, win_tx: oneshot::Sender<Window>) -> Result<LoadOutcome, String> {
    let ws = ws_url(url)?;
    let mut params = json!({"duration_ms": plan.duration_ms});
    if let Some(r) = plan.room_rate_hz {
        params["rate_hz"] = json!(r);
    }
    let mut pairs: Vec<(Ws, Ws)> = Vec::with_capacity(plan.rooms);
    while pairs.len() < plan.rooms {
        let k = (plan.rooms - pairs.len()).min(64);
        for made in futures_util::future::join_all((0..k).map(|_| make_room(&ws, &params))).await {
            pairs.push(made?);
        }
    }
    let offset = offset(&mut pairs[0].0, clock).await?;
    for (a, b) in pairs.iter_mut() {
        send_value(a, json!({"type": "ready"})).await?;
        send_value(b, json!({"type": "ready"})).await?;
    }
    let mut conns = Vec::with_capacity(2 * pairs.len());
    for (a, b) in pairs {
        for mut w in [a, b] {
            let start = recv_type(&mut w, &["start"]).await?;
            let (ts, te) = (start["t_start_us"].as_i64().unwrap_or(0), start["t_end_us"].as_i64().unwrap_or(0));
            conns.push((w, ts, te));
        }
    }
    // Every room posts in [its t_start, its t_end]; leave a quarter second at each end.
    let srv_start = conns.iter().map(|c| c.1).max().unwrap_or(0) + 250_000;
    let srv_end = conns.iter().map(|c| c.2).min().unwrap_or(0) - 250_000;
    let window = Window { srv_start, srv_end, local_start: srv_start - offset, local_end: srv_end - offset };
    let _ = win_tx.send(window);
    let cpu = tokio::task::spawn_local(async move {
        sleep_until(clock, window.local_start).await;
        let c0 = thread_cpu_s();
        sleep_until(clock, window.local_end).await;
        thread_cpu_s() - c0
    });
    let tick_us = (16e6 / plan.post_hz).clamp(2_000.0, 50_000.0) as i64;
    let mut rng = fastrand::Rng::new();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(k, (w, ts, te))| {
            let (hz, phase) = (plan.post_hz, rng.i64(0..tick_us));
            tokio::task::spawn_local(poster(w, k % 2 == 0, ts - offset, te - offset, hz, tick_us, phase, clock))
        })
        .collect();
    let mut out = LoadOutcome::default();
    for t in tasks {
        let p = t.await.map_err(|e| e.to_string())?;
        out.sent += p.sent;
        out.skipped += p.skipped;
        out.refused += p.refused;
        out.rate_limited += p.rate_limited;
        out.lost += u64::from(p.lost);
        out.boards.extend(p.board);
    }
    out.loader_cpu_s = cpu.await.unwrap_or(f64::NAN);
    Ok(out)
}

struct Poster {
    sent: u64,
    skipped: u64,
    refused: u64,
    rate_limited: u64,
    lost: bool,
    board: Option<Vec<i64>>,
}

/// One loader connection: posts from `start` to `end` (local µs) at `hz` in batches every
/// `tick_us`, sends `done`, and waits for the board.
#[allow(clippy::too_many_arguments)]
async fn poster(ws: Ws, keep_board: bool, start: i64, end: i64, hz: f64, tick_us: i64, phase: i64, clock: Clock) -> Poster {
    let (mut sink, mut stream) = ws.split();
    let reader = async move {
        let (mut refused, mut rate_limited, mut board, mut lost) = (0u64, 0u64, None, true);
        while let Some(Ok(m)) = stream.next().await {
            let Message::Text(t) = m else { continue };
            if t.starts_with(r#"{"type":"closed""#) {
                if keep_board {
                    if let Ok(ServerMsg::Closed { board: b, .. }) = serde_json::from_str(&t) {
                        board = Some(b.iter().map(|e| e.t_us).collect());
                    }
                }
                lost = false;
                break;
            }
            if t.starts_with(r#"{"type":"error""#) {
                refused += 1;
                rate_limited += u64::from(t.contains(r#""code":"too_many_posts""#) || t.contains(r#""code":"board_full""#));
            }
        }
        (refused, rate_limited, board, lost)
    };
    let writer = async move {
        let (from, to) = (start + 1_000, end - 1_000);
        // A loader that fell behind (its thread was not run) does not catch up: more than a
        // tick and a half of posts at once would go over the server's rate limit.
        let cap = ((hz * tick_us as f64 / 1e6 * 1.5).ceil() as u64).clamp(1, MAX_BATCH);
        let (mut sent, mut due_before, mut skipped, mut k) = (0u64, 0u64, 0u64, 0u64);
        let mut next = from + phase;
        loop {
            sleep_until(clock, next).await;
            let now = clock.now_us().min(to);
            let due = ((now - from).max(0) as f64 * hz / 1e6) as u64;
            let n = due - due_before;
            due_before = due;
            let batch = n.min(cap);
            skipped += n - batch;
            for _ in 0..batch {
                k += 1;
                let text = if k % 2 == 0 { POST_A } else { POST_B };
                if sink.feed(Message::Text(Utf8Bytes::from_static(text))).await.is_err() {
                    return (sent, skipped);
                }
            }
            if batch > 0 {
                if sink.flush().await.is_err() {
                    return (sent, skipped);
                }
                sent += batch;
            }
            if now >= to {
                break;
            }
            // The last batch goes at `to`, not a tick later (past the window's guard).
            next = (next + tick_us).min(to);
        }
        // `done` only once t_end has passed on the server (the grace closes the round anyway).
        sleep_until(clock, end + 3_000).await;
        let _ = sink.send(Message::Text(Utf8Bytes::from_static(r#"{"type":"done"}"#))).await;
        (sent, skipped)
    };
    let ((refused, rate_limited, board, lost), (sent, skipped)) = tokio::join!(reader, writer);
    Poster { sent, skipped, refused, rate_limited, lost, board }
}

struct StepSpec {
    rooms: usize,
    /// The prober room's tolerance (its rate follows), if not the server's default.
    probe_tolerance_ms: Option<f64>,
    post_hz: f64,
    room_rate_hz: Option<f64>,
    seconds: f64,
}

fn probe_fields(row: &mut Value, p: &Probe) {
    let sorted = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    let abs: Vec<f64> = p.raw.iter().map(|e| e.abs()).collect();
    let (raw, abs, dev, bias) = (sorted(&p.raw), sorted(&abs), sorted(&p.dev), sorted(&p.bias));
    row["probe_posts"] = json!(p.sent);
    row["probe_on_board"] = json!(p.on_board);
    row["probe_refused"] = json!(p.refused);
    row["probe_skipped"] = json!(p.skipped);
    row["probe_coalesced"] = json!(p.coalesced);
    row["probe_errors"] = json!(raw.len());
    // The raw error `server_t − predicted_t`: signed extremes, and quantiles of its size.
    row["raw_err_us_min"] = r3(raw.first().copied().unwrap_or(f64::NAN));
    row["raw_err_us_median"] = r3(quantile(&raw, 0.5));
    row["raw_err_us_max"] = r3(raw.last().copied().unwrap_or(f64::NAN));
    row["raw_abs_us_p50"] = r3(quantile(&abs, 0.5));
    row["raw_abs_us_p99"] = r3(quantile(&abs, 0.99));
    row["raw_abs_us_p999"] = r3(quantile(&abs, 0.999));
    row["raw_abs_us_max"] = r3(abs.last().copied().unwrap_or(f64::NAN));
    // The same with each round's median (the sync's bias) taken off.
    row["bias_us"] = r3(quantile(&bias, 0.5));
    row["dev_us_p50"] = r3(quantile(&dev, 0.5));
    row["dev_us_p99"] = r3(quantile(&dev, 0.99));
    row["dev_us_p999"] = r3(quantile(&dev, 0.999));
    row["dev_us_max"] = r3(dev.last().copied().unwrap_or(f64::NAN));
}

/// One measurement: `spec.rooms` loader rooms (none: at rest) and the prober among them.
async fn step(url: &str, pid: Option<u32>, spec: &StepSpec) -> Result<Value, String> {
    let clock = Clock::new();
    let mut row = json!({"rooms": spec.rooms});
    if spec.rooms == 0 {
        let (c0, t0) = (pid.and_then(cpu_s), clock.now_us());
        let p = probe(url.to_string(), spec.seconds, spec.probe_tolerance_ms).await?;
        let (c1, t1) = (pid.and_then(cpu_s), clock.now_us());
        if let (Some(c0), Some(c1)) = (c0, c1) {
            row["server_cpu_pct"] = r3(100.0 * (c1 - c0) / ((t1 - t0) as f64 / 1e6));
        }
        probe_fields(&mut row, &p);
        return Ok(row);
    }
    let plan = LoadPlan {
        rooms: spec.rooms,
        post_hz: spec.post_hz,
        room_rate_hz: spec.room_rate_hz,
        duration_ms: ((spec.seconds + 2.0) * 1000.0) as u32,
    };
    let duration_s = plan.duration_ms as f64 / 1000.0;
    let (wrx, orx) = spawn_loaders(url.to_string(), plan, clock);
    let Ok(window) = wrx.await else {
        return Err(orx.await.map_err(|e| e.to_string())?.err().unwrap_or_else(|| "the loaders failed".into()));
    };
    sleep_until(clock, window.local_start).await;
    let cpu0 = pid.and_then(cpu_split_s);
    let prober = tokio::task::spawn_local(probe(url.to_string(), spec.seconds, spec.probe_tolerance_ms));
    sleep_until(clock, window.local_end).await;
    let cpu1 = pid.and_then(cpu_split_s);
    let p = prober.await.map_err(|e| e.to_string())??;
    let o = orx.await.map_err(|e| e.to_string())??;
    let window_s = (window.srv_end - window.srv_start) as f64 / 1e6;
    let accepted: usize =
        o.boards.iter().map(|b| b.iter().filter(|&&t| (window.srv_start..window.srv_end).contains(&t)).count()).sum();
    let on_boards: usize = o.boards.iter().map(Vec::len).sum();
    row["post_hz"] = r3(spec.post_hz);
    row["offered_per_s"] = r3(2.0 * spec.rooms as f64 * spec.post_hz);
    row["sent_per_s"] = r3(o.sent as f64 / (duration_s - 0.002));
    row["accepted_per_s"] = r3(accepted as f64 / window_s);
    row["on_boards"] = json!(on_boards);
    row["skipped"] = json!(o.skipped);
    row["refused"] = json!(o.refused);
    row["rate_limited"] = json!(o.rate_limited);
    row["lost_connections"] = json!(o.lost);
    if let (Some((u0, s0)), Some((u1, s1))) = (cpu0, cpu1) {
        let used = (u1 - u0) + (s1 - s0);
        row["server_cpu_pct"] = r3(100.0 * used / window_s);
        row["server_cpu_us_per_post"] = r3(used * 1e6 / accepted.max(1) as f64);
        // Time in the kernel (socket reads and writes), against user space.
        row["server_kernel_share"] = if used > 0.0 { r3((s1 - s0) / used) } else { Value::Null };
    }
    row["loader_cpu_pct"] = r3(100.0 * o.loader_cpu_s / window_s);
    probe_fields(&mut row, &p);
    Ok(row)
}

/// Room parameters that let a poster send at `post_hz` under the rate limit.
fn room_rate_for(post_hz: f64) -> Option<f64> {
    let l = Limits::default();
    let default = default_rate_hz();
    let allowed = default * l.post_rate_factor + l.post_slack_hz;
    (post_hz > UNDER_LIMIT * allowed).then(|| (post_hz / UNDER_LIMIT - l.post_slack_hz) / l.post_rate_factor)
}

pub async fn bench_jitter(url: &str, pid: Option<u32>, opts: &Opts) -> Result<Value, String> {
    let rooms = opts.rooms.unwrap_or(100).min(5000);
    let seconds = opts.seconds.unwrap_or(5.0).clamp(0.5, 30.0);
    if rooms > 0 {
        require_loopback(url)?;
    }
    // "Full rate" for a loader room: its posters post as fast as a room making a key does.
    let post_hz = opts.rate_hz.unwrap_or_else(default_rate_hz);
    if !(post_hz > 0.0 && post_hz <= 40_000.0) {
        return Err("--rate-hz must be in (0, 40000]".into());
    }
    let tol = opts.tolerance_ms;
    let probe_params = Params::resolve(&ParamsIn { tolerance_ms: tol, ..Default::default() })?;
    let rest = StepSpec { rooms: 0, probe_tolerance_ms: tol, post_hz, room_rate_hz: None, seconds };
    let mut phases = vec![step(url, pid, &rest).await?];
    if rooms > 0 {
        let spec = StepSpec { rooms, probe_tolerance_ms: tol, post_hz, room_rate_hz: room_rate_for(post_hz), seconds };
        phases.push(step(url, pid, &spec).await?);
    }
    for (p, name) in phases.iter_mut().zip(["rest", "load"]) {
        p["phase"] = json!(name);
    }
    Ok(json!({
        "seconds": seconds,
        "tolerance_ms": probe_params.tolerance_ms,
        "prober_rate_hz": r3(probe_params.rate_hz),
        "late_limit_us": crate::poster::late_limit_us(1e6 / probe_params.rate_hz),
        "loader_post_hz": r3(post_hz),
        "loader_offered_per_s": r3(2.0 * rooms as f64 * post_hz),
        "phases": phases,
    }))
}

/// 1, 2, 5, 10, 20, 50, … up to `max`, and `max` itself.
fn ladder(max: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..6).flat_map(|e| [1, 2, 5].map(|m| m * 10usize.pow(e))).filter(|&m| m < max).collect();
    v.push(max);
    v
}

pub async fn bench_load(url: &str, pid: Option<u32>, opts: &Opts) -> Result<Value, String> {
    require_loopback(url)?;
    let max = opts.rooms.unwrap_or(200).clamp(1, 5000);
    let seconds = opts.seconds.unwrap_or(2.0).clamp(0.5, 30.0);
    let l = Limits::default();
    let allowed = default_rate_hz() * l.post_rate_factor + l.post_slack_hz;
    let post_hz = opts.rate_hz.unwrap_or(UNDER_LIMIT * allowed);
    if !(post_hz > 0.0 && post_hz <= 40_000.0) {
        return Err("--rate-hz must be in (0, 40000]".into());
    }
    let mut rows: Vec<Value> = Vec::new();
    let (mut best, mut knee, mut flat) = (0.0f64, 0usize, 0);
    for m in ladder(max) {
        let spec = StepSpec { rooms: m, probe_tolerance_ms: opts.tolerance_ms, post_hz, room_rate_hz: room_rate_for(post_hz), seconds };
        let row = step(url, pid, &spec).await?;
        let accepted = row["accepted_per_s"].as_f64().unwrap_or(0.0);
        rows.push(row);
        if accepted > 1.05 * best {
            flat = 0;
        } else {
            flat += 1;
        }
        if accepted > best {
            (best, knee) = (accepted, m);
        }
        // Past the knee: two steps that add less than 5 % are enough.
        if flat >= 2 {
            break;
        }
    }
    Ok(json!({
        "seconds": seconds,
        "post_hz_per_poster": r3(post_hz),
        "rate_limit_hz_per_poster": r3(allowed),
        "knee_rooms": knee,
        "peak_accepted_per_s": r3(best),
        "steps": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_steps_up_to_the_max() {
        assert_eq!(ladder(1), vec![1]);
        assert_eq!(ladder(2), vec![1, 2]);
        assert_eq!(ladder(30), vec![1, 2, 5, 10, 20, 30]);
        assert_eq!(ladder(200), vec![1, 2, 5, 10, 20, 50, 100, 200]);
    }

    #[test]
    fn loaders_stay_under_the_rate_limit() {
        assert_eq!(room_rate_for(100.0), None);
        let r = room_rate_for(10_000.0).unwrap();
        let l = Limits::default();
        assert!(10_000.0 < r * l.post_rate_factor + l.post_slack_hz);
    }
}

//! `key` and `sweep`: real `sgp pair` processes, one pair at a time, each to a confirmed key.
//!
//! Both posters' `--json` lines are read, and both write `--record` files into a private
//! temporary folder (mode 0700; records are key material), which are read for the timing
//! figures behind the guard (the two posters' delay difference, arrival errors) and removed
//! as soon as the pair is measured.

use super::{quantile, r3, sgp_command, Opts};
use crate::protocol::{Entry, DEFAULT_TOLERANCE_MS};
use crate::secret::{self, OwnPost};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A pair that takes longer than this is killed and counted as failed.
pub(super) const PAIR_LIMIT: Duration = Duration::from_secs(180);

/// The tolerances `sweep` tries unless told otherwise (ms).
pub const SWEEP_TOLERANCES: &[f64] = &[0.05, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 5.0];

/// Guards (ms) at which the records are sifted again, to see what a narrower guard would have
/// cost (posts refused outside `[t_start − G, t_end + G]`) and saved (entries kept).
const GUARDS_TRIED_MS: &[f64] = &[0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0];

/// Waits for a child, killing it (by its handle) past the deadline or once `bench` is told
/// to stop (Ctrl-C). Its exit code; `None` if it was killed or ended by a signal.
pub(super) fn wait_until(child: &mut Child, deadline: Instant) -> Option<i32> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code(),
            Ok(None) if Instant::now() < deadline && !super::stopping() => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// A private folder for the records, removed when dropped.
pub(super) struct PrivateDir(pub(super) std::path::PathBuf);

impl PrivateDir {
    pub(super) fn new() -> Result<PrivateDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("sgp-bench-key-{}-{stamp}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(|e| format!("cannot make {}: {e}", path.display()))?;
        Ok(PrivateDir(path))
    }
}

impl Drop for PrivateDir {
    /// Removes the records (and a temporary file `sgp pair` may have left), then the folder.
    fn drop(&mut self) {
        for f in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(f.path());
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

const RECORDS: [&str; 2] = ["creator.json", "joiner.json"];

/// What one pair printed and recorded.
struct PairRun {
    key: Value,
    creator: Vec<Value>,
    joiner: Vec<Value>,
    records: [Option<Value>; 2],
}

/// Where one poster of a pair runs: the server URL its path goes through and, in `bench
/// net`, the network namespace it runs in.
#[derive(Clone, Debug)]
pub(super) struct Seat {
    pub url: String,
    pub ns: Option<String>,
}

/// Both posters' seats: the creator (alice) and the joiner (bob).
#[derive(Clone, Debug)]
pub(super) struct Seats {
    pub creator: Seat,
    pub joiner: Seat,
}

impl Seats {
    /// Both on `url`, in this namespace (`bench key`).
    fn same(url: &str) -> Seats {
        let seat = Seat { url: url.to_string(), ns: None };
        Seats { creator: seat.clone(), joiner: seat }
    }
}

/// A pair that made no key: each poster's exit code (`None`: killed at the time limit, by
/// a signal, or never started), and the lines each printed.
#[derive(Clone, Debug, Default)]
struct PairFailure {
    creator: Option<i32>,
    joiner: Option<i32>,
    lines: [Vec<Value>; 2],
}

fn read_lines(out: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<Value>> {
    std::thread::spawn(move || {
        BufReader::new(out).lines().map_while(Result::ok).filter_map(|l| serde_json::from_str::<Value>(&l).ok()).collect()
    })
}

/// Runs one `sgp pair` pair, both killed at `deadline`; on success returns the creator's
/// `key` object, both posters' output lines and records.
fn one_pair(seats: &Seats, opts: &PairOpts, deadline: Instant) -> Result<PairRun, PairFailure> {
    let no_start = PairFailure::default;
    let dir = PrivateDir::new().map_err(|_| no_start())?;
    let rec = RECORDS.map(|name| dir.0.join(name));
    let mut args = vec!["pair".to_string(), "--json".into(), "--server".into(), seats.creator.url.clone()];
    args.extend(["--record".to_string(), rec[0].display().to_string()]);
    let ca: Vec<String> = crate::tls::ca_file().map(|f| vec!["--ca-file".to_string(), f.to_string()]).unwrap_or_default();
    args.extend(ca.iter().cloned());
    if let Some(t) = opts.tolerance_ms {
        args.extend(["--tolerance-ms".to_string(), t.to_string()]);
    }
    if let Some(t) = opts.target_bits {
        args.extend(["--target-bits".to_string(), t.to_string()]);
    }
    if let Some(d) = opts.duration_ms {
        args.extend(["--duration-ms".to_string(), d.to_string()]);
    }
    let spawn = |seat: &Seat, args: &[String]| -> Option<Child> {
        sgp_command(seat.ns.as_deref()).ok()?.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().ok()
    };
    let mut creator = spawn(&seats.creator, &args).ok_or_else(no_start)?;
    let mut out = BufReader::new(creator.stdout.take().ok_or_else(no_start)?);
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    let code = serde_json::from_str::<Value>(&line).ok().and_then(|first| Some((first["room"]["code"].as_str()?.to_string(), first)));
    let Some((code, first)) = code else {
        // It said something else (an error line) or nothing: it is ending, or is made to.
        return Err(PairFailure { creator: wait_until(&mut creator, Instant::now() + Duration::from_secs(5)), ..no_start() });
    };
    let mut joiner_args = ["pair", "--json", "--server", &seats.joiner.url, "--room", &code, "--record", &rec[1].display().to_string()].map(String::from).to_vec();
    joiner_args.extend(ca);
    let Some(mut joiner) = spawn(&seats.joiner, &joiner_args) else {
        return Err(PairFailure { creator: wait_until(&mut creator, Instant::now()), ..no_start() });
    };
    // Lines are read on threads so that this one can enforce the deadline.
    let creator_lines = read_lines(out);
    let joiner_lines = joiner.stdout.take().map(read_lines);
    let creator_exit = wait_until(&mut creator, deadline);
    let joiner_exit = wait_until(&mut joiner, deadline.max(Instant::now() + Duration::from_secs(5)));
    let mut creator_out = vec![first];
    creator_out.extend(creator_lines.join().unwrap_or_default());
    let joiner_out = joiner_lines.and_then(|h| h.join().ok()).unwrap_or_default();
    // (`from_str`, not `from_slice`: the binary already holds that parser.)
    let records = rec.map(|p| std::fs::read_to_string(&p).ok().and_then(|b| serde_json::from_str(&b).ok()));
    drop(dir);
    let key = creator_out.iter().find_map(|v| v.get("key").cloned());
    match (creator_exit, key) {
        (Some(0), Some(key)) => Ok(PairRun { key, creator: creator_out, joiner: joiner_out, records }),
        _ => Err(PairFailure { creator: creator_exit, joiner: joiner_exit, lines: [creator_out, joiner_out] }),
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PairOpts {
    tolerance_ms: Option<f64>,
    target_bits: Option<u32>,
    duration_ms: Option<u32>,
}

/// `log2 C(n, a)` in floating point (the brief's strength, before the per-round product).
fn log2_binom(n: u64, a: u64) -> f64 {
    let k = a.min(n.saturating_sub(a));
    (1..=k).map(|i| ((n - k + i) as f64 / i as f64).log2()).sum()
}

/// Sums over pairs. With a measured tolerance, pairs may differ in τ (and so in rate, guard
/// and round length): rates are compared with each pair's own limit.
#[derive(Default)]
struct Tally {
    times: Vec<f64>,
    tolerances_ms: Vec<f64>,
    /// Every round that closed, of every session.
    rounds: u64,
    /// Rounds whose bits counted towards the key.
    counted: u64,
    /// Posting time (s) of every round, of the counted rounds, and of the counted rounds less
    /// their guard zones; and the kept entries `1/(4τe)` would give in each.
    posting_s: [f64; 3],
    expected: [f64; 3],
    /// Rounds dropped, by cause, in the pairs that made a key; and the rounds of the pairs
    /// that did not, and theirs.
    dropped: Drops,
    failed_rounds: u64,
    failed_dropped: Drops,
    mismatches: u64,
    /// Pairs that made no key, with both posters' exit codes.
    failures: Vec<PairFailure>,
    /// Every round's τ and posting rate (the round line's, else the room's).
    round_tolerance_ms: Vec<f64>,
    round_rate_hz: Vec<f64>,
    kept: u64,
    /// Bits the per-round product `∏ C(n_r, a_r)` gives up against `C(n, a)`.
    product_cost_bits: f64,
    surplus_bits: f64,
    /// Per round with both records: |median arrival error of alice − of bob| (µs).
    delay_diff_us: Vec<f64>,
    /// Every recognised post's |server t − predicted t| (µs), both posters.
    arrival_abs_us: Vec<f64>,
    /// Per guard of `GUARDS_TRIED_MS`: rounds in which some entry lies outside
    /// `[t_start − G, t_end + G]` (its post would have been refused, and the round dropped),
    /// and entries kept; the same at the room's own guard.
    guard_refused_rounds: Vec<u64>,
    guard_kept: Vec<u64>,
    room_guard_refused_rounds: u64,
    records_rounds: u64,
    /// Counted rounds: Σ n_r from the lines does not match the key's n (should not happen).
    ledger_mismatch: u64,
}

/// The round lines of one poster, by (session, round).
fn round_lines(lines: &[Value]) -> Vec<(String, u64, &Value)> {
    lines
        .iter()
        .filter_map(|v| v.get("round"))
        .filter_map(|r| Some((r["session"].as_str()?.to_string(), r["round"].as_u64()?, r)))
        .collect()
}

/// `1/(4τe)` per second.
fn limit_per_s(tol_ms: f64) -> f64 {
    1000.0 / (4.0 * tol_ms * std::f64::consts::E)
}

/// Rounds dropped, by cause: a poster fell behind its schedule (late rule), a post was not
/// found (desync), a held post passed for matched (`--testing-hold-post` only), or the
/// cause was not printed.
#[derive(Clone, Copy, Debug, Default)]
struct Drops {
    late: u64,
    desync: u64,
    held: u64,
    other: u64,
}

impl Drops {
    fn add(&mut self, d: Drops) {
        self.late += d.late;
        self.desync += d.desync;
        self.held += d.held;
        self.other += d.other;
    }

    fn total(&self) -> u64 {
        self.late + self.desync + self.held + self.other
    }
}

/// The rounds the server dropped in one pair's run (`aborted {desync}` names the round, in
/// session order), their causes from both posters' round lines, and the confirmations that
/// failed.
fn dropped_rounds(creator: &[Value], joiner: &[Value]) -> (Vec<(String, u64)>, Drops, u64) {
    let (mine, theirs) = (round_lines(creator), round_lines(joiner));
    let (mut session, mut dropped, mut drops, mut mismatches) = (String::new(), Vec::new(), Drops::default(), 0);
    for v in creator {
        if let Some(r) = v.get("round") {
            session = r["session"].as_str().unwrap_or("").to_string();
        }
        if let Some(ab) = v.get("aborted") {
            if ab["reason"] == "desync" {
                if let Some(r) = ab["round"].as_u64() {
                    dropped.push((session.clone(), r));
                }
            }
        }
        if v.get("confirmed").is_some_and(|c| c["match"] == false) {
            mismatches += 1;
        }
    }
    for (s, r) in &dropped {
        let why = |lines: &[(String, u64, &Value)]| -> Option<String> {
            lines.iter().find(|(s2, r2, _)| s2 == s && r2 == r).and_then(|(_, _, v)| v["aborted"].as_str().map(str::to_string))
        };
        let causes = [why(&mine), why(&theirs)];
        let any = |c: &str| causes.iter().any(|k| k.as_deref() == Some(c));
        if any("late") {
            drops.late += 1;
        } else if any("desync") {
            drops.desync += 1;
        } else if any("held_post_matched") {
            drops.held += 1;
        } else {
            drops.other += 1;
        }
    }
    (dropped, drops, mismatches)
}

impl Tally {
    /// A pair that made no key: its exit codes, rounds, drops, and each round's τ and rate.
    fn add_failure(&mut self, f: PairFailure) {
        let [creator, joiner] = &f.lines;
        let params = creator.iter().find_map(|v| v.get("room")).map(|r| r["params"].clone()).unwrap_or_default();
        for (_, _, v) in round_lines(creator) {
            self.round_tolerance_ms.extend(v["tolerance_ms"].as_f64().or(params["tolerance_ms"].as_f64()));
            self.round_rate_hz.extend(v["rate_hz"].as_f64().or(params["rate_hz"].as_f64()));
            self.failed_rounds += 1;
        }
        let (_, drops, mismatches) = dropped_rounds(creator, joiner);
        self.failed_dropped.add(drops);
        self.mismatches += mismatches;
        self.failures.push(f);
    }

    fn add(&mut self, run: &PairRun) {
        let params = run.creator.iter().find_map(|v| v.get("room")).map(|r| r["params"].clone()).unwrap_or_default();
        let key = &run.key;
        let tol_ms = params["tolerance_ms"].as_f64().unwrap_or(f64::NAN);
        let (duration_s, guard_s) = (params["duration_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0, params["guard_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0);
        self.tolerances_ms.push(tol_ms);
        self.times.push(key["elapsed_ms"].as_f64().unwrap_or(f64::NAN));
        let (n, a) = (key["n"].as_u64().unwrap_or(0), key["a"].as_u64().unwrap_or(0));
        self.kept += n;
        self.product_cost_bits += log2_binom(n, a) - key["log2_binom"].as_f64().unwrap_or(0.0);
        self.surplus_bits += key["strength"].as_f64().unwrap_or(0.0) - params["target_bits"].as_f64().unwrap_or(0.0);
        let mine = round_lines(&run.creator);
        self.rounds += mine.len() as u64;
        let (dropped, drops, mismatches) = dropped_rounds(&run.creator, &run.joiner);
        self.dropped.add(drops);
        self.mismatches += mismatches;
        // The key's rounds: the last session's rounds that were kept and not dropped.
        let last = mine.last().map(|m| m.0.clone()).unwrap_or_default();
        // A round the peer narrowed with its spans counts what the `dropped` line says after.
        let narrowed = |s: &str, r: u64| {
            run.creator.iter().filter_map(|v| v.get("dropped")).filter(|d| d["session"] == s && d["round"] == r).filter_map(|d| d["kept"].as_u64()).next_back()
        };
        // Each round's τ and rate: its own line's once `sgp pair` prints them (they may change
        // from round to round), else the room's.
        let tol_of = |v: &Value| v["tolerance_ms"].as_f64().unwrap_or(tol_ms);
        let duration_of = |v: &Value| v["duration_ms"].as_f64().map_or(duration_s, |d| d / 1000.0);
        let guard_of = |v: &Value| v["guard_ms"].as_f64().map_or(guard_s, |g| g / 1000.0);
        let rate_hz = params["rate_hz"].as_f64().unwrap_or(f64::NAN);
        for (_, _, v) in &mine {
            self.round_tolerance_ms.push(tol_of(v));
            self.round_rate_hz.push(v["rate_hz"].as_f64().unwrap_or(rate_hz));
            self.posting_s[0] += duration_of(v);
            self.expected[0] += duration_of(v) * limit_per_s(tol_of(v));
        }
        let counted: Vec<(u64, &Value)> = mine
            .iter()
            .filter(|(s, r, v)| *s == last && !v["kept"].is_null() && !dropped.iter().any(|(s2, r2)| s2 == s && r2 == r))
            .map(|(s, r, v)| (narrowed(s, *r).unwrap_or_else(|| v["kept"].as_u64().unwrap_or(0)), *v))
            .collect();
        self.counted += counted.len() as u64;
        if counted.iter().map(|c| c.0).sum::<u64>() != n {
            self.ledger_mismatch += 1;
        }
        for (_, v) in &counted {
            let (tol, duration_s, guard_s) = (tol_of(v), duration_of(v), guard_of(v));
            for (k, span) in [(1, duration_s), (2, duration_s - 2.0 * guard_s)] {
                self.posting_s[k] += span;
                self.expected[k] += span * limit_per_s(tol);
            }
        }
        if let [Some(ra), Some(rb)] = &run.records {
            self.add_records(ra, rb, &params);
        }
    }

    /// Timing from both posters' records: arrival errors, the delay difference, what other
    /// guards would have done.
    fn add_records(&mut self, ra: &Value, rb: &Value, params: &Value) {
        let tol_us = (params["tolerance_ms"].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
        let room_guard_us = (params["guard_ms"].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
        if self.guard_kept.is_empty() {
            self.guard_kept = vec![0; GUARDS_TRIED_MS.len()];
            self.guard_refused_rounds = vec![0; GUARDS_TRIED_MS.len()];
        }
        let rounds = |r: &Value| r["rounds"].as_array().cloned().unwrap_or_default();
        let theirs = rounds(rb);
        for mine in rounds(ra) {
            let Some(other) = theirs.iter().find(|o| o["session"] == mine["session"] && o["round"] == mine["round"]) else { continue };
            let Ok(board) = serde_json::from_value::<Vec<Entry>>(mine["board"].clone()) else { continue };
            self.records_rounds += 1;
            let mut medians = Vec::new();
            for r in [&mine, other] {
                let Ok(posts) = serde_json::from_value::<Vec<OwnPost>>(r["posts"].clone()) else { continue };
                let coalesced: Vec<u64> = r["coalesced"].as_array().map(|c| c.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
                let timed: Vec<OwnPost> =
                    posts.iter().enumerate().filter(|(k, _)| !coalesced.contains(&(*k as u64 + 1))).map(|(_, p)| *p).collect();
                let sync = secret::Sync {
                    offset_us: r["sync"]["offset_us"].as_i64().unwrap_or(0),
                    delay_us: r["sync"]["delay_us"].as_i64().unwrap_or(0),
                };
                let mut errs: Vec<i64> = secret::arrival_errors(&board, &timed, sync).into_iter().flatten().collect();
                // A post whose nearest same-label entry is far off is a lost post, not an error.
                errs.retain(|e| e.abs() <= 20 * tol_us.max(50));
                errs.sort_unstable();
                if let Some(m) = errs.get(errs.len() / 2) {
                    medians.push(*m as f64);
                }
                self.arrival_abs_us.extend(errs.iter().map(|e| e.unsigned_abs() as f64));
            }
            if let [ma, mb] = medians[..] {
                self.delay_diff_us.push((ma - mb).abs());
            }
            let (ts, te) = (mine["t_start_us"].as_i64().unwrap_or(0), mine["t_end_us"].as_i64().unwrap_or(0));
            let outside = |g_us: i64| board.iter().any(|e| e.t_us < ts - g_us || e.t_us > te + g_us);
            for (k, g) in GUARDS_TRIED_MS.iter().enumerate() {
                let g_us = (g * 1000.0).round() as i64;
                self.guard_refused_rounds[k] += u64::from(outside(g_us));
                self.guard_kept[k] += secret::sift(&board, ts, te, tol_us, g_us).len() as u64;
            }
            self.room_guard_refused_rounds += u64::from(outside(room_guard_us));
        }
    }
}

/// `n` pairs in turn with the same options, each killed after `PAIR_LIMIT`, and none
/// started or left running past `until`: one row of figures.
pub(super) fn pairs_at(seats: &Seats, po: PairOpts, n: usize, until: Option<Instant>) -> Value {
    let mut t = Tally::default();
    let mut params = Value::Null;
    let mut pairs_run = 0;
    for _ in 0..n {
        let now = Instant::now();
        if super::stopping() || until.is_some_and(|u| now >= u) {
            break;
        }
        pairs_run += 1;
        let deadline = until.map_or(now + PAIR_LIMIT, |u| u.min(now + PAIR_LIMIT));
        match one_pair(seats, &po, deadline) {
            Ok(run) => {
                if let Some(p) = run.creator.iter().find_map(|v| v.get("room")).map(|r| r["params"].clone()) {
                    params = p;
                }
                t.add(&run);
            }
            Err(f) => t.add_failure(f),
        }
    }
    figures(t, &po, n, pairs_run, &params)
}

/// The row of figures for `n` pairs asked, `pairs_run` run, at the room's `params`.
fn figures(mut t: Tally, po: &PairOpts, n: usize, pairs_run: usize, params: &Value) -> Value {
    let ok = t.times.len() as f64;
    t.times.sort_by(f64::total_cmp);
    t.tolerances_ms.sort_by(f64::total_cmp);
    let tol_ms = quantile(&t.tolerances_ms, 0.5);
    let tol_ms = if tol_ms.is_finite() { tol_ms } else { po.tolerance_ms.unwrap_or(DEFAULT_TOLERANCE_MS) };
    // Kept entries per second of posting, three ways: over every round (dropped rounds and
    // failed sessions count as posting time), over the rounds that counted, and over those
    // rounds less their guard zones (the sift alone); each against `1/(4τe)` at its pair's τ.
    let frac = |k: usize| if t.expected[k] > 0.0 { t.kept as f64 / t.expected[k] } else { f64::NAN };
    let wall: f64 = t.times.iter().sum::<f64>() / 1000.0;
    let dropped = t.dropped.total();
    let sorted = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    let (diff, arr) = (sorted(&t.delay_diff_us), sorted(&t.arrival_abs_us));
    let (round_tol, round_rate) = (sorted(&t.round_tolerance_ms), sorted(&t.round_rate_hz));
    // Exit codes of the pairs that failed; null: killed at the time limit (or never started).
    let failures: Vec<Value> = t.failures.iter().map(|f| json!({"creator": f.creator, "joiner": f.joiner})).collect();
    let guards: Vec<Value> = GUARDS_TRIED_MS
        .iter()
        .zip(t.guard_kept.iter().zip(&t.guard_refused_rounds))
        .map(|(g, (kept, refused))| {
            json!({"guard_ms": g, "rounds_with_refusals": refused, "kept_vs_g0": r3(*kept as f64 / t.guard_kept[0].max(1) as f64)})
        })
        .collect();
    let mut row = json!({
        "tolerance_ms": tol_ms,
        "tolerance_ms_min": t.tolerances_ms.first(),
        "tolerance_ms_max": t.tolerances_ms.last(),
        "duration_ms": params["duration_ms"],
        "guard_ms": params["guard_ms"],
        "pairs": n,
        "failed": t.failures.len(),
        "time_to_key_ms_p50": quantile(&t.times, 0.5),
        "time_to_key_ms_p90": quantile(&t.times, 0.9),
        "time_to_key_ms_max": t.times.last().copied().unwrap_or(f64::NAN),
        "rounds_per_key": if ok > 0.0 { r3(t.rounds as f64 / ok) } else { Value::Null },
        "dropped_round_rate": r3(dropped as f64 / t.rounds.max(1) as f64),
        "dropped_late": t.dropped.late,
        "dropped_desync": t.dropped.desync,
        "dropped_held": t.dropped.held,
        "dropped_other": t.dropped.other,
        "confirm_failure_rate": r3(t.mismatches as f64 / (ok + t.mismatches as f64).max(1.0)),
        "kept_entries": t.kept,
        "kept_per_s_of_posting": r3(t.kept as f64 / t.posting_s[0]),
        // The sift's ceiling over the rounds' own τ (weighted by their posting time), and the
        // posting time at that ceiling for a key's worth of kept entries: the physics' floor
        // for the time to a key at the τ the rounds needed.
        "kept_limit_per_s": r3(if t.posting_s[0] > 0.0 { t.expected[0] / t.posting_s[0] } else { limit_per_s(tol_ms) }),
        "sift_posting_s_per_key": if ok > 0.0 && t.expected[1] > 0.0 { r3(t.kept as f64 / ok / (t.expected[1] / t.posting_s[1])) } else { Value::Null },
        "kept_fraction_of_limit": r3(frac(0)),
        "kept_fraction_counted_rounds": r3(frac(1)),
        "kept_fraction_inside_guards": r3(frac(2)),
        "kept_per_s_wall": r3(t.kept as f64 / wall),
        "product_cost_bits_per_key": if ok > 0.0 { r3(t.product_cost_bits / ok) } else { Value::Null },
        "surplus_bits_per_key": if ok > 0.0 { r3(t.surplus_bits / ok) } else { Value::Null },
        "ledger_mismatches": t.ledger_mismatch,
        "recorded_rounds": t.records_rounds,
        "delay_diff_us_p50": r3(quantile(&diff, 0.5)),
        "delay_diff_us_max": r3(diff.last().copied().unwrap_or(f64::NAN)),
        "arrival_abs_us_p99": r3(quantile(&arr, 0.99)),
        "arrival_abs_us_p999": r3(quantile(&arr, 0.999)),
        "arrival_abs_us_max": r3(arr.last().copied().unwrap_or(f64::NAN)),
        "room_guard_refused_rounds": t.room_guard_refused_rounds,
        "guards": guards,
    });
    // (Beside the rest: one `json!` of them all is past the macro's recursion limit.)
    let more = json!({
        "pairs_run": pairs_run,
        "rounds_all_pairs": t.rounds + t.failed_rounds,
        "failed_pairs_rounds": t.failed_rounds,
        "failed_pairs_dropped": {"late": t.failed_dropped.late, "desync": t.failed_dropped.desync, "held": t.failed_dropped.held, "other": t.failed_dropped.other},
        "failures": failures,
        "round_tolerance_ms_min": round_tol.first().copied().map(r3),
        "round_tolerance_ms_median": r3(quantile(&round_tol, 0.5)),
        "round_tolerance_ms_max": round_tol.last().copied().map(r3),
        "round_rate_hz_min": round_rate.first().copied().map(r3),
        "round_rate_hz_median": r3(quantile(&round_rate, 0.5)),
        "round_rate_hz_max": round_rate.last().copied().map(r3),
    });
    if let (Some(row), Value::Object(more)) = (row.as_object_mut(), more) {
        row.extend(more);
    }
    row
}

pub(super) fn pair_opts(opts: &Opts, tolerance_ms: Option<f64>) -> PairOpts {
    PairOpts { tolerance_ms, target_bits: opts.target_bits, duration_ms: opts.duration_ms }
}

pub async fn bench_key(url: &str, opts: &Opts) -> Result<Value, String> {
    let (url, po, n) = (url.to_string(), pair_opts(opts, opts.tolerance_ms), opts.pairs.unwrap_or(20).clamp(1, 1000));
    // Child processes do the work; this thread only waits.
    let mut row = tokio::task::spawn_blocking(move || pairs_at(&Seats::same(&url), po, n, None)).await.map_err(|e| e.to_string())?;
    row["target_bits"] = json!(opts.target_bits.unwrap_or(256));
    row["tolerance_chosen_by"] = json!(if opts.tolerance_ms.is_some() { "--tolerance-ms" } else { "sgp pair (measured)" });
    Ok(row)
}

pub async fn bench_sweep(url: &str, opts: &Opts) -> Result<Value, String> {
    let tols = opts.tolerances.clone().unwrap_or_else(|| SWEEP_TOLERANCES.to_vec());
    if tols.is_empty() || tols.len() > 32 {
        return Err("--tolerances takes 1 to 32 values".into());
    }
    let (url, n) = (url.to_string(), opts.pairs.unwrap_or(5).clamp(1, 100));
    let pos: Vec<PairOpts> = tols.iter().map(|&t| pair_opts(opts, Some(t))).collect();
    let rows = tokio::task::spawn_blocking(move || pos.into_iter().map(|po| pairs_at(&Seats::same(&url), po, n, None)).collect::<Vec<_>>())
        .await
        .map_err(|e| e.to_string())?;
    // The tolerance with the fastest median key among those where no pair failed.
    let fastest = rows
        .iter()
        .filter(|r| r["failed"] == 0)
        .filter_map(|r| Some((r["time_to_key_ms_p50"].as_f64()?, r["tolerance_ms"].as_f64()?)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, t)| t);
    // The rows' guard tables, as one table with the tolerance in front.
    let mut rows = rows;
    let mut guards = Vec::new();
    for r in rows.iter_mut() {
        let tol = r["tolerance_ms"].clone();
        if let Some(Value::Array(gs)) = r.as_object_mut().and_then(|o| o.remove("guards")) {
            for mut g in gs {
                g["tolerance_ms"] = tol.clone();
                guards.push(g);
            }
        }
    }
    Ok(json!({
        "pairs_per_tolerance": n,
        "target_bits": opts.target_bits.unwrap_or(256),
        "server_default_tolerance_ms": DEFAULT_TOLERANCE_MS,
        "terminal_floor_tolerance_ms": crate::tolerance::TERMINAL_FLOOR_MS,
        "fastest_p50_tolerance_ms": fastest,
        "rows": rows,
        "guards": guards,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn log2_binom_matches_small_cases() {
        assert_eq!(super::log2_binom(4, 2), 6f64.log2());
        assert_eq!(super::log2_binom(10, 0), 0.0);
        assert!((super::log2_binom(10, 3) - 120f64.log2()).abs() < 1e-9);
    }
}

//! `key` and `sweep`: real `sgp pair` processes, one pair at a time, each to a confirmed key.

use super::{exe, quantile, r3, Opts};
use crate::protocol::DEFAULT_TOLERANCE_MS;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A pair that takes longer than this is killed and counted as failed.
const PAIR_LIMIT: Duration = Duration::from_secs(180);

/// The tolerances `sweep` tries unless told otherwise (ms).
pub const SWEEP_TOLERANCES: &[f64] = &[0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 5.0];

/// Waits for a child, killing it (by its handle) past the deadline.
fn wait_until(child: &mut Child, deadline: Instant) -> bool {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Runs one `sgp pair` pair; returns the creator's `key` object and its output lines.
fn one_pair(url: &str, tolerance: Option<f64>, target: Option<u32>) -> Result<(Value, Vec<Value>), String> {
    let exe = exe()?;
    let deadline = Instant::now() + PAIR_LIMIT;
    let mut args = vec!["pair".to_string(), "--json".into(), "--server".into(), url.to_string()];
    if let Some(t) = tolerance {
        args.extend(["--tolerance-ms".to_string(), t.to_string()]);
    }
    if let Some(t) = target {
        args.extend(["--target-bits".to_string(), t.to_string()]);
    }
    let mut creator = Command::new(&exe).args(&args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().map_err(|e| e.to_string())?;
    let mut out = BufReader::new(creator.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    let first: Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(_) => {
            wait_until(&mut creator, Instant::now());
            return Err(format!("unexpected: {line}"));
        }
    };
    let Some(code) = first["room"]["code"].as_str().map(str::to_string) else {
        wait_until(&mut creator, Instant::now());
        return Err(format!("no room code: {line}"));
    };
    let mut joiner = Command::new(&exe)
        .args(["pair", "--json", "--server", url, "--room", &code])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Lines are read on a thread so that this one can enforce the deadline.
    let reader = std::thread::spawn(move || {
        out.lines().map_while(Result::ok).filter_map(|l| serde_json::from_str::<Value>(&l).ok()).collect::<Vec<_>>()
    });
    let ok = wait_until(&mut creator, deadline);
    wait_until(&mut joiner, deadline.max(Instant::now() + Duration::from_secs(5)));
    let mut lines = vec![first];
    lines.extend(reader.join().unwrap_or_default());
    let key = lines.iter().find_map(|v| v.get("key").cloned());
    match (ok, key) {
        (true, Some(k)) => Ok((k, lines)),
        _ => Err(format!("a pair failed: {:?}", lines.last())),
    }
}

/// `n` pairs in turn at one tolerance: one row of figures.
fn pairs_at(url: &str, tol: Option<f64>, target: Option<u32>, n: usize) -> Value {
    let mut times = Vec::new();
    let (mut rounds, mut desyncs, mut kept, mut failures, mut mismatches) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut params = Value::Null;
    for _ in 0..n {
        match one_pair(url, tol, target) {
            Ok((key, lines)) => {
                times.push(key["elapsed_ms"].as_f64().unwrap_or(f64::NAN));
                kept += key["n"].as_u64().unwrap_or(0);
                for v in &lines {
                    if v.get("round").is_some() {
                        rounds += 1;
                    }
                    if let Some(room) = v.get("room") {
                        params = room["params"].clone();
                    }
                    if v.get("aborted").is_some_and(|a| a["reason"] == "desync") {
                        desyncs += 1;
                    }
                    if v.get("confirmed").is_some_and(|c| c["match"] == false) {
                        mismatches += 1;
                    }
                }
            }
            Err(_) => failures += 1,
        }
    }
    let ok = times.len() as f64;
    // Only rounds of successful pairs are counted, so posting time is rounds × duration.
    let posting_s = params["duration_ms"].as_f64().unwrap_or(0.0) * rounds as f64 / 1000.0;
    times.sort_by(f64::total_cmp);
    let tol_ms = params["tolerance_ms"].as_f64().unwrap_or(tol.unwrap_or(DEFAULT_TOLERANCE_MS));
    let limit = 1000.0 / (4.0 * tol_ms * std::f64::consts::E);
    let kept_per_s = if posting_s > 0.0 { kept as f64 / posting_s } else { f64::NAN };
    json!({
        "tolerance_ms": tol_ms,
        "pairs": n,
        "failed": failures,
        "time_to_key_ms_p50": quantile(&times, 0.5),
        "time_to_key_ms_p90": quantile(&times, 0.9),
        "time_to_key_ms_max": times.last().copied().unwrap_or(f64::NAN),
        "rounds_per_key": if ok > 0.0 { r3(rounds as f64 / ok) } else { Value::Null },
        "dropped_round_rate": r3(desyncs as f64 / rounds.max(1) as f64),
        "confirm_failure_rate": r3(mismatches as f64 / (ok + mismatches as f64).max(1.0)),
        "kept_per_s_of_posting": r3(kept_per_s),
        "kept_limit_per_s": r3(limit),
        "kept_fraction_of_limit": r3(kept_per_s / limit),
    })
}

pub async fn bench_key(url: &str, opts: &Opts) -> Result<Value, String> {
    let (url, tol, target, n) = (url.to_string(), opts.tolerance_ms, opts.target_bits, opts.pairs.unwrap_or(20).clamp(1, 1000));
    // Child processes do the work; this thread only waits.
    let mut row = tokio::task::spawn_blocking(move || pairs_at(&url, tol, target, n)).await.map_err(|e| e.to_string())?;
    row["target_bits"] = json!(target.unwrap_or(256));
    Ok(row)
}

pub async fn bench_sweep(url: &str, opts: &Opts) -> Result<Value, String> {
    let tols = opts.tolerances.clone().unwrap_or_else(|| SWEEP_TOLERANCES.to_vec());
    if tols.is_empty() || tols.len() > 32 {
        return Err("--tolerances takes 1 to 32 values".into());
    }
    let (url, target, n) = (url.to_string(), opts.target_bits, opts.pairs.unwrap_or(3).clamp(1, 100));
    let rows = tokio::task::spawn_blocking(move || tols.iter().map(|&t| pairs_at(&url, Some(t), target, n)).collect::<Vec<_>>())
        .await
        .map_err(|e| e.to_string())?;
    // The tolerance with the fastest median key among those where no pair failed.
    let fastest = rows
        .iter()
        .filter(|r| r["failed"] == 0)
        .filter_map(|r| Some((r["time_to_key_ms_p50"].as_f64()?, r["tolerance_ms"].as_f64()?)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, t)| t);
    Ok(json!({
        "pairs_per_tolerance": n,
        "target_bits": target.unwrap_or(256),
        "default_tolerance_ms": DEFAULT_TOLERANCE_MS,
        "fastest_p50_tolerance_ms": fastest,
        "rows": rows,
    }))
}

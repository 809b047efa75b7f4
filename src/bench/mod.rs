//! `sgp bench`: measurements, never pass/fail. Each subcommand starts its own `sgp serve`
//! on 127.0.0.1:0 (a child process, so the server has its own thread as in real use) unless
//! `--server URL` is given, runs a bounded load against it, and prints a table or JSON.
//!
//! - `key`: pairs of real `sgp pair` processes, one pair at a time → time to a confirmed key.
//! - `idle`: N idle WebSocket connections → the server's memory per connection.

use crate::client::ws_url;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Opts {
    pub what: String,
    pub server: Option<String>,
    pub pairs: usize,
    pub connections: usize,
    pub tolerance_ms: Option<f64>,
    pub json: bool,
}

/// A server we started, stopped when dropped.
struct OwnServer {
    child: Child,
    url: String,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exe() -> Result<std::path::PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find the sgp binary: {e}"))
}

fn start_server() -> Result<OwnServer, String> {
    let mut child = Command::new(exe()?)
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start sgp serve: {e}"))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
    let url = line.trim().strip_prefix("sgp listening on ").ok_or_else(|| format!("unexpected: {line}"))?;
    Ok(OwnServer { url: url.trim_end_matches('/').to_string(), child })
}

/// The p-th quantile (nearest rank) of sorted values.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

/// Resident memory of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub async fn run(opts: &Opts) -> Result<(), String> {
    let own = match &opts.server {
        Some(_) => None,
        None => Some(start_server()?),
    };
    let url = opts.server.clone().or_else(|| own.as_ref().map(|s| s.url.clone())).unwrap_or_default();
    let pid = own.as_ref().map(|s| s.child.id());
    let result = match opts.what.as_str() {
        "key" => bench_key(&url, opts).await?,
        "idle" => bench_idle(&url, pid, opts).await?,
        other => return Err(format!("unknown benchmark {other:?} (key, idle)")),
    };
    if opts.json {
        println!("{result}");
    } else {
        print_table(&result);
    }
    Ok(())
}

fn print_table(v: &Value) {
    if let Some(obj) = v.as_object() {
        let width = obj.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, val) in obj {
            println!("{k:width$}  {val}");
        }
    }
}

/// Runs one `sgp pair` pair; returns the creator's `key` object and its output lines.
fn one_pair(url: &str, tolerance: Option<f64>) -> Result<(Value, Vec<Value>), String> {
    let exe = exe()?;
    let mut args = vec!["pair".to_string(), "--json".into(), "--server".into(), url.to_string()];
    if let Some(t) = tolerance {
        args.extend(["--tolerance-ms".to_string(), t.to_string()]);
    }
    let mut creator = Command::new(&exe).args(&args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().map_err(|e| e.to_string())?;
    let mut out = BufReader::new(creator.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    let first: Value = serde_json::from_str(&line).map_err(|_| format!("unexpected: {line}"))?;
    let code = first["room"]["code"].as_str().ok_or("no room code")?.to_string();
    let joiner = Command::new(&exe)
        .args(["pair", "--json", "--server", url, "--room", &code])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut lines = vec![first];
    for l in out.lines() {
        let l = l.map_err(|e| e.to_string())?;
        if let Ok(v) = serde_json::from_str::<Value>(&l) {
            lines.push(v);
        }
    }
    let status = creator.wait().map_err(|e| e.to_string())?;
    let _ = joiner.wait_with_output();
    let key = lines.iter().find_map(|v| v.get("key").cloned());
    match (status.success(), key) {
        (true, Some(k)) => Ok((k, lines)),
        _ => Err(format!("a pair failed: {:?}", lines.last())),
    }
}

async fn bench_key(url: &str, opts: &Opts) -> Result<Value, String> {
    let (url, tol, n) = (url.to_string(), opts.tolerance_ms, opts.pairs.clamp(1, 1000));
    // Child processes do the work; this thread only waits.
    tokio::task::spawn_blocking(move || {
        let mut times = Vec::new();
        let (mut rounds, mut desyncs, mut kept, mut posting_ms, mut failures) = (0u64, 0u64, 0u64, 0f64, 0u64);
        let mut params = Value::Null;
        for _ in 0..n {
            match one_pair(&url, tol) {
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
                    }
                }
                Err(_) => failures += 1,
            }
        }
        let duration = params["duration_ms"].as_f64().unwrap_or(0.0);
        posting_ms += duration * rounds as f64;
        times.sort_by(|a, b| a.total_cmp(b));
        let tol_ms = params["tolerance_ms"].as_f64().unwrap_or(f64::NAN);
        let limit = 1000.0 / (4.0 * tol_ms * std::f64::consts::E);
        let kept_per_s = if posting_ms > 0.0 { kept as f64 / (posting_ms / 1000.0) } else { 0.0 };
        Ok(json!({
            "pairs": n,
            "failed": failures,
            "tolerance_ms": tol_ms,
            "time_to_key_ms_p50": quantile(&times, 0.5),
            "time_to_key_ms_p90": quantile(&times, 0.9),
            "time_to_key_ms_max": times.last().copied().unwrap_or(f64::NAN),
            "rounds_per_key": rounds as f64 / n as f64,
            "dropped_round_rate": desyncs as f64 / rounds.max(1) as f64,
            "kept_per_s_of_posting": kept_per_s,
            "kept_fraction_of_limit": kept_per_s / limit,
        }))
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn bench_idle(url: &str, pid: Option<u32>, opts: &Opts) -> Result<Value, String> {
    let n = opts.connections.clamp(1, 50_000);
    let ws = ws_url(url)?;
    let before = pid.and_then(rss_kib);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for k in 0..n {
        match tokio_tungstenite::connect_async(ws.as_str()).await {
            Ok((c, _)) => conns.push(c),
            Err(e) => return Err(format!("connection {k} failed: {e} (raise `ulimit -n`?)")),
        }
    }
    let open_ms = started.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = pid.and_then(rss_kib);
    let per_conn = match (before, after) {
        (Some(b), Some(a)) => json!((a.saturating_sub(b)) as f64 / n as f64),
        _ => Value::Null,
    };
    drop(conns);
    Ok(json!({
        "connections": n,
        "open_ms": open_ms,
        "server_rss_kib_before": before,
        "server_rss_kib_after": after,
        "kib_per_connection": per_conn,
    }))
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.0);
        assert_eq!(quantile(&v, 0.9), 4.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}

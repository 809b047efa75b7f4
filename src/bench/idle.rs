//! `idle`: N idle WebSocket connections → the server's memory per connection.

use super::{healthz, r3, require_loopback, rss_kib, Opts};
use crate::client::ws_url;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub async fn bench_idle(url: &str, pid: Option<u32>, opts: &Opts) -> Result<Value, String> {
    require_loopback(url)?;
    let n = opts.connections.unwrap_or(1000).clamp(1, 50_000);
    let ws = ws_url(url)?;
    // The server as it is before: its connections (ours are counted against them) and memory.
    let conns_before = healthz(url).and_then(|h| h["connections"].as_u64());
    let before = pid.and_then(rss_kib);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for k in 0..n {
        match tokio::time::timeout(Duration::from_secs(10), crate::client::open(&ws)).await {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => return Err(format!("connection {k} failed: {e} (raise `ulimit -n`?)")),
            Err(_) => return Err(format!("connection {k} timed out")),
        }
    }
    let open_ms = started.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = pid.and_then(rss_kib);
    // The server's own count, while ours are open (the /healthz request is not a WebSocket).
    let conns_after = healthz(url).and_then(|h| h["connections"].as_u64());
    let per_conn = match (before, after) {
        (Some(b), Some(a)) => r3(a.saturating_sub(b) as f64 / n as f64),
        _ => Value::Null,
    };
    drop(conns);
    Ok(json!({
        "connections": n,
        "open_ms": r3(open_ms),
        "open_us_per_connection": r3(open_ms * 1000.0 / n as f64),
        "server_connections_before": conns_before,
        "server_connections_after": conns_after,
        "server_rss_kib_before": before,
        "server_rss_kib_after": after,
        "kib_per_connection": per_conn,
    }))
}

//! `legacy`: the original student client's dialect (docs/protocol.md §11), against `sgp serve
//! --legacy` or any server that speaks it (`--server URL`), measured the same way.
//!
//! - The flow, as the original page runs it: two clients say `client_pret`, get their ids,
//!   post 16 values each (their id), each after a gap of 100 ms + U(0, 4000 ms) as the page
//!   does (about 34 s a run; `--time-scale 0.01` runs the same shape 100 times faster, for
//!   tests), say they are done, get the confirmation, and fetch the table. Measured: the time
//!   to the ids, to the confirmation and to the table, whether the table holds exactly the
//!   32 rows, and each row's stamp minus its local send time (same machine, same wall clock:
//!   this dialect has no clock sync).
//! - `--flood`: two connections send `nouvelle_valeur` at `--rate-hz` each (default 30 000,
//!   under sgp's 40 000 frames/s per connection) for `--seconds` or until 100 000 rows (sgp's
//!   table cap), then fetch the table: rows stored per second, fetch time, server CPU per row.

use super::{cpu_s, quantile, r3, require_loopback, rss_kib, Opts};
use crate::client::ws_url;
use crate::clock::Clock;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);
const POSTS_PER_CLIENT: usize = 16;
/// The original page's gap between posts: 100 ms + U(0, 4000 ms), in µs (before scaling).
const GAP_US: (f64, f64) = (100_000.0, 4_100_000.0);
/// sgp's legacy table holds at most this many rows; a flood sends no more.
const FLOOD_ROWS: u64 = 100_000;

async fn connect(ws: &str) -> Result<Ws, String> {
    match tokio::time::timeout(WAIT, crate::client::open(ws)).await {
        Ok(Ok(w)) => Ok(w),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("connecting to {ws} timed out")),
    }
}

async fn send(ws: &mut Ws, v: Value) -> Result<(), String> {
    ws.send(Message::Text(v.to_string().into())).await.map_err(|e| format!("the server went away: {e}"))
}

/// The next JSON text message and its size (pings skipped). An sgp `error` (a server that
/// does not speak the dialect: `legacy_disabled` without `--legacy`) ends the run at once.
async fn next_json(ws: &mut Ws) -> Result<(Value, usize), String> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).map_err(|e| format!("not JSON ({e}): {t}"))?;
                if v["type"] == "error" {
                    return Err(format!("the server refused the dialect: {} ({})", v["code"].as_str().unwrap_or("?"), v["message"].as_str().unwrap_or("")));
                }
                return Ok((v, t.len()));
            }
            Ok(Some(Ok(Message::Close(f)))) => return Err(format!("the server closed the connection: {f:?}")),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(format!("the server went away: {e}")),
            Ok(None) => return Err("the server closed the connection".into()),
            Err(_) => return Err("the server did not answer in time".into()),
        }
    }
}

/// The next message that has `key` (others, such as a second table or an error, skipped).
async fn wait_key(ws: &mut Ws, key: &str) -> Result<(Value, usize), String> {
    loop {
        let (v, n) = next_json(ws).await?;
        if v.get(key).is_some() {
            return Ok((v, n));
        }
        if let Some(e) = v.get("error") {
            return Err(format!("the server refused: {e}"));
        }
    }
}

async fn wait_table(ws: &mut Ws) -> Result<(Vec<Value>, usize), String> {
    loop {
        let (v, n) = next_json(ws).await?;
        match v {
            Value::Array(rows) => return Ok((rows, n)),
            Value::Null => return Ok((Vec::new(), n)), // the original sends null for an empty table
            other if other.get("error").is_some() => return Err(format!("the server refused: {other}")),
            _ => {}
        }
    }
}

/// RFC 3339 with any number of fraction digits and `Z` or `±HH:MM` → µs since the epoch.
pub fn parse_rfc3339_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if b.len() < 20 || seps.iter().any(|&(i, c)| b[i] != c) || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let (mut i, mut frac_us, mut scale) = (19, 0i64, 100_000i64);
    if b[19] == b'.' {
        i = 20;
        while i < b.len() && b[i].is_ascii_digit() {
            frac_us += i64::from(b[i] - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    let offset_s = match &s[i..] {
        "Z" | "z" => 0,
        z if z.len() == 6 && matches!(&z[..1], "+" | "-") && &z[3..4] == ":" => {
            let v = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if z.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    // Days from the civil date (H. Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset_s) * 1_000_000 + frac_us)
}

/// One run of the flow.
struct Run {
    id_ms: f64,
    confirm_ms: f64,
    table_ms: f64,
    table_bytes: usize,
    rows: usize,
    rows_ok: bool,
    /// Row stamp − local send time, µs, for each matched row.
    stamp_err_us: Vec<f64>,
}

async fn one_run(ws: &str, rng: &mut fastrand::Rng, scale: f64) -> Result<Run, String> {
    let clock = Clock::new();
    let mut c = [connect(ws).await?, connect(ws).await?];
    // The table is shared: start from an empty one.
    send(&mut c[0], json!({"reset_tableau": true})).await?;
    send(&mut c[0], json!({"client_pret": true})).await?;
    send(&mut c[1], json!({"client_pret": true})).await?;
    let t_ready = clock.now_us();
    let mut ids = [0i64; 2];
    for (k, w) in c.iter_mut().enumerate() {
        ids[k] = wait_key(w, "client_id").await?.0["client_id"].as_i64().ok_or("client_id is not an integer")?;
    }
    let id_ms = (clock.now_us() - t_ready) as f64 / 1000.0;
    // Both schedules, merged in time order.
    let t0 = clock.now_us();
    let mut plan: Vec<(i64, usize)> = Vec::new();
    for k in 0..2 {
        let mut t = t0;
        for _ in 0..POSTS_PER_CLIENT {
            t += ((GAP_US.0 + rng.f64() * (GAP_US.1 - GAP_US.0)) * scale).round() as i64;
            plan.push((t, k));
        }
    }
    plan.sort_unstable();
    let mut sent: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
    for (t, k) in plan {
        let left = t - clock.now_us();
        if left > 0 {
            tokio::time::sleep(Duration::from_micros(left as u64)).await;
        }
        let at = clock.now_us();
        send(&mut c[k], json!({ "nouvelle_valeur": ids[k] })).await?;
        sent[k].push(at);
    }
    send(&mut c[0], json!({"client_a_terminer_denvoyer": ids[0]})).await?;
    send(&mut c[1], json!({"client_a_terminer_denvoyer": ids[1]})).await?;
    let t_done = clock.now_us();
    for w in c.iter_mut() {
        wait_key(w, "confirmation").await?;
    }
    let confirm_ms = (clock.now_us() - t_done) as f64 / 1000.0;
    let t_ask = clock.now_us();
    send(&mut c[0], json!({"obtenir_tableau": true})).await?;
    let (rows, table_bytes) = wait_table(&mut c[0]).await?;
    let table_ms = (clock.now_us() - t_ask) as f64 / 1000.0;
    // Each client's rows, in table order, are its posts in send order.
    let mut seen = [0usize; 2];
    let mut stamp_err_us = Vec::new();
    let mut foreign = 0;
    for row in &rows {
        let Some(k) = ids.iter().position(|&id| row["Value"].as_i64() == Some(id)) else {
            foreign += 1;
            continue;
        };
        if let (Some(&s), Some(t)) = (sent[k].get(seen[k]), row["Timestamp"].as_str().and_then(parse_rfc3339_us)) {
            stamp_err_us.push((t - s) as f64);
        }
        seen[k] += 1;
    }
    for mut w in c {
        let _ = w.close(None).await;
    }
    Ok(Run {
        id_ms,
        confirm_ms,
        table_ms,
        table_bytes,
        rows: rows.len(),
        rows_ok: foreign == 0 && seen == [POSTS_PER_CLIENT; 2] && stamp_err_us.len() == 2 * POSTS_PER_CLIENT,
        stamp_err_us,
    })
}

fn summary(v: &mut [f64]) -> (f64, f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v.first().copied().unwrap_or(f64::NAN), quantile(v, 0.5), quantile(v, 0.99), v.last().copied().unwrap_or(f64::NAN))
}

pub async fn bench_legacy(url: &str, pid: Option<u32>, opts: &Opts) -> Result<Value, String> {
    let ws = ws_url(url)?;
    if opts.flood {
        require_loopback(url)?;
        return flood(&ws, pid, opts).await;
    }
    let n = opts.pairs.unwrap_or(5).clamp(1, 100);
    let scale = opts.time_scale.unwrap_or(1.0);
    if !(scale > 0.0 && scale <= 1.0) {
        return Err("--time-scale must be in (0, 1]".into());
    }
    let mut rng = fastrand::Rng::new();
    let (mut id, mut confirm, mut table, mut errs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ok, mut rows, mut bytes) = (0usize, 0usize, 0usize);
    for _ in 0..n {
        let r = one_run(&ws, &mut rng, scale).await?;
        id.push(r.id_ms);
        confirm.push(r.confirm_ms);
        table.push(r.table_ms);
        errs.extend(r.stamp_err_us);
        ok += usize::from(r.rows_ok);
        rows += r.rows;
        bytes = r.table_bytes;
    }
    let (_, id50, _, idmax) = summary(&mut id);
    let (_, c50, _, cmax) = summary(&mut confirm);
    let (_, t50, _, tmax) = summary(&mut table);
    let (emin, e50, e99, emax) = summary(&mut errs);
    Ok(json!({
        "runs": n,
        "posts_per_client": POSTS_PER_CLIENT,
        "gaps": if scale == 1.0 { "the original page's".to_string() } else { format!("the original page's × {scale} (scaled)") },
        "gap_ms": [r3(GAP_US.0 * scale / 1000.0), r3(GAP_US.1 * scale / 1000.0)],
        "runs_with_exact_table": ok,
        "rows_per_run": r3(rows as f64 / n as f64),
        "table_bytes": bytes,
        "ids_ms_p50": r3(id50),
        "ids_ms_max": r3(idmax),
        "confirmation_ms_p50": r3(c50),
        "confirmation_ms_max": r3(cmax),
        "table_ms_p50": r3(t50),
        "table_ms_max": r3(tmax),
        "stamp_minus_send_us_min": r3(emin),
        "stamp_minus_send_us_p50": r3(e50),
        "stamp_minus_send_us_p99": r3(e99),
        "stamp_minus_send_us_max": r3(emax),
    }))
}

/// What one flooding connection saw.
#[derive(Default)]
struct Flooded {
    sent: u64,
    errors: u64,
    /// The close code, if the server closed the connection.
    closed: Option<u16>,
}

async fn flood_one(w: Ws, value: i64, posts: u64, hz: f64, clock: Clock) -> Flooded {
    let (mut sink, mut stream) = w.split();
    let text = json!({ "nouvelle_valeur": value }).to_string();
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let reader = async move {
        let (mut errors, mut closed) = (0u64, None);
        loop {
            tokio::select! {
                m = stream.next() => match m {
                    Some(Ok(Message::Text(t))) if t.contains("\"error\"") => errors += 1,
                    Some(Ok(Message::Close(f))) => {
                        closed = Some(f.map_or(1005, |f| u16::from(f.code)));
                        break;
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        closed = closed.or(Some(1006));
                        break;
                    }
                },
                _ = done_rx.changed() => break,
            }
        }
        (errors, closed, stream)
    };
    let writer = async move {
        let (start, tick) = (clock.now_us(), 5_000i64);
        let mut sent = 0u64;
        'outer: while sent < posts {
            let due = (((clock.now_us() - start) as f64 * hz / 1e6) as u64).min(posts);
            for _ in sent..due {
                if sink.feed(Message::Text(text.clone().into())).await.is_err() {
                    break 'outer;
                }
            }
            if due > sent {
                if sink.flush().await.is_err() {
                    break;
                }
                sent = due;
            }
            tokio::time::sleep(Duration::from_micros(tick as u64)).await;
        }
        // Let the last answers (errors, a close) arrive before the reader stops.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = done_tx.send(true);
        (sent, sink)
    };
    let ((errors, closed, _stream), (sent, _sink)) = tokio::join!(reader, writer);
    Flooded { sent, errors, closed }
}

async fn flood(ws: &str, pid: Option<u32>, opts: &Opts) -> Result<Value, String> {
    let seconds = opts.seconds.unwrap_or(2.0).clamp(0.2, 30.0);
    let hz = opts.rate_hz.unwrap_or(30_000.0);
    if !(hz > 0.0 && hz <= 1e6) {
        return Err("--rate-hz must be in (0, 1000000]".into());
    }
    let per_conn = ((hz * seconds) as u64).min(FLOOD_ROWS / 2);
    let clock = Clock::new();
    let mut a = connect(ws).await?;
    send(&mut a, json!({"reset_tableau": true})).await?;
    let b = connect(ws).await?;
    let (rss0, cpu0, t0) = (pid.and_then(rss_kib), pid.and_then(cpu_s), clock.now_us());
    let (fa, fb) = tokio::join!(flood_one(a, 1, per_conn, hz, clock), flood_one(b, 2, per_conn, hz, clock));
    // The posting took this long (less the writers' 200 ms wait for answers).
    let (cpu1, t1) = (pid.and_then(cpu_s), clock.now_us() - 200_000);
    let posting_s = (t1 - t0) as f64 / 1e6;
    // A fresh connection fetches the table, then empties it.
    let mut c = connect(ws).await?;
    let t_ask = clock.now_us();
    send(&mut c, json!({"obtenir_tableau": true})).await?;
    let (rows, bytes) = wait_table(&mut c).await?;
    let table_ms = (clock.now_us() - t_ask) as f64 / 1000.0;
    let rss1 = pid.and_then(rss_kib);
    send(&mut c, json!({"reset_tableau": true})).await?;
    let _ = c.close(None).await;
    let sent = fa.sent + fb.sent;
    let closes: Vec<Value> = [fa.closed, fb.closed].into_iter().flatten().map(|c| json!(c)).collect();
    let cpu = match (cpu0, cpu1) {
        (Some(c0), Some(c1)) => r3((c1 - c0) * 1e6 / rows.len().max(1) as f64),
        _ => Value::Null,
    };
    Ok(json!({
        "connections": 2,
        "rate_hz_per_connection": hz,
        "seconds": r3(posting_s),
        "sent": sent,
        "rows": rows.len(),
        "sent_per_s": r3(sent as f64 / posting_s),
        "rows_per_s": r3(rows.len() as f64 / posting_s),
        "errors": fa.errors + fb.errors,
        "closed_by_server": closes,
        "table_ms": r3(table_ms),
        "table_bytes": bytes,
        "server_cpu_us_per_row": cpu,
        "server_rss_kib_before": rss0,
        "server_rss_kib_after": rss1,
    }))
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339_us;
    use crate::legacy::rfc3339_nanos;

    #[test]
    fn reads_back_what_the_server_writes() {
        for t in [0, 1_764_065_045_123_456, 951_782_400_000_000, -1, 4_102_444_800_000_001] {
            for off in [0, 3600, -(5 * 3600 + 1800)] {
                assert_eq!(parse_rfc3339_us(&rfc3339_nanos(t, off)), Some(t), "{t} {off}");
            }
        }
        // Go's RFC3339Nano drops trailing zeros, or the whole fraction.
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:01.5Z"), Some(1_500_000));
        assert_eq!(parse_rfc3339_us("1970-01-01T01:00:01+01:00"), Some(1_000_000));
        for bad in ["", "1970-01-01", "1970-01-01T00:00:00", "1970-01-01T00:00:00.1", "1970-01-01T00:00:00+0100", "197a-01-01T00:00:00Z"] {
            assert_eq!(parse_rfc3339_us(bad), None, "{bad}");
        }
    }
}

//! `sgp bench`: measurements, never pass/fail. Each subcommand starts its own `sgp serve`
//! on 127.0.0.1:0 (a child process, so the server has its own thread as in real use) unless
//! `--server URL` is given, runs a load bounded in count and time against it, and prints a
//! table or JSON. Loads (`jitter --rooms`, `load`, `idle`, `legacy --flood`) go to 127.0.0.1 only.
//!
//! - `key`: pairs of real `sgp pair` processes, one pair at a time → time to a confirmed key.
//! - `sweep`: `key` over a range of tolerances → the table behind the default tolerance.
//! - `jitter`: the error `server_t − predicted_t` of posts with known send times, at rest and
//!   while other rooms post.
//! - `load`: many rooms posting at their allowed rate → posts/s, CPU per post, jitter; the knee.
//! - `idle`: N idle WebSocket connections → the server's memory per connection.
//! - `legacy`: the original client's flow (and a flood) against any server speaking its dialect.
//! - `net`: `key`'s pairs through field profiles (delay, jitter, loss; a busy machine), in
//!   network namespaces where root allows, else on loopback; `relay` (hidden) is its delay
//!   relay on its own.

mod idle;
mod key;
mod legacy;
mod load;
mod net;
pub mod relay;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

#[derive(Clone, Debug, Default)]
pub struct Opts {
    pub what: String,
    pub server: Option<String>,
    /// `key`, `sweep`: pairs per tolerance; `legacy`: runs of the flow.
    pub pairs: Option<usize>,
    pub connections: Option<usize>,
    pub tolerance_ms: Option<f64>,
    /// `sweep`: the tolerances to try.
    pub tolerances: Option<Vec<f64>>,
    pub target_bits: Option<u32>,
    /// `jitter`: rooms posting beside the prober; `load`: the largest step.
    pub rooms: Option<usize>,
    pub seconds: Option<f64>,
    /// Per-connection posting rate of the load generators.
    pub rate_hz: Option<f64>,
    /// `key`, `sweep`: each round's posting window (the creator's `--duration-ms`).
    pub duration_ms: Option<u32>,
    /// `legacy`: flood instead of the two-client flow.
    pub flood: bool,
    /// The server it starts serves https and wss (`--tls-self-signed`), its clients trusting it.
    pub tls: bool,
    /// `legacy`: the original page's gaps multiplied by this (1: as the page; 0.01: fast).
    pub time_scale: Option<f64>,
    /// `jitter`, `load`: the processes whose CPU time is the server's (`--pid`), if not the
    /// one bench starts or the one listening on `--server`'s port.
    pub pids: Option<Vec<u32>>,
    /// `net`: the profiles to run (default all).
    pub profiles: Option<Vec<String>>,
    /// `relay`: where to listen, where to relay to, and the path.
    pub relay: Option<RelayOpts>,
    pub json: bool,
}

impl Opts {
    /// Benchmark `what` with nothing else asked.
    pub fn new(what: &str) -> Opts {
        Opts { what: what.to_string(), ..Opts::default() }
    }
}

#[derive(Clone, Debug)]
pub struct RelayOpts {
    pub listen: std::net::SocketAddr,
    pub target: std::net::SocketAddr,
    pub spec: relay::Spec,
}

pub const WHAT: &str = "key, sweep, jitter, load, idle, legacy, net";
/// Not in the usage: `relay`, the delay relay of `net` on its own (for a test or a harness).
pub const HIDDEN: &str = "relay";
/// The profiles of `net`, in the order they run.
pub use net::PROFILE_NAMES;

/// Set on Ctrl-C or SIGTERM during `net`: no new pair starts, running ones are killed, and
/// everything set up is taken down.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn stopping() -> bool {
    STOP.load(std::sync::atomic::Ordering::Relaxed)
}

/// The caps of the servers bench starts: its loads come from one address, by design.
pub const LOAD_CAPS: &[&str] = &["--max-per-address", "1000000", "--rooms-per-minute", "100000"];

/// A server we started, stopped when dropped (with the folder of its CA, if TLS).
struct OwnServer {
    child: Child,
    url: String,
    _ca_dir: Option<key::PrivateDir>,
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

/// The sgp binary as a command, run in network namespace `ns` if given (`ip netns exec`
/// execs it: the child is sgp itself, and killing it kills sgp).
fn sgp_command(ns: Option<&str>) -> Result<Command, String> {
    let exe = exe()?;
    Ok(match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(exe);
            c
        }
        None => Command::new(exe),
    })
}

fn start_server(extra: &[&str]) -> Result<OwnServer, String> {
    start_server_in(None, extra)
}

/// `sgp serve --port 0` in namespace `ns` (or this one); its URL as it printed it.
fn start_server_in(ns: Option<&str>, extra: &[&str]) -> Result<OwnServer, String> {
    let mut child = sgp_command(ns)?
        .args(["serve", "--port", "0"])
        // A benchmark is one address making many connections and rooms on purpose.
        .args(LOAD_CAPS)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start sgp serve: {e}"))?;
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    stdout.read_line(&mut line).map_err(|e| e.to_string())?;
    let url = line.trim().strip_prefix("sgp listening on ").ok_or_else(|| format!("unexpected: {line}"))?.trim_end_matches('/').to_string();
    let ca_dir = match extra.contains(&"--tls-self-signed") {
        true => Some(trust_own_ca(&mut stdout)?),
        false => None,
    };
    Ok(OwnServer { url, child, _ca_dir: ca_dir })
}

/// Reads the CA that `sgp serve --tls-self-signed` printed, saves it in a private folder and
/// makes this process's clients (and the pairs it starts) trust it alone.
fn trust_own_ca(stdout: &mut impl BufRead) -> Result<key::PrivateDir, String> {
    let mut pem = String::new();
    while !pem.contains("-----END CERTIFICATE-----") {
        if stdout.read_line(&mut pem).map_err(|e| e.to_string())? == 0 {
            return Err("sgp serve --tls-self-signed printed no CA".into());
        }
    }
    let dir = key::PrivateDir::new()?;
    let path = dir.0.join("ca.pem");
    std::fs::write(&path, pem).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    crate::tls::set_ca_file(&path.to_string_lossy())?;
    Ok(dir)
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

/// CPU time (user + system) a process has used, in seconds, from /proc/PID/stat.
fn cpu_s(pid: u32) -> Option<f64> {
    cpu_split_s(pid).map(|(user, sys)| user + sys)
}

/// CPU time a process has used in user space and in the kernel, in seconds.
fn cpu_split_s(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    // SAFETY: sysconf reads a constant of the C library.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| (utime as f64 / hz as f64, stime as f64 / hz as f64))
}

/// CPU time (user, system) summed over `pids`, in seconds; None if there are none or one
/// cannot be read (gone, or not ours to read).
fn cpu_split_sum(pids: &[u32]) -> Option<(f64, f64)> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold((0.0, 0.0), |(u, s), &p| cpu_split_s(p).map(|(u1, s1)| (u + u1, s + s1)))
}

/// CPU time the calling thread has used, in seconds.
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The process listening on `url`'s port on this machine, found through /proc (so that CPU
/// and memory can be read for a server given with `--server`, when we may read its fds).
fn local_pid(url: &str) -> Option<u32> {
    require_loopback(url).ok()?;
    let port = crate::client::ServerUrl::parse(url).ok()?.port();
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1).and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // State 0A is LISTEN.
            if local_port == Some(port) && f.get(3) == Some(&"0A") {
                inodes.extend(f.get(9).map(|i| format!("socket:[{i}]")));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for proc_dir in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_dir.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str())) {
                return Some(pid);
            }
        }
    }
    None
}

/// The server's `GET /healthz` (`{ok, version, rooms, connections}`), if it answers in 5 s.
/// A blocking request (one, to this machine): the std socket is already in the binary.
/// Plain HTTP only: through TLS there is no answer (the figures it gives are then left out).
fn healthz(url: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let u = crate::client::ServerUrl::parse(url).ok()?;
    if u.tls {
        return None;
    }
    let host = u.authority.as_str();
    let path = u.path.as_str();
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(u.host().trim_matches(['[', ']']), u.port())).ok()?.next()?;
    let limit = std::time::Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect_timeout(&addr, limit).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.write_all(format!("GET {path}/healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

/// Loads are only ever sent to this machine.
fn require_loopback(url: &str) -> Result<(), String> {
    match crate::client::ServerUrl::parse(url)?.host() {
        "127.0.0.1" | "localhost" | "[::1]" => Ok(()),
        _ => Err(format!("{url}: this benchmark sends a load, and loads go to 127.0.0.1 only")),
    }
}

/// Rounds to 3 significant decimals for tables and JSON alike (raw figures stay exact
/// where they are counts).
fn r3(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

pub async fn run(opts: &Opts) -> Result<(), String> {
    if opts.what == HIDDEN {
        let r = opts.relay.clone().ok_or("relay needs --listen and --target")?;
        return tokio::task::spawn_blocking(move || relay::run(r.listen, r.target, r.spec)).await.map_err(|e| e.to_string())?;
    }
    if !WHAT.split(", ").any(|w| w == opts.what) {
        return Err(format!("unknown benchmark {:?} ({WHAT})", opts.what));
    }
    let own = match &opts.server {
        // `net` starts its servers itself, in namespaces or on loopback.
        Some(_) => None,
        None if opts.what == "net" => None,
        None => {
            let mut extra = vec![];
            extra.extend(opts.tls.then_some("--tls-self-signed"));
            extra.extend((opts.what == "legacy").then_some("--legacy"));
            Some(start_server(&extra)?)
        }
    };
    let url = opts.server.clone().or_else(|| own.as_ref().map(|s| s.url.clone())).unwrap_or_default();
    let pid = own.as_ref().map(|s| s.child.id()).or_else(|| local_pid(&url));
    // Whose CPU is the server's: `--pid` (several servers behind a proxy), else that one.
    let pids: Vec<u32> = opts.pids.clone().unwrap_or_else(|| pid.into_iter().collect());
    let result = match opts.what.as_str() {
        "key" => key::bench_key(&url, opts).await?,
        "sweep" => key::bench_sweep(&url, opts).await?,
        "jitter" => load::bench_jitter(&url, &pids, opts).await?,
        "load" => load::bench_load(&url, &pids, opts).await?,
        "idle" => idle::bench_idle(&url, pid, opts).await?,
        "net" => net::bench_net(opts).await?,
        _ => legacy::bench_legacy(&url, pid, opts).await?,
    };
    // Which server was measured (http or https, its own or given).
    let mut result = result;
    if let (Some(o), false) = (result.as_object_mut(), url.is_empty()) {
        o.insert("server".into(), json!(url));
        if matches!(opts.what.as_str(), "jitter" | "load") {
            o.insert("server_pids".into(), json!(pids));
        }
    }
    if opts.json {
        println!("{result}");
    } else {
        print_table(&result);
    }
    Ok(())
}

/// Columns in this order in tables (JSON objects keep their keys sorted); others after.
const COLUMNS: &[&str] = &[
    "profile", "error", "alice_path", "bob_path", "busy_loops", "pairs_run", "ok", "success_rate", "time_to_key_s_p50", "time_to_key_s_p90", "sift_posting_s_per_key",
    "round_tolerance_ms_min", "round_tolerance_ms_median", "round_tolerance_ms_max", "round_rate_hz_min", "round_rate_hz_median", "round_rate_hz_max", "rounds",
    "phase", "tolerance_ms", "tolerance_ms_min", "tolerance_ms_max", "guard_ms", "duration_ms", "rooms", "pairs", "failed", "time_to_key_ms_p50", "time_to_key_ms_p90", "time_to_key_ms_max",
    "rounds_per_key", "dropped_round_rate", "dropped_late", "dropped_desync", "dropped_held", "dropped_other", "confirm_failure_rate",
    "kept_entries", "kept_per_s_of_posting", "kept_limit_per_s", "kept_fraction_of_limit", "kept_fraction_counted_rounds",
    "kept_fraction_inside_guards", "kept_per_s_wall", "product_cost_bits_per_key", "surplus_bits_per_key", "post_hz", "offered_per_s", "sent_per_s", "accepted_per_s", "on_boards", "skipped", "refused", "rate_limited",
    "lost_connections", "server_cpu_pct", "server_cpu_us_per_post", "server_kernel_share", "loader_cpu_pct", "probe_posts", "probe_on_board",
    "probe_refused", "probe_skipped", "probe_coalesced", "probe_errors", "raw_err_us_min", "raw_err_us_median", "raw_err_us_max",
    "raw_abs_us_p50", "raw_abs_us_p99", "raw_abs_us_p999", "raw_abs_us_max", "bias_us", "dev_us_p50", "dev_us_p99", "dev_us_p999",
    "dev_us_max",
];

fn is_rows(v: &Value) -> bool {
    v.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_object))
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x.abs() >= 100.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.3}")
            }
        }
        other => other.to_string(),
    }
}

/// Scalars as `name  value` lines, then each array of objects as a table with a header.
fn print_table(v: &Value) {
    let Some(obj) = v.as_object() else {
        println!("{v}");
        return;
    };
    let width = obj.iter().filter(|(_, v)| !is_rows(v)).map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, val) in obj.iter().filter(|(_, v)| !is_rows(v)) {
        println!("{k:width$}  {}", cell(val));
    }
    for (name, rows) in obj.iter().filter(|(_, v)| is_rows(v)) {
        let rows: Vec<&serde_json::Map<String, Value>> = rows.as_array().into_iter().flatten().filter_map(Value::as_object).collect();
        let mut cols: Vec<&str> = Vec::new();
        for r in &rows {
            for k in r.keys() {
                if !cols.contains(&k.as_str()) {
                    cols.push(k);
                }
            }
        }
        cols.sort_by_key(|c| COLUMNS.iter().position(|k| k == c).unwrap_or(COLUMNS.len()));
        let cells: Vec<Vec<String>> = rows.iter().map(|r| cols.iter().map(|c| r.get(*c).map_or("-".into(), cell)).collect()).collect();
        println!("\n{name}:");
        // Too many columns for a terminal: one line per field, one column per row.
        let (head, body): (Vec<String>, Vec<Vec<String>>) = if cols.len() > WIDE {
            let head = std::iter::once(String::new()).chain((1..=rows.len()).map(|k| format!("#{k}"))).collect();
            let body = cols.iter().enumerate().map(|(i, c)| std::iter::once(c.to_string()).chain(cells.iter().map(|r| r[i].clone())).collect()).collect();
            (head, body)
        } else {
            (cols.iter().map(|c| c.to_string()).collect(), cells)
        };
        let widths: Vec<usize> =
            (0..head.len()).map(|i| body.iter().map(|r| r[i].chars().count()).chain([head[i].chars().count()]).max().unwrap_or(0)).collect();
        let transposed = cols.len() > WIDE;
        let line = |items: &[String]| {
            let s: Vec<String> = items
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (x, w))| if transposed && i == 0 { format!("{x:<w$}") } else { format!("{x:>w$}") })
                .collect();
            println!("  {}", s.join("  "));
        };
        line(&head);
        for r in &body {
            line(r);
        }
    }
}

/// Tables with more columns than this are printed transposed.
const WIDE: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.0);
        assert_eq!(quantile(&v, 0.9), 4.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn loads_stay_on_this_machine() {
        assert!(require_loopback("http://127.0.0.1:8080").is_ok());
        assert!(require_loopback("ws://localhost:1/ws").is_ok());
        assert!(require_loopback("http://[::1]:80").is_ok());
        assert!(require_loopback("http://example.org:8080").is_err());
        assert!(require_loopback("http://10.0.0.1:8080").is_err());
    }

    #[test]
    fn finds_the_local_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
        // Reading other processes' fds may be refused; our own is always readable.
        assert_eq!(local_pid(&url), Some(std::process::id()));
        assert_eq!(local_pid("http://example.org:80"), None);
    }

    #[test]
    fn own_process_stats_are_readable() {
        let pid = std::process::id();
        assert!(rss_kib(pid).is_some_and(|k| k > 0));
        assert!(cpu_s(pid).is_some_and(|s| s >= 0.0));
        assert!(thread_cpu_s() > 0.0);
    }

    #[test]
    fn cpu_of_several_servers_is_their_sum_or_nothing() {
        let pid = std::process::id();
        let (u, s) = cpu_split_sum(&[pid, pid]).unwrap();
        let (u1, s1) = cpu_split_s(pid).unwrap();
        assert!(u >= 2.0 * u1 - 0.5 && s >= 2.0 * s1 - 0.5, "twice the one: {u} {s} against {u1} {s1}");
        assert_eq!(cpu_split_sum(&[]), None);
        // No such process (PIDs stop well below u32::MAX): no figure rather than a partial one.
        assert_eq!(cpu_split_sum(&[pid, u32::MAX]), None);
    }
}

//! `net`: `key`'s pairs (real `sgp pair` processes, one pair at a time) through field
//! profiles built on this machine: delay, jitter and loss between each poster and the
//! server, or a busy machine.
//!
//! As root, where `ip netns add` works: a network namespace for the server and one per
//! poster, joined by veth links (server 10.78.1.1 — alice 10.78.1.2, server 10.78.2.1 — bob
//! 10.78.2.2), each `sgp pair` run with `ip netns exec`. The path is made by `tc netem` on
//! both ends of the poster's link where the kernel has it, else by the delay relay
//! (`relay.rs`, run as `sgp bench relay`) inside the server's namespace on the poster-facing
//! address, as `audit/run.py`'s netns scenario does with `delay_proxy.py`. Without root (or
//! iproute2) it says so and runs every profile on 127.0.0.1, through relays there.
//!
//! Everything it starts is stopped, and every namespace deleted, when it ends, fails or is
//! interrupted (Ctrl-C, SIGTERM); stale `sgp-net-PID-*` namespaces of runs that died are
//! deleted at the start.

use super::key::{pair_opts, pairs_at, Seat, Seats, PAIR_LIMIT};
use super::relay::Spec;
use super::{r3, sgp_command, start_server_in, Opts, OwnServer, STOP};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One field profile: each poster's path to the server (`None`: direct), and whether two
/// busy loops run beside the pairs.
pub struct Profile {
    pub name: &'static str,
    alice: Option<Spec>,
    bob: Option<Spec>,
    busy: bool,
}

const LAN: Spec = Spec { delay_ms: 0.2, jitter_ms: 0.05, loss: 0.0, reorder: 0.0 };
const WIFI: Spec = Spec { delay_ms: 3.0, jitter_ms: 2.0, loss: 0.005, reorder: 0.001 };
const WAN: Spec = Spec { delay_ms: 20.0, jitter_ms: 5.0, loss: 0.0, reorder: 0.0 };

pub const PROFILES: &[Profile] = &[
    Profile { name: "loopback", alice: None, bob: None, busy: false },
    Profile { name: "lan", alice: Some(LAN), bob: Some(LAN), busy: false },
    Profile { name: "wifi", alice: Some(WIFI), bob: Some(WIFI), busy: false },
    Profile { name: "wan-near-far", alice: None, bob: Some(WAN), busy: false },
    Profile { name: "wan-far", alice: Some(WAN), bob: Some(WAN), busy: false },
    Profile { name: "busy", alice: None, bob: None, busy: true },
];

/// `PROFILES`' names, for the usage check (a test keeps the two in step).
pub const PROFILE_NAMES: &str = "loopback, lan, wifi, wan-near-far, wan-far, busy";

/// Busy loops the `busy` profile runs (the machine has 2 cores: both are contended).
const BUSY_LOOPS: usize = 2;

/// The first two octets of every address `net` gives (deleted with the namespaces).
const NET: &str = "10.78";

fn say(msg: &str) {
    eprintln!("bench net: {msg}");
}

/// Runs `ip ARGS` (in namespace `ns` if given); its stderr on failure.
fn ip(ns: Option<&str>, args: &[&str]) -> Result<(), String> {
    let mut c = Command::new("ip");
    if let Some(ns) = ns {
        c.args(["netns", "exec", ns, "ip"]);
    }
    run(c.args(args))
}

fn tc(ns: &str, args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(["netns", "exec", ns, "tc"]).args(args))
}

fn run(c: &mut Command) -> Result<(), String> {
    let out = c.stdin(Stdio::null()).output().map_err(|e| format!("{c:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", c.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The namespaces of one run, deleted when dropped (their veth links go with them).
struct Namespaces {
    pid: u32,
    made: Vec<String>,
    /// `tc netem` works on the links: the paths are made by it rather than by relays.
    netem: bool,
}

impl Namespaces {
    fn name(pid: u32, who: &str) -> String {
        format!("sgp-net-{pid}-{who}")
    }

    fn server(&self) -> String {
        Self::name(self.pid, "s")
    }

    /// Poster `k` (1 alice, 2 bob): its namespace, and its link's two ends (server side,
    /// poster side; at most 15 characters).
    fn poster(&self, k: u8) -> (String, String, String) {
        (Self::name(self.pid, if k == 1 { "a" } else { "b" }), format!("sgpn{}s{k}", self.pid), format!("sgpn{}p{k}", self.pid))
    }

    /// Deletes the `sgp-net-PID-*` namespaces whose process is gone.
    fn remove_stale() {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).stdin(Stdio::null()).output() else { return };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(pid) = name.strip_prefix("sgp-net-").and_then(|r| r.split('-').next()) else { continue };
            if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                say(&format!("deleting the stale namespace {name}"));
                let _ = ip(None, &["netns", "del", name]);
            }
        }
    }

    /// Server, alice and bob namespaces and the two links; Err if any step fails (what was
    /// made is deleted).
    fn set_up() -> Result<Namespaces, String> {
        Self::remove_stale();
        let mut ns = Namespaces { pid: std::process::id(), made: Vec::new(), netem: false };
        for who in ["s", "a", "b"] {
            let name = Self::name(ns.pid, who);
            ip(None, &["netns", "add", &name])?;
            ns.made.push(name.clone());
            ip(Some(&name), &["link", "set", "lo", "up"])?;
        }
        let s = ns.server();
        for k in [1u8, 2] {
            let (p, ls, lp) = ns.poster(k);
            ip(None, &["link", "add", &ls, "netns", &s, "type", "veth", "peer", "name", &lp, "netns", &p])?;
            ip(Some(&s), &["addr", "add", &format!("{NET}.{k}.1/24"), "dev", &ls])?;
            ip(Some(&p), &["addr", "add", &format!("{NET}.{k}.2/24"), "dev", &lp])?;
            ip(Some(&s), &["link", "set", &ls, "up"])?;
            ip(Some(&p), &["link", "set", &lp, "up"])?;
        }
        let (_, ls, _) = ns.poster(1);
        match tc(&s, &["qdisc", "add", "dev", &ls, "root", "netem", "delay", "1ms"]) {
            Ok(()) => {
                ns.netem = true;
                tc(&s, &["qdisc", "del", "dev", &ls, "root"])?;
            }
            Err(e) => say(&format!("tc netem is not available here ({e}); the paths go through the delay relay")),
        }
        Ok(ns)
    }

    /// Sets poster `k`'s link to `spec` each way with netem (or clears it).
    fn netem(&self, k: u8, spec: Option<Spec>) -> Result<(), String> {
        let (p, ls, lp) = self.poster(k);
        for (ns, dev) in [(self.server(), ls), (p, lp)] {
            let _ = tc(&ns, &["qdisc", "del", "dev", &dev, "root"]);
            if let Some(s) = spec {
                let (d, j, loss, re) = (format!("{}ms", s.delay_ms), format!("{}ms", s.jitter_ms), format!("{}%", s.loss * 100.0), format!("{}%", s.reorder * 100.0));
                tc(&ns, &["qdisc", "add", "dev", &dev, "root", "netem", "delay", &d, &j, "loss", &loss, "reorder", &re])?;
            }
        }
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            if let Err(e) = ip(None, &["netns", "del", name]) {
                say(&format!("could not delete namespace {name}: {e}"));
            }
        }
    }
}

/// A `sgp bench relay` child, killed when dropped.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Relay {
    /// Starts a relay (in namespace `ns` if given) listening on `host`, to `target`; its port.
    fn start(ns: Option<&str>, host: &str, target: &str, spec: Spec) -> Result<(Relay, u16), String> {
        let args = [
            "bench".to_string(),
            "relay".into(),
            "--listen".into(),
            format!("{host}:0"),
            "--target".into(),
            target.to_string(),
            "--delay-ms".into(),
            spec.delay_ms.to_string(),
            "--jitter-ms".into(),
            spec.jitter_ms.to_string(),
            "--loss".into(),
            spec.loss.to_string(),
            "--reorder".into(),
            spec.reorder.to_string(),
        ];
        let mut child = sgp_command(ns)?.args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(|e| format!("cannot start the relay: {e}"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let relay = Relay(child);
        BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
        let port = line.trim().strip_prefix("listening ").and_then(|p| p.parse().ok()).ok_or_else(|| format!("the relay did not start: {line:?}"))?;
        Ok((relay, port))
    }
}

/// Busy loops, killed when dropped (also when the profile fails or is interrupted).
struct Busy(Vec<Child>);

impl Busy {
    fn start(n: usize) -> Result<Busy, String> {
        let mut b = Busy(Vec::new());
        for _ in 0..n {
            let c = Command::new("sh").args(["-c", "while :; do :; done"]).stdin(Stdio::null()).spawn().map_err(|e| format!("cannot start a busy loop: {e}"))?;
            b.0.push(c);
        }
        Ok(b)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where the pairs run: namespaces, or this machine's loopback.
struct Network {
    ns: Option<Namespaces>,
    server: OwnServer,
    port: u16,
}

impl Network {
    fn set_up() -> Result<Network, String> {
        // SAFETY: geteuid only reads the process's credentials.
        let root = unsafe { libc::geteuid() } == 0;
        let ns = if root {
            match Namespaces::set_up() {
                Ok(ns) => Some(ns),
                Err(e) => {
                    say(&format!("ip netns failed ({e}): namespaces unavailable; running the profiles on loopback through the relay"));
                    None
                }
            }
        } else {
            say("not root: namespaces unavailable; running the profiles on loopback through the relay");
            None
        };
        let server = match &ns {
            Some(ns) => start_server_in(Some(&ns.server()), &["--bind", "0.0.0.0"])?,
            None => start_server_in(None, &[])?,
        };
        let port = server.url.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).ok_or_else(|| format!("no port in {}", server.url))?;
        Ok(Network { ns, server, port })
    }

    /// Poster `k`'s seat for a path (`None`: direct), and the relay that makes it, if any.
    fn seat(&self, k: u8, spec: Option<Spec>) -> Result<(Seat, Option<Relay>), String> {
        let server = format!("127.0.0.1:{}", self.port);
        match (&self.ns, spec) {
            (None, None) => Ok((Seat { url: format!("http://{server}"), ns: None }, None)),
            (None, Some(spec)) => {
                let (relay, port) = Relay::start(None, "127.0.0.1", &server, spec)?;
                Ok((Seat { url: format!("http://127.0.0.1:{port}"), ns: None }, Some(relay)))
            }
            (Some(ns), spec) => {
                let (poster, _, _) = ns.poster(k);
                let host = format!("{NET}.{k}.1");
                let direct = Seat { url: format!("http://{host}:{}", self.port), ns: Some(poster.clone()) };
                if ns.netem {
                    ns.netem(k, spec)?;
                    return Ok((direct, None));
                }
                let Some(spec) = spec else { return Ok((direct, None)) };
                let (relay, port) = Relay::start(Some(&ns.server()), &host, &server, spec)?;
                Ok((Seat { url: format!("http://{host}:{port}"), ns: Some(poster) }, Some(relay)))
            }
        }
    }
}

fn path_name(spec: Option<Spec>) -> String {
    spec.map_or_else(|| "direct".to_string(), |s| s.describe())
}

/// The profiles named in `--profiles` (all by default), in the order given.
fn chosen(opts: &Opts) -> Result<Vec<&'static Profile>, String> {
    match &opts.profiles {
        None => Ok(PROFILES.iter().collect()),
        Some(names) => names
            .iter()
            .map(|n| PROFILES.iter().find(|p| p.name == n).ok_or_else(|| format!("unknown profile {n:?} (one of {PROFILE_NAMES})")))
            .collect(),
    }
}

/// One profile: its paths set up, `n` pairs, its paths and busy loops taken down.
fn one_profile(net: &Network, p: &Profile, opts: &Opts, n: usize) -> Result<Value, String> {
    let (alice, _relay_a) = net.seat(1, p.alice)?;
    let (bob, _relay_b) = net.seat(2, p.bob)?;
    let _busy = if p.busy { Some(Busy::start(BUSY_LOOPS)?) } else { None };
    let until = opts.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s.clamp(1.0, 86_400.0)));
    let started = Instant::now();
    let row = pairs_at(&Seats { creator: alice, joiner: bob }, pair_opts(opts, None), n, until);
    let (ok, run) = (row["pairs_run"].as_u64().unwrap_or(0) - row["failed"].as_u64().unwrap_or(0), row["pairs_run"].as_u64().unwrap_or(0));
    let secs = |k: &str| r3(row[k].as_f64().unwrap_or(f64::NAN) / 1000.0);
    let mut out = json!({
        "profile": p.name,
        "alice_path": path_name(p.alice),
        "bob_path": path_name(p.bob),
        "busy_loops": if p.busy { BUSY_LOOPS } else { 0 },
        "pairs_run": run,
        "ok": ok,
        "success_rate": if run > 0 { r3(ok as f64 / run as f64) } else { Value::Null },
        "time_to_key_s_p50": secs("time_to_key_ms_p50"),
        "time_to_key_s_p90": secs("time_to_key_ms_p90"),
        "profile_s": r3(started.elapsed().as_secs_f64()),
    });
    for k in [
        "round_tolerance_ms_min",
        "round_tolerance_ms_median",
        "round_tolerance_ms_max",
        "round_rate_hz_min",
        "round_rate_hz_median",
        "round_rate_hz_max",
        "rounds_per_key",
        "kept_per_s_of_posting",
        "kept_fraction_of_limit",
        "sift_posting_s_per_key",
        "failures",
    ] {
        out[k] = row[k].clone();
    }
    // The ceiling at the rounds' own τ (none without a key).
    out["kept_limit_per_s"] = if ok > 0 { row["kept_limit_per_s"].clone() } else { Value::Null };
    // Rounds and drops of every pair, those that failed included (they tell why).
    out["rounds"] = row["rounds_all_pairs"].clone();
    for cause in ["late", "desync", "held", "other"] {
        let n = row[format!("dropped_{cause}")].as_u64().unwrap_or(0) + row["failed_pairs_dropped"][cause].as_u64().unwrap_or(0);
        out[format!("dropped_{cause}")] = json!(n);
    }
    Ok(out)
}

fn all_profiles(opts: &Opts) -> Result<Value, String> {
    let profiles = chosen(opts)?;
    let n = opts.pairs.unwrap_or(10).clamp(1, 1000);
    let net = Network::set_up()?;
    let (network, delay_by) = match &net.ns {
        Some(ns) => ("namespaces (veth)", if ns.netem { "tc netem" } else { "relay (sgp bench relay, in the server's namespace)" }),
        None => ("loopback (127.0.0.1)", "relay (sgp bench relay)"),
    };
    let mut rows = Vec::new();
    for p in profiles {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        say(&format!("profile {}: {n} pair{}", p.name, if n == 1 { "" } else { "s" }));
        // A profile that cannot be set up (a relay that does not start) is reported, and
        // the others still run.
        rows.push(one_profile(&net, p, opts, n).unwrap_or_else(|e| {
            say(&format!("profile {}: {e}", p.name));
            json!({"profile": p.name, "error": e})
        }));
    }
    if STOP.load(Ordering::Relaxed) {
        return Err("interrupted: every process it started is stopped, its namespaces deleted".into());
    }
    drop(net.server);
    Ok(json!({
        "network": network,
        "delay_by": delay_by,
        "pairs_per_profile": n,
        "pair_limit_s": PAIR_LIMIT.as_secs(),
        "seconds_per_profile": opts.seconds,
        "target_bits": opts.target_bits.unwrap_or(256),
        "loss_model": format!("a lost segment holds its chunk and all behind it {} ms + the path's delay (Linux's minimum RTO); reordering holds a chunk 2·J", super::relay::RTO_MIN.as_millis()),
        "profiles": rows,
    }))
}

pub async fn bench_net(opts: &Opts) -> Result<Value, String> {
    // Ctrl-C and SIGTERM stop the run in order: the guards then take everything down.
    let signals = tokio::spawn(async {
        crate::server::signal().await;
        say("stopping: killing the running pair, deleting the namespaces");
        STOP.store(true, Ordering::Relaxed);
    });
    let opts = opts.clone();
    let result = tokio::task::spawn_blocking(move || all_profiles(&opts)).await.map_err(|e| e.to_string());
    signals.abort();
    result?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_are_in_step() {
        let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
        assert_eq!(names.join(", "), PROFILE_NAMES);
        for p in PROFILES {
            for s in [p.alice, p.bob].into_iter().flatten() {
                assert!(s.check().is_ok(), "{}", p.name);
            }
        }
    }
}

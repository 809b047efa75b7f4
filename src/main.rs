//! The `sgp` command: takes the command line (`cli`), builds the single-threaded runtime
//! and a `LocalSet`, and runs one subcommand (serve, pair, eve, bench, completions, man).

mod cli;

use clap::{CommandFactory, Parser};
use cli::{BenchCmd, Cli, Command};
use sgp::{bench, eve, http::Origins, pair, server};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Usage errors: clap says what is wrong, with the usage, and exits 2; --help exits 0.
    let cmd = match command(Cli::parse()) {
        Ok(cmd) => cmd,
        Err(e) => {
            eprintln!("sgp: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Err(e)) = CA_FILE.get().map(|f| sgp::tls::set_ca_file(f)) {
        eprintln!("sgp: {e}");
        return ExitCode::from(2);
    }
    run(cmd)
}

enum Cmd {
    Completions(clap_complete::Shell),
    Man,
    Serve { bind: String, port: u16, config: server::Config, tls: Tls, caps: CapsAsked, log: sgp::logs::Format, metrics_bind: Option<std::net::SocketAddr> },
    Pair(pair::Opts),
    Eve(eve::Opts),
    Bench(bench::Opts),
    Attack { files: Vec<String>, json: bool },
}

/// `--ca-file` (pair, eve, bench), checked in `main` before anything connects.
static CA_FILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The caps given on the command line; the rest come from the file-descriptor limit.
struct CapsAsked {
    max_connections: Option<usize>,
    per_address: Option<u32>,
    rooms_per_minute: Option<u32>,
    observers_per_address: Option<u32>,
}

impl CapsAsked {
    /// Raises this process's open-file limit to its hard limit, and returns the caps.
    fn resolve(&self) -> sgp::gate::Caps {
        let nofile = raise_nofile();
        let mut caps = sgp::gate::Caps::for_fd_limit(nofile);
        if let Some(n) = self.max_connections {
            if n > caps.max_connections {
                eprintln!(
                    "sgp: --max-connections {n} is more than the open-file limit allows ({nofile}, keeping {} for the rest): the limit will be met first",
                    (nofile as usize).saturating_sub(caps.max_connections)
                );
            }
            caps.max_connections = n;
        }
        caps.per_address = self.per_address.unwrap_or(caps.per_address);
        caps.rooms_per_minute = self.rooms_per_minute.unwrap_or(caps.rooms_per_minute);
        caps.observers_per_address = self.observers_per_address.unwrap_or(caps.observers_per_address);
        caps
    }
}

/// The open-file limit, first raised to the hard limit (as servers do; the soft default of
/// 1024 would make a small cap on connections).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write only the rlimit struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur as u64
}

/// How `sgp serve` is to do TLS, resolved in `run` before it listens.
enum Tls {
    None,
    Files { cert: String, key: String },
    SelfSigned,
}

/// The subcommand, with what clap cannot check checked (a one-line error, exit 2).
fn command(cli: Cli) -> Result<Cmd, String> {
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(a)) => serve(a),
        Some(Command::Pair(a)) => pair(a),
        Some(Command::Eve(a)) => eve(a),
        Some(Command::Bench(b)) => bench(b.what),
        Some(Command::Completions { shell }) => Ok(Cmd::Completions(shell)),
        Some(Command::Man) => Ok(Cmd::Man),
    }
}

fn ca_file(f: Option<String>) {
    if let Some(f) = f {
        let _ = CA_FILE.set(f);
    }
}

fn serve(a: cli::ServeArgs) -> Result<Cmd, String> {
    let tls = match (a.tls_cert, a.tls_key, a.tls_self_signed) {
        (Some(cert), Some(key), _) => Tls::Files { cert, key },
        (_, _, true) => Tls::SelfSigned,
        _ => Tls::None,
    };
    let mut config = server::Config::new(Origins::new(&a.allow_origin), a.legacy);
    config.ping_every = std::time::Duration::from_secs(a.ping_secs.into());
    config.silence = std::time::Duration::from_secs(a.silence_secs.into());
    config.trust_proxy = a.trust_proxy;
    config.metrics = a.metrics;
    config.drain = std::time::Duration::from_secs(a.drain_secs.into());
    let caps = CapsAsked {
        max_connections: a.max_connections.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        per_address: a.max_per_address,
        rooms_per_minute: a.rooms_per_minute,
        observers_per_address: a.observers_per_address,
    };
    let log = match a.log_format {
        cli::LogFormat::Text => sgp::logs::Format::Text,
        cli::LogFormat::Json => sgp::logs::Format::Json,
    };
    Ok(Cmd::Serve { bind: a.bind, port: a.port, config, tls, caps, log, metrics_bind: a.metrics_bind })
}

fn pair(a: cli::PairArgs) -> Result<Cmd, String> {
    let schedule = match a.schedule {
        None => sgp::schedule::Plan::Poisson,
        Some(name) => {
            let p = sgp::schedule::Plan::parse(&name)?;
            if p.leaks() && std::env::var(sgp::schedule::LEAKY_ENV).as_deref() != Ok("1") {
                return Err(format!(
                    "--schedule {name} gives the posters away to an eavesdropper: it exists only to test the audit (set {}=1 to use it)",
                    sgp::schedule::LEAKY_ENV
                ));
            }
            p
        }
    };
    ca_file(a.client.ca_file);
    Ok(Cmd::Pair(pair::Opts {
        server: a.client.server,
        room: a.room,
        tolerance_ms: a.tolerance_ms,
        target_bits: a.target_bits,
        json: a.json,
        retries: a.retries,
        record: a.record,
        duration_ms: a.duration_ms,
        schedule,
        hold_post: a.testing_hold_post,
        adapt: !a.no_adapt,
    }))
}

fn eve(a: cli::EveArgs) -> Result<Cmd, String> {
    if a.attack {
        return Ok(Cmd::Attack { files: a.records, json: a.json });
    }
    ca_file(a.client.ca_file);
    let room = a.room.ok_or("sgp eve needs --room CODE")?;
    Ok(Cmd::Eve(eve::Opts { server: a.client.server, room, json: a.json, follow: a.follow, record: a.record }))
}

/// `sgp bench`'s options, as the one set bench reads (what a benchmark does not take is None).
fn bench(what: BenchCmd) -> Result<Cmd, String> {
    let mut o = bench::Opts::new(bench_name(&what));
    let common = |c: cli::BenchCommon, o: &mut bench::Opts| {
        ca_file(c.ca_file);
        (o.server, o.tls, o.json) = (c.server, c.tls, c.json);
    };
    match what {
        BenchCmd::Key { common: c, pairs, tolerance_ms, target_bits, duration_ms } => {
            common(c, &mut o);
            (o.pairs, o.tolerance_ms, o.target_bits, o.duration_ms) = (pairs, tolerance_ms, target_bits, duration_ms);
        }
        BenchCmd::Sweep { common: c, tolerances, pairs, target_bits, duration_ms } => {
            common(c, &mut o);
            (o.tolerances, o.pairs, o.target_bits, o.duration_ms) = (tolerances, pairs, target_bits, duration_ms);
        }
        BenchCmd::Jitter { common: c, rooms, seconds, rate_hz, tolerance_ms, pid } => {
            common(c, &mut o);
            (o.rooms, o.seconds, o.rate_hz, o.tolerance_ms, o.pids) = (rooms, seconds, rate_hz, tolerance_ms, pid);
        }
        BenchCmd::Load { common: c, rooms, seconds, rate_hz, pid } => {
            common(c, &mut o);
            (o.rooms, o.seconds, o.rate_hz, o.pids) = (rooms, seconds, rate_hz, pid);
        }
        BenchCmd::Idle { common: c, connections } => {
            common(c, &mut o);
            o.connections = connections;
        }
        BenchCmd::Legacy { common: c, pairs, time_scale, flood, seconds, rate_hz } => {
            common(c, &mut o);
            (o.pairs, o.time_scale, o.flood, o.seconds, o.rate_hz) = (pairs, time_scale, flood, seconds, rate_hz);
        }
        BenchCmd::Net { json, pairs, profiles, seconds } => {
            if let Some(bad) = profiles.iter().flatten().find(|n| !bench::PROFILE_NAMES.split(", ").any(|k| k == n.as_str())) {
                return Err(format!("--profiles: unknown profile {bad:?} (one of {})", bench::PROFILE_NAMES));
            }
            (o.json, o.pairs, o.profiles, o.seconds) = (json, pairs, profiles, seconds);
        }
        BenchCmd::Relay { listen, target, delay_ms, jitter_ms, loss, reorder } => {
            let spec = bench::relay::Spec { delay_ms, jitter_ms, loss, reorder };
            spec.check()?;
            o.relay = Some(bench::RelayOpts { listen, target, spec });
        }
    }
    Ok(Cmd::Bench(o))
}

fn bench_name(what: &BenchCmd) -> &'static str {
    match what {
        BenchCmd::Key { .. } => "key",
        BenchCmd::Sweep { .. } => "sweep",
        BenchCmd::Jitter { .. } => "jitter",
        BenchCmd::Load { .. } => "load",
        BenchCmd::Idle { .. } => "idle",
        BenchCmd::Legacy { .. } => "legacy",
        BenchCmd::Net { .. } => "net",
        BenchCmd::Relay { .. } => bench::HIDDEN,
    }
}

/// This machine's address on its main network (the source address of a route to a
/// documentation address: a UDP `connect` sends nothing), for `--bind 0.0.0.0`.
fn lan_address(v6: bool) -> Option<String> {
    let (local, probe) = if v6 { ("[::]:0", "[2001:db8::1]:9") } else { ("0.0.0.0:0", "192.0.2.1:9") };
    let s = std::net::UdpSocket::bind(local).ok()?;
    s.connect(probe).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then(|| if v6 { format!("[{ip}]") } else { ip.to_string() })
}

/// The server's TLS configuration, before it listens (a bad file is an error here).
fn tls_config(tls: &Tls, bind: &str) -> Result<(Option<std::sync::Arc<rustls::ServerConfig>>, Option<sgp::tls::SelfSigned>), String> {
    match tls {
        Tls::None => Ok((None, None)),
        Tls::Files { cert, key } => Ok((Some(sgp::tls::load(cert, key)?), None)),
        Tls::SelfSigned => {
            let made = sgp::tls::self_signed(&self_signed_names(bind))?;
            Ok((Some(made.config.clone()), Some(made)))
        }
    }
}

/// The names a self-signed certificate is for: localhost, the loopback addresses, this
/// machine's host name and its LAN addresses, and the address it binds to.
fn self_signed_names(bind: &str) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Some(h) = hostname() {
        names.push(h);
    }
    for v6 in [false, true] {
        names.extend(lan_address(v6).map(|a| a.trim_matches(['[', ']']).to_string()));
    }
    if bind.parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_unspecified()) {
        names.push(bind.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = std::ffi::CStr::from_bytes_until_nul(&buf).ok()?.to_str().ok()?;
    (r == 0 && !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')).then(|| name.to_string())
}

/// The start event: the version and the settings that matter.
fn log_start(bind: &str, port: u16, config: &server::Config, tls: &Tls, metrics_bind: Option<std::net::SocketAddr>) {
    let tls = match tls {
        Tls::None => "off",
        Tls::Files { .. } => "files",
        Tls::SelfSigned => "self-signed",
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        bind,
        port,
        tls,
        legacy = config.legacy,
        trust_proxy = config.trust_proxy,
        any_origin = config.origins.any,
        allowed_origins = config.origins.allowed.len(),
        ping_secs = config.ping_every.as_secs(),
        silence_secs = config.silence.as_secs(),
        metrics = config.metrics,
        metrics_bind = %metrics_bind.map_or("off".to_string(), |a| a.to_string()),
        "sgp serve starting"
    );
}

/// The `--metrics-bind` listener, bound before the server says it listens.
async fn bind_metrics(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr} (--metrics-bind): {e}"))
}

/// How to accept the certificate `--tls-self-signed` made.
fn print_self_signed(made: &sgp::tls::SelfSigned, port: u16) {
    eprintln!("sgp: --tls-self-signed: a certificate for this run only, from a CA made for it (its key is gone)");
    eprintln!("sgp:   a browser warns once: check that the certificate it shows has SHA-256 fingerprint");
    eprintln!("sgp:     {}", made.leaf_sha256);
    eprintln!("sgp:   sgp pair: save the CA below as sgp-ca.pem, then sgp pair --server https://HOST:{port} --ca-file sgp-ca.pem");
    eprintln!("sgp:     (the CA's SHA-256 fingerprint: {})", made.ca_sha256);
    print!("{}", made.ca_pem);
}

/// `sgp serve`: logs, TLS and the listeners set up (exit 2 or 1 on a failure before
/// listening), the listening lines, then the server until a stop (and its drain).
async fn run_server(bind: String, port: u16, mut config: server::Config, tls: Tls, caps: CapsAsked, log: sgp::logs::Format, metrics_bind: Option<std::net::SocketAddr>) -> ExitCode {
    match sgp::logs::filter(std::env::var("RUST_LOG").ok().as_deref()) {
        Ok(filter) => sgp::logs::init(log, filter),
        Err(e) => {
            eprintln!("sgp: {e}");
            return ExitCode::from(2);
        }
    }
    config.caps = caps.resolve();
    let self_signed = match tls_config(&tls, &bind) {
        Ok((cfg, made)) => {
            config.tls = cfg;
            made
        }
        Err(e) => {
            eprintln!("sgp: {e}");
            return ExitCode::from(2);
        }
    };
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let trust_proxy = config.trust_proxy;
    let listener = match tokio::net::TcpListener::bind((bind.as_str(), port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sgp: cannot listen on {bind}:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sgp: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = match metrics_bind.map(bind_metrics) {
        None => None,
        Some(fut) => match fut.await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("sgp: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    log_start(&bind, port, &config, &tls, metrics_bind);
    announce(addr, scheme, trust_proxy, metrics.as_ref().and_then(|l| l.local_addr().ok()));
    if let Some(made) = self_signed {
        print_self_signed(&made, addr.port());
    }
    server::run(listener, metrics, config, server::signal()).await;
    ExitCode::SUCCESS
}

/// The listening lines on stdout (tests and scripts read the first), and on stderr what a
/// person serving a LAN or sitting behind a proxy should know.
fn announce(addr: std::net::SocketAddr, scheme: &str, trust_proxy: bool, metrics: Option<std::net::SocketAddr>) {
    let host = if addr.is_ipv6() { format!("[{}]", addr.ip()) } else { addr.ip().to_string() };
    println!("sgp listening on {scheme}://{host}:{}/", addr.port());
    tracing::info!(url = %format!("{scheme}://{host}:{}/", addr.port()), "listening");
    if let Some(m) = metrics {
        println!("sgp metrics on http://{m}/metrics");
        tracing::info!(url = %format!("http://{m}/metrics"), "metrics listening");
    }
    if addr.ip().is_unspecified() {
        if let Some(ip) = lan_address(addr.is_ipv6()) {
            eprintln!("sgp: other machines on your network can open {scheme}://{ip}:{}/", addr.port());
            if scheme == "http" {
                eprintln!("sgp: (over plain http at a LAN address the page is not a secure context and makes keys more slowly; --tls-self-signed serves https: docs/deploy.md)");
            }
        }
    }
    if trust_proxy && !addr.ip().is_loopback() {
        eprintln!("sgp: --trust-proxy while listening on {host}: whoever reaches this port directly, not through the proxy, can set X-Forwarded-Host; let only the proxy reach it (--bind 127.0.0.1 beside the proxy, or a firewall)");
    }
}

fn run(cmd: Cmd) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sgp: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match cmd {
        Cmd::Completions(shell) => {
            clap_complete::generate(shell, &mut Cli::command(), "sgp", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Cmd::Man => match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sgp man: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Serve { bind, port, config, tls, caps, log, metrics_bind } => local.block_on(&rt, run_server(bind, port, config, tls, caps, log, metrics_bind)),
        Cmd::Pair(opts) => local.block_on(&rt, async move {
            match pair::run(&opts).await {
                Ok(report) => {
                    if opts.json {
                        println!("{}", serde_json::json!({ "key": report }));
                    } else {
                        pair::print_human(&report);
                    }
                    ExitCode::SUCCESS
                }
                Err(f) => {
                    if opts.json {
                        println!("{}", serde_json::json!({"error": {"code": f.code, "message": f.message}}));
                    }
                    eprintln!("sgp pair: {}", f.message);
                    ExitCode::from(f.code as u8)
                }
            }
        }),
        Cmd::Bench(opts) => local.block_on(&rt, async move {
            match bench::run(&opts).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sgp bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
        Cmd::Attack { files, json } => match eve::attack(&files, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => {
                eprintln!("sgp eve: {}", f.message);
                ExitCode::from(f.code as u8)
            }
        },
        Cmd::Eve(opts) => local.block_on(&rt, async move {
            match eve::run(&opts).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(f) => {
                    eprintln!("sgp eve: {}", f.message);
                    ExitCode::from(f.code as u8)
                }
            }
        }),
    }
}

//! The `sgp` command: parses arguments, builds the single-threaded runtime and a
//! `LocalSet`, and runs one subcommand (serve, pair, eve).

use lexopt::prelude::*;
use sgp::{bench, eve, http::Origins, pair, server};
use std::process::ExitCode;

const USAGE: &str = "\
sgp — shared secret generation over an anonymous broadcast channel

usage:
  sgp [serve] [--bind ADDR] [--port N] [--allow-origin ORIGIN]... [--legacy]
  sgp pair [--server URL] [--room CODE] [--tolerance-ms T] [--target-bits N] [--duration-ms MS] [--retries N] [--json] [--record FILE]
  sgp eve --room CODE [--server URL] [--json] [--follow] [--record FILE]
  sgp eve --attack RECORD... [--json]
  sgp bench key|sweep|jitter|load|idle|legacy [options] [--server URL] [--json]
  sgp help | --version

serve   serve the web client on / and the protocol on /ws
        --bind ADDR           address to listen on (default 127.0.0.1; 0.0.0.0 for a LAN)
        --port N              port (default 8080; 0 = any free port)
        --allow-origin ORIGIN let pages from ORIGIN open /ws (repeatable; * = any)
        --legacy              also speak the original student client's dialect on /ws
                              (insecure by design: its table shows who posted what)
        --ping-secs N         ping each WebSocket every N seconds (default 20)
        --silence-secs N      close a WebSocket silent for N seconds, checked at each
                              ping (default 60)
pair    make a key from this terminal: without --room, create a room and print its code
        --server URL          default http://127.0.0.1:8080
        --room CODE           join this room instead of creating one
        --tolerance-ms T      recognition tolerance in ms (creator only; default: measured
                              from the round trips to the server, 0.1 to 5)
        --target-bits N       key strength to reach (creator only; default 256)
        --duration-ms MS      each round's posting window (creator only; default: enough
                              for a third of the target)
        --retries N           failed rounds or sessions before giving up (default 100)
        --json                one JSON object per line on stdout
        --record FILE         save what this poster knows (own posts, clock sync, boards,
                              messages heard) as JSON when it ends: KEY MATERIAL, mode 0600
eve     watch a room as the eavesdropper: boards, the public sift, confirmation tags
        --follow              keep watching after a key is confirmed (until Ctrl-C)
        --record FILE         save every message heard, with server-synced times, as JSON
        --attack RECORD...    instead, audit recorded rounds (files of sgp pair --record,
                              both posters of each room, and of sgp eve --record): can the
                              public part tell the posters apart? (SECURITY.md)
bench   measure, against a server it starts itself unless --server is given
        (loads go to 127.0.0.1 only; --json prints one JSON object):
        key    [--pairs N] [--tolerance-ms T] [--target-bits N] [--duration-ms MS]
               N (default 20) pairs of sgp pair in turn: time to a confirmed key, dropped
               rounds by cause, kept entries against 1/(4τe), the guard's cost and use
        sweep  [--tolerances T,T,…] [--pairs N] [--target-bits N] [--duration-ms MS]
               key at each tolerance (default 0.05 … 5 ms, 5 pairs each)
        jitter [--rooms M] [--seconds S] [--rate-hz R] [--tolerance-ms T]
               server_t − predicted_t of a prober's posts (raw, and less its bias), at
               rest and while M rooms (default 100) post at R Hz per poster (default: the
               default room's rate)
        load   [--rooms M] [--seconds S] [--rate-hz R]
               rooms × 2 posters at 90 % of their rate limit, stepping up to M rooms
               (default 200): accepted posts/s, server CPU per post, jitter; the knee
        idle   [--connections N]
               N (default 1000) idle WebSockets: server memory per connection
        legacy [--pairs N] [--time-scale F] | --flood [--seconds S] [--rate-hz R]
               the original client's flow (2 clients × 16 posts after 100 ms + U(0, 4 s)
               each, gaps × F, N runs), or a flood; against sgp serve --legacy, or any
               server speaking it (--server URL)

exit codes (pair, eve): 0 key confirmed, 2 usage, 3 peer left, 4 no such room / room full /
bad parameters, 5 server unreachable or gone, 6 retries exhausted, 1 anything else
";

fn main() -> ExitCode {
    match parse() {
        Ok(cmd) => run(cmd),
        Err(e) => {
            eprintln!("sgp: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

enum Cmd {
    Help,
    Version,
    Serve { bind: String, port: u16, config: server::Config },
    Pair(pair::Opts),
    Eve(eve::Opts),
    Bench(bench::Opts),
    Attack { files: Vec<String>, json: bool },
}

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

fn parse() -> Result<Cmd, lexopt::Error> {
    let mut p = lexopt::Parser::from_env();
    let mut sub: Option<String> = None;
    let (mut bind, mut port, mut origins, mut legacy) = ("127.0.0.1".to_string(), 8080u16, Vec::new(), false);
    let mut server = DEFAULT_SERVER.to_string();
    let (mut room, mut tol, mut target, mut retries) = (None, None, None, 100u32);
    let (mut json, mut follow, mut record, mut attack) = (false, false, None, None::<Vec<String>>);
    let (mut duration_ms, mut plan) = (None, None::<String>);
    let mut hold_post = false;
    let (mut what, mut pairs, mut connections, mut server_set) = (None, None, None, false);
    let (mut rooms, mut seconds, mut tolerances, mut rate_hz, mut flood) = (None, None, None, None, false);
    let mut time_scale = None;
    let (mut ping_secs, mut silence_secs) = (20u32, 60u32);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Cmd::Help),
            Short('V') | Long("version") => return Ok(Cmd::Version),
            Value(v) if sub.is_none() => sub = Some(v.string()?),
            Value(v) if sub.as_deref() == Some("bench") && what.is_none() => what = Some(v.string()?),
            Value(v) if attack.is_some() => attack.get_or_insert_with(Vec::new).push(v.string()?),
            Long("attack") => attack = Some(attack.unwrap_or_default()),
            Long("pairs") => pairs = Some(p.value()?.parse()?),
            Long("connections") => connections = Some(p.value()?.parse()?),
            Long("rooms") => rooms = Some(p.value()?.parse()?),
            Long("seconds") => seconds = Some(p.value()?.parse::<f64>()?),
            Long("rate-hz") => rate_hz = Some(p.value()?.parse::<f64>()?),
            Long("flood") => flood = true,
            Long("time-scale") => time_scale = Some(p.value()?.parse::<f64>()?),
            Long("tolerances") => {
                let v = p.value()?.string()?;
                let list: Result<Vec<f64>, _> = v.split(',').map(|t| t.trim().parse::<f64>()).collect();
                tolerances = Some(list.map_err(|e| format!("--tolerances {v:?}: {e}"))?);
            }
            Long("bind") => bind = p.value()?.string()?,
            Long("port") => port = p.value()?.parse()?,
            Long("allow-origin") => origins.push(p.value()?.string()?),
            Long("legacy") => legacy = true,
            Long("ping-secs") => ping_secs = p.value()?.parse()?,
            Long("silence-secs") => silence_secs = p.value()?.parse()?,
            Long("server") => {
                server = p.value()?.string()?;
                server_set = true;
            }
            Long("room") => room = Some(p.value()?.string()?),
            Long("tolerance-ms") => tol = Some(p.value()?.parse::<f64>()?),
            Long("target-bits") => target = Some(p.value()?.parse::<u32>()?),
            Long("retries") => retries = p.value()?.parse()?,
            Long("json") => json = true,
            Long("follow") => follow = true,
            Long("record") => record = Some(p.value()?.string()?),
            Long("duration-ms") => duration_ms = Some(p.value()?.parse::<u32>()?),
            // Not in the usage on purpose: the other schedules leak (testing the audit only).
            Long("schedule") => plan = Some(p.value()?.string()?),
            // Not in the usage either: holds one post in 16 back, for the tests of `drop`.
            Long("testing-hold-post") => hold_post = true,
            _ => return Err(arg.unexpected()),
        }
    }
    let sub = sub.unwrap_or_else(|| "serve".into());
    let not_for = |flag: &str, what: &str| -> lexopt::Error { format!("{flag} does not go with `sgp {what}`").into() };
    match sub.as_str() {
        "serve" => {
            if room.is_some() || json {
                return Err(not_for("--room/--json", "serve"));
            }
            if !(1..=3600).contains(&ping_secs) || !(1..=86_400).contains(&silence_secs) {
                return Err("--ping-secs takes 1 to 3600 seconds, --silence-secs 1 to 86400".into());
            }
            let mut config = server::Config::new(Origins::new(&origins), legacy);
            config.ping_every = std::time::Duration::from_secs(ping_secs.into());
            config.silence = std::time::Duration::from_secs(silence_secs.into());
            Ok(Cmd::Serve { bind, port, config })
        }
        "pair" => {
            let schedule = match plan {
                None => sgp::schedule::Plan::Poisson,
                Some(name) => {
                    let p = sgp::schedule::Plan::parse(&name)?;
                    if p.leaks() && std::env::var(sgp::schedule::LEAKY_ENV).as_deref() != Ok("1") {
                        return Err(format!(
                            "--schedule {name} gives the posters away to an eavesdropper: it exists only to test the audit (set {}=1 to use it)",
                            sgp::schedule::LEAKY_ENV
                        )
                        .into());
                    }
                    p
                }
            };
            Ok(Cmd::Pair(pair::Opts { server, room, tolerance_ms: tol, target_bits: target, json, retries, record, duration_ms, schedule, hold_post }))
        }
        "eve" if attack.is_some() => {
            let files = attack.unwrap_or_default();
            if files.is_empty() {
                return Err("sgp eve --attack needs the RECORD files to audit".into());
            }
            Ok(Cmd::Attack { files, json })
        }
        "eve" => {
            let room = room.ok_or_else(|| lexopt::Error::from("sgp eve needs --room CODE"))?;
            Ok(Cmd::Eve(eve::Opts { server, room, json, follow, record }))
        }
        "bench" => {
            let what = what.ok_or_else(|| lexopt::Error::from(format!("sgp bench needs what to measure: {}", bench::WHAT)))?;
            if !bench::WHAT.split(", ").any(|w| w == what) {
                return Err(format!("unknown benchmark {what:?} (one of {})", bench::WHAT).into());
            }
            let server = server_set.then_some(server);
            Ok(Cmd::Bench(bench::Opts {
                what,
                server,
                pairs,
                connections,
                tolerance_ms: tol,
                tolerances,
                target_bits: target,
                rooms,
                seconds,
                rate_hz,
                duration_ms,
                flood,
                time_scale,
                json,
            }))
        }
        "help" => Ok(Cmd::Help),
        other => Err(format!("unknown command {other:?}").into()),
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
        Cmd::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Cmd::Version => {
            println!("sgp {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cmd::Serve { bind, port, config } => local.block_on(&rt, async move {
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
            let host = if addr.is_ipv6() { format!("[{}]", addr.ip()) } else { addr.ip().to_string() };
            println!("sgp listening on http://{host}:{}/", addr.port());
            if addr.ip().is_unspecified() {
                if let Some(ip) = lan_address(addr.is_ipv6()) {
                    eprintln!("sgp: other machines on your network can open http://{ip}:{}/", addr.port());
                }
            }
            server::run(listener, config, server::signal()).await;
            ExitCode::SUCCESS
        }),
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

//! The `sgp` command: parses arguments, builds the single-threaded runtime and a
//! `LocalSet`, and runs one subcommand (serve, pair, eve).

use lexopt::prelude::*;
use sgp::{bench, eve, http::Origins, pair, server};
use std::process::ExitCode;

const USAGE: &str = "\
sgp — shared secret generation over an anonymous broadcast channel

usage:
  sgp [serve] [--bind ADDR] [--port N] [--allow-origin ORIGIN]... [--legacy]
              [--tls-cert FILE --tls-key FILE | --tls-self-signed] [--trust-proxy]
              [--log-format text|json] [--metrics] [--metrics-bind ADDR:PORT]
  sgp pair [--server URL] [--room CODE] [--tolerance-ms T] [--target-bits N] [--duration-ms MS] [--retries N] [--no-adapt] [--json] [--record FILE]
  sgp eve --room CODE [--server URL] [--json] [--follow] [--record FILE]
  sgp eve --attack RECORD... [--json]
  sgp bench key|sweep|jitter|load|idle|legacy|net [options] [--server URL] [--json]
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
        --tls-cert FILE       serve https and wss with this certificate chain (PEM,
        --tls-key FILE        leaf first) and its private key (PEM); plain http without
        --tls-self-signed     https with a CA and certificate made at start for this
                              machine's names and addresses (one run only): prints the
                              fingerprints and the CA for `sgp pair --ca-file` (docs/deploy.md)
        --trust-proxy         behind a reverse proxy: take the page's host from Forwarded /
                              X-Forwarded-Host, and the client's address from Forwarded /
                              X-Forwarded-For (the last values), for the Origin check and
                              the caps below; off, those headers are ignored
        --max-connections N   WebSockets open at once (default: the open-file limit, raised
                              to its hard limit, less a reserve for /healthz and pages)
        --max-per-address N   WebSockets open at once from one address (IPv6: one /64;
                              default 64); over a cap, the upgrade gets 429
        --rooms-per-minute N  rooms one address may create a minute (default 30)
        --log-format F        log lines on stderr as text (default) or json; which ones:
                              RUST_LOG (default info; e.g. debug, sgp=trace). Logs never
                              name a room's code, a connection's posts, tags, bits or keys
        --metrics             serve GET /metrics (Prometheus text format) on this listener
        --metrics-bind A:P    serve /metrics and /healthz on a separate plain-http listener
                              at IP:PORT instead (e.g. 127.0.0.1:9100; port 0 = any)
pair    make a key from this terminal: without --room, create a room and print its code
        --server URL          default http://127.0.0.1:8080; https:// for TLS, with a path
                              if the server lives under one (https://example.org/sgp/)
        --ca-file FILE        trust the CA certificates in FILE (PEM) for https, instead of
                              the system's (also for eve and bench)
        --room CODE           join this room instead of creating one
        --tolerance-ms T      recognition tolerance in ms (creator only; default: measured
                              from the round trips to the server, 0.1 to 5)
        --target-bits N       key strength to reach (creator only; default 256)
        --duration-ms MS      each round's posting window (creator only; default: enough
                              for a third of the target)
        --retries N           failed rounds or sessions before giving up (default 100);
                              a dropped round counts only once this poster asks the
                              widest τ and lowest rate its path allows
        --no-adapt            ask nothing: every round at the room's τ and rate (by
                              default each poster asks for what its path and its last
                              rounds need; docs/protocol.md §6)
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
        (loads go to 127.0.0.1 only; --json prints one JSON object; --tls: the server
        it starts serves https and wss, --tls-self-signed, for what TLS costs):
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
        net    [--pairs N] [--profiles P,P,…] [--seconds S]
               key's pairs (default 10 per profile, each killed after 180 s; none past
               S s of a profile) through field profiles: loopback; lan (0.2 ± 0.05 ms
               each way); wifi (3 ± 2 ms, 0.5 % loss, 0.1 % reordering); wan-near-far
               (alice direct, bob 20 ± 5 ms); wan-far (both 20 ± 5 ms); busy (loopback,
               two busy loops). As root: network namespaces and veth links (10.78.x.x,
               deleted after), delays by tc netem or else a delay relay; otherwise the
               relay on 127.0.0.1. Success rate, time to a key, τ and rate per round,
               kept entries against 1/(4τe), dropped rounds by cause, exit codes

exit codes (pair, eve): 0 key confirmed, 2 usage, 3 peer left, 4 no such room / room full /
bad parameters, 5 server unreachable or gone, 6 retries exhausted, 1 anything else
";

fn main() -> ExitCode {
    match parse() {
        Ok(cmd) => {
            if let Some(Err(e)) = CA_FILE.get().map(|f| sgp::tls::set_ca_file(f)) {
                eprintln!("sgp: {e}");
                return ExitCode::from(2);
            }
            run(cmd)
        }
        Err(e) => {
            eprintln!("sgp: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

enum Cmd {
    Help,
    Version,
    Serve { bind: String, port: u16, config: server::Config, tls: Tls, caps: CapsAsked, log: sgp::logs::Format, metrics_bind: Option<std::net::SocketAddr> },
    Pair(pair::Opts),
    Eve(eve::Opts),
    Bench(bench::Opts),
    Attack { files: Vec<String>, json: bool },
}

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// `--ca-file` (pair, eve, bench), checked in `main` before anything connects.
static CA_FILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The caps given on the command line; the rest come from the file-descriptor limit.
struct CapsAsked {
    max_connections: Option<usize>,
    per_address: Option<u32>,
    rooms_per_minute: Option<u32>,
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

fn parse() -> Result<Cmd, lexopt::Error> {
    let mut p = lexopt::Parser::from_env();
    let mut args = Args::default();
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Cmd::Help),
            Short('V') | Long("version") => return Ok(Cmd::Version),
            Value(v) => args.value(v)?,
            Long(name) => {
                let name = name.to_string();
                let known = args.serve_option(&name, &mut p)? || args.client_option(&name, &mut p)? || args.bench_option(&name, &mut p)?;
                if !known {
                    return Err(Long(&name).unexpected());
                }
            }
            _ => return Err(arg.unexpected()),
        }
    }
    args.command()
}

/// Everything on the command line, whatever subcommand it is for: the subcommand may come
/// after its options (and an option another subcommand takes is ignored, not refused), so
/// they are gathered first and checked against the subcommand once all are read.
struct Args {
    sub: Option<String>,
    // serve
    bind: String,
    port: u16,
    origins: Vec<String>,
    legacy: bool,
    ping_secs: u32,
    silence_secs: u32,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_self_signed: bool,
    trust_proxy: bool,
    max_connections: Option<usize>,
    max_per_address: Option<u32>,
    rooms_per_minute: Option<u32>,
    log_format: Option<String>,
    metrics: bool,
    metrics_bind: Option<String>,
    // pair, eve (and bench, which runs pairs)
    server: String,
    server_set: bool,
    room: Option<String>,
    tol: Option<f64>,
    target: Option<u32>,
    retries: u32,
    duration_ms: Option<u32>,
    json: bool,
    follow: bool,
    record: Option<String>,
    attack: Option<Vec<String>>,
    plan: Option<String>,
    hold_post: bool,
    no_adapt: bool,
    // bench
    what: Option<String>,
    pairs: Option<usize>,
    connections: Option<usize>,
    rooms: Option<usize>,
    seconds: Option<f64>,
    tolerances: Option<Vec<f64>>,
    rate_hz: Option<f64>,
    flood: bool,
    tls: bool,
    time_scale: Option<f64>,
    profiles: Option<Vec<String>>,
    // bench relay (hidden)
    listen: Option<String>,
    relay_target: Option<String>,
    delay_ms: Option<f64>,
    jitter_ms: Option<f64>,
    loss: Option<f64>,
    reorder: Option<f64>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            sub: None,
            bind: "127.0.0.1".to_string(),
            port: 8080,
            origins: Vec::new(),
            legacy: false,
            ping_secs: 20,
            silence_secs: 60,
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            trust_proxy: false,
            max_connections: None,
            max_per_address: None,
            rooms_per_minute: None,
            log_format: None,
            metrics: false,
            metrics_bind: None,
            server: DEFAULT_SERVER.to_string(),
            server_set: false,
            room: None,
            tol: None,
            target: None,
            retries: 100,
            duration_ms: None,
            json: false,
            follow: false,
            record: None,
            attack: None,
            plan: None,
            hold_post: false,
            no_adapt: false,
            what: None,
            pairs: None,
            connections: None,
            rooms: None,
            seconds: None,
            tolerances: None,
            rate_hz: None,
            flood: false,
            tls: false,
            time_scale: None,
            profiles: None,
            listen: None,
            relay_target: None,
            delay_ms: None,
            jitter_ms: None,
            loss: None,
            reorder: None,
        }
    }
}

impl Args {
    /// A word that is not an option: the subcommand, then bench's measurement, or a file
    /// to audit after `--attack`.
    fn value(&mut self, v: std::ffi::OsString) -> Result<(), lexopt::Error> {
        if self.sub.is_none() {
            self.sub = Some(v.string()?);
        } else if self.sub.as_deref() == Some("bench") && self.what.is_none() {
            self.what = Some(v.string()?);
        } else if let Some(files) = &mut self.attack {
            files.push(v.string()?);
        } else {
            return Err(Value(v).unexpected());
        }
        Ok(())
    }

    /// `sgp serve`'s options; false if `name` is not one of them.
    fn serve_option(&mut self, name: &str, p: &mut lexopt::Parser) -> Result<bool, lexopt::Error> {
        match name {
            "bind" => self.bind = p.value()?.string()?,
            "port" => self.port = p.value()?.parse()?,
            "allow-origin" => self.origins.push(p.value()?.string()?),
            "legacy" => self.legacy = true,
            "ping-secs" => self.ping_secs = p.value()?.parse()?,
            "silence-secs" => self.silence_secs = p.value()?.parse()?,
            "tls-cert" => self.tls_cert = Some(p.value()?.string()?),
            "tls-key" => self.tls_key = Some(p.value()?.string()?),
            "tls-self-signed" => self.tls_self_signed = true,
            "trust-proxy" => self.trust_proxy = true,
            "max-connections" => self.max_connections = Some(p.value()?.parse()?),
            "max-per-address" => self.max_per_address = Some(p.value()?.parse()?),
            "rooms-per-minute" => self.rooms_per_minute = Some(p.value()?.parse()?),
            "log-format" => self.log_format = Some(p.value()?.string()?),
            "metrics" => self.metrics = true,
            "metrics-bind" => self.metrics_bind = Some(p.value()?.string()?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The options of the clients (`sgp pair`, `sgp eve`, and `sgp bench` for the rooms it
    /// makes); false if `name` is not one of them.
    fn client_option(&mut self, name: &str, p: &mut lexopt::Parser) -> Result<bool, lexopt::Error> {
        match name {
            "server" => {
                self.server = p.value()?.string()?;
                self.server_set = true;
            }
            "room" => self.room = Some(p.value()?.string()?),
            "ca-file" => {
                let _ = CA_FILE.set(p.value()?.string()?);
            }
            "tolerance-ms" => self.tol = Some(p.value()?.parse::<f64>()?),
            "target-bits" => self.target = Some(p.value()?.parse::<u32>()?),
            "retries" => self.retries = p.value()?.parse()?,
            "json" => self.json = true,
            "follow" => self.follow = true,
            "record" => self.record = Some(p.value()?.string()?),
            "attack" => self.attack = Some(self.attack.take().unwrap_or_default()),
            "duration-ms" => self.duration_ms = Some(p.value()?.parse::<u32>()?),
            // Not in the usage on purpose: the other schedules leak (testing the audit only).
            "schedule" => self.plan = Some(p.value()?.string()?),
            // Not in the usage either: holds one post in 16 back, for the tests of `drop`.
            "testing-hold-post" => self.hold_post = true,
            "no-adapt" => self.no_adapt = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `sgp bench`'s own options; false if `name` is not one of them.
    fn bench_option(&mut self, name: &str, p: &mut lexopt::Parser) -> Result<bool, lexopt::Error> {
        match name {
            "pairs" => self.pairs = Some(p.value()?.parse()?),
            "connections" => self.connections = Some(p.value()?.parse()?),
            "rooms" => self.rooms = Some(p.value()?.parse()?),
            "seconds" => self.seconds = Some(p.value()?.parse::<f64>()?),
            "rate-hz" => self.rate_hz = Some(p.value()?.parse::<f64>()?),
            "flood" => self.flood = true,
            "tls" => self.tls = true,
            "time-scale" => self.time_scale = Some(p.value()?.parse::<f64>()?),
            "profiles" => self.profiles = Some(p.value()?.string()?.split(',').map(|n| n.trim().to_string()).collect()),
            // `bench relay`, not in the usage.
            "listen" => self.listen = Some(p.value()?.string()?),
            "target" => self.relay_target = Some(p.value()?.string()?),
            "delay-ms" => self.delay_ms = Some(p.value()?.parse::<f64>()?),
            "jitter-ms" => self.jitter_ms = Some(p.value()?.parse::<f64>()?),
            "loss" => self.loss = Some(p.value()?.parse::<f64>()?),
            "reorder" => self.reorder = Some(p.value()?.parse::<f64>()?),
            "tolerances" => {
                let v = p.value()?.string()?;
                let list: Result<Vec<f64>, _> = v.split(',').map(|t| t.trim().parse::<f64>()).collect();
                self.tolerances = Some(list.map_err(|e| format!("--tolerances {v:?}: {e}"))?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The subcommand (`serve` if none was given) with its options checked.
    fn command(mut self) -> Result<Cmd, lexopt::Error> {
        let sub = self.sub.take().unwrap_or_else(|| "serve".into());
        match sub.as_str() {
            "serve" => self.serve(),
            "pair" => self.pair(),
            "eve" if self.attack.is_some() => self.eve_attack(),
            "eve" => self.eve(),
            "bench" => self.bench(),
            "help" => Ok(Cmd::Help),
            other => Err(format!("unknown command {other:?}").into()),
        }
    }

    fn serve(self) -> Result<Cmd, lexopt::Error> {
        if self.room.is_some() || self.json {
            return Err("--room/--json does not go with `sgp serve`".into());
        }
        if !(1..=3600).contains(&self.ping_secs) || !(1..=86_400).contains(&self.silence_secs) {
            return Err("--ping-secs takes 1 to 3600 seconds, --silence-secs 1 to 86400".into());
        }
        let tls = match (self.tls_cert, self.tls_key, self.tls_self_signed) {
            (None, None, false) => Tls::None,
            (None, None, true) => Tls::SelfSigned,
            (Some(cert), Some(key), false) => Tls::Files { cert, key },
            (_, _, true) => return Err("--tls-self-signed makes its own certificate: no --tls-cert/--tls-key with it".into()),
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let mut config = server::Config::new(Origins::new(&self.origins), self.legacy);
        config.ping_every = std::time::Duration::from_secs(self.ping_secs.into());
        config.silence = std::time::Duration::from_secs(self.silence_secs.into());
        config.trust_proxy = self.trust_proxy;
        if self.max_connections == Some(0) || !(1..=1_000_000).contains(&self.max_per_address.unwrap_or(1)) {
            return Err("--max-connections takes 1 or more, --max-per-address 1 to 1000000".into());
        }
        if !(1..=100_000).contains(&self.rooms_per_minute.unwrap_or(1)) {
            return Err("--rooms-per-minute takes 1 to 100000".into());
        }
        let caps = CapsAsked { max_connections: self.max_connections, per_address: self.max_per_address, rooms_per_minute: self.rooms_per_minute };
        config.metrics = self.metrics;
        let log = sgp::logs::Format::parse(self.log_format.as_deref().unwrap_or("text"))?;
        let metrics_bind = match self.metrics_bind {
            None => None,
            Some(v) => Some(v.parse().map_err(|e| format!("--metrics-bind {v:?}: {e} (expected IP:PORT, e.g. 127.0.0.1:9100)"))?),
        };
        Ok(Cmd::Serve { bind: self.bind, port: self.port, config, tls, caps, log, metrics_bind })
    }

    fn pair(self) -> Result<Cmd, lexopt::Error> {
        let schedule = match self.plan {
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
        Ok(Cmd::Pair(pair::Opts {
            server: self.server,
            room: self.room,
            tolerance_ms: self.tol,
            target_bits: self.target,
            json: self.json,
            retries: self.retries,
            record: self.record,
            duration_ms: self.duration_ms,
            schedule,
            hold_post: self.hold_post,
            adapt: !self.no_adapt,
        }))
    }

    fn eve_attack(self) -> Result<Cmd, lexopt::Error> {
        let files = self.attack.unwrap_or_default();
        if files.is_empty() {
            return Err("sgp eve --attack needs the RECORD files to audit".into());
        }
        Ok(Cmd::Attack { files, json: self.json })
    }

    fn eve(self) -> Result<Cmd, lexopt::Error> {
        let room = self.room.ok_or_else(|| lexopt::Error::from("sgp eve needs --room CODE"))?;
        Ok(Cmd::Eve(eve::Opts { server: self.server, room, json: self.json, follow: self.follow, record: self.record }))
    }

    fn bench(self) -> Result<Cmd, lexopt::Error> {
        let what = self.what.clone().ok_or_else(|| lexopt::Error::from(format!("sgp bench needs what to measure: {}", bench::WHAT)))?;
        if !bench::WHAT.split(", ").any(|w| w == what) && what != bench::HIDDEN {
            return Err(format!("unknown benchmark {what:?} (one of {})", bench::WHAT).into());
        }
        if let Some(names) = &self.profiles {
            if let Some(bad) = names.iter().find(|n| !bench::PROFILE_NAMES.split(", ").any(|k| k == n.as_str())) {
                return Err(format!("--profiles: unknown profile {bad:?} (one of {})", bench::PROFILE_NAMES).into());
            }
        }
        if what == "net" && self.server_set {
            return Err("bench net starts its own servers (in namespaces or on loopback): no --server".into());
        }
        if self.tls && (self.server_set || what == "net") {
            return Err("--tls makes the server bench starts serve https; with --server, give an https:// URL (and --ca-file)".into());
        }
        let relay = if what == bench::HIDDEN { Some(self.relay_opts()?) } else { None };
        Ok(Cmd::Bench(bench::Opts {
            what,
            server: self.server_set.then_some(self.server),
            pairs: self.pairs,
            connections: self.connections,
            tolerance_ms: self.tol,
            tolerances: self.tolerances,
            target_bits: self.target,
            rooms: self.rooms,
            seconds: self.seconds,
            rate_hz: self.rate_hz,
            duration_ms: self.duration_ms,
            flood: self.flood,
            tls: self.tls,
            time_scale: self.time_scale,
            profiles: self.profiles,
            relay,
            json: self.json,
        }))
    }

    /// `bench relay`'s addresses and path, checked.
    fn relay_opts(&self) -> Result<bench::RelayOpts, lexopt::Error> {
        let addr = |name: &str, v: &Option<String>| -> Result<std::net::SocketAddr, lexopt::Error> {
            let v = v.as_deref().ok_or_else(|| format!("bench relay needs --{name} HOST:PORT"))?;
            v.parse().map_err(|e| format!("--{name} {v:?}: {e} (expected IP:PORT)").into())
        };
        let (listen, target) = (addr("listen", &self.listen)?, addr("target", &self.relay_target)?);
        let spec = bench::relay::Spec {
            delay_ms: self.delay_ms.ok_or("bench relay needs --delay-ms D")?,
            jitter_ms: self.jitter_ms.unwrap_or(0.0),
            loss: self.loss.unwrap_or(0.0),
            reorder: self.reorder.unwrap_or(0.0),
        };
        spec.check()?;
        Ok(bench::RelayOpts { listen, target, spec })
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
        Cmd::Serve { bind, port, mut config, tls, caps, log, metrics_bind } => local.block_on(&rt, async move {
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
            let host = if addr.is_ipv6() { format!("[{}]", addr.ip()) } else { addr.ip().to_string() };
            println!("sgp listening on {scheme}://{host}:{}/", addr.port());
            tracing::info!(url = %format!("{scheme}://{host}:{}/", addr.port()), "listening");
            if let Some(m) = metrics.as_ref().and_then(|l| l.local_addr().ok()) {
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
            if let Some(made) = self_signed {
                print_self_signed(&made, addr.port());
            }
            server::run(listener, metrics, config, server::signal()).await;
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

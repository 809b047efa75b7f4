//! The command line of `sgp` (clap, derive): every subcommand's options with their help,
//! environment variables, and the checks that need only the arguments. What each option
//! does is in the README (*CLI*); `sgp help COMMAND` prints it.

use clap::{Args, Parser, Subcommand};

/// Exit codes of `pair` and `eve`, shown after the help.
const EXIT_CODES: &str = "\
exit codes (pair, eve): 0 key confirmed, 2 usage, 3 peer left, 4 no such room / room full /
bad parameters, 5 server unreachable or gone, 6 retries exhausted, 1 anything else";

/// Every command at a glance, after the top-level help.
const OVERVIEW: &str = "\
At a glance:
  sgp [serve] [--bind ADDR] [--port N] [--allow-origin ORIGIN]... [--legacy] [--ping-secs N]
              [--silence-secs N] [--tls-cert FILE --tls-key FILE | --tls-self-signed]
              [--trust-proxy] [--max-connections N] [--max-per-address N] [--rooms-per-minute N]
              [--observers-per-address N] [--log-format text|json] [--metrics] [--metrics-bind IP:PORT]
  sgp pair [--server URL] [--ca-file FILE] [--room CODE] [--tolerance-ms T] [--target-bits N]
           [--duration-ms MS] [--retries N] [--no-adapt] [--json] [--record FILE]
  sgp eve --room CODE [--server URL] [--ca-file FILE] [--json] [--follow] [--record FILE]
  sgp eve --attack RECORD... [--json]
  sgp bench key|sweep|jitter|load|idle|legacy|net [options] [--server URL | --tls]
            [--ca-file FILE] [--json]
  sgp completions bash|zsh|fish|elvish|powershell;  sgp man;  sgp help [COMMAND]
Environment: SGP_BIND, SGP_PORT, SGP_ALLOW_ORIGIN (comma-separated) for serve; SGP_SERVER
for pair and eve; RUST_LOG for serve's log. A flag given on the command line wins.

exit codes (pair, eve): 0 key confirmed, 2 usage, 3 peer left, 4 no such room / room full /
bad parameters, 5 server unreachable or gone, 6 retries exhausted, 1 anything else";

#[derive(Parser, Debug)]
#[command(
    name = "sgp",
    version,
    about = "sgp — shared secret generation over an anonymous broadcast channel",
    long_about = "sgp — shared secret generation over an anonymous broadcast channel.\n\n\
                  Without a command, `sgp` is `sgp serve`. `sgp help COMMAND` says more of each.",
    after_help = OVERVIEW,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `sgp` with no command serves, with `serve`'s options.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the web client on / and the protocol on /ws.
    Serve(ServeArgs),
    /// Make a key from this terminal: without --room, create a room and print its code.
    #[command(after_help = EXIT_CODES)]
    Pair(PairArgs),
    /// Watch a room as the eavesdropper (boards, the public sift, confirmation tags), or audit
    /// recorded rounds (--attack).
    #[command(after_help = EXIT_CODES)]
    Eve(EveArgs),
    /// Measure, against a server it starts itself unless --server is given (loads go to
    /// 127.0.0.1 only).
    Bench(BenchArgs),
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print sgp's man page (roff), e.g. `sgp man > sgp.1`.
    Man,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on: an IP address (0.0.0.0 for a LAN) or localhost.
    #[arg(long, env = "SGP_BIND", default_value = "127.0.0.1", value_name = "ADDR", value_parser = bind_address)]
    pub bind: String,
    /// Port (0: any free port).
    #[arg(long, env = "SGP_PORT", default_value_t = 8080, value_name = "N")]
    pub port: u16,
    /// Let pages from ORIGIN open /ws (repeatable, or comma-separated in SGP_ALLOW_ORIGIN; * = any).
    #[arg(long = "allow-origin", env = "SGP_ALLOW_ORIGIN", value_delimiter = ',', value_name = "ORIGIN", value_parser = origin)]
    pub allow_origin: Vec<String>,
    /// Also speak the original student client's dialect on /ws (insecure by design: its table
    /// shows who posted what).
    #[arg(long)]
    pub legacy: bool,
    /// Ping each WebSocket every N seconds.
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub ping_secs: u32,
    /// Close a WebSocket silent for N seconds (checked at each ping).
    #[arg(long, default_value_t = 60, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub silence_secs: u32,
    /// Serve https and wss with this certificate chain (PEM, leaf first)…
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<String>,
    /// …and its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<String>,
    /// https with a CA and certificate made at start for this machine's names and addresses
    /// (one run only): prints the fingerprints and the CA for `sgp pair --ca-file`.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,
    /// Behind a reverse proxy: take the page's host and the client's address from Forwarded /
    /// X-Forwarded-Host / X-Forwarded-For (the last values); off, those headers are ignored.
    #[arg(long)]
    pub trust_proxy: bool,
    /// WebSockets open at once (default: the open-file limit, raised to its hard limit, less a
    /// reserve for /healthz and pages).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// WebSockets open at once from one address (IPv6: one /64) [default: 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_per_address: Option<u32>,
    /// Rooms one address may create a minute [default: 30].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rooms_per_minute: Option<u32>,
    /// Connections of one address watching rooms as observers at once (each is sent every
    /// board) [default: 16].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub observers_per_address: Option<u32>,
    /// Log lines on stderr as text or json; which ones: RUST_LOG (default info; e.g. debug,
    /// sgp=trace). Logs never name who posted what (SECURITY.md).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "F")]
    pub log_format: LogFormat,
    /// Serve GET /metrics (Prometheus text format) on this listener.
    #[arg(long)]
    pub metrics: bool,
    /// Serve /metrics and /healthz on a separate plain-http listener at IP:PORT.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// On SIGTERM or Ctrl-C: refuse new rooms and let running sessions finish for up to this
    /// long before closing the rest with 1001 (0: close at once; a second signal cuts it short).
    #[arg(long, value_name = "S", default_value_t = 30, env = "SGP_DRAIN_SECS", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(0..=86_400))]
    pub drain_secs: u32,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

/// What the clients (pair, eve, bench) share: the server and its TLS.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The server: http[s]://HOST:PORT[/PATH] (https for TLS, with the path it lives under).
    #[arg(long, env = "SGP_SERVER", default_value = "http://127.0.0.1:8080", value_name = "URL", value_parser = server_url)]
    pub server: String,
    /// Trust the CA certificates in FILE (PEM) for https, instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<String>,
}

#[derive(Args, Debug)]
pub struct PairArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Join this room instead of creating one.
    #[arg(long, value_name = "CODE")]
    pub room: Option<String>,
    /// Recognition tolerance in ms (creator only; default: measured from the round trips to
    /// the server, 0.1 to 5).
    #[arg(long, value_name = "T")]
    pub tolerance_ms: Option<f64>,
    /// Key strength to reach (creator only) [default: 256].
    #[arg(long, value_name = "N")]
    pub target_bits: Option<u32>,
    /// Each round's posting window (creator only; default: enough for a third of the target).
    #[arg(long, value_name = "MS")]
    pub duration_ms: Option<u32>,
    /// Failed rounds or sessions before giving up; a dropped round counts only once this
    /// poster asks the widest τ and lowest rate its path allows.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub retries: u32,
    /// Ask nothing: every round at the room's τ and rate (docs/protocol.md §6).
    #[arg(long)]
    pub no_adapt: bool,
    /// One JSON object per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Save what this poster knows as JSON when it ends: KEY MATERIAL, mode 0600.
    #[arg(long, value_name = "FILE")]
    pub record: Option<String>,
    /// Testing the audit only: a leaky schedule (needs SGP_TESTING_LEAKY_SCHEDULES=1).
    #[arg(long, hide = true)]
    pub schedule: Option<String>,
    /// Testing only: holds one post in 16 back, for the tests of `drop`.
    #[arg(long, hide = true)]
    pub testing_hold_post: bool,
}

#[derive(Args, Debug)]
pub struct EveArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The room to watch.
    #[arg(long, value_name = "CODE", required_unless_present = "attack")]
    pub room: Option<String>,
    /// Keep watching after a key is confirmed (until Ctrl-C).
    #[arg(long, conflicts_with = "attack")]
    pub follow: bool,
    /// Save every message heard, with server-synced times, as JSON.
    #[arg(long, value_name = "FILE", conflicts_with = "attack")]
    pub record: Option<String>,
    /// Instead, audit the recorded rounds in RECORD… (files of sgp pair --record, both posters
    /// of each room, and of sgp eve --record): can the public part tell the posters apart?
    /// (SECURITY.md)
    #[arg(long, conflicts_with = "room", requires = "records")]
    pub attack: bool,
    /// The records --attack audits.
    #[arg(value_name = "RECORD", requires = "attack")]
    pub records: Vec<String>,
    /// One JSON object per line on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCmd,
}

/// Options every benchmark takes.
#[derive(Args, Debug, Clone)]
pub struct BenchCommon {
    /// Measure this server instead of one bench starts (loads go to 127.0.0.1 only; not read
    /// from SGP_SERVER, so that a benchmark never loads a server by surprise).
    #[arg(long, value_name = "URL", value_parser = server_url)]
    pub server: Option<String>,
    /// Trust the CA certificates in FILE (PEM) for https, instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<String>,
    /// The server bench starts serves https and wss (--tls-self-signed), for what TLS costs.
    #[arg(long, conflicts_with = "server")]
    pub tls: bool,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// N pairs of sgp pair in turn: time to a confirmed key, dropped rounds by cause, kept
    /// entries against 1/(4τe), the guard's cost and use.
    Key {
        #[command(flatten)]
        common: BenchCommon,
        /// Pairs [default: 20].
        #[arg(long, value_name = "N")]
        pairs: Option<usize>,
        #[arg(long, value_name = "T")]
        tolerance_ms: Option<f64>,
        #[arg(long, value_name = "N")]
        target_bits: Option<u32>,
        #[arg(long, value_name = "MS")]
        duration_ms: Option<u32>,
    },
    /// `key` at each tolerance (default 0.05 … 5 ms, 5 pairs each).
    Sweep {
        #[command(flatten)]
        common: BenchCommon,
        #[arg(long, value_name = "T,T,…", value_delimiter = ',')]
        tolerances: Option<Vec<f64>>,
        #[arg(long, value_name = "N")]
        pairs: Option<usize>,
        #[arg(long, value_name = "N")]
        target_bits: Option<u32>,
        #[arg(long, value_name = "MS")]
        duration_ms: Option<u32>,
    },
    /// server_t − predicted_t of a prober's posts, at rest and while M rooms (default 100)
    /// post at R Hz per poster.
    Jitter {
        #[command(flatten)]
        common: BenchCommon,
        #[arg(long, value_name = "M")]
        rooms: Option<usize>,
        #[arg(long, value_name = "S")]
        seconds: Option<f64>,
        #[arg(long, value_name = "R")]
        rate_hz: Option<f64>,
        #[arg(long, value_name = "T")]
        tolerance_ms: Option<f64>,
        /// The server's processes whose CPU time is read (comma-separated PIDs; several sgp
        /// serve behind a proxy). Default: the server bench starts, or the process listening on
        /// --server's port (a proxy's, when there is one in front).
        #[arg(long, value_name = "PID,PID,…", value_delimiter = ',', requires = "server")]
        pid: Option<Vec<u32>>,
    },
    /// Rooms × 2 posters at 90 % of their rate limit, stepping up to M rooms (default 200):
    /// accepted posts/s, server CPU per post, jitter; the knee.
    Load {
        #[command(flatten)]
        common: BenchCommon,
        #[arg(long, value_name = "M")]
        rooms: Option<usize>,
        #[arg(long, value_name = "S")]
        seconds: Option<f64>,
        #[arg(long, value_name = "R")]
        rate_hz: Option<f64>,
        /// The server's processes whose CPU time is read (comma-separated PIDs; several sgp
        /// serve behind a proxy). Default: the server bench starts, or the process listening on
        /// --server's port (a proxy's, when there is one in front).
        #[arg(long, value_name = "PID,PID,…", value_delimiter = ',', requires = "server")]
        pid: Option<Vec<u32>>,
    },
    /// N (default 1000) idle WebSockets: server memory per connection.
    Idle {
        #[command(flatten)]
        common: BenchCommon,
        #[arg(long, value_name = "N")]
        connections: Option<usize>,
    },
    /// The original client's flow (2 clients × 16 posts after 100 ms + U(0, 4 s) each, gaps ×
    /// F, N runs), or a flood; against sgp serve --legacy, or any server speaking it.
    Legacy {
        #[command(flatten)]
        common: BenchCommon,
        #[arg(long, value_name = "N")]
        pairs: Option<usize>,
        #[arg(long, value_name = "F")]
        time_scale: Option<f64>,
        #[arg(long)]
        flood: bool,
        #[arg(long, value_name = "S")]
        seconds: Option<f64>,
        #[arg(long, value_name = "R")]
        rate_hz: Option<f64>,
    },
    /// key's pairs (default 10 per profile) through field profiles: loopback, lan, wifi,
    /// wan-near-far, wan-far, busy (README; as root in network namespaces).
    Net {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "N")]
        pairs: Option<usize>,
        #[arg(long, value_name = "P,P,…", value_delimiter = ',')]
        profiles: Option<Vec<String>>,
        #[arg(long, value_name = "S")]
        seconds: Option<f64>,
    },
    /// A delay relay (for net and the tests): not a measurement.
    #[command(hide = true)]
    Relay {
        #[arg(long, value_name = "IP:PORT")]
        listen: std::net::SocketAddr,
        #[arg(long, value_name = "IP:PORT")]
        target: std::net::SocketAddr,
        #[arg(long, value_name = "D")]
        delay_ms: f64,
        #[arg(long, value_name = "J", default_value_t = 0.0)]
        jitter_ms: f64,
        #[arg(long, value_name = "L", default_value_t = 0.0)]
        loss: f64,
        #[arg(long, value_name = "R", default_value_t = 0.0)]
        reorder: f64,
    },
}

/// `--bind`: an IP address, or localhost.
fn bind_address(v: &str) -> Result<String, String> {
    match v.parse::<std::net::IpAddr>() {
        Ok(_) => Ok(v.to_string()),
        Err(_) if v.eq_ignore_ascii_case("localhost") => Ok(v.to_string()),
        Err(_) => Err("expected an IP address (127.0.0.1, 0.0.0.0, ::) or localhost".into()),
    }
}

/// `--allow-origin`: `*`, or scheme://host[:port] as a browser sends it.
fn origin(v: &str) -> Result<String, String> {
    let v = v.trim();
    let ok = v == "*"
        || v == "null"
        || ["http://", "https://"].iter().any(|p| v.strip_prefix(p).is_some_and(|h| !h.is_empty() && !h.trim_end_matches('/').contains(['/', ' ', '?', '#'])));
    match ok {
        true => Ok(v.to_string()),
        false => Err("expected an origin as browsers send it (https://example.org, http://192.168.1.20:8080) or *".into()),
    }
}

/// `--server`: a URL the clients can use (`ServerUrl::parse`).
fn server_url(v: &str) -> Result<String, String> {
    sgp::client::ServerUrl::parse(v).map(|_| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn values_checked_before_anything_runs() {
        assert!(bind_address("0.0.0.0").is_ok() && bind_address("::1").is_ok() && bind_address("LOCALHOST").is_ok());
        assert!(bind_address("nowhere.example").is_err() && bind_address("").is_err() && bind_address("127.0.0.1:80").is_err());
        for ok in ["*", "null", "https://a.example", "http://192.168.1.20:8080", "https://a.example/"] {
            assert!(origin(ok).is_ok(), "{ok}");
        }
        for bad in ["a.example", "https://", "ftp://a.example", "https://a.example/path", "https://a b"] {
            assert!(origin(bad).is_err(), "{bad}");
        }
        assert!(server_url("https://example.org/sgp/").is_ok() && server_url("ftp://x").is_err());
    }
}

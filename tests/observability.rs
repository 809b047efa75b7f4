//! The server's log and `/metrics` (issue 16), on a real `sgp serve` over real sockets: a
//! full session of two `sgp pair` leaves a log that cannot pair a post with its poster, and
//! counters that moved as documented (checked by Prometheus's own `promtool`); the flags'
//! bad values are one line and an exit code before anything listens.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// `sgp serve --port 0 ARGS` with `env`, stderr into `stderr`; its port and the rest of
/// its stdout.
fn serve(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> (Server, BufReader<ChildStdout>) {
    let mut child: Child = Command::new(SGP)
        .args(["serve", "--port", "0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn sgp serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("sgp listening on http://127.0.0.1:")
        .and_then(|r| r.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    (Server { child, port }, out)
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, answered and closed: (status, body).
fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    status_and_body(&resp)
}

/// SIGTERM, and the server's exit (it logs its shutdown).
fn stop(mut server: Server) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/metrics` as samples: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {l}"));
            (k.to_string(), v.parse().unwrap_or_else(|_| panic!("not a number: {l}")))
        })
        .collect()
}

fn metrics(server: &Server) -> HashMap<String, f64> {
    let (status, body) = server.get("/metrics");
    assert_eq!(status, 200, "{body}");
    samples(&body)
}

/// Polls `/metrics` until `ok` holds (5 s at most), returning the last samples.
fn metrics_until(server: &Server, ok: impl Fn(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics(server);
        if ok(&m) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(m: &HashMap<String, f64>, k: &str) -> f64 {
    m.get(k).copied().unwrap_or(0.0)
}

/// Prometheus's own checker on an exposition (Debian's `prometheus` package; `make promtool`).
fn promtool_check(text: &str) {
    let tool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = match Command::new(&tool).args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => panic!("{tool} is missing ({e}): `make promtool` installs Debian's prometheus package, which has it"),
    };
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_session_moves_the_counters_and_promtool_accepts_them() {
    let server = Server::start(&["--metrics"]);
    let (ka, _kb) = live_pair(&server, &[]);
    // The pairs leave once the key is confirmed: their room goes with them.
    let m = metrics_until(&server, |m| get(m, "sgp_rooms") == 0.0 && get(m, "sgp_connections") == 0.0);
    assert_eq!(get(&m, "sgp_rooms"), 0.0, "{m:?}");
    assert_eq!(get(&m, "sgp_connections"), 0.0, "{m:?}");
    assert_eq!(get(&m, "sgp_rooms_created_total"), 1.0);
    assert_eq!(get(&m, "sgp_rooms_removed_total"), 1.0);
    // One room's verdict is one key, whichever poster's `confirm` came second.
    assert_eq!(get(&m, "sgp_keys_confirmed_total"), 1.0, "{m:?}");
    assert_eq!(get(&m, "sgp_keys_mismatched_total"), 0.0);
    let rounds = get(&m, "sgp_rounds_closed_total");
    assert!(rounds >= ka["rounds"].as_f64().unwrap(), "{rounds} closed, {} counted by the pair", ka["rounds"]);
    // At least the kept entries the key came from were accepted posts.
    assert!(get(&m, "sgp_posts_accepted_total") >= ka["n"].as_f64().unwrap(), "{m:?}");
    assert_eq!(get(&m, "sgp_connections_opened_total"), 2.0);
    assert_eq!(get(&m, "sgp_connections_closed_total{reason=\"peer\"}"), 2.0, "{m:?}");
    let frames = get(&m, "sgp_frame_delay_seconds_count");
    assert!(frames >= get(&m, "sgp_posts_accepted_total"), "every post's frame was timed: {m:?}");
    assert_eq!(get(&m, "sgp_frame_delay_seconds_bucket{le=\"+Inf\"}"), frames);

    // Refusals are counted by code and status.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = ws(&server).await;
        send_text(&mut c, "not json").await;
        assert_eq!(recv(&mut c).await["code"], "bad_json");
        send_text(&mut c, r#"{"type":"post","label":"A"}"#).await;
        assert_eq!(recv(&mut c).await["code"], "not_allowed");
    });
    assert_eq!(server.get("/ws").0, 426);
    let m = metrics(&server);
    assert_eq!(get(&m, "sgp_errors_total{code=\"bad_json\"}"), 1.0, "{m:?}");
    assert_eq!(get(&m, "sgp_posts_refused_total{code=\"not_allowed\"}"), 1.0, "{m:?}");
    assert_eq!(get(&m, "sgp_upgrades_refused_total{status=\"426\"}"), 1.0, "{m:?}");
    // A socket dropped without a close frame is a peer gone, not a protocol error.
    let m = metrics_until(&server, |m| get(m, "sgp_connections") == 0.0);
    assert_eq!(get(&m, "sgp_connections_closed_total{reason=\"peer\"}"), 3.0, "{m:?}");
    assert_eq!(get(&m, "sgp_connections_closed_total{reason=\"protocol\"}"), 0.0, "{m:?}");

    let (status, text) = server.get("/metrics");
    assert_eq!(status, 200);
    promtool_check(&text);
}

#[test]
fn the_log_cannot_pair_a_post_with_its_poster() {
    let dir = std::env::temp_dir().join(format!("sgp-log-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.log");
    let file = std::fs::File::create(&path).unwrap();
    let (server, _out) = serve(&["--log-format", "json", "--metrics"], &[("RUST_LOG", "trace")], Stdio::from(file));
    let (ka, kb) = live_pair(&server, &[]);
    let m = metrics_until(&server, |m| get(m, "sgp_rooms") == 0.0);
    let posts = get(&m, "sgp_posts_accepted_total");
    stop(server);
    let log = std::fs::read_to_string(&path).unwrap();
    if std::env::var_os("SGP_SHOW_LOG").is_some() {
        eprintln!("{log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}"))).collect();

    // Nothing secret or identifying, at any level: the room's code (as typed or not), the
    // key, the bits, either tag.
    let code = ka["room"].as_str().unwrap();
    let secrets = [code.to_string(), code.replace('-', ""), ka["key"].as_str().unwrap().into(), ka["bits"].as_str().unwrap().into(), ka["tag"].as_str().unwrap().into(), kb["tag"].as_str().unwrap().into()];
    for s in &secrets {
        assert!(s.len() >= 8, "{s}");
        assert!(!log.to_ascii_lowercase().contains(&s.to_ascii_lowercase()), "the log holds {s:?}:\n{log}");
    }
    // No field that names a connection, a seat or a post, and no line about a post.
    let forbidden = ["conn", "connection", "id", "seat", "role", "peer", "addr", "label", "t_us", "entry", "entries", "board", "tag", "key", "bits"];
    let mut per_post = 0;
    for l in &lines {
        let obj = l.as_object().unwrap();
        for f in forbidden {
            assert!(!obj.contains_key(f), "field {f} in {l}");
        }
        if l["message"].as_str().unwrap().to_ascii_lowercase().contains("post") {
            per_post += 1;
        }
    }
    assert_eq!(per_post, 0, "{log}");
    assert!(posts > 0.0);
    assert!((lines.len() as f64) < posts, "{} lines for {posts} posts: the log grows with rounds and rooms, not posts\n{log}", lines.len());

    // What it does say: the start, the room's life by its salted name, rounds, the key.
    let said = |msg: &str| lines.iter().filter(|l| l["message"] == msg).collect::<Vec<_>>();
    for msg in ["sgp serve starting", "listening", "room created", "round closed", "key confirmed: both tags match", "room removed", "shutting down"] {
        assert!(!said(msg).is_empty(), "no {msg:?} in\n{log}");
    }
    let room = said("room created")[0]["room"].as_str().unwrap().to_string();
    assert!(room.len() == 8 && room.chars().all(|c| c.is_ascii_hexdigit()), "{room}");
    assert_eq!(said("key confirmed: both tags match")[0]["room"], room.as_str());
    assert_eq!(said("room removed")[0]["room"], room.as_str());
    assert_eq!(said("sgp serve starting")[0]["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn metrics_are_off_unless_asked_and_apart_with_metrics_bind() {
    let plain = Server::start(&[]);
    assert_eq!(plain.get("/metrics").0, 404, "no /metrics without a flag");

    let (server, mut out) = serve(&["--metrics-bind", "127.0.0.1:0"], &[], Stdio::inherit());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let mport: u16 = line
        .trim()
        .strip_prefix("sgp metrics on http://127.0.0.1:")
        .and_then(|r| r.strip_suffix("/metrics"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected second line: {line:?}"));
    assert_eq!(server.get("/metrics").0, 404, "--metrics-bind alone keeps /metrics off the main listener");
    let (status, text) = request(mport, "GET", "/metrics");
    assert_eq!(status, 200);
    assert_eq!(samples(&text)["sgp_rooms"], 0.0);
    let (status, health) = request(mport, "GET", "/healthz");
    assert_eq!((status, serde_json::from_str::<Value>(&health).unwrap()["ok"].clone()), (200, Value::Bool(true)));
    for path in ["/", "/ws", "/index.html"] {
        assert_eq!(request(mport, "GET", path).0, 404, "{path} on the metrics listener");
    }
    assert_eq!(request(mport, "POST", "/metrics").0, 405);
    // The page's listener still serves the page.
    assert_eq!(server.get("/").0, 200);

    let both = Server::start(&["--metrics"]);
    let resp = both.raw_http(&format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", both.port));
    assert!(resp.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{resp}");
}

#[test]
fn bad_log_and_metrics_values_stop_before_listening() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    // (arguments, environment, exit code, what the first line of stderr says)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], i32, &'a str);
    let cases: [Case; 5] = [
        // The parser's words (clap): the value, and the flag it was for.
        (&["--log-format", "yaml"], &[], 2, "'yaml' for '--log-format"),
        (&["--metrics-bind", "garbage"], &[], 2, "'garbage' for '--metrics-bind"),
        (&["--metrics-bind", "localhost"], &[], 2, "'localhost' for '--metrics-bind"),
        (&["--metrics-bind", &taken], &[], 1, "(--metrics-bind)"),
        (&[], &[("RUST_LOG", "sgp=loud")], 2, "RUST_LOG \"sgp=loud\""),
    ];
    for (args, env, code, says) in cases {
        let out = Command::new(SGP).args(["serve", "--port", "0"]).args(args).envs(env.iter().copied()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?} {env:?}: {err}");
        assert!(err.lines().next().unwrap_or("").contains(says), "{args:?}: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "{args:?} listened");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_cap_reports_its_refusals_into_the_counters() {
    let server = Server::start(&["--metrics", "--max-per-address", "1"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let _first = ws(&server).await;
        let second = tokio_tungstenite::connect_async(server.ws_url()).await;
        assert!(second.is_err(), "a second WebSocket from this address is over the cap");
        let m = metrics(&server);
        assert_eq!(get(&m, "sgp_connections_refused_total{reason=\"too_many_connections\"}"), 1.0, "{m:?}");
        assert_eq!(get(&m, "sgp_upgrades_refused_total{status=\"429\"}"), 1.0, "{m:?}");
        assert_eq!(get(&m, "sgp_connections"), 1.0);
    });
}

#![allow(deprecated)] // rustls::crypto::ring::default_provider (src/tls.rs says why ring)
//! TLS end to end (issue 15): `sgp serve --tls-cert/--tls-key` and `--tls-self-signed` serve
//! https and wss; `sgp pair --ca-file` makes a key through them; bad certificates and keys
//! are one-line errors before listening; hostile handshakes are closed without touching
//! anyone else; `--trust-proxy` is the only way forwarded headers count.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `sgp serve` over TLS, killed when dropped, with the port and (self-signed) its CA.
struct TlsServer {
    child: Child,
    port: u16,
    ca_pem: Option<String>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls(extra: &[&str]) -> TlsServer {
    let mut child = Command::new(SGP)
        .args(["serve", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sgp serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("sgp listening on https://127.0.0.1:")
        .and_then(|r| r.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    let mut ca_pem = None;
    if extra.contains(&"--tls-self-signed") {
        let mut pem = String::new();
        while !pem.contains("-----END CERTIFICATE-----") {
            let mut l = String::new();
            assert!(out.read_line(&mut l).unwrap() > 0, "the CA's PEM after the listening line: {pem}");
            pem.push_str(&l);
        }
        ca_pem = Some(pem);
    }
    TlsServer { child, port, ca_pem }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sgp-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A CA and a certificate it signs for `names`, as PEM: (ca, leaf chain, leaf key).
fn ca_and_leaf(names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "sgp test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// Two `sgp pair` through `url` (creator, then joiner), both with `extra`; both keys.
fn pair_through(url: &str, extra: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let spawn = |args: &[&str]| {
        Command::new(SGP)
            .args(["pair", "--json", "--server", url, "--retries", "60"])
            .args(extra)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut creator = spawn(&["--tolerance-ms", "1", "--target-bits", "64"]);
    let mut out = BufReader::new(creator.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap_or_else(|_| panic!("not JSON: {first:?}"));
    let code = v["room"]["code"].as_str().unwrap_or_else(|| panic!("no room code: {first}")).to_string();
    let joiner = spawn(&["--room", &code]);
    let rest = read_rest(out);
    let b = wait_output(joiner, Duration::from_secs(90));
    let a = wait_output(creator, Duration::from_secs(90));
    let ka = key_of(&a, &rest.join().unwrap());
    let kb = key_of(&b, "");
    assert_eq!(ka["key"], kb["key"]);
    assert_eq!(ka["confirmed"], true);
    (ka, kb)
}

#[test]
fn self_signed_serves_https_and_pair_makes_a_key_with_its_ca() {
    let s = start_tls(&["--tls-self-signed"]);
    let dir = temp_dir("self");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, s.ca_pem.as_deref().unwrap()).unwrap();
    let ca = ca.to_str().unwrap();
    // By address and by name: the certificate is for both.
    for host in ["127.0.0.1", "localhost"] {
        pair_through(&format!("https://{host}:{}", s.port), &["--ca-file", ca]);
    }
    // Without the CA, the system's roots do not know it: exit 5, and the message says why.
    let out = Command::new(SGP).args(["pair", "--server", &format!("https://127.0.0.1:{}", s.port)]).output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate") && err.contains("--ca-file"), "{err}");
    // sgp eve over wss: with the CA it reaches the server (which has no such room: exit 4).
    let eve = |ca_args: &[&str]| {
        Command::new(SGP).args(["eve", "--room", "AAAAA-AAAAA", "--server", &format!("https://localhost:{}/", s.port)]).args(ca_args).output().unwrap()
    };
    assert_eq!(eve(&["--ca-file", ca]).status.code(), Some(4));
    assert_eq!(eve(&[]).status.code(), Some(5));
    // The page and its headers, over https.
    let body = https_get(s.port, "localhost", "/", ca);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let lower = body.to_ascii_lowercase();
    assert!(lower.contains("cross-origin-embedder-policy: require-corp") && lower.contains("cross-origin-opener-policy: same-origin"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn certificate_files_serve_wss_under_the_given_names() {
    let dir = temp_dir("files");
    let (ca, chain, key) = ca_and_leaf(&["sgp.test", "127.0.0.1"]);
    for (n, t) in [("ca.pem", &ca), ("cert.pem", &chain), ("key.pem", &key)] {
        std::fs::write(dir.join(n), t).unwrap();
    }
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let s = start_tls(&["--tls-cert", &p("cert.pem"), "--tls-key", &p("key.pem")]);
    let url = format!("wss://127.0.0.1:{}/ws", s.port);
    let (a, _) = pair_through(&url, &["--ca-file", &p("ca.pem")]);
    assert!(a["bits"].as_str().unwrap().len() >= 64);
    // A name the certificate is not for is refused by the client.
    let out = Command::new(SGP).args(["pair", "--ca-file", &p("ca.pem"), "--server", &format!("https://localhost:{}", s.port)]).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_certificates_and_keys_are_one_line_and_exit_2_before_listening() {
    let dir = temp_dir("bad");
    let (_, chain, key) = ca_and_leaf(&["localhost"]);
    let (_, _, other_key) = ca_and_leaf(&["localhost"]);
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    std::fs::write(p("cert.pem"), &chain).unwrap();
    std::fs::write(p("key.pem"), &key).unwrap();
    std::fs::write(p("other.key"), &other_key).unwrap();
    std::fs::write(p("garbage"), "not a certificate\n").unwrap();
    std::fs::write(p("empty"), "").unwrap();
    std::fs::write(p("broken.pem"), "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").unwrap();
    std::fs::create_dir(p("a-dir")).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--tls-cert", &p("missing.pem"), "--tls-key", &p("key.pem")], "--tls-cert"),
        (&["--tls-cert", &p("cert.pem"), "--tls-key", &p("missing.key")], "--tls-key"),
        (&["--tls-cert", &p("a-dir"), "--tls-key", &p("key.pem")], "--tls-cert"),
        (&["--tls-cert", &p("garbage"), "--tls-key", &p("key.pem")], "no certificate"),
        (&["--tls-cert", &p("empty"), "--tls-key", &p("key.pem")], "no certificate"),
        (&["--tls-cert", &p("broken.pem"), "--tls-key", &p("key.pem")], "--tls-cert"),
        (&["--tls-cert", &p("cert.pem"), "--tls-key", &p("garbage")], "no PEM private key"),
        (&["--tls-cert", &p("cert.pem"), "--tls-key", &p("cert.pem")], "no PEM private key"),
        (&["--tls-cert", &p("cert.pem"), "--tls-key", &p("other.key")], "is not the key of the certificate"),
    ];
    for (args, says) in cases {
        let out = Command::new(SGP).args(["serve", "--port", "0"]).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
        assert!(out.stdout.is_empty(), "nothing listened: {}", String::from_utf8_lossy(&out.stdout));
    }
    // Usage errors: one without the other, or with --tls-self-signed.
    for args in [vec!["--tls-cert", "x"], vec!["--tls-key", "x"], vec!["--tls-self-signed", "--tls-cert", "x", "--tls-key", "y"]] {
        let out = Command::new(SGP).args(["serve", "--port", "0"]).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
    // A client's --ca-file that is not a CA file.
    for f in [p("garbage"), p("missing.pem"), p("empty")] {
        let out = Command::new(SGP).args(["pair", "--server", "https://127.0.0.1:9", "--ca-file", &f]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{f}: {err}");
        assert!(err.starts_with("sgp: --ca-file") && err.trim_end().lines().count() == 1, "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_handshakes_are_closed_and_nobody_else_notices() {
    let s = start_tls(&["--tls-self-signed"]);
    let dir = temp_dir("hostile");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, s.ca_pem.as_deref().unwrap()).unwrap();
    let ca = ca.to_str().unwrap().to_string();
    // A client that opens a connection and stalls mid-handshake (half a ClientHello).
    let mut stalled = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).unwrap();
    let started = Instant::now();
    // Garbage, and plain HTTP, sent to the TLS port: closed (perhaps after a TLS alert).
    for bytes in [&b"\x00\x01garbage\xff\xfe\r\n\r\n"[..], b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", &[0x16; 4096][..]] {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = c.write_all(bytes);
        let mut buf = Vec::new();
        let r = c.read_to_end(&mut buf);
        assert!(r.is_ok() || matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset), "closed, not left open: {r:?}");
        assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"), "no page over plain HTTP");
    }
    // While the stalled one waits, others are served: a page over https, and a key.
    assert!(https_get(s.port, "localhost", "/healthz", &ca).contains("\"ok\":true"));
    pair_through(&format!("https://127.0.0.1:{}", s.port), &["--ca-file", &ca]);
    // The stalled handshake is closed at its deadline (10 s), not left open.
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 64];
    let r = stalled.read(&mut buf);
    assert!(matches!(r, Ok(0)) || r.is_err() && r.as_ref().unwrap_err().kind() == std::io::ErrorKind::ConnectionReset, "stalled: {r:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(28), "closed at its deadline, after {waited:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn forwarded_headers_count_only_with_trust_proxy() {
    // As nginx sends it with its default Host ($proxy_host): the upstream's address.
    let upgrade = |port: u16, extra: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://sgp.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        )
    };
    let forwarded = ["X-Forwarded-Host: sgp.example\r\nX-Forwarded-Proto: https\r\n", "Forwarded: for=192.0.2.7;proto=https;host=sgp.example\r\n"];
    let plain = Server::start(&[]);
    for f in forwarded {
        let r = plain.raw_http(&upgrade(plain.port, f));
        assert!(r.starts_with("HTTP/1.1 403"), "ignored without --trust-proxy: {r}");
        assert!(r.contains("--trust-proxy"), "the refusal says what to do: {r}");
    }
    let trusting = Server::start(&["--trust-proxy"]);
    for f in forwarded {
        let r = trusting.raw_http(&upgrade(trusting.port, f));
        assert!(r.starts_with("HTTP/1.1 101"), "{f:?} with --trust-proxy: {r}");
    }
    // Even trusted, a value the page's origin does not match is refused, and so is a client's
    // own value that the proxy appended to (the last one is the proxy's).
    for f in ["X-Forwarded-Host: evil.example\r\n", "X-Forwarded-Host: sgp.example, evil.example\r\n", "Forwarded: host=\r\n"] {
        let r = trusting.raw_http(&upgrade(trusting.port, f));
        assert!(r.starts_with("HTTP/1.1 403"), "{f:?}: {r}");
    }
}

#[test]
fn trust_proxy_on_a_public_address_warns() {
    let stderr_of = |bind: &str| {
        let mut child = Command::new(SGP)
            .args(["serve", "--port", "0", "--trust-proxy", "--bind", bind])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        assert!(first.starts_with("sgp listening on http://"), "{first}");
        // What it said once listening: it says nothing more until it stops.
        std::thread::sleep(Duration::from_millis(300));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let public = stderr_of("0.0.0.0");
    assert!(public.contains("--trust-proxy while listening on 0.0.0.0"), "{public}");
    assert!(!stderr_of("127.0.0.1").contains("--trust-proxy while"));
}

/// `GET path` over https with `ca` as the only root, as `host`; the raw response.
fn https_get(port: u16, host: &str, path: &str, ca: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

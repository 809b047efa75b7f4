//! HTTP: routes, the embedded web client (`client/`, via include_dir), and the pure check
//! of a WebSocket upgrade request (RFC 6455 §4.2.1). No sockets here: `route` looks at a
//! request and says what to answer; the server does the answering and the upgrade.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use include_dir::{include_dir, Dir};

/// The web client, embedded in the binary at build time, every file gzipped (`build.rs`).
pub static CLIENT: Dir<'static> = include_dir!("$OUT_DIR/client.gz");

pub type Body = Full<Bytes>;

/// What to do with a request.
#[derive(Debug)]
pub enum Route {
    /// Answer with this response.
    Reply(Response<Body>),
    /// `/healthz`: the server fills in its counters.
    Health,
    /// `/metrics`: the server's counters, if it serves them (`--metrics`), else 404.
    Metrics,
    /// A valid WebSocket upgrade: answer 101 with this `Sec-WebSocket-Accept`. `room` is the
    /// code the URL names (`/ws?room=ABCDE-FGHJK`), which the connection's `create` or `join`
    /// must name too.
    Upgrade { accept: String, room: Option<String> },
}

/// Which browser origins may open `/ws` (scripts send no Origin and are always let in).
#[derive(Clone, Debug, Default)]
pub struct Origins {
    pub any: bool,
    pub allowed: Vec<String>,
}

impl Origins {
    pub fn new(list: &[String]) -> Origins {
        Origins {
            any: list.iter().any(|o| o == "*"),
            allowed: list.iter().filter(|o| *o != "*").map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect(),
        }
    }

    /// Same host as the request, or listed, or `*`. A port that is the origin's scheme's
    /// default (`:443` for https, `:80` for http) counts as left out, on either side.
    pub fn permits(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.any || self.allowed.contains(&origin) {
            return true;
        }
        let (authority, default_port) = match (origin.strip_prefix("http://"), origin.strip_prefix("https://")) {
            (Some(a), _) => (a, ":80"),
            (_, Some(a)) => (a, ":443"),
            _ => return false,
        };
        match host {
            Some(h) => {
                let h = h.trim().to_ascii_lowercase();
                authority.strip_suffix(default_port).unwrap_or(authority) == h.strip_suffix(default_port).unwrap_or(&h)
            }
            None => false,
        }
    }
}

/// The client's address: the peer's, or with `trust_proxy` what the nearest proxy says it is
/// (the `for=` of the last `Forwarded` element, else the last `X-Forwarded-For` value; a
/// value that is not an address, such as `unknown` or an obfuscated name, is ignored).
pub fn client_ip(h: &HeaderMap, trust_proxy: bool, peer: std::net::IpAddr) -> std::net::IpAddr {
    if !trust_proxy {
        return peer;
    }
    let last = |name: &str| h.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).last().map(str::trim);
    let forwarded = last("forwarded").and_then(|el| {
        el.split(';').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"'))
        })
    });
    forwarded.and_then(parse_node).or_else(|| last("x-forwarded-for").and_then(parse_node)).unwrap_or(peer)
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`, `2001:db8::1`.
fn parse_node(v: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = v.parse() {
        return Some(ip);
    }
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    v.rsplit_once(':').and_then(|(ip, port)| port.parse::<u16>().ok().and(ip.parse().ok()))
}

/// The host the client asked for: with `trust_proxy`, what the proxy in front says
/// (`Forwarded: host=`, else `X-Forwarded-Host`; the last value of each, the one the nearest
/// proxy wrote), else `Host`. Without it those headers are ignored.
pub fn client_host(h: &HeaderMap, trust_proxy: bool) -> Option<String> {
    let forwarded = || {
        let last = h.get_all(header::FORWARDED).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).last()?;
        last.split(';').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim().eq_ignore_ascii_case("host").then(|| v.trim().trim_matches('"').to_string())
        })
    };
    let x_forwarded = || {
        let last = h.get_all("x-forwarded-host").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).last()?;
        Some(last.trim().to_string())
    };
    let trusted = if trust_proxy { forwarded().or_else(x_forwarded).filter(|v| !v.is_empty()) } else { None };
    trusted.or_else(|| header_str(h, header::HOST).map(str::to_string))
}

/// Why an upgrade request was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
}

fn header_str<'a>(h: &'a HeaderMap, name: header::HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Does a comma-separated header hold `token` (trimmed, case-insensitive)?
fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A key is 16 bytes in base64: 22 characters of the alphabet and `==`.
fn valid_key(key: &str) -> bool {
    let b = key.trim().as_bytes();
    b.len() == 24
        && &b[22..] == b"=="
        && b[..22].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// Decides whether `req` is a WebSocket upgrade we accept; returns the client's key.
pub fn check_upgrade<B>(req: &Request<B>, origins: &Origins, trust_proxy: bool) -> Result<String, Refusal> {
    let h = req.headers();
    let wants_upgrade = h.contains_key(header::UPGRADE) || has_token(h, header::CONNECTION, "upgrade");
    if !wants_upgrade {
        return Err(Refusal {
            status: StatusCode::UPGRADE_REQUIRED,
            message: "This is sgp's WebSocket endpoint: connect to it with a WebSocket client \
                      (sgp's page does). A plain HTTP request cannot use it.\n",
        });
    }
    if req.method() != Method::GET {
        return Err(Refusal { status: StatusCode::METHOD_NOT_ALLOWED, message: "A WebSocket upgrade uses GET.\n" });
    }
    if req.version() < Version::HTTP_11 {
        return Err(Refusal { status: StatusCode::BAD_REQUEST, message: "A WebSocket upgrade needs HTTP/1.1.\n" });
    }
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err(Refusal { status: StatusCode::BAD_REQUEST, message: "Connection must include `upgrade`.\n" });
    }
    if !has_token(h, header::UPGRADE, "websocket") {
        return Err(Refusal { status: StatusCode::BAD_REQUEST, message: "Upgrade must be `websocket`.\n" });
    }
    match header_str(h, header::SEC_WEBSOCKET_VERSION).map(str::trim) {
        None => {
            return Err(Refusal { status: StatusCode::BAD_REQUEST, message: "Sec-WebSocket-Version is missing.\n" })
        }
        Some("13") => {}
        Some(_) => {
            return Err(Refusal {
                status: StatusCode::UPGRADE_REQUIRED,
                message: "Only WebSocket version 13 is spoken here.\n",
            })
        }
    }
    let key = match header_str(h, header::SEC_WEBSOCKET_KEY) {
        Some(k) if valid_key(k) => k.trim().to_string(),
        _ => {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                message: "Sec-WebSocket-Key is missing or not 16 bytes of base64.\n",
            })
        }
    };
    if let Some(origin) = h.get(header::ORIGIN) {
        let host = client_host(h, trust_proxy);
        let ok = origin.to_str().map(|o| origins.permits(o, host.as_deref())).unwrap_or(false);
        if !ok {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: "This Origin may not open sgp's WebSocket: it is not the host the request was \
                          sent to. Behind a proxy, start the server with --trust-proxy (and have the proxy \
                          send X-Forwarded-Host), or list the page's origin with --allow-origin.\n",
            });
        }
    }
    Ok(key)
}

/// The `room` of `/ws?room=ABCDE-FGHJK` (docs/protocol.md §3, "Codes in the URL"): none, or
/// one code in its canonical form, the form a proxy routes by (`hash $arg_room`); a code in
/// another form would be routed as another room. Other parameters are ignored.
pub fn room_param(query: Option<&str>) -> Result<Option<String>, &'static str> {
    let mut room = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "room" {
            continue;
        }
        if room.is_some() {
            return Err("bad_room: the URL names `room` twice.\n");
        }
        if crate::room::normalize_code(v).as_deref() != Some(v) {
            return Err("bad_room: `room` in the URL must be a room code as ABCDE-FGHJK (upper case, one dash).\n");
        }
        room = Some(v.to_string());
    }
    Ok(room)
}

/// Headers every response carries: cross-origin isolation gives pages precise timers.
pub fn finish(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-embedder-policy", HeaderValue::from_static("require-corp"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    finish(r)
}

pub fn json(body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    finish(r)
}

/// The `/metrics` page (Prometheus text exposition format 0.0.4).
pub fn metrics(body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    finish(r)
}

pub fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "Not found.\n")
}

fn get_or_head_only() -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Only GET and HEAD are served here.\n");
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// What the separate metrics listener (`--metrics-bind`) answers: `/metrics` and `/healthz`
/// only, never the page or the WebSocket.
pub fn metrics_route<B>(req: &Request<B>) -> Route {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Route::Reply(get_or_head_only());
    }
    match req.uri().path() {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Health,
        _ => Route::Reply(not_found()),
    }
}

pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "map" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether `Accept-Encoding` takes gzip (RFC 9110 §12.5.3: `gzip`, `x-gzip` or `*`, with
/// a q-value above 0).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = false;
    for item in headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match name.as_str() {
            "gzip" | "x-gzip" => return q > 0.0,
            "*" => star = q > 0.0,
            _ => {}
        }
    }
    star
}

/// The contents of a gzip member written by `build.rs` (no name, no extra field: a 10-byte
/// header, then raw deflate, then CRC-32 and length). `None` if it is not one.
pub fn gunzip(gz: &[u8]) -> Option<Vec<u8>> {
    if gz.len() < 18 || gz[..4] != [0x1f, 0x8b, 8, 0] {
        return None;
    }
    miniz_oxide::inflate::decompress_to_vec(&gz[10..gz.len() - 8]).ok()
}

/// An embedded file, `/` being `index.html`: gzipped as it is stored, or inflated for a
/// client that does not take gzip.
fn asset(path: &str, gzip: bool) -> Option<Response<Body>> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() || rel.ends_with('/') { format!("{rel}index.html") } else { rel.to_string() };
    if rel.split('/').any(|seg| seg == ".." || seg.starts_with('.')) {
        return None;
    }
    let file = CLIENT.get_file(&rel)?;
    let body = if gzip { Bytes::from_static(file.contents()) } else { Bytes::from(gunzip(file.contents())?) };
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&rel)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(finish(r))
}

/// 429 for a WebSocket over a cap: the stable code first, then what to do.
pub fn too_many(refused: crate::gate::Refused) -> Response<Body> {
    let body = match refused {
        crate::gate::Refused::ServerFull => "server_full: this server holds as many WebSockets as it takes (--max-connections); try again later.\n",
        crate::gate::Refused::AddressFull => {
            "too_many_connections: your address has as many WebSockets open as one address may (--max-per-address); close some.\n"
        }
    };
    let mut r = text(StatusCode::TOO_MANY_REQUESTS, body);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    r
}

/// 503 for a WebSocket that would start a room while the server drains: a proxy tries the
/// next server (nginx's `proxy_next_upstream http_503`), a client draws a new code.
pub fn draining() -> Response<Body> {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "draining: this server is stopping and takes no new rooms; create the room again (another server may take it).\n");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// What to answer to `req`.
pub fn route<B>(req: &Request<B>, origins: &Origins, trust_proxy: bool) -> Route {
    let path = req.uri().path();
    if path == "/ws" {
        return match check_upgrade(req, origins, trust_proxy) {
            Ok(key) => match room_param(req.uri().query()) {
                Ok(room) => Route::Upgrade { accept: tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()), room },
                Err(message) => Route::Reply(text(StatusCode::BAD_REQUEST, message)),
            },
            Err(refusal) => {
                let mut r = text(refusal.status, refusal.message);
                match refusal.status {
                    StatusCode::UPGRADE_REQUIRED => {
                        r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
                        r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                    }
                    StatusCode::METHOD_NOT_ALLOWED => {
                        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
                    }
                    _ => {}
                }
                Route::Reply(r)
            }
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Route::Reply(get_or_head_only());
    }
    match path {
        "/healthz" => return Route::Health,
        "/metrics" => return Route::Metrics,
        _ => {}
    }
    match asset(path, accepts_gzip(req.headers())) {
        Some(r) => Route::Reply(r),
        None => Route::Reply(not_found()),
    }
}

/// The 101 answer to a valid upgrade.
pub fn switching(accept: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade() -> hyper::http::request::Builder {
        Request::get("/ws")
            .header("host", "127.0.0.1:8080")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", KEY)
    }

    fn status(req: Request<()>) -> StatusCode {
        check_upgrade(&req, &Origins::default(), false).unwrap_err().status
    }

    #[test]
    fn accepts_a_valid_upgrade() {
        let req = upgrade().body(()).unwrap();
        assert_eq!(check_upgrade(&req, &Origins::default(), false), Ok(KEY.to_string()));
        // RFC 6455's own example.
        let Route::Upgrade { accept, room: None } = route(&req, &Origins::default(), false) else { panic!() };
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let req = upgrade().header("origin", "http://127.0.0.1:8080").body(()).unwrap();
        assert!(check_upgrade(&req, &Origins::default(), false).is_ok());
        let req = upgrade().header("connection", "UPGRADE").body(()).unwrap();
        assert!(check_upgrade(&req, &Origins::default(), false).is_ok());
    }

    #[test]
    fn reads_the_room_in_the_url() {
        assert_eq!(room_param(None), Ok(None));
        assert_eq!(room_param(Some("")), Ok(None));
        assert_eq!(room_param(Some("v=2&x")), Ok(None));
        assert_eq!(room_param(Some("room=ABCDE-FGHJK")), Ok(Some("ABCDE-FGHJK".into())));
        assert_eq!(room_param(Some("a=1&room=ABCDE-FGHJK&b")), Ok(Some("ABCDE-FGHJK".into())));
        for bad in ["room", "room=", "room=abcde-fghjk", "room=ABCDEFGHJK", "room=ABCDE%2DFGHJK", "room=ABCDE-FGHJ", "room=ABCDE-FGHJK&room=ABCDE-FGHJK", "room=ABCDE-FGHJK-"] {
            assert!(room_param(Some(bad)).unwrap_err().starts_with("bad_room: "), "{bad}");
        }
        let mut req = upgrade().body(()).unwrap();
        *req.uri_mut() = "/ws?room=ABCDE-FGHJK".parse().unwrap();
        assert!(matches!(route(&req, &Origins::default(), false), Route::Upgrade { room: Some(r), .. } if r == "ABCDE-FGHJK"));
        *req.uri_mut() = "/ws?room=nope".parse().unwrap();
        let Route::Reply(r) = route(&req, &Origins::default(), false) else { panic!("a bad room must be refused") };
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn refuses_malformed_upgrades() {
        assert_eq!(status(Request::get("/ws").body(()).unwrap()), StatusCode::UPGRADE_REQUIRED);
        let no_key = Request::get("/ws")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        assert_eq!(status(no_key), StatusCode::BAD_REQUEST);
        let bad_key = Request::get("/ws")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "not base64 at all!!!!!==")
            .body(())
            .unwrap();
        assert_eq!(status(bad_key), StatusCode::BAD_REQUEST);
        let no_conn = Request::get("/ws")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", KEY)
            .body(())
            .unwrap();
        assert_eq!(status(no_conn), StatusCode::BAD_REQUEST);
        let conn_substring = Request::get("/ws")
            .header("connection", "upgrades")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", KEY)
            .body(())
            .unwrap();
        assert_eq!(status(conn_substring), StatusCode::BAD_REQUEST);
        let h2c = Request::get("/ws")
            .header("connection", "upgrade")
            .header("upgrade", "h2c")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", KEY)
            .body(())
            .unwrap();
        assert_eq!(status(h2c), StatusCode::BAD_REQUEST);
        let old = Request::get("/ws")
            .version(Version::HTTP_10)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", KEY)
            .body(())
            .unwrap();
        assert_eq!(status(old), StatusCode::BAD_REQUEST);
        let post = Request::post("/ws")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", KEY)
            .body(())
            .unwrap();
        assert_eq!(status(post), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn wrong_version_is_426() {
        let req = Request::get("/ws")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "8")
            .header("sec-websocket-key", KEY)
            .body(())
            .unwrap();
        assert_eq!(status(req), StatusCode::UPGRADE_REQUIRED);
        let Route::Reply(r) = route(
            &Request::get("/ws")
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "8")
                .header("sec-websocket-key", KEY)
                .body(())
                .unwrap(),
            &Origins::default(),
            false,
        ) else {
            panic!()
        };
        assert_eq!(r.headers()["sec-websocket-version"], "13");
    }

    #[test]
    fn origins() {
        let none = Origins::default();
        let req = upgrade().header("origin", "http://evil.example").body(()).unwrap();
        assert_eq!(check_upgrade(&req, &none, false).unwrap_err().status, StatusCode::FORBIDDEN);
        let listed = Origins::new(&["http://evil.example/".to_string()]);
        assert!(check_upgrade(&req, &listed, false).is_ok());
        let any = Origins::new(&["*".to_string()]);
        assert!(check_upgrade(&req, &any, false).is_ok());
        let file = upgrade().header("origin", "null").body(()).unwrap();
        assert_eq!(check_upgrade(&file, &none, false).unwrap_err().status, StatusCode::FORBIDDEN);
        assert!(check_upgrade(&file, &any, false).is_ok());
        assert!(none.permits("HTTP://LOCALHOST:8080", Some("localhost:8080")));
        assert!(!none.permits("http://localhost:8081", Some("localhost:8080")));
        assert!(!none.permits("http://localhost:8080", None));
        // Default ports count as left out, by the origin's scheme.
        assert!(none.permits("https://sgp.example", Some("sgp.example:443")));
        assert!(none.permits("https://sgp.example:443", Some("sgp.example")));
        assert!(!none.permits("https://sgp.example", Some("sgp.example:80")));
        assert!(none.permits("http://sgp.example", Some("sgp.example:80")));
    }

    #[test]
    fn the_client_address_is_the_peer_unless_a_trusted_proxy_says() {
        let peer: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
            }
            m
        };
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let xff = h(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7")]);
        assert_eq!(client_ip(&xff, false, peer), peer, "ignored without --trust-proxy");
        assert_eq!(client_ip(&xff, true, peer), ip("198.51.100.7"), "the last value, the nearest proxy's");
        let fwd = h(&[("forwarded", "for=203.0.113.9, for=\"[2001:db8::7]:4711\";proto=https"), ("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(client_ip(&fwd, true, peer), ip("2001:db8::7"));
        assert_eq!(client_ip(&h(&[("forwarded", "for=192.0.2.1:80")]), true, peer), ip("192.0.2.1"));
        for bad in ["unknown", "_hidden", "", "999.1.1.1", "[::1", "a:b:c"] {
            assert_eq!(client_ip(&h(&[("forwarded", &format!("for={bad}")), ("x-forwarded-for", bad)]), true, peer), peer, "{bad:?}");
        }
    }

    #[test]
    fn forwarded_host_counts_only_with_trust_proxy() {
        // nginx's default Host is its upstream's address; the page's origin is the proxy's.
        let behind = |extra: &[(&str, &str)]| {
            let mut b = upgrade().header("origin", "https://sgp.example").header("host", "127.0.0.1:8080");
            for (k, v) in extra {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap()
        };
        let none = Origins::default();
        let refused = |r: &Request<()>, trust| check_upgrade(r, &none, trust).map_err(|e| e.status);
        // No forwarded header: refused either way.
        assert_eq!(refused(&behind(&[]), true), Err(StatusCode::FORBIDDEN));
        // X-Forwarded-Host / Forwarded: only with --trust-proxy.
        let xfh = behind(&[("x-forwarded-host", "sgp.example"), ("x-forwarded-proto", "https")]);
        assert_eq!(refused(&xfh, false), Err(StatusCode::FORBIDDEN));
        assert!(refused(&xfh, true).is_ok());
        let fwd = behind(&[("forwarded", "for=192.0.2.1;proto=https;host=\"sgp.example\"")]);
        assert_eq!(refused(&fwd, false), Err(StatusCode::FORBIDDEN));
        assert!(refused(&fwd, true).is_ok());
        // The last value is the nearest proxy's: a client's own earlier value does not count.
        let spoofed = behind(&[("x-forwarded-host", "sgp.example, evil.example")]);
        assert_eq!(refused(&spoofed, true), Err(StatusCode::FORBIDDEN));
        let spoofed = behind(&[("forwarded", "host=sgp.example, for=192.0.2.1;host=evil.example")]);
        assert_eq!(refused(&spoofed, true), Err(StatusCode::FORBIDDEN));
        // Forwarded wins over X-Forwarded-Host; empty or hostless values fall back to Host.
        let both = behind(&[("forwarded", "host=sgp.example"), ("x-forwarded-host", "evil.example")]);
        assert!(refused(&both, true).is_ok());
        let empty = behind(&[("x-forwarded-host", ""), ("forwarded", "for=192.0.2.1")]);
        assert_eq!(client_host(empty.headers(), true).as_deref(), Some("127.0.0.1:8080"));
        // Hostile values: not UTF-8, huge, many, odd syntax. Refused, never a panic.
        for v in ["\"", "host", "host=", ";;;", "=,=,=", &"x".repeat(8000)] {
            let r = behind(&[("forwarded", v), ("x-forwarded-host", v)]);
            assert_eq!(refused(&r, true), Err(StatusCode::FORBIDDEN), "{v:?}");
        }
        let mut r = behind(&[]);
        r.headers_mut().insert("x-forwarded-host", HeaderValue::from_bytes(b"sgp.ex\xffample").unwrap());
        assert_eq!(refused(&r, true), Err(StatusCode::FORBIDDEN));
    }

    #[test]
    fn accept_encoding_is_read_as_rfc_9110_says() {
        let h = |v: &[&str]| {
            let mut m = HeaderMap::new();
            for x in v {
                m.append(header::ACCEPT_ENCODING, HeaderValue::from_str(x).unwrap());
            }
            accepts_gzip(&m)
        };
        assert!(h(&["gzip, deflate, br"]));
        assert!(h(&["br", "GZip;q=0.5"]));
        assert!(h(&["x-gzip"]));
        assert!(h(&["*"]));
        assert!(!h(&[]));
        assert!(!h(&["identity"]));
        assert!(!h(&["br, deflate"]));
        assert!(!h(&["gzip;q=0"]));
        assert!(!h(&["gzip; q=0.000, *"]), "an explicit refusal wins over *");
        assert!(!h(&["*;q=0"]));
        assert!(h(&["gzip;q=bogus"]), "an unreadable q counts as 1");
    }

    /// Every embedded file inflates to the file `build.rs` assembled, byte for byte.
    #[test]
    fn embedded_files_are_the_client_gzipped() {
        fn walk(d: &'static Dir<'static>, n: &mut usize) {
            for f in d.files() {
                let plain = std::fs::read(std::path::Path::new(concat!(env!("OUT_DIR"), "/client")).join(f.path())).unwrap();
                assert_eq!(gunzip(f.contents()).as_deref(), Some(&plain[..]), "{:?}", f.path());
                assert!(f.contents().len() < plain.len() || plain.len() < 200, "{:?} does not shrink", f.path());
                *n += 1;
            }
            for sub in d.dirs() {
                walk(sub, n);
            }
        }
        let mut n = 0;
        walk(&CLIENT, &mut n);
        assert!(n >= 5, "{n} files");
        assert!(CLIENT.get_file("js/README.md").is_none(), "notes for developers are not served");
        assert_eq!(gunzip(b"not gzip at all, not at all"), None);
    }

    #[test]
    fn assets_are_sent_gzipped_to_clients_that_take_it() {
        let o = Origins::default();
        let get = |enc: Option<&str>| {
            let mut b = Request::get("/");
            if let Some(e) = enc {
                b = b.header(header::ACCEPT_ENCODING, e);
            }
            let Route::Reply(r) = route(&b.body(()).unwrap(), &o, false) else { panic!() };
            r
        };
        let plain = get(None);
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(plain.headers()[header::VARY], "accept-encoding");
        let zipped = get(Some("gzip, br"));
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(zipped.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(zipped.headers()["cross-origin-embedder-policy"], "require-corp");
        let body = |r: Response<Body>| {
            let mut r = r;
            let fut = http_body_util::BodyExt::collect(r.body_mut());
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(fut).unwrap().to_bytes()
        };
        let (p, z) = (body(plain), body(zipped));
        assert_eq!(gunzip(&z).unwrap(), p.to_vec());
        assert!(String::from_utf8_lossy(&p).contains("<!doctype html") || String::from_utf8_lossy(&p).contains("<!DOCTYPE html"));
    }

    #[test]
    fn routes_and_headers() {
        let o = Origins::default();
        let Route::Reply(r) = route(&Request::get("/").body(()).unwrap(), &o, false) else { panic!() };
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.headers()["cross-origin-opener-policy"], "same-origin");
        assert_eq!(r.headers()["cross-origin-embedder-policy"], "require-corp");
        let Route::Reply(r) = route(&Request::get("/nope").body(()).unwrap(), &o, false) else { panic!() };
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["cross-origin-opener-policy"], "same-origin");
        let Route::Reply(r) = route(&Request::get("/../Cargo.toml").body(()).unwrap(), &o, false) else { panic!() };
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let Route::Reply(r) = route(&Request::delete("/").body(()).unwrap(), &o, false) else { panic!() };
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(matches!(route(&Request::get("/healthz").body(()).unwrap(), &o, false), Route::Health));
        assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x.css"), "text/css; charset=utf-8");
    }
}

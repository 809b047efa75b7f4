//! `sgp serve`: binds, accepts, serves HTTP with hyper and hands upgraded connections to
//! `conn`. Owns the state every connection shares (the room engine and the queues to
//! each connection) on one thread: `RefCell`, no locks, and no borrow held across `.await`.

use crate::clock::Clock;
use crate::gate::{Caps, Gate};
use crate::http::{self, Origins, Route};
use crate::legacy::{self, Legacy};
use crate::logs::room_tag;
use crate::metrics::Metrics;
use crate::protocol::{board_text, to_text, ClientMsg, ServerMsg};
use crate::room::{ConnId, Engine, FastMap, Limits, Out};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::{debug, info};

/// What `sgp serve` was asked for.
#[derive(Clone, Debug)]
pub struct Config {
    pub origins: Origins,
    pub legacy: bool,
    /// The server pings each WebSocket this often…
    pub ping_every: Duration,
    /// …and closes one from which no frame of any kind came for this long.
    pub silence: Duration,
    /// Serve https and wss with this (`--tls-cert`/`--tls-key` or `--tls-self-signed`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Take the page's host and the client's address from `Forwarded` / `X-Forwarded-*`
    /// (`--trust-proxy`).
    pub trust_proxy: bool,
    /// Open WebSockets in all and per address, rooms per address per minute.
    pub caps: Caps,
    /// Serve `/metrics` on the main listener (`--metrics`).
    pub metrics: bool,
    /// How long running sessions may go on once a stop is asked for (`--drain-secs`, which
    /// `sgp serve` always sets; none here, so a server run in-process stops at once).
    pub drain: Duration,
}

impl Config {
    /// What `sgp serve` uses unless told otherwise.
    pub fn new(origins: Origins, legacy: bool) -> Config {
        Config { origins, legacy, ping_every: Duration::from_secs(20), silence: Duration::from_secs(60), tls: None, trust_proxy: false, caps: Caps::for_fd_limit(1024), metrics: false, drain: Duration::ZERO }
    }
}

/// State shared by every task of the server.
pub struct Shared {
    pub clock: Clock,
    pub engine: RefCell<Engine>,
    /// The original client's shared table (used only with `--legacy`).
    pub legacy: RefCell<Legacy>,
    pub config: Config,
    /// Aggregate counters for `/metrics` (kept whether it is served or not).
    pub metrics: Metrics,
    /// Each connection's outbound queue. Dropping a sender tells that connection to close.
    queues: RefCell<FastMap<ConnId, mpsc::Sender<Utf8Bytes>>>,
    next_id: Cell<ConnId>,
    /// Connection tasks still running, closing ones included (shutdown waits for them).
    tasks: Cell<usize>,
    shutdown: watch::Sender<bool>,
    /// Boards already serialised for `board` requests, by version: observers polling one
    /// board share one copy, and a request costs no serialisation while the board stands.
    board_texts: RefCell<FastMap<u64, Utf8Bytes>>,
    /// Who may open a WebSocket or create a room.
    pub gate: RefCell<Gate>,
    /// A stop was asked for: no new rooms, `/healthz` says 503 (docs/protocol.md §3, "Drain").
    draining: Cell<bool>,
    /// Every connection is being closed: a room's members leaving say nothing to each other
    /// (each gets its own 1001, and a shutdown must read as one, not as a peer who left).
    closing: Cell<bool>,
}

/// Boards kept serialised at once (the cache is emptied when it grows past this).
const BOARD_TEXTS: usize = 64;

/// Fills a buffer from the operating system's generator (room codes, session nonces).
pub fn os_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        // No OS generator is a broken machine: refuse to make guessable codes.
        eprintln!("sgp: the operating system's random generator failed");
        std::process::exit(70);
    }
}

impl Shared {
    pub fn new(config: Config) -> Rc<Shared> {
        Rc::new(Shared {
            gate: RefCell::new(Gate::new(config.caps.clone())),
            clock: Clock::new(),
            engine: RefCell::new(Engine::new(Limits::default(), Box::new(os_random))),
            legacy: RefCell::new(Legacy::new(legacy::local_utc_offset_s())),
            config,
            metrics: Metrics::default(),
            queues: RefCell::new(FastMap::default()),
            next_id: Cell::new(1),
            tasks: Cell::new(0),
            shutdown: watch::channel(false).0,
            board_texts: RefCell::new(FastMap::default()),
            draining: Cell::new(false),
            closing: Cell::new(false),
        })
    }

    pub fn register(&self) -> (ConnId, mpsc::Receiver<Utf8Bytes>) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.tasks.set(self.tasks.get() + 1);
        self.metrics.connection_opened();
        let (tx, rx) = mpsc::channel(crate::conn::OUT_QUEUE);
        self.queues.borrow_mut().insert(id, tx);
        (id, rx)
    }

    pub fn unregister(&self, id: ConnId) {
        self.queues.borrow_mut().remove(&id);
        self.legacy.borrow_mut().disconnect(id);
        let outs = self.engine.borrow_mut().disconnect(id);
        if !self.closing.get() {
            self.dispatch(outs);
        }
        self.note_removed();
    }

    /// The connection task has finished closing.
    pub fn finished(&self) {
        self.tasks.set(self.tasks.get().saturating_sub(1));
    }

    /// The server drains before it stops: it takes no new rooms.
    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    pub fn connections(&self) -> usize {
        self.queues.borrow().len()
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Delivers the engine's output: each message is serialised once. A connection whose
    /// queue is full is not reading: its queue is dropped, which makes it close.
    pub fn dispatch(&self, outs: Vec<Out>) {
        self.note(&outs, false);
        self.deliver_all(outs);
    }

    /// Delivers the engine's output, already noted (see [`Shared::handle`]).
    pub fn deliver_all(&self, outs: Vec<Out>) {
        for out in outs {
            self.deliver(&out.to, Utf8Bytes::from(to_text(&out.msg)));
        }
    }

    /// Answers a `board` request through the connection's queue (so it stays in order with
    /// what the room sent before), from the cache when the board has not changed.
    pub fn board_request(&self, id: ConnId, now: i64) {
        self.metrics.board_request();
        let text = match self.engine.borrow_mut().board(id, now) {
            Err(outs) => return self.dispatch(outs),
            Ok(b) => {
                let mut cache = self.board_texts.borrow_mut();
                match cache.get(&b.version) {
                    Some(t) => t.clone(),
                    None => {
                        if cache.len() >= BOARD_TEXTS {
                            cache.clear();
                        }
                        let t = Utf8Bytes::from(board_text("board", b.session, b.round, "entries", b.entries));
                        cache.insert(b.version, t.clone());
                        t
                    }
                }
            }
        };
        self.deliver(&[id], text);
    }

    /// One room message (not `board` or `ping`, which the connection answers) to the engine,
    /// counted and logged (a `post`'s fate is counted, never logged); the answer is for
    /// [`Shared::deliver_all`].
    pub fn handle(&self, id: ConnId, msg: ClientMsg, now: i64) -> Vec<Out> {
        let (post, create) = (matches!(msg, ClientMsg::Post { .. }), matches!(msg, ClientMsg::Create { .. }));
        let outs = self.engine.borrow_mut().handle(id, msg, now);
        if post {
            match outs.iter().find_map(|o| if let ServerMsg::Error { code, .. } = &o.msg { Some(code.as_str()) } else { None }) {
                None => self.metrics.post_accepted(),
                Some(code) => self.metrics.post_refused(code),
            }
        }
        if let (true, Some(ServerMsg::Joined { room, .. })) = (create, outs.first().map(|o| &o.msg)) {
            self.metrics.room_created();
            info!(room = %room_tag(room), "room created");
        }
        self.note(&outs, post);
        self.note_removed();
        outs
    }

    /// A message in the legacy dialect; its new rows are counted.
    pub fn legacy_message(&self, id: ConnId, text: &str, now: i64) {
        let before = self.legacy.borrow().rows();
        let outs = self.legacy.borrow_mut().handle(id, text, now);
        self.metrics.legacy_rows(self.legacy.borrow().rows().saturating_sub(before) as u64);
        self.dispatch_legacy(outs);
    }

    /// Counts and logs what the engine sends. Never who sent what: no connection, seat or
    /// post appears (SECURITY.md, "Logs and metrics"). `post`: `outs` answer a `post`, whose
    /// refusal is counted but not logged.
    fn note(&self, outs: &[Out], post: bool) {
        for out in outs {
            match &out.msg {
                ServerMsg::Error { code, .. } => {
                    self.metrics.refused(code.as_str());
                    if !post {
                        debug!(code = code.as_str(), "refused");
                    }
                }
                ServerMsg::Closed { round, .. } => {
                    self.metrics.round_closed();
                    debug!(room = %self.tag_of(&out.to), round, "round closed");
                }
                ServerMsg::Aborted { reason } => self.note_abort(reason, &out.to),
                ServerMsg::Confirmed { matched } => {
                    self.metrics.key(*matched);
                    let room = self.tag_of(&out.to);
                    if *matched {
                        info!(%room, "key confirmed: both tags match");
                    } else {
                        info!(%room, "key mismatched: the tags differ");
                    }
                }
                ServerMsg::Dropped { round, spans, .. } => {
                    self.metrics.span_drop();
                    debug!(room = %self.tag_of(&out.to), round, spans = spans.len(), "spans dropped");
                }
                _ => {}
            }
        }
    }

    fn note_abort(&self, reason: &str, to: &[ConnId]) {
        let reason = self.metrics.aborted(reason);
        if reason == "desync" {
            debug!(room = %self.tag_of(to), "round dropped: desync");
        } else {
            info!(room = %self.tag_of(to), reason, "session aborted");
        }
    }

    /// Logs and counts the rooms the engine removed.
    fn note_removed(&self) {
        let Ok(mut engine) = self.engine.try_borrow_mut() else { return };
        for (code, reason) in engine.take_removed() {
            self.metrics.room_removed();
            info!(room = %room_tag(&code), reason, "room removed");
        }
    }

    /// The log's name for the room of the first of `to`, or `-` if it has none (any more).
    fn tag_of(&self, to: &[ConnId]) -> String {
        let engine = self.engine.try_borrow().ok();
        let code = to.first().and_then(|c| engine.as_ref()?.seat(*c).map(|(code, _)| room_tag(code)));
        code.unwrap_or_else(|| "-".into())
    }

    /// An `error` the connection sends itself (a message that does not parse, or speaks a
    /// dialect the server was not started with): counted, and logged at debug.
    pub fn refused(&self, code: &'static str) {
        self.metrics.refused(code);
        debug!(code, "refused");
    }

    /// A WebSocket connection ended for `reason` (one of `metrics::CLOSE_REASONS`): expected
    /// ends are logged at debug, the server's limits and silence at info.
    pub fn connection_closed(&self, reason: &'static str) {
        self.metrics.closed(reason);
        match reason {
            "peer" | "shutdown" => debug!(reason, "connection closed"),
            _ => info!(reason, "connection closed"),
        }
    }

    /// The `/metrics` page.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(self.connections(), self.engine.borrow().rooms())
    }

    /// The legacy dialect's replies, through the same queues.
    pub fn dispatch_legacy(&self, outs: Vec<legacy::Out>) {
        for out in outs {
            self.deliver(&out.to, out.text);
        }
    }

    fn deliver(&self, to: &[ConnId], text: Utf8Bytes) {
        let mut queues = self.queues.borrow_mut();
        for c in to {
            let full = match queues.get(c) {
                Some(q) => matches!(q.try_send(text.clone()), Err(mpsc::error::TrySendError::Full(_))),
                None => false,
            };
            if full {
                queues.remove(c);
            }
        }
    }

    /// `/healthz`: 200, or 503 while draining so that a proxy sends new rooms elsewhere.
    fn health(&self) -> Response<http::Body> {
        let body = serde_json::json!({
            "ok": !self.draining(),
            "draining": self.draining(),
            "version": env!("CARGO_PKG_VERSION"),
            "rooms": self.engine.borrow().rooms(),
            "connections": self.connections(),
        })
        .to_string();
        let mut r = http::json(body);
        if self.draining() {
            *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
        }
        r
    }
}

async fn handle(req: Request<Incoming>, shared: Rc<Shared>, peer: IpAddr) -> Result<Response<http::Body>, std::convert::Infallible> {
    Ok(match http::route(&req, &shared.config.origins, shared.config.trust_proxy) {
        Route::Reply(r) => {
            if req.uri().path() == "/ws" {
                shared.metrics.upgrade_refused(r.status().as_u16());
                debug!(status = r.status().as_u16(), "upgrade refused");
            }
            r
        }
        Route::Health => shared.health(),
        Route::Metrics if shared.config.metrics => http::metrics(shared.metrics_text()),
        Route::Metrics => http::not_found(),
        Route::Upgrade { accept, room } => {
            if shared.draining() && !room.as_deref().is_some_and(|r| shared.engine.borrow().has_room(r)) {
                shared.metrics.upgrade_refused(503);
                debug!(status = 503, "upgrade refused: draining");
                return Ok(http::draining());
            }
            let addr = http::client_ip(req.headers(), shared.config.trust_proxy, peer);
            let admitted = match Admission::new(&shared, addr) {
                Ok(a) => a,
                Err(refused) => {
                    shared.metrics.upgrade_refused(429);
                    shared.metrics.connection_refused(refused.code());
                    debug!(reason = refused.code(), "connection refused");
                    return Ok(http::too_many(refused));
                }
            };
            // Spawned before the 101 goes out: hyper resolves the upgrade once it has.
            tokio::task::spawn_local(async move {
                if let Ok(upgraded) = hyper::upgrade::on(req).await {
                    let io = crate::conn::ServerIo::new(upgraded, shared.clock);
                    crate::conn::run(io, shared.clone(), addr, room).await;
                }
                drop(admitted);
            });
            http::switching(&accept)
        }
    })
}

/// A WebSocket's place under the caps, given back when it is dropped (when its task ends,
/// however it ends).
struct Admission {
    shared: Rc<Shared>,
    addr: IpAddr,
}

impl Admission {
    fn new(shared: &Rc<Shared>, addr: IpAddr) -> Result<Admission, crate::gate::Refused> {
        shared.gate.borrow_mut().admit(addr)?;
        Ok(Admission { shared: shared.clone(), addr })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.shared.gate.borrow_mut().release(self.addr);
    }
}

/// Closes rounds past their grace and removes idle rooms, waking when the engine says.
async fn timers(shared: Rc<Shared>) {
    loop {
        let now = shared.clock.now_us();
        let next = shared.engine.borrow().next_deadline().unwrap_or(now + 1_000_000);
        // Re-read at least every 100 ms: a new round may bring its deadline forward.
        let wait = (next - now).clamp(0, 100_000) as u64;
        tokio::time::sleep(Duration::from_micros(wait)).await;
        let outs = shared.engine.borrow_mut().on_timeout(shared.clock.now_us());
        shared.dispatch(outs);
        shared.note_removed();
    }
}

/// A TLS handshake must finish in this long, as a request's headers must arrive in
/// `HEADER_TIMEOUT`: a client that stalls, or speaks plain HTTP to the TLS port, is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/1.1 (and the WebSocket upgrade) on one accepted connection, plain or TLS.
async fn serve_http<I>(io: I, shared: Rc<Shared>, peer: IpAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(req, shared.clone(), peer));
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

/// The TLS handshake, then HTTP. A failed or stalled handshake just closes this connection.
async fn serve_https(stream: tokio::net::TcpStream, acceptor: tokio_rustls::TlsAcceptor, shared: Rc<Shared>, peer: IpAddr) {
    let Ok(raw) = crate::conn::raw_tcp(stream, shared.clock) else { return };
    if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(raw)).await {
        serve_http(tls, shared, peer).await;
    }
}

/// `--metrics-bind`: plain HTTP on a listener of its own, serving `/metrics` and `/healthz`
/// only, until the server stops.
async fn metrics_listener(listener: TcpListener, shared: Rc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = shared.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let r = match http::metrics_route(&req) {
                Route::Metrics => http::metrics(shared.metrics_text()),
                Route::Health => shared.health(),
                Route::Reply(r) => r,
                Route::Upgrade { .. } => http::not_found(),
            };
            std::future::ready(Ok::<_, std::convert::Infallible>(r))
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(16 * 1024)
            .serve_connection(TokioIo::new(stream), svc);
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
    }
}

/// Serves on `listener` (and `/metrics` on `metrics`, if given) until `shutdown` resolves;
/// then every WebSocket gets close 1001. Must run inside a `LocalSet`.
pub async fn run(listener: TcpListener, metrics: Option<TcpListener>, config: Config, shutdown: impl Future<Output = ()>) {
    let acceptor = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let shared = Shared::new(config);
    let timer_task = tokio::task::spawn_local(timers(shared.clone()));
    let metrics_task = metrics.map(|l| tokio::task::spawn_local(metrics_listener(l, shared.clone())));
    serve_until(&listener, &acceptor, &shared, shutdown).await;
    drain(&listener, &acceptor, &shared).await;
    drop(listener);
    info!(connections = shared.connections(), rooms = shared.engine.borrow().rooms(), "shutting down");
    timer_task.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    shared.closing.set(true);
    let _ = shared.shutdown.send(true);
    // Give connections a moment to send their close frames.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while shared.tasks.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Accepts connections until `until` resolves.
async fn serve_until(listener: &TcpListener, acceptor: &Option<tokio_rustls::TlsAcceptor>, shared: &Rc<Shared>, until: impl Future<Output = ()>) {
    tokio::pin!(until);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    // Out of file descriptors or similar: back off a moment rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                match acceptor {
                    None => {
                        tokio::task::spawn_local(serve_http(stream, shared, peer.ip()));
                    }
                    Some(acceptor) => {
                        tokio::task::spawn_local(serve_https(stream, acceptor.clone(), shared, peer.ip()));
                    }
                }
            }
            _ = &mut until => return,
        }
    }
}

/// After a stop is asked for (`--drain-secs`): new rooms are refused and `/healthz` says 503,
/// while rooms that are busy (a session running, or a `ready` waiting for its peer) may finish,
/// for up to the configured time or until a second signal.
async fn drain(listener: &TcpListener, acceptor: &Option<tokio_rustls::TlsAcceptor>, shared: &Rc<Shared>) {
    let limit = shared.config.drain;
    if limit.is_zero() {
        return;
    }
    shared.draining.set(true);
    let busy = || shared.engine.borrow().busy_rooms();
    info!(busy_rooms = busy(), limit_secs = limit.as_secs(), "draining: no new rooms; busy ones may finish (signal again to stop now)");
    let settled = async {
        while busy() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let until = async {
        tokio::select! {
            _ = settled => info!("drained: no room is busy"),
            _ = tokio::time::sleep(limit) => info!(busy_rooms = busy(), "drain time is up"),
            _ = signal() => info!(busy_rooms = busy(), "drain cut short"),
        }
    };
    serve_until(listener, acceptor, shared, until).await;
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

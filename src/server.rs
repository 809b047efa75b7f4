//! `sgp serve`: binds, accepts, serves HTTP with hyper and hands upgraded connections to
//! `conn`. Owns the state every connection shares (the room engine and the queues to
//! each connection) on one thread: `RefCell`, no locks, and no borrow held across `.await`.

use crate::clock::Clock;
use crate::gate::{Caps, Gate};
use crate::http::{self, Origins, Route};
use crate::legacy::{self, Legacy};
use crate::protocol::{board_text, to_text};
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
}

impl Config {
    /// What `sgp serve` uses unless told otherwise.
    pub fn new(origins: Origins, legacy: bool) -> Config {
        Config { origins, legacy, ping_every: Duration::from_secs(20), silence: Duration::from_secs(60), tls: None, trust_proxy: false, caps: Caps::for_fd_limit(1024) }
    }
}

/// State shared by every task of the server.
pub struct Shared {
    pub clock: Clock,
    pub engine: RefCell<Engine>,
    /// The original client's shared table (used only with `--legacy`).
    pub legacy: RefCell<Legacy>,
    pub config: Config,
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
            queues: RefCell::new(FastMap::default()),
            next_id: Cell::new(1),
            tasks: Cell::new(0),
            shutdown: watch::channel(false).0,
            board_texts: RefCell::new(FastMap::default()),
        })
    }

    pub fn register(&self) -> (ConnId, mpsc::Receiver<Utf8Bytes>) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.tasks.set(self.tasks.get() + 1);
        let (tx, rx) = mpsc::channel(crate::conn::OUT_QUEUE);
        self.queues.borrow_mut().insert(id, tx);
        (id, rx)
    }

    pub fn unregister(&self, id: ConnId) {
        self.queues.borrow_mut().remove(&id);
        self.legacy.borrow_mut().disconnect(id);
        let outs = self.engine.borrow_mut().disconnect(id);
        self.dispatch(outs);
    }

    /// The connection task has finished closing.
    pub fn finished(&self) {
        self.tasks.set(self.tasks.get().saturating_sub(1));
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
        for out in outs {
            self.deliver(&out.to, Utf8Bytes::from(to_text(&out.msg)));
        }
    }

    /// Answers a `board` request through the connection's queue (so it stays in order with
    /// what the room sent before), from the cache when the board has not changed.
    pub fn board_request(&self, id: ConnId, now: i64) {
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

    fn health(&self) -> String {
        serde_json::json!({
            "ok": true,
            "version": env!("CARGO_PKG_VERSION"),
            "rooms": self.engine.borrow().rooms(),
            "connections": self.connections(),
        })
        .to_string()
    }
}

async fn handle(req: Request<Incoming>, shared: Rc<Shared>, peer: IpAddr) -> Result<Response<http::Body>, std::convert::Infallible> {
    Ok(match http::route(&req, &shared.config.origins, shared.config.trust_proxy) {
        Route::Reply(r) => r,
        Route::Health => http::json(shared.health()),
        Route::Upgrade { accept } => {
            let addr = http::client_ip(req.headers(), shared.config.trust_proxy, peer);
            let admitted = match Admission::new(&shared, addr) {
                Ok(a) => a,
                Err(refused) => return Ok(http::too_many(refused)),
            };
            // Spawned before the 101 goes out: hyper resolves the upgrade once it has.
            tokio::task::spawn_local(async move {
                if let Ok(upgraded) = hyper::upgrade::on(req).await {
                    let io = crate::conn::ServerIo::new(upgraded, shared.clock);
                    crate::conn::run(io, shared.clone(), addr).await;
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

/// Serves on `listener` until `shutdown` resolves; then every WebSocket gets close 1001.
/// Must run inside a `LocalSet`.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) {
    let acceptor = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let shared = Shared::new(config);
    let timer_task = tokio::task::spawn_local(timers(shared.clone()));
    tokio::pin!(shutdown);
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
                match &acceptor {
                    None => {
                        tokio::task::spawn_local(serve_http(stream, shared, peer.ip()));
                    }
                    Some(acceptor) => {
                        tokio::task::spawn_local(serve_https(stream, acceptor.clone(), shared, peer.ip()));
                    }
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    timer_task.abort();
    let _ = shared.shutdown.send(true);
    // Give connections a moment to send their close frames.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while shared.tasks.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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

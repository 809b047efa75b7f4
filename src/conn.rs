//! One WebSocket connection: frames ⇄ messages. It stamps each frame's receive time (the
//! kernel's arrival time of the data that completed the frame, or else the moment the frame
//! is read, before parsing: see [`ServerIo`]), answers clock-sync pings itself, hands
//! everything else to the room engine, and is the only writer to its socket: the rest of
//! the server reaches it through a bounded queue. It closes with the RFC 6455 code that
//! fits: 1009 too large, 1003 binary, 1007 bad UTF-8, 1002 protocol error, 1008 flood or
//! too slow a reader, 1001 shutdown or silence.

use crate::legacy;
use crate::protocol::{parse_client, to_text, ClientMsg, ErrorCode, JoinAs, ProtoError, ServerMsg};
use crate::server::Shared;
use crate::clock::Clock;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Largest message or frame a client may send.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Each connection's WebSocket read buffer.
pub const READ_BUFFER: usize = 4 * 1024;
/// Messages waiting for a client before it counts as not reading.
pub const OUT_QUEUE: usize = 1024;
/// A write that cannot finish in this long means the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames a client may send at once, and per second after that, before it is a flood.
const FLOOD_BURST: f64 = 4000.0;
const FLOOD_PER_SEC: f64 = 40_000.0;

pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        // 4 KiB, as the core issue asks: 124 posts in one read. tungstenite zero-fills the
        // free part of this buffer before every read, the last (would-block) one included,
        // which a profile once showed as a sixth of the work of a post; 1 KiB measured
        // cheaper per post and 3 KiB smaller per idle connection, and both sizes meet the
        // targets (BENCHMARKS.md, "Core targets"). A longer message grows the buffer.
        .read_buffer_size(READ_BUFFER)
        // Frames wait in the write buffer until `flush` (or this much): `send_queued`
        // writes everything queued for a client with one system call.
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Which protocol a connection speaks, decided by its first message.
#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    Sgp,
    Legacy,
}

/// How a connection ended, for the close frame.
enum End {
    /// The socket went away: nothing more to send.
    Gone,
    /// The peer sent a close frame, which the codec has answered: flush the answer.
    Answered,
    /// We close with this code and reason.
    Close(CloseCode, &'static str),
    /// After a protocol or size error the codec cannot be trusted: write the close frame raw.
    RawClose(u16, &'static str),
}

impl End {
    /// What `sgp_connections_closed_total` calls this end (`metrics::CLOSE_REASONS`).
    fn reason(&self) -> &'static str {
        match self {
            End::Gone | End::Answered => "peer",
            End::Close(CloseCode::Away, r) if r.starts_with("silent") => "silence",
            End::Close(CloseCode::Away, _) => "shutdown",
            End::Close(CloseCode::Policy, r) if r.starts_with("flood") => "flood",
            End::Close(CloseCode::Policy, r) if r.starts_with("too slow") => "too_slow",
            End::Close(CloseCode::Unsupported, _) => "binary",
            End::RawClose(1009, _) => "size",
            End::RawClose(1007, _) => "utf8",
            End::RawClose(1002, _) => "protocol",
            _ => "other",
        }
    }
}

/// The socket of an upgraded connection. On Linux it is read with `recvmsg` and
/// `SO_TIMESTAMPNS`, so that each read brings the kernel's receive time of its data: a
/// frame's stamp is then when it reached this machine, not when this single thread got
/// round to reading it (under load, or when the OS runs something else first, that was
/// milliseconds later, and every post of the room waited the same way). Where that is not
/// available, the connection is served as before, stamped when read.
pub enum ServerIo {
    #[cfg(target_os = "linux")]
    Stamped(StampedTcp),
    /// Through TLS (`--tls-cert`): what hyper had read past the request, then the stream,
    /// whose socket is stamped as above.
    Tls(Box<TlsConn>),
    Plain(TokioIo<hyper::upgrade::Upgraded>),
    /// A socket lost between the upgrade and the first read: reads end, writes fail.
    Gone,
}

impl ServerIo {
    pub fn new(upgraded: hyper::upgrade::Upgraded, clock: Clock) -> ServerIo {
        #[cfg(target_os = "linux")]
        {
            match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
                Ok(parts) => match StampedTcp::new(parts.io.into_inner(), parts.read_buf, clock) {
                    Ok(s) => ServerIo::Stamped(s),
                    // The socket could not be taken over: the connection ends at once.
                    Err(_) => ServerIo::Gone,
                },
                Err(upgraded) => ServerIo::tls_or_plain(upgraded),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = clock;
            ServerIo::tls_or_plain(upgraded)
        }
    }

    fn tls_or_plain(upgraded: hyper::upgrade::Upgraded) -> ServerIo {
        match upgraded.downcast::<TokioIo<TlsTcp>>() {
            Ok(parts) => ServerIo::Tls(Box::new(TlsConn::new(bytes::Bytes::copy_from_slice(&parts.read_buf), parts.io.into_inner()))),
            Err(upgraded) => ServerIo::Plain(TokioIo::new(upgraded)),
        }
    }

    /// The server time (µs) at which the data of the last read arrived, if the kernel said.
    fn rx_us(&self) -> Option<i64> {
        match self {
            #[cfg(target_os = "linux")]
            ServerIo::Stamped(s) => s.rx_us,
            #[cfg(target_os = "linux")]
            ServerIo::Tls(t) if !t.from_pre => t.tls.get_ref().0.rx_us,
            ServerIo::Tls(_) | ServerIo::Plain(_) | ServerIo::Gone => None,
        }
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            #[cfg(target_os = "linux")]
            ServerIo::Stamped(s) => s.poll_read(cx, buf),
            ServerIo::Tls(t) => t.poll_read(cx, buf),
            ServerIo::Plain(p) => Pin::new(p).poll_read(cx, buf),
            ServerIo::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            #[cfg(target_os = "linux")]
            ServerIo::Stamped(s) => s.poll_write(cx, buf),
            ServerIo::Tls(t) => Pin::new(&mut t.tls).poll_write(cx, buf),
            ServerIo::Plain(p) => Pin::new(p).poll_write(cx, buf),
            ServerIo::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            #[cfg(target_os = "linux")]
            ServerIo::Stamped(_) => Poll::Ready(Ok(())),
            ServerIo::Tls(t) => Pin::new(&mut t.tls).poll_flush(cx),
            ServerIo::Plain(p) => Pin::new(p).poll_flush(cx),
            ServerIo::Gone => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            #[cfg(target_os = "linux")]
            ServerIo::Stamped(s) => Poll::Ready(s.fd.get_ref().shutdown(std::net::Shutdown::Write)),
            ServerIo::Tls(t) => Pin::new(&mut t.tls).poll_shutdown(cx),
            ServerIo::Plain(p) => Pin::new(p).poll_shutdown(cx),
            ServerIo::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// An upgraded TLS connection: what hyper had read past the request (decrypted), then the
/// stream. `from_pre`: the last read came from the former, which has no receive time.
pub struct TlsConn {
    pre: bytes::Bytes,
    tls: TlsTcp,
    from_pre: bool,
}

impl TlsConn {
    pub fn new(pre: bytes::Bytes, tls: TlsTcp) -> TlsConn {
        TlsConn { pre, tls, from_pre: false }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.from_pre = !self.pre.is_empty();
        if self.from_pre {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

/// A TLS connection as the server accepts it: over a stamped socket where there is one.
pub type TlsTcp = tokio_rustls::server::TlsStream<RawTcp>;
#[cfg(target_os = "linux")]
pub type RawTcp = StampedTcp;
#[cfg(not(target_os = "linux"))]
pub type RawTcp = tokio::net::TcpStream;

/// An accepted socket, ready to carry TLS: stamped from its first byte where the OS can.
pub fn raw_tcp(tcp: tokio::net::TcpStream, clock: Clock) -> io::Result<RawTcp> {
    #[cfg(target_os = "linux")]
    return StampedTcp::new(tcp, bytes::Bytes::new(), clock);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = clock;
        Ok(tcp)
    }
}

#[cfg(target_os = "linux")]
impl AsyncRead for StampedTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_read(cx, buf)
    }
}

#[cfg(target_os = "linux")]
impl AsyncWrite for StampedTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.fd.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// A TCP socket read with `recvmsg` and the kernel's receive timestamps.
#[cfg(target_os = "linux")]
pub struct StampedTcp {
    fd: tokio::io::unix::AsyncFd<std::net::TcpStream>,
    /// Bytes that came with the upgrade request (no kernel time for those).
    pre: bytes::Bytes,
    clock: Clock,
    /// Server time (µs) at which the data of the last read arrived.
    rx_us: Option<i64>,
}

#[cfg(target_os = "linux")]
impl StampedTcp {
    fn new(tcp: tokio::net::TcpStream, pre: bytes::Bytes, clock: Clock) -> io::Result<StampedTcp> {
        let tcp = tcp.into_std()?;
        // If this fails, reads simply carry no time and frames are stamped when read.
        enable_rx_stamps(&tcp);
        // SAFETY: `tcp` owns its descriptor (it came out of tokio's TcpStream, nonblocking),
        // and the AsyncFd that takes it over is its only owner until both are dropped.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(tcp)? };
        // `pre` points into hyper's read buffer (8 KiB or more), empty or not: keeping it
        // would keep that buffer alive for the whole connection. Copy out what it holds.
        let pre = bytes::Bytes::copy_from_slice(&pre);
        Ok(StampedTcp { fd, pre, clock, rx_us: None })
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre.split_to(n));
            self.rx_us = None;
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let dst = buf.initialize_unfilled();
            let len = dst.len();
            match guard.try_io(|fd| recv_stamped(fd.get_ref(), dst)) {
                Ok(Ok((n, kernel_ns))) => {
                    // As tokio does for its own TcpStream: a short read drained the socket.
                    if n < len {
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    self.rx_us = kernel_ns.map(|ns| self.server_time(ns));
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        use std::io::Write;
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| fd.get_ref().write(buf)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    /// A kernel time (ns on the wall clock) as server time (µs), never later than now. The
    /// server clock does not follow the wall clock's steps, so the two are compared afresh.
    fn server_time(&self, kernel_ns: i64) -> i64 {
        let now = self.clock.now_us();
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        (kernel_ns / 1000 + (now - wall)).min(now)
    }
}

/// Asks the kernel to stamp what this socket receives (`SO_TIMESTAMPNS`).
#[cfg(target_os = "linux")]
fn enable_rx_stamps(tcp: &std::net::TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `on` (a c_int, as SO_TIMESTAMPNS expects) and nothing else.
    let r = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// One `recvmsg`: the bytes read and the kernel's receive time of the last of them (ns since
/// the epoch, wall clock), if it gave one.
#[cfg(target_os = "linux")]
fn recv_stamped(tcp: &std::net::TcpStream, dst: &mut [u8]) -> io::Result<(usize, Option<i64>)> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec { iov_base: dst.as_mut_ptr().cast(), iov_len: dst.len() };
    // Room for one timespec control message, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; every pointer in it refers to a live local buffer of the
    // length given, and recvmsg writes at most those lengths. CMSG_* walk only `control`,
    // within the length the kernel reports, and the timespec is read unaligned.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(tcp.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut stamp = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                let ns = t.tv_sec as i64 * 1_000_000_000 + t.tv_nsec as i64;
                stamp = (ns > 0).then_some(ns);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((n as usize, stamp))
    }
}

/// Serves one upgraded connection from `addr` (the client's, for the caps) until it ends.
pub async fn run(io: ServerIo, shared: Rc<Shared>, addr: std::net::IpAddr, room: Option<String>) {
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
    let ctx = Ctx { shared: &shared, addr, observing: std::cell::Cell::new(false), room };
    let (id, mut rx) = shared.register();
    // Whatever ends this task, a panic included, the connection leaves its room and the
    // server's count: a seat must never stay taken by a connection that is gone.
    let mut seat = Seat { shared: &shared, id, registered: true };
    // Shutdown is checked first on every turn of the loop, with an atomic load (`stopping`),
    // and waited for last (`shutdown`), only when nothing else is ready: polling a
    // `changed()` future takes the channel's lock each time, which cost more than a post.
    let stopping = shared.shutdown_signal();
    let mut shutdown_rx = shared.shutdown_signal();
    let shutdown = shutdown_rx.changed();
    tokio::pin!(shutdown);
    let ping_every = shared.config.ping_every;
    let silent_limit_us = shared.config.silence.as_micros() as i64;
    let mut pings = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    // One clock read per frame (server µs) serves the receive time, the flood bucket and
    // the silence check.
    let mut last_seen = shared.clock.now_us();
    let mut flood = (FLOOD_BURST, last_seen);
    let mut dialect = None;
    let mut coalescing = Coalescing::default();

    let end = loop {
        if stopping.has_changed().unwrap_or(true) {
            break End::Close(CloseCode::Away, "server shutting down");
        }
        tokio::select! {
            // Replies first: a client that reads must never be taken for one that does not
            // because its requests kept winning the race against their own answers.
            biased;
            out = rx.recv() => match out {
                Some(text) => {
                    if let Err(end) = send_queued(&mut ws, text, &mut rx).await {
                        break end;
                    }
                }
                // The server dropped our queue: we did not keep up with what was sent to us.
                None => break End::Close(CloseCode::Policy, "too slow: messages were not read"),
            },
            frame = ws.next() => {
                let now = shared.clock.now_us();
                last_seen = now;
                // The read that completed this frame is the last one (tungstenite does not
                // read while a whole frame waits in its buffer).
                let kernel_rx = ws.get_ref().rx_us();
                let rx = kernel_rx.map_or(now, |t| t.min(now));
                // Every frame a client sends counts toward the flood limit, pings and pongs too
                // (the codec answers each ping with a pong: a ping flood is work for us).
                if matches!(frame, Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) {
                    let (tokens, at) = &mut flood;
                    *tokens = (*tokens + (now - *at) as f64 * (FLOOD_PER_SEC / 1e6)).min(FLOOD_BURST) - 1.0;
                    *at = now;
                    if *tokens < 0.0 {
                        break End::Close(CloseCode::Policy, "flood: too many messages");
                    }
                }
                match frame {
                    None => break End::Gone,
                    Some(Ok(Message::Text(text))) => {
                        if let Some(t) = kernel_rx {
                            shared.metrics.frame_delay(now - t);
                        }
                        let stamp = kernel_rx.map(|_| rx);
                        if let Err(end) = on_text(&mut ws, &ctx, id, &text, rx, stamp, &mut dialect, &mut coalescing).await {
                            break end;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => break End::Close(CloseCode::Unsupported, "binary frames are not spoken here"),
                    // The codec has queued its answer (the same code, RFC 6455 §5.5.1): send it.
                    Some(Ok(Message::Close(_))) => break End::Answered,
                    Some(Ok(_)) => {} // ping (answered by the codec), pong, raw frame
                    Some(Err(e)) => break read_error(e),
                }
            }
            _ = pings.tick() => {
                if shared.clock.now_us() - last_seen >= silent_limit_us {
                    break End::Close(CloseCode::Away, "silent for too long");
                }
                if timeout(WRITE_TIMEOUT, ws.send(Message::Ping(Default::default()))).await.map_or(true, |r| r.is_err()) {
                    break End::Gone;
                }
            }
            _ = &mut shutdown => break End::Close(CloseCode::Away, "server shutting down"),
        }
    };
    seat.leave();
    shared.connection_closed(end.reason());
    finish(ws, end).await;
}

/// How a read that failed ends the connection.
fn read_error(e: WsError) -> End {
    match e {
        WsError::Capacity(_) => End::RawClose(1009, "message too large"),
        WsError::Utf8(_) => End::RawClose(1007, "text frames must be UTF-8"),
        // The socket closed without a close frame (a tab or a process gone): not a protocol
        // error to answer, and nothing to answer it on.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => End::Gone,
        WsError::Protocol(_) => End::RawClose(1002, "protocol error"),
        _ => End::Gone,
    }
}

/// Ends the connection as `end` says: a close frame (and a moment for the reply), an answer
/// already queued, raw bytes, or nothing.
async fn finish(mut ws: WebSocketStream<ServerIo>, end: End) {
    match end {
        End::Gone => {}
        End::Answered => {
            let _ = timeout(Duration::from_secs(1), ws.flush()).await;
        }
        End::Close(code, reason) => {
            let frame = CloseFrame { code, reason: reason.into() };
            if timeout(WRITE_TIMEOUT, ws.close(Some(frame))).await.is_ok() {
                // Wait briefly for the client's close reply so the frame is not lost to a reset.
                let _ = timeout(Duration::from_secs(1), async { while let Some(Ok(_)) = ws.next().await {} }).await;
            }
        }
        // Boxed: its drain buffer would otherwise sit in every connection's future.
        End::RawClose(code, reason) => Box::pin(raw_close(ws.get_mut(), code, reason)).await,
    }
}

/// A connection's place in the shared state, given back when it is dropped.
struct Seat<'a> {
    shared: &'a Shared,
    id: u64,
    registered: bool,
}

impl Seat<'_> {
    /// Leaves the room and the broadcast lists (before the close handshake).
    fn leave(&mut self) {
        if std::mem::take(&mut self.registered) {
            self.shared.unregister(self.id);
        }
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.leave();
        self.shared.finished();
    }
}

/// Posts that came in one piece with the frame after them (see `ServerMsg::Coalesced`).
/// A frame with the same kernel receive time as the post before it came in the same piece
/// (one read, or TCP's merging of segments that wait unread, which keeps the newest time),
/// so that post's own arrival is unknown.
#[derive(Default)]
struct Coalescing {
    /// The kernel's receive time of the latest posts, and how many posts in a row have it.
    stamp: Option<i64>,
    posts: u32,
}

impl Coalescing {
    /// Before a frame received at the kernel time `stamp` (if the kernel gave one): tells
    /// the poster of a finished run. Costs nothing on the way of a post that is not one.
    fn before(&mut self, shared: &Shared, id: u64, stamp: Option<i64>, is_post: bool) {
        let same = stamp.is_some() && self.stamp == stamp && self.posts > 0;
        let (skip, count) = match (same, is_post) {
            // The run goes on.
            (true, true) => {
                self.posts += 1;
                return;
            }
            // Anything but a post with that time (`done` among them: the poster must hear
            // before `closed`): every post of the run carries its time.
            (true, false) => (0, self.posts),
            // Another time: all but the latest post of the run carry that one's time.
            (false, _) => (1, self.posts.saturating_sub(1)),
        };
        if count > 0 {
            let outs = shared.engine.borrow_mut().tell_coalesced(id, skip, count);
            shared.dispatch(outs);
        }
        (self.stamp, self.posts) = if is_post { (stamp, 1) } else { (None, 0) };
    }
}

/// One text frame, received at `now` (`stamp`: the kernel's time, if it gave one). `Err`
/// ends the connection.
#[allow(clippy::too_many_arguments)]
/// What `on_text` needs of the server: the shared state and the client's address, and
/// whether this connection counts as one of its address's observers (given back on drop).
struct Ctx<'a> {
    shared: &'a Shared,
    addr: std::net::IpAddr,
    observing: std::cell::Cell<bool>,
    /// The room the upgrade's URL named (`/ws?room=…`): the only one this connection may
    /// create or join.
    room: Option<String>,
}

impl Ctx<'_> {
    /// Why `create`/`join` may not go ahead here, if it may not: it names another room than
    /// the URL, or creates while the server drains. A `create` without a code takes the URL's.
    fn refuse_entry(&self, msg: &mut ClientMsg) -> Option<ProtoError> {
        let named = match msg {
            ClientMsg::Create { room, .. } => {
                if self.shared.draining() {
                    return Some(ProtoError::new(ErrorCode::Draining, "this server is draining before it stops and takes no new rooms: create the room again (with a new code, another server may take it)"));
                }
                if room.is_none() {
                    room.clone_from(&self.room);
                }
                room.as_deref()
            }
            ClientMsg::Join { room, .. } => Some(room.as_str()),
            _ => return None,
        };
        match (&self.room, named) {
            (Some(url), Some(n)) if crate::room::normalize_code(n).as_ref() != Some(url) => {
                Some(ProtoError::new(ErrorCode::WrongRoom, format!("this connection was opened for room {url} (?room= in its URL); it may not enter another")))
            }
            _ => None,
        }
    }

    fn stop_observing(&self) {
        if self.observing.replace(false) {
            self.shared.gate.borrow_mut().unobserve(self.addr);
        }
    }
}

impl Drop for Ctx<'_> {
    fn drop(&mut self) {
        self.stop_observing();
    }
}

async fn on_text<S>(
    ws: &mut WebSocketStream<S>,
    ctx: &Ctx<'_>,
    id: u64,
    text: &str,
    now: i64,
    stamp: Option<i64>,
    dialect: &mut Option<Dialect>,
    coalescing: &mut Coalescing,
) -> Result<(), End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = ctx.shared;
    if dialect.is_none() {
        if legacy::looks_legacy(text) {
            if !shared.config.legacy {
                let e = ProtoError::new(
                    ErrorCode::LegacyDisabled,
                    "this is the original student client's dialect; start the server with `sgp serve --legacy` to speak it",
                );
                shared.refused(e.code.as_str());
                return send(ws, to_text(&e.to_msg()).into()).await;
            }
            *dialect = Some(Dialect::Legacy);
        } else {
            *dialect = Some(Dialect::Sgp);
        }
    }
    if *dialect == Some(Dialect::Legacy) {
        shared.legacy_message(id, text, now);
        return Ok(());
    }
    let msg = parse_client(text);
    coalescing.before(shared, id, stamp, matches!(msg, Ok(ClientMsg::Post { .. })));
    match msg {
        Err(e) => {
            shared.refused(e.code.as_str());
            send(ws, to_text(&e.to_msg()).into()).await
        }
        Ok(ClientMsg::Ping { t0_us }) => {
            let pong = ServerMsg::Pong { t0_us, t1_us: now, t2_us: shared.clock.now_us() };
            send(ws, to_text(&pong).into()).await
        }
        Ok(ClientMsg::Board {}) => {
            shared.board_request(id, now);
            Ok(())
        }
        Ok(ClientMsg::Create { .. }) if !shared.gate.borrow_mut().may_create(ctx.addr, now) => {
            let n = shared.gate.borrow().caps().rooms_per_minute;
            let e = ProtoError::new(ErrorCode::TooManyRooms, format!("this address has created {n} rooms in the last minute, the most it may; wait a little"));
            shared.refused(e.code.as_str());
            send(ws, to_text(&e.to_msg()).into()).await
        }
        Ok(ClientMsg::Join { as_: Some(JoinAs::Observer), .. }) if !shared.gate.borrow().may_observe(ctx.addr) => {
            let n = shared.gate.borrow().caps().observers_per_address;
            let e = ProtoError::new(ErrorCode::TooManyObservers, format!("this address watches {n} rooms already, the most one address may"));
            shared.refused(e.code.as_str());
            send(ws, to_text(&e.to_msg()).into()).await
        }
        Ok(mut msg) => {
            if let Some(e) = ctx.refuse_entry(&mut msg) {
                shared.refused(e.code.as_str());
                return send(ws, to_text(&e.to_msg()).into()).await;
            }
            let (watch, leave) = (matches!(msg, ClientMsg::Join { as_: Some(JoinAs::Observer), .. }), matches!(msg, ClientMsg::Leave {}));
            let outs = shared.handle(id, msg, now);
            if watch && outs.iter().any(|o| o.to == [id] && matches!(o.msg, ServerMsg::Joined { role: crate::protocol::Role::Observer, .. })) {
                shared.gate.borrow_mut().observe(ctx.addr);
                ctx.observing.set(true);
            } else if leave {
                ctx.stop_observing();
            }
            shared.deliver_all(outs);
            Ok(())
        }
    }
}

async fn send<S>(ws: &mut WebSocketStream<S>, text: Utf8Bytes) -> Result<(), End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match timeout(WRITE_TIMEOUT, ws.send(Message::Text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Gone),
        Err(_) => Err(End::Close(CloseCode::Policy, "too slow: messages were not read")),
    }
}

/// Most queued messages written with one flush.
const BATCH: usize = 256;

/// Sends `first` and whatever else is already queued, with one flush (one system call when
/// it all fits the socket) instead of one per message.
async fn send_queued<S>(ws: &mut WebSocketStream<S>, first: Utf8Bytes, rx: &mut mpsc::Receiver<Utf8Bytes>) -> Result<(), End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let write = async {
        feed_text(ws, first).await?;
        for _ in 1..BATCH {
            match rx.try_recv() {
                Ok(text) => feed_text(ws, text).await?,
                Err(_) => break,
            }
        }
        ws.flush().await
    };
    match timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Gone),
        Err(_) => Err(End::Close(CloseCode::Policy, "too slow: messages were not read")),
    }
}

/// Messages longer than this are sent in fragments of this size, each written out before the
/// next is made.
const FRAGMENT: usize = 64 * 1024;

/// Queues one message. A long one (a big board, sent to every observer of a room) goes out in
/// fragments, flushed one by one: the codec copies a message into the connection's write
/// buffer whole, so a client that reads slowly would hold a copy of every board it is sent;
/// now it holds one fragment, and the queue a reference to the shared text.
async fn feed_text<S>(ws: &mut WebSocketStream<S>, text: Utf8Bytes) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if text.len() <= FRAGMENT {
        return ws.feed(Message::Text(text)).await;
    }
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let bytes = bytes::Bytes::from(text);
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + FRAGMENT).min(bytes.len());
        let op = if at == 0 { Data::Text } else { Data::Continue };
        ws.send(Message::Frame(Frame::message(bytes.slice(at..end), OpCode::Data(op), end == bytes.len()))).await?;
        at = end;
    }
    Ok(())
}

/// Writes a close frame straight to the socket, then drains what the client still sends
/// for a moment, so that the close frame is read before the socket goes.
async fn raw_close<S>(io: &mut S, code: u16, reason: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut frame = vec![0x88, (2 + reason.len()) as u8];
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason.as_bytes());
    if timeout(WRITE_TIMEOUT, async {
        io.write_all(&frame).await?;
        io.flush().await?;
        io.shutdown().await
    })
    .await
    .is_err()
    {
        return;
    }
    let mut sink = vec![0u8; 4096];
    let _ = timeout(Duration::from_secs(1), async {
        while let Ok(n) = io.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use std::net::{TcpListener, TcpStream};

    fn wall_ns() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
    }

    #[test]
    fn the_kernel_stamps_what_arrives() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        assert!(enable_rx_stamps(&s));
        // The kernel turns receive stamping on for the whole machine lazily (a static key
        // flipped from a work queue), so the first packets after the first socket asks may
        // come without a time: wait, bounded, until one does.
        let mut buf = [0u8; 64];
        let mut warm = false;
        for _ in 0..200 {
            c.write_all(b"w").unwrap();
            std::thread::sleep(Duration::from_millis(5));
            if recv_stamped(&s, &mut buf).unwrap().1.is_some() {
                warm = true;
                break;
            }
        }
        assert!(warm, "the kernel never stamped a received packet");
        let before = wall_ns();
        c.write_all(b"hello").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let (n, stamp) = recv_stamped(&s, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        // Stamped on arrival, not 20 ms later when read.
        let t = stamp.expect("a receive time");
        assert!(t >= before - 1_000_000 && t < wall_ns() - 10_000_000, "{} {}", t - before, wall_ns() - t);
        // Without the option there is no time, and nothing breaks.
        let mut c2 = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s2, _) = l.accept().unwrap();
        c2.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(recv_stamped(&s2, &mut buf).unwrap(), (1, None));
    }

    /// Through TLS the socket under the stream is stamped too: a frame's time is when its
    /// bytes arrived, not when this thread decrypted them.
    #[test]
    fn tls_reads_carry_the_kernels_time() {
        use rustls::pki_types::pem::PemObject;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let made = crate::tls::self_signed(&["localhost".to_string()]).unwrap();
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let mut roots = rustls::RootCertStore::empty();
            roots.add(rustls::pki_types::CertificateDer::from_pem_slice(made.ca_pem.as_bytes()).unwrap()).unwrap();
            let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
            let client = async {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                // Else Nagle holds a small write until the last one's (delayed) ack.
                tcp.set_nodelay(true).unwrap();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap()
            };
            let server = async {
                let (tcp, _) = l.accept().await.unwrap();
                let raw = raw_tcp(tcp, Clock::new()).unwrap();
                tokio_rustls::TlsAcceptor::from(made.config.clone()).accept(raw).await.unwrap()
            };
            let (mut c, s) = tokio::join!(client, server);
            let mut io = ServerIo::Tls(Box::new(TlsConn::new(bytes::Bytes::from_static(b"pre"), s)));
            let clock = Clock::new();
            let mut buf = [0u8; 64];
            // What hyper had read first comes first, with no time of its own.
            let n = io.read(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], io.rx_us()), (&b"pre"[..], None));
            // Warm the kernel's stamping (see above), then time one message.
            let mut stamped = None;
            for _ in 0..200 {
                c.write_all(b"w").await.unwrap();
                c.flush().await.unwrap();
                let n = io.read(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], b"w");
                stamped = io.rx_us();
                if stamped.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(stamped.is_some(), "never stamped through TLS");
            c.write_all(b"hello").await.unwrap();
            c.flush().await.unwrap();
            let sent = clock.now_us();
            std::thread::sleep(Duration::from_millis(30));
            let n = io.read(&mut buf).await.unwrap();
            let read = clock.now_us();
            assert_eq!(&buf[..n], b"hello");
            let t = io.rx_us().expect("a receive time through TLS");
            // Within a few ms of sending (the two clocks agree to the wall clock's reading),
            // and well before it was read 30 ms later.
            assert!(t >= sent - 5_000 && t <= read - 20_000, "sent {sent}, stamped {t}, read {read}");
        });
    }
}

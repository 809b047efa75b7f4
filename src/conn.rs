//! One WebSocket connection: frames ⇄ messages. It stamps each frame's receive time the
//! moment the frame is read (before parsing), answers clock-sync pings itself, hands
//! everything else to the room engine, and is the only writer to its socket: the rest of
//! the server reaches it through a bounded queue. It closes with the RFC 6455 code that
//! fits: 1009 too large, 1003 binary, 1007 bad UTF-8, 1002 protocol error, 1008 flood or
//! too slow a reader, 1001 shutdown or silence.

use crate::legacy;
use crate::protocol::{parse_client, to_text, ClientMsg, ErrorCode, ProtoError, ServerMsg};
use crate::server::Shared;
use futures_util::{SinkExt, StreamExt};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Largest message or frame a client may send.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Messages waiting for a client before it counts as not reading.
pub const OUT_QUEUE: usize = 1024;
/// A write that cannot finish in this long means the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const PING_EVERY: Duration = Duration::from_secs(20);
const SILENT_LIMIT: Duration = Duration::from_secs(60);
/// Frames a client may send at once, and per second after that, before it is a flood.
const FLOOD_BURST: f64 = 4000.0;
const FLOOD_PER_SEC: f64 = 40_000.0;

pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
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
    /// The peer closed or the socket went away: nothing more to send.
    Gone,
    /// We close with this code and reason.
    Close(CloseCode, &'static str),
    /// After a protocol or size error the codec cannot be trusted: write the close frame raw.
    RawClose(u16, &'static str),
}

/// Serves one upgraded connection until it ends.
pub async fn run<S>(io: S, shared: Rc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
    let (id, mut rx) = shared.register();
    let mut shutdown = shared.shutdown_signal();
    let mut last_seen = Instant::now();
    let mut pings = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut flood = (FLOOD_BURST, Instant::now());
    let mut dialect = None;

    let end = loop {
        tokio::select! {
            // Replies first: a client that reads must never be taken for one that does not
            // because its requests kept winning the race against their own answers.
            biased;
            _ = shutdown.changed() => break End::Close(CloseCode::Away, "server shutting down"),
            out = rx.recv() => match out {
                Some(text) => {
                    if let Err(end) = send(&mut ws, text).await {
                        break end;
                    }
                }
                // The server dropped our queue: we did not keep up with what was sent to us.
                None => break End::Close(CloseCode::Policy, "too slow: messages were not read"),
            },
            frame = ws.next() => {
                let now = shared.clock.now_us();
                last_seen = Instant::now();
                match frame {
                    None => break End::Gone,
                    Some(Ok(Message::Text(text))) => {
                        let (tokens, at) = &mut flood;
                        *tokens = (*tokens + at.elapsed().as_secs_f64() * FLOOD_PER_SEC).min(FLOOD_BURST) - 1.0;
                        *at = Instant::now();
                        if *tokens < 0.0 {
                            break End::Close(CloseCode::Policy, "flood: too many messages");
                        }
                        if let Err(end) = on_text(&mut ws, &shared, id, &text, now, &mut dialect).await {
                            break end;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => break End::Close(CloseCode::Unsupported, "binary frames are not spoken here"),
                    Some(Ok(Message::Close(_))) => break End::Gone,
                    Some(Ok(_)) => {} // ping (answered by the codec), pong, raw frame
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                        break End::RawClose(1009, "message too large")
                    }
                    Some(Err(WsError::Capacity(_))) => break End::RawClose(1009, "message too large"),
                    Some(Err(WsError::Utf8(_))) => break End::RawClose(1007, "text frames must be UTF-8"),
                    Some(Err(WsError::Protocol(_))) => break End::RawClose(1002, "protocol error"),
                    Some(Err(_)) => break End::Gone,
                }
            }
            _ = pings.tick() => {
                if last_seen.elapsed() >= SILENT_LIMIT {
                    break End::Close(CloseCode::Away, "silent for too long");
                }
                if timeout(WRITE_TIMEOUT, ws.send(Message::Ping(Default::default()))).await.map_or(true, |r| r.is_err()) {
                    break End::Gone;
                }
            }
        }
    };
    shared.unregister(id);
    match end {
        End::Gone => {}
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
    shared.finished();
}

/// One text frame, received at `now`. `Err` ends the connection.
async fn on_text<S>(
    ws: &mut WebSocketStream<S>,
    shared: &Shared,
    id: u64,
    text: &str,
    now: i64,
    dialect: &mut Option<Dialect>,
) -> Result<(), End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if dialect.is_none() {
        if legacy::looks_legacy(text) {
            if !shared.config.legacy {
                let e = ProtoError::new(
                    ErrorCode::LegacyDisabled,
                    "this is the original student client's dialect; start the server with `sgp serve --legacy` to speak it",
                );
                return send(ws, to_text(&e.to_msg()).into()).await;
            }
            *dialect = Some(Dialect::Legacy);
        } else {
            *dialect = Some(Dialect::Sgp);
        }
    }
    if *dialect == Some(Dialect::Legacy) {
        let outs = shared.legacy.borrow_mut().handle(id, text, now);
        shared.dispatch_legacy(outs);
        return Ok(());
    }
    match parse_client(text) {
        Err(e) => send(ws, to_text(&e.to_msg()).into()).await,
        Ok(ClientMsg::Ping { t0_us }) => {
            let pong = ServerMsg::Pong { t0_us, t1_us: now, t2_us: shared.clock.now_us() };
            send(ws, to_text(&pong).into()).await
        }
        Ok(msg) => {
            let outs = shared.engine.borrow_mut().handle(id, msg, now);
            shared.dispatch(outs);
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

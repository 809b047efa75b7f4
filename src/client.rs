//! A small WebSocket client for the terminal commands (`pair`, `eve`): connect, send a
//! message and note when it left, receive the next server message, and sync clocks.

use crate::clock::{self, Clock, SyncSample};
use crate::protocol::{ClientMsg, ServerMsg};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub clock: Clock,
    /// Messages that arrived while a sync was waiting for its pongs, with their times.
    pending: VecDeque<(ServerMsg, i64)>,
}

/// Why the client could not go on.
#[derive(Debug)]
pub enum ClientError {
    /// Could not connect, or the server went away.
    Gone(String),
    /// The server sent something this client does not understand.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Gone(s) | ClientError::Protocol(s) => f.write_str(s),
        }
    }
}

/// `http://host:port` (or `ws://…`, with or without `/ws`) → `ws://host:port/ws`.
pub fn ws_url(server: &str) -> Result<String, String> {
    let s = server.trim().trim_end_matches('/');
    let rest = if let Some(r) = s.strip_prefix("http://").or_else(|| s.strip_prefix("ws://")) {
        r
    } else if s.starts_with("https://") || s.starts_with("wss://") {
        return Err(format!("{server}: TLS is not supported; put sgp behind a proxy or use http://"));
    } else if s.contains("://") {
        return Err(format!("{server}: expected an http:// or ws:// URL"));
    } else {
        s
    };
    let rest = rest.strip_suffix("/ws").unwrap_or(rest);
    if rest.is_empty() || rest.contains('/') {
        return Err(format!("{server}: expected http://HOST:PORT"));
    }
    Ok(format!("ws://{rest}/ws"))
}

impl Client {
    pub async fn connect(server: &str) -> Result<Client, ClientError> {
        let url = ws_url(server).map_err(ClientError::Gone)?;
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
            .await
            .map_err(|e| ClientError::Gone(format!("cannot reach the server at {server}: {e}")))?;
        Ok(Client { ws, clock: Clock::new(), pending: VecDeque::new() })
    }

    /// Sends a message; returns the local time (µs) taken just before it was written.
    pub async fn send(&mut self, msg: &ClientMsg) -> Result<i64, ClientError> {
        let text = serde_json::to_string(msg).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.send_text(text).await
    }

    pub async fn send_text(&mut self, text: String) -> Result<i64, ClientError> {
        self.send_text_timed(text).await.map(|(t, _)| t)
    }

    /// Sends a text frame; returns the local times (µs) just before it was written and once
    /// the write returned (a long gap means this process was held up around the write).
    pub async fn send_text_timed(&mut self, text: String) -> Result<(i64, i64), ClientError> {
        let t = self.clock.now_us();
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| ClientError::Gone(format!("the server went away: {e}")))?;
        Ok((t, self.clock.now_us()))
    }

    /// The next message from the server.
    pub async fn recv(&mut self) -> Result<ServerMsg, ClientError> {
        self.recv_timed().await.map(|(m, _)| m)
    }

    /// The next message from the server, with the local time (µs) it was read.
    pub async fn recv_timed(&mut self) -> Result<(ServerMsg, i64), ClientError> {
        match self.pending.pop_front() {
            Some(m) => Ok(m),
            None => self.recv_wire().await,
        }
    }

    /// The next message off the socket, with the local time it was read.
    async fn recv_wire(&mut self) -> Result<(ServerMsg, i64), ClientError> {
        loop {
            let frame = self.ws.next().await;
            let t = self.clock.now_us();
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let msg = serde_json::from_str(&text)
                        .map_err(|e| ClientError::Protocol(format!("unexpected message from the server ({e}): {text}")))?;
                    return Ok((msg, t));
                }
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map(|f| format!(" ({} {})", u16::from(f.code), f.reason)).unwrap_or_default();
                    return Err(ClientError::Gone(format!("the server closed the connection{why}")));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Gone(format!("the server went away: {e}"))),
                None => return Err(ClientError::Gone("the server closed the connection".into())),
            }
        }
    }

    /// Clock sync (docs/protocol.md §2): `samples` ping/pong exchanges, the least delayed one wins.
    pub async fn sync(&mut self, samples: usize) -> Result<SyncSample, ClientError> {
        let got = self.sync_samples(samples).await?;
        clock::best(&got).ok_or_else(|| ClientError::Protocol("no clock sample".into()))
    }

    /// `samples` ping/pong exchanges, all of them.
    pub async fn sync_samples(&mut self, samples: usize) -> Result<Vec<SyncSample>, ClientError> {
        let mut got = Vec::with_capacity(samples);
        while got.len() < samples {
            // The t0 we send is the time we measure from.
            let t0 = self.clock.now_us();
            let text = format!(r#"{{"type":"ping","t0_us":{t0}}}"#);
            self.send_text(text).await?;
            loop {
                let (msg, t3) = self.recv_wire().await?;
                match msg {
                    ServerMsg::Pong { t0_us, t1_us, t2_us } if t0_us == t0 => {
                        got.push(clock::sample(t0, t1_us, t2_us, t3));
                        break;
                    }
                    ServerMsg::Pong { .. } => {}
                    other => self.pending.push_back((other, t3)),
                }
            }
        }
        Ok(got)
    }

    /// Closes politely (best effort).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::ws_url;

    #[test]
    fn urls() {
        assert_eq!(ws_url("http://127.0.0.1:8080").unwrap(), "ws://127.0.0.1:8080/ws");
        assert_eq!(ws_url("http://127.0.0.1:8080/").unwrap(), "ws://127.0.0.1:8080/ws");
        assert_eq!(ws_url("ws://h:1/ws").unwrap(), "ws://h:1/ws");
        assert_eq!(ws_url("h:1").unwrap(), "ws://h:1/ws");
        assert!(ws_url("https://h").is_err());
        assert!(ws_url("ftp://h").is_err());
        assert!(ws_url("http://h/x/y").is_err());
    }
}

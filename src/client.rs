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

/// A server as the clients are given it: `http://host:port`, `https://host/sub/path/`,
/// `ws://…/ws`, `wss://…`, or a bare `host:port`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerUrl {
    pub tls: bool,
    /// `host:port` as given (the port may be left out: 80, or 443 with TLS).
    pub authority: String,
    /// The path before `/ws`, without a trailing slash (`""` at the root, `/sgp` under one).
    pub path: String,
}

impl ServerUrl {
    pub fn parse(server: &str) -> Result<ServerUrl, String> {
        let s = server.trim();
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://").or_else(|| s.strip_prefix("ws://")) {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://").or_else(|| s.strip_prefix("wss://")) {
            (true, r)
        } else if s.contains("://") {
            return Err(format!("{server}: expected an http://, https://, ws:// or wss:// URL"));
        } else {
            (false, s)
        };
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        if authority.is_empty() || authority.contains(['?', '#', '@', ' ']) || path.contains(['?', '#', ' ']) {
            return Err(format!("{server}: expected http[s]://HOST[:PORT][/PATH]"));
        }
        let path = path.trim_end_matches('/');
        let path = path.strip_suffix("/ws").or_else(|| (path == "ws").then_some("")).unwrap_or(path);
        let path = if path.is_empty() { String::new() } else { format!("/{path}") };
        Ok(ServerUrl { tls, authority: authority.to_string(), path })
    }

    /// The WebSocket URL: `ws[s]://host:port[/path]/ws`.
    pub fn ws(&self) -> String {
        format!("{}://{}{}/ws", if self.tls { "wss" } else { "ws" }, self.authority, self.path)
    }

    /// The WebSocket URL for a room (docs/protocol.md §3, "Codes in the URL"):
    /// `…/ws?room=ABCDE-FGHJK`, so that a proxy may route by the code. `room` is canonical.
    pub fn ws_room(&self, room: Option<&str>) -> String {
        match room {
            Some(r) => format!("{}?room={r}", self.ws()),
            None => self.ws(),
        }
    }

    /// The host without the port (brackets kept for IPv6).
    pub fn host(&self) -> &str {
        let a = self.authority.as_str();
        match a.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') && p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => a,
        }
    }

    /// The port, given or the scheme's.
    pub fn port(&self) -> u16 {
        let given = self.authority.len() > self.host().len();
        match given {
            true => self.authority[self.host().len() + 1..].parse().unwrap_or(0),
            false if self.tls => 443,
            false => 80,
        }
    }
}

/// `http://host:port` (or any form [`ServerUrl::parse`] takes) → `ws[s]://host:port[/path]/ws`.
pub fn ws_url(server: &str) -> Result<String, String> {
    ServerUrl::parse(server).map(|u| u.ws())
}

/// Opens a WebSocket to `server` (wss with the clients' TLS settings, see [`crate::tls`]).
pub async fn open(server: &str) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, String> {
    open_room(server, None).await
}

/// Opens a WebSocket to `server` for room `room` (canonical), named in the URL.
pub async fn open_room(server: &str, room: Option<&str>) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, String> {
    let url = ServerUrl::parse(server)?;
    let connector = match url.tls {
        true => Some(tokio_tungstenite::Connector::Rustls(crate::tls::client_config()?)),
        false => None,
    };
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url.ws_room(room).as_str(), None, true, connector)
        .await
        .map_err(|e| {
            let e = e.to_string();
            let hint = if e.contains("certificate") {
                " (the server's certificate is not from a CA this machine trusts: for `sgp serve --tls-self-signed`, save the CA it printed and pass it with --ca-file)"
            } else {
                ""
            };
            format!("cannot reach the server at {server}: {e}{hint}")
        })?;
    Ok(ws)
}

impl Client {
    pub async fn connect(server: &str) -> Result<Client, ClientError> {
        Client::connect_room(server, None).await
    }

    /// A connection for room `room` (canonical; see [`ServerUrl::ws_room`]).
    pub async fn connect_room(server: &str, room: Option<&str>) -> Result<Client, ClientError> {
        let ws = open_room(server, room).await.map_err(ClientError::Gone)?;
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

    /// As `send_text_timed`, but only if `go(t)` says so, `t` being the clock read just before
    /// the send (the time returned): `None` if it did not.
    pub async fn send_text_if(&mut self, text: String, go: impl FnOnce(i64) -> bool) -> Result<Option<(i64, i64)>, ClientError> {
        let t = self.clock.now_us();
        if !go(t) {
            return Ok(None);
        }
        self.write_text(text).await?;
        Ok(Some((t, self.clock.now_us())))
    }

    /// Sends a text frame; returns the local times (µs) just before it was written and once
    /// the write returned (a long gap means this process was held up around the write).
    pub async fn send_text_timed(&mut self, text: String) -> Result<(i64, i64), ClientError> {
        let t = self.clock.now_us();
        self.write_text(text).await?;
        Ok((t, self.clock.now_us()))
    }

    async fn write_text(&mut self, text: String) -> Result<(), ClientError> {
        self.ws.send(Message::Text(text.into())).await.map_err(|e| ClientError::Gone(format!("the server went away: {e}")))
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
    use super::{ws_url, ServerUrl};

    #[test]
    fn urls() {
        assert_eq!(ws_url("http://127.0.0.1:8080").unwrap(), "ws://127.0.0.1:8080/ws");
        assert_eq!(ws_url("http://127.0.0.1:8080/").unwrap(), "ws://127.0.0.1:8080/ws");
        assert_eq!(ws_url("ws://h:1/ws").unwrap(), "ws://h:1/ws");
        assert_eq!(ws_url("h:1").unwrap(), "ws://h:1/ws");
        assert_eq!(ws_url("https://h").unwrap(), "wss://h/ws");
        assert_eq!(ws_url("wss://h:8443/ws").unwrap(), "wss://h:8443/ws");
        assert_eq!(ws_url("https://example.org/sgp/").unwrap(), "wss://example.org/sgp/ws");
        assert_eq!(ws_url("https://example.org/a/b/ws").unwrap(), "wss://example.org/a/b/ws");
        assert_eq!(ws_url("http://h/x/y").unwrap(), "ws://h/x/y/ws");
        let u = ServerUrl::parse("https://example.org/sgp/").unwrap();
        assert_eq!(u.ws_room(Some("ABCDE-FGHJK")), "wss://example.org/sgp/ws?room=ABCDE-FGHJK");
        assert_eq!(u.ws_room(None), "wss://example.org/sgp/ws");
        for bad in ["ftp://h", "http://", "https:///x", "http://h?room=1", "http://u@h", "http://h/a#b", ""] {
            assert!(ws_url(bad).is_err(), "{bad}");
        }
        let u = ServerUrl::parse("https://[::1]:8443/sgp").unwrap();
        assert_eq!((u.host(), u.port(), u.path.as_str()), ("[::1]", 8443, "/sgp"));
        assert_eq!(ServerUrl::parse("https://h").unwrap().port(), 443);
        assert_eq!(ServerUrl::parse("http://h").unwrap().port(), 80);
        assert_eq!(ServerUrl::parse("[::1]").unwrap().host(), "[::1]");
    }
}

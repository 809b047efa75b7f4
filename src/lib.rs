//! sgp — shared secret generation over an anonymous broadcast channel.
//!
//! # Layout
//!
//! - [`protocol`]: the messages, parameters and error codes on the wire (no I/O).
//! - [`clock`]: the server clock (wall clock at start + monotonic time) and clock sync.
//! - [`secret`]: the derivation from board to key (pure; shared test vectors with the web client).
//! - [`tolerance`]: the default-tolerance rule, one definition with the page's (pure).
//! - [`room`]: rooms, roles and rounds as a state machine (no I/O, no clock: time is passed in).
//! - [`http`]: HTTP routes, the embedded web client and the WebSocket upgrade check.
//! - [`conn`]: one WebSocket connection: frames ⇄ messages, receive timestamps, the only writer.
//! - [`legacy`]: the original student client's dialect (`--legacy`), a state machine.
//! - [`gate`]: caps on WebSockets in all and per address, and on room creation per address.
//! - [`server`]: `sgp serve`: the accept loop, shared state, timers and shutdown.
//! - [`metrics`]: the server's aggregate counters and their `/metrics` page.
//! - [`logs`]: the server's log (tracing, RUST_LOG, text or JSON) and its salted room names.
//! - [`tls`]: TLS settings: the server's certificate (files or `--tls-self-signed`), the clients' roots.
//! - [`client`]: a small WebSocket client used by the terminal commands.
//! - [`schedule`]: the Poisson posting schedule and precise waiting.
//! - [`poster`]: one poster's protocol logic as a state machine (no I/O, time passed in);
//!   `client/js/poster.js` is its twin (docs/poster.md).
//! - [`pair`]: `sgp pair`: drives the poster engine from a terminal (socket, timers, output).
//! - [`eve`]: `sgp eve`, the eavesdropper's seat.
//! - [`bench`]: `sgp bench`, measurements against a server of its own.
//! - [`audit`]: the eavesdropper's audit (a model that tries to tell posters apart), pure.

pub mod audit;
pub mod bench;
pub mod client;
pub mod clock;
pub mod conn;
pub mod eve;
pub mod gate;
pub mod http;
pub mod legacy;
pub mod logs;
pub mod metrics;
pub mod pair;
pub mod poster;
pub mod protocol;
pub mod room;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod tls;
pub mod tolerance;

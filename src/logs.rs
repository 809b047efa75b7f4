//! `sgp serve`'s log: tracing's events on stderr, filtered by `RUST_LOG` (default `info`), as
//! text or JSON lines, and the salted short hash that names a room in it instead of its code.
//! What may be logged, and what never is (who posted, a post's time, codes, tags, bits,
//! keys): SECURITY.md, "Logs and metrics".

use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines look (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(format!("--log-format {s:?}: expected text or json")),
        }
    }
}

/// The filter from `RUST_LOG` (unset or empty: `info`): a level, and/or `target=level` pairs,
/// comma-separated (`debug`, `sgp=trace,info`). tracing's `Targets`, not `EnvFilter`: the
/// latter's span and field-value syntax brings a regex engine (362 KB of the binary) that an
/// operator's `RUST_LOG=debug` does not need. A bad directive is an error.
pub fn filter(rust_log: Option<&str>) -> Result<Targets, String> {
    let spec = rust_log.map(str::trim).filter(|s| !s.is_empty()).unwrap_or("info");
    spec.parse::<Targets>().map_err(|e| format!("RUST_LOG {spec:?}: {e} (expected a level, or target=level pairs separated by commas)"))
}

/// Sends this process's events to stderr. Call once, before the server starts.
pub fn init(format: Format, filter: Targets) {
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(true).with_ansi(false);
    // `try_init` fails only if a subscriber is already set (tests): keep that one.
    let _ = match format {
        Format::Text => tracing_subscriber::registry().with(layer).with(filter).try_init(),
        Format::Json => tracing_subscriber::registry().with(layer.json().flatten_event(true)).with(filter).try_init(),
    };
}

/// A room as the log names it: the first 8 hex digits of SHA-256 over a salt drawn once per
/// process and the code. The same room has the same name for this run; the code cannot be
/// recovered from it, nor matched across runs.
pub fn room_tag(code: &str) -> String {
    static SALT: OnceLock<[u8; 16]> = OnceLock::new();
    let salt = SALT.get_or_init(|| {
        let mut s = [0u8; 16];
        crate::server::os_random(&mut s);
        s
    });
    let digest = Sha256::new().chain_update(salt).chain_update(code.as_bytes()).finalize();
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_filters_and_tags() {
        assert_eq!(Format::parse("json"), Ok(Format::Json));
        assert!(Format::parse("yaml").unwrap_err().contains("text or json"));
        assert!(filter(None).is_ok());
        assert!(filter(Some("sgp=debug,warn")).is_ok());
        assert!(filter(Some("sgp=loud")).is_err());
        let t = room_tag("ABCDE-FGHJK");
        assert_eq!(t.len(), 8);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(t, room_tag("ABCDE-FGHJK"));
        assert_ne!(t, room_tag("ABCDE-FGHJM"));
    }
}

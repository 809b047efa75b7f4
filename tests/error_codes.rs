//! Error codes, not text: every code is documented in docs/protocol.md §8 under its own name,
//! and no client (the terminal commands, the bench, the web client) recognises a refusal by
//! its English message.

use std::fs;

const ALL: &[sgp::protocol::ErrorCode] = {
    use sgp::protocol::ErrorCode::*;
    &[
        BadJson, UnknownType, BadField, NoSuchRoom, RoomFull, NotAllowed, RateLimited, TooLarge, LegacyDisabled, RoundRunning,
        RoundDropped, StaleConfirm, TooEarly, NoRound, OutsideWindow, TooManyPosts, BoardFull, TooManyRooms, TooManyObservers,
        RoomTaken, WrongRoom, Draining,
    ]
};

#[test]
fn every_code_has_its_own_name_and_a_row_in_the_protocol() {
    let doc = fs::read_to_string("docs/protocol.md").expect("docs/protocol.md");
    let s8 = doc.split("## 8.").nth(1).and_then(|t| t.split("\n## 9.").next()).expect("§8 in docs/protocol.md");
    let mut seen = std::collections::BTreeSet::new();
    for &c in ALL {
        let name = c.as_str();
        assert!(seen.insert(name), "{name} twice");
        assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(name), "the wire name is as_str");
        assert!(s8.contains(&format!("| `{name}` |")), "docs/protocol.md §8 has no row for `{name}`");
    }
}

/// The source of the clients, what reacts to the server's messages: the web client, and the
/// Rust files outside the server's own modules, each without its trailing unit tests.
fn client_sources() -> Vec<(String, String)> {
    const SERVER: &[&str] = &["room.rs", "protocol.rs", "conn.rs", "http.rs", "server.rs", "legacy.rs"];
    let mut out = Vec::new();
    let mut add = |dir: &str, ext: &str| {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|x| x.to_str()).unwrap_or("");
            if p.extension().and_then(|x| x.to_str()) == Some(ext) && !(dir == "src" && SERVER.contains(&name)) {
                let text = fs::read_to_string(&p).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
                out.push((p.display().to_string(), code));
            }
        }
    };
    add("client/js", "js");
    add("src", "rs");
    add("src/bench", "rs");
    out
}

#[test]
fn no_client_recognises_a_refusal_by_its_text() {
    // The ways a client could look at an error's text to decide what to do.
    let looks = [
        "message.starts_with(",
        "message.contains(",
        "message ==",
        "message.as_str() ==",
        "message.startsWith(",
        "message.includes(",
        ".test(text)",
        ".test(m.message)",
        ".test(String(m.message))",
        "message.match(",
    ];
    let mut found = Vec::new();
    for (path, text) in client_sources() {
        for (n, line) in text.lines().enumerate() {
            if looks.iter().any(|l| line.contains(l)) {
                found.push(format!("{path}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "clients must match error codes, not English text:\n{}", found.join("\n"));
}

//! End to end over real loopback sockets: `sgp pair` processes make keys through a real
//! `sgp serve`, `sgp eve` watches, many rooms run at once, and a poster dies mid-round.

mod common;
use common::*;
use serde_json::Value;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn two_terminals_agree_on_a_confirmed_256_bit_key_and_eve_sees_the_boards() {
    let server = Server::start(&[]);
    // The creator records the boards it derived from, to hold eve's against.
    let record = std::env::temp_dir().join(format!("sgp-eve-boards-{}.json", std::process::id()));
    let (creator, code, rest) = spawn_creator(&server, &["--record", record.to_str().unwrap()]);
    let (eve, eve_out) = spawn_eve(&server, &code, &[]);
    let eve_reader = read_rest(eve_out);
    let joiner = spawn_pair(&server, &["--room", &code]);
    let rest = read_rest(rest);
    let b = wait_output(joiner, Duration::from_secs(90));
    let a = wait_output(creator, Duration::from_secs(90));
    let a_text = rest.join().unwrap();
    let (ka, kb) = (key_of(&a, &a_text), key_of(&b, ""));

    for k in [&ka, &kb] {
        assert_eq!(k["confirmed"], true);
        assert!(k["strength"].as_u64().unwrap() >= 256, "{k}");
        assert_eq!(k["key"].as_str().unwrap().len(), 64);
        assert!(k["key"].as_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
    }
    for field in ["key", "bits", "n", "a", "strength", "tag", "log2_binom"] {
        assert_eq!(ka[field], kb[field], "{field} differs");
    }
    assert_eq!(ka["role"], "alice");
    assert_eq!(kb["role"], "bob");
    // The strength is what the ledger says: floor(log2 C) − tag − margin.
    let l = ka["log2_binom"].as_u64().unwrap() - ka["tag_bits"].as_u64().unwrap() - ka["margin_bits"].as_u64().unwrap();
    assert_eq!(ka["strength"].as_u64().unwrap(), l);
    assert_eq!(ka["bits"].as_str().unwrap().len() as u64, ka["n"].as_u64().unwrap());

    // Eve saw every board the posters derived from, with the same sizes and the same sift.
    let eve_out = wait_output(eve, Duration::from_secs(30));
    assert!(eve_out.status.success());
    let eve_lines = json_lines(&eve_reader.join().unwrap());
    let eve_rounds: Vec<&Value> = eve_lines.iter().filter_map(|v| v.get("round")).collect();
    let a_lines = json_lines(&a_text);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let _ = std::fs::remove_file(&record);
    let a_rounds: Vec<&Value> = a_lines.iter().filter_map(|v| v.get("round")).collect();
    assert!(!a_rounds.is_empty());
    for r in &a_rounds {
        let seen = eve_rounds
            .iter()
            .find(|e| e["session"] == r["session"] && e["round"] == r["round"])
            .unwrap_or_else(|| panic!("eve missed round {r}"));
        assert_eq!(seen["n"], r["n"], "board sizes differ");
        assert_eq!(seen["board"].as_array().unwrap().len() as u64, r["n"].as_u64().unwrap());
        // Entry for entry, the board alice derived from.
        let recorded = doc["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["session"] == r["session"] && x["round"] == r["round"])
            .unwrap_or_else(|| panic!("round {r} not in alice's record"));
        assert_eq!(seen["board"], recorded["board"], "eve saw another board in round {}", r["round"]);
        assert_eq!((&seen["t_start_us"], &seen["t_end_us"]), (&recorded["t_start_us"], &recorded["t_end_us"]));
        if r["kept"].is_u64() {
            // Alice's count is the public sift less the entries her own spans left out.
            let sifted = r["kept"].as_u64().unwrap() + r["left_out"].as_u64().unwrap_or(0);
            assert_eq!(seen["kept"].as_array().unwrap().len() as u64, sifted, "public sift differs");
        }
    }
    // Over the rounds that count (the last session's, less those dropped as out of sync),
    // eve's public sift keeps exactly the key's n entries.
    let last = a_rounds.last().unwrap();
    let dropped: Vec<&Value> = a_lines.iter().filter_map(|v| v.get("aborted")).filter(|a| a["reason"] == "desync").map(|a| &a["round"]).collect();
    let eve_n: usize = a_rounds
        .iter()
        .filter(|r| r["session"] == last["session"] && r["kept"].is_u64() && !dropped.contains(&&r["round"]))
        .map(|r| {
            let e = eve_rounds.iter().find(|e| e["session"] == r["session"] && e["round"] == r["round"]).unwrap();
            // Less the entries inside the spans a poster dropped around its late posts (eve
            // heard those `dropped` too).
            let spans: Vec<(i64, i64)> = eve_lines
                .iter()
                .filter_map(|v| v.get("dropped"))
                .filter(|d| d["session"] == r["session"] && d["round"] == r["round"])
                .flat_map(|d| d["spans"].as_array().unwrap().iter().map(|s| (s[0].as_i64().unwrap(), s[1].as_i64().unwrap())))
                .collect();
            let board = e["board"].as_array().unwrap();
            e["kept"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| board.iter().find(|b| b["i"] == *i).unwrap()["t_us"].as_i64().unwrap())
                .filter(|t| !spans.iter().any(|s| s.0 <= *t && *t <= s.1))
                .count()
        })
        .sum();
    assert_eq!(eve_n as u64, ka["n"].as_u64().unwrap());
    assert!(eve_lines.iter().any(|v| v.get("confirmed").map_or(false, |c| c["match"] == true)));
    // Nothing eve printed names a poster next to an entry.
    for e in &eve_rounds {
        for entry in e["board"].as_array().unwrap() {
            let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 3, "{entry}");
        }
    }
}

#[test]
fn a_post_held_back_each_round_costs_a_span_not_the_round() {
    let server = Server::start(&[]);
    // Bob holds one post in 16 back by 3τ after the time he records for it: it misses τ,
    // so he finds it unmatched, names a span around it, and both leave that out. (About one
    // held post in seven has another entry with its label within 3τ/5 of its prediction and
    // passes for matched, the blind spot of docs/protocol.md §5.3: bob, who knows which posts
    // he held, drops such a round whole.)
    let args = ["--tolerance-ms", "2", "--target-bits", "128", "--duration-ms", "700"];
    let (creator, code, rest) = spawn_creator(&server, &args);
    let (eve, eve_out) = spawn_eve(&server, &code, &[]);
    let eve_reader = read_rest(eve_out);
    let joiner = spawn_pair(&server, &["--room", &code, "--testing-hold-post"]);
    let rest = read_rest(rest);
    let b = wait_output(joiner, Duration::from_secs(120));
    let a = wait_output(creator, Duration::from_secs(120));
    let a_text = rest.join().unwrap();
    let (ka, kb) = (key_of(&a, &a_text), key_of(&b, ""));
    for field in ["key", "bits", "n", "a", "strength", "tag"] {
        assert_eq!(ka[field], kb[field], "{field} differs");
    }
    assert!(ka["strength"].as_u64().unwrap() >= 64);
    let (a_lines, b_lines) = (json_lines(&a_text), json_lines(&String::from_utf8_lossy(&b.stdout)));
    let drops: Vec<&Value> = b_lines.iter().filter_map(|v| v.get("drop")).collect();
    let heard: Vec<&Value> = a_lines.iter().filter_map(|v| v.get("dropped")).collect();
    let b_rounds = b_lines.iter().filter(|v| v.get("round").is_some_and(|r| r["kept"].is_u64())).count();
    // Bob dropped spans (in the 10 or so rounds, two or three held posts each), alice heard
    // each drop and derived the round again with it.
    assert!(!drops.is_empty(), "bob dropped nothing in {b_rounds} rounds");
    let left_out: u64 = drops.iter().map(|d| d["left_out"].as_u64().unwrap()).sum();
    assert!(left_out > 0, "the spans left out no kept entry at all");
    // Alice heard each drop of a round she kept (a round her own view found out of sync on a
    // busy machine is gone for her, and a `dropped` for it changes nothing), and derived the
    // round again with it. She holds nothing back, but on a busy machine her own late posts
    // cost spans too; in a round where both dropped, each count is taken at another moment.
    let same = |x: &Value, y: &Value| x["session"] == y["session"] && x["round"] == y["round"];
    let a_drops: Vec<&Value> = a_lines.iter().filter_map(|v| v.get("drop")).collect();
    let a_kept = |d: &Value| a_lines.iter().filter_map(|v| v.get("round")).any(|r| same(r, d) && r["kept"].is_u64());
    let mut checked = 0;
    for d in drops.iter().filter(|d| a_kept(d)) {
        let h = heard.iter().find(|h| same(h, d)).unwrap_or_else(|| panic!("alice, who kept round {}, heard no drop of it", d["round"]));
        assert_eq!(d["spans"], h["spans"]);
        let kept = |lines: &[Value]| lines.iter().filter_map(|v| v.get("round")).find(|r| same(r, d)).map(|r| r["kept"].clone());
        // Bob's round report comes after his drop; alice's "dropped" line has her count after it.
        if !a_drops.iter().any(|a| same(a, d)) {
            assert_eq!(kept(&b_lines), Some(h["kept"].clone()), "both count the same entries in round {}", d["round"]);
        }
        checked += 1;
    }
    assert!(checked > 0, "no round both kept had a drop of bob's");
    // Eve heard the same spans, with no word of who sent them: every drop a poster heard, and
    // no more than both made.
    let _ = wait_output(eve, Duration::from_secs(30));
    let eve_drops: Vec<Value> = json_lines(&eve_reader.join().unwrap()).into_iter().filter_map(|v| v.get("dropped").cloned()).collect();
    let b_heard: Vec<&Value> = b_lines.iter().filter_map(|v| v.get("dropped")).collect();
    for h in heard.iter().chain(&b_heard) {
        assert!(eve_drops.iter().any(|e| same(e, h) && e["spans"] == h["spans"]), "eve missed {h}");
    }
    assert!(eve_drops.len() <= drops.len() + a_drops.len(), "eve heard {} drops of {} made", eve_drops.len(), drops.len() + a_drops.len());
    for d in &eve_drops {
        let keys: Vec<&String> = d.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["round", "session", "spans"], "{d}");
    }
}

#[test]
fn twenty_rooms_pair_at_once() {
    let server = Server::start(&[]);
    // A generous tolerance: 40 clients and the server share two cores here, and a busy
    // machine delays posts by milliseconds. This checks correctness, not speed.
    let args = ["--tolerance-ms", "5", "--target-bits", "32"];
    let mut pairs = Vec::new();
    for _ in 0..20 {
        let (creator, code, rest) = spawn_creator(&server, &args);
        let joiner = spawn_pair(&server, &["--room", &code]);
        pairs.push((creator, read_rest(rest), joiner));
    }
    assert_eq!(server.healthz()["rooms"], 20);
    for (creator, rest, joiner) in pairs {
        let b = wait_output(joiner, Duration::from_secs(240));
        let a = wait_output(creator, Duration::from_secs(240));
        let (ka, kb) = (key_of(&a, &rest.join().unwrap()), key_of(&b, ""));
        assert_eq!(ka["key"], kb["key"]);
        assert!(ka["strength"].as_u64().unwrap() >= 32);
    }
}

#[test]
fn a_poster_killed_mid_round_is_noticed_and_the_room_takes_a_new_one() {
    let server = Server::start(&[]);
    // Long rounds, so that the kill lands inside one.
    let (creator, code, creator_out) = spawn_creator(&server, &["--tolerance-ms", "2", "--target-bits", "64"]);
    let (eve, mut eve_out) = spawn_eve(&server, &code, &[]);
    let mut joiner = spawn_pair(&server, &["--room", &code]);
    // Wait for the round to start, as eve sees it.
    loop {
        let mut line = String::new();
        assert!(eve_out.read_line(&mut line).unwrap() > 0, "eve ended early");
        if serde_json::from_str::<Value>(&line).unwrap().get("start").is_some() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    joiner.kill().unwrap();
    let killed = Instant::now();
    let _ = joiner.wait();
    let out_reader = read_rest(creator_out);
    let a = wait_output(creator, Duration::from_secs(10));
    let noticed = killed.elapsed();
    assert_eq!(a.status.code(), Some(3), "stderr: {}", String::from_utf8_lossy(&a.stderr));
    assert!(String::from_utf8_lossy(&a.stderr).contains("peer left"));
    assert!(noticed < Duration::from_secs(2), "took {noticed:?}");
    let _ = out_reader.join();

    // The room (kept alive by eve) takes two new posters, who make a key.
    let first = spawn_pair(&server, &["--room", &code]);
    let second = spawn_pair(&server, &["--room", &code]);
    let a = wait_output(first, Duration::from_secs(120));
    let b = wait_output(second, Duration::from_secs(120));
    let (ka, kb) = (key_of(&a, ""), key_of(&b, ""));
    assert_eq!(ka["key"], kb["key"]);
    assert_eq!(ka["room"], code);
    let eve_reader = read_rest(eve_out);
    assert!(wait_output(eve, Duration::from_secs(30)).status.success());
    let lines = json_lines(&eve_reader.join().unwrap());
    assert!(lines.iter().any(|v| v.get("aborted").map_or(false, |a| a["reason"] == "peer_left")));
}

#[test]
fn joining_a_missing_room_fails_clearly() {
    let server = Server::start(&[]);
    let out = wait_output(spawn_pair(&server, &["--room", "ZZZZZ-ZZZZZ"]), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such room"));
    let out = wait_output(
        Command::new(SGP).args(["pair", "--server", "http://127.0.0.1:1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap(),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[test]
fn record_saves_what_the_poster_knows() {
    let server = Server::start(&[]);
    let path = std::env::temp_dir().join(format!("sgp-record-{}.json", std::process::id()));
    let path_s = path.to_str().unwrap().to_string();
    let (ka, _) = live_pair(&server, &["--tolerance-ms", "1", "--target-bits", "32", "--retries", "60", "--record", &path_s]);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(doc["room"], ka["room"]);
    assert_eq!(doc["role"], "alice");
    let rounds = doc["rounds"].as_array().unwrap();
    assert!(!rounds.is_empty());
    for r in rounds {
        assert!(!r["posts"].as_array().unwrap().is_empty());
        assert!(r["posts"][0]["sent_us"].is_i64() && r["posts"][0]["label"].is_string());
        assert!(r["board"].as_array().unwrap().len() >= r["posts"].as_array().unwrap().len());
        assert!(r["sync"]["offset_us"].is_i64() && r["t_start_us"].is_i64());
    }
    let kinds: Vec<&str> = doc["messages"].as_array().unwrap().iter().map(|m| m["msg"]["type"].as_str().unwrap()).collect();
    for k in ["start", "closed", "confirm", "confirmed"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert!(doc["messages"][0]["t_us"].is_i64());
}

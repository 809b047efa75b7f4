//! The shared vectors of `tests/vectors/*.json` (format: `tests/vectors/README.md`), run through
//! `sgp::secret` from both posters' seats. `client/secret.js` is tested against the same files.

use serde::Deserialize;
use sgp::protocol::{Entry, Label};
use sgp::secret::{self, OwnPost, RoundOutcome, Sync};
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    #[allow(dead_code)]
    description: String,
    room: String,
    session: String,
    params: VectorParams,
    rounds: Vec<Round>,
    expect: Option<SessionExpect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorParams {
    tolerance_ms: f64,
    guard_ms: f64,
    tag_bits: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Round {
    t_start_us: i64,
    t_end_us: i64,
    board: Vec<Entry>,
    alice: Party,
    bob: Party,
    expect: RoundExpect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Party {
    sync: Sync,
    posts: Vec<OwnPost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoundExpect {
    kept: Vec<u32>,
    /// Sifted entries the posters' spans leave out (absent: none).
    #[serde(default)]
    dropped: Vec<u32>,
    alice: PartyExpect,
    bob: PartyExpect,
}

/// `{desync: false, mine, bits, a}` or `{desync: true, unmatched, total}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartyExpect {
    desync: bool,
    /// The poster's own spans (absent: none).
    #[serde(default)]
    spans: Vec<secret::Span>,
    mine: Option<Vec<u32>>,
    bits: Option<String>,
    a: Option<u32>,
    unmatched: Option<u32>,
    total: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionExpect {
    n: u32,
    a: u32,
    log2_binom: u32,
    strength: u32,
    bits: String,
    key: String,
    tag: String,
}

/// Like `Params::tolerance_us` and `Params::guard_us`.
fn us(ms: f64) -> i64 {
    (ms * 1000.0).round() as i64
}

/// Every difference between `secret`'s answers and the vector's expectations.
fn check(v: &Vector) -> Vec<String> {
    let mut errors = Vec::new();
    let mut fail = |what: String| errors.push(what);
    let (tol, guard) = (us(v.params.tolerance_ms), us(v.params.guard_ms));
    let (mut rounds, mut bits, mut synced) = (Vec::new(), Vec::new(), true);
    for (r, round) in v.rounds.iter().enumerate() {
        let kept: Vec<u32> =
            secret::sift(&round.board, round.t_start_us, round.t_end_us, tol, guard)
                .into_iter()
                .map(|k| round.board[k].i)
                .collect();
        if kept != round.expect.kept {
            fail(format!("round {r}: sift kept {kept:?}, expected {:?}", round.expect.kept));
        }
        let derive = |party: &Party, me: Label, peer: &[secret::Span]| {
            secret::derive_round(&round.board, round.t_start_us, round.t_end_us, &party.posts, party.sync, me, tol, guard, peer)
        };
        // Each poster's own spans (its `drop`), then each view with the other's.
        let own = |party: &Party, me: Label| match derive(party, me, &[]) {
            RoundOutcome::Ok(v) => v.spans,
            RoundOutcome::Desync { .. } => Vec::new(),
        };
        let spans = [own(&round.alice, Label::A), own(&round.bob, Label::B)];
        let counted: Vec<u32> = round.expect.kept.iter().copied().filter(|i| !round.expect.dropped.contains(i)).collect();
        let mut views = Vec::new();
        for (who, me, party, want, peer) in [
            ("alice", Label::A, &round.alice, &round.expect.alice, &spans[1]),
            ("bob", Label::B, &round.bob, &round.expect.bob, &spans[0]),
        ] {
            let got = derive(party, me, peer);
            match (got, want.desync) {
                (RoundOutcome::Desync { unmatched, total }, true) => {
                    synced = false;
                    if (Some(unmatched), Some(total)) != (want.unmatched, want.total) {
                        fail(format!(
                            "round {r}, {who}: desync {unmatched}/{total}, expected {:?}/{:?}",
                            want.unmatched, want.total
                        ));
                    }
                }
                (RoundOutcome::Ok(view), false) => {
                    let mine: Vec<u32> = view
                        .kept
                        .iter()
                        .zip(&view.mine)
                        .filter(|(_, &m)| m)
                        .map(|(&i, _)| i)
                        .collect();
                    let got = (
                        &view.spans,
                        &view.dropped,
                        &view.kept,
                        Some(mine),
                        Some(secret::bits_string(&view.bits)),
                        Some(view.a),
                    );
                    let expected = (
                        &want.spans,
                        &round.expect.dropped,
                        &counted,
                        want.mine.clone(),
                        want.bits.clone(),
                        want.a,
                    );
                    if got != expected || view.n as usize != view.kept.len() {
                        fail(format!("round {r}, {who}: (spans, dropped, kept, mine, bits, a) = {got:?}, expected {expected:?}"));
                    }
                    views.push(view);
                }
                (got, _) => fail(format!(
                    "round {r}, {who}: got {got:?}, expected desync = {}",
                    want.desync
                )),
            }
        }
        if let [alice, bob] = &views[..] {
            if (&alice.bits, alice.a) != (&bob.bits, bob.a) {
                fail(format!("round {r}: alice and bob disagree"));
            }
            rounds.push((alice.n, alice.a));
            bits.extend_from_slice(&alice.bits);
        }
    }

    match (&v.expect, synced) {
        (None, false) => {}
        (Some(want), true) => {
            let ledger = secret::ledger(&rounds, v.params.tag_bits);
            let got = (ledger.n, ledger.a, ledger.log2_binom, ledger.strength);
            let expected = (want.n, want.a, want.log2_binom, want.strength);
            if got != expected {
                fail(format!(
                    "session: (n, a, log2_binom, strength) = {got:?}, expected {expected:?}"
                ));
            }
            if secret::bits_string(&bits) != want.bits {
                fail(format!(
                    "session: bits {}, expected {}",
                    secret::bits_string(&bits),
                    want.bits
                ));
            }
            match secret::key(&v.room, &v.session, &bits) {
                Ok(key) => {
                    let (hex, tag) = (secret::hex(&key), secret::tag(&key, v.params.tag_bits));
                    if (&hex, &tag) != (&want.key, &want.tag) {
                        fail(format!(
                            "session: key {hex} tag {tag}, expected key {} tag {}",
                            want.key, want.tag
                        ));
                    }
                }
                Err(e) => fail(format!("session: key: {e}")),
            }
        }
        (None, true) => fail("session: no round desynced but expect is null".into()),
        (Some(_), false) => fail("session: a round desynced but expect is not null".into()),
    }
    errors
}

#[test]
fn shared_vectors() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors"));
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no vectors in {}", dir.display());

    let mut failures = Vec::new();
    for path in &paths {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let vector: Vector = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{file}: not a vector: {e}"));
                continue;
            }
        };
        if path.file_stem().is_none_or(|s| *s != *vector.name) {
            failures.push(format!("{file}: name is {:?}", vector.name));
        }
        failures.extend(check(&vector).into_iter().map(|e| format!("{file}: {e}")));
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}

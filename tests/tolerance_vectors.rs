//! The default-tolerance rule of `src/tolerance.rs` against `tests/vectors/tolerance/rule.json`,
//! which `client/test/gen-tolerance-vectors.mjs` writes from `client/js/timing.js`: one rule,
//! two languages, the same picks.

use serde_json::Value;
use sgp::tolerance::{browser_floor, from_pings, tolerance_rule};

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().map(|a| a.iter().map(|x| x.as_i64().unwrap()).collect()).unwrap_or_default()
}

fn close(a: Option<f64>, b: &Value) -> bool {
    match (a, b.as_f64()) {
        (None, None) => b.is_null(),
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * y.abs().max(1.0),
        _ => false,
    }
}

#[test]
fn the_rule_picks_what_the_page_picks() {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string("tests/vectors/tolerance/rule.json").unwrap()).unwrap();
    assert_eq!(browser_floor(true, 5.0), doc["floors"]["isolated_5us"].as_f64().unwrap());
    assert_eq!(browser_floor(false, 100.0), doc["floors"]["not_isolated_100us"].as_f64().unwrap());
    assert_eq!(browser_floor(true, 300.0), doc["floors"]["isolated_300us"].as_f64().unwrap());
    for (name, ms) in doc["from_pings"].as_object().unwrap() {
        assert_eq!(from_pings(&ints(&doc["pings"][name])), ms.as_f64().unwrap(), "from_pings {name}");
    }
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 50);
    for c in cases {
        let name = format!("{}/{}/{}", c["floor_ms"], c["calibration"], c["pings"]);
        let cal = &doc["calibrations"][c["calibration"].as_str().unwrap()];
        let devs = (!cal.is_null()).then(|| ints(cal));
        let got = tolerance_rule(c["floor_ms"].as_f64().unwrap(), devs.as_deref(), &ints(&doc["pings"][c["pings"].as_str().unwrap()]));
        let e = &c["expect"];
        assert_eq!(got.ms, e["ms"].as_f64().unwrap(), "{name}: ms");
        assert_eq!(got.posts, e["posts"].as_u64().unwrap() as u32, "{name}: posts");
        assert_eq!(got.widened, e["widened"].as_bool().unwrap(), "{name}: widened");
        assert_eq!(got.unsure, e["unsure"].as_bool().unwrap(), "{name}: unsure");
        assert_eq!(got.floor, e["floor"].as_f64().unwrap(), "{name}: floor");
        assert!(close(got.success, &e["success"]), "{name}: success {:?} vs {}", got.success, e["success"]);
        assert!(close(got.ms_per_bit, &e["ms_per_bit"]), "{name}: ms_per_bit {:?} vs {}", got.ms_per_bit, e["ms_per_bit"]);
    }
}

#[test]
fn a_terminal_creator_without_a_calibration_widens_with_its_round_trips() {
    let at = |d: &[i64]| tolerance_rule(sgp::tolerance::TERMINAL_FLOOR_MS, None, d).ms;
    assert_eq!(at(&[]), 0.1);
    assert_eq!(at(&[60, 62, 61, 70, 64, 66, 63, 90]), 0.1);
    assert_eq!(at(&[50, 60, 90, 95, 88, 70, 300, 91]), 0.24);
    assert_eq!(at(&[2_000, 9_000, 4_000, 30_000]), 5.0);
}

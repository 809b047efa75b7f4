//! The adaptation rule of `src/poster/adapt.rs` against `tests/vectors/adapt/rule.json`, which
//! `client/test/adapt.test.mjs` checks `client/js/adapt.js` against too: one rule, two
//! languages, the same asks. With `SGP_WRITE_ADAPT_VECTORS=1` the file is written first, from
//! this implementation: hand-picked sequences (the ladder of desyncs to the ceiling, late rounds
//! to the lowest rate, calm rounds back to the floor, costly rounds, the constructor's rounding)
//! and seeded random ones, and `widest_us` over hand-picked and random round trips.
//!
//! The file: `{"cases": [{name, floor_us, ceil_us, start: STATE, steps: [{verdict, widest,
//! after: STATE}]}], "widest_us": [{delays_us, widest_us}]}`, where STATE is `{floor_us,
//! ceil_us, tau_us, rate_div, calm, lates, ask: {tolerance_ms, rate_div}}`, a verdict is `"desync"`,
//! `{"late": {late_us, limit_us}}` or `{"kept": {n, left_out, spans}}`, and `widest` is
//! `widest(verdict)` before the step (whether the failure counts).

use serde_json::{json, Value};
use sgp::poster::{widest_us, Adapt, Verdict};

const FILE: &str = "tests/vectors/adapt/rule.json";

fn verdict_json(v: Verdict) -> Value {
    match v {
        Verdict::Desync => json!("desync"),
        Verdict::Late { late_us, limit_us } => json!({"late": {"late_us": late_us, "limit_us": limit_us}}),
        Verdict::Kept { n, left_out, spans } => json!({"kept": {"n": n, "left_out": left_out, "spans": spans}}),
    }
}

fn verdict_of(v: &Value) -> Verdict {
    let int = |x: &Value| x.as_i64().unwrap();
    if v == "desync" {
        Verdict::Desync
    } else if let Some(l) = v.get("late") {
        Verdict::Late { late_us: int(&l["late_us"]), limit_us: int(&l["limit_us"]) }
    } else {
        let k = &v["kept"];
        let u = |x: &Value| x.as_u64().unwrap() as u32;
        Verdict::Kept { n: u(&k["n"]), left_out: u(&k["left_out"]), spans: u(&k["spans"]) }
    }
}

fn state(a: &Adapt) -> Value {
    let (tolerance_ms, rate_div) = a.ask();
    json!({"floor_us": a.floor_us, "ceil_us": a.ceil_us, "tau_us": a.tau_us, "rate_div": a.rate_div, "calm": a.calm, "lates": a.lates,
        "ask": {"tolerance_ms": tolerance_ms, "rate_div": rate_div}})
}

fn case(name: &str, floor_us: i64, ceil_us: i64, verdicts: &[Verdict]) -> Value {
    let mut a = Adapt::new(floor_us, ceil_us);
    let start = state(&a);
    let steps: Vec<Value> = verdicts
        .iter()
        .map(|&v| {
            let widest = a.widest(v);
            a.after(v);
            json!({"verdict": verdict_json(v), "widest": widest, "after": state(&a)})
        })
        .collect();
    json!({"name": name, "floor_us": floor_us, "ceil_us": ceil_us, "start": start, "steps": steps})
}

const CLEAN: Verdict = Verdict::Kept { n: 100, left_out: 0, spans: 0 };

fn late(late_us: i64, limit_us: i64) -> Verdict {
    Verdict::Late { late_us, limit_us }
}

fn random_verdict(rng: &mut fastrand::Rng) -> Verdict {
    match rng.u32(0..10) {
        0..=1 => Verdict::Desync,
        2..=3 => late(rng.i64(-2_000..200_000), rng.i64(-10..20_000)),
        4 => Verdict::Kept { n: rng.u32(0..300), left_out: rng.u32(0..120), spans: rng.u32(1..4) },
        5 => Verdict::Kept { n: rng.u32(0..300), left_out: rng.u32(0..20), spans: rng.u32(0..3) },
        _ => Verdict::Kept { n: rng.u32(0..300), left_out: 0, spans: 0 },
    }
}

fn generate() -> Value {
    let mut cases = vec![
        case("desyncs_to_the_ceiling", 100, 5_000, &[Verdict::Desync; 8]),
        case("late_rounds_to_the_lowest_rate", 100, 5_000, &[late(1_500, 400), late(0, 3_200), late(1_000_000, 6_400), late(0, 1), late(5, 5)]),
        case("late_exactly_covered", 250, 5_000, &[late(400, 400), late(800, 400), late(801, 400), late(-50, 0)]),
        case(
            "calm_back_to_the_floor",
            100,
            5_000,
            &[late(0, 400), Verdict::Desync, Verdict::Desync, Verdict::Desync].iter().copied().chain([CLEAN; 24]).collect::<Vec<_>>(),
        ),
        case(
            "costly_and_spans",
            1_000,
            8_000,
            &[
                Verdict::Kept { n: 100, left_out: 30, spans: 2 },
                Verdict::Kept { n: 100, left_out: 25, spans: 1 },
                Verdict::Kept { n: 100, left_out: 24, spans: 1 },
                CLEAN,
                Verdict::Kept { n: 100, left_out: 5, spans: 1 },
                CLEAN,
                CLEAN,
                Verdict::Kept { n: 0, left_out: 1, spans: 1 },
                Verdict::Kept { n: 0, left_out: 0, spans: 0 },
                CLEAN,
            ],
        ),
        case("floor_rounded_up", 123, 1_001, &[Verdict::Desync, Verdict::Desync, Verdict::Desync, CLEAN, CLEAN, CLEAN, CLEAN]),
        case("floor_below_10", 0, 0, &[Verdict::Desync, CLEAN, CLEAN]),
        case("negative_floor", -500, 40, &[Verdict::Desync, Verdict::Desync, CLEAN, CLEAN]),
        case("ceiling_below_the_floor", 3_000, 1_000, &[Verdict::Desync, late(10_000, 1_000), CLEAN, CLEAN, CLEAN, CLEAN]),
        case("fixed_tau", 2_500, 2_500, &[Verdict::Desync, late(2_000, 1_000), CLEAN, CLEAN, CLEAN, CLEAN]),
    ];
    let mut rng = fastrand::Rng::with_seed(14);
    for k in 0..6 {
        let floor = rng.i64(10..3_000);
        let ceil = floor + rng.i64(-500..48_000);
        let verdicts: Vec<Verdict> = (0..40).map(|_| random_verdict(&mut rng)).collect();
        cases.push(case(&format!("random_{k}"), floor, ceil, &verdicts));
    }
    let mut delays: Vec<Vec<i64>> = vec![
        vec![],
        vec![777],
        vec![60, 62, 61, 70, 64, 66, 63, 90],
        vec![31_500, 38_000, 40_000, 41_000, 44_000, 36_000, 47_000, 39_000],
        vec![1_000, 900_000, 900_000],
        vec![100, 2_601, 2_601],
        vec![100, 2_605],
        vec![5_000, 3_000, 4_000, 10_000],
    ];
    for _ in 0..16 {
        let n = rng.usize(1..20);
        let base = rng.i64(50..40_000);
        let spread = rng.i64(1..60_000);
        delays.push((0..n).map(|_| base + rng.i64(0..spread)).collect());
    }
    let widest: Vec<Value> = delays.iter().map(|d| json!({"delays_us": d, "widest_us": widest_us(d)})).collect();
    json!({"description": "the adaptation rule (src/poster/adapt.rs, client/js/adapt.js): each case's state after each verdict, and widest_us of round trips; written by tests/adapt_vectors.rs with SGP_WRITE_ADAPT_VECTORS=1", "cases": cases, "widest_us": widest})
}

#[test]
fn the_rule_asks_what_the_vectors_say() {
    if std::env::var_os("SGP_WRITE_ADAPT_VECTORS").is_some() {
        std::fs::create_dir_all("tests/vectors/adapt").unwrap();
        std::fs::write(FILE, serde_json::to_string_pretty(&generate()).unwrap() + "\n").unwrap();
    }
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let mut a = Adapt::new(c["floor_us"].as_i64().unwrap(), c["ceil_us"].as_i64().unwrap());
        assert_eq!(state(&a), c["start"], "{name}: start");
        for (k, s) in c["steps"].as_array().unwrap().iter().enumerate() {
            let v = verdict_of(&s["verdict"]);
            assert_eq!(json!(a.widest(v)), s["widest"], "{name} step {k}: widest");
            a.after(v);
            assert_eq!(state(&a), s["after"], "{name} step {k}: after {}", s["verdict"]);
        }
    }
    let widest = doc["widest_us"].as_array().unwrap();
    assert!(widest.len() >= 8);
    for w in widest {
        let d: Vec<i64> = w["delays_us"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        assert_eq!(json!(widest_us(&d)), w["widest_us"], "widest_us {d:?}");
    }
}

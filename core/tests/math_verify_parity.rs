//! Parity of `math500:verify` with HuggingFace math-verify on math-verify's own test suite.
//!
//! `tests/fixtures/math_verify/cases.jsonl` holds every (gold, prediction, verdict) row of
//! huggingface/Math-Verify's `tests/` that goes through `verify(parse(gold), parse(pred))`,
//! transcribed by `transcribe.py` next to it, each with its `tests/<file>.py:<line>`. This test
//! runs [`math_equiv::verify_with`] on every row, prints the agreement and the disagreements,
//! requires at least 95% agreement, and requires the disagreements to be exactly the rows
//! listed, each with its reason, in `known_differences.jsonl` — so a regression (or a fix that
//! leaves a stale entry) fails. Print the table with
//! `cargo test -p workbench-core --test math_verify_parity -- --nocapture`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use workbench_core::tasks::math_equiv::{self, VerifyOptions};

#[derive(Deserialize)]
struct Case {
    id: u32,
    gold: String,
    pred: String,
    expected: bool,
    match_types: Vec<String>,
    precision: u32,
    strict: bool,
    allow_set_relation_comp: bool,
    source: String,
}

#[derive(Deserialize)]
struct KnownDifference {
    id: u32,
    source: String,
    reason: String,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/math_verify")
        .join(name)
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    let path = fixture(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn options(case: &Case) -> VerifyOptions {
    VerifyOptions {
        float_rounding: case.precision,
        strict: case.strict,
        allow_set_relation_comp: case.allow_set_relation_comp,
        latex: case.match_types.iter().any(|m| m == "latex"),
        expr: case.match_types.iter().any(|m| m == "expr"),
        ..VerifyOptions::default()
    }
}

fn short(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
    if flat.chars().count() > 70 {
        let head: String = flat.chars().take(40).collect();
        let tail: String = {
            let v: Vec<char> = flat.chars().collect();
            v[v.len() - 25..].iter().collect()
        };
        format!("{head} … {tail}")
    } else {
        flat
    }
}

#[test]
fn math_verify_parity() {
    let cases: Vec<Case> = read_jsonl("cases.jsonl");
    let known: Vec<KnownDifference> = read_jsonl("known_differences.jsonl");
    assert!(
        cases.len() >= 250,
        "fixture truncated: {} cases",
        cases.len()
    );
    let known: BTreeMap<u32, KnownDifference> = known.into_iter().map(|k| (k.id, k)).collect();

    let mut agree = 0usize;
    let mut unexplained = Vec::new();
    let mut fixed = Vec::new();
    println!("id   | source                         | math-verify | ours  | gold / prediction");
    for case in &cases {
        let ours = math_equiv::verify_with(&case.gold, &case.pred, &options(case));
        let same = ours == case.expected;
        if same {
            agree += 1;
        }
        let mark = if same { "" } else { "  <-- differs" };
        println!(
            "{:<4} | {:<30} | {:<11} | {:<5} | {}  ||  {}{mark}",
            case.id,
            case.source,
            case.expected,
            ours,
            short(&case.gold),
            short(&case.pred),
        );
        match (same, known.get(&case.id)) {
            (false, None) => unexplained.push(format!("{} ({})", case.id, case.source)),
            (true, Some(_)) => fixed.push(format!("{} ({})", case.id, case.source)),
            (false, Some(k)) => assert_eq!(
                k.source, case.source,
                "known_differences.jsonl: id {} names the wrong source",
                k.id
            ),
            (true, None) => {}
        }
    }
    let n = cases.len();
    let pct = 100.0 * agree as f64 / n as f64;
    println!("math-verify parity: {agree}/{n} cases agree ({pct:.1}%)");
    for (id, k) in &known {
        assert!(
            cases.iter().any(|c| c.id == *id),
            "known_differences.jsonl: id {id} is not a case"
        );
        println!("known difference {id} ({}): {}", k.source, k.reason);
    }
    assert!(
        unexplained.is_empty(),
        "disagreements not listed in known_differences.jsonl: {}",
        unexplained.join(", ")
    );
    assert!(
        fixed.is_empty(),
        "known_differences.jsonl lists cases that now agree (remove them): {}",
        fixed.join(", ")
    );
    assert!(pct >= 95.0, "agreement {pct:.1}% is below 95%");
}

/// Extraction and comparison stay bounded on hostile responses: 1 MB of delimiters, anchors,
/// numbers and open brackets, and 100k-deep nesting (the limits in `math_equiv::extract`).
#[test]
fn hostile_inputs_return_quickly() {
    use std::time::{Duration, Instant};
    let patterns: &[(&str, usize)] = &[
        ("$", 1 << 20),
        ("$$", 1 << 19),
        ("\\[", 1 << 19),
        ("\\(", 1 << 19),
        (" [", 1 << 19),
        ("$1$ and ", 1 << 17),
        ("answer ", 1 << 17),
        ("answer: ", 1 << 17),
        ("final answer is $1$. I hope ", 1 << 15),
        ("Final answer ", 1 << 17),
        ("1 + ", 1 << 18),
        ("1,000 ", 1 << 17),
        ("9", 1 << 20),
        ("{", 1 << 20),
        ("(", 1 << 20),
        ("\\boxed{", 1 << 17),
        ("\\boxed{1} and ", 1 << 16),
        ("\\\\left", 1 << 17),
        ("x < ", 1 << 18),
        ("\\begin{pmatrix}", 1 << 16),
        ("1 pct ", 1 << 17),
        ("漢$", 1 << 18),
    ];
    let opts = VerifyOptions::default();
    for (pat, n) in patterns {
        let s = pat.repeat(*n);
        let t = Instant::now();
        let _ = math_equiv::parse_answer(&s, &opts);
        let _ = math_equiv::verify_with("1", &s, &opts);
        let _ = math_equiv::verify_with(&s, &s, &opts);
        let _ = math_equiv::verify(&s, &s);
        let el = t.elapsed();
        assert!(el < Duration::from_secs(10), "{pat:?} x {n}: {el:?}");
        println!("{pat:?} x {n}: {el:?}");
    }
}

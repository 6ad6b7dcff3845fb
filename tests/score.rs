//! `workbench score` reproduces d1's reward values on hand-written d1-style completions.
//! Worked values are in the comments (reference/ALGORITHMS.md §5).

use std::process::Command;

fn score(task: &str, file: &str) -> (Vec<serde_json::Value>, serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scored.jsonl");
    let summary = dir.path().join("summary.json");
    let input = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/score")
        .join(file);
    let o = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .args([
            "score",
            "--task",
            task,
            "--in",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    let lines = std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    (lines, summary, err)
}

fn close(v: &serde_json::Value, want: f64) -> bool {
    (v.as_f64().unwrap() - want).abs() < 1e-9
}

#[test]
fn gsm8k_d1_rewards() {
    let (l, s, err) = score("gsm8k", "gsm8k.jsonl");
    // Line 3 is not JSON: reported with its number and skipped.
    assert!(err.contains("gsm8k.jsonl:3"), "{err}");
    assert_eq!(l.len(), 3);
    // 1: perfect format (trailing <|eot_id|> ignored): xmlcount 4 × 0.125 = 0.5 (nothing after
    // the closing tag), soft 0.5, strict 0.5, int 0.5 ("18" is digits), correctness 2.0 → 4.0.
    let c = &l[0]["components"];
    assert!(
        close(&c["xmlcount"], 0.5)
            && close(&c["soft_format"], 0.5)
            && close(&c["strict_format"], 0.5)
    );
    assert!(close(&c["int"], 0.5) && close(&c["correctness"], 2.0) && close(&l[0]["reward"], 4.0));
    assert_eq!(l[0]["correct"], true);
    // 2: "extra" after </answer>: xmlcount 0.5 − 5·0.001 (after "\n</answer>\n") − (6 − 1)·0.001
    // (after "\n</answer>") = 0.49; soft 0.5; strict 0 (must end at </answer>\n); int 0.5;
    // correctness 0 (17 ≠ 18) → 1.49.
    let c = &l[1]["components"];
    assert!(
        close(&c["xmlcount"], 0.49)
            && close(&c["strict_format"], 0.0)
            && close(&l[1]["reward"], 1.49)
    );
    assert_eq!(l[1]["correct"], false);
    // 3 (id 4): no tags at all → every component 0.
    assert!(close(&l[2]["reward"], 0.0));
    assert!(close(&s["mean_reward"], (4.0 + 1.49) / 3.0) && close(&s["accuracy"], 1.0 / 3.0));
}

#[test]
fn countdown_rewards_and_eval() {
    let (l, s, _) = score("countdown", "countdown.jsonl");
    // 30 − (100 − 93) = 23 with each number once → 1.0; 100 − 93 + 30 = 37 → 0.1 (valid, wrong);
    // 30 − 7 uses the wrong numbers → 0.1; no <answer> → 0; `\boxed{..}` inside <answer> has
    // characters outside d1's training whitelist [0-9+\-*/(). ] → 0.1.
    let r: Vec<f64> = l.iter().map(|v| v["reward"].as_f64().unwrap()).collect();
    assert_eq!(r, [1.0, 0.1, 0.1, 0.0, 0.1]);
    // The evaluation parser reads \boxed{} (d1's eval prompt asks for it): only the last is correct.
    let c: Vec<bool> = l.iter().map(|v| v["correct"].as_bool().unwrap()).collect();
    assert_eq!(c, [false, false, false, false, true]);
    assert!(close(&s["accuracy"], 0.2));
}

#[test]
fn sudoku_cell_fraction_and_cell_accuracy() {
    let (l, s, _) = score("sudoku", "sudoku.jsonl");
    // The puzzle 3102200002100320 has 8 blanks; the second answer gets cell 2 wrong → 7/8.
    assert!(close(&l[0]["reward"], 1.0) && close(&l[1]["reward"], 0.875));
    // d1's cell accuracy: correct blanks over all blanks = (8 + 7) / 16.
    assert!(close(&s["cell_accuracy"], 15.0 / 16.0) && close(&s["accuracy"], 0.5));
}

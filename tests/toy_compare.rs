//! `scripts/experiments/toy_compare.rhai` at toy size on both tasks: every algorithm runs from
//! the shared SFT checkpoint and the results, run logs and comparison plot are written. The
//! numbers are not checked here (the full run is written up in docs/experiments.md).

use std::process::Command;

fn run(task: &str, out: &std::path::Path) {
    let sets = [
        format!("task={task:?}"),
        format!("out={:?}", out.display().to_string()),
        "d_model=16".into(),
        "n_layers=1".into(),
        "n_heads=2".into(),
        "mlp_hidden_size=32".into(),
        "train_size=40".into(),
        "eval_rows=6".into(),
        "sft_steps=2".into(),
        "sft_batch=4".into(),
        "updates=2".into(),
        "eval_every=1".into(),
        "batch_size=2".into(),
        "group=2".into(),
        "max_replace=1".into(),
        "steps=4".into(),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_workbench"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("WORKBENCH_PATH")
        .args(["run", "scripts/experiments/toy_compare.rhai"]);
    for s in &sets {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let dir = out.join(task);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    for algo in ["diffu_grpo", "cj_grpo", "mdpo", "igpo"] {
        let a = &r["algorithms"][algo];
        // the start plus one evaluation per update
        assert_eq!(
            a["curve"].as_array().map(|c| c.len()),
            Some(3),
            "{algo}: {a}"
        );
        let s = a["final_score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&s), "{algo}: {s}");
        assert!(dir.join(algo).join("log.jsonl").exists());
        assert!(stdout.contains(&format!("| {algo} |")), "{stdout}");
    }
    assert!(dir.join("compare.png").exists());
}

#[test]
fn toy_compare_runs_every_algorithm_on_sudoku_and_countdown() {
    let dir = tempfile::tempdir().unwrap();
    run("sudoku", dir.path());
    run("countdown", dir.path());
}

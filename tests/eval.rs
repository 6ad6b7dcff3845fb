//! `scripts/eval.rhai` runs end to end on the tiny fixture model (accuracy ≈ 0: the point is
//! the pipeline and the results file).

use std::process::Command;

fn eval(task: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ev");
    let o = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "scripts/eval.rhai",
            "--set",
            &format!("task={task}"),
            "--set",
            "limit=4",
        ])
        .args([
            "--set",
            "gen_lengths=[32, 64]",
            "--set",
            &format!("out={:?}", out.display().to_string()),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(std::fs::read_to_string(out.join("results.md"))
        .unwrap()
        .contains("| 64 | 32 | 4 |"));
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn eval_gsm8k_and_sudoku_write_complete_results() {
    for task in ["gsm8k", "sudoku"] {
        let r = eval(task);
        for key in [
            "date",
            "model",
            "model_config_hash",
            "dataset",
            "dataset_hash",
            "prompt_style",
            "seed",
        ] {
            assert!(!r[key].is_null(), "{task}: missing {key}");
        }
        let res = r["results"].as_array().unwrap();
        assert_eq!(res.len(), 2);
        assert_eq!(res[0]["n"], 4);
        assert_eq!(res[0]["sampler"]["steps"], 16, "steps = L/2");
        assert_eq!(res[0]["samples"].as_array().unwrap().len(), 4);
        if task == "sudoku" {
            assert!(res[0]["cell_accuracy"].is_number());
        }
    }
}

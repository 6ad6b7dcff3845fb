//! The script layer end to end: example scripts, gradients through script-defined losses,
//! module resolution, `--set`, and error positions.

mod common;

use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor, Var};
use common::fixture;

fn run(script: &Path, extra: &[&str], env: &[(&str, &Path)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_workbench"));
    cmd.arg("run")
        .arg(script)
        .args(extra)
        .env_remove("WORKBENCH_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{err}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        err,
    )
}

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scripts")
        .join(name)
}

#[test]
fn logits_parity_through_the_script_layer() {
    let dir = fixture("");
    let (ok, out, err) = run(
        &script("logits_parity.rhai"),
        &["--", dir.to_str().unwrap()],
        &[],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("plain: max |d|") && out.contains("padded: max |d|"),
        "{out}"
    );
}

#[test]
fn every_tensor_op_family_matches_hand_computed_values() {
    let (ok, out, err) = run(&script("tensor_ops.rhai"), &[], &[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("all checks passed"));
}

#[test]
fn linear_regression_with_script_sgd_reaches_the_closed_form_loss() {
    let (ok, out, err) = run(&script("linreg.rhai"), &[], &[]);
    assert!(ok, "{out}{err}");
    // Too few steps cannot reach the optimum: the assertion in the script must fire.
    let (ok, _, err) = run(&script("linreg.rhai"), &["--set", "steps=3"], &[]);
    assert!(!ok && err.contains("did not reach the optimum"), "{err}");
}

#[test]
fn gradient_of_a_script_loss_matches_the_core() {
    let engine = workbench_scripting::new_engine();
    let src = r#"
        let w = param(tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]));
        let x = tensor([[1.0, 2.0], [3.0, -1.0]]);
        let logits = x.matmul(w);
        let lp = logits.log_softmax(-1).gather(1, tensor([[2], [0]]));
        let loss = -lp.mean();
        let g = loss.backward();
        g[w].to_array()
    "#;
    let got: rhai::Array = engine.eval(src).unwrap();
    let got: Vec<f64> = got
        .iter()
        .flat_map(|r| r.clone().into_array().unwrap())
        .map(|v| v.as_float().unwrap())
        .collect();
    let w = Var::new(&[[0.5f32, -1.0, 2.0], [1.5, 0.25, -0.5]], &Device::Cpu).unwrap();
    let x = Tensor::new(&[[1.0f32, 2.0], [3.0, -1.0]], &Device::Cpu).unwrap();
    let lp = workbench_core::ops::log_softmax(&x.matmul(w.as_tensor()).unwrap(), 1).unwrap();
    let idx = Tensor::new(&[[2u32], [0]], &Device::Cpu).unwrap();
    let loss = lp
        .gather(&idx, 1)
        .unwrap()
        .mean_all()
        .unwrap()
        .neg()
        .unwrap();
    let g = loss.backward().unwrap();
    let want: Vec<f32> = g
        .get(w.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - f64::from(*b)).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

#[test]
fn imports_resolve_next_to_the_script_then_workbench_path_then_stdlib() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.rhai");
    std::fs::write(&main, "import \"util\" as u;\nprint(u::who());\n").unwrap();
    // No local util.rhai and no WORKBENCH_PATH: the bundled stdlib has no `who`.
    let (ok, _, err) = run(&main, &[], &[]);
    assert!(!ok && err.contains("who"), "{err}");
    // WORKBENCH_PATH overrides the stdlib.
    let over = tempfile::tempdir().unwrap();
    std::fs::write(over.path().join("util.rhai"), "fn who() { \"override\" }").unwrap();
    let (ok, out, err) = run(&main, &[], &[("WORKBENCH_PATH", over.path())]);
    assert!(ok && out.trim() == "override", "{out}{err}");
    // A module next to the script wins over both.
    std::fs::write(dir.path().join("util.rhai"), "fn who() { \"local\" }").unwrap();
    let (ok, out, err) = run(&main, &[], &[("WORKBENCH_PATH", over.path())]);
    assert!(ok && out.trim() == "local", "{out}{err}");
}

#[test]
fn missing_module_lists_the_places_searched() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.rhai");
    std::fs::write(&main, "let x = 1;\nimport \"nope\" as n;\n").unwrap();
    let (ok, _, err) = run(&main, &[], &[]);
    assert!(!ok);
    assert!(err.contains("nope"), "{err}");
    assert!(
        err.contains(&dir.path().join("nope.rhai").display().to_string()),
        "{err}"
    );
    assert!(err.contains("bundled stdlib"), "{err}");
    assert!(err.contains("main.rhai:2:"), "{err}");
}

#[test]
fn set_values_are_rhai_literals_merged_over_config() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("cfg.rhai");
    std::fs::write(
        &main,
        "let CONFIG = config(#{ lr: 0.1, steps: 2, name: \"a\", dims: [1], on: false });\nprint(CONFIG.lr); print(CONFIG.steps); print(CONFIG.name); print(CONFIG.dims); print(CONFIG.on); print(ARGS);\n",
    )
    .unwrap();
    let (ok, out, err) = run(
        &main,
        &[
            "--set",
            "lr=3",
            "--set",
            "steps=7",
            "--set",
            "name=gsm8k",
            "--set",
            "dims=[2, 3]",
            "--set",
            "on=true",
            "--",
            "x",
            "y",
        ],
        &[],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["3.0", "7", "gsm8k", "[2, 3]", "true", "[\"x\", \"y\"]"]
    );
    // Unknown key: an error naming it and the known keys.
    let (ok, _, err) = run(&main, &["--set", "lrr=1"], &[]);
    assert!(
        !ok && err.contains("--set lrr: unknown key") && err.contains("lr, name, on, steps"),
        "{err}"
    );
    // Bad literal: an error before the script runs.
    let (ok, _, err) = run(&main, &["--set", "dims=[1, 2"], &[]);
    assert!(!ok && err.contains("not a valid literal"), "{err}");
    // Wrong type for the default: an error naming the key.
    let (ok, _, err) = run(&main, &["--set", "steps=\"many\""], &[]);
    assert!(!ok && err.contains("--set steps"), "{err}");
}

#[test]
fn errors_show_file_line_column_source_and_caret() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("bad.rhai");
    std::fs::write(
        &main,
        "let a = tensor([1.0, 2.0]);\nlet b = tensor([1.0, 2.0, 3.0]);\nlet c = a + b;\n",
    )
    .unwrap();
    let (ok, _, err) = run(&main, &[], &[]);
    assert!(!ok);
    assert!(err.contains("bad.rhai:3:11"), "{err}");
    assert!(err.contains("let c = a + b;"), "{err}");
    assert!(
        err.contains("[2] F32") && err.contains("[3] F32"),
        "shapes should be named: {err}"
    );
    assert!(err.contains("^"), "{err}");
    // Syntax errors too.
    std::fs::write(&main, "let x = ;\n").unwrap();
    let (ok, _, err) = run(&main, &[], &[]);
    assert!(!ok && err.contains("bad.rhai:1:"), "{err}");
}

#[test]
fn user_defined_tasks_are_maps_of_closures_with_the_task_methods() {
    let (ok, out, err) = run(&script("user_task.rhai"), &[], &[]);
    assert!(ok && out.contains("user-defined task: ok"), "{out}{err}");
}

#[test]
fn lora_training_with_the_d1_estimator_lowers_the_loss_on_a_fixed_batch() {
    let model = format!("model=\"{}\"", fixture("llada-tiny").display());
    let (ok, out, err) = run(&script("train_d1.rhai"), &["--set", &model], &[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("loss decreased"), "{out}");
    // With too few steps to move, the script's own assertion must fire.
    let (ok, out, _) = run(
        &script("train_d1.rhai"),
        &["--set", &model, "--set", "steps=1"],
        &[],
    );
    assert!(!ok, "one step cannot lower the loss: {out}");
}

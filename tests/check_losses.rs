//! `scripts/check_losses.rhai` on the copy of the reference trainers' loss fixtures: every case
//! reproduced within tolerance, one line per case and the summary; bad arguments fail.

mod common;

use std::process::Command;

use common::fixture;

fn run(args: &[&std::path::Path]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .arg("run")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_losses.rhai"))
        .arg("--")
        .args(args)
        .env_remove("WORKBENCH_PATH")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn check_losses_reports_six_of_six() {
    let (ok, out, err) = run(&[&fixture("losses"), &fixture("llada-tiny")]);
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    for case in [
        "d1_diffu_grpo",
        "cj_grpo_eoser_ass",
        "cj_grpo_semiar",
        "mdpo",
        "igpo",
        "sft",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(case))
            .unwrap_or_else(|| panic!("no line for {case}:\n{out}"));
        assert!(
            line.contains(" ok ") && line.contains("gradients"),
            "{line}"
        );
    }
    assert!(
        out.lines().last() == Some("loss parity: 6/6 cases within tolerance"),
        "{out}"
    );
}

#[test]
fn check_losses_fails_on_a_missing_folder() {
    let (ok, out, err) = run(&[&fixture("no-such-losses"), &fixture("llada-tiny")]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("index.json") && !err.contains("panicked"),
        "{err}"
    );
}

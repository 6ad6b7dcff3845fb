//! Every runnable script under `scripts/` (the sampler demos aside) refuses a misspelt
//! `--set` key by name before doing any work, and no training script trains on a shipped test
//! set unless `allow_test_data=true` (which the run log then says).

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(script: &Path, sets: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_workbench"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("WORKBENCH_PATH")
        .arg("run")
        .arg(script);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every `.rhai` under `scripts/`, except `scripts/samplers/` (hooks demos) and
/// `scripts/check_losses.rhai` (a fixture checker without a CONFIG).
fn scripts() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().unwrap() != "samplers" {
                    dirs.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rhai")
                && p.file_name().unwrap() != "check_losses.rhai"
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_script_refuses_an_unknown_set_key_by_name() {
    let all = scripts();
    assert!(all.len() >= 9, "{all:?}");
    for s in &all {
        let (ok, stdout, stderr) = run(s, &["no_such_key=1"]);
        assert!(!ok, "{}: accepted an unknown key\n{stdout}", s.display());
        assert!(
            stderr.contains("--set no_such_key: unknown key"),
            "{}: {stderr}",
            s.display()
        );
        // Refused before any work: nothing was printed by the script.
        assert!(stdout.trim().is_empty(), "{}: {stdout}", s.display());
    }
}

#[test]
fn training_on_a_shipped_test_set_needs_allow_test_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = format!("out={:?}", dir.path().join("run").display().to_string());
    // A renamed copy is recognised by content.
    let copy = dir.path().join("my_train.jsonl");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/gsm8k_test.jsonl"),
        &copy,
    )
    .unwrap();
    let copy_set = format!("data={:?}", copy.display().to_string());
    for script in ["diffu_grpo", "cj_grpo", "mdpo", "igpo", "sft"] {
        let path = Path::new("scripts").join(format!("{script}.rhai"));
        for data in ["data=data/gsm8k_test.jsonl", copy_set.as_str()] {
            // sft trains on (prompt, answer) pairs: it has no task.
            let task = if script == "sft" {
                "prompt_field=question"
            } else {
                "task=gsm8k"
            };
            let (ok, _, err) = run(&path, &[task, data, &out]);
            assert!(!ok, "{script} trained on the test set");
            assert!(
                err.contains("shipped gsm8k test set") && err.contains("allow_test_data=true"),
                "{script}: {err}"
            );
        }
    }
    // With the flag, the run log's first record says so (and the run goes on).
    let tiny = [
        "task=gsm8k",
        "data=data/gsm8k_test.jsonl",
        "allow_test_data=true",
        "reward=length",
        "updates=1",
        "batch_size=1",
        "group=2",
        "gen_length=8",
        "block_length=8",
        "steps=4",
        "mu=1",
        "lora_r=2",
        "eval_every=0",
        out.as_str(),
    ];
    let (ok, stdout, err) = run(Path::new("scripts/diffu_grpo.rhai"), &tiny);
    assert!(ok, "{stdout}{err}");
    assert!(
        stdout.contains("warning: training on the shipped test set"),
        "{stdout}"
    );
    let log = std::fs::read_to_string(dir.path().join("run/log.jsonl")).unwrap();
    let header: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let train = header["train_data"].as_str().unwrap();
    assert!(
        train.contains("TEST set") && train.contains("allow_test_data"),
        "{header}"
    );
    assert!(
        header["eval_data"].as_str().unwrap().contains("gsm8k_test"),
        "{header}"
    );
}

#[test]
fn tasks_without_a_training_split_need_data_and_name_the_reference_sets() {
    for (script, task, names) in [
        ("mdpo", "math500", "MATH train split"),
        ("igpo", "gsm8k:igpo", "GSM8K train split"),
        ("diffu_grpo", "countdown", "Countdown-Tasks-3to4"),
        ("cj_grpo", "math500", "MATH train split"),
    ] {
        let path = Path::new("scripts").join(format!("{script}.rhai"));
        let t = format!("task={task:?}");
        let (ok, _, err) = run(&path, &[t.as_str()]);
        assert!(!ok, "{script} {task}: started without data");
        assert!(
            err.contains("--set data=") && err.contains(names),
            "{script} {task}: {err}"
        );
    }
}

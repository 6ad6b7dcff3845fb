//! `scripts/quickstart.rhai` end to end at toy size (a few SFT and RL steps, 12 held-out
//! puzzles): the pipeline runs and writes results.json, the run log and the reward plot. The
//! accuracies are not checked here (the full run's numbers are in docs/quickstart.md).

use std::process::Command;

#[test]
fn quickstart_runs_at_reduced_size_and_writes_results_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("qs");
    let o = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("WORKBENCH_PATH")
        .args(["run", "scripts/quickstart.rhai"])
        .args([
            "--set",
            "d_model=32",
            "--set",
            "n_layers=1",
            "--set",
            "n_heads=2",
        ])
        .args(["--set", "mlp_hidden_size=64", "--set", "train_size=50"])
        .args([
            "--set",
            "eval_rows=12",
            "--set",
            "sft_steps=3",
            "--set",
            "sft_batch=8",
        ])
        .args([
            "--set",
            "updates=2",
            "--set",
            "batch_size=3",
            "--set",
            "group=2",
        ])
        .args(["--set", "steps=4"])
        .args(["--set", &format!("out={:?}", out.display().to_string())])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("after SFT (before)"), "{stdout}");
    assert!(stdout.contains(&out.display().to_string()), "{stdout}");

    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    for key in ["before", "after", "seconds"] {
        let v = r[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {r}"));
        assert!(v.is_finite() && v >= 0.0, "{key} = {v}");
    }
    assert!(r["before"].as_f64().unwrap() <= 1.0 && r["after"].as_f64().unwrap() <= 1.0);
    assert_eq!(r["eval_puzzles"], 12);
    assert_eq!(r["config"]["updates"], 2);

    // The SFT log: 3 records; the RL run log (the trainer's): the step-0 record naming both
    // data sets, then 2 RL records with a reward in [0, 1]; the final weights.
    let records = |name: &str| -> Vec<serde_json::Value> {
        let log = std::fs::read_to_string(out.join(name)).unwrap();
        log.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert_eq!(records("sft.jsonl").len(), 3);
    let recs = records("log.jsonl");
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert!(recs[0]["train_data"]
        .as_str()
        .unwrap()
        .contains("generated 4x4 puzzles"));
    assert!(recs[0]["eval_data"]
        .as_str()
        .unwrap()
        .starts_with("12 generated"));
    let rewards: Vec<f64> = recs.iter().filter_map(|r| r["reward"].as_f64()).collect();
    assert_eq!(rewards.len(), 2, "{recs:?}");
    assert!(rewards.iter().all(|r| (0.0..=1.0).contains(r)), "{recs:?}");
    assert!(out.join("final").join("model.safetensors").exists());

    let png = std::fs::read(out.join("curves.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(png.len() > 1000);
}

#[test]
fn rhai_plot_matches_the_cli_renderer() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.jsonl");
    let text: String = (0..6)
        .map(|s| format!("{{\"step\":{s},\"reward\":{}}}\n", s as f64 / 6.0))
        .collect();
    std::fs::write(&log, text).unwrap();
    let script = dir.path().join("p.rhai");
    let svg_rhai = dir.path().join("a.svg");
    std::fs::write(
        &script,
        format!(
            "plot({:?}, [\"reward\"], {:?}, #{{ title: \"T\" }});\n\
             let e = \"\";\n\
             try {{ plot({:?}, [\"nope\"], {:?}); }} catch (x) {{ e = `${{x}}`; }}\n\
             if !e.contains(\"metric 'nope' not found\") {{ throw e; }}",
            log.display().to_string(),
            svg_rhai.display().to_string(),
            log.display().to_string(),
            dir.path().join("b.png").display().to_string(),
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .arg("run")
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg_cli = dir.path().join("c.svg");
    let o = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .arg("plot")
        .arg(&log)
        .args(["--metrics", "reward", "--title", "T", "--out"])
        .arg(&svg_cli)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&svg_rhai).unwrap(),
        std::fs::read_to_string(&svg_cli).unwrap(),
        "the Rhai plot and `workbench plot` must draw the same image"
    );
}

/// Runs the quickstart at the smallest size with extra `--set`s; returns (success, stdout+stderr).
fn tiny_quickstart(out: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_workbench"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("WORKBENCH_PATH")
        .args(["run", "scripts/quickstart.rhai"]);
    let out_set = format!("out={:?}", out.display().to_string());
    let base = [
        "d_model=16",
        "n_layers=1",
        "n_heads=2",
        "mlp_hidden_size=32",
        "train_size=30",
        "eval_rows=4",
        "sft_steps=2",
        "sft_batch=4",
        "updates=2",
        "batch_size=2",
        "group=2",
        "steps=4",
        out_set.as_str(),
    ];
    for s in base.iter().chain(extra) {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn quickstart_runs_with_every_estimator_and_rejects_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    for (est, credit) in [("d1", "sequence"), ("coupled", "cell"), ("d1", "cell")] {
        // the d1/coupled runs also take the "elbo" SFT path
        let out = dir.path().join(format!("{est}-{credit}"));
        let (ok, text) = tiny_quickstart(
            &out,
            &[
                &format!("estimator={est:?}"),
                &format!("credit={credit:?}"),
                "mu=2",
                "keep_optimizer=false",
                "sft_objective=\"elbo\"",
            ],
        );
        assert!(ok, "{est}/{credit}: {text}");
        assert!(out.join("results.json").exists(), "{est}: {text}");
    }
    let (ok, text) = tiny_quickstart(&dir.path().join("bad"), &["estimator=\"elbo\""]);
    assert!(!ok);
    assert!(
        text.contains("--set estimator=elbo: expected \"trajectory\", \"d1\" or \"coupled\""),
        "{text}"
    );
    let (ok, text) = tiny_quickstart(&dir.path().join("bad2"), &["credit=\"token\""]);
    assert!(!ok);
    assert!(text.contains("--set credit=token"), "{text}");
    let (ok, text) = tiny_quickstart(&dir.path().join("bad3"), &["sft_objective=\"mle\""]);
    assert!(!ok);
    assert!(text.contains("--set sft_objective=mle"), "{text}");
}

#[test]
fn quickstart_rl_phase_checkpoints_and_resumes_on_the_trainer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a");
    let (ok, text) = tiny_quickstart(&out, &["save_every=1"]);
    assert!(ok, "{text}");
    assert!(out.join("checkpoint-1").is_dir(), "{text}");
    let ck = format!(
        "resume_from={:?}",
        out.join("checkpoint-1").display().to_string()
    );
    let (ok, text) = tiny_quickstart(&dir.path().join("b"), &[ck.as_str()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("resumed from") && text.contains("at update 1"),
        "{text}"
    );
    assert!(text.contains("at resume"), "{text}");
    // a changed hyperparameter is refused by name
    let (ok, text) = tiny_quickstart(&dir.path().join("c"), &[ck.as_str(), "lr=0.5"]);
    assert!(!ok);
    assert!(text.contains("lr"), "{text}");
}

//! The d1-family training scripts (`scripts/diffu_grpo.rhai`, `scripts/cj_grpo.rhai`,
//! `scripts/sft.rhai`) run two updates end to end on the tiny fixture model: the loss is
//! finite, the adapters move, and the run log and final adapters are written. The fixture's
//! random text never earns a task reward, so the RL tests use the `reward=length` pipeline
//! check (varied rewards, non-zero advantages).

use std::path::Path;
use std::process::Command;

fn run(script: &str, sets: &[String]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_workbench"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", script]);
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

fn sets(pairs: &[&str], out: &Path) -> Vec<String> {
    let mut v: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
    v.push(format!("out={:?}", out.display().to_string()));
    v
}

/// The records of a run log.
fn log_records(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `param_change=` line every script prints at the end.
fn param_change(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("param_change="))
        .unwrap_or_else(|| panic!("no param_change line in:\n{stdout}"))
        .trim()
        .parse()
        .unwrap()
}

/// Two updates: the header record (step 0: the data sets) and two records with finite losses,
/// moved adapters, saved adapters.
fn check_run(script: &str, extra: &[&str], key_finite: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (ok, stdout, stderr) = run(script, &sets(extra, &out));
    assert!(ok, "{script} failed:\n{stdout}\n{stderr}");
    let mut recs = log_records(&out);
    assert_eq!(recs.len(), 3, "{recs:?}");
    let header = recs.remove(0);
    assert_eq!(header["step"], 0, "{header}");
    assert!(
        header["train_data"].is_string() && header["eval_data"].is_string(),
        "{header}"
    );
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["step"], i as i64 + 1);
        for k in key_finite {
            let v = r[*k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k} not finite: {r}"));
            assert!(v.is_finite(), "{k} = {v}");
        }
    }
    let d = param_change(&stdout);
    assert!(d.is_finite() && d > 0.0, "adapters did not move: {d}");
    assert!(out.join("final/adapter_model.safetensors").exists());
    assert!(out.join("final/adapter_config.json").exists());
    recs
}

// GSM8K's prompts are the shortest (the shipped test file stands in for a training set here,
// which needs `allow_test_data`).
const TINY_RL: &[&str] = &[
    "task=gsm8k",
    "data=data/gsm8k_test.jsonl",
    "allow_test_data=true",
    "reward=length",
    "updates=2",
    "batch_size=2",
    "group=2",
    "gen_length=16",
    "lora_r=4",
    "lora_alpha=8",
];

#[test]
fn diffu_grpo_two_updates_move_the_adapters() {
    let mut args = TINY_RL.to_vec();
    args.extend([
        "mu=2",
        "block_length=8",
        "steps=8",
        "micro_batch=2",
        "eval_every=2",
        "eval_rows=2",
    ]);
    let recs = check_run(
        "scripts/diffu_grpo.rhai",
        &args,
        &["loss", "reward", "grad_norm", "kl", "clip_fraction"],
    );
    // Non-zero advantages: the length rewards vary within groups.
    assert!(recs
        .iter()
        .any(|r| r["flat_groups"].as_f64().unwrap() < 1.0));
    assert!(recs.iter().any(|r| r["grad_norm"].as_f64().unwrap() > 0.0));
    assert!(
        recs[1]["acc"].is_number(),
        "evaluation every 2 updates: {}",
        recs[1]
    );
}

#[test]
fn cj_grpo_two_updates_move_the_adapters() {
    // EOSER + ASS with μ 2 (old log-probs per step); semi-AR with μ 1 (ratio 1).
    for (sampler, mu) in [("eoser_ass", "mu=2"), ("semi_ar", "mu=1")] {
        let mut args = TINY_RL.to_vec();
        let s = format!("sampler={sampler}");
        args.extend([s.as_str(), mu, "block_length=8", "steps=4", "eval_every=0"]);
        let recs = check_run(
            "scripts/cj_grpo.rhai",
            &args,
            &["loss", "reward", "grad_norm", "kl"],
        );
        // ASS: floor(log2 16) = 4 decoding steps; semi-AR: `steps` (4).
        assert!(
            recs[0]["decode_steps"].as_i64().unwrap() <= 4,
            "{sampler}: {}",
            recs[0]
        );
        assert!(recs.iter().any(|r| r["grad_norm"].as_f64().unwrap() > 0.0));
    }
}

#[test]
fn sft_two_updates_move_the_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pairs.jsonl");
    let mut lines = String::new();
    for i in 0..6 {
        lines.push_str(&format!(
            "{{\"question\": \"What is {i} plus {i}?\", \"answer\": \"It is {}.\"}}\n",
            2 * i
        ));
    }
    std::fs::write(&data, lines).unwrap();
    let d = format!("data={:?}", data.display().to_string());
    let recs = check_run(
        "scripts/sft.rhai",
        &[
            d.as_str(),
            "prompt_field=question",
            "updates=2",
            "batch_size=4",
            "micro_batch=2",
            "answer_length=12",
            "lora_r=4",
            "lora_alpha=8",
        ],
        &["loss", "grad_norm", "lr"],
    );
    assert!(recs[0]["loss"].as_f64().unwrap() > 0.0);
    assert!(recs[0]["masked_tokens"].as_i64().unwrap() > 0);
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    for script in [
        "scripts/diffu_grpo.rhai",
        "scripts/cj_grpo.rhai",
        "scripts/sft.rhai",
    ] {
        // A misspelt hyperparameter stops the run.
        let (ok, _, err) = run(script, &sets(&["learning_rate=1e-5"], &out));
        assert!(
            !ok && err.contains("learning_rate") && err.contains("unknown key"),
            "{script}: {err}"
        );
        // A value of the wrong type is refused before anything runs.
        let (ok, _, err) = run(script, &sets(&["lr=\"fast\""], &out));
        assert!(!ok && err.contains("--set lr"), "{script}: {err}");
    }
    // Values checked by the scripts.
    let (ok, _, err) = run(
        "scripts/diffu_grpo.rhai",
        &sets(&["gen_length=20", "block_length=8"], &out),
    );
    assert!(!ok && err.contains("--set gen_length=20"), "{err}");
    let (ok, _, err) = run("scripts/cj_grpo.rhai", &sets(&["sampler=greedy"], &out));
    assert!(!ok && err.contains("--set sampler=greedy"), "{err}");
    // EOSER in training decodes one block, as the reference trainer asserts.
    let (ok, _, err) = run(
        "scripts/cj_grpo.rhai",
        &sets(&["sampler=eoser", "gen_length=16", "block_length=8"], &out),
    );
    assert!(
        !ok && err.contains("--set block_length=8") && err.contains("one block"),
        "{err}"
    );
    let (ok, _, err) = run(
        "scripts/diffu_grpo.rhai",
        &sets(&["reward=vibes", "task=sudoku", "train_size=4"], &out),
    );
    assert!(!ok && err.contains("--set reward=vibes"), "{err}");
    let (ok, _, err) = run("scripts/sft.rhai", &sets(&[], &out));
    assert!(!ok && err.contains("--set data="), "{err}");
    let (ok, _, err) = run("scripts/diffu_grpo.rhai", &sets(&["task=gsm8k"], &out));
    assert!(
        !ok && err.contains("--set data=") && err.contains("gsm8k"),
        "{err}"
    );
}

/// diffu-GRPO stopped after 2 updates (checkpoint) and resumed in a fresh process continues
/// exactly: updates 3 and 4 log the same numbers as an uninterrupted 4-update run, and the log
/// keeps one record per update.
#[test]
fn diffu_grpo_resumes_exactly_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut base = TINY_RL.to_vec();
    base.retain(|s| !s.starts_with("updates="));
    base.extend(["mu=2", "block_length=8", "steps=8"]);
    let with = |extra: &[&str], out: &Path| {
        let mut v = base.clone();
        v.extend_from_slice(extra);
        let (ok, so, se) = run("scripts/diffu_grpo.rhai", &sets(&v, out));
        assert!(ok, "{so}{se}");
    };
    with(&["updates=4"], &a);
    with(&["updates=2", "save_every=2"], &b);
    let ckpt = format!(
        "resume_from={:?}",
        b.join("checkpoint-2").display().to_string()
    );
    with(&["updates=4", &ckpt], &b);
    let strip = |recs: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        recs.into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("time");
                r
            })
            .collect()
    };
    let (ra, rb) = (strip(log_records(&a)), strip(log_records(&b)));
    assert_eq!(rb.len(), 5, "{rb:?}");
    assert_eq!(ra, rb);
}

/// Resuming with a changed hyperparameter is refused by name; `resume_force=true` applies it
/// and says so; a new total number of updates is applied (safe) and reported.
#[test]
fn resume_refuses_a_changed_hyperparameter_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let mut base = TINY_RL.to_vec();
    base.retain(|s| !s.starts_with("updates="));
    base.extend(["mu=1", "block_length=8", "steps=8", "eval_every=0"]);
    let go = |extra: &[&str]| {
        let mut v = base.clone();
        v.extend_from_slice(extra);
        run("scripts/diffu_grpo.rhai", &sets(&v, &a))
    };
    let (ok, so, se) = go(&["updates=1", "save_every=1"]);
    assert!(ok, "{so}{se}");
    let ckpt = format!(
        "resume_from={:?}",
        a.join("checkpoint-1").display().to_string()
    );
    let (ok, so, se) = go(&["updates=2", &ckpt, "lr=1e-4"]);
    assert!(!ok, "resumed with another lr:\n{so}");
    assert!(se.contains("lr: ") && se.contains("→ 0.0001"), "{se}");
    assert!(se.contains("resume_force=true"), "{se}");
    // The refusal points at the line inside the stdlib trainer, then the call that led there.
    assert!(se.contains("error: stdlib/trainer.rhai:"), "{se}");
    assert!(
        se.contains("in call to function 'start' at scripts/diffu_grpo.rhai:"),
        "{se}"
    );
    let (ok, so, se) = go(&["updates=2", &ckpt, "lr=1e-4", "resume_force=true"]);
    assert!(ok, "{so}{se}");
    assert!(so.contains("resumed from") && so.contains("lr:"), "{so}");
    let recs = log_records(&a);
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert_eq!(recs[2]["lr"], 1e-4, "the new lr applies: {}", recs[2]);
    // Only a longer run: applied without force.
    let (ok, so, se) = go(&["updates=3", &ckpt, "save_every=1"]);
    assert!(ok, "{so}{se}");
    assert!(
        so.contains("updates: 2 → 3") || so.contains("updates: 1 → 3"),
        "{so}"
    );
}

/// A run with reference sync (every optimizer step here: μ 2, sync every 2) stopped after 2
/// updates and resumed continues exactly: the synced base is part of the checkpoint.
#[test]
fn diffu_grpo_with_reference_sync_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut base = TINY_RL.to_vec();
    base.retain(|s| !s.starts_with("updates="));
    base.extend([
        "mu=2",
        "block_length=8",
        "steps=8",
        "sync_ref_every=2",
        "eval_every=0",
    ]);
    let with = |extra: &[&str], out: &Path| {
        let mut v = base.clone();
        v.extend_from_slice(extra);
        let (ok, so, se) = run("scripts/diffu_grpo.rhai", &sets(&v, out));
        assert!(ok, "{so}{se}");
    };
    with(&["updates=4"], &a);
    with(&["updates=2", "save_every=2"], &b);
    let ckpt = format!(
        "resume_from={:?}",
        b.join("checkpoint-2").display().to_string()
    );
    with(&["updates=4", &ckpt], &b);
    let strip = |recs: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        recs.into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("time");
                r
            })
            .collect()
    };
    let (ra, rb) = (strip(log_records(&a)), strip(log_records(&b)));
    assert_eq!(ra, rb);
    let bits = |p: &Path| std::fs::read(p.join("final/adapter_model.safetensors")).unwrap();
    assert_eq!(bits(&a), bits(&b), "final adapters differ");
}

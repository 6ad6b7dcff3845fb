//! Every runnable script under `scripts/` (the sampler demos aside) refuses a misspelt
//! `--set` key by name before doing any work, and no training script trains on a shipped test
//! set unless `allow_test_data=true` (which the run log then says). The shared `lora_targets`
//! key chooses the adapted layers (and refuses unknown ones by name).

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

/// The LoRA target layers of a finished run: `target_modules` of `<out>/final/adapter_config.json`
/// and the layer names of the saved `lora_A` tensors (`...blocks.{i}.{layer}.lora_A.weight`).
fn adapted(out: &Path) -> (Vec<String>, Vec<String>) {
    let conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("final/adapter_config.json")).unwrap(),
    )
    .unwrap();
    let modules = conf["target_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let bytes = std::fs::read(out.join("final/adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut layers: Vec<String> = st
        .names()
        .iter()
        .filter_map(|n| n.strip_suffix(".lora_A.weight"))
        .map(|n| n.rsplit('.').next().unwrap().to_string())
        .collect();
    layers.sort();
    layers.dedup();
    (modules, layers)
}

/// One tiny update of `script` with LoRA rank 2 and `extra` settings, on the fixture model.
fn tiny_lora_run(script: &str, extra: &[&str], out: &Path) -> (bool, String, String) {
    let o = format!("out={:?}", out.display().to_string());
    let mut sets = vec![
        "updates=1",
        "batch_size=1",
        "lora_r=2",
        "lora_alpha=4",
        o.as_str(),
    ];
    if script == "sft" {
        sets.extend(["prompt_field=question", "answer_length=8"]);
    } else {
        sets.extend([
            "task=gsm8k",
            "data=data/gsm8k_test.jsonl",
            "allow_test_data=true",
            "reward=length",
            "group=2",
            "gen_length=8",
            "block_length=8",
            "steps=4",
            "mu=1",
            "eval_every=0",
        ]);
    }
    sets.extend_from_slice(extra);
    run(&Path::new("scripts").join(format!("{script}.rhai")), &sets)
}

#[test]
fn lora_targets_choose_the_adapted_layers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pairs.jsonl");
    std::fs::write(
        &data,
        "{\"question\": \"What is 1 plus 1?\", \"answer\": \"It is 2.\"}\n",
    )
    .unwrap();
    let data_set = format!("data={:?}", data.display().to_string());
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (i, (script, extra, layers)) in [
        // The references' default (PEFT's seven names resolve to these four in LLaDA).
        (
            "diffu_grpo",
            vec![],
            names(&["k_proj", "q_proj", "up_proj", "v_proj"]),
        ),
        (
            "diffu_grpo",
            vec!["lora_targets=[\"q_proj\"]"],
            names(&["q_proj"]),
        ),
        (
            "diffu_grpo",
            vec!["lora_targets=[\"all\"]"],
            names(&[
                "attn_out", "ff_out", "ff_proj", "k_proj", "q_proj", "up_proj", "v_proj",
            ]),
        ),
        // d1's SFT adapts q, k, v (SFT/sft_train.py:71).
        (
            "sft",
            vec![data_set.as_str()],
            names(&["k_proj", "q_proj", "v_proj"]),
        ),
        (
            "sft",
            vec![data_set.as_str(), "lora_targets=[\"v_proj\", \"ff_out\"]"],
            names(&["ff_out", "v_proj"]),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.path().join(format!("run{i}"));
        let (ok, stdout, stderr) = tiny_lora_run(script, &extra, &out);
        assert!(ok, "{script} {extra:?}:\n{stdout}\n{stderr}");
        let (modules, saved) = adapted(&out);
        assert_eq!(saved, layers, "{script} {extra:?}: saved adapters");
        // target_modules names exactly these layers (ff_out by its per-block full name).
        let mut short: Vec<String> = modules
            .iter()
            .map(|m| m.rsplit('.').next().unwrap().to_string())
            .collect();
        short.sort();
        short.dedup();
        assert_eq!(short, layers, "{script} {extra:?}: {modules:?}");
        assert!(!modules.iter().any(|m| m == "ff_out"), "{modules:?}");
    }
}

#[test]
fn bad_lora_targets_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // o_proj is PEFT's name for a layer LLaDA calls attn_out.
    let (ok, _, err) = tiny_lora_run(
        "diffu_grpo",
        &["lora_targets=[\"q_proj\", \"o_proj\"]"],
        &out,
    );
    assert!(!ok, "an unknown layer was accepted");
    assert!(
        err.contains("--set lora_targets=") && err.contains("unknown layer o_proj"),
        "{err}"
    );
    assert!(err.contains("attn_out") && err.contains("all"), "{err}");
    let (ok, _, err) = tiny_lora_run("diffu_grpo", &["lora_targets=[]"], &out);
    assert!(!ok && err.contains("--set lora_targets="), "{err}");
    // A bare string is a type change on the command line (the array form is `["all"]`).
    let (ok, _, err) = tiny_lora_run("diffu_grpo", &["lora_targets=all"], &out);
    assert!(!ok && err.contains("--set lora_targets"), "{err}");
    assert!(!out.join("final").exists());
}

//! `scripts/mdpo.rhai`, `scripts/tools/mdpo_filter.rhai` and `scripts/igpo.rhai` run end to end on
//! the tiny fixture model (random weights: the point is the pipeline — finite losses, moving
//! adapters, IGPO's hinted replacement); and the IGPO hint builder's invariants.

use std::process::Command;

use workbench_core::train::hints::{
    revealed_count, seeded_hints, seeded_plan, stretch, HintConfig,
};

fn run(script: &str, sets: &[&str]) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run").display().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_workbench"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", script, "--set", "model=tests/fixtures/llada-tiny"])
        .args(["--set", &format!("out={out:?}")]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    (stdout, dir)
}

/// The `param_change=` line of `trainer::finish`: the L2 distance the weights moved.
fn param_change(out: &str) -> f64 {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("param_change="))
        .expect("param_change");
    line.trim().parse().unwrap()
}

/// The update records of the run log (the step-0 header naming the data sets is checked and
/// dropped).
fn log(dir: &tempfile::TempDir) -> Vec<serde_json::Value> {
    let mut recs: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("run/log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let header = recs.remove(0);
    assert_eq!(header["step"], 0, "{header}");
    assert!(header["train_data"].is_string(), "{header}");
    recs
}

const TINY: &[&str] = &[
    "gen_length=16",
    "steps=8",
    "block_length=16",
    "lora_r=4",
    "lora_alpha=8",
    "batch_size=2",
    "updates=2",
    "eval_every=0",
    "lr=0.01",
];

#[test]
fn mdpo_trains_two_updates_with_finite_loss() {
    // With random weights nothing is ever correct; "correct" := the decoded x̂0 contains "e",
    // which varies across steps and rows, so advantages and gradients are non-zero.
    let mut sets = TINY.to_vec();
    sets.extend([
        "task=gsm8k",
        "data=data/gsm8k_test.jsonl",
        "allow_test_data=true",
        "group=2",
        "sample_train_steps=2",
        "correct_contains=\"e\"",
        // The release's block-length mixture, one length drawn per rollout batch.
        "block_lengths=[8, 16]",
    ]);
    let (out, dir) = run("scripts/mdpo.rhai", &sets);
    let recs = log(&dir);
    assert_eq!(recs.len(), 2, "{out}");
    for r in &recs {
        assert!(r["loss"].as_f64().unwrap().is_finite(), "{r}");
        assert!(r["pairs"].as_i64().unwrap() > 0, "{r}");
        assert_eq!(r["steps_recorded"], 8);
        let bl = r["block_length"].as_i64().unwrap();
        assert!(bl == 8 || bl == 16, "{r}");
    }
    let d = param_change(&out);
    assert!(d > 1e-6, "adapters did not move: {d}\n{out}");
    assert!(dir
        .path()
        .join("run/final/adapter_model.safetensors")
        .exists());
}

#[test]
fn mdpo_defaults_to_the_math_verify_judge() {
    // No `task`: the release's math-verify reward, `math500:verify`, judges every step's x̂0.
    let mut sets = TINY.to_vec();
    sets.retain(|s| !s.starts_with("updates="));
    sets.extend([
        "updates=1",
        "data=data/math500_test.jsonl",
        "allow_test_data=true",
        "group=2",
        "sample_train_steps=2",
    ]);
    let (out, dir) = run("scripts/mdpo.rhai", &sets);
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.path().join("run/log.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["task"], "math500:verify", "{out}");
    let recs = log(&dir);
    assert_eq!(recs.len(), 1, "{out}");
    assert_eq!(recs[0]["steps_recorded"], 8);
    assert!(recs[0]["reward_any_step"].as_f64().unwrap().is_finite());
}

#[test]
fn mdpo_filter_writes_jsonl() {
    let (out, dir) = run(
        "scripts/tools/mdpo_filter.rhai",
        &[
            "task=gsm8k",
            "data=data/gsm8k_test.jsonl",
            "allow_test_data=true",
            "limit=3",
            "gen_length=16",
            "steps=8",
            "block_length=16",
            "correct_contains=\"e\"",
        ],
    );
    let text = std::fs::read_to_string(dir.path().join("run")).unwrap();
    assert!(out.contains("kept "), "{out}");
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let first = v["first_correct_step"].as_i64().unwrap();
        assert!(first >= 0 && first < v["num_steps"].as_i64().unwrap() - 1);
    }
}

#[test]
fn igpo_replaces_wrong_samples_with_correct_hinted_ones() {
    // Reference solutions made of a run of '~' (then "#### 7"); "correct" := the text contains
    // "~~~~~". A revealed chunk (≥ 5 tokens of the run) makes a hinted rollout correct, while
    // the random model's own samples are wrong.
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("train.jsonl");
    let sol = format!("{} #### 7", "~".repeat(80));
    let line = serde_json::json!({"question": "What is 3 + 4?", "answer": sol}).to_string();
    std::fs::write(&path, format!("{line}\n{line}\n")).unwrap();
    let data_set = format!("data={:?}", path.display().to_string());
    let mut sets = TINY.to_vec();
    sets.extend([
        "task=gsm8k",
        data_set.as_str(),
        "gen_length=64",
        "block_length=64",
        "group=3",
        "batch_size=1",
        "groups_per_update=2",
        "mu=1",
        "max_replace=2",
        "warmup=0",
        "hint_margin=4",
        "correct_contains=\"~~~~~\"",
    ]);
    let (out, dir) = run("scripts/igpo.rhai", &sets);
    let recs = log(&dir);
    assert_eq!(recs.len(), 2, "{out}");
    for r in &recs {
        assert!(r["loss"].as_f64().unwrap().is_finite(), "{r}");
        assert_eq!(r["all_wrong_before"], 1.0, "{r}");
        // Two groups per optimizer step (accumulated one at a time), each all wrong.
        assert_eq!(r["hinted"], 6, "{r}");
        assert!(r["replaced"].as_i64().unwrap() >= 2, "{r}");
        assert!(r["replaced"].as_i64().unwrap() <= 4, "{r}");
        assert_eq!(r["all_wrong_after"], 0.0, "{r}");
    }
    let d = param_change(&out);
    assert!(d > 1e-6, "adapters did not move: {d}\n{out}");
}

#[test]
fn hint_builder_chunks_reveal_last_clamp_stretch_and_is_seeded() {
    let cfg = HintConfig::default();
    let toks: Vec<u32> = (1000..1400).collect();
    for seed in 0..40u64 {
        for eta in [0.2, 0.4, 0.6] {
            let p = seeded_plan(toks.len(), 256, eta, &cfg, seed);
            assert_eq!(p.trace_len, 256 - 30, "truncated to gen_length − 30");
            let mut pos = 0;
            for &(s, e) in &p.chunks {
                assert_eq!(s, pos);
                assert!((5..=10).contains(&(e - s)));
                pos = e;
            }
            assert!(p.trace_len - pos < 5, "only a short tail is dropped");
            let total = p.chunks.len();
            assert_eq!(p.revealed.len(), revealed_count(total, eta).max(1));
            assert_eq!(
                *p.revealed.last().unwrap(),
                total - 1,
                "last chunk revealed"
            );
            assert_eq!(p.stretch, 1.0, "a long trace is not stretched");
            let h = seeded_hints(&toks, 256, eta, &cfg, seed);
            assert_eq!(
                h,
                seeded_hints(&toks, 256, eta, &cfg, seed),
                "same seed, same hints"
            );
            assert!(h.keys().all(|&k| k < 256 - 30));
            let (s, e) = p.chunks[total - 1];
            let last: Vec<u32> = h.values().rev().take(e - s).rev().copied().collect();
            assert_eq!(
                last,
                toks[s..e].to_vec(),
                "the last chunk's tokens end the hints"
            );
        }
    }
    // A short trace is stretched, at most by 1.5, and the gaps grow accordingly.
    assert_eq!(stretch(226, 100, 1.5), 1.5);
    assert!((stretch(226, 200, 1.5) - 1.13).abs() < 1e-12);
    assert_eq!(stretch(226, 300, 1.5), 1.0);
    let p = seeded_plan(100, 256, 0.6, &cfg, 3);
    assert_eq!(p.stretch, 1.5);
    for w in p.revealed.windows(2).zip(p.placed.windows(2)) {
        let ((a, b), (pa, pb)) = ((w.0[0], w.0[1]), (w.1[0], w.1[1]));
        let gap = p.chunks[b].0 - p.chunks[a].1;
        assert_eq!(pb.0 - (pa.0 + pa.1), ((gap as f64) * 1.5).floor() as usize);
    }
    // Different seeds give different hint sets.
    let a = seeded_hints(&toks, 256, 0.4, &cfg, 1);
    let b = seeded_hints(&toks, 256, 0.4, &cfg, 2);
    assert_ne!(a, b);
}

//! Generation from scripts and from the CLI: the Rhai `generate` API, the EOSER + ASS hook
//! script against the reference, and `workbench generate` on JSONL and `--prompt`.

mod common;

use std::path::Path;
use std::process::Command;

use common::fixture;

fn workbench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{err}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        err,
    )
}

#[test]
fn eoser_ass_hook_script_reproduces_the_reference() {
    let golden = fixture("samplers.json");
    let model = fixture("llada-tiny");
    let (ok, out, err) = workbench(&[
        "run",
        "scripts/samplers/eoser_ass.rhai",
        "--set",
        &format!("golden={:?}", golden.display().to_string()),
        "--set",
        &format!("model={:?}", model.display().to_string()),
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.matches("identical to the reference").count(),
        2,
        "{out}"
    );
}

#[test]
fn rhai_generate_returns_ids_texts_nfe_and_a_trajectory() {
    let engine = workbench_scripting::new_engine();
    let src = format!(
        r#"
        let m = load_model({:?});
        let out = generate(m, ["What is 2 plus 3?", [5, 6, 7]], #{{ chat: true, gen_length: 16, steps: 8, block_length: 8, record: true }});
        let t = out.trajectory;
        let committed = 0;
        for s in 0..t.num_steps {{ committed += t.committed(s).sum().item(); }}
        [out.completions[0].len(), out.completions[1].len(), out.texts.len(), out.nfe, t.num_steps, committed,
         t.state(t.num_steps).shape, out.ids[1].len()]
        "#,
        fixture("llada-tiny").display().to_string()
    );
    let r: rhai::Array = engine.eval(&src).unwrap();
    let ints: Vec<String> = r.iter().map(|v| v.to_string()).collect();
    assert_eq!(ints[0], "16");
    assert_eq!(ints[1], "16");
    assert_eq!(ints[2], "2");
    assert_eq!(ints[3], "8", "8 steps, one forward each");
    assert_eq!(ints[4], "8");
    assert_eq!(
        ints[5], "32",
        "every generated position is committed exactly once"
    );
    assert_eq!(ints[7], "19", "the id prompt is unpadded: 3 + 16");
}

#[test]
fn rhai_generate_groups_and_hooks_and_config_errors() {
    let engine = workbench_scripting::new_engine();
    let m = fixture("llada-tiny").display().to_string();
    // A GRPO group: 3 copies, distinct seeds, so temperature sampling differs across copies,
    // and a score hook that changes nothing reproduces the built-in result.
    let src = format!(
        r#"
        let m = load_model({m:?});
        let a = generate(m, [[5, 6, 7]], #{{ gen_length: 8, steps: 8, temperature: 1.5, repeat: 3, seed: 4 }});
        let b = generate(m, [[5, 6, 7]], #{{ gen_length: 8, steps: 8, temperature: 1.5, repeat: 3, seed: 4,
                                            score_fn: |step, conf, cand| conf }});
        [a.completions == b.completions, a.completions[0] != a.completions[1] || a.completions[1] != a.completions[2]]
        "#
    );
    let r: rhai::Array = engine.eval(&src).unwrap();
    assert!(r[0].as_bool().unwrap(), "identity hook changed the result");
    assert!(
        r[1].as_bool().unwrap(),
        "group copies should sample differently"
    );
    let bad = format!("let m = load_model({m:?}); generate(m, [[5]], #{{ gen_length: 30, steps: 6, block_length: 8 }})");
    let e = engine.run(&bad).unwrap_err().to_string();
    assert!(e.contains("30") && e.contains("8"), "{e}");
    let bad = format!("let m = load_model({m:?}); generate(m, [[5]], #{{ gen_lenght: 8 }})");
    let e = engine.run(&bad).unwrap_err().to_string();
    assert!(e.contains("gen_lenght"), "{e}");
}

#[test]
fn cli_generate_from_jsonl_skips_malformed_lines_and_batches_invariantly() {
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("req.jsonl");
    std::fs::write(
        &req,
        "{\"id\": \"a\", \"prompt\": \"What is 2 plus 3?\"}\nnot json\n{\"id\": \"b\", \"prompt_ids\": [5, 6, 7], \"hints\": {\"2\": 100}}\n{\"id\": \"c\"}\n",
    )
    .unwrap();
    let model = fixture("llada-tiny").display().to_string();
    let common = [
        "--model",
        &model,
        "--chat",
        "--gen-length",
        "16",
        "--steps",
        "8",
        "--block-length",
        "8",
        "--temperature",
        "0.8",
        "--seed",
        "3",
    ];
    let run = |batch: &str, out: &Path| {
        let mut args = vec![
            "generate",
            "--in",
            req.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--batch-size",
            batch,
        ];
        args.extend_from_slice(&common);
        workbench(&args)
    };
    let out1 = dir.path().join("o1.jsonl");
    let (ok, _, err) = run("1", &out1);
    assert!(ok, "{err}");
    assert!(
        err.contains(":2:") && err.contains(":4:"),
        "malformed lines reported with numbers: {err}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out1)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "a");
    assert_eq!(lines[1]["output_ids"].as_array().unwrap().len(), 16);
    assert_eq!(lines[1]["output_ids"][2], 100, "the hint is kept");
    assert!(lines[0]["nfe"].as_u64().unwrap() > 0 && lines[0]["text"].is_string());
    // Same requests in one batch: same outputs (per-request seeds, batch invariance).
    let out2 = dir.path().join("o2.jsonl");
    let (ok, _, err) = run("4", &out2);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(&out1).unwrap(),
        std::fs::read_to_string(&out2).unwrap()
    );
    // --strict turns the first malformed line into an error naming it.
    let mut args = vec!["generate", "--in", req.to_str().unwrap(), "--strict"];
    args.extend_from_slice(&common);
    let (ok, _, err) = workbench(&args);
    assert!(!ok && err.contains("req.jsonl:2"), "{err}");
}

#[test]
fn cli_generate_prompt_with_chat_and_conflicting_flags() {
    let model = fixture("llada-tiny").display().to_string();
    let (ok, out, err) = workbench(&[
        "generate",
        "--model",
        &model,
        "--prompt",
        "Hi",
        "--chat",
        "--gen-length",
        "8",
        "--steps",
        "4",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["output_ids"].as_array().unwrap().len(), 8);
    let (ok, _, err) = workbench(&[
        "generate",
        "--model",
        &model,
        "--prompt",
        "Hi",
        "--gen-length",
        "16",
        "--block-length",
        "5",
    ]);
    assert!(!ok && err.contains("16") && err.contains("5"), "{err}");
    let (ok, _, err) = workbench(&[
        "generate",
        "--model",
        &model,
        "--prompt",
        "Hi",
        "--eoser-gamma",
        "0.4",
    ]);
    assert!(!ok && err.contains("MIN,MAX"), "{err}");
}

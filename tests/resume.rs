//! Exact resume: 6 LoRA steps straight vs 3 steps + `save_checkpoint` + a fresh process that
//! `resume`s + 3 more steps must give bit-identical adapters and per-step metrics.

mod common;

use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device};
use common::fixture;

fn run(sets: &[String]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/resume.rhai");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_workbench"));
    cmd.arg("run").arg(script).env_remove("WORKBENCH_PATH");
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    (out.status.success(), text)
}

fn sets(out: &Path, extra: &[(&str, String)]) -> Vec<String> {
    let model = fixture("llada-tiny");
    let mut v = vec![
        format!("model=\"{}\"", model.display()),
        format!("out=\"{}\"", out.display()),
    ];
    v.extend(extra.iter().map(|(k, x)| format!("{k}={x}")));
    v
}

fn adapters(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let t = candle_core::safetensors::load(dir.join("adapter_model.safetensors"), &Device::Cpu)
        .unwrap();
    let mut v: Vec<(String, Vec<u32>)> = t
        .into_iter()
        .map(|(n, t)| {
            let bits = t
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into_iter()
                .map(f32::to_bits)
                .collect();
            (n, bits)
        })
        .collect();
    v.sort();
    v
}

fn metrics(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn three_steps_save_resume_three_steps_equals_six_straight() {
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    let ckpt = tmp.path().join("ckpt");
    let q = |p: &Path| format!("\"{}\"", p.display());

    let (ok, text) = run(&sets(&straight, &[]));
    assert!(ok, "{text}");
    let (ok, text) = run(&sets(
        &first,
        &[
            ("steps", "6".into()),
            ("save_at", "3".into()),
            ("ckpt", q(&ckpt)),
        ],
    ));
    assert!(ok, "{text}");
    // The checkpoint doubles as a PEFT adapter export.
    assert!(ckpt.join("state.safetensors").is_file());
    assert!(ckpt.join("adapter/adapter_model.safetensors").is_file());
    assert!(ckpt.join("adapter/adapter_config.json").is_file());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("state.json")).unwrap()).unwrap();
    assert_eq!(meta["format"], "workbench-checkpoint/1");
    assert_eq!(meta["step"], 3);
    assert_eq!(meta["optimizer"]["step"], 3);

    // A fresh process resumes from the checkpoint and runs steps 4..=6.
    let (ok, text) = run(&sets(&second, &[("resume", q(&ckpt))]));
    assert!(ok, "{text}");

    let a = metrics(&straight);
    let b = metrics(&second);
    assert_eq!(a["metrics"].as_array().unwrap().len(), 6);
    assert_eq!(a["metrics"], b["metrics"], "per-step metrics differ");
    // The run crossed an epoch, so the loader's cursor mattered.
    assert_eq!(a["metrics"][5]["epoch"], 1);
    assert_eq!(
        adapters(&straight.join("final")),
        adapters(&second.join("final"))
    );
    // The resumed run's config differs (resume, out): reported as a warning, not an error.
    let w = b["warnings"].to_string();
    assert!(w.contains("config differs") && w.contains("resume"), "{w}");
    // The mid-run checkpoint's adapters differ from the final ones (training went on).
    assert_ne!(
        adapters(&ckpt.join("adapter")),
        adapters(&straight.join("final"))
    );

    // Resuming into another adapter setup fails, naming the file and the mismatch.
    let (ok, text) = run(&sets(
        &tmp.path().join("bad"),
        &[("resume", q(&ckpt)), ("r", "8".into())],
    ));
    assert!(!ok);
    assert!(
        text.contains("state.safetensors") && text.contains("does not fit this model"),
        "{text}"
    );
}

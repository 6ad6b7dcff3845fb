//! `workbench info` on good and bad checkpoints: every bad input is a one-paragraph error with
//! a non-zero exit code and no panic.

mod common;

use std::path::Path;
use std::process::Command;

use common::fixture;

fn info(model: &str, env: &[(&str, &Path)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_workbench"));
    cmd.arg("info").arg(model);
    cmd.env_remove("HF_HUB_CACHE").env_remove("HF_HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        stderr,
    )
}

/// A copy of the tiny checkpoint in a temp dir, for corrupting.
fn copy_tiny() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture("llada-tiny").join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn expect_error(model: &str, needles: &[&str]) {
    let (ok, _, err) = info(model, &[]);
    assert!(!ok, "expected failure for {model}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one paragraph expected: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "error should mention {n:?}: {err}");
    }
}

#[test]
fn info_reports_the_tiny_model() {
    let (ok, out, err) = info(fixture("llada-tiny").to_str().unwrap(), &[]);
    assert!(ok, "{err}");
    for needle in [
        "layers       2",
        "d_model 64",
        "parameters   222528",
        "<|mdm_mask|> 999",
        "F32",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn directory_without_config_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    expect_error(dir.path().to_str().unwrap(), &["config.json"]);
}

#[test]
fn unknown_block_type_is_rejected_by_name() {
    let dir = copy_tiny();
    let p = dir.path().join("config.json");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"llama\"", "\"sequential\"");
    std::fs::write(&p, text).unwrap();
    expect_error(dir.path().to_str().unwrap(), &["block_type", "sequential"]);
}

fn rewrite_weights(
    dir: &Path,
    edit: impl FnOnce(&mut std::collections::HashMap<String, candle_core::Tensor>),
) {
    let p = dir.join("model.safetensors");
    let mut w = candle_core::safetensors::load(&p, &candle_core::Device::Cpu).unwrap();
    edit(&mut w);
    candle_core::safetensors::save(&w, &p).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_tiny();
    rewrite_weights(dir.path(), |w| {
        w.remove("model.transformer.blocks.1.up_proj.weight");
    });
    expect_error(
        dir.path().to_str().unwrap(),
        &["model.transformer.blocks.1.up_proj.weight", "missing"],
    );
}

#[test]
fn misshaped_tensor_names_both_shapes_and_the_file() {
    let dir = copy_tiny();
    rewrite_weights(dir.path(), |w| {
        let t = candle_core::Tensor::zeros(
            (64, 32),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        w.insert("model.transformer.blocks.0.q_proj.weight".into(), t);
    });
    expect_error(
        dir.path().to_str().unwrap(),
        &[
            "blocks.0.q_proj.weight",
            "[64, 32]",
            "[64, 64]",
            "model.safetensors",
        ],
    );
}

#[test]
fn corrupt_safetensors_header_is_an_error() {
    let dir = copy_tiny();
    let p = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[8..40].copy_from_slice(&[b'#'; 32]);
    std::fs::write(&p, bytes).unwrap();
    expect_error(dir.path().to_str().unwrap(), &["model.safetensors"]);
}

#[test]
fn repo_id_missing_from_cache_lists_where_it_looked() {
    let cache = tempfile::tempdir().unwrap();
    let (ok, _, err) = info(
        "GSAI-ML/LLaDA-8B-Instruct",
        &[("HF_HUB_CACHE", cache.path())],
    );
    assert!(!ok);
    assert!(err.contains("models--GSAI-ML--LLaDA-8B-Instruct"), "{err}");
    assert!(err.contains(cache.path().to_str().unwrap()), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn repo_id_resolves_from_a_fake_hub_cache() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--GSAI-ML--LLaDA-Tiny");
    let snap = repo.join("snapshots").join("0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture("llada-tiny").join(f), snap.join(f)).unwrap();
    }
    // HF_HOME/hub is the second place looked at.
    let home = tempfile::tempdir().unwrap();
    std::fs::rename(cache.path(), home.path().join("hub")).unwrap_or_else(|_| {
        copy_dir(cache.path(), &home.path().join("hub"));
    });
    let (ok, out, err) = info("GSAI-ML/LLaDA-Tiny", &[("HF_HOME", home.path())]);
    assert!(ok, "{err}");
    assert!(out.contains("0123abcd"), "{out}");
    let (ok, _, err) = info("GSAI-ML/LLaDA-Tiny@feedbeef", &[("HF_HOME", home.path())]);
    assert!(!ok && err.contains("not found"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

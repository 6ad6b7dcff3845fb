//! Training checkpoints: atomic swap into place, failures leave the previous checkpoint intact,
//! clear load errors, and RNG state round trips that continue the same stream.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;
use serde_json::json;
use workbench_core::train::checkpoint::{self, Checkpoint};

fn ckpt(v: f32, step: u64) -> Checkpoint {
    let mut tensors = HashMap::new();
    tensors.insert(
        "model.w".to_string(),
        Tensor::new(&[v, v + 1.0, v + 2.0], &Device::Cpu).unwrap(),
    );
    Checkpoint {
        tensors,
        meta: json!({ "step": step }),
    }
}

fn leftovers(parent: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn save_then_load_round_trips_and_replaces_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    checkpoint::save(&dir, &ckpt(1.0, 1), |d| {
        std::fs::write(d.join("extra.txt"), "one")?;
        Ok(())
    })
    .unwrap();
    let got = checkpoint::load(&dir).unwrap();
    assert_eq!(got.meta["step"], 1);
    assert_eq!(got.meta["format"], checkpoint::FORMAT);
    assert_eq!(
        got.tensors["model.w"].to_vec1::<f32>().unwrap(),
        vec![1.0, 2.0, 3.0]
    );
    assert!(dir.join("extra.txt").is_file());

    // A second save replaces the whole folder: the old extra file is gone.
    checkpoint::save(&dir, &ckpt(5.0, 2), |_| Ok(())).unwrap();
    let got = checkpoint::load(&dir).unwrap();
    assert_eq!(got.meta["step"], 2);
    assert_eq!(
        got.tensors["model.w"].to_vec1::<f32>().unwrap(),
        vec![5.0, 6.0, 7.0]
    );
    assert!(!dir.join("extra.txt").exists());
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );
}

#[test]
fn a_failed_save_leaves_the_previous_checkpoint_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    checkpoint::save(&dir, &ckpt(1.0, 1), |_| Ok(())).unwrap();
    let e = checkpoint::save(&dir, &ckpt(9.0, 9), |d| {
        std::fs::write(d.join("partial"), "x")?;
        anyhow::bail!("disk full (simulated)")
    })
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("disk full") && msg.contains("ckpt"), "{msg}");
    let got = checkpoint::load(&dir).unwrap();
    assert_eq!(got.meta["step"], 1);
    assert_eq!(
        got.tensors["model.w"].to_vec1::<f32>().unwrap(),
        vec![1.0, 2.0, 3.0]
    );
    assert!(!dir.join("partial").exists());
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );

    // A failure with no previous checkpoint leaves nothing behind.
    let fresh = tmp.path().join("fresh");
    assert!(checkpoint::save(&fresh, &ckpt(1.0, 1), |_| anyhow::bail!("no")).is_err());
    assert!(!fresh.exists());
}

#[test]
fn load_errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let e = format!("{:#}", checkpoint::load(&missing).unwrap_err());
    assert!(e.contains("no such folder") && e.contains("nope"), "{e}");

    let dir = tmp.path().join("ckpt");
    checkpoint::save(&dir, &ckpt(1.0, 1), |_| Ok(())).unwrap();
    std::fs::remove_file(dir.join(checkpoint::TENSORS_FILE)).unwrap();
    let e = format!("{:#}", checkpoint::load(&dir).unwrap_err());
    assert!(e.contains("state.safetensors is missing"), "{e}");

    checkpoint::save(&dir, &ckpt(1.0, 1), |_| Ok(())).unwrap();
    std::fs::write(dir.join(checkpoint::META_FILE), r#"{"format": "other/2"}"#).unwrap();
    let e = format!("{:#}", checkpoint::load(&dir).unwrap_err());
    assert!(
        e.contains("state.json") && e.contains("workbench-checkpoint/1") && e.contains("other/2"),
        "{e}"
    );
}

#[test]
fn std_rng_and_chacha12_share_a_stream() {
    for seed in [0u64, 1, 42, u64::MAX] {
        let mut a = StdRng::seed_from_u64(seed);
        let mut b = ChaCha12Rng::seed_from_u64(seed);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_eq!(a.random_range(0..1000i64), b.random_range(0..1000i64));
        assert_eq!(a.random::<f64>(), b.random::<f64>());
    }
}

#[test]
fn rng_state_round_trip_continues_the_stream() {
    // Word positions inside a block, at a block boundary, after 32-bit draws (odd positions).
    for (draws64, draws32) in [(0, 0), (3, 1), (32, 0), (7, 5), (1000, 3)] {
        let mut g = ChaCha12Rng::seed_from_u64(7);
        g.set_stream(3);
        for _ in 0..draws64 {
            g.next_u64();
        }
        for _ in 0..draws32 {
            g.next_u32();
        }
        let state = checkpoint::rng_state(&g);
        let text = serde_json::to_string(&state).unwrap();
        let mut r = checkpoint::rng_restore(&serde_json::from_str(&text).unwrap()).unwrap();
        for _ in 0..200 {
            assert_eq!(g.next_u32(), r.next_u32());
            assert_eq!(g.next_u64(), r.next_u64());
        }
        assert_eq!(g.random::<f64>(), r.random::<f64>());
    }
    let e = checkpoint::rng_restore(&json!({"seed": "zz"})).unwrap_err();
    assert!(format!("{e}").contains("64 hex digits"), "{e}");
}

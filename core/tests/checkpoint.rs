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

#[test]
fn a_non_empty_folder_that_is_not_a_checkpoint_is_refused_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("results");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("paper.tex"), "precious").unwrap();
    let e = checkpoint::save(&dir, &ckpt(1.0, 1), |_| Ok(())).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("not a workbench checkpoint") && msg.contains("results"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("paper.tex")).unwrap(),
        "precious"
    );
    // An empty folder, or one of our checkpoints, is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    checkpoint::save(&empty, &ckpt(1.0, 1), |_| Ok(())).unwrap();
    checkpoint::save(&empty, &ckpt(2.0, 2), |_| Ok(())).unwrap();
    assert_eq!(checkpoint::load(&empty).unwrap().meta["step"], 2);
}

#[test]
fn stale_temp_and_old_folders_are_cleaned_at_the_next_save_or_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    checkpoint::save(&dir, &ckpt(1.0, 1), |_| Ok(())).unwrap();
    // What kill -9 during earlier saves leaves: temp and old folders of dead processes
    // (pid 999999999 does not exist), and one of a live process (ours is the only one we
    // can be sure of: pid 1 is alive and not us).
    for name in [".ckpt.tmp-999999999", ".ckpt.old-999999998"] {
        std::fs::create_dir(tmp.path().join(name)).unwrap();
        std::fs::write(tmp.path().join(name).join("state.json"), "{}").unwrap();
    }
    std::fs::create_dir(tmp.path().join(".ckpt.tmp-1")).unwrap();
    std::fs::create_dir(tmp.path().join(".other.tmp-999999999")).unwrap();
    checkpoint::save(&dir, &ckpt(2.0, 2), |_| Ok(())).unwrap();
    let mut left = leftovers(tmp.path());
    left.sort();
    assert_eq!(left, [".ckpt.tmp-1", ".other.tmp-999999999"], "{left:?}");

    // A save cut between its two renames: the previous checkpoint is parked as `.old-<pid>`
    // and `dir` is gone. The next restore puts it back instead of deleting it.
    std::fs::rename(&dir, tmp.path().join(".ckpt.old-999999997")).unwrap();
    let done = checkpoint::clean_stale(&dir);
    assert!(
        done[0].contains("restored the previous checkpoint"),
        "{done:?}"
    );
    assert_eq!(checkpoint::load(&dir).unwrap().meta["step"], 2);
}

#[test]
fn keep_last_keeps_the_newest_checkpoints_of_the_series() {
    let tmp = tempfile::tempdir().unwrap();
    for step in [5u64, 10, 15, 20] {
        checkpoint::save(
            &tmp.path().join(format!("checkpoint-{step}")),
            &ckpt(step as f32, step),
            |_| Ok(()),
        )
        .unwrap();
    }
    // Not ours, though named like the series: never touched.
    std::fs::create_dir(tmp.path().join("checkpoint-1")).unwrap();
    std::fs::write(tmp.path().join("checkpoint-1/notes.txt"), "x").unwrap();
    let removed = checkpoint::keep_last(&tmp.path().join("checkpoint-20"), 2).unwrap();
    let names: Vec<String> = removed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["checkpoint-5", "checkpoint-10"]);
    for (n, there) in [(1, true), (5, false), (10, false), (15, true), (20, true)] {
        assert_eq!(
            tmp.path().join(format!("checkpoint-{n}")).exists(),
            there,
            "{n}"
        );
    }
    assert!(checkpoint::keep_last(&tmp.path().join("final"), 2).is_err());
}

#[test]
fn a_changed_config_is_refused_by_name_unless_safe_or_forced() {
    use workbench_core::train::checkpoint::{ResumePolicy, TrainState};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    let saved = json!({"lr": 0.001, "updates": 10, "out": "a"});
    let state = TrainState {
        step: Some(3),
        config: Some(saved.clone()),
        ..Default::default()
    };
    checkpoint::save_state(&dir, &state, None).unwrap();
    let now = |v: serde_json::Value| TrainState {
        config: Some(v),
        ..Default::default()
    };
    let strict = ResumePolicy::default();
    // `out` always may change.
    let r = checkpoint::restore(
        &dir,
        &mut now(json!({"lr": 0.001, "updates": 10, "out": "b"})),
        &strict,
    )
    .unwrap();
    assert_eq!(r.step, Some(3));
    assert_eq!(r.changed, ["out: \"a\" → \"b\""]);
    // A hyperparameter: refused by name.
    let e = checkpoint::restore(
        &dir,
        &mut now(json!({"lr": 0.002, "updates": 20, "out": "a"})),
        &strict,
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("lr: 0.001 → 0.002") && msg.contains("resume_force"),
        "{msg}"
    );
    assert!(msg.contains("updates: 10 → 20"), "{msg}");
    // Declared safe: applied and reported.
    let safe = ResumePolicy {
        safe: vec!["updates".into()],
        force: false,
    };
    let r = checkpoint::restore(
        &dir,
        &mut now(json!({"lr": 0.001, "updates": 20, "out": "a"})),
        &safe,
    )
    .unwrap();
    assert_eq!(r.changed, ["updates: 10 → 20"]);
    assert!(
        r.warnings.iter().any(|w| w.contains("applying: updates")),
        "{:?}",
        r.warnings
    );
    // Forced: everything applies, each reported.
    let force = ResumePolicy {
        safe: vec![],
        force: true,
    };
    let r = checkpoint::restore(
        &dir,
        &mut now(json!({"lr": 0.002, "updates": 10, "out": "a"})),
        &force,
    )
    .unwrap();
    assert_eq!(r.changed, ["lr: 0.001 → 0.002"]);
}

//! LoRA adapters: PEFT layout and round trip, reference views, merging, gradient coverage, and
//! activation checkpointing's gradients against the plain graph.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use workbench_core::model::lora::{REFERENCE_TARGETS, TARGETS};
use workbench_core::model::{llada::tensor_names, remat, Llada, LoadOptions, LoraConfig};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llada-tiny")
}

fn base() -> Llada {
    Llada::load(&fixture(), &LoadOptions::default()).unwrap()
}

fn ids() -> Tensor {
    Tensor::new(
        &[[5u32, 17, 230, 999, 999, 994], [42, 7, 999, 3, 999, 994]],
        &Device::Cpu,
    )
    .unwrap()
}

/// All seven linear layers (the option; the default is the reference's q, k, v, up).
fn cfg(r: usize, dropout: f64) -> LoraConfig {
    LoraConfig {
        r,
        alpha: 16.0,
        dropout,
        seed: 7,
        targets: TARGETS.iter().map(|s| s.to_string()).collect(),
        ..LoraConfig::default()
    }
}

/// Gives every `B` matrix random values (PEFT starts them at zero, which hides bugs).
fn perturb(m: &Llada, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for (name, v) in m.adapter_vars() {
        if name.contains("lora_B") {
            let n = v.elem_count();
            let data: Vec<f32> = (0..n).map(|_| rng.random_range(-0.1f32..0.1)).collect();
            v.set(&Tensor::from_vec(data, v.dims(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn fresh_adapters_leave_the_model_unchanged_and_reference_view_is_the_base() {
    let b = base();
    let m = b.add_lora(&cfg(4, 0.0)).unwrap();
    let x = ids();
    assert_eq!(
        max_diff(&b.forward(&x, None).unwrap(), &m.forward(&x, None).unwrap()),
        0.0
    );
    perturb(&m, 1);
    let on = m.forward(&x, None).unwrap();
    let off = m.with_adapters(false).forward(&x, None).unwrap();
    assert!(
        max_diff(&on, &off) > 1e-3,
        "adapters must change the logits"
    );
    assert_eq!(max_diff(&off, &b.forward(&x, None).unwrap()), 0.0);
    // 7 targets × 2 matrices × 2 layers, named as PEFT names them.
    let vars = m.trainable_vars();
    assert_eq!(vars.len(), 7 * 2 * b.config().n_layers);
    assert_eq!(
        vars[0].0,
        "base_model.model.model.transformer.blocks.0.q_proj.lora_A.weight"
    );
    assert_eq!(vars[0].1.dims(), &[4, b.config().d_model]);
}

#[test]
fn gradient_reaches_every_adapter_and_nothing_in_the_base() {
    // Start from a trainable base so its weights would receive gradients if not frozen.
    let trainable = Llada::load(
        &fixture(),
        &LoadOptions {
            trainable: true,
            ..Default::default()
        },
    )
    .unwrap();
    let m = trainable.add_lora(&cfg(4, 0.0)).unwrap();
    perturb(&m, 2);
    let logits = m.forward(&ids(), None).unwrap();
    let loss = workbench_core::ops::log_softmax(&logits, 2)
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, v) in m.trainable_vars() {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{name} got no gradient"));
        let n = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n.is_finite() && n > 0.0, "{name}: |g|² = {n}");
    }
    for (name, v) in trainable.vars() {
        assert!(
            grads.get(v.as_tensor()).is_none(),
            "frozen {name} got a gradient"
        );
    }
}

#[test]
fn peft_round_trip_and_merged_export_reproduce_the_logits() {
    let dir = tempfile::tempdir().unwrap();
    let m = base().add_lora(&cfg(8, 0.05)).unwrap();
    perturb(&m, 3);
    let x = ids();
    let want = m.forward(&x, None).unwrap();

    let adir = dir.path().join("adapter");
    m.save_adapters(&adir, "llada-tiny").unwrap();
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(adir.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(conf["peft_type"], "LORA");
    assert_eq!(conf["r"], 8);
    assert_eq!(conf["lora_alpha"], 16.0);
    // Six short names plus `ff_out` by its full name in each of the 2 blocks.
    assert_eq!(conf["target_modules"].as_array().unwrap().len(), 6 + 2);
    let stored =
        candle_core::safetensors::load(adir.join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(stored.contains_key("base_model.model.model.transformer.blocks.1.ff_out.lora_B.weight"));
    assert_eq!(stored.len(), m.adapter_vars().len());

    let reloaded = base().load_adapters(&adir).unwrap();
    assert_eq!(reloaded.lora_config().unwrap().r, 8);
    assert_eq!(max_diff(&reloaded.forward(&x, None).unwrap(), &want), 0.0);

    // f32: W + sBA vs xWᵀ + s(xAᵀ)Bᵀ differ by rounding only, relative to the fixture's large
    // logits (its head is scaled up, |logit| reaches ~30).
    let merged = m.merge_adapters().unwrap();
    assert!(merged.trainable_vars().is_empty());
    let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let scale = scale.to_scalar::<f32>().unwrap();
    let d = max_diff(&merged.forward(&x, None).unwrap(), &want);
    assert!(d <= 1e-5 * scale, "merged vs adapters: {d} (scale {scale})");
    let full = dir.path().join("merged");
    m.save_pretrained(&full).unwrap();
    let loaded = Llada::load(&full, &LoadOptions::default()).unwrap();
    assert!(max_diff(&loaded.forward(&x, None).unwrap(), &want) <= 1e-5 * scale);

    // f64 (adapters follow the compute dtype): the absolute bound holds with room to spare.
    let f64_opts = LoadOptions {
        dtype: DType::F64,
        ..Default::default()
    };
    let m64 = Llada::load(&fixture(), &f64_opts)
        .unwrap()
        .load_adapters(&adir)
        .unwrap();
    let on = m64.forward(&x, None).unwrap();
    let merged = m64.merge_adapters().unwrap().forward(&x, None).unwrap();
    let d = (on - merged)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(d <= 1e-5, "f64 merged vs adapters: {d}");
}

#[test]
fn adapter_errors_name_what_is_wrong() {
    let b = base();
    let mut c = cfg(4, 0.0);
    c.targets = vec!["q_proj".into(), "o_proj".into()];
    let e = b.add_lora(&c).unwrap_err().to_string();
    assert!(e.contains("o_proj") && e.contains("attn_out"), "{e}");
    assert!(b.add_lora(&cfg(0, 0.0)).is_err());
    let e = b
        .load_adapters(std::path::Path::new("/nonexistent"))
        .unwrap_err();
    assert!(format!("{e:#}").contains("adapter_config.json"));

    // Adapters of another rank do not fit.
    let dir = tempfile::tempdir().unwrap();
    let m = b.add_lora(&cfg(4, 0.0)).unwrap();
    m.save_adapters(dir.path(), "x").unwrap();
    let mut conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    conf["r"] = 2.into();
    std::fs::write(dir.path().join("adapter_config.json"), conf.to_string()).unwrap();
    let e = format!("{:#}", b.load_adapters(dir.path()).unwrap_err());
    assert!(e.contains("shape"), "{e}");
}

/// Gradients of a loss with checkpointing equal the plain graph's (LoRA with dropout in training
/// mode, and full finetuning).
#[test]
fn checkpointed_gradients_equal_plain_gradients() {
    let x = ids();
    let loss_of = |m: &Llada| -> Tensor {
        let h = m.forward_hidden(&x, None).unwrap();
        let logits = m.logits(&h).unwrap();
        let lp = workbench_core::ops::log_softmax(&logits, 2).unwrap();
        (lp.narrow(1, 2, 3).unwrap().mean_all().unwrap() * -1.0).unwrap()
    };
    let lora = base().add_lora(&cfg(4, 0.1)).unwrap();
    perturb(&lora, 4);
    let full = Llada::load(
        &fixture(),
        &LoadOptions {
            trainable: true,
            ..Default::default()
        },
    )
    .unwrap();
    for model in [lora, full] {
        let vars: Vec<(String, Var)> = model.trainable_vars();
        let mut plain = model.with_training(true);
        plain.set_dropout_state(11, 0);
        let g_plain = remat::backward(&loss_of(&plain)).unwrap();
        let mut ckpt = model.with_training(true).with_checkpointing(true);
        ckpt.set_dropout_state(11, 0);
        let loss = loss_of(&ckpt);
        assert_eq!(remat::pending(), 1);
        let g_ckpt = remat::backward(&loss).unwrap();
        assert_eq!(remat::pending(), 0);
        for (name, v) in &vars {
            let a = g_plain
                .get(v.as_tensor())
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let b = g_ckpt
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient with checkpointing"))
                .to_dtype(DType::F32)
                .unwrap();
            let d = max_diff(&a, &b);
            assert!(d <= 1e-5, "{name}: max |Δgrad| = {d}");
        }
    }
}

#[test]
fn dropout_is_seeded_and_only_in_training_mode() {
    let m = base().add_lora(&cfg(4, 0.5)).unwrap();
    perturb(&m, 5);
    let x = ids();
    let eval = m.forward(&x, None).unwrap();
    assert_eq!(max_diff(&eval, &m.forward(&x, None).unwrap()), 0.0);
    let mut t = m.with_training(true);
    t.set_dropout_state(3, 0);
    let a = t.forward(&x, None).unwrap();
    let b = t.forward(&x, None).unwrap();
    assert!(
        max_diff(&a, &b) > 0.0,
        "consecutive training forwards draw fresh masks"
    );
    assert!(max_diff(&a, &eval) > 0.0);
    assert_eq!(t.dropout_state(), (3, 2));
    t.set_dropout_state(3, 0);
    assert_eq!(max_diff(&a, &t.forward(&x, None).unwrap()), 0.0);
}

/// PEFT's `_check_target_module_exists` for a list: a module is targeted when its name equals
/// an entry or ends with `.` + entry (a string would be a full regex match; we never write one).
fn peft_targets(target_modules: &serde_json::Value, module: &str) -> bool {
    let list = target_modules
        .as_array()
        .expect("target_modules is written as a list");
    list.iter().any(|t| {
        let t = t.as_str().unwrap();
        module == t || module.ends_with(&format!(".{t}"))
    })
}

#[test]
fn exported_target_modules_resolve_in_peft_to_exactly_the_adapted_modules() {
    let b = base();
    // Every module of the checkpoint, as PEFT's named_modules() lists the weight holders.
    let modules: Vec<String> = tensor_names(b.config())
        .into_iter()
        .map(|(n, _)| n.trim_end_matches(".weight").to_string())
        .collect();
    assert!(
        modules.iter().any(|m| m == "model.transformer.ff_out"),
        "untied head"
    );
    let default = LoraConfig::default();
    assert_eq!(
        default.targets,
        REFERENCE_TARGETS.map(String::from).to_vec()
    );
    for c in [
        LoraConfig {
            r: 4,
            ..default.clone()
        },
        cfg(4, 0.0),
        LoraConfig {
            r: 4,
            targets: vec!["ff_out".into(), "attn_out".into()],
            ..default.clone()
        },
    ] {
        let m = b.add_lora(&c).unwrap();
        let dir = tempfile::tempdir().unwrap();
        m.save_adapters(dir.path(), "llada-tiny").unwrap();
        let conf: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        let stored = candle_core::safetensors::load(
            dir.path().join("adapter_model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        // The modules PEFT would adapt, and the ones our tensors belong to.
        let targeted: std::collections::BTreeSet<String> = modules
            .iter()
            .filter(|m| peft_targets(&conf["target_modules"], m))
            .cloned()
            .collect();
        let saved: std::collections::BTreeSet<String> = stored
            .keys()
            .map(|k| {
                k.trim_start_matches("base_model.model.")
                    .trim_end_matches(".lora_A.weight")
                    .trim_end_matches(".lora_B.weight")
                    .to_string()
            })
            .collect();
        assert_eq!(
            targeted, saved,
            "targets {:?}: {}",
            c.targets, conf["target_modules"]
        );
        assert!(!targeted.contains("model.transformer.ff_out"));
        assert_eq!(saved.len(), c.targets.len() * b.config().n_layers);
        // And it reads back as the same layers.
        let back = b.load_adapters(dir.path()).unwrap();
        let mut want = c.targets.clone();
        want.sort();
        let mut got = back.lora_config().unwrap().targets.clone();
        got.sort();
        assert_eq!(got, want);
    }
}

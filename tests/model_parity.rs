//! The LLaDA forward pass against the reference implementation's golden logits, batch
//! invariance under left padding, and a bf16 sharded copy of the checkpoint.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{fixture, max_abs_diff_masked};
use workbench_core::model::{Llada, LoadOptions};

fn tiny() -> Llada {
    Llada::load(&fixture("llada-tiny"), &LoadOptions::default()).unwrap()
}

fn golden(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name), &Device::Cpu).unwrap()
}

#[test]
fn plain_logits_match_reference() {
    let g = golden("logits_plain.safetensors");
    let logits = tiny().forward(&g["input_ids"], None).unwrap();
    assert_eq!(logits.dims(), g["logits"].dims());
    let d = max_abs_diff_masked(&logits, &g["logits"], None);
    assert!(d <= 1e-4, "max |Δ| = {d}");
}

#[test]
fn padded_logits_match_reference_on_real_positions() {
    let g = golden("logits_padded.safetensors");
    let mask = &g["attention_mask"];
    let logits = tiny().forward(&g["input_ids"], Some(mask)).unwrap();
    let d = max_abs_diff_masked(&logits, &g["logits"], Some(mask));
    assert!(d <= 1e-4, "max |Δ| = {d}");
}

#[test]
fn each_row_alone_equals_its_row_in_the_padded_batch() {
    let g = golden("logits_padded.safetensors");
    let model = tiny();
    let ids = &g["input_ids"];
    let mask = &g["attention_mask"];
    let batch = model.forward(ids, Some(mask)).unwrap();
    let (b, l) = ids.dims2().unwrap();
    let mask_rows: Vec<Vec<i64>> = mask.to_dtype(DType::I64).unwrap().to_vec2().unwrap();
    let mut padded_rows = 0;
    for (r, mrow) in mask_rows.iter().enumerate().take(b) {
        let pad = mrow.iter().take_while(|&&m| m == 0).count();
        padded_rows += usize::from(pad > 0);
        let row_ids = ids
            .narrow(0, r, 1)
            .unwrap()
            .narrow(1, pad, l - pad)
            .unwrap();
        let alone = model.forward(&row_ids, None).unwrap();
        let inside = batch
            .narrow(0, r, 1)
            .unwrap()
            .narrow(1, pad, l - pad)
            .unwrap();
        let d = max_abs_diff_masked(&alone, &inside, None);
        assert!(d <= 1e-5, "row {r}: max |Δ| = {d}");
    }
    assert!(padded_rows > 0, "the fixture must contain left-padded rows");
}

#[test]
fn bf16_sharded_copy_loads_and_stays_close() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("llada-tiny");
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let weights =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    let half = names.len() / 2;
    let mut index = serde_json::Map::new();
    for (k, chunk) in [&names[..half], &names[half..]].iter().enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", k + 1);
        let shard: HashMap<String, Tensor> = chunk
            .iter()
            .map(|n| ((*n).clone(), weights[*n].to_dtype(DType::BF16).unwrap()))
            .collect();
        candle_core::safetensors::save(&shard, dir.path().join(&file)).unwrap();
        for n in chunk.iter() {
            index.insert((*n).clone(), serde_json::Value::String(file.clone()));
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": index });
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::to_string(&index).unwrap(),
    )
    .unwrap();
    let model = Llada::load(dir.path(), &LoadOptions::default()).unwrap();
    let g = golden("logits_plain.safetensors");
    let logits = model.forward(&g["input_ids"], None).unwrap();
    let d = max_abs_diff_masked(&logits, &g["logits"], None);
    // bf16 rounds each weight by up to 2^-9 relative; the fixture's scaled-up head (logits up
    // to ±33) turns that into max |Δ| ≈ 0.8, so the bound is relative to the logits' scale.
    let mean_abs = |t: &Tensor| {
        t.abs()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let rel = mean_abs(&(&logits - &g["logits"]).unwrap()) / mean_abs(&g["logits"]);
    let scale = g["logits"]
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    eprintln!(
        "bf16 copy: max |Δ| = {d}, max |Δ| / max |logit| = {}, mean relative |Δ| = {rel}",
        d / scale
    );
    assert!(rel <= 2e-2, "mean relative |Δ| = {rel}");
    assert!(
        d / scale <= 5e-2,
        "max |Δ| = {d} against logits up to {scale}"
    );
    assert!(
        d > 0.0,
        "a bf16 copy cannot be bit-identical; was the conversion skipped?"
    );
}

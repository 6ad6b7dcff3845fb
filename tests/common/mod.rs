//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::Tensor;
use workbench_core::sampler::{Canvas, SamplerConfig};

/// Path of a file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Largest |a - b| over the elements where `mask` (broadcast over the last dim) is 1.
pub fn max_abs_diff_masked(a: &Tensor, b: &Tensor, mask: Option<&Tensor>) -> f32 {
    let a = a.to_dtype(candle_core::DType::F32).unwrap();
    let b = b.to_dtype(candle_core::DType::F32).unwrap();
    let diff = (a - b).unwrap().abs().unwrap();
    let diff = match mask {
        Some(m) => {
            let m = m
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .unsqueeze(2)
                .unwrap();
            diff.broadcast_mul(&m).unwrap()
        }
        None => diff,
    };
    diff.flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The tiny fixture LLaDA on CPU, f32.
pub fn tiny() -> workbench_core::model::Llada {
    workbench_core::model::Llada::load(&fixture("llada-tiny"), &Default::default()).unwrap()
}

/// The reference samplers' golden outputs (`samplers.json`).
pub fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("samplers.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A JSON array of arrays of token ids.
pub fn ids2(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

/// Parameter `k` of a fixture case as usize.
pub fn usize_of(p: &serde_json::Value, k: &str) -> usize {
    p[k].as_u64()
        .unwrap_or_else(|| panic!("param {k} missing"))
        .try_into()
        .unwrap()
}

/// The sampler config a fixture case stands for (README table of `samplers.json`).
pub fn config_for(case: &serde_json::Value) -> SamplerConfig {
    workbench_core::sampler::golden::case_config(case).unwrap()
}

/// The fixed hint tokens of a fixture case (offset in the generation → token).
pub fn case_hints(case: &serde_json::Value) -> HashMap<usize, u32> {
    workbench_core::sampler::golden::case_hints(case).unwrap()
}

/// The canvas of a fixture case: its pre-padded prompts, attention mask and hints.
pub fn canvas_for(case: &serde_json::Value, gen_length: usize, mask_id: u32) -> Canvas {
    workbench_core::sampler::golden::case_canvas(case, gen_length, mask_id).unwrap()
}

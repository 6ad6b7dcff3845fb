//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::Tensor;

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

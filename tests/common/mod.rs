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

//! Token ids against the vocabulary, checked before they reach the embedding: an id outside
//! `0..vocab` would otherwise end in candle's `index-select invalid index 5000 with dim size
//! 1000` (no row, no position), or, for `u32::MAX`, pass silently as a row of zeros.
//!
//! The one check behind the CLI's per-request admission (`workbench generate`), the sampler's
//! prompts and hints ([`crate::sampler::generate_rollout`]) and every forward pass whose ids
//! come from the host ([`crate::model::Llada::forward`] and friends), so scripts' `forward`,
//! `generate` and the estimators all say the same thing.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};

fn outside(id: i64, vocab: usize) -> bool {
    id < 0 || id as u64 >= vocab as u64
}

/// Fails when `id` is not in `0..vocab`: `token id 5000 is outside the vocabulary (0..1000)`.
pub fn check_id(id: i64, vocab: usize) -> Result<()> {
    if outside(id, vocab) {
        bail!("token id {id} is outside the vocabulary (0..{vocab})");
    }
    Ok(())
}

/// Fails at the first id of `row` not in `0..vocab`, naming its position (0-based), the id and
/// the vocabulary size: `token id 5000 at position 2 is outside the vocabulary (0..1000)`.
pub fn check_ids(row: impl IntoIterator<Item = i64>, vocab: usize) -> Result<()> {
    for (pos, id) in row.into_iter().enumerate() {
        if outside(id, vocab) {
            bail!("token id {id} at position {pos} is outside the vocabulary (0..{vocab})");
        }
    }
    Ok(())
}

/// [`check_ids`] for every row of a `[B, L]` tensor of ids (integer dtypes as they are, floats
/// truncated); the error starts with `row R: `. Reads the tensor on the host.
pub fn check_ids_tensor(ids: &Tensor, vocab: usize) -> Result<()> {
    let rows: Vec<Vec<i64>> = match ids.dtype() {
        DType::I64 => ids.to_vec2::<i64>()?,
        DType::U32 => to_i64(ids.to_vec2::<u32>()?),
        DType::U8 => to_i64(ids.to_vec2::<u8>()?),
        _ => ids.to_dtype(DType::I64)?.to_vec2::<i64>()?,
    };
    for (r, row) in rows.into_iter().enumerate() {
        if let Err(e) = check_ids(row, vocab) {
            bail!("row {r}: {e}");
        }
    }
    Ok(())
}

fn to_i64<T: Into<i64>>(rows: Vec<Vec<T>>) -> Vec<Vec<i64>> {
    rows.into_iter()
        .map(|r| r.into_iter().map(Into::into).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_row_position_id_and_vocabulary() {
        assert!(check_ids([0, 5, 999], 1000).is_ok());
        let e = check_ids([5, 6, 4_294_967_295], 1000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "token id 4294967295 at position 2 is outside the vocabulary (0..1000)"
        );
        assert!(check_id(-1, 1000).is_err());
        let t = Tensor::new(&[[1i64, 2], [3, 5000]], &candle_core::Device::Cpu).unwrap();
        let e = check_ids_tensor(&t, 1000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "row 1: token id 5000 at position 1 is outside the vocabulary (0..1000)"
        );
        let t = Tensor::new(&[[1u32, 2]], &candle_core::Device::Cpu).unwrap();
        assert!(check_ids_tensor(&t, 1000).is_ok());
    }
}

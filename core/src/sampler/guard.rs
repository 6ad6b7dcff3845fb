//! Checks that stop a sampler with a clear error instead of silent garbage: non-finite logits
//! (a broken checkpoint or an overflow would otherwise decode `!!!!!!!!`), and a canvas longer
//! than the model's `max_sequence_length` (which would otherwise abort the whole process in the
//! attention's allocation).

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};

use crate::model::Config;

/// Number of NaN/±Inf elements of `t` (`t · 0` is 0 exactly where `t` is finite).
pub fn count_non_finite(t: &Tensor) -> Result<u64> {
    let d = (t * 0.0)?;
    let bad = d
        .ne(&d)?
        .to_dtype(DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()?;
    Ok(u64::from(bad))
}

/// Fails when `logits` (of forward pass `step`, counted from 1) hold a NaN or infinity.
pub fn check_logits(logits: &Tensor, step: usize) -> Result<()> {
    let bad = count_non_finite(logits)?;
    if bad > 0 {
        bail!(
            "step {step}: the model produced {bad} non-finite logit(s) (NaN/Inf); stopping \
             instead of decoding garbage (check the weights and the dtype)"
        );
    }
    Ok(())
}

/// Fails when a prompt of `prompt_len` tokens plus `gen_length` generated ones exceeds the
/// model's `max_sequence_length`.
pub fn check_length(cfg: &Config, prompt_len: usize, gen_length: usize) -> Result<()> {
    let total = prompt_len.saturating_add(gen_length);
    if total > cfg.max_sequence_length {
        bail!(
            "prompt ({prompt_len} tokens) + gen_length ({gen_length}) = {total} exceeds the \
             model's max_sequence_length {}",
            cfg.max_sequence_length
        );
    }
    Ok(())
}

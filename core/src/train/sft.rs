//! LLaDA's pretraining and SFT losses (random mask ratio, CE / p_mask), as in LLaDA's
//! `GUIDELINES.md` (`reference/ALGORITHMS.md` §3, "Training losses").
//!
//! Noise ([`draw_noise`]): per row r, from [`row_rng`]`(seed, r)`, first t ~ U[0, 1) and
//! p_mask = (1 − ε)·t + ε (ε = [`PRETRAIN_EPS`]), then one uniform per position, in order;
//! the position is masked iff its uniform is below p_mask. Pretraining and SFT draw the same
//! noise for the same seed and shape (SFT then leaves the prompt clean).
//!
//! * **Pretraining** ([`pretrain_loss`]): loss = Σ_masked CE / p_mask / (B·T).
//! * **SFT** ([`sft_loss`]): the prompt is never masked; loss = (1/B) Σ_rows Σ_masked answer
//!   positions CE / p_mask / answer_len(row). Answers padded with EOS are trained on the EOS
//!   padding: it is part of the answer mask and counts in answer_len.

use anyhow::{bail, Result};
use candle_core::Tensor;
use rand::Rng;

use super::estimators::{host_mask, logp_at, mask_id, row_rng, HostIds};
use crate::model::Llada;

/// LLaDA's floor on the mask probability: p_mask = (1 − ε)·t + ε.
pub const PRETRAIN_EPS: f64 = 1e-3;

/// A diffusion training loss.
#[derive(Debug, Clone)]
pub struct DiffusionLoss {
    /// The scalar loss (differentiable).
    pub loss: Tensor,
    /// Number of masked (scored) tokens.
    pub num_masked: usize,
}

/// The noise of one batch: per-row mask probability and per-position mask flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Noise {
    /// p_mask per row, [B].
    pub p_mask: Vec<f64>,
    /// Whether each position is masked, B·T row-major (before SFT's prompt exemption).
    pub masked: Vec<bool>,
}

/// Draws the noise of a [batch, len] batch (see the module docs).
pub fn draw_noise(batch: usize, len: usize, seed: u64, eps: f64) -> Noise {
    let mut p_mask = Vec::with_capacity(batch);
    let mut masked = Vec::with_capacity(batch * len);
    for row in 0..batch {
        let mut rng = row_rng(seed, row);
        let t: f64 = rng.random();
        let p = (1.0 - eps) * t + eps;
        p_mask.push(p);
        for _ in 0..len {
            let u: f64 = rng.random();
            masked.push(u < p);
        }
    }
    Noise { p_mask, masked }
}

/// LLaDA's pretraining loss on `ids` [B, T]: Σ_masked CE / p_mask / (B·T).
pub fn pretrain_loss(model: &Llada, ids: &Tensor, seed: u64, eps: f64) -> Result<DiffusionLoss> {
    let x = HostIds::from_tensor(ids, "ids")?;
    let (b, t) = (x.batch, x.len);
    let noise = draw_noise(b, t, seed, eps);
    let w: Vec<f64> = (0..b * t)
        .map(|i| 1.0 / noise.p_mask[i / t] / (b * t) as f64)
        .collect();
    weighted_ce(model, &x, &noise.masked, &w)
}

/// LLaDA's SFT loss on `ids` [B, T] with `answer_mask` [B, T] (1 on the answer, EOS padding
/// included; 0 on the prompt, which is never masked): (1/B) Σ_rows Σ_masked answer positions
/// CE / p_mask / answer_len.
pub fn sft_loss(
    model: &Llada,
    ids: &Tensor,
    answer_mask: &Tensor,
    seed: u64,
    eps: f64,
) -> Result<DiffusionLoss> {
    let x = HostIds::from_tensor(ids, "ids")?;
    let (b, t) = (x.batch, x.len);
    let answer = host_mask(answer_mask, b, t, "answer_mask")?;
    let noise = draw_noise(b, t, seed, eps);
    let mut masked = noise.masked;
    let mut w = vec![0.0; b * t];
    for r in 0..b {
        let row = &answer[r * t..(r + 1) * t];
        let len = row.iter().filter(|&&a| a).count();
        if len == 0 {
            bail!("row {r} of answer_mask has no answer token");
        }
        for (j, &is_answer) in row.iter().enumerate() {
            let i = r * t + j;
            masked[i] &= is_answer;
            w[i] = 1.0 / noise.p_mask[r] / len as f64 / b as f64;
        }
    }
    weighted_ce(model, &x, &masked, &w)
}

/// Answer masks [B, T] (1 from each row's prompt length on) for a batch of prompt lengths.
pub fn answer_mask_from_prompt_lengths(prompt_lengths: &[usize], len: usize) -> Result<Tensor> {
    let mut v = Vec::with_capacity(prompt_lengths.len() * len);
    for &p in prompt_lengths {
        if p >= len {
            bail!("prompt length {p} leaves no answer in rows of length {len}");
        }
        v.extend((0..len).map(|j| u8::from(j >= p)));
    }
    Ok(Tensor::from_vec(
        v,
        (prompt_lengths.len(), len),
        &candle_core::Device::Cpu,
    )?)
}

/// −Σ_masked w · log π(x) with the masked positions replaced by the mask token.
fn weighted_ce(model: &Llada, x: &HostIds, masked: &[bool], w: &[f64]) -> Result<DiffusionLoss> {
    let mask = mask_id(model)?;
    let mut input = x.clone();
    for (id, &m) in input.ids.iter_mut().zip(masked) {
        if m {
            *id = mask;
        }
    }
    let logp = logp_at(model, &input, &x.ids, masked, None, 1.0)?;
    let w: Vec<f64> = w
        .iter()
        .zip(masked)
        .map(|(&w, &m)| if m { w } else { 0.0 })
        .collect();
    let w = Tensor::from_vec(w, (x.batch, x.len), model.device())?.to_dtype(logp.dtype())?;
    let loss = (logp * w)?.sum_all()?.neg()?;
    Ok(DiffusionLoss {
        loss,
        num_masked: masked.iter().filter(|&&m| m).count(),
    })
}

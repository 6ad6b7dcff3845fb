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
//!   positions CE / p_mask / answer_len(row) (LLaDA's guidelines, [`SftNormaliser::PerRow`]).
//!   Answers padded with EOS are trained on the EOS padding: it is part of the answer mask and
//!   counts in answer_len. d1's `SFT/sft_trainer.py` (12–26) instead divides the batch's sum by
//!   B·N − (prompt tokens of the batch), [`SftNormaliser::BatchTokens`]; both are
//!   [`sft_loss_on_noise`], which also replays a recorded noise.

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
/// CE / p_mask / answer_len ([`sft_loss_with`] and [`SftNormaliser::PerRow`]).
pub fn sft_loss(
    model: &Llada,
    ids: &Tensor,
    answer_mask: &Tensor,
    seed: u64,
    eps: f64,
) -> Result<DiffusionLoss> {
    sft_loss_with(model, ids, answer_mask, seed, eps, SftNormaliser::PerRow)
}

/// The SFT loss with [`draw_noise`]'s noise of `seed` and the normaliser `norm`
/// ([`SftNormaliser::BatchTokens`] is d1's `SFT/sft_trainer.py`).
pub fn sft_loss_with(
    model: &Llada,
    ids: &Tensor,
    answer_mask: &Tensor,
    seed: u64,
    eps: f64,
    norm: SftNormaliser,
) -> Result<DiffusionLoss> {
    let (b, t) = ids
        .dims2()
        .map_err(|_| anyhow::anyhow!("ids must be a [batch, length] tensor of ids"))?;
    let noise = draw_noise(b, t, seed, eps);
    sft_loss_on_noise(model, ids, answer_mask, &noise.masked, &noise.p_mask, norm)
}

/// What [`sft_loss_on_noise`] divides the sum of CE / p_mask by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SftNormaliser {
    /// Per row by its answer length, then the mean over rows (LLaDA's `GUIDELINES.md`).
    #[default]
    PerRow,
    /// The batch sum by B·T − prompt tokens of the batch, i.e. answer plus padding positions
    /// (d1's `dLLMTrainer.compute_loss`, `SFT/sft_trainer.py` 12–26).
    BatchTokens,
}

/// The SFT loss for a given noise: `ids` [B, T], `masked` (B·T flags; prompt positions are
/// never scored whatever they say), `p_mask` per row, `answer_mask` [B, T] (1 on the answer and
/// its EOS padding): Σ over masked answer positions of CE / p_mask, normalised by `norm`. The
/// masked positions hold the mask token in the input. With [`draw_noise`]'s noise and
/// [`SftNormaliser::PerRow`] this is [`sft_loss`]; a replay passes a reference trainer's
/// recorded t and mask.
pub fn sft_loss_on_noise(
    model: &Llada,
    ids: &Tensor,
    answer_mask: &Tensor,
    masked: &[bool],
    p_mask: &[f64],
    norm: SftNormaliser,
) -> Result<DiffusionLoss> {
    let x = HostIds::from_tensor(ids, "ids")?;
    let (b, t) = (x.batch, x.len);
    let answer = host_mask(answer_mask, b, t, "answer_mask")?;
    if masked.len() != b * t || p_mask.len() != b {
        bail!(
            "the noise has {} flags and {} mask probabilities for a [{b}, {t}] batch",
            masked.len(),
            p_mask.len()
        );
    }
    let answer_tokens = answer.iter().filter(|&&a| a).count();
    let mut masked = masked.to_vec();
    let mut w = vec![0.0; b * t];
    for r in 0..b {
        let row = &answer[r * t..(r + 1) * t];
        let len = row.iter().filter(|&&a| a).count();
        if len == 0 {
            bail!("row {r} of answer_mask has no answer token");
        }
        if !(p_mask[r] > 0.0 && p_mask[r] <= 1.0) {
            bail!(
                "row {r}: the mask probability must be in (0, 1], found {}",
                p_mask[r]
            );
        }
        let denom = match norm {
            SftNormaliser::PerRow => len as f64 * b as f64,
            SftNormaliser::BatchTokens => answer_tokens as f64,
        };
        for (j, &is_answer) in row.iter().enumerate() {
            let i = r * t + j;
            masked[i] &= is_answer;
            w[i] = 1.0 / p_mask[r] / denom;
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

//! Every estimator and the SFT loss on a [`Rollout`]: prompt, completion and attention mask
//! (and, for the trajectory estimators, the recorded states) come from the rollout, options
//! are the structs of [`super::options`]. A script's `logp_d1(model, rollout, opts)` and a
//! Rust caller's [`logp_d1`] here are the same call.

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};

use super::estimators::{self as est, Coupled, Elbo, Estimate};
use super::options::{CoupledOptions, D1Options, ElboOptions, MdpoOptions, SftOptions};
use super::sft::{self, DiffusionLoss};
use crate::model::Llada;
use crate::sampler::{Rollout, Trajectory};

/// Prompt [B, P], completion [B, L] and attention mask [B, P + L] of `r`.
fn parts(r: &Rollout) -> Result<(Tensor, Tensor, Tensor)> {
    Ok((
        r.prompt_tensor()?,
        r.completion_tensor()?,
        r.attention_tensor()?,
    ))
}

fn trajectory(r: &Rollout) -> Result<&Trajectory> {
    r.trajectory
        .as_deref()
        .context("the rollout has no trajectory (generate with `record: true`)")
}

/// [`est::logp_d1`] on `r`'s completions.
pub fn logp_d1(model: &Llada, r: &Rollout, o: &D1Options) -> Result<Estimate> {
    let (p, c, a) = parts(r)?;
    est::logp_d1(model, &p, &c, o.p_mask_prompt, o.seed, Some(&a))
}

/// [`est::logp_masked`] on `r`'s completions.
pub fn logp_masked(model: &Llada, r: &Rollout) -> Result<Estimate> {
    let (p, c, a) = parts(r)?;
    est::logp_masked(model, &p, &c, Some(&a))
}

/// [`est::logp_coupled`] on `r`'s completions.
pub fn logp_coupled(model: &Llada, r: &Rollout, o: &CoupledOptions) -> Result<Coupled> {
    let (p, c, a) = parts(r)?;
    est::logp_coupled(model, &p, &c, o.t, o.seed, Some(&a))
}

/// [`est::elbo`] of `r`'s completions given its prompts.
pub fn elbo(model: &Llada, r: &Rollout, o: &ElboOptions) -> Result<Elbo> {
    let (p, c, a) = parts(r)?;
    est::elbo(model, &p, &c, o.mc_num, o.batch, o.seed, Some(&a))
}

/// CJ-GRPO's [`est::logp_step`] at recorded step `s`: input the state x_s, at the positions
/// committed at s the log-prob of the final canvas.
pub fn logp_step(model: &Llada, r: &Rollout, s: usize) -> Result<Estimate> {
    let tr = trajectory(r)?;
    let (state, fin, committed) = (tr.state(s)?, tr.state(tr.num_steps())?, tr.committed(s)?);
    est::logp_step(
        model,
        &state,
        &fin,
        &committed,
        Some(&r.attention_tensor()?),
    )
}

/// MDPO's [`est::logp_mdpo`] at recorded step `s`: input the state x_s, target the step's
/// prediction x̂0, scored from the rollout's prompt length on (`o.prompt_len` is ignored).
pub fn logp_mdpo(model: &Llada, r: &Rollout, s: usize, o: &MdpoOptions) -> Result<Estimate> {
    let tr = trajectory(r)?;
    est::logp_mdpo(
        model,
        &tr.state(s)?,
        &tr.prediction(s)?,
        r.prompt_len(),
        o.temperature,
        o.eps,
        Some(&r.attention_tensor()?),
    )
}

/// LLaDA's SFT loss on `r` (prompt ++ completion, the completion being the answer): the
/// pretraining noise on the completion only ([`sft::sft_loss_with`]).
pub fn sft_loss(model: &Llada, r: &Rollout, o: &SftOptions) -> Result<DiffusionLoss> {
    let (b, p, l) = (r.batch_size(), r.prompt_len(), r.gen_length());
    let ids = Tensor::cat(&[r.prompt_tensor()?, r.completion_tensor()?], 1)?;
    let answer = sft::answer_mask_from_prompt_lengths(&vec![p; b], p + l)?;
    sft::sft_loss_with(
        model,
        &ids,
        &answer.to_dtype(DType::F32)?,
        o.seed,
        o.eps,
        o.to_normaliser()?,
    )
}

//! RL losses and advantages over tensors (pure math, no model).
//!
//! Shapes: `B` sequences of `L` tokens; per-token tensors are `[B, L]` f32 and masks are `[B, L]`
//! with 1 where a token counts and 0 elsewhere. Inputs of another dtype are converted to f32.
//! Only `logp` (the current policy's log-probs) carries a gradient; advantages, masks, old and
//! reference log-probs are treated as constants (detached).
//!
//! * **Group-relative advantage** ([`group_advantages`]): `A_i = r_i − mean(group)`, as the d1,
//!   CJ-GRPO and IGPO code computes it ([`Normalise::None`]), or divided by the group's
//!   unbiased sample std plus eps, `(r_i − mean)/(std + eps)`, as the GRPO papers and TRL's
//!   `GRPOTrainer` do ([`Normalise::Std`]).
//! * **MDPO per-step advantage** ([`mdpo_step_advantages`]): with rewards `r[k,t]` of rollout
//!   `k` at denoising step `t = 0..T−1`, `A[k,t] = (r[k,t] − r[k,t−1]) + mean(r[k,t+1..=T−1])`
//!   with the convention `r[k,−1] := 0`, and `A[k,T−1] = r[k,T−1]`; then per step across the
//!   group `Â[k,t] = (A[k,t] − mean_k)/(std_k + eps)` (unbiased sample std, torch's `std()`,
//!   MDPO uses eps 1e-4). [`top_k_steps`] then picks the `k` steps of each rollout with the
//!   largest `|Â|`.
//! * **Clipped surrogate** ([`clipped_surrogate`], PPO/GRPO as in TRL's `GRPOTrainer` and d1):
//!   per token `−min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A)` with the token ratio
//!   `ρ = exp(logπ − logπ_old)`, or the GSPO sequence ratio
//!   `ρ_seq = exp(mean over masked tokens of (logπ − logπ_old))` broadcast to every token of its
//!   sequence (IGPO's released code). The clip fraction is TRL's: the share of masked tokens
//!   with `(ρ < 1−ε_low ∧ A < 0) ∨ (ρ > 1+ε_high ∧ A > 0)`, exactly the tokens whose gradient
//!   the clip removes.
//! * **KL estimators** ([`kl`], per token, `ref = logπ_ref`, `lp = logπ`): `k1 = lp − ref`,
//!   `k2 = ½(ref − lp)²` (MDPO), `k3 = exp(ref − lp) − (ref − lp) − 1` (d1, CJ-GRPO, IGPO,
//!   TRL).
//! * **Reductions** ([`reduce`]): `token_mean` = `Σ loss·mask / Σ mask` over the batch (d1,
//!   DAPO), `seq_mean` = mean over rows of `Σ_row loss·mask / Σ_row mask` (TRL's `grpo` loss
//!   type), `constant(C)` = `Σ loss·mask / (B·C)` (Dr.GRPO). Counts are clamped to at least 1.
//! * **Entropy** ([`entropy`]): `−Σ p log p` over the last dim of logits, and the IGPO entropy
//!   filter ([`entropy_filter`]): among the positions of a subset (hint tokens) keep the top-τ
//!   fraction by entropy, with the threshold taken over the whole batch's subset positions as
//!   TRL's `get_high_entropy_mask` does.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, D};

/// How [`group_advantages`] scales the centred rewards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalise {
    /// `r − mean(group)` only (d1, CJ-GRPO and IGPO code).
    None,
    /// `(r − mean(group)) / (std(group) + eps)` with the unbiased sample std (GRPO papers, TRL).
    Std {
        /// Added to the std (TRL uses 1e-4).
        eps: f64,
    },
}

/// Which importance ratio [`clipped_surrogate`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatioLevel {
    /// `ρ = exp(logπ − logπ_old)` per token (PPO/GRPO, d1).
    Token,
    /// GSPO: `exp(mean over the row's masked tokens of (logπ − logπ_old))`, one per sequence.
    Sequence,
}

/// Output of [`clipped_surrogate`].
#[derive(Debug, Clone)]
pub struct ClipOutput {
    /// Per-token loss `[B, L]` (0 outside the mask), differentiable w.r.t. `logp`; reduce it
    /// with [`reduce`].
    pub loss: Tensor,
    /// Share of masked tokens where the clip is active (TRL's `clip_ratio/region_mean`).
    pub clip_fraction: f64,
    /// The ratio used per token `[B, L]` (detached; 1 outside the mask for token level, the
    /// row's ratio everywhere for sequence level).
    pub ratio: Tensor,
}

/// Which per-token KL estimator [`kl`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KlKind {
    /// `logπ − logπ_ref`.
    K1,
    /// `½(logπ_ref − logπ)²` (MDPO).
    K2,
    /// `exp(logπ_ref − logπ) − (logπ_ref − logπ) − 1` (d1, CJ-GRPO, IGPO, TRL).
    K3,
}

/// How [`reduce`] turns a per-token loss into a scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reduction {
    /// `Σ loss·mask / Σ mask` over the whole batch.
    TokenMean,
    /// Per row `Σ loss·mask / Σ mask`, then the mean over rows (d1/TRL `grpo`).
    SeqMean,
    /// `Σ loss·mask / (B·C)` with a fixed `C` such as the max completion length (Dr.GRPO).
    Constant(f64),
}

fn dims_of(t: &Tensor) -> String {
    format!("{:?}", t.dims())
}

fn to_f32(t: &Tensor, name: &str) -> Result<Tensor> {
    t.to_dtype(DType::F32)
        .with_context(|| format!("`{name}`: cannot convert {:?} to f32", t.dtype()))
}

fn dims2(t: &Tensor, name: &str, want: &str) -> Result<(usize, usize)> {
    match t.dims() {
        &[a, b] => Ok((a, b)),
        _ => bail!("`{name}` must be {want}, found shape {}", dims_of(t)),
    }
}

fn same_shape(a: &Tensor, a_name: &str, b: &Tensor, b_name: &str) -> Result<()> {
    if a.dims() != b.dims() {
        bail!(
            "`{b_name}` must have the shape of `{a_name}`: {a_name} is {}, {b_name} is {}",
            dims_of(a),
            dims_of(b)
        );
    }
    Ok(())
}

fn check_eps(eps: f64, name: &str) -> Result<()> {
    if !eps.is_finite() || eps < 0.0 {
        bail!("`{name}` must be a finite number >= 0, found {eps}");
    }
    Ok(())
}

/// Mean and unbiased sample std (torch's `std()`) of `xs`; `xs.len() >= 2`.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Group-relative advantages of `rewards` `[N]`, laid out as consecutive groups of `group`
/// completions of the same prompt (`N` a multiple of `group`): `A_i = r_i − mean(group)`, divided
/// by `std(group) + eps` (unbiased sample std) with [`Normalise::Std`], which needs `group >= 2`.
/// Returns an f32 tensor `[N]` (a constant, no gradient).
pub fn group_advantages(rewards: &Tensor, group: usize, norm: Normalise) -> Result<Tensor> {
    let n = match rewards.dims() {
        &[n] => n,
        _ => bail!(
            "`rewards` must be 1-D [N], found shape {}",
            dims_of(rewards)
        ),
    };
    if group == 0 || n == 0 || n % group != 0 {
        bail!("`rewards` has {n} entries, which is not a positive multiple of group = {group}");
    }
    let r = to_f32(rewards, "rewards")?
        .detach()
        .reshape((n / group, group))?;
    let centred = r.broadcast_sub(&r.mean_keepdim(1)?)?;
    let a = match norm {
        Normalise::None => centred,
        Normalise::Std { eps } => {
            check_eps(eps, "eps")?;
            if group < 2 {
                bail!("std normalisation needs group >= 2 (the sample std of one value is undefined), found group = {group}");
            }
            let std = (centred.sqr()?.sum_keepdim(1)? / (group as f64 - 1.0))?.sqrt()?;
            centred.broadcast_div(&(std + eps)?)?
        }
    };
    Ok(a.reshape(n)?)
}

/// MDPO per-step advantages of step rewards `rewards` `[G, T]` (rollout `k` of a group of `G`,
/// denoising step `t`): `A[k,t] = (r[k,t] − r[k,t−1]) + mean(r[k,t+1..=T−1])` with
/// `r[k,−1] := 0`, and `A[k,T−1] = r[k,T−1]`; then normalised per step across the group,
/// `(A − mean_k)/(std_k + eps)` with the unbiased sample std (torch's default `std()`; MDPO
/// uses `eps = 1e-4`). Needs `G >= 2`. Returns f32 `[G, T]` (a constant).
pub fn mdpo_step_advantages(rewards: &Tensor, eps: f64) -> Result<Tensor> {
    let (g, t) = dims2(rewards, "rewards", "[G, T] (rollouts × steps)")?;
    check_eps(eps, "eps")?;
    if g < 2 || t == 0 {
        bail!(
            "`rewards` must be [G, T] with G >= 2 rollouts and T >= 1 steps, found shape {}",
            dims_of(rewards)
        );
    }
    let r = rewards.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let mut a = vec![vec![0.0; t]; g];
    for (row, out) in r.iter().zip(a.iter_mut()) {
        for s in 0..t {
            out[s] = if s == t - 1 {
                row[s]
            } else {
                let prev = if s == 0 { 0.0 } else { row[s - 1] };
                let future = &row[s + 1..];
                row[s] - prev + future.iter().sum::<f64>() / future.len() as f64
            };
        }
    }
    let mut out = vec![0f32; g * t];
    for s in 0..t {
        let col: Vec<f64> = a.iter().map(|row| row[s]).collect();
        let (mean, std) = mean_std(&col);
        for k in 0..g {
            out[k * t + s] = ((a[k][s] - mean) / (std + eps)) as f32;
        }
    }
    Ok(Tensor::from_vec(out, (g, t), rewards.device())?)
}

/// A 0/1 f32 mask `[G, T]` selecting, in each row of `adv` `[G, T]`, the `k` steps with the
/// largest `|adv|` (MDPO's `sample_train_steps`); ties go to the earlier step, and `k >= T`
/// selects every step.
pub fn top_k_steps(adv: &Tensor, k: usize) -> Result<Tensor> {
    let (g, t) = dims2(adv, "adv", "[G, T] (rollouts × steps)")?;
    let a = adv.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let mut out = vec![0f32; g * t];
    for (i, row) in a.iter().enumerate() {
        let mut idx: Vec<usize> = (0..t).collect();
        // Stable sort: equal |adv| keep their step order.
        idx.sort_by(|&x, &y| row[y].abs().total_cmp(&row[x].abs()));
        for &j in idx.iter().take(k) {
            out[i * t + j] = 1.0;
        }
    }
    Ok(Tensor::from_vec(out, (g, t), adv.device())?)
}

/// The clipped surrogate per token, `−min(ρA, clip(ρ, 1−eps_low, 1+eps_high)·A)`, for `logp`,
/// `old_logp` and `mask` `[B, L]` and advantages `adv` `[B]`, `[B, 1]` or `[B, L]`.
///
/// `ρ` is the token ratio `exp(logp − old_logp)` or, with [`RatioLevel::Sequence`], the GSPO
/// ratio `exp(mean over the row's masked tokens of (logp − old_logp))` on every token. Positions
/// where `mask` is 0 contribute nothing (their log-ratio is taken as 0, so non-finite padding
/// values are harmless). The gradient w.r.t. `logp` is `−A·∂ρ` where the clip is inactive and 0
/// where it is active. Also returns TRL's clip fraction and the (detached) ratio.
pub fn clipped_surrogate(
    logp: &Tensor,
    old_logp: &Tensor,
    adv: &Tensor,
    mask: &Tensor,
    eps_low: f64,
    eps_high: f64,
    level: RatioLevel,
) -> Result<ClipOutput> {
    let (b, l) = dims2(logp, "logp", "[B, L]")?;
    same_shape(logp, "logp", old_logp, "old_logp")?;
    same_shape(logp, "logp", mask, "mask")?;
    check_eps(eps_low, "eps_low")?;
    check_eps(eps_high, "eps_high")?;
    if eps_low > 1.0 {
        bail!(
            "`eps_low` must be <= 1 (the lower clip bound 1 − eps_low is a ratio), found {eps_low}"
        );
    }
    let adv = to_f32(adv, "adv")?.detach();
    let adv = match *adv.dims() {
        [n] if n == b => adv.reshape((b, 1))?,
        [n, 1] if n == b => adv,
        [n, m] if n == b && m == l => adv,
        _ => bail!(
            "`adv` must be [B], [B, 1] or [B, L] for logp {}: found {}",
            dims_of(logp),
            dims_of(&adv)
        ),
    };
    let adv = adv.broadcast_as((b, l))?.contiguous()?;
    let logp = to_f32(logp, "logp")?;
    let old = to_f32(old_logp, "old_logp")?.detach();
    let keep = to_f32(mask, "mask")?.detach().ne(0f32)?;
    let keep_f = keep.to_dtype(DType::F32)?;
    let zeros = Tensor::zeros((b, l), DType::F32, logp.device())?;
    let log_ratio = keep.where_cond(&(logp - old)?, &zeros)?;
    let log_ratio = match level {
        RatioLevel::Token => log_ratio,
        RatioLevel::Sequence => {
            let count = keep_f.sum_keepdim(1)?.maximum(1f32)?;
            log_ratio
                .sum_keepdim(1)?
                .div(&count)?
                .broadcast_as((b, l))?
                .contiguous()?
        }
    };
    let ratio = log_ratio.exp()?;
    let low = ratio.lt(1.0 - eps_low)?.mul(&adv.lt(0f32)?)?;
    let high = ratio.gt(1.0 + eps_high)?.mul(&adv.gt(0f32)?)?;
    // The two cases exclude each other (A < 0 vs A > 0), so their sum is a 0/1 indicator.
    let clipped = low.add(&high)?.mul(&keep)?;
    let bounded = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)?.detach();
    // min(ρA, clip(ρ)A) is clip(ρ)A exactly where `clipped` is set and ρA elsewhere.
    let effective = clipped.where_cond(&bounded, &ratio)?;
    let loss = keep.where_cond(&effective.mul(&adv)?.neg()?, &zeros)?;
    let n_clipped = clipped
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as f64;
    let n_kept = keep_f.sum_all()?.to_scalar::<f32>()? as f64;
    let clip_fraction = if n_kept > 0.0 {
        n_clipped / n_kept
    } else {
        0.0
    };
    Ok(ClipOutput {
        loss,
        clip_fraction,
        ratio: ratio.detach(),
    })
}

/// Per-token KL estimate between the policy and the reference, from `logp` (with gradient) and
/// `ref_logp` (a constant) of the same shape: `k1 = lp − ref`, `k2 = ½(ref − lp)²`,
/// `k3 = exp(ref − lp) − (ref − lp) − 1`.
pub fn kl(logp: &Tensor, ref_logp: &Tensor, kind: KlKind) -> Result<Tensor> {
    same_shape(logp, "logp", ref_logp, "ref_logp")?;
    let lp = to_f32(logp, "logp")?;
    let rf = to_f32(ref_logp, "ref_logp")?.detach();
    let d = rf.sub(&lp)?;
    Ok(match kind {
        KlKind::K1 => d.neg()?,
        KlKind::K2 => (d.sqr()? * 0.5)?,
        KlKind::K3 => ((d.exp()? - &d)? - 1.0)?,
    })
}

/// Reduces a per-token `loss` `[B, L]` with `mask` `[B, L]` (0/1; other values act as weights)
/// to a scalar: see [`Reduction`]. Masked-out positions are ignored even when non-finite, and
/// token counts are clamped to at least 1 (an all-zero mask gives 0).
pub fn reduce(loss: &Tensor, mask: &Tensor, reduction: Reduction) -> Result<Tensor> {
    let (b, _) = dims2(loss, "loss", "[B, L]")?;
    same_shape(loss, "loss", mask, "mask")?;
    let loss = to_f32(loss, "loss")?;
    let mask = to_f32(mask, "mask")?.detach();
    let zeros = loss.zeros_like()?;
    let masked = mask.ne(0f32)?.where_cond(&loss, &zeros)?.mul(&mask)?;
    Ok(match reduction {
        Reduction::TokenMean => masked.sum_all()?.div(&mask.sum_all()?.maximum(1f32)?)?,
        Reduction::SeqMean => masked
            .sum(1)?
            .div(&mask.sum(1)?.maximum(1f32)?)?
            .mean_all()?,
        Reduction::Constant(c) => {
            if !c.is_finite() || c <= 0.0 {
                bail!("the `constant` of the reduction must be a finite number > 0, found {c}");
            }
            (masked.sum_all()? / (b.max(1) as f64 * c))?
        }
    })
}

/// Entropy `−Σ p log p` of `softmax(logits)` over the last dim: `[..., V]` → `[...]`,
/// differentiable (built on [`crate::ops::log_softmax`]); `−inf` logits contribute 0.
pub fn entropy(logits: &Tensor) -> Result<Tensor> {
    if logits.rank() == 0 {
        bail!("`logits` must have at least one dim (the vocabulary), found a scalar");
    }
    let lsm = crate::ops::log_softmax(&to_f32(logits, "logits")?, D::Minus1)?;
    let p = lsm.exp()?;
    // 0·log 0 := 0; replacing the -inf log keeps both the value and the gradient finite.
    let safe = p.gt(0f32)?.where_cond(&lsm, &lsm.zeros_like()?)?;
    Ok(p.mul(&safe)?.sum(D::Minus1)?.neg()?)
}

/// The IGPO entropy filter: a 0/1 f32 mask `[B, L]` that is 1 outside `subset` and, inside it
/// (`subset` nonzero, e.g. hint positions), 1 only for the top-`tau` fraction by `entropy`
/// `[B, L]`. The threshold is taken over the subset positions of the **whole batch**:
/// `thr = quantile(subset entropies, 1 − tau)` with linear interpolation (torch's default), and
/// a position is kept when `entropy >= thr` (so ties at the threshold are all kept), as TRL's
/// `get_high_entropy_mask`. `tau` in `[0, 1]`; `tau = 1` keeps the whole subset, `tau = 0` only
/// its maximum.
pub fn entropy_filter(entropy: &Tensor, subset: &Tensor, tau: f64) -> Result<Tensor> {
    let (b, l) = dims2(entropy, "entropy", "[B, L]")?;
    same_shape(entropy, "entropy", subset, "subset")?;
    if !(0.0..=1.0).contains(&tau) {
        bail!("`tau` must be in [0, 1], found {tau}");
    }
    let e = entropy
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let s = subset
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let mut vals: Vec<f64> = e
        .iter()
        .zip(&s)
        .filter(|(_, &s)| s != 0.0)
        .map(|(&e, _)| e)
        .collect();
    let mut out = vec![1f32; b * l];
    if !vals.is_empty() {
        vals.sort_by(f64::total_cmp);
        let pos = (1.0 - tau) * (vals.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        let thr = vals[lo] + (vals[hi] - vals[lo]) * (pos - lo as f64);
        for ((o, &e), &s) in out.iter_mut().zip(&e).zip(&s) {
            if s != 0.0 && e < thr {
                *o = 0.0;
            }
        }
    }
    Ok(Tensor::from_vec(out, (b, l), entropy.device())?)
}

/// d1's completion mask over generated ids [B, L]: 1 up to and including the first `eos` of each
/// row, 0 after it (rows without `eos` are all ones). Computed on the host; a constant.
pub fn completion_mask(ids: &Tensor, eos: u32) -> Result<Tensor> {
    let (b, l) = dims2(ids, "ids", "[B, L]")?;
    let rows: Vec<Vec<u32>> = ids.to_dtype(DType::U32)?.to_vec2()?;
    let mut out = Vec::with_capacity(b * l);
    for row in rows {
        let end = row.iter().position(|&t| t == eos).map_or(l, |i| i + 1);
        out.extend((0..l).map(|i| if i < end { 1f32 } else { 0.0 }));
    }
    Ok(Tensor::from_vec(out, (b, l), ids.device())?)
}

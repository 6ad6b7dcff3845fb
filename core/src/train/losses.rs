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
//!   with the convention `r[k,−1] := 0`; the last step gets `(r[k,T−1] − r[k,T−2]) + r[k,T−1]`
//!   as the released trainer computes it (`mdpo_trainer.py` 849–851: the "future mean" of the
//!   last step is its own reward; [`MdpoLastStep::RewardOnly`] is the paper's `r[k,T−1]`); then
//!   per step across the group `Â[k,t] = (A[k,t] − mean_k)/(std_k + eps)` (unbiased sample std,
//!   torch's `std()`, MDPO uses eps 1e-4; the release's `+1` cancels here). [`top_k_steps`] then
//!   picks the `k` steps of each rollout with the largest `|Â|`, and [`mdpo_loss`] is the
//!   released per-(rollout, step) loss.
//! * **Clipped surrogate** ([`clipped_surrogate`], PPO/GRPO as in TRL's `GRPOTrainer` and d1):
//!   per token `−min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A)` with the token ratio
//!   `ρ = exp(logπ − logπ_old)`, or the GSPO sequence ratio
//!   `ρ_seq = exp(mean over all L positions of (logπ − logπ_old))` broadcast to every token of
//!   its sequence (IGPO's released code, `trainer_igpo.py` 651–686), or the mean over the masked
//!   tokens only ([`RatioLevel::SequenceMasked`], the GSPO paper). The clip fraction is TRL's: the share of masked tokens
//!   with `(ρ < 1−ε_low ∧ A < 0) ∨ (ρ > 1+ε_high ∧ A > 0)`, exactly the tokens whose gradient
//!   the clip removes.
//! * **KL estimators** ([`kl`], per token, `ref = logπ_ref`, `lp = logπ`): `k1 = lp − ref`,
//!   `k2 = ½(ref − lp)²` (MDPO), `k3 = exp(ref − lp) − (ref − lp) − 1` (d1, CJ-GRPO, IGPO,
//!   TRL).
//! * **Reductions** ([`reduce`]): `token_mean` = `Σ loss·mask / Σ mask` over the batch (d1,
//!   DAPO), `micro_batch_token_mean(n)` = the token mean of every block of `n` rows, averaged
//!   over the blocks (d1's trainer: one token mean per micro-batch of one group, then the
//!   average over micro-batches, `diffu_grpo_trainer.py` 121), `seq_mean` = mean over rows of
//!   `Σ_row loss·mask / Σ_row mask` (TRL's `grpo` loss type), `constant(C)` =
//!   `Σ loss·mask / (B·C)` (Dr.GRPO). Counts are clamped to at least 1.
//! * **Entropy** ([`entropy`]): `−Σ p log p` over the last dim of logits, and the IGPO entropy
//!   filter ([`entropy_filter`]): among the positions of a subset (hint tokens) keep, per row,
//!   the `max(1, ⌊τ·n⌋)` of the row's `n` subset positions with the highest entropy, as IGPO's
//!   trainer does (`trainer_igpo.py` 1786–1826); [`EntropyCut::BatchQuantile`] takes one
//!   threshold over the whole batch's subset positions instead (TRL's
//!   `get_high_entropy_mask`).

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
    /// GSPO as IGPO's release computes it: `exp(mean over all L positions of the row of
    /// (logπ − logπ_old))`, one per sequence, whatever the mask (`trainer_igpo.py` 651–686).
    Sequence,
    /// GSPO as the paper writes it: the mean over the row's masked tokens only.
    SequenceMasked,
}

/// What the last denoising step's raw advantage is in [`mdpo_step_advantages_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MdpoLastStep {
    /// `(r[T−1] − r[T−2]) + r[T−1]`: the released trainer (`mdpo_trainer.py` 849–851), whose
    /// "mean of the future rewards" of the last step is its own reward.
    #[default]
    Reference,
    /// `r[T−1]` (the paper: no future, no difference).
    RewardOnly,
}

/// How [`entropy_filter_with`] cuts the subset positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntropyCut {
    /// Per row, the `max(1, ⌊τ·n⌋)` highest-entropy of the row's `n` subset positions (IGPO's
    /// trainer, `trainer_igpo.py` 1786–1826); ties at the cut go to the earlier position.
    #[default]
    PerRowTopK,
    /// One threshold over the whole batch: `quantile(subset entropies, 1 − τ)` (TRL's
    /// `get_high_entropy_mask`), ties at the threshold kept.
    BatchQuantile,
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

impl KlKind {
    /// The estimator named `"k1"`, `"k2"` or `"k3"`; any other name is an error listing them.
    pub fn from_name(name: &str) -> anyhow::Result<KlKind> {
        match name {
            "k1" => Ok(KlKind::K1),
            "k2" => Ok(KlKind::K2),
            "k3" => Ok(KlKind::K3),
            other => {
                anyhow::bail!("unknown estimator `{other}`; expected \"k1\", \"k2\" or \"k3\"")
            }
        }
    }
}

/// How [`reduce`] turns a per-token loss into a scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reduction {
    /// `Σ loss·mask / Σ mask` over the whole batch.
    TokenMean,
    /// The token mean of every consecutive block of `rows` rows (the last block may be shorter),
    /// averaged over the blocks: d1's trainer with one group per micro-batch.
    MicroBatchTokenMean {
        /// Rows per micro-batch (d1: the group size G).
        rows: usize,
    },
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
/// denoising step `t`) as the released trainer computes them: see
/// [`mdpo_step_advantages_with`] with [`MdpoLastStep::Reference`].
pub fn mdpo_step_advantages(rewards: &Tensor, eps: f64) -> Result<Tensor> {
    mdpo_step_advantages_with(rewards, eps, MdpoLastStep::Reference)
}

/// The raw MDPO advantages `[G][T]` before the per-step normalisation:
/// `A[k,t] = (r[k,t] − r[k,t−1]) + mean(r[k,t+1..=T−1])` with `r[k,−1] := 0` for `t < T−1`, and
/// for the last step `(r[k,T−1] − r[k,T−2]) + r[k,T−1]` ([`MdpoLastStep::Reference`]) or
/// `r[k,T−1]` ([`MdpoLastStep::RewardOnly`]). The release's constant `+1` is left out (it
/// cancels in the normalisation).
pub fn mdpo_raw_advantages(rewards: &[Vec<f64>], last: MdpoLastStep) -> Vec<Vec<f64>> {
    rewards
        .iter()
        .map(|row| {
            let t = row.len();
            (0..t)
                .map(|s| {
                    let prev = if s == 0 { 0.0 } else { row[s - 1] };
                    if s + 1 == t {
                        match last {
                            MdpoLastStep::Reference => row[s] - prev + row[s],
                            MdpoLastStep::RewardOnly => row[s],
                        }
                    } else {
                        let future = &row[s + 1..];
                        row[s] - prev + future.iter().sum::<f64>() / future.len() as f64
                    }
                })
                .collect()
        })
        .collect()
}

/// MDPO per-step advantages of step rewards `rewards` `[G, T]`: the raw advantages of
/// [`mdpo_raw_advantages`] normalised per step across the group, `(A − mean_k)/(std_k + eps)`
/// with the unbiased sample std (torch's default `std()`; MDPO uses `eps = 1e-4`). Needs
/// `G >= 2`. Returns f32 `[G, T]` (a constant).
pub fn mdpo_step_advantages_with(rewards: &Tensor, eps: f64, last: MdpoLastStep) -> Result<Tensor> {
    let (g, t) = dims2(rewards, "rewards", "[G, T] (rollouts × steps)")?;
    check_eps(eps, "eps")?;
    if g < 2 || t == 0 {
        bail!(
            "`rewards` must be [G, T] with G >= 2 rollouts and T >= 1 steps, found shape {}",
            dims_of(rewards)
        );
    }
    let r = rewards.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let a = mdpo_raw_advantages(&r, last);
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
/// ratio `exp(mean over all L positions of the row of (logp − old_logp))` on every token (IGPO's
/// release; [`RatioLevel::SequenceMasked`]: the mean over the row's masked tokens). Positions
/// where `mask` is 0 contribute nothing to the loss (with the token and masked-sequence ratios
/// their log-ratio is taken as 0, so non-finite padding values are harmless). The gradient w.r.t. `logp` is `−A·∂ρ` where the clip is inactive and 0
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
    let diff = (logp - old)?;
    let log_ratio = keep.where_cond(&diff, &zeros)?;
    let log_ratio = match level {
        RatioLevel::Token => log_ratio,
        RatioLevel::Sequence => diff.mean_keepdim(1)?.broadcast_as((b, l))?.contiguous()?,
        RatioLevel::SequenceMasked => {
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

/// Settings of [`mdpo_loss`]: the released `compute_loss` (`mdpo_trainer.py` 1487–1545).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MdpoLossConfig {
    /// L, the generation length in λ_t = L / (n_t + 1e-4).
    pub gen_length: usize,
    /// Coefficient of the k2 penalty (0.02 in the release).
    pub beta: f64,
    /// Lower clip ε (0.2).
    pub eps_low: f64,
    /// Upper clip ε (0.2).
    pub eps_high: f64,
    /// Weight the KL term by the confidence too (the release: `(surrogate·λ_t + β·k2)·conf`);
    /// `false` weights only the surrogate.
    pub kl_by_confidence: bool,
}

impl Default for MdpoLossConfig {
    fn default() -> Self {
        MdpoLossConfig {
            gen_length: 512,
            beta: 0.02,
            eps_low: 0.2,
            eps_high: 0.2,
            kl_by_confidence: true,
        }
    }
}

/// Output of [`mdpo_loss`].
#[derive(Debug, Clone)]
pub struct MdpoLoss {
    /// The loss of every row (one row = one (rollout, step) micro-batch), `[B]`, differentiable.
    pub loss: Tensor,
    /// Per row, the masked mean of the k2 term (detached; 0 when `ref_logp` is `None`).
    pub kl: Vec<f64>,
}

/// MDPO's loss of (rollout, step) pairs, one per row, as the release computes it: with the
/// tokens masked in the step's input `mask` `[B, L]` (n_t per row), λ_t = L/(n_t + 1e-4), the
/// ratio ρ = exp(logp − old) — with `old_logp = None` (μ = 1, the release) ρ = exp(logp −
/// stop_gradient(logp)), 1 in value with the gradient of logp — per token
/// `−min(ρÂ, clip(ρ, 1−ε_low, 1+ε_high)Â)·λ_t + β·½(ref − logp)²` and
/// `loss = Σ per_token·mask·conf / (Σ mask + 1e-4)`. `adv` is `[B]` (the pair's Â), `conf`
/// `[B, L]` the sampler's confidence of each token (non-finite values count as 0). The
/// effective weight of a token is −Â·L·conf/n_t² (quirk: late steps with few masked tokens
/// dominate). The release sums the pairs a rank trains on and averages the ranks: divide the sum
/// of these losses by the number of rollouts.
pub fn mdpo_loss(
    logp: &Tensor,
    old_logp: Option<&Tensor>,
    ref_logp: Option<&Tensor>,
    adv: &Tensor,
    mask: &Tensor,
    conf: &Tensor,
    cfg: &MdpoLossConfig,
) -> Result<MdpoLoss> {
    let (b, l) = dims2(logp, "logp", "[B, L]")?;
    same_shape(logp, "logp", mask, "mask")?;
    same_shape(logp, "logp", conf, "conf")?;
    if cfg.gen_length == 0 {
        bail!("`gen_length` of the MDPO loss must be at least 1");
    }
    let logp = to_f32(logp, "logp")?;
    let old = match old_logp {
        Some(o) => {
            same_shape(&logp, "logp", o, "old_logp")?;
            to_f32(o, "old_logp")?.detach()
        }
        None => logp.detach(),
    };
    let mask = to_f32(mask, "mask")?.detach();
    let keep = mask.ne(0f32)?;
    let conf = to_f32(conf, "conf")?.detach();
    let finite = conf.eq(&conf)?.mul(&conf.abs()?.lt(f32::INFINITY)?)?;
    let zeros = Tensor::zeros((b, l), DType::F32, logp.device())?;
    let conf = keep.mul(&finite)?.where_cond(&conf, &zeros)?;
    let n = mask.sum_keepdim(1)?;
    let lambda = (n.affine(1.0, 1e-4)?.recip()? * cfg.gen_length as f64)?;
    let surrogate = clipped_surrogate(
        &logp,
        &old,
        adv,
        &mask,
        cfg.eps_low,
        cfg.eps_high,
        RatioLevel::Token,
    )?;
    let policy = surrogate.loss.broadcast_mul(&lambda)?;
    let (weighted, kl_rows) = match ref_logp {
        Some(r) if cfg.beta != 0.0 => {
            let k2 = keep.where_cond(&kl(&logp, r, KlKind::K2)?, &zeros)?;
            let kl_rows = k2
                .detach()
                .sum(1)?
                .div(&n.squeeze(1)?.maximum(1f32)?)?
                .to_vec1::<f32>()?
                .into_iter()
                .map(f64::from)
                .collect();
            let k = (k2 * cfg.beta)?;
            let w = if cfg.kl_by_confidence {
                (policy + k)?.mul(&conf)?
            } else {
                (policy.mul(&conf)? + k)?
            };
            (w, kl_rows)
        }
        _ => (policy.mul(&conf)?, vec![0.0; b]),
    };
    let loss = keep
        .where_cond(&weighted, &zeros)?
        .sum(1)?
        .div(&n.squeeze(1)?.affine(1.0, 1e-4)?)?;
    Ok(MdpoLoss { loss, kl: kl_rows })
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
        Reduction::MicroBatchTokenMean { rows } => {
            if rows == 0 {
                bail!("the micro-batch of `micro_batch_token_mean` must have at least one row");
            }
            let mut total: Option<Tensor> = None;
            let mut n = 0usize;
            for start in (0..b).step_by(rows) {
                let len = rows.min(b - start);
                let part = masked
                    .narrow(0, start, len)?
                    .sum_all()?
                    .div(&mask.narrow(0, start, len)?.sum_all()?.maximum(1f32)?)?;
                total = Some(match total {
                    None => part,
                    Some(t) => (t + part)?,
                });
                n += 1;
            }
            match total {
                Some(t) => (t / n as f64)?,
                None => Tensor::zeros((), DType::F32, loss.device())?,
            }
        }
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

/// The IGPO entropy filter as IGPO's trainer applies it: [`entropy_filter_with`] with
/// [`EntropyCut::PerRowTopK`].
pub fn entropy_filter(entropy: &Tensor, subset: &Tensor, tau: f64) -> Result<Tensor> {
    entropy_filter_with(entropy, subset, tau, EntropyCut::PerRowTopK)
}

/// The IGPO entropy filter: a 0/1 f32 mask `[B, L]` that is 1 outside `subset` and, inside it
/// (`subset` nonzero, e.g. hint positions), 1 only for the high-entropy positions by
/// `entropy` `[B, L]`, `tau` in `[0, 1]`:
/// * [`EntropyCut::PerRowTopK`] (IGPO's trainer): per row with `n > 0` subset positions, the
///   `max(1, ⌊τ·n⌋)` with the highest entropy (ties at the cut go to the earlier position);
/// * [`EntropyCut::BatchQuantile`] (TRL's `get_high_entropy_mask`): `thr = quantile(subset
///   entropies of the whole batch, 1 − τ)` with linear interpolation (torch's default), a
///   position kept when `entropy >= thr` (ties all kept); `τ = 1` keeps the whole subset,
///   `τ = 0` only its maximum.
pub fn entropy_filter_with(
    entropy: &Tensor,
    subset: &Tensor,
    tau: f64,
    cut: EntropyCut,
) -> Result<Tensor> {
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
    let mut out = vec![1f32; b * l];
    match cut {
        EntropyCut::PerRowTopK => {
            for r in 0..b {
                let mut idx: Vec<usize> = (r * l..(r + 1) * l).filter(|&i| s[i] != 0.0).collect();
                if idx.is_empty() {
                    continue;
                }
                let keep = ((tau * idx.len() as f64).floor() as usize).max(1);
                // Stable sort by descending entropy: ties keep position order.
                idx.sort_by(|&x, &y| e[y].total_cmp(&e[x]));
                for &i in &idx[keep.min(idx.len())..] {
                    out[i] = 0.0;
                }
            }
        }
        EntropyCut::BatchQuantile => {
            let mut vals: Vec<f64> = e
                .iter()
                .zip(&s)
                .filter(|(_, &s)| s != 0.0)
                .map(|(&e, _)| e)
                .collect();
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

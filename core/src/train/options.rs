//! Typed options of the estimators, losses, optimizer and training helpers, as scripts pass
//! them (`logp_d1(m, r, #{ p_mask_prompt: 0.15, seed: 3 })`): every struct rejects unknown
//! fields and holds its defaults, so a Rust caller and a script read the same defaults from
//! one place. Enumerated choices are strings here and parsed by `to_*` methods, whose errors
//! name the accepted values.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::estimators::{D1_P_MASK_PROMPT, MDPO_EPS};
use super::hints::HintConfig;
use super::losses::{Normalise, RatioLevel, Reduction};
use super::optim::{AdamWConfig, OnNonFinite, Schedule};
use super::sft::PRETRAIN_EPS;

/// `logp_d1`: each real prompt token masked with probability `p_mask_prompt` (seeded per row).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct D1Options {
    /// Prompt masking probability (d1: 0.15).
    pub p_mask_prompt: f64,
    /// Seed of the mask draw.
    pub seed: u64,
}

impl Default for D1Options {
    fn default() -> Self {
        D1Options {
            p_mask_prompt: D1_P_MASK_PROMPT,
            seed: 0,
        }
    }
}

/// `logp_coupled`: the mask ratio `t` (default: drawn from the seed in [0.2, 0.8)).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoupledOptions {
    /// Mask ratio of the first copy.
    pub t: Option<f64>,
    /// Seed of the masks (and of `t` when not given).
    pub seed: u64,
}

/// `logp_mdpo`: logits divided by `temperature + eps`, scored from `prompt_len` on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MdpoOptions {
    /// Sampling temperature of the rollout.
    pub temperature: f64,
    /// Added to the temperature (the reference adds the logits dtype's epsilon).
    pub eps: f64,
    /// Positions before this are never scored.
    pub prompt_len: usize,
}

impl Default for MdpoOptions {
    fn default() -> Self {
        MdpoOptions {
            temperature: 1.0,
            eps: MDPO_EPS,
            prompt_len: 0,
        }
    }
}

/// `elbo`: `mc_num / batch` rounds of `batch` stratified copies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ElboOptions {
    /// Monte Carlo samples (LLaDA: 128).
    pub mc_num: usize,
    /// Copies per forward (16).
    pub batch: usize,
    /// Seed of the masks.
    pub seed: u64,
}

impl Default for ElboOptions {
    fn default() -> Self {
        ElboOptions {
            mc_num: 128,
            batch: 16,
            seed: 0,
        }
    }
}

/// `pretrain_loss` / `sft_loss`: p_mask = (1 − eps)·t + eps per row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseOptions {
    /// Seed of t and the masks.
    pub seed: u64,
    /// Smallest masking probability (LLaDA: 1e-3).
    pub eps: f64,
}

impl Default for NoiseOptions {
    fn default() -> Self {
        NoiseOptions {
            seed: 0,
            eps: PRETRAIN_EPS,
        }
    }
}

/// `entropy_filter`: how the kept high-entropy positions are cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EntropyFilterOptions {
    /// `"row_top_k"` (IGPO's trainer, `trainer_igpo.py` 1786-1826) or `"batch_quantile"` (TRL's
    /// `get_high_entropy_mask`).
    pub cut: String,
}

impl Default for EntropyFilterOptions {
    fn default() -> Self {
        EntropyFilterOptions {
            cut: "row_top_k".into(),
        }
    }
}

impl EntropyFilterOptions {
    /// The core cut.
    pub fn to_cut(&self) -> Result<crate::train::losses::EntropyCut> {
        use crate::train::losses::EntropyCut;
        Ok(match self.cut.as_str() {
            "row_top_k" => EntropyCut::PerRowTopK,
            "batch_quantile" => EntropyCut::BatchQuantile,
            other => bail!("unknown cut `{other}`; expected \"row_top_k\" or \"batch_quantile\""),
        })
    }
}

/// `sft_loss`: the noise of [`NoiseOptions`] plus the normaliser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftOptions {
    /// Seed of t and the masks.
    pub seed: u64,
    /// Smallest masking probability (LLaDA: 1e-3).
    pub eps: f64,
    /// `"per_row"` (LLaDA: mean over rows of CE / p_mask / answer length) or `"batch_tokens"`
    /// (d1's `SFT/sft_trainer.py` 12-26: the batch sum / (B·T − prompt tokens)).
    pub normaliser: String,
}

impl Default for SftOptions {
    fn default() -> Self {
        SftOptions {
            seed: 0,
            eps: PRETRAIN_EPS,
            normaliser: "per_row".into(),
        }
    }
}

impl SftOptions {
    /// The core normaliser.
    pub fn to_normaliser(&self) -> Result<crate::train::sft::SftNormaliser> {
        use crate::train::sft::SftNormaliser;
        Ok(match self.normaliser.as_str() {
            "per_row" => SftNormaliser::PerRow,
            "batch_tokens" => SftNormaliser::BatchTokens,
            other => {
                bail!("unknown normaliser `{other}`; expected \"per_row\" or \"batch_tokens\"")
            }
        })
    }
}

/// `group_advantages`: `std: true` divides the centred rewards by the group std + `eps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdvantageOptions {
    /// Scale by the group's unbiased std (GRPO papers, TRL); false only centres (d1 code).
    pub std: bool,
    /// The std offset (1e-4).
    pub eps: f64,
}

impl Default for AdvantageOptions {
    fn default() -> Self {
        AdvantageOptions {
            std: false,
            eps: 1e-4,
        }
    }
}

impl AdvantageOptions {
    /// The core normalisation.
    pub fn to_normalise(&self) -> Normalise {
        if self.std {
            Normalise::Std { eps: self.eps }
        } else {
            Normalise::None
        }
    }
}

/// `mdpo_advantages`: the std offset `eps` (1e-4) and the last step's raw advantage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MdpoAdvantageOptions {
    /// Added to the per-step std.
    pub eps: f64,
    /// `"reference"` (the release, `mdpo_trainer.py` ~849-851: `(r[T−1] − r[T−2]) + r[T−1]`)
    /// or `"reward"` (the paper: `r[T−1]`).
    pub last_step: String,
}

impl Default for MdpoAdvantageOptions {
    fn default() -> Self {
        MdpoAdvantageOptions {
            eps: 1e-4,
            last_step: "reference".into(),
        }
    }
}

impl MdpoAdvantageOptions {
    /// The core last-step rule.
    pub fn to_last_step(&self) -> Result<crate::train::losses::MdpoLastStep> {
        use crate::train::losses::MdpoLastStep;
        Ok(match self.last_step.as_str() {
            "reference" => MdpoLastStep::Reference,
            "reward" => MdpoLastStep::RewardOnly,
            other => bail!("unknown last_step `{other}`; expected \"reference\" or \"reward\""),
        })
    }
}

/// `clipped_loss`: clip range `[1 − eps_low, 1 + eps_high]` and the ratio level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClipOptions {
    /// Lower clip offset (0.2).
    pub eps_low: f64,
    /// Upper clip offset (0.2).
    pub eps_high: f64,
    /// `"token"` (per-token ratio), `"sequence"` (the row's ratio over all L positions, IGPO's
    /// release) or `"sequence_masked"` (over the row's masked tokens only, the GSPO paper).
    pub level: String,
}

impl Default for ClipOptions {
    fn default() -> Self {
        ClipOptions {
            eps_low: 0.2,
            eps_high: 0.2,
            level: "token".into(),
        }
    }
}

impl ClipOptions {
    /// The core ratio level.
    pub fn to_level(&self) -> Result<RatioLevel> {
        Ok(match self.level.as_str() {
            "token" => RatioLevel::Token,
            "sequence" | "seq" => RatioLevel::Sequence,
            "sequence_masked" => RatioLevel::SequenceMasked,
            other => bail!(
                "unknown level `{other}`; expected \"token\", \"sequence\" or \"sequence_masked\""
            ),
        })
    }
}

/// `reduce_loss`: `mode` `"token_mean"`, `"micro_batch_token_mean"` (the token mean of every
/// block of `rows` rows, averaged over the blocks: d1's trainer, one group per micro-batch),
/// `"seq_mean"` or `"constant"` (Σ / (B·constant)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReduceOptions {
    /// The reduction.
    pub mode: String,
    /// The divisor per row of `"constant"` (e.g. the max completion length; Dr.GRPO).
    pub constant: Option<f64>,
    /// The rows of one micro-batch of `"micro_batch_token_mean"` (d1: the group size).
    pub rows: Option<usize>,
}

impl Default for ReduceOptions {
    fn default() -> Self {
        ReduceOptions {
            mode: "token_mean".into(),
            constant: None,
            rows: None,
        }
    }
}

impl ReduceOptions {
    /// The core reduction.
    pub fn to_reduction(&self) -> Result<Reduction> {
        Ok(match self.mode.as_str() {
            "token_mean" => Reduction::TokenMean,
            "micro_batch_token_mean" => match self.rows {
                Some(rows) => Reduction::MicroBatchTokenMean { rows },
                None => bail!(
                    "mode \"micro_batch_token_mean\" needs the option `rows` (d1: the group size)"
                ),
            },
            "seq_mean" => Reduction::SeqMean,
            "constant" => match self.constant {
                Some(c) => Reduction::Constant(c),
                None => bail!(
                    "mode \"constant\" needs the option `constant` (e.g. the max completion length)"
                ),
            },
            other => bail!(
                "unknown mode `{other}`; expected \"token_mean\", \"micro_batch_token_mean\", \"seq_mean\" or \"constant\""
            ),
        })
    }
}

/// `adamw`: the torch AdamW settings plus clipping and a Hugging Face schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWOptions {
    /// Base learning rate (1e-3).
    pub lr: f64,
    /// `[beta1, beta2]` ([0.9, 0.999]).
    pub betas: [f64; 2],
    /// Denominator offset (1e-8).
    pub eps: f64,
    /// Decoupled weight decay (0.01).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (none by default).
    pub max_grad_norm: Option<f64>,
    /// `"constant"`, `"constant_with_warmup"`, `"linear"` or `"cosine"`.
    pub schedule: String,
    /// Warmup steps.
    pub warmup: Option<u64>,
    /// Steps of the linear and cosine schedules.
    pub total_steps: Option<u64>,
    /// Cosine floor as a fraction of `lr`.
    pub min_lr_ratio: Option<f64>,
    /// `"error"` or `"skip"` on a NaN/Inf loss or gradient.
    pub on_nonfinite: String,
}

impl Default for AdamWOptions {
    fn default() -> Self {
        let c = AdamWConfig::default();
        AdamWOptions {
            lr: c.lr,
            betas: [c.beta1, c.beta2],
            eps: c.eps,
            weight_decay: c.weight_decay,
            max_grad_norm: c.max_grad_norm,
            schedule: "constant".into(),
            warmup: None,
            total_steps: None,
            min_lr_ratio: None,
            on_nonfinite: "error".into(),
        }
    }
}

impl AdamWOptions {
    /// The checked optimizer config and schedule.
    pub fn to_config(&self) -> Result<(AdamWConfig, Schedule)> {
        let c = AdamWConfig {
            lr: self.lr,
            beta1: self.betas[0],
            beta2: self.betas[1],
            eps: self.eps,
            weight_decay: self.weight_decay,
            max_grad_norm: self.max_grad_norm,
            on_nonfinite: OnNonFinite::parse(&self.on_nonfinite)?,
        };
        c.validate()?;
        let s = Schedule::parse(
            &self.schedule,
            self.warmup,
            self.total_steps,
            self.min_lr_ratio,
        )?;
        Ok((c, s))
    }
}

/// `igpo_hints`: the hint builder's knobs (IGPO's defaults) and the seed (row i: `seed + i`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HintOptions {
    /// Seed of row 0.
    pub seed: i64,
    /// Free positions at the end (30).
    pub margin: usize,
    /// Smallest chunk (5).
    pub min_chunk: usize,
    /// Largest chunk (10).
    pub max_chunk: usize,
    /// Largest stretched gap (100).
    pub max_spacing: usize,
    /// Upper clamp of the stretch factor (1.5).
    pub max_stretch: f64,
}

impl Default for HintOptions {
    fn default() -> Self {
        let d = HintConfig::default();
        HintOptions {
            seed: 0,
            margin: d.margin,
            min_chunk: d.min_chunk,
            max_chunk: d.max_chunk,
            max_spacing: d.max_spacing,
            max_stretch: d.max_stretch,
        }
    }
}

impl HintOptions {
    /// The core hint config.
    pub fn to_config(&self) -> HintConfig {
        HintConfig {
            margin: self.margin,
            min_chunk: self.min_chunk,
            max_chunk: self.max_chunk,
            max_spacing: self.max_spacing,
            max_stretch: self.max_stretch,
        }
    }
}

/// `load_model` / `new_model`: device, dtype, trainable weights and (random init) the seed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelOptions {
    /// `"cpu"`, `"cuda"`, `"cuda:N"` (default: CUDA when available).
    pub device: Option<String>,
    /// `"f32"`, `"bf16"`, `"f64"` (default: the device's).
    pub dtype: Option<String>,
    /// Every weight becomes a parameter.
    pub trainable: bool,
    /// Seed of a random initialisation (`new_model` only).
    pub seed: Option<u64>,
}

/// `data_loader`: batches over a script's rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderOptions {
    /// Rows per batch (required, ≥ 1).
    pub batch_size: usize,
    /// A fresh seeded permutation each epoch.
    pub shuffle: bool,
    /// Seed of the permutations.
    pub seed: u64,
    /// Drop an epoch's short last batch.
    pub drop_last: bool,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            batch_size: 0,
            shuffle: true,
            seed: 0,
            drop_last: false,
        }
    }
}

/// `run_log`: the progress bar's total and shown metrics, and where a resumed log continues.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunLogOptions {
    /// Steps, for the bar and ETA.
    pub total: Option<u64>,
    /// Metric names shown on the bar.
    pub show: Vec<String>,
    /// Keep the lines with `step <= resume_step` and append after them (negative: afresh).
    pub resume_step: Option<i64>,
}

/// `plot`: title and moving-average window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlotOptions {
    /// Figure title.
    pub title: Option<String>,
    /// N-point moving average (≥ 1).
    pub smooth: usize,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            title: None,
            smooth: 1,
        }
    }
}

/// `char_ids`: a character vocabulary and optional fixed-length padding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CharIdsOptions {
    /// The characters (id = index; required).
    pub alphabet: String,
    /// Pad every row to this many ids (longer texts are an error).
    pub length: Option<usize>,
    /// The padding id (required with `length`).
    pub pad: Option<u32>,
    /// `"left"` (text first, answers) or `"right"` (padding first, prompts).
    pub align: Option<String>,
}

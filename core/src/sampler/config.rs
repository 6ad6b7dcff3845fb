//! The sampler's configuration: one struct for every decoding algorithm of
//! `reference/ALGORITHMS.md` §2, deserializable from JSON (every field has a default) and
//! checked by [`SamplerConfig::validate`], whose errors name the conflicting values.
//!
//! Which reference each option follows:
//!
//! | option | reference |
//! | --- | --- |
//! | `schedule: linear`, `cfg_scale`, `logits_eos_inf`, `remasking: low_confidence / random` | LLaDA `generate.py` |
//! | `schedule: maskgit_linear / maskgit_cosine`, `rcr` | MDPO (`get_num_transfer_tokens_maskgit`, running confidence remasking) |
//! | `eoser`, `schedule: ass`, `block_num` | EOSER/ASS (`eoser_generate`, `eoser_ass_generate`) |
//! | `threshold`, `cache: prefix / dual` | Fast-dLLM threshold parallel decoding, `generate_with_prefix_cache` / `generate_with_dual_cache` |
//! | hints (see [`super::Canvas::with_hints`]), `eos_early_exit` | IGPO `generate_inpainting` |
//! | `remasking: margin / entropy` | Dream-style scores |

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// How the confidence that ranks the candidate positions of a step is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remasking {
    /// `softmax(logits)[x0]`, temperature-free (LLaDA's default).
    #[default]
    LowConfidence,
    /// A uniform draw in [0, 1) per candidate, from the row's own generator.
    Random,
    /// Top-1 minus top-2 probability of `softmax(logits)`.
    Margin,
    /// Negative entropy of `softmax(logits)` (higher = more certain).
    Entropy,
}

/// An option value as the user writes it (`prefix`, `maskgit_cosine`), not its Rust name.
fn spelling<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

/// How many masked positions a step commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// LLaDA `get_num_transfer_tokens`: `n / steps` per step, the first `n % steps` steps one
    /// more (n = masked positions of the block at its start).
    #[default]
    Linear,
    /// MaskGIT with mask ratio `γ(r) = 1 − r` (MDPO's `linear` mode).
    MaskgitLinear,
    /// MaskGIT with mask ratio `γ(r) = cos(rπ/2)` (MDPO's `cosine` mode).
    MaskgitCosine,
    /// Ascending step size: step i commits 2^i, blocks built from `block_num` (EOSER/ASS).
    Ass,
}

/// Key/value reuse across the steps of a block (Fast-dLLM). Each block's first forward is the
/// full, exact one and refreshes the cache; the block's later forwards recompute only part of
/// the canvas and reuse the cached keys/values of the rest, an approximation (the cached
/// positions do not see the tokens committed since). Works with every top-k schedule,
/// threshold decoding, CFG, EOSER, hints and temperature sampling; not with RCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Recompute the whole canvas every step (exact).
    #[default]
    None,
    /// Cache keys/values left of the current block, refreshed at each block start; later
    /// steps recompute the block and everything right of it.
    Prefix,
    /// Cache the prefix and the masked suffix; later steps recompute only the block.
    Dual,
}

/// EOS early rejection: the confidence of a candidate whose token is EOS is multiplied by
/// `γ_s`, rising from `gamma_min` to `gamma_max` over the steps (see [`super::schedule::eoser_gamma`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eoser {
    /// γ at the first step.
    pub gamma_min: f64,
    /// γ at the last step.
    pub gamma_max: f64,
}

/// Everything that selects and parameterises a decoding algorithm.
///
/// Defaults: LLaDA low-confidence remasking, linear schedule, one block, temperature 0,
/// 128 tokens in 128 steps. Unknown JSON fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Number of generated positions (the canvas is prompt ++ `gen_length` × MASK).
    pub gen_length: usize,
    /// Total denoising steps over all blocks (ASS: `floor(log2 gen_length)`; unused with
    /// `threshold`).
    pub steps: usize,
    /// Semi-autoregressive block length; `None` means one block of `gen_length`. Not used
    /// with `schedule: ass`, whose blocks come from `block_num`.
    pub block_length: Option<usize>,
    /// Number of ASS blocks (only with `schedule: ass`; `None` means 1).
    pub block_num: Option<usize>,
    /// Sampling temperature; 0 is greedy (argmax).
    pub temperature: f64,
    /// Confidence used to rank candidates.
    pub remasking: Remasking,
    /// MDPO's confidence (`mdlm_generation_utils.py` 63–79): rank candidates and record their
    /// confidence by `softmax(logits / temperature)` — the distribution the token was sampled
    /// from — instead of the untempered `softmax(logits)` (LLaDA); the recorded trajectory also
    /// keeps the real confidence of the masked positions right of the current block (recorded
    /// before the block's −inf, `diffusion_generate` 85 vs 99). No effect at temperature 0.
    pub tempered_confidence: bool,
    /// Per-step commit counts.
    pub schedule: Schedule,
    /// Classifier-free guidance scale w: `un + (w + 1)(cond − un)`; 0 disables it.
    pub cfg_scale: f64,
    /// Set the EOS logit to −inf before choosing candidates (LLaDA).
    pub logits_eos_inf: bool,
    /// Confidence −inf where the candidate is EOS or EoT (the intended effect of LLaDA's flag).
    pub confidence_eos_eot_inf: bool,
    /// The end-of-turn token (`<|eot_id|>`); required by `confidence_eos_eot_inf`.
    pub eot_id: Option<u32>,
    /// MDPO running confidence remasking.
    pub rcr: bool,
    /// EOS early rejection.
    pub eoser: Option<Eoser>,
    /// Fast-dLLM parallel decoding: commit every candidate with confidence ≥ τ (at least the
    /// top one) and loop until the block is full; `steps` is not used.
    pub threshold: Option<f64>,
    /// Key/value reuse across the steps of a block (Fast-dLLM prefix / dual cache).
    pub cache: CacheMode,
    /// IGPO early exit: once a row's block is entirely EOS, fill every remaining masked
    /// generation position of that row with EOS.
    pub eos_early_exit: bool,
    /// Record the trajectory (states, commits, predictions, confidences per step).
    pub record: bool,
    /// Seed of the per-row generators (combined with each row's own seed).
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            gen_length: 128,
            steps: 128,
            block_length: None,
            block_num: None,
            temperature: 0.0,
            remasking: Remasking::LowConfidence,
            tempered_confidence: false,
            schedule: Schedule::Linear,
            cfg_scale: 0.0,
            logits_eos_inf: false,
            confidence_eos_eot_inf: false,
            eot_id: None,
            rcr: false,
            eoser: None,
            threshold: None,
            cache: CacheMode::None,
            eos_early_exit: false,
            record: false,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Parses a JSON object (missing fields take their defaults) and validates it.
    pub fn from_json(text: &str) -> Result<SamplerConfig> {
        let cfg: SamplerConfig = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("invalid sampler config: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The block length actually used: `block_length`, or `gen_length` when unset.
    pub fn block_len(&self) -> usize {
        self.block_length.unwrap_or(self.gen_length)
    }

    /// ASS step count `S = floor(log2 gen_length)` (0 for `gen_length` 0).
    pub fn ass_steps(&self) -> usize {
        if self.gen_length == 0 {
            0
        } else {
            (usize::BITS - 1 - self.gen_length.leading_zeros()) as usize
        }
    }

    /// Checks every constraint between the fields; the error names the values in conflict.
    pub fn validate(&self) -> Result<()> {
        if self.gen_length == 0 {
            bail!("gen_length must be at least 1, got 0");
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            bail!(
                "temperature must be finite and >= 0, got {}",
                self.temperature
            );
        }
        if !self.cfg_scale.is_finite() || self.cfg_scale < 0.0 {
            bail!("cfg_scale must be finite and >= 0, got {}", self.cfg_scale);
        }
        if self.cache != CacheMode::None && self.rcr {
            bail!(
                "cache {} conflicts with rcr: running confidence remasking re-masks tokens \
                 of earlier blocks, which the keys/values cached at the block start no longer \
                 describe; use cache none with rcr",
                spelling(&self.cache)
            );
        }
        if self.confidence_eos_eot_inf && self.eot_id.is_none() {
            bail!("confidence_eos_eot_inf is set but eot_id is not (give the <|eot_id|> token id)");
        }
        if let Some(e) = self.eoser {
            if !(e.gamma_min.is_finite() && e.gamma_max.is_finite())
                || e.gamma_min < 0.0
                || e.gamma_min > e.gamma_max
            {
                bail!(
                    "eoser needs 0 <= gamma_min <= gamma_max, got gamma_min {} and gamma_max {}",
                    e.gamma_min,
                    e.gamma_max
                );
            }
            if self.remasking == Remasking::Entropy {
                bail!(
                    "eoser scales a nonnegative confidence, but remasking entropy gives \
                     negative scores; use low_confidence, margin or random"
                );
            }
        }
        if self.block_num.is_some() && self.schedule != Schedule::Ass {
            bail!(
                "block_num {} is only used by schedule ass, but schedule is {}",
                self.block_num.unwrap_or(0),
                spelling(&self.schedule)
            );
        }
        if let Some(t) = self.threshold {
            if !(t > 0.0 && t <= 1.0) {
                bail!("threshold must be in (0, 1], got {t}");
            }
            if self.rcr {
                bail!("threshold {t} conflicts with rcr: threshold decoding never re-masks");
            }
            if self.schedule != Schedule::Linear {
                bail!(
                    "threshold {t} conflicts with schedule {}: threshold decoding has no \
                     step schedule",
                    spelling(&self.schedule)
                );
            }
        }
        if self.schedule == Schedule::Ass {
            let s = self.ass_steps();
            if self.steps != s {
                bail!(
                    "schedule ass needs steps = floor(log2 gen_length) = {s} for gen_length {}, \
                     got steps {}",
                    self.gen_length,
                    self.steps
                );
            }
            if let Some(bl) = self.block_length {
                if bl != self.gen_length {
                    bail!(
                        "block_length {bl} conflicts with schedule ass: its blocks come from \
                         block_num"
                    );
                }
            }
            let bn = self.block_num.unwrap_or(1);
            if bn == 0 || bn > s {
                bail!("block_num must be in 1..={s} (steps) for schedule ass, got {bn}");
            }
            return Ok(());
        }
        let bl = self.block_len();
        if bl == 0 {
            bail!("block_length must be at least 1, got 0");
        }
        if self.gen_length % bl != 0 {
            bail!(
                "gen_length {} is not a multiple of block_length {bl}",
                self.gen_length
            );
        }
        let blocks = self.gen_length / bl;
        if self.threshold.is_none() {
            if self.steps == 0 {
                bail!("steps must be at least 1, got 0");
            }
            if self.steps % blocks != 0 {
                bail!(
                    "steps {} is not a multiple of the number of blocks {blocks} \
                     (gen_length {} / block_length {bl})",
                    self.steps,
                    self.gen_length
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_options_as_the_user_spells_them() {
        let cfg = SamplerConfig {
            cache: CacheMode::Prefix,
            rcr: true,
            ..SamplerConfig::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.starts_with("cache prefix conflicts with rcr"), "{e}");
        let cfg = SamplerConfig {
            threshold: Some(0.9),
            schedule: Schedule::MaskgitCosine,
            ..SamplerConfig::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("schedule maskgit_cosine"), "{e}");
    }
}

//! One sampler engine for masked diffusion LMs (`reference/ALGORITHMS.md` §2): LLaDA
//! low-confidence / random remasking with semi-autoregressive blocks and CFG, MDPO's MaskGIT
//! schedules and running confidence remasking (RCR), EOSER and the ascending step-size (ASS)
//! schedule, Fast-dLLM threshold parallel decoding, IGPO inpainting with fixed hints, and
//! trajectory recording for MDPO / CJ-GRPO.
//!
//! The data path: [`Canvas`] (left-padded prompts, hints, per-row seeds) →
//! [`engine`] (denoising loop; [`schedule`] gives the per-step counts, [`score`] the
//! candidates and confidences) → [`GenerateOutput`] (final canvas, completions, NFE and an
//! optional [`Trajectory`]). [`SamplerHooks`] let a caller override counts and scores.
//!
//! Every algorithm reproduces its reference implementation token for token at temperature 0
//! (`tests/sampler_parity.rs` replays the golden `samplers.json`). At temperature T > 0 each
//! row draws from its own generator seeded by (config seed, row seed), only at the positions
//! it can commit, so a row's sample does not depend on the batch it is in.
//!
//! `cache: prefix | dual` (Fast-dLLM key/value reuse) is an approximation the caller opts
//! into: each block's first forward is the exact full one and refreshes the cache
//! ([`crate::model::Llada::forward_hidden_kv`]); the block's later forwards recompute the
//! block and its right side (prefix) or the block only (dual) with
//! [`crate::model::Llada::forward_hidden_cached`]. [`GenerateOutput::forward_positions`]
//! reports the positions each forward recomputed. `tests/sampler_cache.rs` measures the
//! agreement with exact decoding. Not with RCR (it re-masks earlier blocks).
//!
//! Known limits: at T > 0 the
//! Gumbel noise (V float64 draws per candidate position) is drawn on the host and uploaded;
//! on the CPU that is less work than the reference, on a GPU with LLaDA-8B's vocabulary it is
//! the dominant per-step cost.

pub mod canvas;
pub mod config;
pub mod engine;
pub mod golden;
pub mod guard;
pub mod hooks;
pub mod rollout;
pub mod schedule;
pub mod score;
pub mod trajectory;

use std::collections::HashMap;

use anyhow::Result;

pub use canvas::Canvas;
pub use config::{CacheMode, Eoser, Remasking, SamplerConfig, Schedule};
pub use engine::GenerateOutput;
pub use hooks::SamplerHooks;
pub use rollout::{generate_rollout, render_prompt, GenerateRequest, PromptInput, Rollout};
pub use trajectory::{StepRecord, Trajectory};

use crate::model::Llada;

/// Optional inputs of [`generate`].
#[derive(Default)]
pub struct GenerateOptions<'h> {
    /// Per row, fixed hint tokens by generation offset (IGPO inpainting).
    pub hints: Option<Vec<HashMap<usize, u32>>>,
    /// Per row, its own seed (default: the row index).
    pub row_seeds: Option<Vec<u64>>,
    /// Schedule / score overrides.
    pub hooks: Option<&'h mut dyn SamplerHooks>,
}

impl std::fmt::Debug for GenerateOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerateOptions")
            .field("hints", &self.hints)
            .field("row_seeds", &self.row_seeds)
            .field("hooks", &self.hooks.as_ref().map(|_| "<hooks>"))
            .finish()
    }
}

/// Generates a completion for every prompt (unpadded token ids; ragged prompts are
/// left-padded with EOS under an attention mask) with `model` under `cfg`.
pub fn generate(
    model: &Llada,
    prompts: &[Vec<u32>],
    cfg: &SamplerConfig,
    opts: GenerateOptions<'_>,
) -> Result<GenerateOutput> {
    let mcfg = model.config();
    let mut canvas = Canvas::new(prompts, cfg.gen_length, mcfg.pad_id()?, mcfg.mask_id()?)?;
    if let Some(h) = &opts.hints {
        canvas = canvas.with_hints(h)?;
    }
    if let Some(s) = opts.row_seeds {
        canvas = canvas.with_row_seeds(s)?;
    }
    engine::run(model, canvas, cfg, opts.hooks)
}

/// Denoises a prepared canvas (pre-padded prompts, hints, repeated groups, row seeds).
pub fn generate_canvas(
    model: &Llada,
    canvas: Canvas,
    cfg: &SamplerConfig,
    hooks: Option<&mut dyn SamplerHooks>,
) -> Result<GenerateOutput> {
    engine::run(model, canvas, cfg, hooks)
}

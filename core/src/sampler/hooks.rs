//! Hooks that let a caller (e.g. the scripting layer) override the per-step commit counts and
//! rescore the candidates with whole-batch tensors. Both methods default to "keep the
//! built-in" (`Ok(None)`), so an implementation overrides only what it needs.
//!
//! EOSER and ASS are expressible with them on plain low-confidence decoding (one block of
//! `gen_length`, `steps = floor(log2 gen_length)`): `schedule` returns the ASS counts, and
//! `score` multiplies the confidence of EOS candidates by γ_s and sets −inf right of the ASS
//! block of the step (see `tests/sampler_parity.rs`).

use anyhow::Result;
use candle_core::Tensor;

/// Per-step overrides of the sampler's schedule and scores.
///
/// `step` is the global step index: `block · steps_per_block + i` for the i-th step of a block
/// (ASS: the global ASS step), or under threshold decoding the number of forward passes made
/// before this one. Steps in which no row would commit anything are skipped (no forward, no
/// hook calls).
pub trait SamplerHooks {
    /// Called before the forward pass of each scheduled step (not under threshold decoding).
    ///
    /// `remaining_masked[b]` is the number of masked, non-hint positions of row b in the
    /// current block. Return `Some(counts)` (one per row) to replace the built-in counts of
    /// this step; a count larger than the row's committable positions is an error. Under RCR
    /// the counts replace the schedule entry of this step (so the running sums `K`, `M` use
    /// them too).
    fn schedule(&mut self, step: usize, remaining_masked: &[usize]) -> Result<Option<Vec<usize>>> {
        let _ = (step, remaining_masked);
        Ok(None)
    }

    /// Called after the built-in confidences of a step are computed (EOSER, EOS/EoT −inf
    /// included), before the commit is chosen.
    ///
    /// Both tensors are on the CPU and cover the **whole generation region**, `[B, G]` with
    /// G = `gen_length` (column j is canvas position `prompt_len + j`):
    /// * `confidence` f32: the built-in confidence at candidate positions (masked, non-hint,
    ///   left of the current block's end), −inf everywhere else;
    /// * `candidates` u32: the candidate token x0 at candidate positions, the current canvas
    ///   token elsewhere (MASK right of the block).
    ///
    /// Return `Some(t)` with t `[B, G]` (any float dtype, any device) to replace the
    /// confidences; only candidate positions are read. Commits are the top-k by this score
    /// (ties: lower position first), or under threshold decoding those ≥ τ plus the top one.
    fn score(
        &mut self,
        step: usize,
        confidence: &Tensor,
        candidates: &Tensor,
    ) -> Result<Option<Tensor>> {
        let _ = (step, confidence, candidates);
        Ok(None)
    }
}

//! Trajectory recording (needed by MDPO and CJ-GRPO, `reference/ALGORITHMS.md` §2).
//!
//! For every denoising step s (one forward pass) the recorder keeps, on the host:
//! * `state(s)`: the canvas x_s before the step ([B, L] u32); `state(num_steps)` is the final
//!   canvas, so `x_{s+1}` is always `state(s + 1)`;
//! * `committed(s)`: positions masked in x_s and unmasked in x_{s+1} (under RCR the net
//!   commits after re-masking; `remasked(s)` lists the positions RCR masked again);
//! * `prediction(s)`: the step's full prediction x̂0 — every masked position of x_s filled with
//!   the step's candidate token (argmax at temperature 0, the Gumbel-max sample otherwise),
//!   every other position its current token;
//! * `confidence(s)`: the confidence that ranked each candidate position (−inf elsewhere).
//!
//! Storage is compact: one `Vec<u32>` / `Vec<f32>` of B·L entries per step, and position lists
//! for commits; the accessors rebuild tensors on demand.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};

/// What one step recorded (host vectors, row-major [B, L]).
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// Global schedule step index (the hooks' `step`).
    pub step: usize,
    /// Index of the block the step decoded.
    pub block: usize,
    /// The canvas before the step, B·L ids.
    pub state: Vec<u32>,
    /// Per row, the positions (canvas indices) committed net by the step.
    pub committed: Vec<Vec<u32>>,
    /// Per row, the positions RCR re-masked at the end of the step.
    pub remasked: Vec<Vec<u32>>,
    /// The prediction x̂0, B·L ids.
    pub prediction: Vec<u32>,
    /// Confidences of candidate positions (−inf elsewhere), B·L values.
    pub confidence: Vec<f32>,
}

/// The recorded denoising trajectory of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    batch: usize,
    len: usize,
    prompt_len: usize,
    steps: Vec<StepRecord>,
    final_state: Vec<u32>,
}

impl Trajectory {
    pub(crate) fn new(batch: usize, len: usize, prompt_len: usize) -> Trajectory {
        Trajectory {
            batch,
            len,
            prompt_len,
            steps: Vec::new(),
            final_state: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, rec: StepRecord) {
        self.steps.push(rec);
    }

    pub(crate) fn finish(&mut self, final_state: Vec<u32>) {
        self.final_state = final_state;
    }

    /// Number of recorded steps (forward passes).
    pub fn num_steps(&self) -> usize {
        self.steps.len()
    }

    /// Batch size B.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Row length L (prompt ++ generation).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no step was recorded.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Where the generation region starts in each row.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// The raw record of step `s`.
    pub fn step(&self, s: usize) -> Result<&StepRecord> {
        match self.steps.get(s) {
            Some(r) => Ok(r),
            None => bail!(
                "step {s} out of range: the trajectory has {} steps",
                self.steps.len()
            ),
        }
    }

    /// All step records in order.
    pub fn steps(&self) -> &[StepRecord] {
        &self.steps
    }

    /// Host ids of state `s` (0 ≤ s ≤ num_steps; the last is the final canvas), B·L row-major.
    pub fn state_ids(&self, s: usize) -> Result<&[u32]> {
        if s == self.steps.len() {
            Ok(&self.final_state)
        } else {
            Ok(&self.step(s)?.state)
        }
    }

    /// State x_s as a [B, L] u32 tensor on the CPU (`s == num_steps()` gives the final canvas).
    pub fn state(&self, s: usize) -> Result<Tensor> {
        self.tensor_u32(self.state_ids(s)?.to_vec())
    }

    /// Committed-at-step-s mask as a [B, L] u8 tensor (1 where committed).
    pub fn committed(&self, s: usize) -> Result<Tensor> {
        self.position_mask(&self.step(s)?.committed)
    }

    /// Re-masked-at-step-s mask as a [B, L] u8 tensor (RCR only; zeros otherwise).
    pub fn remasked(&self, s: usize) -> Result<Tensor> {
        self.position_mask(&self.step(s)?.remasked)
    }

    /// Prediction x̂0 of step s as a [B, L] u32 tensor.
    pub fn prediction(&self, s: usize) -> Result<Tensor> {
        self.tensor_u32(self.step(s)?.prediction.clone())
    }

    /// Confidences of step s as a [B, L] f32 tensor (−inf at non-candidate positions).
    pub fn confidence(&self, s: usize) -> Result<Tensor> {
        let v = self.step(s)?.confidence.clone();
        Ok(Tensor::from_vec(v, (self.batch, self.len), &Device::Cpu)?)
    }

    /// The trajectory of rows `rows` only (in that order; a row may repeat).
    pub fn select(&self, rows: &[usize]) -> Result<Trajectory> {
        if let Some(&r) = rows.iter().find(|&&r| r >= self.batch) {
            bail!(
                "row {r} out of range: the trajectory has {} rows",
                self.batch
            );
        }
        let pick = |flat: &[u32]| -> Vec<u32> {
            rows.iter()
                .flat_map(|&r| flat[r * self.len..(r + 1) * self.len].iter().copied())
                .collect()
        };
        let steps = self
            .steps
            .iter()
            .map(|s| StepRecord {
                step: s.step,
                block: s.block,
                state: pick(&s.state),
                committed: rows.iter().map(|&r| s.committed[r].clone()).collect(),
                remasked: rows.iter().map(|&r| s.remasked[r].clone()).collect(),
                prediction: pick(&s.prediction),
                confidence: rows
                    .iter()
                    .flat_map(|&r| {
                        s.confidence[r * self.len..(r + 1) * self.len]
                            .iter()
                            .copied()
                    })
                    .collect(),
            })
            .collect();
        Ok(Trajectory {
            batch: rows.len(),
            len: self.len,
            prompt_len: self.prompt_len,
            steps,
            final_state: pick(&self.final_state),
        })
    }

    fn tensor_u32(&self, v: Vec<u32>) -> Result<Tensor> {
        Ok(Tensor::from_vec(v, (self.batch, self.len), &Device::Cpu)?)
    }

    fn position_mask(&self, rows: &[Vec<u32>]) -> Result<Tensor> {
        let mut m = vec![0u8; self.batch * self.len];
        for (b, row) in rows.iter().enumerate() {
            for &p in row {
                m[b * self.len + p as usize] = 1;
            }
        }
        Ok(Tensor::from_vec(m, (self.batch, self.len), &Device::Cpu)?)
    }
}

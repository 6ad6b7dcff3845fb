//! AdamW, gradient clipping and accumulation, learning-rate schedules.
//!
//! [`AdamW`] follows `torch.optim.AdamW` exactly (decoupled weight decay, bias-corrected
//! moments); [`Schedule`] reproduces the Hugging Face `get_*_schedule_with_warmup` lambdas, and
//! clipping follows `torch.nn.utils.clip_grad_norm_`.
//!
//! Gradients are *summed* over accumulated micro-batches, as PyTorch's `.grad` does: to average
//! over `k` micro-batches, scale each micro-batch loss by `1/k` before `backward`.
//!
//! Optimizer state (`exp_avg`, `exp_avg_sq` and the accumulation buffers) is kept in f32 on the
//! variables' device whatever the variables' dtype; the update is computed in f32 (f64 for f64
//! variables) and written back in the variable's dtype.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{backprop::GradStore, DType, Tensor, Var};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What a step does when the loss or a gradient is NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnNonFinite {
    /// Fail with an error naming the step and the offending tensor; nothing is changed.
    #[default]
    Error,
    /// Skip the update (the accumulated gradients are dropped, the step count does not advance)
    /// and report it in [`StepInfo::skipped`].
    Skip,
}

impl OnNonFinite {
    /// Parses `"error"` or `"skip"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "error" => Ok(OnNonFinite::Error),
            "skip" => Ok(OnNonFinite::Skip),
            _ => bail!("unknown on_nonfinite mode `{name}`; expected one of: error, skip"),
        }
    }
}

/// AdamW hyper-parameters (defaults as `torch.optim.AdamW`), plus clipping and the non-finite
/// policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    /// Base learning rate (multiplied by the schedule's factor).
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay: `p -= lr * weight_decay * p` each step.
    pub weight_decay: f64,
    /// Clip the global L2 norm of the gradients to this value (`clip_grad_norm_`); `None`: no
    /// clipping.
    pub max_grad_norm: Option<f64>,
    /// What to do on a NaN/Inf loss or gradient.
    pub on_nonfinite: OnNonFinite,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: None,
            on_nonfinite: OnNonFinite::Error,
        }
    }
}

impl AdamWConfig {
    /// Checks ranges: `lr >= 0`, `0 <= beta < 1`, `eps >= 0`, `weight_decay >= 0`,
    /// `max_grad_norm > 0`.
    pub fn validate(&self) -> Result<()> {
        let finite = |x: f64, n: &str| {
            if x.is_finite() {
                Ok(())
            } else {
                Err(anyhow!("AdamW: {n} must be finite, found {x}"))
            }
        };
        finite(self.lr, "lr")?;
        finite(self.beta1, "beta1")?;
        finite(self.beta2, "beta2")?;
        finite(self.eps, "eps")?;
        finite(self.weight_decay, "weight_decay")?;
        if self.lr < 0.0 {
            bail!("AdamW: lr must be >= 0, found {}", self.lr);
        }
        for (n, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                bail!("AdamW: {n} must be in [0, 1), found {b}");
            }
        }
        if self.eps < 0.0 {
            bail!("AdamW: eps must be >= 0, found {}", self.eps);
        }
        if self.weight_decay < 0.0 {
            bail!(
                "AdamW: weight_decay must be >= 0, found {}",
                self.weight_decay
            );
        }
        if let Some(m) = self.max_grad_norm {
            if !(m > 0.0 && m.is_finite()) {
                bail!("AdamW: max_grad_norm must be a positive number, found {m}");
            }
        }
        Ok(())
    }
}

/// Warmup steps for a `warmup_ratio` as Hugging Face's `TrainingArguments.get_warmup_steps`
/// computes them: `ceil(ratio · total)` (so d1's `warmup_ratio` 0.0001 gives one step, not 0).
pub fn warmup_steps_from_ratio(ratio: f64, total: u64) -> Result<u64> {
    if !(0.0..=1.0).contains(&ratio) {
        bail!("warmup_ratio must be in [0, 1], found {ratio}");
    }
    Ok((ratio * total as f64).ceil() as u64)
}

/// A learning-rate multiplier as a function of the number of optimizer steps taken so far
/// (what HF's `LambdaLR` passes to its lambda: 0 for the first update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Schedule {
    /// Factor 1.
    #[default]
    Constant,
    /// `get_constant_schedule_with_warmup`: linear from 0 to 1 over `warmup` steps, then 1.
    ConstantWithWarmup {
        /// Warmup steps.
        warmup: u64,
    },
    /// `get_linear_schedule_with_warmup`: linear warmup from 0, then linear decay to 0 at
    /// `total`.
    Linear {
        /// Warmup steps.
        warmup: u64,
        /// Total training steps.
        total: u64,
    },
    /// `get_cosine_schedule_with_warmup` (half a cosine, `num_cycles = 0.5`); with
    /// `min_ratio > 0` the HF `cosine_with_min_lr` variant (`factor * (1 - r) + r`).
    Cosine {
        /// Warmup steps.
        warmup: u64,
        /// Total training steps.
        total: u64,
        /// Floor of the decayed factor (0: plain cosine to 0).
        #[serde(default)]
        min_ratio: f64,
    },
}

impl Schedule {
    /// The names [`Schedule::parse`] accepts.
    pub const NAMES: &'static [&'static str] =
        &["constant", "constant_with_warmup", "linear", "cosine"];

    /// Builds a schedule from its name and numbers (`warmup` defaults to 0; `linear` and
    /// `cosine` need `total`; `min_ratio` only applies to `cosine`).
    pub fn parse(
        name: &str,
        warmup: Option<u64>,
        total: Option<u64>,
        min_ratio: Option<f64>,
    ) -> Result<Self> {
        let w = warmup.unwrap_or(0);
        let need_total = |n: &str| {
            total.ok_or_else(|| {
                anyhow!("schedule `{n}` needs total_steps (the number of optimizer steps)")
            })
        };
        let check = |total: u64| {
            if total == 0 {
                bail!("schedule `{name}`: total_steps must be > 0");
            }
            if w > total {
                bail!("schedule `{name}`: warmup ({w}) exceeds total_steps ({total})");
            }
            Ok(total)
        };
        if min_ratio.is_some() && name != "cosine" {
            bail!("min_lr_ratio only applies to the `cosine` schedule, not `{name}`");
        }
        Ok(match name {
            "constant" => {
                if w != 0 {
                    bail!("schedule `constant` takes no warmup; use `constant_with_warmup`");
                }
                Schedule::Constant
            }
            "constant_with_warmup" => Schedule::ConstantWithWarmup { warmup: w },
            "linear" => Schedule::Linear {
                warmup: w,
                total: check(need_total(name)?)?,
            },
            "cosine" => {
                let r = min_ratio.unwrap_or(0.0);
                if !(0.0..=1.0).contains(&r) {
                    bail!("schedule `cosine`: min_lr_ratio must be in [0, 1], found {r}");
                }
                Schedule::Cosine {
                    warmup: w,
                    total: check(need_total(name)?)?,
                    min_ratio: r,
                }
            }
            _ => bail!(
                "unknown schedule `{name}`; expected one of: {}",
                Self::NAMES.join(", ")
            ),
        })
    }

    /// The multiplier of the base learning rate after `step` optimizer steps (HF's lambdas).
    pub fn factor(&self, step: u64) -> f64 {
        let s = step as f64;
        let warm = |w: u64| s / (w.max(1) as f64);
        match *self {
            Schedule::Constant => 1.0,
            Schedule::ConstantWithWarmup { warmup } => {
                if step < warmup {
                    warm(warmup)
                } else {
                    1.0
                }
            }
            Schedule::Linear { warmup, total } => {
                if step < warmup {
                    warm(warmup)
                } else {
                    let rem = total as f64 - s;
                    (rem / (total.saturating_sub(warmup).max(1) as f64)).max(0.0)
                }
            }
            Schedule::Cosine {
                warmup,
                total,
                min_ratio,
            } => {
                if step < warmup {
                    return warm(warmup);
                }
                let progress = (s - warmup as f64) / (total.saturating_sub(warmup).max(1) as f64);
                let f = 0.5 * (1.0 + (std::f64::consts::PI * 0.5 * 2.0 * progress).cos());
                if min_ratio > 0.0 {
                    (f * (1.0 - min_ratio) + min_ratio).max(0.0)
                } else {
                    f.max(0.0)
                }
            }
        }
    }
}

/// What one [`AdamW`] step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    /// Optimizer steps taken so far, this one included (unchanged when skipped).
    pub step: u64,
    /// The learning rate used (or that would have been used, when skipped).
    pub lr: f64,
    /// Global L2 norm of the (accumulated) gradients before clipping; NaN/Inf when not finite.
    pub grad_norm: f64,
    /// Whether the update was skipped because of a non-finite loss or gradient.
    pub skipped: bool,
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    acc: Option<Tensor>,
}

/// AdamW over named variables, with gradient accumulation, global-norm clipping, a learning-rate
/// schedule and a non-finite guard.
pub struct AdamW {
    slots: Vec<Slot>,
    config: AdamWConfig,
    schedule: Schedule,
    step: u64,
    accumulated: usize,
    bad_loss: Option<f64>,
}

impl std::fmt::Debug for AdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("vars", &self.slots.len())
            .field("config", &self.config)
            .field("schedule", &self.schedule)
            .field("step", &self.step)
            .finish()
    }
}

fn nonfinite_kind(x: f64) -> &'static str {
    if x.is_nan() {
        "NaN"
    } else {
        "Inf"
    }
}

impl AdamW {
    /// An optimizer over `vars` (names must be unique and non-empty), with zeroed moments.
    pub fn new(vars: Vec<(String, Var)>, config: AdamWConfig, schedule: Schedule) -> Result<Self> {
        config.validate()?;
        if vars.is_empty() {
            bail!("AdamW: no variables to optimize");
        }
        let mut seen = std::collections::HashSet::new();
        let mut slots = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            if !seen.insert(name.clone()) {
                bail!("AdamW: variable name `{name}` appears twice");
            }
            if !var.dtype().is_float() {
                bail!(
                    "AdamW: variable `{name}` has dtype {:?}; only float variables can be trained",
                    var.dtype()
                );
            }
            let m = Tensor::zeros(var.shape(), DType::F32, var.device())?;
            let v = m.zeros_like()?;
            slots.push(Slot {
                name,
                var,
                m,
                v,
                acc: None,
            });
        }
        Ok(AdamW {
            slots,
            config,
            schedule,
            step: 0,
            accumulated: 0,
            bad_loss: None,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// The learning-rate schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Optimizer steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The variables' names, in order.
    pub fn var_names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.name.clone()).collect()
    }

    /// Micro-batches accumulated since the last step.
    pub fn accumulated(&self) -> usize {
        self.accumulated
    }

    /// The learning rate of the update taken after `step` steps: `lr * schedule.factor(step)`.
    pub fn lr_at(&self, step: u64) -> f64 {
        self.config.lr * self.schedule.factor(step)
    }

    /// The learning rate the next step will use.
    pub fn lr(&self) -> f64 {
        self.lr_at(self.step)
    }

    /// Sets the base learning rate (the schedule still multiplies it).
    pub fn set_lr(&mut self, base: f64) -> Result<()> {
        if !(base.is_finite() && base >= 0.0) {
            bail!("AdamW: lr must be a finite number >= 0, found {base}");
        }
        self.config.lr = base;
        Ok(())
    }

    /// Sets (or removes, with `None`) the gradient-norm clipping threshold.
    pub fn set_max_grad_norm(&mut self, max: Option<f64>) -> Result<()> {
        let mut c = self.config.clone();
        c.max_grad_norm = max;
        c.validate()?;
        self.config = c;
        Ok(())
    }

    /// Adds the gradients of the optimizer's variables in `grads` to the f32 accumulation
    /// buffers (a variable without a gradient contributes zero). Gradients are summed.
    pub fn accumulate(&mut self, grads: &GradStore) -> Result<()> {
        let mut new = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                new.push(s.acc.clone());
                continue;
            };
            if g.dims() != s.var.dims() {
                bail!(
                    "gradient of {} has shape {:?}, the variable {:?}",
                    s.name,
                    g.dims(),
                    s.var.dims()
                );
            }
            let g = g.detach().to_dtype(DType::F32)?;
            let g = if g.device().same_device(s.var.device()) {
                g
            } else {
                g.to_device(s.var.device())?
            };
            new.push(Some(match &s.acc {
                Some(a) => (a + g)?,
                None => g,
            }));
        }
        for (s, a) in self.slots.iter_mut().zip(new) {
            s.acc = a;
        }
        self.accumulated += 1;
        Ok(())
    }

    /// [`AdamW::accumulate`], also checking the micro-batch `loss`: a non-finite loss makes the
    /// next step fail (or skip, per [`OnNonFinite`]).
    pub fn accumulate_with_loss(&mut self, grads: &GradStore, loss: f64) -> Result<()> {
        self.accumulate(grads)?;
        if !loss.is_finite() && self.bad_loss.is_none() {
            self.bad_loss = Some(loss);
        }
        Ok(())
    }

    /// Drops the accumulated gradients.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.acc = None;
        }
        self.accumulated = 0;
        self.bad_loss = None;
    }

    /// Takes one step from the accumulated gradients and clears them.
    pub fn step(&mut self) -> Result<StepInfo> {
        self.step_checked(None)
    }

    /// [`AdamW::accumulate`] then [`AdamW::step`].
    pub fn step_with(&mut self, grads: &GradStore) -> Result<StepInfo> {
        self.accumulate(grads)?;
        self.step_checked(None)
    }

    /// [`AdamW::step_with`], also checking `loss`.
    pub fn step_with_loss(&mut self, grads: &GradStore, loss: f64) -> Result<StepInfo> {
        self.accumulate(grads)?;
        self.step_checked(Some(loss))
    }

    /// Takes one step from the accumulated gradients, checking `loss` (if given), any loss
    /// noted by [`AdamW::accumulate_with_loss`] and every gradient first. On a non-finite value
    /// nothing is changed but the accumulation buffers, which are dropped.
    pub fn step_checked(&mut self, loss: Option<f64>) -> Result<StepInfo> {
        if self.accumulated == 0 {
            bail!(
                "step {}: no gradients accumulated since the last step",
                self.step + 1
            );
        }
        let result = self.step_inner(loss);
        self.zero_grad();
        result
    }

    fn step_inner(&mut self, loss: Option<f64>) -> Result<StepInfo> {
        let next = self.step + 1;
        let lr = self.lr_at(self.step);
        // Per-variable squared norms in f64 (finite f32 values cannot overflow there), fetched in
        // one transfer.
        let mut sq = Vec::with_capacity(self.slots.len());
        let mut have = Vec::with_capacity(self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(a) = &s.acc {
                sq.push(a.to_dtype(DType::F64)?.sqr()?.sum_all()?);
                have.push(i);
            }
        }
        let sq: Vec<f64> = match sq.first() {
            None => Vec::new(),
            Some(first) if sq.iter().all(|t| t.device().same_device(first.device())) => {
                Tensor::stack(&sq, 0)?.to_vec1::<f64>()?
            }
            Some(_) => sq
                .iter()
                .map(|t| t.to_scalar::<f64>())
                .collect::<candle_core::Result<_>>()?,
        };
        let norm = sq.iter().sum::<f64>().sqrt();
        let bad_loss = loss.filter(|l| !l.is_finite()).or(self.bad_loss);
        let bad_grad = have
            .iter()
            .zip(&sq)
            .find(|(_, x)| !x.is_finite())
            .map(|(i, x)| (self.slots[*i].name.clone(), *x));
        if bad_loss.is_some() || bad_grad.is_some() {
            if self.config.on_nonfinite == OnNonFinite::Skip {
                return Ok(StepInfo {
                    step: self.step,
                    lr,
                    grad_norm: norm,
                    skipped: true,
                });
            }
            let what = match (bad_loss, bad_grad) {
                (Some(l), _) => format!("loss is not finite ({l})"),
                (None, Some((name, x))) => {
                    format!("gradient of {name} is not finite ({})", nonfinite_kind(x))
                }
                (None, None) => unreachable!(),
            };
            bail!("step {next}: {what}; weights and optimizer state were left unchanged (on_nonfinite: \"skip\" skips such steps)");
        }
        let clip = match self.config.max_grad_norm {
            Some(max) => (max / (norm + 1e-6)).min(1.0),
            None => 1.0,
        };
        let c = &self.config;
        let bc1 = 1.0 - c.beta1.powf(next as f64);
        let bc2 = 1.0 - c.beta2.powf(next as f64);
        let step_size = lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        let decay = 1.0 - lr * c.weight_decay;
        // Compute everything first, then write, so an error leaves every variable untouched.
        let mut updates = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let g = match &s.acc {
                Some(a) if clip < 1.0 => a.affine(clip, 0.0)?,
                Some(a) => a.clone(),
                None => s.m.zeros_like()?,
            };
            let m = (s.m.affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?;
            let v = (s.v.affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
            let denom = v.sqrt()?.affine(1.0 / bc2_sqrt, c.eps)?;
            let upd = m.div(&denom)?.affine(step_size, 0.0)?;
            let work = if s.var.dtype() == DType::F64 {
                DType::F64
            } else {
                DType::F32
            };
            let p = s.var.as_tensor().detach().to_dtype(work)?;
            let p = if c.weight_decay != 0.0 {
                p.affine(decay, 0.0)?
            } else {
                p
            };
            let p = (p - upd.to_dtype(work)?)?.to_dtype(s.var.dtype())?;
            updates.push((m, v, p));
        }
        for (s, (m, v, p)) in self.slots.iter_mut().zip(updates) {
            s.var
                .set(&p)
                .with_context(|| format!("step {next}: updating {}", s.name))?;
            s.m = m;
            s.v = v;
        }
        self.step = next;
        Ok(StepInfo {
            step: next,
            lr,
            grad_norm: norm,
            skipped: false,
        })
    }

    /// The moments for a checkpoint: `exp_avg.<name>` and `exp_avg_sq.<name>` (f32).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            out.push((format!("exp_avg.{}", s.name), s.m.clone()));
            out.push((format!("exp_avg_sq.{}", s.name), s.v.clone()));
        }
        out
    }

    /// Step count, config, schedule and variable names for a checkpoint.
    pub fn state_json(&self) -> Value {
        json!({
            "optimizer": "adamw",
            "step": self.step,
            "config": self.config,
            "schedule": self.schedule,
            "var_names": self.var_names(),
        })
    }

    /// Restores a state written by [`AdamW::state_tensors`] and [`AdamW::state_json`]: moments,
    /// step count, config and schedule (the checkpoint's replace the current ones). Variable
    /// names and shapes must match; pending accumulated gradients are dropped. Nothing changes
    /// on error.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, json: &Value) -> Result<()> {
        let kind = json.get("optimizer").and_then(Value::as_str);
        if kind != Some("adamw") {
            bail!("optimizer state: expected \"optimizer\": \"adamw\", found {kind:?}");
        }
        let step = json
            .get("step")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("optimizer state: missing or invalid \"step\""))?;
        let config: AdamWConfig = serde_json::from_value(
            json.get("config")
                .cloned()
                .ok_or_else(|| anyhow!("optimizer state: missing \"config\""))?,
        )
        .context("optimizer state: invalid \"config\"")?;
        config.validate()?;
        let schedule: Schedule = serde_json::from_value(
            json.get("schedule")
                .cloned()
                .ok_or_else(|| anyhow!("optimizer state: missing \"schedule\""))?,
        )
        .context("optimizer state: invalid \"schedule\"")?;
        if let Some(names) = json.get("var_names") {
            let saved: Vec<String> = serde_json::from_value(names.clone())
                .context("optimizer state: invalid \"var_names\"")?;
            let mine = self.var_names();
            if saved != mine {
                let missing: Vec<&String> = mine.iter().filter(|n| !saved.contains(n)).collect();
                let extra: Vec<&String> = saved.iter().filter(|n| !mine.contains(n)).collect();
                bail!(
                    "optimizer state was saved for other variables: {} saved, {} here; missing from the state: {missing:?}; not in this optimizer: {extra:?}",
                    saved.len(),
                    mine.len()
                );
            }
        }
        let mut expected = std::collections::HashSet::new();
        let mut loaded = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let mut pair = Vec::with_capacity(2);
            for prefix in ["exp_avg", "exp_avg_sq"] {
                let key = format!("{prefix}.{}", s.name);
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| anyhow!("optimizer state: tensor `{key}` is missing"))?;
                if t.dims() != s.var.dims() {
                    bail!(
                        "optimizer state: `{key}` has shape {:?}, the variable {:?}",
                        t.dims(),
                        s.var.dims()
                    );
                }
                pair.push(t.to_dtype(DType::F32)?.to_device(s.var.device())?);
                expected.insert(key);
            }
            let v = pair.pop().unwrap();
            let m = pair.pop().unwrap();
            loaded.push((m, v));
        }
        let mut unknown: Vec<&String> = tensors.keys().filter(|k| !expected.contains(*k)).collect();
        if !unknown.is_empty() {
            unknown.sort();
            bail!("optimizer state: unexpected tensors {unknown:?}");
        }
        for (s, (m, v)) in self.slots.iter_mut().zip(loaded) {
            s.m = m;
            s.v = v;
        }
        self.step = step;
        self.config = config;
        self.schedule = schedule;
        self.zero_grad();
        Ok(())
    }
}

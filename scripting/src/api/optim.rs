//! Rhai bindings for `workbench_core::train::optim`: the `Optimizer` type (AdamW with clipping,
//! accumulation, a learning-rate schedule and a non-finite guard).

use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Var};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::train::optim::{AdamW, StepInfo};
use workbench_core::train::options::AdamWOptions;

use super::convert::{err, fail, options, script_err, to_script, RResult};
use super::model::ScriptModel;
use super::tensor::{ScriptGrads, ScriptTensor};

/// An AdamW optimizer shared by every copy of the script value.
#[derive(Clone)]
pub struct ScriptOptimizer(pub Arc<Mutex<AdamW>>);

impl ScriptOptimizer {
    /// Locks the optimizer.
    pub fn lock(&self) -> RResult<MutexGuard<'_, AdamW>> {
        self.0
            .lock()
            .map_err(|_| err("optimizer is unusable: an earlier call panicked"))
    }
}

fn build(vars: Vec<(String, Var)>, opts: &Map) -> RResult<ScriptOptimizer> {
    let o: AdamWOptions = options("adamw", opts.clone())?;
    let (config, schedule) = o.to_config().map_err(fail("adamw"))?;
    let opt = AdamW::new(vars, config, schedule).map_err(script_err)?;
    Ok(ScriptOptimizer(Arc::new(Mutex::new(opt))))
}

fn param_vars(params: &Array) -> RResult<Vec<(String, Var)>> {
    if params.is_empty() {
        return Err(err("adamw(): the array of parameters is empty"));
    }
    params
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let t = d.clone().try_cast::<ScriptTensor>().ok_or_else(|| {
                err(format!(
                    "adamw(): element {i} must be a parameter Tensor, found {}",
                    d.type_name()
                ))
            })?;
            let v = t.var.ok_or_else(|| {
                err(format!(
                    "adamw(): element {i} is a plain tensor, not a parameter; make it with param()"
                ))
            })?;
            Ok((format!("param.{i}"), v))
        })
        .collect()
}

fn model_vars(m: &ScriptModel) -> RResult<Vec<(String, Var)>> {
    let vars = m.model.trainable_vars();
    if vars.is_empty() {
        return Err(err(
            "model has no trainable parameters: add LoRA adapters or load it trainable",
        ));
    }
    Ok(vars)
}

fn loss_value(loss: &ScriptTensor) -> RResult<f64> {
    if loss.t.elem_count() != 1 {
        return Err(err(format!(
            "loss must have one element, found shape {:?}",
            loss.t.dims()
        )));
    }
    loss.t
        .flatten_all()
        .and_then(|t| t.to_dtype(DType::F64))
        .and_then(|t| t.to_vec1::<f64>())
        .map(|v| v[0])
        .map_err(script_err)
}

fn info_map(i: StepInfo) -> Map {
    to_script(i)
        .ok()
        .and_then(|d| d.try_cast())
        .unwrap_or_default()
}

#[export_module]
mod optim_api {
    use super::*;

    /// AdamW over an array of parameters made with `param()` (named `param.0`, `param.1`, ...).
    ///
    /// Options (all optional): `lr` (1e-3), `betas` ([0.9, 0.999]), `eps` (1e-8),
    /// `weight_decay` (0.01, decoupled), `max_grad_norm` (clip the global gradient norm; none by
    /// default), `schedule` (`"constant"`, `"constant_with_warmup"`, `"linear"`, `"cosine"`, as
    /// the Hugging Face schedules), `warmup` (steps), `total_steps` (for linear and cosine),
    /// `min_lr_ratio` (cosine floor), `on_nonfinite` (`"error"` or `"skip"`).
    /// Example: `let opt = adamw([w, b], #{ lr: 0.01, max_grad_norm: 1.0 });`
    #[rhai_fn(name = "adamw", return_raw)]
    pub fn adamw_params(params: Array, opts: Map) -> RResult<ScriptOptimizer> {
        build(param_vars(&params)?, &opts)
    }
    /// AdamW with default settings over an array of parameters made with `param()`.
    #[rhai_fn(name = "adamw", return_raw)]
    pub fn adamw_params_default(params: Array) -> RResult<ScriptOptimizer> {
        build(param_vars(&params)?, &Map::new())
    }
    /// AdamW over a model's trainable parameters (LoRA adapters or a model loaded trainable);
    /// options as for `adamw(params, opts)`.
    #[rhai_fn(name = "adamw", return_raw)]
    pub fn adamw_model(model: ScriptModel, opts: Map) -> RResult<ScriptOptimizer> {
        build(model_vars(&model)?, &opts)
    }
    /// AdamW with default settings over a model's trainable parameters.
    #[rhai_fn(name = "adamw", return_raw)]
    pub fn adamw_model_default(model: ScriptModel) -> RResult<ScriptOptimizer> {
        build(model_vars(&model)?, &Map::new())
    }

    /// One update from `grads` (plus anything accumulated); returns
    /// `#{ step, lr, grad_norm, skipped }` with the pre-clip gradient norm. A NaN/Inf gradient
    /// fails (or skips, with `on_nonfinite: "skip"`) without touching the weights.
    #[rhai_fn(name = "step", return_raw)]
    pub fn step(opt: &mut ScriptOptimizer, grads: ScriptGrads) -> RResult<Map> {
        let mut o = opt.lock()?;
        o.step_with(&grads.0).map(info_map).map_err(script_err)
    }
    /// One update from `grads`, also checking that the loss tensor is finite.
    #[rhai_fn(name = "step", return_raw)]
    pub fn step_loss_t(
        opt: &mut ScriptOptimizer,
        grads: ScriptGrads,
        loss: ScriptTensor,
    ) -> RResult<Map> {
        let l = loss_value(&loss)?;
        let mut o = opt.lock()?;
        o.step_with_loss(&grads.0, l)
            .map(info_map)
            .map_err(script_err)
    }
    /// One update from `grads`, also checking that the loss value is finite.
    #[rhai_fn(name = "step", return_raw)]
    pub fn step_loss_f(opt: &mut ScriptOptimizer, grads: ScriptGrads, loss: f64) -> RResult<Map> {
        let mut o = opt.lock()?;
        o.step_with_loss(&grads.0, loss)
            .map(info_map)
            .map_err(script_err)
    }
    /// Adds `grads` to the accumulated gradients (summed: scale each micro-batch loss by
    /// 1/micro-batches to average); `apply()` then takes the step.
    #[rhai_fn(name = "accumulate", return_raw)]
    pub fn accumulate(opt: &mut ScriptOptimizer, grads: ScriptGrads) -> RResult<()> {
        let mut o = opt.lock()?;
        o.accumulate(&grads.0).map_err(script_err)
    }
    /// Adds `grads` to the accumulated gradients and checks the micro-batch loss tensor: a
    /// non-finite loss makes the next `apply()` fail (or skip).
    #[rhai_fn(name = "accumulate", return_raw)]
    pub fn accumulate_loss_t(
        opt: &mut ScriptOptimizer,
        grads: ScriptGrads,
        loss: ScriptTensor,
    ) -> RResult<()> {
        let l = loss_value(&loss)?;
        let mut o = opt.lock()?;
        o.accumulate_with_loss(&grads.0, l).map_err(script_err)
    }
    /// Adds `grads` to the accumulated gradients and checks the micro-batch loss value.
    #[rhai_fn(name = "accumulate", return_raw)]
    pub fn accumulate_loss_f(
        opt: &mut ScriptOptimizer,
        grads: ScriptGrads,
        loss: f64,
    ) -> RResult<()> {
        let mut o = opt.lock()?;
        o.accumulate_with_loss(&grads.0, loss).map_err(script_err)
    }
    /// One update from the accumulated gradients, which are then cleared; returns
    /// `#{ step, lr, grad_norm, skipped }`.
    #[rhai_fn(name = "apply", return_raw)]
    pub fn apply(opt: &mut ScriptOptimizer) -> RResult<Map> {
        let mut o = opt.lock()?;
        o.step().map(info_map).map_err(script_err)
    }
    /// Drops the accumulated gradients without stepping.
    #[rhai_fn(name = "zero_grad", return_raw)]
    pub fn zero_grad(opt: &mut ScriptOptimizer) -> RResult<()> {
        opt.lock()?.zero_grad();
        Ok(())
    }
    /// The learning rate the next step will use (base lr times the schedule's factor).
    #[rhai_fn(get = "lr", pure, return_raw)]
    pub fn lr(opt: &mut ScriptOptimizer) -> RResult<f64> {
        Ok(opt.lock()?.lr())
    }
    /// The learning rate of the update taken after `step` steps.
    #[rhai_fn(name = "lr_at", return_raw)]
    pub fn lr_at(opt: &mut ScriptOptimizer, step: i64) -> RResult<f64> {
        let s = u64::try_from(step)
            .map_err(|_| err(format!("lr_at(): step must be >= 0, found {step}")))?;
        Ok(opt.lock()?.lr_at(s))
    }
    /// Sets the base learning rate (the schedule still multiplies it).
    #[rhai_fn(name = "set_lr", return_raw)]
    pub fn set_lr(opt: &mut ScriptOptimizer, lr: f64) -> RResult<()> {
        opt.lock()?.set_lr(lr).map_err(script_err)
    }
    /// Optimizer steps taken so far.
    #[rhai_fn(get = "step_count", pure, return_raw)]
    pub fn step_count(opt: &mut ScriptOptimizer) -> RResult<i64> {
        Ok(opt.lock()?.step_count() as i64)
    }
    /// The names of the optimized parameters.
    #[rhai_fn(get = "param_names", pure, return_raw)]
    pub fn param_names(opt: &mut ScriptOptimizer) -> RResult<Array> {
        Ok(opt
            .lock()?
            .var_names()
            .into_iter()
            .map(Dynamic::from)
            .collect())
    }
    /// A one-line summary: parameter count, step, lr and schedule.
    #[rhai_fn(name = "to_string", pure, return_raw)]
    pub fn to_string(opt: &mut ScriptOptimizer) -> RResult<String> {
        let o = opt.lock()?;
        Ok(format!(
            "AdamW({} params, step {}, lr {:e}, {:?})",
            o.var_names().len(),
            o.step_count(),
            o.lr(),
            o.schedule()
        ))
    }
    /// Same as `to_string` (used by `print` and `debug`).
    #[rhai_fn(name = "to_debug", pure, return_raw)]
    pub fn to_debug(opt: &mut ScriptOptimizer) -> RResult<String> {
        to_string(opt)
    }
}

/// Registers `Optimizer` and `adamw`.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptOptimizer>("Optimizer");
    engine.register_global_module(exported_module!(optim_api).into());
}

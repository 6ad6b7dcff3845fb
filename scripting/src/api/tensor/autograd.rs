//! Autograd from scripts: `param` (a trainable variable), `backward` (through checkpointed
//! model blocks too), `Grads` and the global gradient norm over the parameters.

use std::sync::{Arc, Mutex};

use candle_core::{backprop::GradStore, DType, Tensor, Var};
use rhai::plugin::*;
use rhai::Engine;

use super::ScriptTensor;
use crate::api::convert::{err, script_err, IntoScript, RResult};

/// Ids of every parameter scripts created (via `param` or a trainable model), so gradient
/// norms cover parameters only, not the intermediate tensors candle also keeps gradients for.
static PARAM_IDS: std::sync::LazyLock<Mutex<std::collections::HashSet<candle_core::TensorId>>> =
    std::sync::LazyLock::new(|| Mutex::new(std::collections::HashSet::new()));

/// Records `t` as a trainable parameter for [`ScriptGrads`] norms.
pub fn register_param(t: &Tensor) {
    if let Ok(mut ids) = PARAM_IDS.lock() {
        ids.insert(t.id());
    }
}

/// Gradients from `loss.backward()`.
#[derive(Clone)]
pub struct ScriptGrads(pub Arc<GradStore>);

#[export_module]
mod autograd_api {
    use super::*;

    /// A trainable variable initialised from `t` (f32/f64); gradients reach it through `backward`.
    #[rhai_fn(return_raw)]
    pub fn param(a: ScriptTensor) -> RResult<ScriptTensor> {
        let t = if a.t.dtype().is_float() {
            a.t.clone()
        } else {
            a.t.to_dtype(DType::F32).map_err(script_err)?
        };
        let v = Var::from_tensor(&t).map_err(script_err)?;
        register_param(v.as_tensor());
        Ok(ScriptTensor {
            t: v.as_tensor().clone(),
            var: Some(v),
        })
    }
    /// Overwrites a parameter in place with `value` (same shape).
    #[rhai_fn(name = "set", return_raw)]
    pub fn set_param(p: &mut ScriptTensor, value: ScriptTensor) -> RResult<()> {
        let Some(v) = &p.var else {
            return Err(err(
                "set(): only parameters made with param() can be updated in place",
            ));
        };
        let value = value.t.detach().to_dtype(v.dtype()).map_err(script_err)?;
        v.set(&value).map_err(|e| {
            err(format!(
                "set(): parameter {:?} cannot take {:?}: {e}",
                v.dims(),
                value.dims()
            ))
        })
    }
    /// Backpropagates from a one-element loss (through checkpointed model blocks too); returns
    /// the gradients of every parameter.
    #[rhai_fn(return_raw)]
    pub fn backward(loss: ScriptTensor) -> RResult<ScriptGrads> {
        if loss.t.elem_count() != 1 {
            return Err(err(format!(
                "backward(): loss must have one element, found shape {:?}",
                loss.t.dims()
            )));
        }
        workbench_core::model::remat::backward(&loss.t)
            .map(|g| ScriptGrads(Arc::new(g)))
            .map_err(script_err)
    }
    /// The gradient of parameter `p` (zeros if the loss does not depend on it).
    #[rhai_fn(index_get, return_raw)]
    pub fn grad_of(g: &mut ScriptGrads, p: ScriptTensor) -> RResult<ScriptTensor> {
        match g.0.get(&p.t) {
            Some(t) => Ok(ScriptTensor::new(t.clone())),
            None => p.t.zeros_like().script(),
        }
    }
    /// Global L2 norm of the gradients of all parameters.
    #[rhai_fn(return_raw)]
    pub fn norm(g: &mut ScriptGrads) -> RResult<f64> {
        let ids: Vec<candle_core::TensorId> = PARAM_IDS
            .lock()
            .map_err(script_err)?
            .iter()
            .copied()
            .collect();
        let mut total = 0.0f64;
        for id in ids {
            if let Some(t) = g.0.get_id(id) {
                let s = t
                    .to_dtype(DType::F64)
                    .and_then(|t| t.sqr())
                    .and_then(|t| t.sum_all())
                    .and_then(|t| t.to_scalar::<f64>())
                    .map_err(script_err)?;
                total += s;
            }
        }
        Ok(total.sqrt())
    }
}

/// Registers `Grads` and the autograd functions.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptGrads>("Grads");
    engine.register_global_module(exported_module!(autograd_api).into());
}

//! Trainable views of a `Model`: LoRA adapters (PEFT format), the reference policy, training
//! mode, activation checkpointing, merged export, and the parameter list an optimizer updates.

use std::path::Path;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::model::lora::{REFERENCE_TARGETS, TARGETS};
use workbench_core::model::LoraConfig;

use super::convert::{options, script_err, RResult};
use super::model::ScriptModel;
use super::tensor::ScriptTensor;

#[export_module]
mod adapters_api {
    use super::*;

    /// A copy of the model with fresh LoRA adapters (PEFT initialisation: `A` Kaiming-uniform,
    /// `B` zero) and a frozen base; weights are shared, not copied. Options (d1's defaults):
    /// `r` 128, `alpha` 64, `dropout` 0.05, `targets` (default q_proj k_proj v_proj up_proj,
    /// what the reference trainers' PEFT lists resolve to in LLaDA; any of q_proj k_proj v_proj
    /// attn_out ff_proj up_proj ff_out), `rslora` false, `seed` 0.
    #[rhai_fn(return_raw)]
    pub fn add_lora(m: &mut ScriptModel, opts: Map) -> RResult<ScriptModel> {
        let cfg: LoraConfig = options("add_lora", opts)?;
        let model = m.model.add_lora(&cfg).map_err(script_err)?;
        Ok(m.derived(model))
    }
    /// The linear layers of a LLaDA block that can carry a LoRA adapter, in block order (the
    /// names `add_lora`'s `targets` accepts): q_proj k_proj v_proj attn_out ff_proj up_proj ff_out.
    pub fn lora_layers() -> Array {
        TARGETS
            .iter()
            .map(|t| Dynamic::from(t.to_string()))
            .collect()
    }
    /// `add_lora`'s default targets, q_proj k_proj v_proj up_proj: the reference trainers (d1,
    /// IGPO, CJ-GRPO, MDPO) list PEFT's `q_proj k_proj v_proj o_proj up_proj down_proj gate_proj`,
    /// of which only these four exist in LLaDA.
    pub fn lora_default_targets() -> Array {
        REFERENCE_TARGETS
            .iter()
            .map(|t| Dynamic::from(t.to_string()))
            .collect()
    }
    /// Saves the adapters in PEFT's layout (`adapter_config.json`, `adapter_model.safetensors`)
    /// under `dir`, loadable with Python's `PeftModel.from_pretrained`.
    #[rhai_fn(return_raw)]
    pub fn save_adapters(m: &mut ScriptModel, dir: &str) -> RResult<()> {
        let base = m.dir.display().to_string();
        m.model
            .save_adapters(Path::new(dir), &base)
            .map_err(script_err)
    }
    /// A copy of the model carrying the PEFT adapters stored in `dir`.
    #[rhai_fn(return_raw)]
    pub fn load_adapters(m: &mut ScriptModel, dir: &str) -> RResult<ScriptModel> {
        let model = m.model.load_adapters(Path::new(dir)).map_err(script_err)?;
        Ok(m.derived(model))
    }
    /// A copy without adapters whose weights include them (`W + s·B·A`).
    #[rhai_fn(return_raw)]
    pub fn merge_adapters(m: &mut ScriptModel) -> RResult<ScriptModel> {
        let model = m.model.merge_adapters().map_err(script_err)?;
        Ok(m.derived(model))
    }
    /// Writes a full Hugging Face checkpoint (`config.json`, `model.safetensors`, adapters
    /// merged) to `dir`, copying the tokenizer files of the model's own directory.
    #[rhai_fn(return_raw)]
    pub fn save_pretrained(m: &mut ScriptModel, dir: &str) -> RResult<()> {
        let out = Path::new(dir);
        m.model.save_pretrained(out).map_err(script_err)?;
        workbench_core::tokenizer::Tokenizer::copy_files(&m.dir, out).map_err(script_err)
    }
    /// The reference policy: the same weights with adapters switched off (no extra memory).
    pub fn reference(m: &mut ScriptModel) -> ScriptModel {
        m.derived(m.model.with_adapters(false))
    }
    /// Switches this model value's adapters off (other copies are unaffected).
    pub fn disable_adapters(m: &mut ScriptModel) {
        *m = m.derived(m.model.with_adapters(false));
    }
    /// Switches this model value's adapters back on.
    pub fn enable_adapters(m: &mut ScriptModel) {
        *m = m.derived(m.model.with_adapters(true));
    }
    /// Training mode on/off for this model value (LoRA dropout active in training mode).
    pub fn train(m: &mut ScriptModel, on: bool) {
        *m = m.derived(m.model.with_training(on));
    }
    /// Per-block activation checkpointing on/off for this model value: forwards keep only
    /// block inputs and recompute the rest in `backward` (less memory, ~1 extra forward).
    pub fn checkpointing(m: &mut ScriptModel, on: bool) {
        *m = m.derived(m.model.with_checkpointing(on));
    }
    /// Seeds the LoRA dropout stream (`seed`, forwards already drawn = 0).
    pub fn seed_dropout(m: &mut ScriptModel, seed: i64) {
        let mut inner = (*m.model).clone();
        inner.set_dropout_state(seed as u64, 0);
        *m = m.derived(inner);
    }
    /// The trainable parameters (adapters, or every weight of a model loaded `trainable`) as
    /// parameter Tensors, in the optimizer's order.
    pub fn params(m: &mut ScriptModel) -> Array {
        m.model
            .trainable_vars()
            .into_iter()
            .map(|(_, v)| {
                Dynamic::from(ScriptTensor {
                    t: v.as_tensor().clone(),
                    var: Some(v),
                })
            })
            .collect()
    }
    /// Names of the trainable parameters (PEFT names for adapters).
    pub fn param_names(m: &mut ScriptModel) -> Array {
        m.model
            .trainable_vars()
            .into_iter()
            .map(|(n, _)| Dynamic::from(n))
            .collect()
    }
    /// Number of trainable scalars.
    pub fn num_trainable(m: &mut ScriptModel) -> i64 {
        m.model
            .trainable_vars()
            .iter()
            .map(|(_, v)| v.elem_count() as i64)
            .sum()
    }
    /// Whether the model has LoRA adapters and they are on.
    #[rhai_fn(get = "adapters_enabled")]
    pub fn adapters_enabled(m: &mut ScriptModel) -> bool {
        m.model.adapters_enabled()
    }
}

/// Registers the adapter and training-view functions.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(adapters_api).into());
}

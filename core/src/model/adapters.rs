//! Views and adapters of a loaded model: LoRA (add, save, load, merge), the adapter-off
//! reference view, training mode (LoRA dropout), activation checkpointing, trainable-variable
//! restore and checkpoint export. Every view shares the weights of the model it came from.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;

use super::llada::Block;
use super::llada::Llada;
use super::lora::{self, Adapter, LoraConfig, TARGETS};

/// LoRA adapters, reference views, training mode and activation checkpointing.
impl Llada {
    /// A copy with fresh PEFT-initialised adapters on `cfg.targets` of every block. The base
    /// weights are frozen (detached, no longer variables); only the adapters train. Weights are
    /// shared with `self`, not copied.
    pub fn add_lora(&self, cfg: &LoraConfig) -> Result<Llada> {
        cfg.validate()?;
        if self.lora.is_some() {
            anyhow::bail!(
                "the model already has LoRA adapters; merge or reload before adding new ones"
            );
        }
        let adapter_dtype = if self.dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let mut m = self.frozen();
        for block in &mut m.blocks {
            for (slot, lin) in block.linears_mut().into_iter().enumerate() {
                if !cfg.targets.iter().any(|t| t == TARGETS[slot]) {
                    continue;
                }
                let (out, inp) = lin.weight.dims2()?;
                lin.lora = Some(Adapter::new(
                    out,
                    inp,
                    cfg,
                    adapter_dtype,
                    &self.device,
                    &mut rng,
                )?);
            }
        }
        m.lora = Some(cfg.clone());
        m.adapters_on = true;
        Ok(m)
    }

    /// A copy whose weights are plain tensors (gradients no longer reach them).
    fn frozen(&self) -> Llada {
        let mut m = self.clone();
        m.wte = m.wte.detach();
        m.ln_f = m.ln_f.detach();
        m.head = m.head.detach();
        for block in &mut m.blocks {
            block.attn_norm = block.attn_norm.detach();
            block.ff_norm = block.ff_norm.detach();
            for lin in block.linears_mut() {
                lin.weight = lin.weight.detach();
            }
        }
        m.vars.clear();
        m
    }

    /// The adapter settings, if the model has adapters.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// Every adapter matrix by its PEFT name (`base_model.model.model.transformer.blocks.0.
    /// q_proj.lora_A.weight`, …), in block then layer order, `A` before `B`.
    pub fn adapter_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            for (slot, lin) in block.linears().into_iter().enumerate() {
                if let Some(ad) = &lin.lora {
                    out.push((lora::peft_key(i, TARGETS[slot], "lora_A"), ad.a.clone()));
                    out.push((lora::peft_key(i, TARGETS[slot], "lora_B"), ad.b.clone()));
                }
            }
        }
        out
    }

    /// The same weights with adapters switched on or off: `with_adapters(false)` is the
    /// reference policy of LoRA training at no extra memory.
    pub fn with_adapters(&self, on: bool) -> Llada {
        let mut m = self.clone();
        m.adapters_on = on;
        m
    }

    /// Whether adapters (if any) apply in this view.
    pub fn adapters_enabled(&self) -> bool {
        self.adapters_on && self.lora.is_some()
    }

    /// The same weights with per-block activation checkpointing on or off: block inputs are
    /// kept, everything inside a block is recomputed during [`crate::model::remat::backward`].
    pub fn with_checkpointing(&self, on: bool) -> Llada {
        let mut m = self.clone();
        m.checkpointing = on;
        m
    }

    /// Whether [`Llada::forward_hidden`] checkpoints activations.
    pub fn checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// The same weights in training mode (LoRA dropout active) or evaluation mode. Views of one
    /// model share the stream of dropout keys.
    pub fn with_training(&self, on: bool) -> Llada {
        let mut m = self.clone();
        m.training = on;
        m
    }

    /// Whether LoRA dropout is active.
    pub fn training(&self) -> bool {
        self.training
    }

    /// `(seed, forwards drawn)` of the dropout stream, for checkpoints.
    pub fn dropout_state(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (
            self.dropout.seed,
            self.dropout.counter.load(Ordering::Relaxed),
        )
    }

    /// Restores (or seeds) the dropout stream; affects every view of this model made after the
    /// call and this one.
    pub fn set_dropout_state(&mut self, seed: u64, drawn: u64) {
        use std::sync::atomic::Ordering;
        self.dropout.seed = seed;
        self.dropout.counter.store(drawn, Ordering::Relaxed);
    }

    /// Overwrites adapter (or full-finetuning) variables from `tensors` by name; every trainable
    /// variable must be present with its shape, and no unknown names are accepted.
    pub fn set_trainable(&self, tensors: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        let vars = self.trainable_vars();
        let known: std::collections::HashSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        if let Some(extra) = tensors.keys().find(|k| !known.contains(k.as_str())) {
            anyhow::bail!("unexpected tensor `{extra}`: the model has no such trainable variable");
        }
        for (name, var) in &vars {
            let t = tensors
                .get(name)
                .with_context(|| format!("missing tensor `{name}`"))?;
            if t.dims() != var.dims() {
                anyhow::bail!(
                    "tensor `{name}` has shape {:?}, the model expects {:?}",
                    t.dims(),
                    var.dims()
                );
            }
            var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        }
        Ok(())
    }

    /// Saves the adapters in PEFT's layout under `dir` (`adapter_config.json`,
    /// `adapter_model.safetensors`); `base_model` is recorded as `base_model_name_or_path`.
    pub fn save_adapters(&self, dir: &Path, base_model: &str) -> Result<()> {
        let cfg = self
            .lora
            .as_ref()
            .context("the model has no LoRA adapters to save")?;
        let tensors = self
            .adapter_vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().detach()))
            .collect();
        lora::save_peft(dir, cfg, base_model, self.cfg.n_layers, &tensors)
    }

    /// A copy carrying the PEFT adapters stored in `dir` (names and shapes checked).
    pub fn load_adapters(&self, dir: &Path) -> Result<Llada> {
        let (cfg, tensors) = lora::load_peft(dir)?;
        let m = self.add_lora(&cfg)?;
        m.set_trainable(&tensors)
            .with_context(|| format!("adapters in {} do not fit this model", dir.display()))?;
        Ok(m)
    }

    /// A copy without adapters whose weights are `W + s·B·A` (the adapters' effect baked in).
    pub fn merge_adapters(&self) -> Result<Llada> {
        if self.lora.is_none() {
            anyhow::bail!("the model has no LoRA adapters to merge");
        }
        let mut m = self.frozen();
        for block in &mut m.blocks {
            for lin in block.linears_mut() {
                if let Some(ad) = lin.lora.take() {
                    let w = lin.weight.to_dtype(ad.a.dtype())?;
                    lin.weight = (w + ad.merged_delta(ad.a.dtype())?)?.to_dtype(self.dtype)?;
                }
            }
        }
        m.lora = None;
        Ok(m)
    }

    /// Writes a full checkpoint in the Hugging Face layout (`config.json`, `model.safetensors`
    /// with the checkpoint's tensor names) into `dir`, each file atomically. Adapters, if any,
    /// are merged first.
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        if self.lora.is_some() {
            return self.merge_adapters()?.save_pretrained(dir);
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tensors: std::collections::HashMap<String, Tensor> = self
            .named_weights()
            .into_iter()
            .map(|(n, t)| Ok((n, t.detach().to_device(&Device::Cpu)?.contiguous()?)))
            .collect::<Result<_>>()?;
        crate::fsio::write_atomic_with(&dir.join("model.safetensors"), |tmp| {
            Ok(candle_core::safetensors::save(&tensors, tmp)?)
        })?;
        let json = serde_json::to_string_pretty(&self.cfg)?;
        crate::fsio::write_atomic(&dir.join("config.json"), json.as_bytes())
    }

    /// The transformer blocks (for activation checkpointing).
    pub(crate) fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The final norm weight and epsilon.
    pub(crate) fn final_norm(&self) -> (&Tensor, f64) {
        (&self.ln_f, self.cfg.rms_norm_eps)
    }
}

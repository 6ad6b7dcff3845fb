//! LoRA adapters (Hu et al. 2021) on LLaDA's linear layers, stored and named as Hugging Face PEFT
//! stores them, so adapters move between workbench and Python's `peft` unchanged.
//!
//! A target linear `y = x Wᵀ` becomes `y = x Wᵀ + s · dropout(x) Aᵀ Bᵀ` with `A` [r, in],
//! `B` [out, r] and `s = alpha / r` (`alpha / √r` with rsLoRA). As in PEFT, `A` starts
//! Kaiming-uniform (bound `1/√in`) and `B` at zero, so a fresh adapter leaves the model unchanged.
//! Adapters are f32 (f64 when the model computes in f64) whatever the base dtype: the frozen base
//! stays in its compute dtype (bf16 on CUDA) and the adapter path upcasts its input.
//!
//! Dropout masks are drawn on the host from `(seed, forward key, layer, slot)`, so a forward pass
//! is reproducible from its key — which is what lets activation checkpointing recompute a block
//! with the very masks of the original pass.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::fsio;

/// The linear layers of a LLaDA block that can carry an adapter, in block order.
pub const TARGETS: [&str; 7] = [
    "q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out",
];

/// The layers the reference trainers adapt. d1, IGPO, CJ-GRPO and MDPO all list PEFT's
/// `q_proj k_proj v_proj o_proj up_proj down_proj gate_proj` (e.g. d1 `diffu-grpo/train.py`);
/// of those only q, k, v and up exist in LLaDA (its others are `attn_out`, `ff_proj`,
/// `ff_out`), so PEFT adapts exactly these four.
pub const REFERENCE_TARGETS: [&str; 4] = ["q_proj", "k_proj", "v_proj", "up_proj"];

/// Layer names that also end another module's name in a LLaDA checkpoint: the untied LM head
/// is `model.transformer.ff_out`, so PEFT's suffix rule would match it with `ff_out`.
const AMBIGUOUS_TARGETS: [&str; 1] = ["ff_out"];

/// PEFT's prefix in front of a checkpoint tensor name.
const PEFT_PREFIX: &str = "base_model.model.";

/// What to adapt and how: rank, scaling, dropout and the target layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank r of the update.
    pub r: usize,
    /// Scaling numerator: the update is multiplied by `alpha / r`.
    pub alpha: f64,
    /// Dropout probability on the adapter's input (training mode only).
    pub dropout: f64,
    /// Layer names from [`TARGETS`].
    pub targets: Vec<String>,
    /// rsLoRA scaling `alpha / √r`.
    pub rslora: bool,
    /// Seed of the host generator that draws the initial `A` matrices.
    pub seed: u64,
}

impl Default for LoraConfig {
    /// d1's adapter: r 128, alpha 64, dropout 0.05 on the layers the reference trainers
    /// actually adapt, [`REFERENCE_TARGETS`] (all of [`TARGETS`] is an option).
    fn default() -> Self {
        LoraConfig {
            r: 128,
            alpha: 64.0,
            dropout: 0.05,
            targets: REFERENCE_TARGETS.iter().map(|s| s.to_string()).collect(),
            rslora: false,
            seed: 0,
        }
    }
}

impl LoraConfig {
    /// Checks rank, dropout and target names.
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 {
            bail!("LoRA rank r must be at least 1");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("LoRA dropout must be in [0, 1), found {}", self.dropout);
        }
        if self.targets.is_empty() {
            bail!(
                "LoRA targets are empty: name some of {}",
                TARGETS.join(", ")
            );
        }
        for t in &self.targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!(
                    "unknown LoRA target `{t}`: LLaDA's linear layers are {}",
                    TARGETS.join(", ")
                );
            }
        }
        Ok(())
    }

    /// The factor applied to `B A`.
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// PEFT's `target_modules` for these targets on a model of `n_layers` blocks: names PEFT
    /// resolves (exact name or suffix after a dot) to exactly the adapted modules. A layer
    /// whose name also ends another module's name (`ff_out`, the LM head's name) is listed
    /// once per block by its full name, `model.transformer.blocks.{i}.ff_out`.
    pub fn peft_target_modules(&self, n_layers: usize) -> Vec<String> {
        let mut out = Vec::new();
        for t in TARGETS
            .iter()
            .filter(|t| self.targets.iter().any(|x| x == *t))
        {
            if AMBIGUOUS_TARGETS.contains(t) {
                out.extend((0..n_layers).map(|i| format!("model.transformer.blocks.{i}.{t}")));
            } else {
                out.push(t.to_string());
            }
        }
        out
    }

    /// PEFT's `adapter_config.json` for these settings on a model of `n_layers` blocks.
    pub fn to_peft_json(&self, base_model: &str, n_layers: usize) -> serde_json::Value {
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": null,
            "base_model_name_or_path": base_model,
            "r": self.r,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": self.peft_target_modules(n_layers),
            "use_rslora": self.rslora,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "use_dora": false,
        })
    }

    /// Reads PEFT's `adapter_config.json`, rejecting settings this implementation does not
    /// reproduce (biases, DoRA, fan-in-fan-out storage, per-layer ranks).
    pub fn from_peft_json(v: &serde_json::Value, path: &Path) -> Result<LoraConfig> {
        let at = || path.display().to_string();
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        if let Some(t) = v.get("peft_type").and_then(|t| t.as_str()) {
            if t != "LORA" {
                bail!(
                    "{}: peft_type is {t}, only LORA adapters are supported",
                    at()
                );
            }
        }
        let r = num("r").with_context(|| format!("{}: missing numeric `r`", at()))? as usize;
        let alpha = num("lora_alpha").unwrap_or(8.0);
        let dropout = num("lora_dropout").unwrap_or(0.0);
        let targets: Vec<String> = match v.get("target_modules") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .with_context(|| format!("{}: target_modules must be strings", at()))?,
            Some(serde_json::Value::String(s)) => {
                bail!(
                    "{}: target_modules is a regex ({s:?}); list the layer names instead",
                    at()
                )
            }
            _ => bail!("{}: missing target_modules", at()),
        };
        // Per-block names (`model.transformer.blocks.{i}.ff_out`) name the layer `ff_out`.
        let mut layers: Vec<String> = Vec::new();
        for t in targets {
            let layer = match t.strip_prefix("model.transformer.blocks.") {
                Some(rest) => match rest.split_once('.') {
                    Some((i, name)) if i.parse::<usize>().is_ok() => name.to_string(),
                    _ => bail!(
                        "{}: target_modules entry {t:?} is not a block's layer",
                        at()
                    ),
                },
                None => t,
            };
            if !layers.contains(&layer) {
                layers.push(layer);
            }
        }
        let targets = layers;
        for (key, ok) in [
            ("bias", serde_json::json!("none")),
            ("fan_in_fan_out", serde_json::json!(false)),
            ("use_dora", serde_json::json!(false)),
        ] {
            if let Some(x) = v.get(key) {
                if !x.is_null() && *x != ok {
                    bail!("{}: {key} = {x} is not supported (expected {ok})", at());
                }
            }
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let Some(serde_json::Value::Object(m)) = v.get(key) {
                if !m.is_empty() {
                    bail!("{}: per-layer {key} is not supported", at());
                }
            }
        }
        let cfg = LoraConfig {
            r,
            alpha,
            dropout,
            targets,
            rslora: v
                .get("use_rslora")
                .and_then(|x| x.as_bool())
                .unwrap_or(false),
            seed: 0,
        };
        cfg.validate()
            .with_context(|| format!("{}: invalid adapter config", at()))?;
        Ok(cfg)
    }
}

/// One adapter: `A` [r, in], `B` [out, r], trainable.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Down-projection, [r, in].
    pub a: Var,
    /// Up-projection, [out, r].
    pub b: Var,
    /// `alpha / r` (or rsLoRA's `alpha / √r`).
    pub scale: f64,
    /// Input dropout probability.
    pub dropout: f64,
}

impl Adapter {
    /// A fresh PEFT-initialised adapter for a [out, in] weight.
    pub fn new<R: Rng>(
        out: usize,
        inp: usize,
        cfg: &LoraConfig,
        dtype: DType,
        device: &Device,
        rng: &mut R,
    ) -> Result<Adapter> {
        let bound = 1.0 / (inp as f64).sqrt();
        let a: Vec<f32> = (0..cfg.r * inp)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        let a = Tensor::from_vec(a, (cfg.r, inp), device)?.to_dtype(dtype)?;
        let b = Tensor::zeros((out, cfg.r), dtype, device)?;
        Ok(Adapter {
            a: Var::from_tensor(&a)?,
            b: Var::from_tensor(&b)?,
            scale: cfg.scale(),
            dropout: cfg.dropout,
        })
    }

    /// `s · dropout(x) Aᵀ Bᵀ` for `x` [rows, in], returned in `x`'s dtype. `dropout_key`
    /// (training mode) seeds the mask; `None` applies no dropout.
    pub fn delta(&self, x: &Tensor, dropout_key: Option<u64>) -> candle_core::Result<Tensor> {
        let dtype = self.a.dtype();
        let mut h = x.to_dtype(dtype)?;
        if let (Some(key), true) = (dropout_key, self.dropout > 0.0) {
            let keep = 1.0 - self.dropout;
            let mut rng = rand::rngs::StdRng::seed_from_u64(key);
            let mask: Vec<f32> = (0..h.elem_count())
                .map(|_| {
                    if rng.random::<f64>() < keep {
                        (1.0 / keep) as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            let mask = Tensor::from_vec(mask, h.dims(), h.device())?.to_dtype(dtype)?;
            h = (h * mask)?;
        }
        let y = crate::ops::matmul::linear(&h, self.a.as_tensor())?;
        let y = (crate::ops::matmul::linear(&y, self.b.as_tensor())? * self.scale)?;
        y.to_dtype(x.dtype())
    }

    /// The dense update `s · B A`, [out, in], in `dtype`.
    pub fn merged_delta(&self, dtype: DType) -> candle_core::Result<Tensor> {
        (self.b.as_tensor().matmul(self.a.as_tensor())? * self.scale)?.to_dtype(dtype)
    }
}

/// PEFT's tensor name for the adapter of `slot` in block `layer`: `which` is `lora_A`/`lora_B`.
pub fn peft_key(layer: usize, slot: &str, which: &str) -> String {
    format!("{PEFT_PREFIX}model.transformer.blocks.{layer}.{slot}.{which}.weight")
}

/// A seed for one adapter's dropout mask in one forward pass.
pub fn dropout_key(forward_key: u64, layer: usize, slot: usize) -> u64 {
    // SplitMix64-style mixing so neighbouring layers/slots get unrelated streams.
    let mut z = forward_key
        ^ (layer as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (slot as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir`, each atomically,
/// for a model of `n_layers` blocks.
pub fn save_peft(
    dir: &Path,
    cfg: &LoraConfig,
    base_model: &str,
    n_layers: usize,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let host: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    fsio::write_atomic_with(&dir.join("adapter_model.safetensors"), |tmp| {
        Ok(candle_core::safetensors::save(&host, tmp)?)
    })?;
    let json = serde_json::to_string_pretty(&cfg.to_peft_json(base_model, n_layers))?;
    fsio::write_atomic(&dir.join("adapter_config.json"), json.as_bytes())
}

/// Reads a PEFT adapter directory: its config and tensors (on the host, as stored).
pub fn load_peft(dir: &Path) -> Result<(LoraConfig, HashMap<String, Tensor>)> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path).with_context(|| {
        format!(
            "{} is not a PEFT adapter directory (no readable adapter_config.json)",
            dir.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid JSON", cfg_path.display()))?;
    let cfg = LoraConfig::from_peft_json(&v, &cfg_path)?;
    let st = dir.join("adapter_model.safetensors");
    if !st.is_file() {
        bail!(
            "{} has no adapter_model.safetensors (adapter_model.bin is not supported)",
            dir.display()
        );
    }
    let tensors = super::weights::load_file(&st, &Device::Cpu)?;
    Ok((cfg, tensors))
}

//! LLaDA's `config.json` (the OLMo-derived fields of the Hugging Face checkpoint).
//!
//! Every field that changes the computation is read here. Values this implementation does not
//! compute are rejected by [`Config::validate`] with the field and value named, so a checkpoint
//! is never silently run with the wrong architecture.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

fn default_block_type() -> String {
    "llama".into()
}
fn default_activation() -> String {
    "silu".into()
}
fn default_norm() -> String {
    "rms".into()
}
fn default_true() -> bool {
    true
}
fn default_eps() -> f64 {
    1e-5
}
fn default_theta() -> f64 {
    10000.0
}
fn default_mlp_ratio() -> usize {
    4
}
fn default_group() -> usize {
    1
}
fn default_init_std() -> f64 {
    0.02
}
fn default_max_seq() -> usize {
    4096
}

/// LLaDA model configuration, deserialized directly from a Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Width of the residual stream.
    pub d_model: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (GQA when smaller than `n_heads`); `None` means `n_heads`.
    #[serde(default)]
    pub n_kv_heads: Option<usize>,
    /// OLMo's multi-query flag: `true` means one key/value head.
    #[serde(default)]
    pub multi_query_attention: Option<bool>,
    /// Hidden width of the SwiGLU MLP; `None` means `mlp_ratio * d_model`.
    #[serde(default)]
    pub mlp_hidden_size: Option<usize>,
    /// Used only when `mlp_hidden_size` is absent.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: usize,
    /// Number of tokens of the tokenizer.
    pub vocab_size: usize,
    /// Rows of the embedding and LM head (≥ `vocab_size`); `None` means `vocab_size`.
    #[serde(default)]
    pub embedding_size: Option<usize>,
    /// Longest sequence the checkpoint was trained on (informational; RoPE has no table).
    #[serde(default = "default_max_seq")]
    pub max_sequence_length: usize,
    /// RoPE base frequency.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Only `"llama"` (pre-norm, SwiGLU with separate gate and up projections) is implemented.
    #[serde(default = "default_block_type")]
    pub block_type: String,
    /// Only `"silu"` is implemented.
    #[serde(default = "default_activation")]
    pub activation_type: String,
    /// Only `"rms"` is implemented.
    #[serde(default = "default_norm")]
    pub layer_norm_type: String,
    /// Norms carry a weight (must be true).
    #[serde(default = "default_true")]
    pub layer_norm_with_affine: bool,
    /// Norm biases (must be false).
    #[serde(default)]
    pub bias_for_layer_norm: Option<bool>,
    /// Extra norms on q/k (must be false).
    #[serde(default)]
    pub attention_layer_norm: bool,
    /// ALiBi position bias (must be false).
    #[serde(default)]
    pub alibi: bool,
    /// Rotary embeddings (must be true).
    #[serde(default = "default_true")]
    pub rope: bool,
    /// RoPE computed in f32 (must be true; this code always does).
    #[serde(default = "default_true")]
    pub rope_full_precision: bool,
    /// Linear-layer biases (must be false).
    #[serde(default)]
    pub include_bias: bool,
    /// q/k/v biases (must be false).
    #[serde(default)]
    pub include_qkv_bias: bool,
    /// LM head shares the embedding matrix (implemented).
    #[serde(default)]
    pub weight_tying: bool,
    /// Logits scaled by 1/sqrt(d_model) (must be false).
    #[serde(default)]
    pub scale_logits: bool,
    /// Embedding scaled by sqrt(d_model) (must be false).
    #[serde(default)]
    pub input_emb_norm: bool,
    /// q/k/v clipping (must be absent).
    #[serde(default)]
    pub clip_qkv: Option<f64>,
    /// Dropout rates (must be 0: the base model runs without dropout).
    #[serde(default)]
    pub attention_dropout: f64,
    /// See `attention_dropout`.
    #[serde(default)]
    pub residual_dropout: f64,
    /// See `attention_dropout`.
    #[serde(default)]
    pub embedding_dropout: f64,
    /// FSDP wrapping granularity; no effect on the computation.
    #[serde(default = "default_group")]
    pub block_group_size: usize,
    /// Std of the normal init used by [`crate::model::Llada::random`].
    #[serde(default = "default_init_std")]
    pub init_std: f64,
    /// Id of `<|mdm_mask|>`.
    #[serde(default)]
    pub mask_token_id: Option<u32>,
    /// Id of `<|endoftext|>`.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// Id of the padding token (LLaDA: EOS).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Storage dtype recorded by the exporter (informational).
    #[serde(default)]
    pub torch_dtype: Option<String>,
}

impl Config {
    /// The mask token (`mask_token_id`), or an error saying the config has none.
    pub fn mask_id(&self) -> Result<u32> {
        self.mask_token_id
            .context("the checkpoint's config.json has no mask_token_id")
    }

    /// The padding token of left-padded batches: `pad_token_id`, else `eos_token_id`.
    pub fn pad_id(&self) -> Result<u32> {
        self.pad_token_id
            .or(self.eos_token_id)
            .context("the checkpoint's config.json has no pad_token_id or eos_token_id")
    }

    /// Reads and validates `config.json` at `path`.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model config {}", path.display()))?;
        let cfg: Config = serde_json::from_str(&text)
            .with_context(|| format!("malformed model config {}", path.display()))?;
        cfg.validate()
            .with_context(|| format!("unsupported model config {}", path.display()))?;
        Ok(cfg)
    }

    /// Rejects every value this implementation does not compute, naming the field and value.
    pub fn validate(&self) -> Result<()> {
        let reject = |field: &str, value: &dyn std::fmt::Debug, want: &str| -> Result<()> {
            bail!("config field `{field}` = {value:?} is not supported (this implementation needs {want})")
        };
        if self.block_type != "llama" {
            reject("block_type", &self.block_type, "\"llama\"")?;
        }
        if self.activation_type != "silu" {
            reject("activation_type", &self.activation_type, "\"silu\"")?;
        }
        if self.layer_norm_type != "rms" {
            reject("layer_norm_type", &self.layer_norm_type, "\"rms\"")?;
        }
        if !self.layer_norm_with_affine {
            reject("layer_norm_with_affine", &false, "true")?;
        }
        if self.bias_for_layer_norm == Some(true) {
            reject("bias_for_layer_norm", &true, "false")?;
        }
        if self.attention_layer_norm {
            reject("attention_layer_norm", &true, "false")?;
        }
        if self.alibi {
            reject("alibi", &true, "false (RoPE positions)")?;
        }
        if !self.rope {
            reject("rope", &false, "true")?;
        }
        if !self.rope_full_precision {
            reject(
                "rope_full_precision",
                &false,
                "true (RoPE is computed in f32)",
            )?;
        }
        if self.include_bias {
            reject("include_bias", &true, "false")?;
        }
        if self.include_qkv_bias {
            reject("include_qkv_bias", &true, "false")?;
        }
        if self.scale_logits {
            reject("scale_logits", &true, "false")?;
        }
        if self.input_emb_norm {
            reject("input_emb_norm", &true, "false")?;
        }
        if let Some(c) = self.clip_qkv {
            reject("clip_qkv", &c, "null")?;
        }
        for (name, p) in [
            ("attention_dropout", self.attention_dropout),
            ("residual_dropout", self.residual_dropout),
            ("embedding_dropout", self.embedding_dropout),
        ] {
            if p != 0.0 {
                reject(name, &p, "0.0")?;
            }
        }
        // Sizes are checked against sane limits before anything is allocated from them: a
        // config with `n_layers: 10^12` fails here, naming the key, not after growing to GBs.
        for (field, value, max) in [
            ("d_model", self.d_model, 1 << 17),
            ("n_layers", self.n_layers, 4096),
            ("n_heads", self.n_heads, 4096),
            ("n_kv_heads", self.n_kv_heads.unwrap_or(1), 4096),
            ("mlp_hidden_size", self.mlp_hidden(), 1 << 20),
            ("mlp_ratio", self.mlp_ratio, 1024),
            ("vocab_size", self.vocab_size, 1 << 24),
            ("embedding_size", self.embedding_size(), 1 << 24),
            ("max_sequence_length", self.max_sequence_length, 1 << 24),
        ] {
            if value > max {
                bail!("config field `{field}` = {value} is larger than the sane limit {max}");
            }
        }
        for (field, value) in [
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope_theta", self.rope_theta),
        ] {
            if !(value.is_finite() && value > 0.0) {
                reject(field, &value, "a finite value > 0")?;
            }
        }
        if !(self.init_std.is_finite() && self.init_std >= 0.0) {
            reject("init_std", &self.init_std, "a finite value >= 0")?;
        }
        if self.d_model == 0 || self.n_heads == 0 || self.n_layers == 0 || self.vocab_size == 0 {
            bail!("config fields d_model, n_heads, n_layers and vocab_size must be positive");
        }
        if self.d_model % self.n_heads != 0 {
            bail!(
                "config: d_model {} is not divisible by n_heads {}",
                self.d_model,
                self.n_heads
            );
        }
        if self.head_dim() % 2 != 0 {
            bail!("config: head dim {} must be even for RoPE", self.head_dim());
        }
        let kv = self.kv_heads();
        if kv == 0 || self.n_heads % kv != 0 {
            bail!(
                "config: n_heads {} is not a multiple of n_kv_heads {kv}",
                self.n_heads
            );
        }
        for (field, id) in [
            ("mask_token_id", self.mask_token_id),
            ("eos_token_id", self.eos_token_id),
            ("pad_token_id", self.pad_token_id),
        ] {
            if let Some(id) = id.filter(|&i| i as usize >= self.embedding_size()) {
                bail!(
                    "config field `{field}` = {id} is outside the embedding ({} rows)",
                    self.embedding_size()
                );
            }
        }
        if self.embedding_size() < self.vocab_size {
            bail!(
                "config: embedding_size {} is smaller than vocab_size {}",
                self.embedding_size(),
                self.vocab_size
            );
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Effective number of key/value heads (OLMo's rule: multi-query → 1, absent → n_heads).
    pub fn kv_heads(&self) -> usize {
        if self.multi_query_attention == Some(true) {
            1
        } else {
            self.n_kv_heads.unwrap_or(self.n_heads)
        }
    }

    /// Hidden width of the MLP.
    pub fn mlp_hidden(&self) -> usize {
        self.mlp_hidden_size
            .unwrap_or(self.mlp_ratio.saturating_mul(self.d_model))
    }

    /// Rows of the embedding matrix and of the LM head.
    pub fn embedding_size(&self) -> usize {
        self.embedding_size.unwrap_or(self.vocab_size)
    }

    /// Number of parameters of the checkpoint (embedding, blocks, final norm, untied head).
    pub fn num_params(&self) -> usize {
        let d = self.d_model;
        let kvd = self.kv_heads() * self.head_dim();
        let h = self.mlp_hidden();
        let e = self.embedding_size();
        let block = 2 * d + d * d + 2 * kvd * d + d * d + 3 * h * d;
        let head = if self.weight_tying { 0 } else { e * d };
        e * d + self.n_layers * block + d + head
    }

    /// A small configuration of the LLaDA architecture for tests, toys and benchmarks.
    #[allow(clippy::too_many_arguments)]
    pub fn small(
        d_model: usize,
        n_layers: usize,
        n_heads: usize,
        n_kv_heads: usize,
        mlp_hidden: usize,
        vocab: usize,
    ) -> Config {
        Config {
            d_model,
            n_layers,
            n_heads,
            n_kv_heads: Some(n_kv_heads),
            multi_query_attention: None,
            mlp_hidden_size: Some(mlp_hidden),
            mlp_ratio: 4,
            vocab_size: vocab,
            embedding_size: Some(vocab),
            max_sequence_length: 4096,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
            block_type: default_block_type(),
            activation_type: default_activation(),
            layer_norm_type: default_norm(),
            layer_norm_with_affine: true,
            bias_for_layer_norm: Some(false),
            attention_layer_norm: false,
            alibi: false,
            rope: true,
            rope_full_precision: true,
            include_bias: false,
            include_qkv_bias: false,
            weight_tying: false,
            scale_logits: false,
            input_emb_norm: false,
            clip_qkv: None,
            attention_dropout: 0.0,
            residual_dropout: 0.0,
            embedding_dropout: 0.0,
            block_group_size: 1,
            init_std: 0.02,
            mask_token_id: Some(vocab as u32 - 1),
            eos_token_id: Some(vocab as u32 - 6),
            pad_token_id: Some(vocab as u32 - 6),
            torch_dtype: Some("float32".into()),
        }
    }
}

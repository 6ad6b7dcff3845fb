//! The LLaDA transformer: a bidirectional Llama-style stack (pre-RMSNorm, RoPE, SwiGLU, untied
//! head) as in the Hugging Face `modeling_llada.py`, differentiable end to end.
//!
//! Numerics follow the reference: RMSNorm and RoPE in f32, attention scores and softmax in f32,
//! matmuls in the compute dtype (f32 on CPU, bf16 on CUDA). Padded keys of a left-padded batch
//! get a large negative bias; no position shift is needed because RoPE scores depend only on
//! relative positions.
//!
//! For Fast-dLLM's key/value reuse, [`Llada::forward_hidden_kv`] is the plain forward that also
//! returns each layer's keys (after RoPE) and values ([`KvCache`]), and
//! [`Llada::forward_hidden_cached`] recomputes a contiguous range of canvas rows while the other
//! positions contribute cached keys/values (an approximation; see its docs). Both are ordinary
//! differentiable ops, though only the sampler uses them, for inference.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};

use super::config::Config;
use super::lora::{self, Adapter, LoraConfig};
use super::names::{self, BLOCK_TENSORS};
use super::weights::WeightSource;
use crate::ops::fused;

pub use super::init::{normal, random_weights};
pub use super::names::tensor_names;

/// How to materialise a model: where, in which dtype, and whether its weights are trainable.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Device the weights live on.
    pub device: Device,
    /// Compute dtype (f32 on CPU; bf16 on CUDA; f64 for gradient checks).
    pub dtype: DType,
    /// Wrap every weight in a [`Var`] so gradients reach it (full finetuning, gradient tests).
    pub trainable: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: Device::Cpu,
            dtype: DType::F32,
            trainable: false,
        }
    }
}

/// A linear map without bias, `y = x Wᵀ`, with `W` stored [out, in] as in PyTorch, and an
/// optional LoRA adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    /// The weight, [out, in].
    pub weight: Tensor,
    /// The LoRA adapter on this layer, if any.
    pub lora: Option<Adapter>,
}

impl Linear {
    /// A plain (adapter-free) map.
    pub fn new(weight: Tensor) -> Linear {
        Linear { weight, lora: None }
    }

    /// Applies the base map (never the adapter) to the last dim of `x`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(x, false, None)
    }

    /// Applies the map to the last dim of `x`, plus the adapter when `adapters` is on;
    /// `dropout_key` seeds the adapter's dropout (training mode).
    pub fn apply(
        &self,
        x: &Tensor,
        adapters: bool,
        dropout_key: Option<u64>,
    ) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let inner = dims[dims.len() - 1];
        let rows = x.elem_count() / inner;
        let out = self.weight.dim(0)?;
        // A [rows, inner] input is used as it is: every reshape is a graph node whose
        // backward costs a zero-filled buffer and an add.
        let flat = if dims.len() == 2 {
            x.clone()
        } else {
            x.reshape((rows, inner))?
        };
        let mut y = crate::ops::matmul::linear(&flat, &self.weight)?;
        if let (true, Some(ad)) = (adapters, &self.lora) {
            y = (y + ad.delta(&flat, dropout_key)?)?;
        }
        if dims.len() == 2 {
            return Ok(y);
        }
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("non-empty shape") = out;
        y.reshape(shape)
    }
}

/// One transformer block (LLaDA's `LLaDALlamaBlock`).
#[derive(Debug, Clone)]
pub struct Block {
    pub(super) attn_norm: Tensor,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    attn_out: Linear,
    pub(super) ff_norm: Tensor,
    ff_proj: Linear,
    up_proj: Linear,
    ff_out: Linear,
    pub(super) n_heads: usize,
    pub(super) n_kv_heads: usize,
    pub(super) head_dim: usize,
    pub(super) eps: f64,
}

/// Per-forward inputs shared by all blocks: RoPE tables, the key-padding bias, whether adapters
/// apply, and the dropout key of this pass (training mode only).
#[derive(Clone)]
pub(crate) struct Frame {
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
    pub(super) bias: Option<Tensor>,
    pub(super) adapters: bool,
    dropout: Option<u64>,
}

/// Keys and values of every layer from one forward pass over a whole canvas
/// ([`Llada::forward_hidden_kv`]): per layer `(k, v)`, each [B, n_kv_heads, L, head_dim] in the
/// compute dtype, keys after RoPE, both before the GQA repeat to the query heads.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    batch: usize,
    len: usize,
}

impl KvCache {
    /// Per layer `(keys, values)`, [B, n_kv_heads, L, head_dim].
    pub fn layers(&self) -> &[(Tensor, Tensor)] {
        &self.layers
    }

    /// Batch size B the cache was built for.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Canvas length L the cache covers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache covers no positions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Block {
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        frame: &Frame,
        layer: usize,
    ) -> candle_core::Result<Tensor> {
        // Training forwards without adapters: five graph nodes and a hand-written backward.
        if super::block_grad::applies(self, x, frame) {
            return super::block_grad::forward(self, x, frame);
        }
        Ok(self.forward_kv(x, frame, None, layer)?.0)
    }

    /// The block's linear layers in [`TARGETS`] order.
    pub(super) fn linears(&self) -> [&Linear; 7] {
        [
            &self.q_proj,
            &self.k_proj,
            &self.v_proj,
            &self.attn_out,
            &self.ff_proj,
            &self.up_proj,
            &self.ff_out,
        ]
    }

    /// The block's weights in [`BLOCK_TENSORS`] order.
    pub(super) fn tensors(&self) -> [&Tensor; 9] {
        [
            &self.attn_norm,
            &self.q_proj.weight,
            &self.k_proj.weight,
            &self.v_proj.weight,
            &self.attn_out.weight,
            &self.ff_norm,
            &self.ff_proj.weight,
            &self.up_proj.weight,
            &self.ff_out.weight,
        ]
    }

    pub(super) fn linears_mut(&mut self) -> [&mut Linear; 7] {
        [
            &mut self.q_proj,
            &mut self.k_proj,
            &mut self.v_proj,
            &mut self.attn_out,
            &mut self.ff_proj,
            &mut self.up_proj,
            &mut self.ff_out,
        ]
    }

    /// The block over the rows of `x` [B, n, d]. Without `past` the rows are the whole canvas;
    /// with `past = (k, v, start)` (cached [B, n_kv_heads, L, head_dim]) they are canvas rows
    /// `[start, start + n)` and attend over cached keys/values everywhere else. Also returns
    /// this call's own keys (after RoPE) and values, [B, n_kv_heads, n, head_dim], before the
    /// GQA repeat. With `past = None` the arithmetic is exactly the plain forward's.
    fn forward_kv(
        &self,
        x: &Tensor,
        frame: &Frame,
        past: Option<(&Tensor, &Tensor, usize)>,
        layer: usize,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (b, l, d) = x.dims3()?;
        let lin = |which: &Linear, slot: usize, x: &Tensor| {
            let key = frame.dropout.map(|k| lora::dropout_key(k, layer, slot));
            which.apply(x, frame.adapters, key)
        };
        // Rows stay [B·n, d] through the block (one reshape in, one out).
        let x = &x.reshape((b * l, d))?;
        let h = fused::rms_norm(x, &self.attn_norm, self.eps)?;
        let heads = |t: Tensor, n: usize| -> candle_core::Result<Tensor> {
            t.reshape((b, l, n, self.head_dim))?.transpose(1, 2)
        };
        let q = heads(lin(&self.q_proj, 0, &h)?, self.n_heads)?;
        let k = heads(lin(&self.k_proj, 1, &h)?, self.n_kv_heads)?;
        let v = heads(lin(&self.v_proj, 2, &h)?, self.n_kv_heads)?;
        let q = fused::rope(&q, &frame.cos, &frame.sin)?;
        let k = fused::rope(&k, &frame.cos, &frame.sin)?;
        let (k_all, v_all) = match past {
            None => (k.clone(), v.clone()),
            Some((ck, cv, start)) => (splice(ck, &k, start)?, splice(cv, &v, start)?),
        };
        let k_rep = repeat_kv(&k_all, self.n_heads / self.n_kv_heads)?;
        let v_rep = repeat_kv(&v_all, self.n_heads / self.n_kv_heads)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let attn = fused::attention(&q, &k_rep, &v_rep, scale, frame.bias.as_ref())?
            .transpose(1, 2)?
            .reshape((b * l, d))?;
        let x = (x + lin(&self.attn_out, 3, &attn)?)?;
        let m = fused::rms_norm(&x, &self.ff_norm, self.eps)?;
        let gate = lin(&self.ff_proj, 4, &m)?;
        let up = lin(&self.up_proj, 5, &m)?;
        let out = (x + lin(&self.ff_out, 6, &fused::swiglu(&gate, &up)?)?)?;
        Ok((out.reshape((b, l, d))?, k, v))
    }
}

/// `cached[.., :start, ..] ++ fresh ++ cached[.., start + n.., ..]` along the sequence dim
/// (dim 2 of [B, heads, L, head_dim]), where n is `fresh`'s length.
fn splice(cached: &Tensor, fresh: &Tensor, start: usize) -> candle_core::Result<Tensor> {
    let total = cached.dim(2)?;
    let n = fresh.dim(2)?;
    let mut parts = Vec::with_capacity(3);
    if start > 0 {
        parts.push(cached.narrow(2, 0, start)?);
    }
    parts.push(fresh.contiguous()?);
    if start + n < total {
        parts.push(cached.narrow(2, start + n, total - start - n)?);
    }
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    Tensor::cat(&parts, 2)
}

/// Repeats key/value heads `n_rep` times so GQA checkpoints share the MHA code path.
pub(super) fn repeat_kv(x: &Tensor, n_rep: usize) -> candle_core::Result<Tensor> {
    if n_rep == 1 {
        return Ok(x.clone());
    }
    let (b, h, l, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, h, n_rep, l, d))?
        .contiguous()?
        .reshape((b, h * n_rep, l, d))
}

/// A LLaDA model ready for forward passes (and backward, when loaded trainable).
#[derive(Debug, Clone)]
pub struct Llada {
    pub(super) cfg: Config,
    pub(super) wte: Tensor,
    pub(super) blocks: Vec<Block>,
    pub(super) ln_f: Tensor,
    pub(super) head: Tensor,
    pub(super) device: Device,
    pub(super) dtype: DType,
    pub(super) vars: Vec<(String, Var)>,
    pub(super) lora: Option<LoraConfig>,
    pub(super) adapters_on: bool,
    pub(super) checkpointing: bool,
    pub(super) training: bool,
    pub(super) dropout: DropoutStream,
}

/// The source of per-forward dropout keys: a seed and a counter shared by every view of one
/// model, so consecutive training forwards draw fresh masks and a checkpoint can resume them.
#[derive(Debug, Clone, Default)]
pub(super) struct DropoutStream {
    pub(super) seed: u64,
    pub(super) counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Llada {
    /// Loads a checkpoint directory (`config.json` + safetensors weights).
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Llada> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            anyhow::bail!(
                "{} has no config.json: expected a LLaDA checkpoint directory in the Hugging Face layout",
                dir.display()
            );
        }
        let cfg = Config::from_file(&cfg_path)?;
        let source = WeightSource::open_dir(dir)?;
        Llada::from_source(cfg, &source, opts)
    }

    /// Builds the model from `cfg` and the tensors of `source`, checking every name and shape.
    pub fn from_source(cfg: Config, source: &WeightSource, opts: &LoadOptions) -> Result<Llada> {
        cfg.validate()?;
        source.check_config(&cfg)?;
        let mut vars = Vec::new();
        let mut get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = source.get(name, shape, opts.dtype, &opts.device)?;
            if opts.trainable {
                let v = Var::from_tensor(&t)?;
                let t = v.as_tensor().clone();
                vars.push((name.to_string(), v));
                Ok(t)
            } else {
                Ok(t)
            }
        };
        let specs = tensor_names(&cfg);
        let shape_of = |n: &str| -> Vec<usize> {
            specs
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, s)| s.clone())
                .unwrap_or_default()
        };
        let mut load = |n: &str| get(n, &shape_of(n));
        let wte = load(names::WTE)?;
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let mut t = Vec::with_capacity(BLOCK_TENSORS.len());
            for n in BLOCK_TENSORS {
                t.push(load(&names::block_tensor(i, n))?);
            }
            let [attn_norm, q, k, v, o, ff_norm, ff, up, down]: [Tensor; 9] =
                t.try_into().expect("one tensor per BLOCK_TENSORS entry");
            blocks.push(Block {
                attn_norm,
                q_proj: Linear::new(q),
                k_proj: Linear::new(k),
                v_proj: Linear::new(v),
                attn_out: Linear::new(o),
                ff_norm,
                ff_proj: Linear::new(ff),
                up_proj: Linear::new(up),
                ff_out: Linear::new(down),
                n_heads: cfg.n_heads,
                n_kv_heads: cfg.kv_heads(),
                head_dim: cfg.head_dim(),
                eps: cfg.rms_norm_eps,
            });
        }
        let ln_f = load(names::LN_F)?;
        let head = if cfg.weight_tying {
            wte.clone()
        } else {
            load(names::HEAD)?
        };
        Ok(Llada {
            cfg,
            wte,
            blocks,
            ln_f,
            head,
            device: opts.device.clone(),
            dtype: opts.dtype,
            vars,
            lora: None,
            adapters_on: true,
            checkpointing: false,
            training: false,
            dropout: DropoutStream::default(),
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The trainable variables (empty unless loaded with `trainable`), by checkpoint name.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Every variable an optimizer should update, by name: LoRA adapters when present, else the
    /// full-finetuning weights (empty for a frozen model without adapters).
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        if self.lora.is_some() {
            return self.adapter_vars();
        }
        self.vars.clone()
    }

    /// Every weight by checkpoint name (the tied head appears once, as `wte`).
    pub fn named_weights(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(names::WTE.to_string(), self.wte.clone())];
        for (i, b) in self.blocks.iter().enumerate() {
            for (n, t) in BLOCK_TENSORS.iter().zip(b.tensors()) {
                out.push((names::block_tensor(i, n), t.clone()));
            }
        }
        out.push((names::LN_F.to_string(), self.ln_f.clone()));
        if !self.cfg.weight_tying {
            out.push((names::HEAD.to_string(), self.head.clone()));
        }
        out
    }

    /// Final hidden states after `ln_f`, [B, L, d_model]. `input_ids` is [B, L] (u32 or i64);
    /// `attention_mask` [B, L] has 1 for real tokens and 0 for left padding.
    pub fn forward_hidden(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (mut x, b, l) = self.embed(input_ids)?;
        let mut frame = self.frame(b, l, attention_mask, 0..l)?;
        if self.training {
            use std::sync::atomic::Ordering;
            let n = self.dropout.counter.fetch_add(1, Ordering::Relaxed);
            frame.dropout = Some(lora::dropout_key(self.dropout.seed, n as usize, usize::MAX));
        }
        if self.checkpointing && !self.trainable_vars().is_empty() {
            return super::remat::forward(self, x, frame);
        }
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, &frame, i)?;
        }
        Ok(fused::rms_norm(&x, &self.ln_f, self.cfg.rms_norm_eps)?)
    }

    /// [`Llada::forward_hidden`] (the same arithmetic, bit for bit) that also returns every
    /// layer's keys and values, for [`Llada::forward_hidden_cached`] to reuse.
    pub fn forward_hidden_kv(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<(Tensor, KvCache)> {
        let (mut x, b, l) = self.embed(input_ids)?;
        let frame = self.frame(b, l, attention_mask, 0..l)?;
        let mut layers = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let (out, k, v) = block.forward_kv(&x, &frame, None, i)?;
            layers.push((k.contiguous()?, v.contiguous()?));
            x = out;
        }
        let hidden = fused::rms_norm(&x, &self.ln_f, self.cfg.rms_norm_eps)?;
        Ok((
            hidden,
            KvCache {
                layers,
                batch: b,
                len: l,
            },
        ))
    }

    /// Hidden states (after `ln_f`) of canvas rows `[start, start + n)` only, [B, n, d_model],
    /// recomputed from `input_ids` [B, n] (the current tokens of those rows) while every other
    /// position contributes the keys and values stored in `cache` (a [`Llada::forward_hidden_kv`]
    /// of an earlier canvas of the same batch and length L).
    ///
    /// Each layer attends over `cache[0, start) ++ fresh[start, start + n) ++ cache[start + n, L)`:
    /// Fast-dLLM's *prefix* cache is `start + n = L` (recompute the block and everything right
    /// of it), its *dual* cache `n` = the block (recompute only the block). `attention_mask` is
    /// the whole canvas's [B, L] key-padding mask: the recomputed rows get the RoPE positions
    /// they have in the full forward (counting real tokens only) and the padding bias covers
    /// the full key set.
    ///
    /// **An approximation**: cached keys/values are those of the canvas at the time of the
    /// cache, computed from attention over *that* canvas. Positions whose tokens changed since
    /// must be inside the recomputed range, and even then the cached positions do not see the
    /// change (in exact decoding every position attends to the new tokens). With an unchanged
    /// canvas the result equals the full forward up to floating-point reassociation.
    pub fn forward_hidden_cached(
        &self,
        input_ids: &Tensor,
        start: usize,
        cache: &KvCache,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (mut x, b, n) = self.embed(input_ids)?;
        let l = cache.len;
        if b != cache.batch {
            anyhow::bail!(
                "input_ids has {b} rows but the key/value cache was built for {}",
                cache.batch
            );
        }
        if cache.layers.len() != self.blocks.len() {
            anyhow::bail!(
                "the key/value cache has {} layers but the model has {}",
                cache.layers.len(),
                self.blocks.len()
            );
        }
        if start + n > l {
            anyhow::bail!(
                "recomputed rows [{start}, {}) run past the cached length {l}",
                start + n
            );
        }
        let frame = self.frame(b, l, attention_mask, start..start + n)?;
        for (i, (block, (ck, cv))) in self.blocks.iter().zip(&cache.layers).enumerate() {
            x = block.forward_kv(&x, &frame, Some((ck, cv, start)), i)?.0;
        }
        Ok(fused::rms_norm(&x, &self.ln_f, self.cfg.rms_norm_eps)?)
    }

    /// Token embeddings [B, n, d_model] of `input_ids` [B, n], with B and n.
    fn embed(&self, input_ids: &Tensor) -> Result<(Tensor, usize, usize)> {
        let (b, l) = input_ids
            .dims2()
            .context("input_ids must be a [batch, length] tensor")?;
        // Ids on the host (scripts, the CLI, CPU runs) are checked, which costs a scan of B·L
        // integers; ids already on an accelerator (the sampler's canvas, whose prompts were
        // checked when it was built, or tensors a script moved there) are not read back.
        if input_ids.device().is_cpu() {
            super::ids::check_ids_tensor(input_ids, self.cfg.embedding_size())?;
        }
        let ids = input_ids.to_dtype(DType::U32)?.to_device(&self.device)?;
        let x = self
            .wte
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, l, self.cfg.d_model))?;
        Ok((x, b, l))
    }

    /// RoPE tables for canvas rows `rows` and the key-padding bias over all L keys, for a
    /// batch of B rows of length L with an optional [B, L] attention mask.
    fn frame(
        &self,
        b: usize,
        l: usize,
        attention_mask: Option<&Tensor>,
        rows: std::ops::Range<usize>,
    ) -> Result<Frame> {
        let (positions, bias) = match attention_mask {
            None => (
                vec![(rows.start as u32..rows.end as u32).collect::<Vec<_>>()],
                None,
            ),
            Some(m) => {
                let dims = m.dims();
                if dims != [b, l] {
                    anyhow::bail!(
                        "attention_mask has shape {dims:?} but input_ids has shape [{b}, {l}]"
                    );
                }
                // Positions count real tokens only, so a left-padded row sees exactly the RoPE
                // angles it sees alone (bitwise batch invariance, not just up to rounding).
                let mask_rows: Vec<Vec<f32>> = m.to_dtype(DType::F32)?.to_vec2()?;
                let positions = mask_rows
                    .iter()
                    .map(|row| {
                        let mut seen = 0u32;
                        let all: Vec<u32> = row
                            .iter()
                            .map(|&v| {
                                let p = seen;
                                seen += u32::from(v != 0.0);
                                p
                            })
                            .collect();
                        all[rows.clone()].to_vec()
                    })
                    .collect();
                // 0 for real keys, a large negative number for padded keys: [B, 1, 1, L].
                let m = m.to_dtype(DType::F32)?.to_device(&self.device)?;
                let bias = ((m - 1.0)? * f64::from(f32::MAX))?;
                (positions, Some(bias.reshape((b, 1, 1, l))?))
            }
        };
        let (cos, sin) = rope_tables(
            &positions,
            self.cfg.head_dim(),
            self.cfg.rope_theta,
            &self.device,
        )?;
        Ok(Frame {
            cos,
            sin,
            bias,
            adapters: self.adapters_on,
            dropout: None,
        })
    }

    /// Projects hidden states [.., d_model] through the LM head to logits [.., embedding_size].
    /// Callers that need only some positions gather them first (same numbers, less work).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(Linear::new(self.head.clone()).forward(hidden)?)
    }

    /// Logits [B, L, embedding_size] for `input_ids` [B, L] with an optional key-padding mask.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let h = self.forward_hidden(input_ids, attention_mask)?;
        self.logits(&h)
    }
}

/// RoPE cos/sin tables in f32, built as the reference does (`inv_freq = 1 / theta^(2i/d)`,
/// frequencies repeated for both halves): [L, head_dim] for one shared row of positions, or
/// [B, 1, L, head_dim] for per-row positions.
fn rope_tables(
    positions: &[Vec<u32>],
    head_dim: usize,
    theta: f64,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let len = positions.first().map_or(0, Vec::len);
    let mut cos = Vec::with_capacity(positions.len() * len * head_dim);
    let mut sin = Vec::with_capacity(cos.capacity());
    for row in positions {
        for &p in row {
            for _half in 0..2 {
                for f in &inv {
                    let a = p as f32 * f;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
    }
    let shape: Vec<usize> = if positions.len() == 1 {
        vec![len, head_dim]
    } else {
        vec![positions.len(), 1, len, head_dim]
    };
    Ok((
        Tensor::from_vec(cos, shape.clone(), device)?,
        Tensor::from_vec(sin, shape, device)?,
    ))
}

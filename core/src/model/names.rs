//! The checkpoint's tensor names and shapes, as Hugging Face stores LLaDA: one table of the
//! per-block tensors that loading, saving and random initialisation all read.

use super::config::Config;

/// Name of the token embedding.
pub const WTE: &str = "model.transformer.wte.weight";
/// Name of the final norm weight.
pub const LN_F: &str = "model.transformer.ln_f.weight";
/// Name of the untied LM head.
pub const HEAD: &str = "model.transformer.ff_out.weight";

/// The tensors of every block, in checkpoint order (`model.transformer.blocks.{i}.{name}.weight`).
pub const BLOCK_TENSORS: [&str; 9] = [
    "attn_norm",
    "q_proj",
    "k_proj",
    "v_proj",
    "attn_out",
    "ff_norm",
    "ff_proj",
    "up_proj",
    "ff_out",
];

/// The full name of tensor `name` (one of [`BLOCK_TENSORS`]) of block `layer`.
pub fn block_tensor(layer: usize, name: &str) -> String {
    format!("model.transformer.blocks.{layer}.{name}.weight")
}

/// Shapes of [`BLOCK_TENSORS`] for `cfg`, in the same order.
pub fn block_shapes(cfg: &Config) -> [Vec<usize>; 9] {
    let d = cfg.d_model;
    let kvd = cfg.kv_heads() * cfg.head_dim();
    let h = cfg.mlp_hidden();
    [
        vec![d],
        vec![d, d],
        vec![kvd, d],
        vec![kvd, d],
        vec![d, d],
        vec![d],
        vec![h, d],
        vec![h, d],
        vec![d, h],
    ]
}

/// The names and shapes of every tensor of a LLaDA checkpoint, as stored by Hugging Face.
pub fn tensor_names(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let d = cfg.d_model;
    let e = cfg.embedding_size();
    let mut out = vec![(WTE.to_string(), vec![e, d])];
    for i in 0..cfg.n_layers {
        for (n, s) in BLOCK_TENSORS.iter().zip(block_shapes(cfg)) {
            out.push((block_tensor(i, n), s));
        }
    }
    out.push((LN_F.to_string(), vec![d]));
    if !cfg.weight_tying {
        out.push((HEAD.to_string(), vec![e, d]));
    }
    out
}

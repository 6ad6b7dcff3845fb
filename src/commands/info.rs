//! `workbench info MODEL`: what a checkpoint is and what it costs, read from its config and
//! safetensors headers without loading the weights.

use anyhow::Result;
use clap::Args;
use workbench_core::device::{default_device, default_dtype};
use workbench_core::model::{resolve_model_dir, Config, WeightSource};
use workbench_core::term::print_line;
use workbench_core::tokenizer::{ConfigIds, Tokenizer};

/// Arguments of `workbench info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Checkpoint directory or Hugging Face repo id (resolved offline from the local hub cache).
    pub model: String,
}

fn gib(bytes: usize) -> String {
    let g = bytes as f64 / (1u64 << 30) as f64;
    if g >= 0.1 {
        format!("{g:.2} GiB")
    } else {
        format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// Prints the report for `args.model`.
pub fn run(args: &InfoArgs) -> Result<()> {
    let dir = resolve_model_dir(&args.model)?;
    let cfg_path = dir.join("config.json");
    let cfg = Config::from_file(&cfg_path)?;
    let weights = WeightSource::open_dir(&dir)?;
    weights.check(&cfg)?;
    let params = cfg.num_params();
    let device = default_device();
    print_line(&format!("model        {}", dir.display()));
    print_line("architecture LLaDA (bidirectional Llama block, RoPE, SwiGLU, RMSNorm)");
    print_line(&format!(
        "layers       {}   d_model {}   heads {} (kv {}, head dim {})   mlp {}",
        cfg.n_layers,
        cfg.d_model,
        cfg.n_heads,
        cfg.kv_heads(),
        cfg.head_dim(),
        cfg.mlp_hidden()
    ));
    print_line(&format!(
        "vocab        {} (embedding {})   rope theta {}   max length {}   tied head {}",
        cfg.vocab_size,
        cfg.embedding_size(),
        cfg.rope_theta,
        cfg.max_sequence_length,
        cfg.weight_tying
    ));
    print_line(&format!(
        "parameters   {params} ({:.3} B)",
        params as f64 / 1e9
    ));
    let files = weights.files();
    print_line(&format!(
        "storage      {} in {} file(s), {}",
        weights
            .storage_dtype()
            .map_or_else(|| "unknown".to_string(), |d| format!("{d:?}")),
        files.len(),
        gib(weights.storage_bytes())
    ));
    print_line(&format!(
        "compute      {:?} on {:?}",
        default_dtype(&device),
        device.location()
    ));
    print_line(&format!(
        "memory       weights need {} in bf16, {} in f32",
        gib(params * 2),
        gib(params * 4)
    ));
    if dir.join("tokenizer.json").is_file() {
        let ids = ConfigIds::from_config_file(&cfg_path)?;
        let tok = Tokenizer::load(&dir, &ids)?;
        let s = tok.special();
        let name = |id: Option<u32>| match id {
            Some(i) => format!("{} {}", tok.id_to_token(i).unwrap_or_default(), i),
            None => "-".to_string(),
        };
        print_line(&format!(
            "tokens       mask {}   eos {}   eot {}   bos {}   pad {}",
            name(Some(s.mask)),
            name(Some(s.eos)),
            name(s.eot),
            name(s.bos),
            name(Some(s.pad))
        ));
        print_line(&format!(
            "chat         {}",
            if tok.chat_template().is_some() {
                "template present"
            } else {
                "no chat template"
            }
        ));
    } else {
        print_line("tokens       no tokenizer.json in the checkpoint directory");
    }
    Ok(())
}

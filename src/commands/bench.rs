//! `workbench bench`: times the forward pass, generation (T = 0 and T = 1) and the d1 / CJ /
//! LoRA training steps at a model shape with random weights, on any device, and (with
//! `--fixtures`) checks the golden logits and sampler cases on that device. One JSON object per
//! target goes to stdout (and to `--json FILE` as one report); `bench/compare.sh` runs this next
//! to the PyTorch counterpart `bench/llada_bench.py` and prints the ratios.
//!
//! Timing: `--warmup` untimed runs, then `--iters` timed ones; the median and the minimum are
//! reported. Peak memory is the growth of the resident high-water mark over the timed runs
//! on CPU (`/proc/self/clear_refs` + `VmHWM`, Linux), the device memory in use after them on
//! CUDA. On CUDA, MFU is model FLOPs (2 per multiply-add: weights, attention and head; a
//! training step counts 3 forwards, 4 with checkpointing) over time, against `--peak-tflops`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use serde_json::{json, Value};
use workbench_core::device::{default_dtype, parse_device, parse_dtype};
use workbench_core::memstat;
use workbench_core::model::{remat, Config, Llada, LoadOptions, LoraConfig};
use workbench_core::sampler::{generate, generate_canvas, golden, GenerateOptions, SamplerConfig};
use workbench_core::train::estimators::{logp_d1, logp_step};
use workbench_core::train::losses::{clipped_surrogate, reduce, RatioLevel, Reduction};
use workbench_core::train::optim::{AdamW, AdamWConfig, Schedule};

/// Arguments of `workbench bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Comma-separated targets: forward, generate, generate_t1, d1, cj, lora, parity.
    #[arg(long, default_value = "forward,generate,generate_t1,d1")]
    pub targets: String,
    /// Model shape: `bench` (d 256, 6 layers, 8 heads, mlp 704, vocab 8192), `llada8b`
    /// (d 4096, 32 layers, 32 heads, mlp 12288, vocab 126464) or `tiny` (d 64, 2 layers).
    #[arg(long, default_value = "bench")]
    pub shape: String,
    /// Load this checkpoint directory instead of random weights (`--shape` is then ignored);
    /// `bench/compare.sh` gives both sides the same one.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype (default: f32 on CPU, bf16 on CUDA).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Batch of the forward target.
    #[arg(long, default_value_t = 2)]
    pub forward_batch: usize,
    /// Sequence length of the forward target.
    #[arg(long, default_value_t = 160)]
    pub forward_len: usize,
    /// Generation batch.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Prompt length (generation and training).
    #[arg(long, default_value_t = 32)]
    pub prompt: usize,
    /// Generation / completion length (generation and training).
    #[arg(long, default_value_t = 128)]
    pub gen: usize,
    /// Denoising steps.
    #[arg(long, default_value_t = 64)]
    pub steps: usize,
    /// Block length of semi-autoregressive decoding.
    #[arg(long, default_value_t = 32)]
    pub block: usize,
    /// Batch of the training steps (rows of prompt + completion).
    #[arg(long, default_value_t = 4)]
    pub train_batch: usize,
    /// LoRA rank of the `lora` target (every linear layer).
    #[arg(long, default_value_t = 16)]
    pub lora_r: usize,
    /// Per-block activation checkpointing in the `lora` target.
    #[arg(long)]
    pub checkpointing: bool,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed runs per target.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Seed of the random weights and token ids.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The device's dense bf16 peak in TFLOP/s for MFU (default 989: H100/H200 SXM).
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Fixtures directory for the `parity` target (llada-tiny/, logits_*.safetensors,
    /// samplers.json).
    #[arg(long, default_value = "tests/fixtures")]
    pub fixtures: PathBuf,
    /// Also write the whole report (one JSON object) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The model shape named `name`.
fn shape(name: &str) -> Result<Config> {
    Ok(match name {
        "bench" => Config::small(256, 6, 8, 8, 704, 8192),
        "tiny" => Config::small(64, 2, 4, 4, 160, 1000),
        "llada8b" => {
            let mut c = Config::small(4096, 32, 32, 32, 12288, 126464);
            c.rope_theta = 500000.0;
            c
        }
        other => bail!("unknown shape `{other}`: expected bench, tiny or llada8b"),
    })
}

/// Model FLOPs of one forward over `rows` sequences of `len` tokens that projects `head_rows`
/// positions through the LM head (2 FLOPs per multiply-add).
fn forward_flops(cfg: &Config, rows: usize, len: usize, head_rows: usize) -> f64 {
    let d = cfg.d_model as f64;
    let kvd = (cfg.kv_heads() * cfg.head_dim()) as f64;
    let h = cfg.mlp_hidden() as f64;
    let per_token = 2.0 * d * d + 2.0 * kvd * d + 3.0 * h * d;
    let tokens = (rows * len) as f64;
    let attn = 4.0 * (len as f64) * d * tokens; // QKᵀ and PV
    let head = 2.0 * d * cfg.embedding_size() as f64 * head_rows as f64;
    cfg.n_layers as f64 * (2.0 * per_token * tokens + attn) + head
}

/// Device memory in use (MiB) on CUDA; None elsewhere.
#[cfg(feature = "cuda")]
fn device_used_mib(dev: &Device) -> Option<f64> {
    use candle_core::backend::BackendDevice;
    if let Device::Cuda(c) = dev {
        c.synchronize().ok()?;
        let (free, total) =
            candle_core::cuda_backend::cudarc::driver::result::mem_get_info().ok()?;
        return Some((total - free) as f64 / (1u64 << 20) as f64);
    }
    None
}

#[cfg(not(feature = "cuda"))]
fn device_used_mib(_dev: &Device) -> Option<f64> {
    None
}

fn sync(dev: &Device) -> Result<()> {
    Ok(dev.synchronize()?)
}

struct Timing {
    times: Vec<f64>,
    peak_mib: Option<f64>,
}

impl Timing {
    fn median(&self) -> f64 {
        let mut t = self.times.clone();
        t.sort_by(f64::total_cmp);
        let n = t.len();
        if n % 2 == 1 {
            t[n / 2]
        } else {
            0.5 * (t[n / 2 - 1] + t[n / 2])
        }
    }

    fn min(&self) -> f64 {
        self.times.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// Runs `f` `warmup` times untimed, then `iters` times timed.
fn time(args: &BenchArgs, dev: &Device, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    for _ in 0..args.warmup {
        f()?;
    }
    sync(dev)?;
    let base = memstat::status_kib("VmRSS");
    let reset = dev.is_cpu() && memstat::reset_peak();
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters.max(1) {
        let t = Instant::now();
        f()?;
        sync(dev)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let peak_mib = if dev.is_cpu() {
        match (reset, memstat::status_kib("VmHWM"), base) {
            (true, Some(p), Some(b)) => Some(p.saturating_sub(b) as f64 / 1024.0),
            _ => None,
        }
    } else {
        device_used_mib(dev)
    };
    Ok(Timing { times, peak_mib })
}

/// Deterministic token ids in `[0, vocab − 8)` (clear of the special tokens of `Config::small`).
fn ids(rows: usize, len: usize, vocab: usize, salt: usize, dev: &Device) -> Result<Tensor> {
    let m = vocab.saturating_sub(8).max(1);
    let data: Vec<u32> = (0..rows * len)
        .map(|i| ((i + salt) * 7919 % m) as u32)
        .collect();
    Ok(Tensor::from_vec(data, (rows, len), dev)?)
}

struct Ctx<'a> {
    args: &'a BenchArgs,
    cfg: Config,
    dev: Device,
    dtype: DType,
    peak_tflops: f64,
}

impl Ctx<'_> {
    fn model(&self, trainable: bool) -> Result<Llada> {
        let opts = LoadOptions {
            device: self.dev.clone(),
            dtype: self.dtype,
            trainable,
        };
        match &self.args.model {
            Some(dir) => Llada::load(dir, &opts),
            None => Llada::random_fast(self.cfg.clone(), self.args.seed, &opts),
        }
    }

    fn report(&self, target: &str, t: &Timing, tokens: usize, flops: f64, extra: Value) -> Value {
        let med = t.median();
        let mut v = json!({
            "target": target,
            "median_s": med,
            "min_s": t.min(),
            "iters": t.times.len(),
            "tokens_per_s": tokens as f64 / med,
        });
        if let Some(p) = t.peak_mib {
            let key = if self.dev.is_cpu() {
                "peak_rss_growth_mib"
            } else {
                "device_mem_used_mib"
            };
            v[key] = json!(p);
        }
        if !self.dev.is_cpu() {
            v["tflops"] = json!(flops / med / 1e12);
            v["mfu"] = json!(flops / med / (self.peak_tflops * 1e12));
        }
        if let Value::Object(m) = extra {
            for (k, x) in m {
                v[k] = x;
            }
        }
        v
    }

    fn sampler(&self, temperature: f64) -> SamplerConfig {
        SamplerConfig {
            gen_length: self.args.gen,
            steps: self.args.steps,
            block_length: Some(self.args.block),
            temperature,
            ..SamplerConfig::default()
        }
    }

    fn forward(&self) -> Result<Value> {
        let a = self.args;
        let model = self.model(false)?;
        let x = ids(
            a.forward_batch,
            a.forward_len,
            self.cfg.vocab_size,
            0,
            &self.dev,
        )?;
        let t = time(a, &self.dev, || {
            model.forward(&x, None)?;
            Ok(())
        })?;
        let n = a.forward_batch * a.forward_len;
        let flops = forward_flops(&self.cfg, a.forward_batch, a.forward_len, n);
        Ok(self.report(
            "forward",
            &t,
            n,
            flops,
            json!({"batch": a.forward_batch, "len": a.forward_len}),
        ))
    }

    fn generate(&self, temperature: f64) -> Result<Value> {
        let a = self.args;
        let model = self.model(false)?;
        let prompts: Vec<Vec<u32>> =
            ids(a.batch, a.prompt, self.cfg.vocab_size, 3, &Device::Cpu)?.to_vec2()?;
        let cfg = self.sampler(temperature);
        let mut nfe = 0;
        let mut first: Option<Vec<Vec<u32>>> = None;
        let mut same = true;
        let t = time(a, &self.dev, || {
            let out = generate(&model, &prompts, &cfg, GenerateOptions::default())?;
            nfe = out.nfe;
            match &first {
                None => first = Some(out.completions),
                Some(f) => same &= *f == out.completions,
            }
            Ok(())
        })?;
        let l = a.prompt + a.gen;
        // Each forward runs the whole canvas; the head sees at most one block's candidates.
        let flops = nfe as f64 * forward_flops(&self.cfg, a.batch, l, 0)
            + nfe as f64 * forward_flops(&self.cfg, 0, 0, a.batch * a.block);
        let name = if temperature > 0.0 {
            "generate_t1"
        } else {
            "generate"
        };
        let tokens_hash = first
            .iter()
            .flatten()
            .flatten()
            .fold(0xcbf29ce484222325u64, |h, &t| {
                (h ^ u64::from(t)).wrapping_mul(0x100000001b3)
            });
        Ok(self.report(
            name,
            &t,
            a.batch * a.gen,
            flops,
            json!({
                "batch": a.batch, "prompt": a.prompt, "gen": a.gen, "steps": a.steps,
                "block": a.block, "temperature": temperature, "nfe": nfe,
                "tokens_fnv1a": format!("{tokens_hash:016x}"), "repeatable": same,
                "completions": if temperature == 0.0 { json!(first) } else { Value::Null },
            }),
        ))
    }

    /// d1 estimator forward + backward on every weight (full finetuning), timed as a whole
    /// and split into its forward and backward halves.
    fn d1(&self) -> Result<Value> {
        let a = self.args;
        let model = self.model(true)?;
        let prompt = ids(a.train_batch, a.prompt, self.cfg.vocab_size, 1, &self.dev)?;
        let completion = ids(a.train_batch, a.gen, self.cfg.vocab_size, 2, &self.dev)?;
        let mut fwd = Vec::new();
        let mut bwd = Vec::new();
        let t = time(a, &self.dev, || {
            let t0 = Instant::now();
            let est = logp_d1(&model, &prompt, &completion, 0.15, 1, None)?;
            let loss = est.logp.mean_all()?.neg()?;
            sync(&self.dev)?;
            let t1 = Instant::now();
            let grads = remat::backward(&loss)?;
            sync(&self.dev)?;
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push(t1.elapsed().as_secs_f64());
            drop(grads);
            Ok(())
        })?;
        let skip = fwd.len() - t.times.len();
        let med = |v: &[f64]| {
            Timing {
                times: v[skip..].to_vec(),
                peak_mib: None,
            }
            .median()
        };
        let l = a.prompt + a.gen;
        let flops = 3.0 * forward_flops(&self.cfg, a.train_batch, l, a.train_batch * a.gen);
        Ok(self.report(
            "d1",
            &t,
            a.train_batch * l,
            flops,
            json!({
                "batch": a.train_batch, "prompt": a.prompt, "gen": a.gen,
                "forward_s": med(&fwd), "backward_s": med(&bwd),
                "trainable": model.trainable_vars().len(),
            }),
        ))
    }

    /// CJ-GRPO trajectory step: a canvas with half the completion masked, log-probs at the
    /// positions committed in that step (`gen / steps` per row), backward on every weight.
    fn cj(&self) -> Result<Value> {
        let a = self.args;
        let model = self.model(true)?;
        let l = a.prompt + a.gen;
        let mask = self.cfg.mask_token_id.context("shape has no mask id")?;
        let target = ids(a.train_batch, l, self.cfg.vocab_size, 5, &Device::Cpu)?;
        let mut state: Vec<Vec<u32>> = target.to_vec2()?;
        let per = (a.gen / a.steps.max(1)).max(1);
        let mut committed = vec![vec![0u32; l]; a.train_batch];
        for r in 0..a.train_batch {
            for j in 0..a.gen / 2 {
                state[r][a.prompt + a.gen / 2 + j] = mask;
            }
            for j in 0..per.min(a.gen / 2) {
                committed[r][a.prompt + a.gen / 2 + 2 * j % (a.gen / 2)] = 1;
            }
        }
        let flat = |m: Vec<Vec<u32>>| -> Result<Tensor> {
            Ok(Tensor::from_vec(
                m.into_iter().flatten().collect::<Vec<_>>(),
                (a.train_batch, l),
                &self.dev,
            )?)
        };
        let state = flat(state)?;
        let committed = flat(committed)?;
        let target = target.to_device(&self.dev)?;
        let t = time(a, &self.dev, || {
            let est = logp_step(&model, &state, &target, &committed, None)?;
            let loss = est.logp.sum_all()?.neg()?;
            drop(remat::backward(&loss)?);
            Ok(())
        })?;
        let flops = 3.0 * forward_flops(&self.cfg, a.train_batch, l, a.train_batch * per);
        Ok(self.report(
            "cj",
            &t,
            a.train_batch * l,
            flops,
            json!({"batch": a.train_batch, "len": l, "committed_per_row": per}),
        ))
    }

    /// One LoRA d1 step as diffu-GRPO takes it: estimator, clipped surrogate, backward, AdamW.
    fn lora(&self) -> Result<Value> {
        let a = self.args;
        let lcfg = LoraConfig {
            r: a.lora_r,
            alpha: 2.0 * a.lora_r as f64,
            dropout: 0.0,
            ..LoraConfig::default()
        };
        let model = self
            .model(false)?
            .add_lora(&lcfg)?
            .with_checkpointing(a.checkpointing);
        let mut opt = AdamW::new(
            model.trainable_vars(),
            AdamWConfig::default(),
            Schedule::Constant,
        )?;
        let prompt = ids(a.train_batch, a.prompt, self.cfg.vocab_size, 1, &self.dev)?;
        let completion = ids(a.train_batch, a.gen, self.cfg.vocab_size, 2, &self.dev)?;
        let old = logp_d1(
            &model.with_checkpointing(false),
            &prompt,
            &completion,
            0.15,
            1,
            None,
        )?
        .logp
        .detach();
        let adv: Vec<f32> = (0..a.train_batch)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let adv = Tensor::from_vec(adv, a.train_batch, &self.dev)?;
        let t = time(a, &self.dev, || {
            let est = logp_d1(&model, &prompt, &completion, 0.15, 1, None)?;
            let out = clipped_surrogate(
                &est.logp,
                &old,
                &adv,
                &est.mask,
                0.2,
                0.2,
                RatioLevel::Token,
            )?;
            let loss = reduce(&out.loss, &est.mask, Reduction::TokenMean)?;
            let grads = remat::backward(&loss)?;
            opt.step_with(&grads)?;
            Ok(())
        })?;
        let l = a.prompt + a.gen;
        let passes = if a.checkpointing { 4.0 } else { 3.0 };
        let flops = passes * forward_flops(&self.cfg, a.train_batch, l, a.train_batch * a.gen);
        Ok(self.report(
            "lora",
            &t,
            a.train_batch * l,
            flops,
            json!({
                "batch": a.train_batch, "prompt": a.prompt, "gen": a.gen, "r": a.lora_r,
                "checkpointing": a.checkpointing,
            }),
        ))
    }

    /// The golden logits in this dtype on this device, and every sampler case in f32.
    fn parity(&self) -> Result<Value> {
        let dir = &self.args.fixtures;
        let load = |dtype: DType| -> Result<Llada> {
            let opts = LoadOptions {
                device: self.dev.clone(),
                dtype,
                trainable: false,
            };
            Llada::load(&dir.join("llada-tiny"), &opts)
        };
        let model = load(self.dtype)?;
        let mut logits = serde_json::Map::new();
        for name in ["logits_plain", "logits_padded"] {
            let path = dir.join(format!("{name}.safetensors"));
            let g = candle_core::safetensors::load(&path, &Device::Cpu)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mask = g.get("attention_mask");
            let got = model
                .forward(
                    &g["input_ids"].to_device(&self.dev)?,
                    mask.map(|m| m.to_device(&self.dev)).transpose()?.as_ref(),
                )?
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?;
            let mut diff = (got - &g["logits"])?.abs()?;
            if let Some(m) = mask {
                diff = diff.broadcast_mul(&m.to_dtype(DType::F32)?.unsqueeze(2)?)?;
            }
            let d = diff.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            logits.insert(name.to_string(), json!(d));
        }
        let f32_model = load(DType::F32)?;
        let text = std::fs::read_to_string(dir.join("samplers.json"))
            .with_context(|| format!("cannot read {}", dir.join("samplers.json").display()))?;
        let g: Value = serde_json::from_str(&text)?;
        let mask_id = g["mask_id"]
            .as_u64()
            .context("samplers.json has no mask_id")? as u32;
        let (mut pass, mut fail) = (0, Vec::new());
        for case in g["cases"]
            .as_array()
            .context("samplers.json has no cases")?
        {
            let name = case["name"].as_str().unwrap_or("?").to_string();
            let cfg = golden::case_config(case)?;
            let canvas = golden::case_canvas(case, cfg.gen_length, mask_id)?;
            let out = generate_canvas(&f32_model, canvas, &cfg, None)?;
            let want = golden::case_ids(case, "output_ids")?;
            let nfe_ok = case["params"]["nfe"]
                .as_u64()
                .or(case["nfe"].as_u64())
                .is_none_or(|n| n == out.nfe as u64);
            if out.canvas == want && nfe_ok {
                pass += 1;
            } else {
                fail.push(name);
            }
        }
        Ok(json!({
            "target": "parity",
            "dtype": format!("{:?}", self.dtype),
            "logits_max_abs_diff": logits,
            "sampler_cases_passed": pass,
            "sampler_cases_failed": fail,
        }))
    }
}

/// Runs the benchmark targets of `args`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let dev = parse_device(&args.device)?;
    let dtype = match &args.dtype {
        Some(d) => parse_dtype(d, &dev)?,
        None => default_dtype(&dev),
    };
    let cfg = match &args.model {
        Some(dir) => Config::from_file(&dir.join("config.json"))?,
        None => shape(&args.shape)?,
    };
    let policy = workbench_core::threads::policy();
    let ctx = Ctx {
        args,
        cfg,
        dev,
        dtype,
        peak_tflops: args.peak_tflops.unwrap_or(989.0),
    };
    let mut results = Vec::new();
    for target in args
        .targets
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let v = match target {
            "forward" => ctx.forward()?,
            "generate" => ctx.generate(0.0)?,
            "generate_t1" => ctx.generate(1.0)?,
            "d1" => ctx.d1()?,
            "cj" => ctx.cj()?,
            "lora" => ctx.lora()?,
            "parity" => ctx.parity()?,
            other => bail!(
                "unknown bench target `{other}`: expected forward, generate, generate_t1, d1, \
                 cj, lora or parity"
            ),
        };
        println!("{v}");
        results.push(v);
    }
    if let Some(path) = &args.json {
        let report = json!({
            "shape": args.shape,
            "params": ctx.cfg.num_params(),
            "device": args.device,
            "dtype": format!("{dtype:?}"),
            "threads": {"compute": policy.compute, "elementwise": policy.elementwise},
            "results": results,
        });
        workbench_core::fsio::write_atomic(
            path,
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
    }
    Ok(())
}

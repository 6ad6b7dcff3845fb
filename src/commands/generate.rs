//! `workbench generate`: batch generation from `--prompt` or a JSONL of requests, with every
//! sampler setting as a flag. Requests of different lengths share a batch with left padding;
//! each request's random stream is seeded by its index, so results do not depend on
//! `--batch-size`.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use workbench_core::device::{default_device, resolve};
use workbench_core::error_report::render_at;
use workbench_core::fsio::LineSink;
use workbench_core::model::ids::{check_id, check_ids};
use workbench_core::model::{resolve_model_dir, Llada, LoadOptions};
use workbench_core::sampler::{self, Eoser, GenerateRequest, PromptInput, SamplerConfig};
use workbench_core::term::PlainProgress;
use workbench_core::tokenizer::Tokenizer;

/// Arguments of `workbench generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Checkpoint directory or Hugging Face repo id (local cache).
    #[arg(long)]
    pub model: String,
    /// One prompt text.
    #[arg(long, conflicts_with = "input")]
    pub prompt: Option<String>,
    /// JSONL requests: {"id", "prompt"} or {"id", "prompt_ids"}, optional "hints" {"offset": id}.
    #[arg(long = "in", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Apply the chat template (one user turn, generation prompt) to text prompts.
    #[arg(long)]
    pub chat: bool,
    /// Text appended after the (templated) prompt, e.g. "<reasoning>" as d1's evaluation does.
    #[arg(long)]
    pub prefill: Option<String>,
    /// Output JSONL (default or `-`: stdout). Results are appended to a temp file as batches
    /// finish, which is renamed into place at the end or when interrupted (Ctrl-C, SIGTERM).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Requests per batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Seed of the sampler's per-row generators.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fail on the first malformed request line instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Device: cpu, cuda, cuda:N (default: CUDA when built with it and present).
    #[arg(long)]
    pub device: Option<String>,
    /// Compute dtype: f32, bf16, f64 (default: f32 on CPU, bf16 on CUDA).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Generated tokens per row.
    #[arg(long)]
    pub gen_length: Option<usize>,
    /// Total denoising steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Semi-autoregressive block length.
    #[arg(long)]
    pub block_length: Option<usize>,
    /// Number of ASS blocks (with --schedule ass).
    #[arg(long)]
    pub block_num: Option<usize>,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// low_confidence, random, margin or entropy.
    #[arg(long)]
    pub remasking: Option<String>,
    /// linear, maskgit_linear, maskgit_cosine or ass.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Classifier-free guidance scale.
    #[arg(long)]
    pub cfg_scale: Option<f64>,
    /// EOS logit to −inf before choosing candidates.
    #[arg(long)]
    pub logits_eos_inf: bool,
    /// Confidence −inf where the candidate is EOS or EoT.
    #[arg(long)]
    pub confidence_eos_eot_inf: bool,
    /// MDPO running confidence remasking.
    #[arg(long)]
    pub rcr: bool,
    /// EOS early rejection with γ rising from MIN to MAX, e.g. 0.4,1.0.
    #[arg(long, value_name = "MIN,MAX")]
    pub eoser_gamma: Option<String>,
    /// Fast-dLLM parallel decoding threshold.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// KV cache mode: none, prefix, dual.
    #[arg(long)]
    pub cache: Option<String>,
    /// Fill the rest with EOS once a block is all EOS (IGPO).
    #[arg(long)]
    pub eos_early_exit: bool,
}

impl GenerateArgs {
    /// The sampler config these flags describe (validated, conflicts named).
    pub fn sampler_config(&self, eot: Option<u32>) -> Result<SamplerConfig> {
        for (flag, v) in [
            ("--temperature", self.temperature),
            ("--cfg-scale", self.cfg_scale),
            ("--threshold", self.threshold),
        ] {
            if let Some(v) = v.filter(|v| !v.is_finite()) {
                bail!("{flag} {v}: expected a finite number");
            }
        }
        let d = SamplerConfig::default();
        let eoser = match &self.eoser_gamma {
            None => None,
            Some(g) => {
                let parts: Vec<&str> = g.split(',').collect();
                let parsed: Vec<f64> = parts.iter().filter_map(|p| p.trim().parse().ok()).collect();
                if parsed.len() != 2 || parts.len() != 2 || parsed.iter().any(|g| !g.is_finite()) {
                    bail!("--eoser-gamma {g}: expected MIN,MAX (two numbers)");
                }
                Some(Eoser {
                    gamma_min: parsed[0],
                    gamma_max: parsed[1],
                })
            }
        };
        let cfg = SamplerConfig {
            gen_length: self.gen_length.unwrap_or(d.gen_length),
            steps: self.steps.unwrap_or(d.steps),
            block_length: self.block_length,
            block_num: self.block_num,
            temperature: self.temperature.unwrap_or(d.temperature),
            remasking: variant("--remasking", &self.remasking)?.unwrap_or(d.remasking),
            schedule: variant("--schedule", &self.schedule)?.unwrap_or(d.schedule),
            cfg_scale: self.cfg_scale.unwrap_or(d.cfg_scale),
            threshold: self.threshold,
            cache: variant("--cache", &self.cache)?.unwrap_or(d.cache),
            eoser,
            logits_eos_inf: self.logits_eos_inf,
            confidence_eos_eot_inf: self.confidence_eos_eot_inf,
            rcr: self.rcr,
            eos_early_exit: self.eos_early_exit,
            seed: self.seed,
            eot_id: eot,
            ..d
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The enum value a flag names as the user spells it (`--cache prefix`); an unknown one is an
/// error naming the flag and the accepted values.
fn variant<T: serde::de::DeserializeOwned>(flag: &str, v: &Option<String>) -> Result<Option<T>> {
    v.as_ref()
        .map(|s| {
            serde_json::from_value(Value::String(s.clone()))
                .map_err(|e| anyhow::anyhow!("{flag} {s}: {e}"))
        })
        .transpose()
}

/// One parsed request.
struct Request {
    id: Value,
    ids: Vec<u32>,
    hints: HashMap<usize, u32>,
    index: usize,
}

fn parse_request(
    line: &str,
    index: usize,
    encode: &dyn Fn(&str) -> Result<Vec<u32>>,
) -> Result<Request> {
    let v: Value = serde_json::from_str(line).context("not valid JSON")?;
    let obj = v.as_object().context("expected a JSON object")?;
    let id = obj.get("id").cloned().unwrap_or(json!(index));
    let ids = match (obj.get("prompt"), obj.get("prompt_ids")) {
        (Some(Value::String(p)), None) => encode(p)?,
        (None, Some(Value::Array(a))) => a
            .iter()
            .map(|t| {
                t.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .context("`prompt_ids` must hold token ids")
            })
            .collect::<Result<_>>()?,
        (Some(_), Some(_)) => bail!("give either `prompt` or `prompt_ids`, not both"),
        _ => bail!("missing `prompt` (a string) or `prompt_ids` (an array of ids)"),
    };
    let mut hints = HashMap::new();
    if let Some(h) = obj.get("hints") {
        let h = h
            .as_object()
            .context("`hints` must be an object {\"offset\": token_id}")?;
        for (k, t) in h {
            let off: usize = k
                .parse()
                .with_context(|| format!("hint key `{k}` is not an offset"))?;
            let tok = t
                .as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .with_context(|| format!("hint `{k}` is not a token id"))?;
            hints.insert(off, tok);
        }
    }
    Ok(Request {
        id,
        ids,
        hints,
        index,
    })
}

/// Runs the command.
pub fn run(args: &GenerateArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    crate::commands::run::install_interrupts();
    let dir = resolve_model_dir(&args.model)?;
    let (device, dtype) = resolve(
        args.device.as_deref(),
        args.dtype.as_deref(),
        default_device(),
    )?;
    let tok = Tokenizer::load_if_present(&dir)?;
    let cfg = args.sampler_config(tok.as_ref().and_then(|t| t.special().eot))?;
    let model = Llada::load(
        &dir,
        &LoadOptions {
            device,
            dtype,
            trainable: false,
        },
    )?;
    let prefill = args.prefill.clone().unwrap_or_default();
    let encode = |text: &str| -> Result<Vec<u32>> {
        let tok = tok
            .as_ref()
            .context("text prompts need tokenizer.json in the checkpoint; use prompt_ids")?;
        sampler::render_prompt(tok, text, args.chat, &prefill)
    };
    let mcfg = model.config();
    // Checked per request before anything is allocated for it: one bad line costs only itself.
    let vocab = mcfg.vocab_size;
    let admit = |r: &Request| -> Result<()> {
        check_ids(r.ids.iter().map(|&t| i64::from(t)), vocab).context("prompt")?;
        for (&off, &t) in &r.hints {
            check_id(i64::from(t), vocab).with_context(|| format!("hint `{off}`"))?;
            if off >= cfg.gen_length {
                bail!(
                    "hint offset {off} is outside the generation (gen_length {})",
                    cfg.gen_length
                );
            }
        }
        sampler::guard::check_length(mcfg, r.ids.len(), cfg.gen_length)
    };
    let mut requests = Vec::new();
    match (&args.prompt, &args.input) {
        (Some(p), None) => {
            let r = Request {
                id: json!(0),
                ids: encode(p)?,
                hints: HashMap::new(),
                index: 0,
            };
            admit(&r).context("--prompt")?;
            requests.push(r);
        }
        (None, Some(path)) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let mut reader = std::io::BufReader::new(f);
            let mut buf = Vec::new();
            let mut n = 0;
            loop {
                buf.clear();
                let got = reader
                    .read_until(b'\n', &mut buf)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if got == 0 {
                    break;
                }
                n += 1;
                let at = format!("{}:{n}", path.display());
                let parsed = std::str::from_utf8(&buf)
                    .context("not valid UTF-8")
                    .and_then(|line| {
                        if line.trim().is_empty() {
                            return Ok(None);
                        }
                        let r = parse_request(line, requests.len(), &encode)?;
                        admit(&r)?;
                        Ok(Some(r))
                    });
                match parsed {
                    Ok(Some(r)) => requests.push(r),
                    Ok(None) => {}
                    Err(e) if args.strict => return Err(e.context(at)),
                    Err(e) => eprintln!("warning: {at}: skipped: {}", render_at(&at, &e)),
                }
            }
        }
        _ => bail!("give exactly one of --prompt TEXT or --in requests.jsonl"),
    }
    let total = requests.len();
    let bar = workbench_core::term::progress_bar(Some(total as u64), 0, "requests");
    let mut plain = PlainProgress::new("generate", Some(total as u64));
    // Results are appended as batches finish; the file appears at the end (or at an interrupt).
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("-"));
    let mut sink = LineSink::create(&out)?;
    for s in sink.stale() {
        eprintln!("warning: {s}");
    }
    let mut failure = None;
    for chunk in requests.chunks(args.batch_size) {
        let done = (|| -> Result<()> {
            workbench_core::cancel::check()?;
            let prompts: Vec<PromptInput> = chunk
                .iter()
                .map(|r| PromptInput::Ids(r.ids.clone()))
                .collect();
            let req = GenerateRequest {
                hints: Some(chunk.iter().map(|r| r.hints.clone()).collect()),
                row_seeds: Some(chunk.iter().map(|r| r.index as u64).collect()),
                ..GenerateRequest::default()
            };
            let gen = sampler::generate_rollout(&model, tok.as_ref(), &prompts, &cfg, &req, None)?;
            for (i, (r, completion)) in chunk.iter().zip(&gen.completion).enumerate() {
                let text = gen.texts.get(i).cloned().unwrap_or_default();
                sink.push(
                    &json!({"id": r.id, "output_ids": completion, "text": text, "nfe": gen.nfe})
                        .to_string(),
                )?;
            }
            Ok(())
        })();
        if let Err(e) = done {
            failure = Some(e);
            break;
        }
        bar.inc(chunk.len() as u64);
        plain.tick(sink.lines() as u64, &[]);
    }
    bar.finish_and_clear();
    let written = sink.finish()?;
    let place = if out.as_os_str() == "-" {
        "stdout".to_string()
    } else {
        out.display().to_string()
    };
    if let Some(e) = failure {
        return Err(e.context(format!(
            "stopped after {written} of {total} generations (kept in {place})"
        )));
    }
    if args.out.is_some() {
        eprintln!("wrote {written} generations to {place}");
    }
    Ok(())
}

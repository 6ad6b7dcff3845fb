//! `generate`: the sampler engine from scripts, with optional Rhai hooks for the per-step
//! schedule and scores, and the recorded `Trajectory`.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Tensor;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, FnPtr, Map, NativeCallContext};
use workbench_core::sampler::{self, Canvas, SamplerConfig, SamplerHooks, Trajectory};
use workbench_core::tokenizer::ChatMessage;

use super::convert::{dynamic_to_json, err, script_err, RResult};
use super::model::ScriptModel;
use super::tensor::ScriptTensor;

/// The result of `generate`.
#[derive(Clone)]
pub struct Generation {
    /// Per row, unpadded prompt ++ generation.
    pub ids: Vec<Vec<u32>>,
    /// Per row, the generation region.
    pub completions: Vec<Vec<u32>>,
    /// Per row, the decoded completion (special tokens dropped), when a tokenizer is known.
    pub texts: Vec<String>,
    /// Forward passes taken.
    pub nfe: usize,
    /// The trajectory, when `record` was set.
    pub trajectory: Option<Arc<Trajectory>>,
    /// Length of the padded prompt part of trajectory states.
    pub prompt_len: usize,
    /// Per row, the final canvas: left padding ++ prompt ++ generation.
    pub canvas: Vec<Vec<u32>>,
    /// Per row, 1 for real tokens and 0 for left padding (same shape as `canvas`).
    pub attention: Vec<Vec<u8>>,
}

/// A recorded trajectory (per step: input state, commits, prediction x̂0, confidences).
#[derive(Clone)]
pub struct ScriptTrajectory(pub Arc<Trajectory>, pub usize);

/// Keys of the `generate` options that are not sampler-config fields.
const EXTRA_KEYS: &[&str] = &[
    "chat",
    "prefill",
    "repeat",
    "hints",
    "row_seeds",
    "schedule_fn",
    "score_fn",
];

/// Rhai functions as sampler hooks; they are called with whole-batch values once per step.
struct ScriptHooks<'a, 'b> {
    ctx: &'a NativeCallContext<'b>,
    schedule: Option<FnPtr>,
    score: Option<FnPtr>,
}

impl SamplerHooks for ScriptHooks<'_, '_> {
    fn schedule(&mut self, step: usize, remaining: &[usize]) -> anyhow::Result<Option<Vec<usize>>> {
        let Some(f) = &self.schedule else {
            return Ok(None);
        };
        let rem: Array = remaining.iter().map(|&n| Dynamic::from(n as i64)).collect();
        let out: Dynamic = f
            .call_within_context(self.ctx, (step as i64, rem))
            .map_err(|e| anyhow::anyhow!("schedule hook failed at step {step}: {e}"))?;
        if out.is_unit() {
            return Ok(None);
        }
        let arr = out.try_cast::<Array>().ok_or_else(|| {
            anyhow::anyhow!("schedule hook must return an array of counts (one per row) or ()")
        })?;
        let counts = arr
            .iter()
            .map(|v| {
                v.as_int()
                    .ok()
                    .and_then(|i| usize::try_from(i).ok())
                    .ok_or_else(|| anyhow::anyhow!("schedule hook returned a non-count {v}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(counts))
    }

    fn score(
        &mut self,
        step: usize,
        confidence: &Tensor,
        candidates: &Tensor,
    ) -> anyhow::Result<Option<Tensor>> {
        let Some(f) = &self.score else {
            return Ok(None);
        };
        let out: Dynamic = f
            .call_within_context(
                self.ctx,
                (
                    step as i64,
                    ScriptTensor::new(confidence.clone()),
                    ScriptTensor::new(candidates.clone()),
                ),
            )
            .map_err(|e| anyhow::anyhow!("score hook failed at step {step}: {e}"))?;
        if out.is_unit() {
            return Ok(None);
        }
        let t = out.try_cast::<ScriptTensor>().ok_or_else(|| {
            anyhow::anyhow!("score hook must return a Tensor [B, gen_length] or ()")
        })?;
        Ok(Some(t.t))
    }
}

fn prompt_ids(model: &ScriptModel, p: &Dynamic, chat: bool, prefill: &str) -> RResult<Vec<u32>> {
    if p.is_string() {
        let text = p.clone().into_string().unwrap_or_default();
        let tok = model.tokenizer.as_ref().ok_or_else(|| {
            err("generate: text prompts need a model with a tokenizer; pass token ids instead")
        })?;
        let rendered = if chat {
            tok.chat(
                &[ChatMessage {
                    role: "user".into(),
                    content: text,
                }],
                true,
            )
            .map_err(script_err)?
        } else {
            text
        };
        return tok.encode(&(rendered + prefill)).map_err(script_err);
    }
    let arr = p.clone().try_cast::<Array>().ok_or_else(|| {
        err(format!(
            "generate: a prompt must be a string or an array of token ids, found {}",
            p.type_name()
        ))
    })?;
    arr.iter()
        .map(|v| {
            v.as_int()
                .ok()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| err(format!("generate: bad token id {v}")))
        })
        .collect()
}

fn hints_of(v: &Dynamic, rows: usize) -> RResult<Vec<HashMap<usize, u32>>> {
    let arr = v
        .clone()
        .try_cast::<Array>()
        .ok_or_else(|| err("generate: `hints` must be an array (one map per row)"))?;
    if arr.len() != rows {
        return Err(err(format!(
            "generate: {} hint maps for {rows} rows",
            arr.len()
        )));
    }
    arr.iter()
        .map(|m| {
            let m = m.clone().try_cast::<Map>().ok_or_else(|| {
                err("generate: each hints entry must be a map #{ \"offset\": token }")
            })?;
            m.iter()
                .map(|(k, t)| {
                    let off = k
                        .parse::<usize>()
                        .map_err(|_| err(format!("generate: hint key `{k}` is not an offset")))?;
                    let tok = t
                        .as_int()
                        .ok()
                        .and_then(|i| u32::try_from(i).ok())
                        .ok_or_else(|| err(format!("generate: hint token {t} is not an id")))?;
                    Ok((off, tok))
                })
                .collect()
        })
        .collect()
}

fn ids_array(rows: &[Vec<u32>]) -> Array {
    rows.iter()
        .map(|r| Dynamic::from_array(r.iter().map(|&t| Dynamic::from(i64::from(t))).collect()))
        .collect()
}

#[export_module]
mod sampler_api {
    use super::*;

    /// Generates completions for `prompts` (strings, or arrays of token ids) with the sampler
    /// configured by `cfg`: any sampler field (`gen_length`, `steps`, `block_length`,
    /// `block_num`, `temperature`, `remasking`, `schedule`, `cfg_scale`, `logits_eos_inf`,
    /// `confidence_eos_eot_inf`, `rcr`, `eoser: #{gamma_min, gamma_max}`, `threshold`,
    /// `cache`, `eos_early_exit`, `record`, `seed`) plus: `chat` (apply the chat template to
    /// string prompts), `prefill` (text appended after it, e.g. `"<reasoning>"`), `repeat`
    /// (G copies of each prompt, a GRPO group, each with its own seed), `hints` (one map
    /// offset → token per row, IGPO inpainting), `row_seeds`, and the hooks
    /// `schedule_fn: |step, remaining| counts` and `score_fn: |step, confidence, candidates| scores`.
    #[rhai_fn(return_raw)]
    pub fn generate(
        ctx: NativeCallContext,
        model: &mut ScriptModel,
        prompts: Array,
        cfg: Map,
    ) -> RResult<Generation> {
        let chat = cfg
            .get("chat")
            .map(|v| v.as_bool().unwrap_or(false))
            .unwrap_or(false);
        let prefill = cfg
            .get("prefill")
            .and_then(|v| v.clone().into_string().ok())
            .unwrap_or_default();
        let repeat = match cfg.get("repeat") {
            None => 1,
            Some(v) => v
                .as_int()
                .ok()
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&g| g > 0)
                .ok_or_else(|| err("generate: `repeat` must be a positive integer"))?,
        };
        let mut sampler_map = Map::new();
        for (k, v) in &cfg {
            if !EXTRA_KEYS.contains(&k.as_str()) {
                sampler_map.insert(k.clone(), v.clone());
            }
        }
        if !sampler_map.contains_key("eot_id") {
            if let Some(eot) = model.tokenizer.as_ref().and_then(|t| t.special().eot) {
                sampler_map.insert("eot_id".into(), Dynamic::from(i64::from(eot)));
            }
        }
        let json = dynamic_to_json(&Dynamic::from_map(sampler_map));
        let scfg = SamplerConfig::from_json(&json.to_string())
            .map_err(|e| err(format!("generate: {e:#}")))?;
        if prompts.is_empty() {
            return Err(err("generate: no prompts"));
        }
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| prompt_ids(model, p, chat, &prefill))
            .collect::<RResult<_>>()?;
        let mcfg = model.model.config();
        let mask = mcfg
            .mask_token_id
            .ok_or_else(|| err("generate: the model config has no mask_token_id"))?;
        let pad = mcfg
            .pad_token_id
            .or(mcfg.eos_token_id)
            .ok_or_else(|| err("generate: the model config has no pad/eos id"))?;
        let mut canvas = Canvas::new(&ids, scfg.gen_length, pad, mask).map_err(script_err)?;
        if repeat > 1 {
            canvas = canvas.repeat(repeat);
        }
        let rows = canvas.batch_size();
        if let Some(h) = cfg.get("hints") {
            canvas = canvas.with_hints(&hints_of(h, rows)?).map_err(script_err)?;
        }
        if let Some(s) = cfg.get("row_seeds") {
            let arr = s
                .clone()
                .try_cast::<Array>()
                .ok_or_else(|| err("generate: `row_seeds` must be an array"))?;
            let seeds = arr
                .iter()
                .map(|v| {
                    v.as_int()
                        .map(|i| i as u64)
                        .map_err(|_| err("generate: row seeds must be integers"))
                })
                .collect::<RResult<Vec<_>>>()?;
            canvas = canvas.with_row_seeds(seeds).map_err(script_err)?;
        }
        let fnptr = |k: &str| -> RResult<Option<FnPtr>> {
            match cfg.get(k) {
                None => Ok(None),
                Some(v) => v.clone().try_cast::<FnPtr>().map(Some).ok_or_else(|| {
                    err(format!(
                        "generate: `{k}` must be a function (closure or Fn(\"name\"))"
                    ))
                }),
            }
        };
        let mut hooks = ScriptHooks {
            ctx: &ctx,
            schedule: fnptr("schedule_fn")?,
            score: fnptr("score_fn")?,
        };
        let use_hooks = hooks.schedule.is_some() || hooks.score.is_some();
        let attention = canvas.attention().to_vec();
        let out = sampler::generate_canvas(
            &model.model,
            canvas,
            &scfg,
            if use_hooks { Some(&mut hooks) } else { None },
        )
        .map_err(|e| err(format!("generate: {e:#}")))?;
        let texts = match &model.tokenizer {
            Some(t) => out
                .completions
                .iter()
                .map(|c| t.decode(c, true))
                .collect::<anyhow::Result<Vec<_>>>()
                .map_err(script_err)?,
            None => Vec::new(),
        };
        Ok(Generation {
            ids: out.ids,
            completions: out.completions,
            texts,
            nfe: out.nfe,
            trajectory: out.trajectory.map(Arc::new),
            prompt_len: out.prompt_len,
            canvas: out.canvas,
            attention,
        })
    }
    /// Per row, the unpadded prompt ++ generation (arrays of ids).
    #[rhai_fn(get = "ids", pure)]
    pub fn ids(g: &mut Generation) -> Array {
        ids_array(&g.ids)
    }
    /// Per row, the generated region (arrays of ids).
    #[rhai_fn(get = "completions", pure)]
    pub fn completions(g: &mut Generation) -> Array {
        ids_array(&g.completions)
    }
    /// Per row, the decoded completion without special tokens (empty without a tokenizer).
    #[rhai_fn(get = "texts", pure)]
    pub fn texts(g: &mut Generation) -> Array {
        g.texts.iter().map(|t| Dynamic::from(t.clone())).collect()
    }
    /// The final canvas [B, P + L] (u32): left padding ++ prompt ++ generation, as the
    /// estimators take it.
    #[rhai_fn(get = "canvas", return_raw)]
    pub fn gen_canvas(g: &mut Generation) -> RResult<ScriptTensor> {
        rows_tensor(&g.canvas, 0, None)
    }
    /// The left-padded prompts [B, P] (u32), P = `prompt_len`.
    #[rhai_fn(get = "prompt_ids", return_raw)]
    pub fn gen_prompt_ids(g: &mut Generation) -> RResult<ScriptTensor> {
        rows_tensor(&g.canvas, 0, Some(g.prompt_len))
    }
    /// The generated regions [B, L] (u32).
    #[rhai_fn(get = "completion_ids", return_raw)]
    pub fn completion_ids(g: &mut Generation) -> RResult<ScriptTensor> {
        rows_tensor(&g.canvas, g.prompt_len, None)
    }
    /// Key-padding mask [B, P + L] (u32: 1 real, 0 left padding) for the estimators'
    /// `attention_mask` option.
    #[rhai_fn(get = "attention_mask", return_raw)]
    pub fn attention_mask(g: &mut Generation) -> RResult<ScriptTensor> {
        let rows: Vec<Vec<u32>> = g
            .attention
            .iter()
            .map(|r| r.iter().map(|&x| u32::from(x)).collect())
            .collect();
        rows_tensor(&rows, 0, None)
    }
    /// Length P of the padded prompt part of the canvas.
    #[rhai_fn(get = "prompt_len")]
    pub fn gen_prompt_len(g: &mut Generation) -> i64 {
        g.prompt_len as i64
    }
    /// Number of forward passes the generation took.
    #[rhai_fn(get = "nfe", pure)]
    pub fn nfe(g: &mut Generation) -> i64 {
        g.nfe as i64
    }
    /// The recorded trajectory (`record: true`), or () when none was recorded.
    #[rhai_fn(get = "trajectory", pure)]
    pub fn trajectory(g: &mut Generation) -> Dynamic {
        match &g.trajectory {
            Some(t) => Dynamic::from(ScriptTrajectory(t.clone(), g.prompt_len)),
            None => Dynamic::UNIT,
        }
    }
    /// Number of recorded steps.
    #[rhai_fn(get = "num_steps", pure)]
    pub fn num_steps(t: &mut ScriptTrajectory) -> i64 {
        t.0.num_steps() as i64
    }
    /// Length of the (padded) prompt part of every state.
    #[rhai_fn(get = "prompt_len", pure)]
    pub fn prompt_len(t: &mut ScriptTrajectory) -> i64 {
        t.1 as i64
    }
    /// Input state x_s [B, L] (u32) of step `s`; `s == num_steps` gives the final canvas.
    #[rhai_fn(return_raw)]
    pub fn state(t: &mut ScriptTrajectory, s: i64) -> RResult<ScriptTensor> {
        t.0.state(s.max(0) as usize)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
    /// Positions committed at step `s`, as a [B, L] u8 mask.
    #[rhai_fn(return_raw)]
    pub fn committed(t: &mut ScriptTrajectory, s: i64) -> RResult<ScriptTensor> {
        t.0.committed(s.max(0) as usize)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
    /// The full prediction x̂0 of step `s` [B, L] (masked positions filled by that step's candidates).
    #[rhai_fn(return_raw)]
    pub fn prediction(t: &mut ScriptTrajectory, s: i64) -> RResult<ScriptTensor> {
        t.0.prediction(s.max(0) as usize)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
    /// Confidences of step `s` [B, L] (f32, −inf where nothing could be committed).
    #[rhai_fn(return_raw)]
    pub fn confidence(t: &mut ScriptTrajectory, s: i64) -> RResult<ScriptTensor> {
        t.0.confidence(s.max(0) as usize)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
}

/// Columns `[start, start + len)` (`len` None: to the end) of equal-length rows as a u32 tensor.
fn rows_tensor(rows: &[Vec<u32>], start: usize, len: Option<usize>) -> RResult<ScriptTensor> {
    let width = rows.first().map_or(0, Vec::len);
    let len = len.unwrap_or(width.saturating_sub(start));
    let flat: Vec<u32> = rows
        .iter()
        .flat_map(|r| r[start..start + len].iter().copied())
        .collect();
    candle_core::Tensor::from_vec(flat, (rows.len(), len), &candle_core::Device::Cpu)
        .map(ScriptTensor::new)
        .map_err(script_err)
}

/// Registers `generate`, `Generation` and `Trajectory`.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Generation>("Generation");
    engine.register_type_with_name::<ScriptTrajectory>("Trajectory");
    engine.register_global_module(exported_module!(sampler_api).into());
}

//! `generate` and its result, the `Rollout` noun: one call into the core's
//! `sampler::generate_rollout`, with optional Rhai hooks for the per-step schedule and scores.

use std::sync::Arc;

use candle_core::Tensor;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, FnPtr, Map, NativeCallContext};
use workbench_core::sampler::{
    generate_rollout, GenerateRequest, PromptInput, Rollout, SamplerConfig, SamplerHooks,
    Trajectory,
};

use super::convert::{err, fail, options2, script_err, take, usize_list, IntoScript, RResult};
use super::model::{ids_tensor, ScriptModel};
use super::tensor::ScriptTensor;

/// A batch of generated completions: prompts, completions, attention mask, group layout and
/// the optional trajectory (see `generate`).
#[derive(Clone)]
pub struct ScriptRollout(pub Arc<Rollout>);

/// A recorded trajectory (per step: input state, commits, prediction x̂0, confidences).
#[derive(Clone)]
pub struct ScriptTrajectory(pub Arc<Trajectory>, pub usize);

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
        let counts: Vec<usize> = rhai::serde::from_dynamic(&out).map_err(|_| {
            anyhow::anyhow!(
                "schedule hook must return an array of counts (one per row) or (), found {out}"
            )
        })?;
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

fn prompt_input(p: &Dynamic) -> RResult<PromptInput> {
    if p.is_string() {
        return Ok(PromptInput::Text(
            p.clone().into_string().unwrap_or_default(),
        ));
    }
    super::convert::to_json(p, "generate: a prompt (a string or an array of token ids)")
        .and_then(|v| {
            serde_json::from_value(v).map_err(|e| err(format!("generate: bad prompt ids: {e}")))
        })
        .map(PromptInput::Ids)
}

/// A plain list (ids, indices, texts) as a script array.
fn array<T: serde::Serialize + ?Sized>(v: &T) -> Array {
    rhai::serde::to_dynamic(v)
        .ok()
        .and_then(|d| d.try_cast())
        .unwrap_or_default()
}

#[export_module]
mod sampler_api {
    use super::*;

    /// Generates completions for `prompts` (strings, or arrays of token ids) and returns a
    /// `Rollout`. Options: every sampler field (`gen_length`, `steps`, `block_length`,
    /// `block_num`, `temperature`, `remasking`, `schedule`, `cfg_scale`, `logits_eos_inf`,
    /// `confidence_eos_eot_inf`, `eot_id`, `rcr`, `eoser: #{gamma_min, gamma_max}`,
    /// `threshold`, `cache`, `eos_early_exit`, `record`, `seed`), plus `chat` (apply the chat
    /// template to string prompts), `prefill` (text appended after it, e.g. `"<reasoning>"`),
    /// `repeat` (G copies of each prompt, a GRPO group, each with its own seed), `hints` (one map
    /// offset → token per row, IGPO inpainting), `row_seeds`, and the hooks
    /// `schedule_fn: |step, remaining| counts` and `score_fn: |step, confidence, candidates| scores`.
    /// An unknown option or a value of the wrong type is an error naming it.
    #[rhai_fn(return_raw)]
    pub fn generate(
        ctx: NativeCallContext,
        model: &mut ScriptModel,
        prompts: Array,
        cfg: Map,
    ) -> RResult<ScriptRollout> {
        let mut cfg = cfg;
        let mut hooks = ScriptHooks {
            ctx: &ctx,
            schedule: take::<FnPtr>(&mut cfg, "schedule_fn", "generate")?,
            score: take::<FnPtr>(&mut cfg, "score_fn", "generate")?,
        };
        let (req, scfg): (GenerateRequest, SamplerConfig) =
            options2("generate", cfg, GenerateRequest::KEYS)?;
        let prompts = prompts
            .iter()
            .map(prompt_input)
            .collect::<RResult<Vec<_>>>()?;
        let use_hooks = hooks.schedule.is_some() || hooks.score.is_some();
        let hooks: Option<&mut dyn SamplerHooks> = if use_hooks { Some(&mut hooks) } else { None };
        generate_rollout(
            &model.model,
            model.tokenizer.as_deref(),
            &prompts,
            &scfg,
            &req,
            hooks,
        )
        .map(|r| ScriptRollout(Arc::new(r)))
        .map_err(fail("generate"))
    }
    /// The left-padded prompts [B, P] (u32).
    #[rhai_fn(get = "prompt", return_raw)]
    pub fn prompt(r: &mut ScriptRollout) -> RResult<ScriptTensor> {
        r.0.prompt_tensor().script()
    }
    /// The left-padded prompts [B, P] (u32); same as `prompt`.
    #[rhai_fn(get = "prompt_ids", return_raw)]
    pub fn prompt_ids(r: &mut ScriptRollout) -> RResult<ScriptTensor> {
        r.0.prompt_tensor().script()
    }
    /// The generated regions [B, L] (u32).
    #[rhai_fn(get = "completion", return_raw)]
    pub fn completion(r: &mut ScriptRollout) -> RResult<ScriptTensor> {
        r.0.completion_tensor().script()
    }
    /// The generated regions [B, L] (u32); same as `completion`.
    #[rhai_fn(get = "completion_ids", return_raw)]
    pub fn completion_ids(r: &mut ScriptRollout) -> RResult<ScriptTensor> {
        r.0.completion_tensor().script()
    }
    /// Key-padding mask [B, P + L] (u32: 1 real, 0 left padding).
    #[rhai_fn(get = "attention", return_raw)]
    pub fn attention(r: &mut ScriptRollout) -> RResult<ScriptTensor> {
        r.0.attention_tensor().script()
    }
    /// Key-padding mask [B, P + L]; same as `attention`.
    #[rhai_fn(get = "attention_mask", return_raw)]
    pub fn attention_mask(r: &mut ScriptRollout) -> RResult<ScriptTensor> {
        r.0.attention_tensor().script()
    }
    /// The canvas [B, P + L] (u32): left padding ++ prompt ++ completion.
    #[rhai_fn(get = "canvas", return_raw)]
    pub fn canvas(r: &mut ScriptRollout) -> RResult<ScriptTensor> {
        r.0.canvas_tensor().script()
    }
    /// Per row, the unpadded prompt ++ completion (arrays of ids).
    #[rhai_fn(get = "ids", pure)]
    pub fn ids(r: &mut ScriptRollout) -> Array {
        array(&r.0.unpadded())
    }
    /// Per row, the completion (arrays of ids).
    #[rhai_fn(get = "completions", pure)]
    pub fn completions(r: &mut ScriptRollout) -> Array {
        array(&r.0.completion)
    }
    /// Per row, the decoded completion without special tokens (empty without a tokenizer).
    #[rhai_fn(get = "texts", pure)]
    pub fn texts(r: &mut ScriptRollout) -> Array {
        array(&r.0.texts)
    }
    /// Length P of the padded prompts.
    #[rhai_fn(get = "prompt_len", pure)]
    pub fn prompt_len(r: &mut ScriptRollout) -> i64 {
        r.0.prompt_len() as i64
    }
    /// Number of rows (completions).
    #[rhai_fn(get = "batch_size", pure)]
    pub fn batch_size(r: &mut ScriptRollout) -> i64 {
        r.0.batch_size() as i64
    }
    /// Consecutive rows per prompt (`repeat`; 1 after a selection that breaks groups).
    #[rhai_fn(get = "group", pure)]
    pub fn group(r: &mut ScriptRollout) -> i64 {
        r.0.group as i64
    }
    /// Per row, the index of the prompt (data row) it answers.
    #[rhai_fn(get = "prompt_index", pure)]
    pub fn prompt_index(r: &mut ScriptRollout) -> Array {
        array(&r.0.prompt_index)
    }
    /// Number of forward passes the generation took.
    #[rhai_fn(get = "nfe", pure)]
    pub fn nfe(r: &mut ScriptRollout) -> i64 {
        r.0.nfe as i64
    }
    /// The recorded trajectory (`record: true`), or () when none was recorded.
    #[rhai_fn(get = "trajectory", pure)]
    pub fn trajectory(r: &mut ScriptRollout) -> Dynamic {
        match &r.0.trajectory {
            Some(t) => Dynamic::from(ScriptTrajectory(t.clone(), r.0.prompt_len())),
            None => Dynamic::UNIT,
        }
    }
    /// The rollout of rows `rows` only (an array of row indices, in that order): prompts,
    /// completions, texts, prompt indices and the trajectory are all selected.
    #[rhai_fn(return_raw)]
    pub fn select(r: &mut ScriptRollout, rows: Array) -> RResult<ScriptRollout> {
        r.0.select(&usize_list(&rows, "select: rows")?)
            .map(|x| ScriptRollout(Arc::new(x)))
            .map_err(script_err)
    }
    /// The same prompts with other completions `ids` ([B, L], a Tensor or arrays of ids): the
    /// texts are dropped and so is the trajectory.
    #[rhai_fn(name = "with_completion", return_raw)]
    pub fn with_completion(r: &mut ScriptRollout, ids: Dynamic) -> RResult<ScriptRollout> {
        with_completion_texts(r, ids, Array::new())
    }
    /// `with_completion` with the completions' texts (one string per row).
    #[rhai_fn(name = "with_completion", return_raw)]
    pub fn with_completion_texts(
        r: &mut ScriptRollout,
        ids: Dynamic,
        texts: Array,
    ) -> RResult<ScriptRollout> {
        let rows: Vec<Vec<u32>> = ids_tensor(&ids, "with_completion: ids")?
            .to_dtype(candle_core::DType::U32)
            .and_then(|t| t.to_vec2())
            .map_err(script_err)?;
        let texts = texts
            .into_iter()
            .map(|t| t.into_string().map_err(err))
            .collect::<RResult<_>>()?;
        r.0.with_completion(rows, texts)
            .map(|x| ScriptRollout(Arc::new(x)))
            .map_err(script_err)
    }
    /// Number of recorded steps.
    #[rhai_fn(get = "num_steps", pure)]
    pub fn num_steps(t: &mut ScriptTrajectory) -> i64 {
        t.0.num_steps() as i64
    }
    /// Length of the (padded) prompt part of every state.
    #[rhai_fn(get = "prompt_len", pure)]
    pub fn traj_prompt_len(t: &mut ScriptTrajectory) -> i64 {
        t.1 as i64
    }
    /// Input state x_s [B, L] (u32) of step `s`; `s == num_steps` gives the final canvas.
    #[rhai_fn(return_raw)]
    pub fn state(t: &mut ScriptTrajectory, s: i64) -> RResult<ScriptTensor> {
        t.0.state(s.max(0) as usize).script()
    }
    /// Positions committed at step `s`, as a [B, L] u8 mask.
    #[rhai_fn(return_raw)]
    pub fn committed(t: &mut ScriptTrajectory, s: i64) -> RResult<ScriptTensor> {
        t.0.committed(s.max(0) as usize).script()
    }
    /// The full prediction x̂0 of step `s` [B, L] (masked positions filled by that step's candidates).
    #[rhai_fn(return_raw)]
    pub fn prediction(t: &mut ScriptTrajectory, s: i64) -> RResult<ScriptTensor> {
        t.0.prediction(s.max(0) as usize).script()
    }
    /// Confidences of step `s` [B, L] (f32, −inf where nothing could be committed).
    #[rhai_fn(return_raw)]
    pub fn confidence(t: &mut ScriptTrajectory, s: i64) -> RResult<ScriptTensor> {
        t.0.confidence(s.max(0) as usize).script()
    }
}

/// Registers `generate`, `Rollout` and `Trajectory`.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptRollout>("Rollout");
    engine.register_type_with_name::<ScriptTrajectory>("Trajectory");
    engine.register_global_module(exported_module!(sampler_api).into());
}

//! Judging a [`Rollout`] against its data rows, and greedy evaluation of a model on a task —
//! the same calls for text tasks (completions decoded by the tokenizer) and toy tasks
//! (completions decoded by the task's own [`Task::vocab`]), so no caller branches on the kind.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{PromptStyle, Task};
use crate::data::Example;
use crate::model::Llada;
use crate::sampler::{generate_rollout, GenerateRequest, PromptInput, Rollout, SamplerConfig};
use crate::tokenizer::Tokenizer;

/// The training rewards of a rollout's completions, one entry per row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Judgement {
    /// The task's training reward (`Reward::total`).
    pub rewards: Vec<f64>,
    /// Whether each completion is correct.
    pub correct: Vec<bool>,
    /// The answer extracted from each completion (`()` in scripts when none).
    pub extracted: Vec<Option<String>>,
}

/// Options of [`evaluate`] besides the sampler's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalRequest {
    /// Prompt convention (`d1_eval`: d1's evaluation prompts with their `<reasoning>` prefill).
    pub style: String,
    /// Rows per generation batch.
    pub batch: usize,
}

impl Default for EvalRequest {
    fn default() -> Self {
        EvalRequest {
            style: "d1_eval".into(),
            batch: 16,
        }
    }
}

impl EvalRequest {
    /// The option names of this struct (the rest of an evaluation options map is the sampler's).
    pub const KEYS: &'static [&'static str] = &["style", "batch"];
}

/// The result of [`evaluate`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalSummary {
    /// Rows evaluated.
    pub n: usize,
    /// Σ score·weight / Σ weight (accuracy; Sudoku: correct blanks / all blanks).
    pub accuracy: f64,
    /// Share of rows fully correct (Sudoku: solved puzzles).
    pub solved: f64,
    /// Per row, the evaluation score.
    pub scores: Vec<f64>,
}

/// The prompts of `rows` in `style`: token ids through the task's vocabulary for toy tasks,
/// else user texts to chat-template; and the request (chat, prefill) that renders them.
pub fn prompts_for(
    task: &dyn Task,
    rows: &[Example],
    style: PromptStyle,
) -> Result<(Vec<PromptInput>, GenerateRequest)> {
    let mut req = GenerateRequest {
        chat: task.vocab().is_none(),
        ..GenerateRequest::default()
    };
    let prompts = rows
        .iter()
        .map(|r| {
            let p = task.prompt(r, style)?;
            req.prefill = p.assistant_prefill;
            Ok(match task.vocab() {
                Some(v) => PromptInput::Ids(v.encode(&p.user).map_err(anyhow::Error::msg)?),
                None => PromptInput::Text(p.user),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((prompts, req))
}

/// The text each reward reads: the task's vocabulary decoding of the ids (toy tasks), else the
/// rollout's decoded texts.
pub fn completion_texts(task: &dyn Task, rollout: &Rollout) -> Result<Vec<String>> {
    match task.vocab() {
        Some(v) => Ok(rollout.completion.iter().map(|c| v.decode(c)).collect()),
        None if rollout.texts.len() == rollout.batch_size() => Ok(rollout.texts.clone()),
        None => bail!(
            "task `{}` judges text, but the rollout has no decoded texts (a model without a \
             tokenizer); use a toy task (`sudoku:toy`, `countdown:toy`) for token-level models",
            task.name()
        ),
    }
}

/// The training reward of every completion of `rollout`: row b answers
/// `rows[rollout.prompt_index[b]]`.
pub fn judge(task: &dyn Task, rows: &[Example], rollout: &Rollout) -> Result<Judgement> {
    let texts = completion_texts(task, rollout)?;
    let mut j = Judgement {
        rewards: Vec::new(),
        correct: Vec::new(),
        extracted: Vec::new(),
    };
    for (b, text) in texts.iter().enumerate() {
        let p = rollout.prompt_index[b];
        let row = rows.get(p).with_context(|| {
            format!(
                "rollout row {b} answers prompt {p}, but only {} data rows were given",
                rows.len()
            )
        })?;
        let r = task.reward(row, text)?;
        j.rewards.push(r.total);
        j.correct.push(r.correct);
        j.extracted.push(r.extracted);
    }
    Ok(j)
}

/// Generates for `rows` (prompts in `req.style`, `req.batch` rows at a time) with the sampler
/// `cfg` and scores each completion with `Task::evaluate`.
pub fn evaluate(
    task: &dyn Task,
    model: &Llada,
    tokenizer: Option<&Tokenizer>,
    rows: &[Example],
    cfg: &SamplerConfig,
    req: &EvalRequest,
) -> Result<EvalSummary> {
    let style = PromptStyle::from_name(&req.style)?;
    let (mut total, mut weight, mut solved) = (0.0, 0.0, 0usize);
    let mut scores = Vec::with_capacity(rows.len());
    for part in rows.chunks(req.batch.max(1)) {
        let (prompts, greq) = prompts_for(task, part, style)?;
        let r = generate_rollout(model, tokenizer, &prompts, cfg, &greq, None)?;
        for (row, text) in part.iter().zip(completion_texts(task, &r)?) {
            let e = task.evaluate(row, &text)?;
            total += e.score * e.weight;
            weight += e.weight;
            solved += usize::from(e.correct);
            scores.push(e.score);
        }
    }
    let n = rows.len();
    Ok(EvalSummary {
        n,
        accuracy: if weight > 0.0 { total / weight } else { 0.0 },
        solved: if n > 0 { solved as f64 / n as f64 } else { 0.0 },
        scores,
    })
}

//! The one generation entry the CLI and scripts share, and its result, a [`Rollout`].
//!
//! [`generate_rollout`] renders prompts (text through the tokenizer's chat template plus a
//! prefill, or token ids as given), builds the [`Canvas`] (left padding, `repeat` copies per
//! prompt as a GRPO group, hints, row seeds), runs the engine and decodes the completions.
//! A [`Rollout`] holds what training needs: the padded prompts, the completions, the attention
//! mask, the group layout and, when recorded, the trajectory; rows can be selected and
//! completions replaced without rebuilding anything.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Deserializer};

use super::{engine, Canvas, SamplerConfig, SamplerHooks, Trajectory};
use crate::model::ids::{check_id, check_ids};
use crate::model::Llada;
use crate::tokenizer::{ChatMessage, Tokenizer};

/// One prompt: text (rendered with the tokenizer) or token ids (used as they are).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptInput {
    /// A user message, chat-templated when [`GenerateRequest::chat`] is set.
    Text(String),
    /// Token ids, unpadded.
    Ids(Vec<u32>),
}

/// What [`generate_rollout`] does besides sampling (the sampler itself is a [`SamplerConfig`]).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateRequest {
    /// Apply the chat template (one user turn and the generation prompt) to text prompts.
    pub chat: bool,
    /// Text appended after the (templated) prompt, e.g. `<reasoning>` for d1's evaluation.
    pub prefill: String,
    /// Copies of each prompt (a GRPO group of G), each copy with its own seed.
    pub repeat: usize,
    /// Per row (after `repeat`), fixed hint tokens by generation offset (IGPO inpainting).
    #[serde(deserialize_with = "offset_maps")]
    pub hints: Option<Vec<HashMap<usize, u32>>>,
    /// Per row (after `repeat`), its own seed (default: derived from the row index).
    pub row_seeds: Option<Vec<u64>>,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        GenerateRequest {
            chat: false,
            prefill: String::new(),
            repeat: 1,
            hints: None,
            row_seeds: None,
        }
    }
}

impl GenerateRequest {
    /// The option names of this struct (the rest of a `generate` options map is the sampler's).
    pub const KEYS: &'static [&'static str] = &["chat", "prefill", "repeat", "hints", "row_seeds"];
}

/// Hint maps with offsets written as strings (`{"12": 345}`), as JSON and Rhai maps key them.
fn offset_maps<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<HashMap<usize, u32>>>, D::Error> {
    let raw: Option<Vec<BTreeMap<String, u32>>> = Option::deserialize(d)?;
    raw.map(|rows| {
        rows.into_iter()
            .map(|m| {
                m.into_iter()
                    .map(|(k, t)| match k.parse::<usize>() {
                        Ok(off) => Ok((off, t)),
                        Err(_) => Err(serde::de::Error::custom(format!(
                            "hint key `{k}` is not a generation offset"
                        ))),
                    })
                    .collect()
            })
            .collect()
    })
    .transpose()
}

/// Token ids of a text prompt: the chat template around one user turn (when `chat`), then
/// `prefill`, encoded without special tokens added.
pub fn render_prompt(tok: &Tokenizer, text: &str, chat: bool, prefill: &str) -> Result<Vec<u32>> {
    let rendered = if chat {
        tok.chat(
            &[ChatMessage {
                role: "user".into(),
                content: text.to_string(),
            }],
            true,
        )?
    } else {
        text.to_string()
    };
    tok.encode(&(rendered + prefill))
}

/// A batch of generated completions with everything the estimators and losses read.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// Per row, the left-padded prompt (`prompt_len` ids).
    pub prompt: Vec<Vec<u32>>,
    /// Per row, the generated region (`gen_length` ids).
    pub completion: Vec<Vec<u32>>,
    /// Per row, 1 for real tokens and 0 for left padding, over prompt ++ completion.
    pub attention: Vec<Vec<u8>>,
    /// Per row, the index of the prompt it answers (row b of a `repeat: G` rollout: b / G).
    pub prompt_index: Vec<usize>,
    /// Consecutive rows per prompt (1 when the rows are not whole groups).
    pub group: usize,
    /// Per row, the decoded completion without special tokens (empty without a tokenizer).
    pub texts: Vec<String>,
    /// Forward passes the generation took.
    pub nfe: usize,
    /// The recorded trajectory (`record: true`).
    pub trajectory: Option<Arc<Trajectory>>,
}

fn rows_tensor<T: candle_core::WithDType>(rows: &[Vec<T>], width: usize) -> Result<Tensor> {
    let flat: Vec<T> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (rows.len(), width), &Device::Cpu)?)
}

impl Rollout {
    /// Number of rows (completions).
    pub fn batch_size(&self) -> usize {
        self.completion.len()
    }

    /// Length P of the padded prompts.
    pub fn prompt_len(&self) -> usize {
        self.prompt.first().map_or(0, Vec::len)
    }

    /// Length L of the completions.
    pub fn gen_length(&self) -> usize {
        self.completion.first().map_or(0, Vec::len)
    }

    /// The padded prompts [B, P] (u32, CPU).
    pub fn prompt_tensor(&self) -> Result<Tensor> {
        rows_tensor(&self.prompt, self.prompt_len())
    }

    /// The completions [B, L] (u32, CPU).
    pub fn completion_tensor(&self) -> Result<Tensor> {
        rows_tensor(&self.completion, self.gen_length())
    }

    /// The canvas [B, P + L] (u32, CPU): left padding ++ prompt ++ completion.
    pub fn canvas_tensor(&self) -> Result<Tensor> {
        rows_tensor(&self.canvas(), self.prompt_len() + self.gen_length())
    }

    /// The key-padding mask [B, P + L] (u32: 1 real, 0 left padding).
    pub fn attention_tensor(&self) -> Result<Tensor> {
        let rows: Vec<Vec<u32>> = self
            .attention
            .iter()
            .map(|r| r.iter().map(|&x| u32::from(x)).collect())
            .collect();
        rows_tensor(&rows, self.prompt_len() + self.gen_length())
    }

    /// Per row, the canvas: padded prompt ++ completion.
    pub fn canvas(&self) -> Vec<Vec<u32>> {
        self.prompt
            .iter()
            .zip(&self.completion)
            .map(|(p, c)| p.iter().chain(c).copied().collect())
            .collect()
    }

    /// Per row, prompt ++ completion without the left padding.
    pub fn unpadded(&self) -> Vec<Vec<u32>> {
        self.canvas()
            .iter()
            .zip(&self.attention)
            .map(|(r, a)| {
                r.iter()
                    .zip(a)
                    .filter(|(_, &m)| m != 0)
                    .map(|(&t, _)| t)
                    .collect()
            })
            .collect()
    }

    /// Rows `rows` only, in that order (a row may repeat): prompts, completions, texts, prompt
    /// indices and the trajectory are all selected. `group` stays when the selection is whole
    /// groups of distinct rows of one prompt each, else it becomes 1.
    pub fn select(&self, rows: &[usize]) -> Result<Rollout> {
        let b = self.batch_size();
        if let Some(&r) = rows.iter().find(|&&r| r >= b) {
            bail!("select: row {r} out of range: the rollout has {b} rows");
        }
        let pick = |v: &Vec<Vec<u32>>| rows.iter().map(|&r| v[r].clone()).collect::<Vec<_>>();
        let prompt_index: Vec<usize> = rows.iter().map(|&r| self.prompt_index[r]).collect();
        let g = self.group.max(1);
        let whole = rows.len() % g == 0
            && rows.chunks(g).all(|c| {
                let mut s = c.to_vec();
                s.sort_unstable();
                s.dedup();
                s.len() == g
                    && c.iter()
                        .all(|&r| self.prompt_index[r] == self.prompt_index[c[0]])
            });
        Ok(Rollout {
            prompt: pick(&self.prompt),
            completion: pick(&self.completion),
            attention: rows.iter().map(|&r| self.attention[r].clone()).collect(),
            prompt_index,
            group: if whole { g } else { 1 },
            texts: if self.texts.is_empty() {
                Vec::new()
            } else {
                rows.iter().map(|&r| self.texts[r].clone()).collect()
            },
            nfe: self.nfe,
            trajectory: match &self.trajectory {
                Some(t) => Some(Arc::new(t.select(rows)?)),
                None => None,
            },
        })
    }

    /// The same prompts with other completions (same [B, L] shape), e.g. a reference answer
    /// for SFT or a corrected completion: texts are replaced by `texts` (empty: none) and the
    /// trajectory is dropped, as it no longer describes the completions.
    pub fn with_completion(
        &self,
        completion: Vec<Vec<u32>>,
        texts: Vec<String>,
    ) -> Result<Rollout> {
        if completion.len() != self.batch_size() {
            bail!(
                "with_completion: {} completions for a rollout of {} rows",
                completion.len(),
                self.batch_size()
            );
        }
        let l = self.gen_length();
        if let Some((i, c)) = completion.iter().enumerate().find(|(_, c)| c.len() != l) {
            bail!(
                "with_completion: completion {i} has {} ids, expected {l}",
                c.len()
            );
        }
        if !texts.is_empty() && texts.len() != completion.len() {
            bail!(
                "with_completion: {} texts for {} completions",
                texts.len(),
                completion.len()
            );
        }
        Ok(Rollout {
            completion,
            texts,
            trajectory: None,
            ..self.clone()
        })
    }
}

/// Generates completions for `prompts` with `model` under `cfg`: the one entry the CLI and the
/// scripts share. Text prompts need `tokenizer`, which also supplies `eot_id` when `cfg` has
/// none and decodes the completions (skipping special tokens).
pub fn generate_rollout(
    model: &Llada,
    tokenizer: Option<&Tokenizer>,
    prompts: &[PromptInput],
    cfg: &SamplerConfig,
    req: &GenerateRequest,
    hooks: Option<&mut dyn SamplerHooks>,
) -> Result<Rollout> {
    let mut cfg = cfg.clone();
    if cfg.eot_id.is_none() {
        cfg.eot_id = tokenizer.and_then(|t| t.special().eot);
    }
    cfg.validate()?;
    if req.repeat == 0 {
        bail!("repeat must be at least 1, got 0");
    }
    let ids = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            PromptInput::Ids(ids) => Ok(ids.clone()),
            PromptInput::Text(text) => {
                let tok = tokenizer.context(
                    "text prompts need a model with a tokenizer; pass token ids instead",
                )?;
                render_prompt(tok, text, req.chat, &req.prefill)
                    .with_context(|| format!("prompt {i}"))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let mcfg = model.config();
    for (i, row) in ids.iter().enumerate() {
        check_ids(row.iter().map(|&t| i64::from(t)), mcfg.vocab_size)
            .with_context(|| format!("prompt {i}"))?;
    }
    if let Some(h) = &req.hints {
        for (b, map) in h.iter().enumerate() {
            for (&off, &t) in map {
                check_id(i64::from(t), mcfg.vocab_size)
                    .with_context(|| format!("hint at generation offset {off} of row {b}"))?;
            }
        }
    }
    let mut canvas = Canvas::new(&ids, cfg.gen_length, mcfg.pad_id()?, mcfg.mask_id()?)?;
    if req.repeat > 1 {
        canvas = canvas.repeat(req.repeat);
    }
    if let Some(h) = &req.hints {
        canvas = canvas.with_hints(h)?;
    }
    if let Some(s) = &req.row_seeds {
        canvas = canvas.with_row_seeds(s.clone())?;
    }
    let attention = canvas.attention().to_vec();
    let out = engine::run(model, canvas, &cfg, hooks)?;
    let texts = match tokenizer {
        Some(t) => out
            .completions
            .iter()
            .map(|c| t.decode(c, true))
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let p = out.prompt_len;
    Ok(Rollout {
        prompt: out.canvas.iter().map(|r| r[..p].to_vec()).collect(),
        prompt_index: (0..out.completions.len()).map(|b| b / req.repeat).collect(),
        completion: out.completions,
        attention,
        group: req.repeat,
        texts,
        nfe: out.nfe,
        trajectory: out.trajectory.map(Arc::new),
    })
}

//! The batch canvas: left-padded prompts followed by the generation region, the attention
//! mask, fixed hint positions per row (IGPO inpainting) and each row's own random seed.
//!
//! Layout of row b (length `prompt_len + gen_length`):
//! `pad … pad prompt_b | g_0 … g_{gen_length−1}`, where padding is EOS with attention 0 (as the
//! reference code pads ragged batches) and every generation position starts as MASK, except
//! hints, which hold their token from the start and never change.

use std::collections::HashMap;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};

/// A batch of rows to denoise. Cheap to clone (host vectors only).
#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    ids: Vec<Vec<u32>>,
    attention: Vec<Vec<u8>>,
    prompt_len: usize,
    gen_length: usize,
    mask_id: u32,
    hints: Vec<Vec<bool>>,
    row_seeds: Vec<u64>,
}

impl Canvas {
    /// Left-pads `prompts` with `pad_id` (attention 0) to the longest one and appends
    /// `gen_length` MASK positions. Row b gets seed b.
    pub fn new(
        prompts: &[Vec<u32>],
        gen_length: usize,
        pad_id: u32,
        mask_id: u32,
    ) -> Result<Canvas> {
        if prompts.is_empty() {
            bail!("no prompts given: the batch is empty");
        }
        let p = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(prompts.len());
        let mut attention = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let pad = p - prompt.len();
            let mut row = vec![pad_id; pad];
            row.extend_from_slice(prompt);
            let mut att = vec![0u8; pad];
            att.resize(p + gen_length, 1);
            ids.push(row);
            attention.push(att);
        }
        Canvas::assemble(ids, attention, gen_length, mask_id)
    }

    /// A canvas from prompts that are already left-padded to one length (as in the reference
    /// fixtures), with their attention mask (1 real, 0 padding; `None` = no padding).
    pub fn from_padded(
        prompt_ids: Vec<Vec<u32>>,
        attention_mask: Option<Vec<Vec<u32>>>,
        gen_length: usize,
        mask_id: u32,
    ) -> Result<Canvas> {
        if prompt_ids.is_empty() {
            bail!("no prompts given: the batch is empty");
        }
        let p = prompt_ids[0].len();
        if let Some((r, row)) = prompt_ids.iter().enumerate().find(|(_, r)| r.len() != p) {
            bail!(
                "padded prompts must share one length: row 0 has {p} tokens, row {r} has {}",
                row.len()
            );
        }
        let attention = match attention_mask {
            None => vec![vec![1u8; p + gen_length]; prompt_ids.len()],
            Some(m) => {
                if m.len() != prompt_ids.len() {
                    bail!(
                        "attention_mask has {} rows but there are {} prompts",
                        m.len(),
                        prompt_ids.len()
                    );
                }
                m.iter()
                    .enumerate()
                    .map(|(r, row)| {
                        if row.len() != p {
                            bail!(
                                "attention_mask row {r} has {} entries, expected {p}",
                                row.len()
                            );
                        }
                        let mut a: Vec<u8> = row.iter().map(|&v| u8::from(v != 0)).collect();
                        a.resize(p + gen_length, 1);
                        Ok(a)
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        Canvas::assemble(prompt_ids, attention, gen_length, mask_id)
    }

    fn assemble(
        mut ids: Vec<Vec<u32>>,
        attention: Vec<Vec<u8>>,
        gen_length: usize,
        mask_id: u32,
    ) -> Result<Canvas> {
        let prompt_len = ids[0].len();
        for row in &mut ids {
            row.resize(prompt_len + gen_length, mask_id);
        }
        let b = ids.len();
        Ok(Canvas {
            ids,
            attention,
            prompt_len,
            gen_length,
            mask_id,
            hints: vec![vec![false; gen_length]; b],
            row_seeds: (0..b as u64).collect(),
        })
    }

    /// Places fixed hint tokens: `hints[b]` maps a generation offset of row b to its token.
    /// Hints never change, get no confidence and do not count as masked positions.
    pub fn with_hints(mut self, hints: &[HashMap<usize, u32>]) -> Result<Canvas> {
        if hints.len() != self.ids.len() {
            bail!(
                "hints are given for {} rows but the batch has {}",
                hints.len(),
                self.ids.len()
            );
        }
        for (b, map) in hints.iter().enumerate() {
            for (&off, &tok) in map {
                if off >= self.gen_length {
                    bail!(
                        "hint at generation offset {off} of row {b} is outside gen_length {}",
                        self.gen_length
                    );
                }
                if tok == self.mask_id {
                    bail!("hint at generation offset {off} of row {b} is the mask token {tok}");
                }
                self.ids[b][self.prompt_len + off] = tok;
                self.hints[b][off] = true;
            }
        }
        Ok(self)
    }

    /// Sets each row's own seed (the row's random streams depend on it and the config seed
    /// only, never on its batch neighbours).
    pub fn with_row_seeds(mut self, seeds: Vec<u64>) -> Result<Canvas> {
        if seeds.len() != self.ids.len() {
            bail!(
                "{} row seeds given but the batch has {} rows",
                seeds.len(),
                self.ids.len()
            );
        }
        self.row_seeds = seeds;
        Ok(self)
    }

    /// Repeats every row `g` times in place (row b becomes rows b·g … b·g + g − 1), as GRPO
    /// groups do. Copy k of a row with seed s gets seed `mix(s, k)`, distinct per copy.
    pub fn repeat(&self, g: usize) -> Canvas {
        let mut out = self.clone();
        let rep = |v: &Vec<Vec<u8>>| -> Vec<Vec<u8>> {
            v.iter()
                .flat_map(|r| std::iter::repeat_n(r.clone(), g))
                .collect()
        };
        out.ids = self
            .ids
            .iter()
            .flat_map(|r| std::iter::repeat_n(r.clone(), g))
            .collect();
        out.attention = rep(&self.attention);
        out.hints = self
            .hints
            .iter()
            .flat_map(|r| std::iter::repeat_n(r.clone(), g))
            .collect();
        out.row_seeds = self
            .row_seeds
            .iter()
            .flat_map(|&s| (0..g as u64).map(move |k| mix_seed(s, k)))
            .collect();
        out
    }

    /// Number of rows.
    pub fn batch_size(&self) -> usize {
        self.ids.len()
    }

    /// Row length `prompt_len + gen_length`.
    pub fn len(&self) -> usize {
        self.prompt_len + self.gen_length
    }

    /// Whether the canvas has no positions at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length of the (padded) prompt part; the generation region starts here.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// Length of the generation region.
    pub fn gen_length(&self) -> usize {
        self.gen_length
    }

    /// The mask token the canvas was built with.
    pub fn mask_id(&self) -> u32 {
        self.mask_id
    }

    /// The token ids, one `Vec` per row.
    pub fn ids(&self) -> &[Vec<u32>] {
        &self.ids
    }

    /// Mutable token ids (the engine writes commits here).
    pub(crate) fn ids_mut(&mut self) -> &mut [Vec<u32>] {
        &mut self.ids
    }

    /// Attention mask rows (1 real, 0 left padding), over the whole row.
    pub fn attention(&self) -> &[Vec<u8>] {
        &self.attention
    }

    /// Whether any row is padded (then the forward needs the attention mask).
    pub fn is_padded(&self) -> bool {
        self.attention.iter().any(|r| r.contains(&0))
    }

    /// Hint flags per row over the generation region.
    pub fn hints(&self) -> &[Vec<bool>] {
        &self.hints
    }

    /// Each row's own seed.
    pub fn row_seeds(&self) -> &[u64] {
        &self.row_seeds
    }

    /// The ids as a [B, L] u32 tensor.
    pub fn ids_tensor(&self, device: &Device) -> Result<Tensor> {
        let flat: Vec<u32> = self.ids.iter().flatten().copied().collect();
        Ok(Tensor::from_vec(
            flat,
            (self.batch_size(), self.len()),
            device,
        )?)
    }

    /// The attention mask as a [B, L] u32 tensor, or `None` when no row is padded.
    pub fn attention_tensor(&self, device: &Device) -> Result<Option<Tensor>> {
        if !self.is_padded() {
            return Ok(None);
        }
        let flat: Vec<u32> = self
            .attention
            .iter()
            .flatten()
            .map(|&v| u32::from(v))
            .collect();
        Ok(Some(Tensor::from_vec(
            flat,
            (self.batch_size(), self.len()),
            device,
        )?))
    }

    /// The generation region of every row.
    pub fn completions(&self) -> Vec<Vec<u32>> {
        self.ids
            .iter()
            .map(|r| r[self.prompt_len..].to_vec())
            .collect()
    }

    /// Every row without its left padding: prompt ++ generation.
    pub fn unpadded(&self) -> Vec<Vec<u32>> {
        self.ids
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
}

/// SplitMix64-style mixing of a seed and a copy index (distinct copies get distinct seeds).
pub fn mix_seed(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k.wrapping_add(1)));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

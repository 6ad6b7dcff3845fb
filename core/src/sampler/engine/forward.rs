//! The step's forward pass, plain or with Fast-dLLM's key/value cache (`cache: prefix | dual`),
//! and the table that says where each (batch row, canvas position) sits in its hidden states.

use anyhow::Result;
use candle_core::Tensor;

use super::Run;
use crate::model::llada::KvCache;
use crate::sampler::config::CacheMode;

/// The keys/values of the current block's first forward (Fast-dLLM prefix / dual cache).
pub(super) struct CacheState {
    /// Index of the block whose first forward built the cache.
    block: usize,
    /// Per layer keys and values of that forward, over the (CFG-doubled) batch.
    kv: KvCache,
    /// That forward's final hidden states, [rows_in · L, d]: the stand-in for positions a
    /// cached step does not recompute (dual cache: recorded predictions right of the block).
    hidden: Tensor,
    /// The canvas when the cache was built; positions that changed since are recomputed.
    snapshot: Vec<Vec<u32>>,
}

/// A step's hidden states and where each (batch row, canvas position) sits in them.
pub(super) struct HiddenTable {
    /// [N, d]: the recomputed rows `[start, end)` of every batch row, then (when needed) the
    /// cached full-canvas hidden states.
    pub(super) table: Tensor,
    l: usize,
    start: usize,
    end: usize,
    stored_at: usize,
}

impl HiddenTable {
    /// Row of `table` holding batch row `r`, canvas position `q`.
    pub(super) fn row(&self, r: usize, q: usize) -> u32 {
        if (self.start..self.end).contains(&q) {
            (r * (self.end - self.start) + q - self.start) as u32
        } else {
            (self.stored_at + r * self.l + q) as u32
        }
    }
}

impl Run<'_, '_> {
    /// The step's forward pass over `input` [rows_in, L] (rows_in = B, or 2B under CFG).
    ///
    /// Without a cache: the whole canvas. With `cache: prefix | dual`: at the block's first
    /// forward the whole canvas too, keeping every layer's keys/values (so that step is
    /// exactly the uncached one); at its later forwards only canvas rows `[a, z)` are
    /// recomputed and attend over the cached keys/values elsewhere, with `z = L` (prefix) or
    /// the block's end (dual) and `a` the block's start, both widened to cover every
    /// candidate and every position whose token changed since the cache was built (only
    /// possible when a schedule hook leaves earlier blocks partly masked). `need` lists, per
    /// row, the positions whose hidden states the step reads.
    pub(super) fn forward(
        &mut self,
        bi: usize,
        s: usize,
        e: usize,
        input: &Tensor,
        need: &[Vec<usize>],
    ) -> Result<HiddenTable> {
        let l = self.l;
        let rows_in = input.dim(0)?;
        self.nfe += 1;
        let full = |hidden: Tensor| -> Result<HiddenTable> {
            let d = hidden.dim(2)?;
            Ok(HiddenTable {
                table: hidden.reshape((rows_in * l, d))?,
                l,
                start: 0,
                end: l,
                stored_at: 0,
            })
        };
        let mode = self.cfg.cache;
        if mode == CacheMode::None {
            let hidden = self.model.forward_hidden(input, self.attn.as_ref())?;
            self.forward_positions.push(l);
            return full(hidden);
        }
        let Some(c) = self.cache.as_ref().filter(|c| c.block == bi) else {
            let (hidden, kv) = self.model.forward_hidden_kv(input, self.attn.as_ref())?;
            self.forward_positions.push(l);
            let t = full(hidden)?;
            self.cache = Some(CacheState {
                block: bi,
                kv,
                hidden: t.table.clone(),
                snapshot: self.canvas.ids().to_vec(),
            });
            return Ok(t);
        };
        let mut a = s;
        let mut z = if mode == CacheMode::Dual { e } else { l };
        for (r, (now, then)) in self.canvas.ids().iter().zip(&c.snapshot).enumerate() {
            for q in (0..l).filter(|&q| now[q] != then[q]) {
                a = a.min(q);
                z = z.max(q + 1);
            }
            // Candidates lie left of `e`; positions right of the block are read only for
            // recorded predictions (prefix mode recomputes them, dual mode reads the cached
            // hidden states: the suffix is frozen for the block, as its keys are).
            if let Some(&first) = need[r].first() {
                a = a.min(first);
            }
        }
        let n = z - a;
        let part = input.narrow(1, a, n)?.contiguous()?;
        let hidden = self
            .model
            .forward_hidden_cached(&part, a, &c.kv, self.attn.as_ref())?;
        self.forward_positions.push(n);
        let d = hidden.dim(2)?;
        let hidden = hidden.reshape((rows_in * n, d))?;
        let outside = need.iter().flatten().any(|&q| q < a || q >= z);
        let table = if outside {
            Tensor::cat(&[&hidden, &c.hidden], 0)?
        } else {
            hidden
        };
        Ok(HiddenTable {
            table,
            l,
            start: a,
            end: z,
            stored_at: rows_in * n,
        })
    }
}

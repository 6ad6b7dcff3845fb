//! The denoising loop shared by every algorithm of `reference/ALGORITHMS.md` §2.
//!
//! Per block (left to right) and per step: one forward over the whole canvas
//! (`forward_hidden`), then only the *candidate* rows — masked, non-hint generation positions
//! left of the block's end (the reference code bounds candidates on the right only) — go
//! through the LM head ([`super::score`]). The candidates are ranked by confidence and
//!
//! * **top-k** (LLaDA, MDPO, EOSER, ASS, IGPO): the k highest are committed, k from the
//!   schedule (ties: lower position first; no fixture depends on ties);
//! * **RCR** (MDPO): all `K = Σ_{s≥i} n_s` candidates are committed and their running
//!   confidence rc set; unless it is the block's last step the `M = Σ_{s>i} n_s` committed
//!   generation positions with the lowest rc are masked again (rc persists across blocks;
//!   prompt and hint positions are never re-masked, which the reference guarantees by
//!   counting rc = 0 as 1.0);
//! * **threshold** (Fast-dLLM): the top one and every candidate with confidence ≥ τ, looping
//!   until the block is full.
//!
//! After each block, with `eos_early_exit` (IGPO), a row whose block is entirely EOS has every
//! remaining masked generation position filled with EOS. The reference applies this only when
//! every row of the batch qualifies; here it is per row, so a row's result never depends on
//! its batch neighbours (identical for batch size 1).
//!
//! A step in which no row would commit anything is skipped (no forward pass), e.g. when a
//! block has fewer masked positions than steps; the reference runs such no-op forwards.
//!
//! With `cache: prefix | dual` (Fast-dLLM), a block's first forward is the full one above and
//! also keeps every layer's keys/values; its later forwards recompute only the block and its
//! right side (prefix) or the block (dual) against those cached keys/values (see
//! `Run::forward`). [`GenerateOutput::forward_positions`] records what each forward cost.
//!
//! Bookkeeping (canvas, schedules, ranking, running confidence) lives on the host in small
//! `Vec`s; per step only `[R]` candidates and confidences come back from the device.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::canvas::Canvas;
use super::config::{SamplerConfig, Schedule};
use super::hooks::SamplerHooks;
use super::schedule;
use super::score::{self, NoiseJob};
use super::trajectory::{StepRecord, Trajectory};
use crate::model::Llada;

mod forward;
use forward::CacheState;

/// What a generation returns.
#[derive(Debug, Clone)]
pub struct GenerateOutput {
    /// The final canvas per row exactly as denoised: left padding ++ prompt ++ generation.
    pub canvas: Vec<Vec<u32>>,
    /// Per row the unpadded prompt ++ generation.
    pub ids: Vec<Vec<u32>>,
    /// Per row the generation region only (`gen_length` tokens).
    pub completions: Vec<Vec<u32>>,
    /// Length of the padded prompt part of `canvas` rows.
    pub prompt_len: usize,
    /// Number of forward passes (a CFG forward over the doubled batch counts once).
    pub nfe: usize,
    /// Per forward pass, how many canvas positions of each row it recomputed: the row length
    /// L for a full forward; with `cache: prefix` / `dual`, `L − block start` / the block length
    /// on the steps that reuse cached keys and values. One entry per forward (`nfe` entries).
    pub forward_positions: Vec<usize>,
    /// The sum of `forward_positions` (positions per row; multiply by the batch size, doubled
    /// under CFG, for token-rows).
    pub positions_processed: usize,
    /// The recorded trajectory when `record` was set.
    pub trajectory: Option<Trajectory>,
}

/// How a step chooses its commits.
enum Commit {
    /// Commit the top `k[b]` candidates of each row.
    TopK(Vec<usize>),
    /// RCR: commit the top `keep[b]`, then re-mask `remask[b]` by lowest running confidence.
    Rcr {
        keep: Vec<usize>,
        remask: Vec<usize>,
    },
    /// Commit the top one and all candidates with confidence ≥ τ.
    Threshold(f64),
}

/// One step's candidates per row.
struct Prediction {
    /// Candidate canvas positions per row (ascending).
    cand: Vec<Vec<usize>>,
    /// Candidate tokens, aligned with `cand`.
    x0: Vec<Vec<u32>>,
    /// Confidences, aligned with `cand`.
    conf: Vec<Vec<f64>>,
    /// Recorded predictions at masked positions right of the window (record only), with their
    /// confidence (−inf unless `tempered_confidence`, MDPO's record).
    extra: Vec<Vec<(usize, u32, f64)>>,
}

/// Where a denoising step stands: the block (index and canvas range `[start, end)`, whose end
/// also ends the candidate window), the global step index and the step within the block.
#[derive(Debug, Clone, Copy)]
struct StepAt {
    block: usize,
    step: usize,
    within: usize,
    start: usize,
    end: usize,
}

/// A row's random stream: StdRng seeded from (config seed, row seed, stream tag).
fn row_rng(seed: u64, row_seed: u64, stream: u64) -> StdRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&row_seed.to_le_bytes());
    bytes[16..24].copy_from_slice(&stream.to_le_bytes());
    StdRng::from_seed(bytes)
}

struct Run<'a, 'h> {
    model: &'a Llada,
    cfg: &'a SamplerConfig,
    canvas: Canvas,
    mask: u32,
    eos: u32,
    b: usize,
    l: usize,
    p: usize,
    uncond: Vec<Vec<bool>>,
    attn: Option<Tensor>,
    rngs: Vec<StdRng>,
    aux: Vec<StdRng>,
    rc: Vec<Vec<f64>>,
    nfe: usize,
    forward_positions: Vec<usize>,
    cache: Option<CacheState>,
    traj: Option<Trajectory>,
    hooks: Option<&'h mut (dyn SamplerHooks + 'h)>,
}

/// Denoises `canvas` with `model` under `cfg` (validated here), calling `hooks` if given.
pub fn run(
    model: &Llada,
    canvas: Canvas,
    cfg: &SamplerConfig,
    hooks: Option<&mut dyn SamplerHooks>,
) -> Result<GenerateOutput> {
    cfg.validate()?;
    let mcfg = model.config();
    let mask = mcfg
        .mask_token_id
        .context("the checkpoint's config.json has no mask_token_id")?;
    let eos = mcfg
        .eos_token_id
        .context("the checkpoint's config.json has no eos_token_id")?;
    if canvas.gen_length() != cfg.gen_length {
        bail!(
            "the canvas has gen_length {} but the sampler config has gen_length {}",
            canvas.gen_length(),
            cfg.gen_length
        );
    }
    if canvas.mask_id() != mask {
        bail!(
            "the canvas was built with mask id {} but the model's mask_token_id is {mask}",
            canvas.mask_id()
        );
    }
    let (b, l, p) = (canvas.batch_size(), canvas.len(), canvas.prompt_len());
    super::guard::check_length(mcfg, p, cfg.gen_length)?;
    let dev = model.device().clone();
    let mut attn = canvas.attention_tensor(&dev)?;
    if cfg.cfg_scale > 0.0 {
        if let Some(a) = &attn {
            attn = Some(Tensor::cat(&[a, a], 0)?);
        }
    }
    let uncond = canvas
        .ids()
        .iter()
        .map(|r| r.iter().map(|&t| t != mask).collect())
        .collect();
    let rngs = canvas
        .row_seeds()
        .iter()
        .map(|&s| row_rng(cfg.seed, s, 0))
        .collect();
    let aux = canvas
        .row_seeds()
        .iter()
        .map(|&s| row_rng(cfg.seed, s, 1))
        .collect();
    let traj = cfg.record.then(|| Trajectory::new(b, l, p));
    let mut run = Run {
        model,
        cfg,
        canvas,
        mask,
        eos,
        b,
        l,
        p,
        uncond,
        attn,
        rngs,
        aux,
        rc: vec![vec![0.0; l]; b],
        nfe: 0,
        forward_positions: Vec::new(),
        cache: None,
        traj,
        hooks,
    };
    run.blocks()?;
    let canvas = run.canvas;
    let mut traj = run.traj;
    if let Some(t) = traj.as_mut() {
        t.finish(canvas.ids().iter().flatten().copied().collect());
    }
    Ok(GenerateOutput {
        ids: canvas.unpadded(),
        completions: canvas.completions(),
        canvas: canvas.ids().to_vec(),
        prompt_len: p,
        nfe: run.nfe,
        positions_processed: run.forward_positions.iter().sum(),
        forward_positions: run.forward_positions,
        trajectory: traj,
    })
}

impl Run<'_, '_> {
    /// Whether canvas position `q` of row `r` is a masked, non-hint generation position.
    fn committable(&self, r: usize, q: usize) -> bool {
        q >= self.p && self.canvas.ids()[r][q] == self.mask && !self.canvas.hints()[r][q - self.p]
    }

    /// Committable positions of row `r` in canvas range `[s, e)`.
    fn masked_in(&self, r: usize, s: usize, e: usize) -> usize {
        (s..e).filter(|&q| self.committable(r, q)).count()
    }

    fn blocks(&mut self) -> Result<()> {
        let plan = schedule::plan(self.cfg);
        for (bi, blk) in plan.iter().enumerate() {
            let (s, e) = (self.p + blk.start, self.p + blk.end);
            let n0: Vec<usize> = (0..self.b).map(|r| self.masked_in(r, s, e)).collect();
            if n0.iter().all(|&n| n == 0) {
                continue;
            }
            if let Some(tau) = self.cfg.threshold {
                let mut i = 0;
                while (0..self.b).any(|r| self.masked_in(r, s, e) > 0) {
                    crate::cancel::check()?;
                    let at = StepAt {
                        block: bi,
                        step: self.nfe,
                        within: i,
                        start: s,
                        end: e,
                    };
                    self.step(at, Commit::Threshold(tau))?;
                    i += 1;
                }
            } else {
                self.scheduled_block(bi, blk, &n0, s, e)?;
            }
            if self.cfg.eos_early_exit {
                self.early_exit(s, e);
            }
        }
        Ok(())
    }

    fn scheduled_block(
        &mut self,
        bi: usize,
        blk: &schedule::Block,
        n0: &[usize],
        s: usize,
        e: usize,
    ) -> Result<()> {
        let spb = blk.steps.len();
        let mut counts: Vec<Vec<usize>> = n0
            .iter()
            .map(|&n| match &blk.fixed_counts {
                Some(fc) => {
                    let mut left = n;
                    fc.iter()
                        .map(|&c| {
                            let t = c.min(left);
                            left -= t;
                            t
                        })
                        .collect()
                }
                None => schedule::step_counts(self.cfg.schedule, n, spb),
            })
            .collect();
        for (i, &step) in blk.steps.iter().enumerate() {
            crate::cancel::check()?;
            if self.hooks.is_some() {
                let remaining: Vec<usize> = (0..self.b).map(|r| self.masked_in(r, s, e)).collect();
                let over = match self.hooks.as_mut() {
                    Some(h) => h.schedule(step, &remaining)?,
                    None => None,
                };
                if let Some(over) = over {
                    if over.len() != self.b {
                        bail!(
                            "schedule hook returned {} counts at step {step} for a batch of {}",
                            over.len(),
                            self.b
                        );
                    }
                    for r in 0..self.b {
                        let avail = self.masked_in(r, self.p, e);
                        if over[r] > avail {
                            bail!(
                                "schedule hook asked row {r} to commit {} tokens at step {step} \
                                 but only {avail} positions are masked",
                                over[r]
                            );
                        }
                        counts[r][i] = over[r];
                    }
                }
            }
            let last = i + 1 == spb;
            let commit = if self.cfg.rcr {
                let keep: Vec<usize> = counts.iter().map(|c| c[i..].iter().sum()).collect();
                let remask: Vec<usize> = counts
                    .iter()
                    .map(|c| if last { 0 } else { c[i + 1..].iter().sum() })
                    .collect();
                if keep.iter().all(|&k| k == 0) {
                    continue;
                }
                Commit::Rcr { keep, remask }
            } else {
                let k: Vec<usize> = counts.iter().map(|c| c[i]).collect();
                if k.iter().all(|&k| k == 0) {
                    continue;
                }
                Commit::TopK(k)
            };
            let at = StepAt {
                block: bi,
                step,
                within: i,
                start: s,
                end: e,
            };
            self.step(at, commit)?;
        }
        Ok(())
    }

    fn early_exit(&mut self, s: usize, e: usize) {
        let (p, l, eos) = (self.p, self.l, self.eos);
        for r in 0..self.b {
            if self.canvas.ids()[r][s..e].iter().all(|&t| t == eos) {
                let fill: Vec<usize> = (p..l).filter(|&q| self.committable(r, q)).collect();
                let row = &mut self.canvas.ids_mut()[r];
                for q in fill {
                    row[q] = eos;
                }
            }
        }
    }

    /// One forward pass and commit at `at`.
    fn step(&mut self, at: StepAt, commit: Commit) -> Result<()> {
        let before: Option<Vec<u32>> = self
            .traj
            .as_ref()
            .map(|_| self.canvas.ids().iter().flatten().copied().collect());
        let pred = self.predict(at)?;
        let mut remasked: Vec<Vec<u32>> = vec![Vec::new(); self.b];
        for r in 0..self.b {
            let conf = &pred.conf[r];
            let mut order: Vec<usize> = (0..conf.len()).collect();
            order.sort_by(|&a, &c| conf[c].total_cmp(&conf[a]).then(a.cmp(&c)));
            let chosen: Vec<usize> = match &commit {
                Commit::TopK(k) => order.iter().take(k[r]).copied().collect(),
                Commit::Rcr { keep, .. } => order.iter().take(keep[r]).copied().collect(),
                Commit::Threshold(tau) => order
                    .iter()
                    .enumerate()
                    .filter(|(j, &o)| *j == 0 || conf[o] >= *tau)
                    .map(|(_, &o)| o)
                    .collect(),
            };
            for &j in &chosen {
                let q = pred.cand[r][j];
                self.canvas.ids_mut()[r][q] = pred.x0[r][j];
                if self.cfg.rcr {
                    self.rc[r][q] = conf[j];
                }
            }
            if let Commit::Rcr { remask, .. } = &commit {
                if remask[r] > 0 {
                    remasked[r] = self.rcr_remask(r, remask[r]);
                }
            }
        }
        if let (Some(before), Some(_)) = (before, self.traj.as_ref()) {
            let rec = self.record(at.block, at.step, before, &pred, remasked);
            if let Some(t) = self.traj.as_mut() {
                t.push(rec);
            }
        }
        Ok(())
    }

    /// Masks again the `m` committed generation positions of row `r` with the lowest running
    /// confidence (rc = 0 counts as 1.0, as in MDPO); returns them.
    fn rcr_remask(&mut self, r: usize, m: usize) -> Vec<u32> {
        let (p, l, mask) = (self.p, self.l, self.mask);
        let pool: Vec<usize> = (p..l)
            .filter(|&q| self.canvas.ids()[r][q] != mask && !self.canvas.hints()[r][q - p])
            .collect();
        let key = |q: usize| {
            let v = self.rc[r][q];
            if v == 0.0 {
                1.0
            } else {
                v
            }
        };
        let mut order = pool;
        order.sort_by(|&a, &c| key(a).total_cmp(&key(c)).then(a.cmp(&c)));
        order.truncate(m);
        let row = &mut self.canvas.ids_mut()[r];
        for &q in &order {
            row[q] = mask;
        }
        order.into_iter().map(|q| q as u32).collect()
    }

    fn record(
        &self,
        bi: usize,
        step: usize,
        before: Vec<u32>,
        pred: &Prediction,
        remasked: Vec<Vec<u32>>,
    ) -> StepRecord {
        let (b, l) = (self.b, self.l);
        let mut prediction = before.clone();
        let mut confidence = vec![f32::NEG_INFINITY; b * l];
        for r in 0..b {
            for (j, &q) in pred.cand[r].iter().enumerate() {
                prediction[r * l + q] = pred.x0[r][j];
                confidence[r * l + q] = pred.conf[r][j] as f32;
            }
            for &(q, t, c) in &pred.extra[r] {
                prediction[r * l + q] = t;
                confidence[r * l + q] = c as f32;
            }
        }
        let committed = (0..b)
            .map(|r| {
                let now = &self.canvas.ids()[r];
                (0..l)
                    .filter(|&q| before[r * l + q] == self.mask && now[q] != self.mask)
                    .map(|q| q as u32)
                    .collect()
            })
            .collect();
        let remasked = remasked
            .into_iter()
            .enumerate()
            .map(|(r, v)| {
                v.into_iter()
                    .filter(|&q| before[r * l + q as usize] != self.mask)
                    .collect()
            })
            .collect();
        StepRecord {
            step,
            block: bi,
            state: before,
            committed,
            remasked,
            prediction,
            confidence,
        }
    }

    /// Forward pass, candidate tokens and confidences (built-in, then the score hook).
    fn predict(&mut self, at: StepAt) -> Result<Prediction> {
        let (step, i, e) = (at.step, at.within, at.end);
        let (b, l, p) = (self.b, self.l, self.p);
        let cfg = self.cfg;
        let cand: Vec<Vec<usize>> = (0..b)
            .map(|r| (p..e).filter(|&q| self.committable(r, q)).collect())
            .collect();
        let extra_pos: Vec<Vec<usize>> = (0..b)
            .map(|r| {
                if cfg.record {
                    (e..l).filter(|&q| self.committable(r, q)).collect()
                } else {
                    Vec::new()
                }
            })
            .collect();
        let dev = self.model.device().clone();
        let ids = self.canvas.ids_tensor(&dev)?;
        let guided = cfg.cfg_scale > 0.0;
        let input = if guided {
            let un: Vec<u32> = self
                .canvas
                .ids()
                .iter()
                .zip(&self.uncond)
                .flat_map(|(row, fixed)| {
                    row.iter()
                        .zip(fixed)
                        .map(|(&t, &f)| if f { self.mask } else { t })
                })
                .collect();
            let un = Tensor::from_vec(un, (b, l), &dev)?;
            Tensor::cat(&[&ids, &un], 0)?
        } else {
            ids
        };
        let need: Vec<Vec<usize>> = cand
            .iter()
            .zip(&extra_pos)
            .map(|(c, x)| c.iter().chain(x).copied().collect())
            .collect();
        let hidden = self.forward(at.block, at.start, at.end, &input, &need)?;
        let mut idx: Vec<u32> = Vec::new();
        for (r, c) in cand.iter().enumerate() {
            idx.extend(c.iter().map(|&q| hidden.row(r, q)));
        }
        for (r, c) in extra_pos.iter().enumerate() {
            idx.extend(c.iter().map(|&q| hidden.row(r, q)));
        }
        let n = idx.len();
        let mut pred = Prediction {
            cand,
            x0: vec![Vec::new(); b],
            conf: vec![Vec::new(); b],
            extra: vec![Vec::new(); b],
        };
        if n == 0 {
            return Ok(pred);
        }
        if guided {
            for (r, c) in pred.cand.iter().enumerate() {
                idx.extend(c.iter().map(|&q| hidden.row(r + b, q)));
            }
            for (r, c) in extra_pos.iter().enumerate() {
                idx.extend(c.iter().map(|&q| hidden.row(r + b, q)));
            }
        }
        let sel = Tensor::from_vec(idx, (if guided { 2 * n } else { n },), &dev)?;
        let logits = self
            .model
            .logits(&hidden.table.index_select(&sel, 0)?)?
            .to_dtype(DType::F32)?;
        let logits = if guided {
            let c = logits.narrow(0, 0, n)?;
            let u = logits.narrow(0, n, n)?;
            (&u + ((c - &u)? * (cfg.cfg_scale + 1.0))?)?
        } else {
            logits
        };
        super::guard::check_logits(&logits, self.nfe)?;
        let v = logits.dim(1)?;
        let noise = if cfg.temperature > 0.0 {
            let jobs = self
                .rngs
                .iter_mut()
                .zip(self.aux.iter_mut())
                .zip(pred.cand.iter().zip(&extra_pos))
                .map(|((main, aux), (c, x))| NoiseJob {
                    main,
                    aux,
                    n_main: c.len(),
                    n_aux: x.len(),
                })
                .collect();
            Some(score::gumbel_tensor(jobs, v, &dev)?)
        } else {
            None
        };
        let eos_inf = cfg.logits_eos_inf.then_some(self.eos);
        let (x0_all, conf_all) = score::score_rows(
            &logits,
            noise.as_ref(),
            cfg.temperature,
            cfg.remasking,
            eos_inf,
            cfg.tempered_confidence,
        )?;
        // Split back per row: candidates first (row-major), then the extras.
        let mut at = 0;
        for r in 0..b {
            let k = pred.cand[r].len();
            pred.x0[r] = x0_all[at..at + k].to_vec();
            pred.conf[r] = match &conf_all {
                Some(c) => c[at..at + k].to_vec(),
                None => (0..k).map(|_| self.rngs[r].random::<f64>()).collect(),
            };
            at += k;
        }
        for (slot, pos) in pred.extra.iter_mut().zip(&extra_pos) {
            let k = pos.len();
            *slot = (0..k)
                .map(|j| {
                    let c = match &conf_all {
                        Some(c) if cfg.tempered_confidence => c[at + j],
                        _ => f64::NEG_INFINITY,
                    };
                    (pos[j], x0_all[at + j], c)
                })
                .collect();
            at += k;
        }
        // Built-in adjustments of the confidence.
        let eot = cfg.eot_id;
        let gamma = cfg.eoser.map(|g| {
            schedule::eoser_gamma(
                g.gamma_min,
                g.gamma_max,
                cfg.schedule == Schedule::Ass,
                step,
                i,
                cfg.steps,
            )
        });
        for r in 0..b {
            for (c, &t) in pred.conf[r].iter_mut().zip(&pred.x0[r]) {
                if cfg.confidence_eos_eot_inf && (t == self.eos || Some(t) == eot) {
                    *c = f64::NEG_INFINITY;
                }
                if let Some(g) = gamma {
                    if t == self.eos {
                        *c *= g;
                    }
                }
            }
        }
        if self.hooks.is_some() {
            self.score_hook(step, &mut pred)?;
        }
        Ok(pred)
    }

    fn score_hook(&mut self, step: usize, pred: &mut Prediction) -> Result<()> {
        let (b, p, g) = (self.b, self.p, self.cfg.gen_length);
        let mut conf = vec![f32::NEG_INFINITY; b * g];
        let mut toks: Vec<u32> = self
            .canvas
            .ids()
            .iter()
            .flat_map(|r| r[p..].iter().copied())
            .collect();
        for r in 0..b {
            for (j, &q) in pred.cand[r].iter().enumerate() {
                conf[r * g + q - p] = pred.conf[r][j] as f32;
                toks[r * g + q - p] = pred.x0[r][j];
            }
        }
        let conf_t = Tensor::from_vec(conf, (b, g), &candle_core::Device::Cpu)?;
        let toks_t = Tensor::from_vec(toks, (b, g), &candle_core::Device::Cpu)?;
        let Some(h) = self.hooks.as_mut() else {
            return Ok(());
        };
        if let Some(out) = h.score(step, &conf_t, &toks_t)? {
            if out.dims() != [b, g] {
                bail!(
                    "score hook returned shape {:?} at step {step}, expected [{b}, {g}]",
                    out.dims()
                );
            }
            let rows: Vec<Vec<f64>> = out
                .to_device(&candle_core::Device::Cpu)?
                .to_dtype(DType::F64)?
                .to_vec2()?;
            for ((conf, cand), row) in pred.conf.iter_mut().zip(&pred.cand).zip(&rows) {
                for (c, &q) in conf.iter_mut().zip(cand) {
                    *c = row[q - p];
                }
            }
        }
        Ok(())
    }
}

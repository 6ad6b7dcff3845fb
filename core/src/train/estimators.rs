//! Likelihood estimators: per-token log-probs of completions under a masked diffusion model
//! (`reference/ALGORITHMS.md` §3). Every estimator is one or a few differentiable forwards;
//! the masks are drawn on the host from a caller-given seed so the old, reference and current
//! policies see the same noise in an inner iteration.
//!
//! | estimator | input | scored positions | returned length |
//! |---|---|---|---|
//! | [`logp_d1`] (diffu-GRPO) | prompt ⊕ completion, completion all masked, each real prompt token masked w.p. `p_mask_prompt` | every completion position | L (completion) |
//! | [`logp_on_input`] (replays) | a given input, e.g. a reference trainer's realized noisy sequence | the last L positions | L |
//! | [`logp_masked`] (one-step GRPO, IGPO) | [`logp_d1`] with `p_mask_prompt = 0` | every completion position | L |
//! | [`logp_step`] (CJ-GRPO) | a recorded state x_s | the positions committed at s, gathered at x_{s+1} | T (canvas) |
//! | [`logp_mdpo`] (MDPO) | a recorded state x_t, logits / (temperature + eps) | every completion position masked in x_t, gathered at x̂0 | T (canvas) |
//! | [`elbo`] (LLaDA `get_log_likelihood`) | `mc_num` copies with stratified mask counts | the masked answer positions, weighted L / count | L, plus log p(a∣p) [B] |
//! | [`logp_coupled`] (DiffuCoder) | two forwards, completion masked at M and at its complement | every completion position once | L |
//!
//! **Randomness.** Row r of a call with seed s draws from its own generator
//! [`row_rng`]`(s, r)`, so a row's mask depends only on (seed, row index, its own shape) and
//! not on the other rows or the batch size. d1 draws one uniform per prompt position (pads
//! included, never masked), in order; the coupled estimator one per completion position.
//!
//! **Numerics.** Hidden states are computed for the whole canvas; logits and the log-softmax
//! (over the full `embedding_size`, in f32, [`crate::ops::fused::log_softmax_gather`]) only at the scored
//! rows (same numbers as slicing the full logits, much less work with LLaDA's 126k vocabulary).
//! Log-probs are f32 (f64 for an f64 model); masks have the same dtype, 1.0 / 0.0.
//!
//! Ids may be u32, i64 or integral floats; attention masks are [B, prompt + completion] (or
//! [B, T]) with 1 for real tokens and 0 for left padding.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, D};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::model::Llada;
use crate::ops;

/// d1's default probability of masking each prompt token.
pub const D1_P_MASK_PROMPT: f64 = 0.15;

/// Range DiffuCoder's released code draws the coupled mask ratio t from.
pub const COUPLED_T_RANGE: (f64, f64) = (0.2, 0.8);

/// MDPO's default temperature epsilon: `torch.finfo(float32).eps`. The reference adds
/// `finfo(logits.dtype).eps`, which is 2⁻⁷ = 0.0078125 for bf16 logits.
pub const MDPO_EPS: f64 = f32::EPSILON as f64;

/// Per-token log-probs of an estimator and the positions they cover.
#[derive(Debug, Clone)]
pub struct Estimate {
    /// log π per position, [B, L] (completion) or [B, T] (canvas); 0 where not covered.
    pub logp: Tensor,
    /// 1 where `logp` is an estimate, 0 elsewhere; same shape and dtype as `logp`.
    pub mask: Tensor,
}

/// The coupled (DiffuCoder) estimate: every completion token scored once per pair of forwards.
#[derive(Debug, Clone)]
pub struct Coupled {
    /// log π per completion position [B, L], from whichever forward had the token masked.
    pub logp: Tensor,
    /// All ones [B, L]: every completion token is covered.
    pub mask: Tensor,
    /// The first forward's mask M [B, L] (1 = masked there; the second forward masks 1 − M).
    pub first: Tensor,
    /// DiffuCoder's importance weights [B, L]: 1/t on M, 1/(1 − t) on its complement.
    pub weight: Tensor,
    /// The mask ratio t of the first forward.
    pub t: f64,
}

/// The Monte Carlo ELBO of an answer given its prompt.
#[derive(Debug, Clone)]
pub struct Elbo {
    /// The estimate of log p(answer | prompt) per row, [B].
    pub loglik: Tensor,
    /// Per-token contributions [B, L] (summing to `loglik`): −Σ_copies CE·L/count / copies.
    pub logp: Tensor,
    /// 1 where the answer token was masked in at least one copy, [B, L].
    pub mask: Tensor,
}

/// One Monte Carlo copy of [`elbo`]: which answer positions it masks.
#[derive(Debug, Clone, PartialEq)]
pub struct ElboDraw {
    /// Round (one forward of `batch` copies per row).
    pub round: usize,
    /// Batch row.
    pub row: usize,
    /// Copy within the round, 0..batch.
    pub copy: usize,
    /// The round's stratum offset k ∈ 1..=L.
    pub k: usize,
    /// Number of masked answer tokens, `elbo_counts(k, L, batch)[copy]`.
    pub count: usize,
    /// Per answer position, whether it is masked (exactly `count` are).
    pub masked: Vec<bool>,
}

/// Token ids of a batch on the host, row-major [batch, len].
#[derive(Debug, Clone, PartialEq)]
pub struct HostIds {
    /// Rows B.
    pub batch: usize,
    /// Columns T.
    pub len: usize,
    /// B·T ids.
    pub ids: Vec<u32>,
}

impl HostIds {
    /// Reads a [B, T] tensor of ids (any integer or integral float dtype).
    pub fn from_tensor(t: &Tensor, what: &str) -> Result<HostIds> {
        let (batch, len) = t
            .dims2()
            .with_context(|| format!("{what} must be a [batch, length] tensor of ids"))?;
        let ids = t.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
        Ok(HostIds { batch, len, ids })
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> &[u32] {
        &self.ids[r * self.len..(r + 1) * self.len]
    }
}

/// Reads a [B, T] 0/1 mask (any dtype; nonzero is true) and checks its shape.
pub fn host_mask(t: &Tensor, batch: usize, len: usize, what: &str) -> Result<Vec<bool>> {
    if t.dims() != [batch, len] {
        bail!(
            "{what} has shape {:?} but [{batch}, {len}] was expected",
            t.dims()
        );
    }
    Ok(t.to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|v| v != 0.0)
        .collect())
}

/// The generator of row `row` for a call seeded with `seed` (splitmix64 of both).
pub fn row_rng(seed: u64, row: usize) -> StdRng {
    StdRng::seed_from_u64(splitmix64(
        seed ^ splitmix64((row as u64).wrapping_add(0x5851_F42D_4C95_7F2D)),
    ))
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The model's mask token id.
pub fn mask_id(model: &Llada) -> Result<u32> {
    model
        .config()
        .mask_token_id
        .context("the checkpoint's config.json has no mask_token_id")
}

/// The dtype log-probs come back in for `model`: f64 for an f64 model, f32 otherwise.
fn out_dtype(model: &Llada) -> DType {
    if model.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

fn mask_tensor(model: &Llada, m: &[bool], shape: (usize, usize)) -> Result<Tensor> {
    let v: Vec<f32> = m.iter().map(|&b| f32::from(u8::from(b))).collect();
    Ok(Tensor::from_vec(v, shape, model.device())?.to_dtype(out_dtype(model))?)
}

/// The core of every estimator: one forward over `input`, then at each flagged position of
/// `positions` (B·T) the log-softmax of logits / `divisor`, gathered at `targets` (B·T).
/// Returns [B, T] (0 at unflagged positions), differentiable with respect to the weights.
pub fn logp_at(
    model: &Llada,
    input: &HostIds,
    targets: &[u32],
    positions: &[bool],
    attention_mask: Option<&Tensor>,
    divisor: f64,
) -> Result<Tensor> {
    let (b, t) = (input.batch, input.len);
    if targets.len() != b * t || positions.len() != b * t {
        bail!(
            "targets ({}) and positions ({}) must both have B·T = {} entries",
            targets.len(),
            positions.len(),
            b * t
        );
    }
    let dev = model.device();
    let idx: Vec<u32> = positions
        .iter()
        .enumerate()
        .filter(|(_, &m)| m)
        .map(|(i, _)| i as u32)
        .collect();
    if idx.is_empty() {
        return Ok(Tensor::zeros((b, t), out_dtype(model), dev)?);
    }
    let ids = Tensor::from_vec(input.ids.clone(), (b, t), dev)?;
    let attn = attention_mask.map(|m| m.to_device(dev)).transpose()?;
    let hidden = model.forward_hidden(&ids, attn.as_ref())?;
    let d = hidden.dim(D::Minus1)?;
    let n = idx.len();
    let idx = Tensor::from_vec(idx, n, dev)?;
    let rows = hidden.reshape((b * t, d))?.index_select(&idx, 0)?;
    let mut logits = ops::upcast(&model.logits(&rows)?)?;
    if divisor != 1.0 {
        logits = (logits / divisor)?;
    }
    let tg: Vec<u32> = idx
        .to_vec1::<u32>()?
        .iter()
        .map(|&i| targets[i as usize])
        .collect();
    let tg = Tensor::from_vec(tg, n, dev)?;
    let g = ops::fused::log_softmax_gather(&logits, &tg)?;
    let out = Tensor::zeros(b * t, g.dtype(), dev)?.index_add(&idx, &g, 0)?;
    Ok(out.reshape((b, t))?)
}

/// Prompt ⊕ completion on the host, checking the batch sizes agree.
fn concat(prompt: &Tensor, completion: &Tensor) -> Result<(HostIds, usize, usize)> {
    let p = HostIds::from_tensor(prompt, "prompt")?;
    let c = HostIds::from_tensor(completion, "completion")?;
    if p.batch != c.batch {
        bail!("prompt has {} rows but completion has {}", p.batch, c.batch);
    }
    let mut ids = Vec::with_capacity(p.batch * (p.len + c.len));
    for r in 0..p.batch {
        ids.extend_from_slice(p.row(r));
        ids.extend_from_slice(c.row(r));
    }
    Ok((
        HostIds {
            batch: p.batch,
            len: p.len + c.len,
            ids,
        },
        p.len,
        c.len,
    ))
}

/// Which real prompt tokens d1 masks: per row, one uniform u per prompt position from
/// [`row_rng`]`(seed, row)`, masked iff u < `p_mask_prompt` and the position is real
/// (`real`, B·P, from the attention mask; all real when `None`). Returns B·P flags.
pub fn d1_prompt_mask(
    batch: usize,
    prompt_len: usize,
    p_mask_prompt: f64,
    seed: u64,
    real: Option<&[bool]>,
) -> Vec<bool> {
    let mut out = Vec::with_capacity(batch * prompt_len);
    for row in 0..batch {
        let mut rng = row_rng(seed, row);
        for j in 0..prompt_len {
            let u: f64 = rng.random();
            let is_real = real.is_none_or(|r| r[row * prompt_len + j]);
            out.push(is_real && u < p_mask_prompt);
        }
    }
    out
}

/// The prompt part (B·P) of an optional [B, P + L] attention mask.
fn prompt_real(
    attention_mask: Option<&Tensor>,
    b: usize,
    p: usize,
    total: usize,
) -> Result<Option<Vec<bool>>> {
    let Some(m) = attention_mask else {
        return Ok(None);
    };
    let all = host_mask(m, b, total, "attention_mask")?;
    Ok(Some(
        (0..b)
            .flat_map(|r| all[r * total..r * total + p].to_vec())
            .collect(),
    ))
}

/// d1's noisy input (`forward_process`): prompt ⊕ completion with every completion token
/// replaced by `mask` and each real prompt token masked with probability `p_mask_prompt`
/// ([`d1_prompt_mask`] of `seed`). Returns the input, the original sequence and P.
pub fn d1_input(
    prompt: &Tensor,
    completion: &Tensor,
    p_mask_prompt: f64,
    seed: u64,
    attention_mask: Option<&Tensor>,
    mask: u32,
) -> Result<(HostIds, HostIds, usize)> {
    if !(0.0..=1.0).contains(&p_mask_prompt) {
        bail!("p_mask_prompt must be in [0, 1], got {p_mask_prompt}");
    }
    let (seq, p, _) = concat(prompt, completion)?;
    let (b, t) = (seq.batch, seq.len);
    let real = prompt_real(attention_mask, b, p, t)?;
    let noise = d1_prompt_mask(b, p, p_mask_prompt, seed, real.as_deref());
    let mut input = seq.clone();
    for r in 0..b {
        for j in 0..t {
            if j >= p || noise[r * p + j] {
                input.ids[r * t + j] = mask;
            }
        }
    }
    Ok((input, seq, p))
}

/// The one-step estimator on a given (recorded or injected) input: one forward over `input`
/// [B, P + L] and log π of `completion` [B, L] at every one of the last L positions, whatever
/// they hold (d1 and IGPO mask them all). This is what [`logp_d1`] and [`logp_masked`] run
/// after drawing their input; loss replays ([`crate::train::parity`]) call it with the
/// reference trainer's realized noisy input. Returns [B, L] log-probs and an all-ones mask.
pub fn logp_on_input(
    model: &Llada,
    input: &Tensor,
    completion: &Tensor,
    attention_mask: Option<&Tensor>,
) -> Result<Estimate> {
    let x = HostIds::from_tensor(input, "input")?;
    let c = HostIds::from_tensor(completion, "completion")?;
    if c.batch != x.batch || c.len > x.len {
        bail!(
            "completion is [{}, {}] but the input is [{}, {}]: expected the same rows and at most \
             as many columns",
            c.batch,
            c.len,
            x.batch,
            x.len
        );
    }
    logp_completion(model, &x, &c, attention_mask)
}

fn logp_completion(
    model: &Llada,
    input: &HostIds,
    completion: &HostIds,
    attention_mask: Option<&Tensor>,
) -> Result<Estimate> {
    let (b, t, l) = (input.batch, input.len, completion.len);
    let p = t - l;
    let mut targets = input.ids.clone();
    let mut positions = vec![false; b * t];
    for r in 0..b {
        for j in 0..l {
            targets[r * t + p + j] = completion.ids[r * l + j];
            positions[r * t + p + j] = true;
        }
    }
    let full = logp_at(model, input, &targets, &positions, attention_mask, 1.0)?;
    Ok(Estimate {
        logp: full.narrow(1, p, l)?,
        mask: mask_tensor(model, &vec![true; b * l], (b, l))?,
    })
}

/// d1's one-step estimator (diffu-GRPO): input prompt ⊕ completion with every completion token
/// masked and each real prompt token masked with probability `p_mask_prompt`
/// ([`d1_input`]); one forward; log π(o_k) at every completion position ([`logp_on_input`]).
/// `prompt` [B, P], `completion` [B, L] (not padded: d1 pads completions with EOS and scores
/// them), `attention_mask` [B, P + L]. Returns [B, L] log-probs and an all-ones mask.
pub fn logp_d1(
    model: &Llada,
    prompt: &Tensor,
    completion: &Tensor,
    p_mask_prompt: f64,
    seed: u64,
    attention_mask: Option<&Tensor>,
) -> Result<Estimate> {
    let mask = mask_id(model)?;
    let (input, _, _) = d1_input(
        prompt,
        completion,
        p_mask_prompt,
        seed,
        attention_mask,
        mask,
    )?;
    let c = HostIds::from_tensor(completion, "completion")?;
    logp_completion(model, &input, &c, attention_mask)
}

/// Per-token entropy `−Σ p log p` [B, L] of the model's prediction for a fully masked
/// completion of `completion_len` tokens after the clean `prompt` [B, P] (detached): the
/// old-policy uncertainty IGPO's entropy filter ranks hint positions by (`trainer_igpo.py`
/// 1764–1826, on the same input as [`logp_masked`]).
pub fn masked_entropy(
    model: &Llada,
    prompt: &Tensor,
    completion_len: usize,
    attention_mask: Option<&Tensor>,
) -> Result<Tensor> {
    let mask = mask_id(model)?;
    let p = HostIds::from_tensor(prompt, "prompt")?;
    let (b, t) = (p.batch, p.len + completion_len);
    let mut ids = Vec::with_capacity(b * t);
    for r in 0..b {
        ids.extend_from_slice(p.row(r));
        ids.extend(std::iter::repeat_n(mask, completion_len));
    }
    let dev = model.device();
    let ids = Tensor::from_vec(ids, (b, t), dev)?;
    let attn = attention_mask.map(|m| m.to_device(dev)).transpose()?;
    let hidden = model
        .forward_hidden(&ids, attn.as_ref())?
        .narrow(1, p.len, completion_len)?
        .contiguous()?;
    let d = hidden.dim(D::Minus1)?;
    let logits = model.logits(&hidden.reshape((b * completion_len, d))?)?;
    let e = super::losses::entropy(&ops::upcast(&logits)?)?;
    Ok(e.reshape((b, completion_len))?.detach())
}

/// The fully-masked-completion, clean-prompt estimator (one-step GRPO, IGPO): [`logp_d1`] with
/// `p_mask_prompt = 0`.
pub fn logp_masked(
    model: &Llada,
    prompt: &Tensor,
    completion: &Tensor,
    attention_mask: Option<&Tensor>,
) -> Result<Estimate> {
    logp_d1(model, prompt, completion, 0.0, 0, attention_mask)
}

/// CJ-GRPO's trajectory step: input the recorded canvas `state` x_s [B, T]; at the positions
/// of `committed` [B, T] (1 = committed at step s) the log-softmax gathered at `target` [B, T]
/// (x_{s+1} or the final canvas). Returns [B, T] log-probs (0 elsewhere) and the committed mask.
pub fn logp_step(
    model: &Llada,
    state: &Tensor,
    target: &Tensor,
    committed: &Tensor,
    attention_mask: Option<&Tensor>,
) -> Result<Estimate> {
    let x = HostIds::from_tensor(state, "state")?;
    let y = HostIds::from_tensor(target, "target")?;
    if (y.batch, y.len) != (x.batch, x.len) {
        bail!(
            "target is [{}, {}] but state is [{}, {}]",
            y.batch,
            y.len,
            x.batch,
            x.len
        );
    }
    let pos = host_mask(committed, x.batch, x.len, "committed")?;
    let logp = logp_at(model, &x, &y.ids, &pos, attention_mask, 1.0)?;
    Ok(Estimate {
        logp,
        mask: mask_tensor(model, &pos, (x.batch, x.len))?,
    })
}

/// MDPO's step estimator: input the recorded canvas `state` x_t [B, T], logits divided by
/// `temperature + eps` ([`MDPO_EPS`] by default in the bindings), the log-softmax gathered at
/// `target` x̂0 [B, T] over every position at or after `prompt_len` that is masked in x_t.
/// Returns [B, T] log-probs (0 elsewhere) and that mask.
pub fn logp_mdpo(
    model: &Llada,
    state: &Tensor,
    target: &Tensor,
    prompt_len: usize,
    temperature: f64,
    eps: f64,
    attention_mask: Option<&Tensor>,
) -> Result<Estimate> {
    let divisor = temperature + eps;
    if divisor <= 0.0 || !divisor.is_finite() {
        bail!("temperature + eps must be positive, got {temperature} + {eps}");
    }
    let mask = mask_id(model)?;
    let x = HostIds::from_tensor(state, "state")?;
    let y = HostIds::from_tensor(target, "target")?;
    if (y.batch, y.len) != (x.batch, x.len) {
        bail!(
            "target is [{}, {}] but state is [{}, {}]",
            y.batch,
            y.len,
            x.batch,
            x.len
        );
    }
    if prompt_len > x.len {
        bail!(
            "prompt_len {prompt_len} exceeds the canvas length {}",
            x.len
        );
    }
    let pos: Vec<bool> = x
        .ids
        .iter()
        .enumerate()
        .map(|(i, &id)| i % x.len >= prompt_len && id == mask)
        .collect();
    let logp = logp_at(model, &x, &y.ids, &pos, attention_mask, divisor)?;
    Ok(Estimate {
        logp,
        mask: mask_tensor(model, &pos, (x.batch, x.len))?,
    })
}

/// LLaDA's stratified mask counts for one round of `b` copies of an answer of length `l`:
/// x_i = round(k + i·l/b) (round half to even, as `torch.round`), wrapped into [1, l] by
/// x = ((x − 1) mod l) + 1, for i in 0..b, with k ∈ 1..=l.
pub fn elbo_counts(k: usize, l: usize, b: usize) -> Vec<usize> {
    let step = l as f64 / b as f64;
    (0..b)
        .map(|i| {
            let x = (k as f64 + i as f64 * step).round_ties_even() as i64;
            ((x - 1).rem_euclid(l as i64) + 1) as usize
        })
        .collect()
}

/// Every copy [`elbo`] draws for a batch of `b` answers of length `l`: `mc_num / batch` rounds;
/// per round and row k ~ U{1..l} from the row's generator, then per copy a random permutation
/// of the answer positions whose first `count` entries are masked.
pub fn elbo_draws(
    b: usize,
    l: usize,
    mc_num: usize,
    batch: usize,
    seed: u64,
) -> Result<Vec<ElboDraw>> {
    if batch == 0 || mc_num < batch {
        bail!("elbo needs batch ≥ 1 and mc_num ≥ batch, got mc_num {mc_num}, batch {batch}");
    }
    if l == 0 {
        bail!("elbo needs a non-empty answer");
    }
    let rounds = mc_num / batch;
    let mut rngs: Vec<StdRng> = (0..b).map(|r| row_rng(seed, r)).collect();
    let mut out = Vec::with_capacity(rounds * b * batch);
    for round in 0..rounds {
        for (row, rng) in rngs.iter_mut().enumerate() {
            let k = rng.random_range(1..=l);
            for (copy, count) in elbo_counts(k, l, batch).into_iter().enumerate() {
                let mut perm: Vec<usize> = (0..l).collect();
                perm.shuffle(rng);
                let mut masked = vec![false; l];
                for &j in &perm[..count] {
                    masked[j] = true;
                }
                out.push(ElboDraw {
                    round,
                    row,
                    copy,
                    k,
                    count,
                    masked,
                });
            }
        }
    }
    Ok(out)
}

/// LLaDA's Monte Carlo ELBO (`get_log_likelihood`, without CFG): for each of `mc_num / batch`
/// rounds, `batch` copies of prompt ⊕ answer per row with the [`elbo_draws`] masks (answer
/// only), one forward of B·batch rows, loss_i = Σ_masked CE / (count_i / L); the estimate of
/// log p(answer | prompt) is −mean over all copies. `prompt` [B, P], `answer` [B, L] (its full
/// width is the answer), `attention_mask` [B, P + L].
pub fn elbo(
    model: &Llada,
    prompt: &Tensor,
    answer: &Tensor,
    mc_num: usize,
    batch: usize,
    seed: u64,
    attention_mask: Option<&Tensor>,
) -> Result<Elbo> {
    let mask = mask_id(model)?;
    let (seq, p, l) = concat(prompt, answer)?;
    let (b, t) = (seq.batch, seq.len);
    let draws = elbo_draws(b, l, mc_num, batch, seed)?;
    let rounds = mc_num / batch;
    let copies = (rounds * batch) as f64;
    let attn = match attention_mask {
        Some(m) => {
            host_mask(m, b, t, "attention_mask")?;
            let m = m.to_dtype(DType::F32)?.to_device(model.device())?;
            Some(
                m.unsqueeze(1)?
                    .broadcast_as((b, batch, t))?
                    .contiguous()?
                    .reshape((b * batch, t))?,
            )
        }
        None => None,
    };
    let targets: Vec<u32> = (0..b)
        .flat_map(|r| std::iter::repeat_n(seq.row(r), batch).flatten().copied())
        .collect();
    let mut covered = vec![false; b * l];
    let mut acc: Option<Tensor> = None;
    for round in 0..rounds {
        let mut input = HostIds {
            batch: b * batch,
            len: t,
            ids: targets.clone(),
        };
        let mut pos = vec![false; b * batch * t];
        let mut w = vec![0f32; b * batch * t];
        for d in draws.iter().filter(|d| d.round == round) {
            let base = (d.row * batch + d.copy) * t + p;
            let scale = (l as f64 / d.count as f64 / copies) as f32;
            for (j, &m) in d.masked.iter().enumerate() {
                if m {
                    input.ids[base + j] = mask;
                    pos[base + j] = true;
                    w[base + j] = scale;
                    covered[d.row * l + j] = true;
                }
            }
        }
        let g = logp_at(model, &input, &targets, &pos, attn.as_ref(), 1.0)?;
        let w = Tensor::from_vec(w, (b * batch, t), model.device())?.to_dtype(g.dtype())?;
        let contrib = (g * w)?.reshape((b, batch, t))?.sum(1)?;
        acc = Some(match acc {
            None => contrib,
            Some(a) => (a + contrib)?,
        });
    }
    let per_token = acc
        .context("elbo drew no rounds")?
        .narrow(1, p, l)?
        .contiguous()?;
    Ok(Elbo {
        loglik: per_token.sum(1)?,
        logp: per_token,
        mask: mask_tensor(model, &covered, (b, l))?,
    })
}

/// The coupled mask ratio for `seed`: uniform in [`COUPLED_T_RANGE`], one per call (shared by
/// the rows, as DiffuCoder's one `mask_ratio` per batch).
pub fn coupled_t(seed: u64) -> f64 {
    let mut rng = StdRng::seed_from_u64(splitmix64(seed ^ 0xC0C0_11ED_0000_0001));
    rng.random_range(COUPLED_T_RANGE.0..COUPLED_T_RANGE.1)
}

/// The coupled first mask M (B·L): completion position j of row r is in M iff a uniform from
/// [`row_rng`]`(seed, r)` (one per position, in order) is below `t`.
pub fn coupled_mask(batch: usize, len: usize, t: f64, seed: u64) -> Vec<bool> {
    let mut out = Vec::with_capacity(batch * len);
    for row in 0..batch {
        let mut rng = row_rng(seed, row);
        for _ in 0..len {
            let u: f64 = rng.random();
            out.push(u < t);
        }
    }
    out
}

/// DiffuCoder's coupled estimator: with t (given, else [`coupled_t`]`(seed)`) mask the
/// completion at M ([`coupled_mask`]) in one copy and at its complement in another (prompt
/// clean), one forward over both (2B rows); each completion token's log-prob comes from the copy
/// that had it masked, so every token is scored exactly once per pair. DiffuCoder's released
/// per-token log-prob is `(logp_full + weight · logp) / 2` with `logp_full` from
/// [`logp_masked`]; this returns the parts.
pub fn logp_coupled(
    model: &Llada,
    prompt: &Tensor,
    completion: &Tensor,
    t: Option<f64>,
    seed: u64,
    attention_mask: Option<&Tensor>,
) -> Result<Coupled> {
    let t = t.unwrap_or_else(|| coupled_t(seed));
    if !(t > 0.0 && t < 1.0) {
        bail!("the coupled mask ratio t must be in (0, 1), got {t}");
    }
    let mask = mask_id(model)?;
    let (seq, p, l) = concat(prompt, completion)?;
    let (b, len) = (seq.batch, seq.len);
    let first = coupled_mask(b, l, t, seed);
    let mut input = HostIds {
        batch: 2 * b,
        len,
        ids: [seq.ids.clone(), seq.ids.clone()].concat(),
    };
    let mut pos = vec![false; 2 * b * len];
    for r in 0..b {
        for j in 0..l {
            let m = first[r * l + j];
            let i = if m {
                r * len + p + j
            } else {
                (b + r) * len + p + j
            };
            input.ids[i] = mask;
            pos[i] = true;
        }
    }
    let targets = [seq.ids.clone(), seq.ids.clone()].concat();
    let attn = match attention_mask {
        Some(m) => {
            host_mask(m, b, len, "attention_mask")?;
            Some(Tensor::cat(&[m, m], 0)?)
        }
        None => None,
    };
    let g = logp_at(model, &input, &targets, &pos, attn.as_ref(), 1.0)?;
    let logp = (g.narrow(0, 0, b)? + g.narrow(0, b, b)?)?.narrow(1, p, l)?;
    let weight: Vec<f32> = first
        .iter()
        .map(|&m| (if m { 1.0 / t } else { 1.0 / (1.0 - t) }) as f32)
        .collect();
    Ok(Coupled {
        logp,
        mask: mask_tensor(model, &vec![true; b * l], (b, l))?,
        first: mask_tensor(model, &first, (b, l))?,
        weight: Tensor::from_vec(weight, (b, l), model.device())?.to_dtype(out_dtype(model))?,
        t,
    })
}

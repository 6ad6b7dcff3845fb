//! Candidate tokens and confidences for a set of canvas rows, computed on the model's device
//! from logits `[R, V]` (only the rows that can be committed were projected through the LM head).
//!
//! All arithmetic is float64 (the logits are cast up), which is what LLaDA's Gumbel-max and
//! Fast-dLLM/IGPO's confidences use and what the golden fixtures were checked against:
//! * candidate: `x0 = argmax(l)` at temperature 0; at T > 0 Gumbel-max
//!   `x0 = argmax(l + T·g)`, `g = −log(−log u)`, u ~ U[0, 1) from the row's own generator —
//!   the log-space form of LLaDA's `argmax(exp(l) / (−log u)^T)`; it samples softmax(l / T);
//! * `low_confidence`: `softmax(l)[x0] = exp(l[x0] − logsumexp(l))` (temperature-free);
//! * `margin`: top-1 minus top-2 probability; `entropy`: `Σ p log p` (negative entropy).
//!
//! Only `[R]`-sized results come back to the host.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use rand::rngs::StdRng;
use rand::Rng;

use super::config::Remasking;

/// Candidates and (optionally) confidences for `logits` [R, V].
///
/// `noise` is the Gumbel noise `g` [R, V] (f64, same device) for T > 0; `eos_inf` sets that
/// token's logit to −inf first. With `tempered` (MDPO) and T > 0 the confidence is computed
/// from `l / T`, the distribution `x0` was sampled from. Returns `x0` [R] and, when
/// `remasking` is computed on the device (every mode except `random`), the confidences [R].
pub(crate) fn score_rows(
    logits: &Tensor,
    noise: Option<&Tensor>,
    temperature: f64,
    remasking: Remasking,
    eos_inf: Option<u32>,
    tempered: bool,
) -> Result<(Vec<u32>, Option<Vec<f64>>)> {
    let (_, v) = logits.dims2()?;
    let dev = logits.device().clone();
    let mut l = logits.to_dtype(DType::F64)?;
    if let Some(eos) = eos_inf {
        let mut row = vec![0f64; v];
        if (eos as usize) < v {
            row[eos as usize] = f64::NEG_INFINITY;
        }
        l = l.broadcast_add(&Tensor::from_vec(row, (1, v), &dev)?)?;
    }
    let x0 = match noise {
        Some(g) => (&l + (g * temperature)?)?.argmax_keepdim(D::Minus1)?,
        None => l.argmax_keepdim(D::Minus1)?,
    };
    if tempered && temperature > 0.0 {
        l = (l / temperature)?;
    }
    let conf = match remasking {
        Remasking::Random => None,
        _ => {
            let m = l.max_keepdim(D::Minus1)?;
            let lse = (l.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()? + &m)?;
            let c = match remasking {
                Remasking::LowConfidence => (l.gather(&x0, D::Minus1)? - &lse)?.exp()?,
                Remasking::Margin => {
                    let top = l.argmax_keepdim(D::Minus1)?;
                    let ids = Tensor::arange(0u32, v as u32, &dev)?.reshape((1, v))?;
                    let is_top = ids.broadcast_eq(&top)?;
                    let neg = Tensor::full(f64::NEG_INFINITY, l.shape(), &dev)?;
                    let m2 = is_top.where_cond(&neg, &l)?.max_keepdim(D::Minus1)?;
                    ((m - &lse)?.exp()? - (m2 - &lse)?.exp()?)?
                }
                Remasking::Entropy => {
                    let lp = l.broadcast_sub(&lse)?;
                    let p = lp.exp()?;
                    let plogp = (&p * &lp)?;
                    let zero = Tensor::zeros(l.shape(), DType::F64, &dev)?;
                    p.gt(0.0)?
                        .where_cond(&plogp, &zero)?
                        .sum_keepdim(D::Minus1)?
                }
                Remasking::Random => unreachable!("handled above"),
            };
            Some(c.flatten_all()?.to_vec1::<f64>()?)
        }
    };
    Ok((x0.flatten_all()?.to_vec1::<u32>()?, conf))
}

/// Fills `out` with standard Gumbel noise `−log(−log u)`, u ~ U[0, 1) drawn in order.
pub(crate) fn fill_gumbel(rng: &mut StdRng, out: &mut [f64]) {
    for g in out {
        let u: f64 = rng.random();
        *g = -(-u.ln()).ln();
    }
}

/// One row's share of a step's noise: `n_main` rows from its main stream, `n_aux` from its
/// auxiliary stream (positions outside the window, recorded predictions only).
pub(crate) struct NoiseJob<'a> {
    pub main: &'a mut StdRng,
    pub aux: &'a mut StdRng,
    pub n_main: usize,
    pub n_aux: usize,
}

/// Gumbel noise for a step as an [R, V] f64 tensor on `device`: first every row's main rows
/// (row order), then every row's auxiliary rows. Rows are drawn in parallel threads; each
/// row's stream is consumed in a fixed order, so the result does not depend on the batch.
pub(crate) fn gumbel_tensor(
    jobs: Vec<NoiseJob<'_>>,
    vocab: usize,
    device: &Device,
) -> Result<Tensor> {
    let total_main: usize = jobs.iter().map(|j| j.n_main).sum();
    let total: usize = total_main + jobs.iter().map(|j| j.n_aux).sum::<usize>();
    let mut data = vec![0f64; total * vocab];
    {
        let (main_buf, aux_buf) = data.split_at_mut(total_main * vocab);
        let mut main_rest = main_buf;
        let mut aux_rest = aux_buf;
        let mut work = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (m, mr) = main_rest.split_at_mut(job.n_main * vocab);
            let (a, ar) = aux_rest.split_at_mut(job.n_aux * vocab);
            main_rest = mr;
            aux_rest = ar;
            work.push((job.main, job.aux, m, a));
        }
        let parallel = work.len() > 1 && total * vocab >= 1 << 16;
        if parallel {
            let threads = crate::threads::num_threads();
            let per = work.len().div_ceil(threads.max(1));
            let mut chunks = Vec::new();
            while !work.is_empty() {
                let rest = work.split_off(per.min(work.len()));
                chunks.push(std::mem::replace(&mut work, rest));
            }
            std::thread::scope(|s| {
                for chunk in chunks {
                    s.spawn(move || {
                        for (main, aux, m, a) in chunk {
                            fill_gumbel(main, m);
                            fill_gumbel(aux, a);
                        }
                    });
                }
            });
        } else {
            for (main, aux, m, a) in work {
                fill_gumbel(main, m);
                fill_gumbel(aux, a);
            }
        }
    }
    Ok(Tensor::from_vec(data, (total, vocab), device)?)
}

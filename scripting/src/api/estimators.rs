//! Rhai bindings for `workbench_core::train::estimators` and `workbench_core::train::sft`:
//! per-token log-probs of completions and LLaDA's diffusion pretraining/SFT losses. Each
//! function converts its arguments and calls one core function; ids are Tensors or nested
//! arrays, estimates come back as maps of Tensors.

use candle_core::{DType, Tensor};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::train::estimators::{self as est, Estimate};
use workbench_core::train::sft;

use super::convert::{check_keys, err, opt_f64, script_err, RResult};
use super::model::ScriptModel;
use super::tensor::ScriptTensor;

/// A Tensor argument, or a nested array of ids turned into one (a flat array becomes one row).
fn tensor_arg(v: &Dynamic, what: &str) -> RResult<Tensor> {
    super::model::ids_tensor(v, what)
}

fn opt_usize(opts: &Map, key: &str, default: usize, what: &str) -> RResult<usize> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_int()
            .ok()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| {
                err(format!(
                    "{what}: `{key}` must be a non-negative integer, found {v}"
                ))
            }),
    }
}

fn opt_seed(opts: &Map, what: &str) -> RResult<u64> {
    match opts.get("seed") {
        None => Ok(0),
        Some(v) => v
            .as_int()
            .map(|i| i as u64)
            .map_err(|_| err(format!("{what}: `seed` must be an integer, found {v}"))),
    }
}

fn opt_attention(opts: &Map, what: &str) -> RResult<Option<Tensor>> {
    opts.get("attention_mask")
        .filter(|v| !v.is_unit())
        .map(|v| tensor_arg(v, &format!("{what}: attention_mask")))
        .transpose()
}

fn t(x: Tensor) -> Dynamic {
    Dynamic::from(ScriptTensor::new(x))
}

fn estimate_map(e: Estimate) -> Map {
    let mut m = Map::new();
    m.insert("logp".into(), t(e.logp));
    m.insert("mask".into(), t(e.mask));
    m
}

fn loss_map(l: sft::DiffusionLoss) -> Map {
    let mut m = Map::new();
    m.insert("loss".into(), t(l.loss));
    m.insert("num_masked".into(), Dynamic::from(l.num_masked as i64));
    m
}

fn fail(what: &str) -> impl Fn(anyhow::Error) -> Box<EvalAltResult> + '_ {
    move |e| err(format!("{what}: {e:#}"))
}

#[export_module]
mod estimators_api {
    use super::*;

    /// d1's one-step estimator (diffu-GRPO): `prompt` [B, P] ⊕ `completion` [B, L] with every
    /// completion token masked and each real prompt token masked with probability
    /// `p_mask_prompt`; one forward. Options: `p_mask_prompt` (default 0.15), `seed` (default 0;
    /// same seed, same mask, per row), `attention_mask` [B, P + L] (pads are never masked).
    /// Returns `#{logp: [B, L], mask: [B, L]}`.
    #[rhai_fn(return_raw)]
    pub fn logp_d1(
        model: &mut ScriptModel,
        prompt: Dynamic,
        completion: Dynamic,
        opts: Map,
    ) -> RResult<Map> {
        let w = "logp_d1";
        check_keys(&opts, &["p_mask_prompt", "seed", "attention_mask"], w)?;
        let p = opt_f64(&opts, "p_mask_prompt", est::D1_P_MASK_PROMPT, w)?;
        let attn = opt_attention(&opts, w)?;
        est::logp_d1(
            &model.model,
            &tensor_arg(&prompt, "logp_d1: prompt")?,
            &tensor_arg(&completion, "logp_d1: completion")?,
            p,
            opt_seed(&opts, w)?,
            attn.as_ref(),
        )
        .map(estimate_map)
        .map_err(fail(w))
    }

    /// The fully-masked-completion, clean-prompt estimator (one-step GRPO, IGPO): `logp_d1`
    /// with `p_mask_prompt` 0. Returns `#{logp: [B, L], mask: [B, L]}`.
    #[rhai_fn(name = "logp_masked", return_raw)]
    pub fn logp_masked(
        model: &mut ScriptModel,
        prompt: Dynamic,
        completion: Dynamic,
    ) -> RResult<Map> {
        logp_masked_opts(model, prompt, completion, Map::new())
    }

    /// `logp_masked` with options: `attention_mask` [B, P + L] for left-padded prompts.
    #[rhai_fn(name = "logp_masked", return_raw)]
    pub fn logp_masked_opts(
        model: &mut ScriptModel,
        prompt: Dynamic,
        completion: Dynamic,
        opts: Map,
    ) -> RResult<Map> {
        let w = "logp_masked";
        check_keys(&opts, &["attention_mask"], w)?;
        let attn = opt_attention(&opts, w)?;
        est::logp_masked(
            &model.model,
            &tensor_arg(&prompt, "logp_masked: prompt")?,
            &tensor_arg(&completion, "logp_masked: completion")?,
            attn.as_ref(),
        )
        .map(estimate_map)
        .map_err(fail(w))
    }

    /// CJ-GRPO's trajectory step: input the recorded canvas `state` x_s [B, T]; at the
    /// positions of `committed` [B, T] (1 = committed at step s) the log-prob of `target`
    /// [B, T] (x_{s+1} or the final canvas). Returns `#{logp: [B, T], mask: [B, T]}` over the
    /// whole canvas (0 where not committed).
    #[rhai_fn(name = "logp_step", return_raw)]
    pub fn logp_step(
        model: &mut ScriptModel,
        state: Dynamic,
        target: Dynamic,
        committed: Dynamic,
    ) -> RResult<Map> {
        logp_step_opts(model, state, target, committed, Map::new())
    }

    /// `logp_step` with options: `attention_mask` [B, T] for left-padded prompts.
    #[rhai_fn(name = "logp_step", return_raw)]
    pub fn logp_step_opts(
        model: &mut ScriptModel,
        state: Dynamic,
        target: Dynamic,
        committed: Dynamic,
        opts: Map,
    ) -> RResult<Map> {
        let w = "logp_step";
        check_keys(&opts, &["attention_mask"], w)?;
        let attn = opt_attention(&opts, w)?;
        est::logp_step(
            &model.model,
            &tensor_arg(&state, "logp_step: state")?,
            &tensor_arg(&target, "logp_step: target")?,
            &tensor_arg(&committed, "logp_step: committed")?,
            attn.as_ref(),
        )
        .map(estimate_map)
        .map_err(fail(w))
    }

    /// MDPO's step estimator: input the canvas `state` x_t [B, T], logits divided by
    /// `temperature + eps`, the log-prob of `target` x̂0 [B, T] at every position at or after
    /// `prompt_len` that is masked in x_t. Options: `temperature` (default 1.0), `eps` (default
    /// f32 machine epsilon; the reference adds the logits dtype's epsilon, 0.0078125 for bf16),
    /// `prompt_len` (default 0), `attention_mask` [B, T]. Returns `#{logp: [B, T], mask: [B, T]}`.
    #[rhai_fn(return_raw)]
    pub fn logp_mdpo(
        model: &mut ScriptModel,
        state: Dynamic,
        target: Dynamic,
        opts: Map,
    ) -> RResult<Map> {
        let w = "logp_mdpo";
        check_keys(
            &opts,
            &["temperature", "eps", "prompt_len", "attention_mask"],
            w,
        )?;
        let attn = opt_attention(&opts, w)?;
        est::logp_mdpo(
            &model.model,
            &tensor_arg(&state, "logp_mdpo: state")?,
            &tensor_arg(&target, "logp_mdpo: target")?,
            opt_usize(&opts, "prompt_len", 0, w)?,
            opt_f64(&opts, "temperature", 1.0, w)?,
            opt_f64(&opts, "eps", est::MDPO_EPS, w)?,
            attn.as_ref(),
        )
        .map(estimate_map)
        .map_err(fail(w))
    }

    /// LLaDA's Monte Carlo ELBO of `answer` [B, L] given `prompt` [B, P]: `mc_num / batch`
    /// rounds of `batch` copies with stratified mask counts, loss Σ CE / (count / L), averaged.
    /// Options: `mc_num` (default 128), `batch` (default 16), `seed` (default 0),
    /// `attention_mask` [B, P + L]. Returns `#{loglik: [B], logp: [B, L] (per-token
    /// contributions summing to loglik), mask: [B, L]}`.
    #[rhai_fn(return_raw)]
    pub fn elbo(
        model: &mut ScriptModel,
        prompt: Dynamic,
        answer: Dynamic,
        opts: Map,
    ) -> RResult<Map> {
        let w = "elbo";
        check_keys(&opts, &["mc_num", "batch", "seed", "attention_mask"], w)?;
        let attn = opt_attention(&opts, w)?;
        let e = est::elbo(
            &model.model,
            &tensor_arg(&prompt, "elbo: prompt")?,
            &tensor_arg(&answer, "elbo: answer")?,
            opt_usize(&opts, "mc_num", 128, w)?,
            opt_usize(&opts, "batch", 16, w)?,
            opt_seed(&opts, w)?,
            attn.as_ref(),
        )
        .map_err(fail(w))?;
        let mut m = Map::new();
        m.insert("loglik".into(), t(e.loglik));
        m.insert("logp".into(), t(e.logp));
        m.insert("mask".into(), t(e.mask));
        Ok(m)
    }

    /// LLaDA's stratified mask counts for one ELBO round of `b` copies of an answer of length
    /// `l` with offset `k` (1..=l): round(k + i·l/b) wrapped into [1, l].
    #[rhai_fn(return_raw)]
    pub fn elbo_counts(k: i64, l: i64, b: i64) -> RResult<Array> {
        let (k, l, b) = match (usize::try_from(k), usize::try_from(l), usize::try_from(b)) {
            (Ok(k), Ok(l), Ok(b)) if (1..=l).contains(&k) && b > 0 => (k, l, b),
            _ => return Err(err("elbo_counts: need 1 ≤ k ≤ l and b ≥ 1")),
        };
        Ok(est::elbo_counts(k, l, b)
            .into_iter()
            .map(|c| Dynamic::from(c as i64))
            .collect())
    }

    /// DiffuCoder's coupled estimator: the completion masked at M (ratio t) in one copy and at
    /// its complement in another, prompt clean; each completion token scored once. Options:
    /// `t` (default: drawn from the seed in [0.2, 0.8)), `seed` (default 0), `attention_mask`
    /// [B, P + L]. Returns `#{logp: [B, L], mask: [B, L], first: [B, L] (M), weight: [B, L]
    /// (1/t on M, 1/(1 − t) off it), t}`; DiffuCoder's token log-prob is
    /// `(logp_masked + weight · logp) / 2`.
    #[rhai_fn(return_raw)]
    pub fn logp_coupled(
        model: &mut ScriptModel,
        prompt: Dynamic,
        completion: Dynamic,
        opts: Map,
    ) -> RResult<Map> {
        let w = "logp_coupled";
        check_keys(&opts, &["t", "seed", "attention_mask"], w)?;
        let tt = match opts.get("t") {
            None => None,
            Some(_) => Some(opt_f64(&opts, "t", 0.5, w)?),
        };
        let attn = opt_attention(&opts, w)?;
        let c = est::logp_coupled(
            &model.model,
            &tensor_arg(&prompt, "logp_coupled: prompt")?,
            &tensor_arg(&completion, "logp_coupled: completion")?,
            tt,
            opt_seed(&opts, w)?,
            attn.as_ref(),
        )
        .map_err(fail(w))?;
        let mut m = Map::new();
        m.insert("logp".into(), t(c.logp));
        m.insert("mask".into(), t(c.mask));
        m.insert("first".into(), t(c.first));
        m.insert("weight".into(), t(c.weight));
        m.insert("t".into(), Dynamic::from(c.t));
        Ok(m)
    }

    /// LLaDA's pretraining loss on `ids` [B, T]: per row t ~ U(0, 1), p_mask = (1 − ε)t + ε,
    /// each token masked with probability p_mask, loss = Σ_masked CE / p_mask / (B·T).
    /// Options: `seed` (default 0), `eps` (default 1e-3). Returns `#{loss, num_masked}`.
    #[rhai_fn(return_raw)]
    pub fn pretrain_loss(model: &mut ScriptModel, ids: Dynamic, opts: Map) -> RResult<Map> {
        let w = "pretrain_loss";
        check_keys(&opts, &["seed", "eps"], w)?;
        sft::pretrain_loss(
            &model.model,
            &tensor_arg(&ids, "pretrain_loss: ids")?,
            opt_seed(&opts, w)?,
            opt_f64(&opts, "eps", sft::PRETRAIN_EPS, w)?,
        )
        .map(loss_map)
        .map_err(fail(w))
    }

    /// LLaDA's SFT loss on `ids` [B, T]: the pretraining noise on the answer only, loss =
    /// mean over rows of Σ_masked CE / p_mask / answer length. `answer` is a [B, T] 0/1 mask
    /// (1 on the answer, EOS padding included) or a flat array of B prompt lengths. Options:
    /// `seed` (default 0), `eps` (default 1e-3), `normaliser`: `"per_row"` (default, LLaDA's
    /// mean over rows of CE / p_mask / answer length) or `"batch_tokens"` (d1's
    /// `SFT/sft_trainer.py`: the batch sum / (B·T − prompt tokens)). Returns `#{loss, num_masked}`.
    #[rhai_fn(return_raw)]
    pub fn sft_loss(
        model: &mut ScriptModel,
        ids: Dynamic,
        answer: Dynamic,
        opts: Map,
    ) -> RResult<Map> {
        let w = "sft_loss";
        check_keys(&opts, &["seed", "eps", "normaliser"], w)?;
        let norm = match opts
            .get("normaliser")
            .map(|v| v.clone().into_string().unwrap_or_else(|_| v.to_string()))
            .as_deref()
        {
            None | Some("per_row") => sft::SftNormaliser::PerRow,
            Some("batch_tokens") => sft::SftNormaliser::BatchTokens,
            Some(other) => return Err(err(format!(
                "sft_loss: unknown normaliser `{other}`; expected \"per_row\" or \"batch_tokens\""
            ))),
        };
        let ids = tensor_arg(&ids, "sft_loss: ids")?;
        let (b, len) = ids
            .dims2()
            .map_err(|_| err("sft_loss: ids must be [B, T]"))?;
        let answer = match answer.clone().try_cast::<Array>() {
            Some(a) if a.len() == b && a.iter().all(|v| v.is_int()) => {
                let lens = a
                    .iter()
                    .map(|v| {
                        v.as_int()
                            .ok()
                            .and_then(|i| usize::try_from(i).ok())
                            .ok_or_else(|| err("sft_loss: prompt lengths must be ≥ 0"))
                    })
                    .collect::<RResult<Vec<_>>>()?;
                sft::answer_mask_from_prompt_lengths(&lens, len).map_err(fail(w))?
            }
            _ => tensor_arg(&answer, "sft_loss: answer")?,
        };
        sft::sft_loss_with(
            &model.model,
            &ids,
            &answer.to_dtype(DType::F32).map_err(script_err)?,
            opt_seed(&opts, w)?,
            opt_f64(&opts, "eps", sft::PRETRAIN_EPS, w)?,
            norm,
        )
        .map(loss_map)
        .map_err(fail(w))
    }

    /// The one-step estimator on a given input `input` [B, P + L] (e.g. a recorded noisy
    /// sequence): one forward and log π of `completion` [B, L] at the last L positions.
    /// Options: `attention_mask` [B, P + L]. Returns `#{logp: [B, L], mask: [B, L]}`.
    #[rhai_fn(return_raw)]
    pub fn logp_on_input(
        model: &mut ScriptModel,
        input: Dynamic,
        completion: Dynamic,
        opts: Map,
    ) -> RResult<Map> {
        let w = "logp_on_input";
        check_keys(&opts, &["attention_mask"], w)?;
        let attn = opt_attention(&opts, w)?;
        est::logp_on_input(
            &model.model,
            &tensor_arg(&input, "logp_on_input: input")?,
            &tensor_arg(&completion, "logp_on_input: completion")?,
            attn.as_ref(),
        )
        .map(estimate_map)
        .map_err(fail(w))
    }

    /// Per-token entropy `[B, L]` (detached) of the prediction for a fully masked completion of
    /// `len` tokens after the clean `prompt` [B, P]: what IGPO's entropy filter ranks hint
    /// positions by. Options: `attention_mask` [B, P + L] (IGPO's trainer passes none).
    #[rhai_fn(return_raw)]
    pub fn masked_entropy(
        model: &mut ScriptModel,
        prompt: Dynamic,
        len: i64,
        opts: Map,
    ) -> RResult<ScriptTensor> {
        let w = "masked_entropy";
        check_keys(&opts, &["attention_mask"], w)?;
        let attn = opt_attention(&opts, w)?;
        let len = usize::try_from(len).map_err(|_| err(format!("{w}: len must be >= 0")))?;
        est::masked_entropy(
            &model.model,
            &tensor_arg(&prompt, "masked_entropy: prompt")?,
            len,
            attn.as_ref(),
        )
        .map(ScriptTensor::new)
        .map_err(fail(w))
    }
}

/// Registers the estimators and the diffusion losses.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(estimators_api).into());
}

//! Rhai bindings for `workbench_core::train::estimators` and `workbench_core::train::sft`:
//! per-token log-probs of completions and LLaDA's diffusion pretraining/SFT losses. Each takes a
//! `Rollout` (prompt, completion and attention mask from it) or, in the older form, the tensors
//! themselves; options are the core structs of `workbench_core::train::options`.

use candle_core::{DType, Tensor};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::train::estimators::{self as est, Estimate};
use workbench_core::train::options::{
    CoupledOptions, D1Options, ElboOptions, MdpoOptions, NoiseOptions, SftOptions,
};
use workbench_core::train::{on_rollout as on, sft};

use super::convert::{err, fail, options, script_err, take, RResult};
use super::model::{ids_tensor, ScriptModel};
use super::sampler::ScriptRollout;
use super::tensor::ScriptTensor;

fn t(x: Tensor) -> Dynamic {
    Dynamic::from(ScriptTensor::new(x))
}

fn estimate_map(e: Estimate) -> Map {
    Map::from_iter([("logp".into(), t(e.logp)), ("mask".into(), t(e.mask))])
}

fn coupled_map(c: est::Coupled) -> Map {
    Map::from_iter([
        ("logp".into(), t(c.logp)),
        ("mask".into(), t(c.mask)),
        ("first".into(), t(c.first)),
        ("weight".into(), t(c.weight)),
        ("t".into(), Dynamic::from(c.t)),
    ])
}

fn elbo_map(e: est::Elbo) -> Map {
    Map::from_iter([
        ("loglik".into(), t(e.loglik)),
        ("logp".into(), t(e.logp)),
        ("mask".into(), t(e.mask)),
    ])
}

fn loss_map(l: sft::DiffusionLoss) -> Map {
    Map::from_iter([
        ("loss".into(), t(l.loss)),
        ("num_masked".into(), Dynamic::from(l.num_masked as i64)),
    ])
}

/// Prompt [B, P], completion [B, L] and the `attention_mask` option [B, P + L] (taken out of
/// `opts`) of a call on tensors.
type Tensors = (Tensor, Tensor, Option<Tensor>);

fn tensors(p: &Dynamic, c: &Dynamic, opts: &mut Map, what: &str) -> RResult<Tensors> {
    let attention = take::<Dynamic>(opts, "attention_mask", what)?
        .map(|a| ids_tensor(&a, &format!("{what}: attention_mask")))
        .transpose()?;
    Ok((
        ids_tensor(p, &format!("{what}: prompt"))?,
        ids_tensor(c, &format!("{what}: completion"))?,
        attention,
    ))
}

/// The `attention_mask` option, the only one accepted by `what`.
fn attention_only(mut opts: Map, what: &str) -> RResult<Option<Tensor>> {
    let attn = take::<Dynamic>(&mut opts, "attention_mask", what)?
        .map(|a| ids_tensor(&a, &format!("{what}: attention_mask")))
        .transpose()?;
    if let Some(k) = opts.keys().next() {
        return Err(err(format!(
            "{what}: unknown option `{k}`; accepted: `attention_mask`"
        )));
    }
    Ok(attn)
}

#[export_module]
mod estimators_api {
    use super::*;

    /// d1's one-step estimator (diffu-GRPO) on a `Rollout`: every completion token masked and
    /// each real prompt token masked with probability `p_mask_prompt`; one forward. Options:
    /// `p_mask_prompt` (default 0.15), `seed` (default 0; same seed, same mask, per row).
    /// Returns `#{logp: [B, L], mask: [B, L]}`.
    #[rhai_fn(name = "logp_d1", return_raw)]
    pub fn logp_d1_r(model: &mut ScriptModel, r: ScriptRollout, opts: Map) -> RResult<Map> {
        let o: D1Options = options("logp_d1", opts)?;
        on::logp_d1(&model.model, &r.0, &o)
            .map(estimate_map)
            .map_err(fail("logp_d1"))
    }
    /// `logp_d1` on `prompt` [B, P] ⊕ `completion` [B, L] with the extra option
    /// `attention_mask` [B, P + L] (pads are never masked).
    #[rhai_fn(name = "logp_d1", return_raw)]
    pub fn logp_d1(m: &mut ScriptModel, p: Dynamic, c: Dynamic, opts: Map) -> RResult<Map> {
        let mut opts = opts;
        let (p, c, a) = tensors(&p, &c, &mut opts, "logp_d1")?;
        let o: D1Options = options("logp_d1", opts)?;
        est::logp_d1(&m.model, &p, &c, o.p_mask_prompt, o.seed, a.as_ref())
            .map(estimate_map)
            .map_err(fail("logp_d1"))
    }
    /// The fully-masked-completion, clean-prompt estimator (one-step GRPO, IGPO) on a
    /// `Rollout`: `logp_d1` with `p_mask_prompt` 0. Returns `#{logp: [B, L], mask: [B, L]}`.
    #[rhai_fn(name = "logp_masked", return_raw)]
    pub fn logp_masked_r(model: &mut ScriptModel, r: ScriptRollout) -> RResult<Map> {
        on::logp_masked(&model.model, &r.0)
            .map(estimate_map)
            .map_err(fail("logp_masked"))
    }
    /// `logp_masked` on `prompt` [B, P] and `completion` [B, L].
    #[rhai_fn(name = "logp_masked", return_raw)]
    pub fn logp_masked(m: &mut ScriptModel, p: Dynamic, c: Dynamic) -> RResult<Map> {
        logp_masked_opts(m, p, c, Map::new())
    }
    /// `logp_masked` with options: `attention_mask` [B, P + L] for left-padded prompts.
    #[rhai_fn(name = "logp_masked", return_raw)]
    pub fn logp_masked_opts(
        m: &mut ScriptModel,
        p: Dynamic,
        c: Dynamic,
        opts: Map,
    ) -> RResult<Map> {
        let mut opts = opts;
        let (p, c, a) = tensors(&p, &c, &mut opts, "logp_masked")?;
        attention_only(opts, "logp_masked")?;
        est::logp_masked(&m.model, &p, &c, a.as_ref())
            .map(estimate_map)
            .map_err(fail("logp_masked"))
    }
    /// CJ-GRPO's trajectory step on a recorded `Rollout` (`record: true`): input the state x_s
    /// of step `s`; at the positions committed at s, the log-prob of the final canvas. Returns
    /// `#{logp: [B, T], mask: [B, T]}` over the whole canvas (0 where not committed).
    #[rhai_fn(name = "logp_step", return_raw)]
    pub fn logp_step_r(model: &mut ScriptModel, r: ScriptRollout, s: i64) -> RResult<Map> {
        let s = usize::try_from(s).map_err(|_| err(format!("logp_step: bad step {s}")))?;
        on::logp_step(&model.model, &r.0, s)
            .map(estimate_map)
            .map_err(fail("logp_step"))
    }
    /// CJ-GRPO's trajectory step on tensors: input the canvas `state` x_s [B, T]; at the
    /// positions of `committed` [B, T] the log-prob of `target` [B, T].
    #[rhai_fn(name = "logp_step", return_raw)]
    pub fn logp_step(m: &mut ScriptModel, st: Dynamic, tg: Dynamic, cm: Dynamic) -> RResult<Map> {
        logp_step_opts(m, st, tg, cm, Map::new())
    }
    /// `logp_step` on tensors with options: `attention_mask` [B, T] for left-padded prompts.
    #[rhai_fn(name = "logp_step", return_raw)]
    pub fn logp_step_opts(
        m: &mut ScriptModel,
        st: Dynamic,
        tg: Dynamic,
        cm: Dynamic,
        opts: Map,
    ) -> RResult<Map> {
        let w = "logp_step";
        let attn = attention_only(opts, w)?;
        let (st, tg, cm) = (
            ids_tensor(&st, w)?,
            ids_tensor(&tg, w)?,
            ids_tensor(&cm, w)?,
        );
        est::logp_step(&m.model, &st, &tg, &cm, attn.as_ref())
            .map(estimate_map)
            .map_err(fail(w))
    }
    /// MDPO's step estimator at step `s` of a recorded `Rollout` (`record: true`): input the
    /// state x_s, target the step's prediction x̂0, logits divided by `temperature + eps`, the
    /// log-prob at every completion position masked in x_s. Options: `temperature` (default
    /// 1.0), `eps` (default f32 machine epsilon). Returns `#{logp: [B, T], mask: [B, T]}`.
    #[rhai_fn(name = "logp_mdpo", return_raw)]
    pub fn logp_mdpo_r(m: &mut ScriptModel, r: ScriptRollout, s: i64, opts: Map) -> RResult<Map> {
        let w = "logp_mdpo";
        let s = usize::try_from(s).map_err(|_| err(format!("{w}: bad step {s}")))?;
        let o: MdpoOptions = options(w, opts)?;
        on::logp_mdpo(&m.model, &r.0, s, &o)
            .map(estimate_map)
            .map_err(fail(w))
    }
    /// MDPO's step estimator: input the canvas `state` x_t [B, T], logits divided by
    /// `temperature + eps`, the log-prob of `target` x̂0 [B, T] at every position at or after
    /// `prompt_len` that is masked in x_t. Options: `temperature` (default 1.0), `eps` (default
    /// f32 machine epsilon; the reference adds the logits dtype's epsilon, 0.0078125 for bf16),
    /// `prompt_len` (default 0), `attention_mask` [B, T]. Returns `#{logp: [B, T], mask: [B, T]}`.
    #[rhai_fn(name = "logp_mdpo", return_raw)]
    pub fn logp_mdpo(m: &mut ScriptModel, st: Dynamic, tg: Dynamic, opts: Map) -> RResult<Map> {
        let mut opts = opts;
        let w = "logp_mdpo";
        let attn = take::<Dynamic>(&mut opts, "attention_mask", w)?
            .map(|a| ids_tensor(&a, "logp_mdpo: attention_mask"))
            .transpose()?;
        let o: MdpoOptions = options(w, opts)?;
        est::logp_mdpo(
            &m.model,
            &ids_tensor(&st, "logp_mdpo: state")?,
            &ids_tensor(&tg, "logp_mdpo: target")?,
            o.prompt_len,
            o.temperature,
            o.eps,
            attn.as_ref(),
        )
        .map(estimate_map)
        .map_err(fail(w))
    }
    /// LLaDA's Monte Carlo ELBO of a `Rollout`'s completions given its prompts: `mc_num / batch`
    /// rounds of `batch` copies with stratified mask counts, loss Σ CE / (count / L), averaged.
    /// Options: `mc_num` (default 128), `batch` (default 16), `seed` (default 0). Returns
    /// `#{loglik: [B], logp: [B, L] (per-token contributions summing to loglik), mask: [B, L]}`.
    #[rhai_fn(name = "elbo", return_raw)]
    pub fn elbo_r(model: &mut ScriptModel, r: ScriptRollout, opts: Map) -> RResult<Map> {
        let o: ElboOptions = options("elbo", opts)?;
        on::elbo(&model.model, &r.0, &o)
            .map(elbo_map)
            .map_err(fail("elbo"))
    }
    /// `elbo` of `answer` [B, L] given `prompt` [B, P], with the extra option
    /// `attention_mask` [B, P + L].
    #[rhai_fn(name = "elbo", return_raw)]
    pub fn elbo(m: &mut ScriptModel, p: Dynamic, a: Dynamic, opts: Map) -> RResult<Map> {
        let mut opts = opts;
        let (p, c, at) = tensors(&p, &a, &mut opts, "elbo")?;
        let o: ElboOptions = options("elbo", opts)?;
        est::elbo(&m.model, &p, &c, o.mc_num, o.batch, o.seed, at.as_ref())
            .map(elbo_map)
            .map_err(fail("elbo"))
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
    /// DiffuCoder's coupled estimator on a `Rollout`: the completion masked at M (ratio t) in one
    /// copy and at its complement in another, prompt clean; each completion token scored once.
    /// Options: `t` (default: drawn from the seed in [0.2, 0.8)), `seed` (default 0). Returns
    /// `#{logp: [B, L], mask: [B, L], first: [B, L] (M), weight: [B, L] (1/t on M, 1/(1 − t)
    /// off it), t}`; DiffuCoder's token log-prob is `(logp_masked + weight · logp) / 2`.
    #[rhai_fn(name = "logp_coupled", return_raw)]
    pub fn logp_coupled_r(model: &mut ScriptModel, r: ScriptRollout, opts: Map) -> RResult<Map> {
        let o: CoupledOptions = options("logp_coupled", opts)?;
        on::logp_coupled(&model.model, &r.0, &o)
            .map(coupled_map)
            .map_err(fail("logp_coupled"))
    }
    /// `logp_coupled` on `prompt` [B, P] and `completion` [B, L], with the extra option
    /// `attention_mask` [B, P + L].
    #[rhai_fn(name = "logp_coupled", return_raw)]
    pub fn logp_coupled(m: &mut ScriptModel, p: Dynamic, c: Dynamic, opts: Map) -> RResult<Map> {
        let mut opts = opts;
        let (p, c, a) = tensors(&p, &c, &mut opts, "logp_coupled")?;
        let o: CoupledOptions = options("logp_coupled", opts)?;
        est::logp_coupled(&m.model, &p, &c, o.t, o.seed, a.as_ref())
            .map(coupled_map)
            .map_err(fail("logp_coupled"))
    }
    /// LLaDA's pretraining loss on `ids` [B, T]: per row t ~ U(0, 1), p_mask = (1 − ε)t + ε,
    /// each token masked with probability p_mask, loss = Σ_masked CE / p_mask / (B·T).
    /// Options: `seed` (default 0), `eps` (default 1e-3). Returns `#{loss, num_masked}`.
    #[rhai_fn(return_raw)]
    pub fn pretrain_loss(model: &mut ScriptModel, ids: Dynamic, opts: Map) -> RResult<Map> {
        let o: NoiseOptions = options("pretrain_loss", opts)?;
        let ids = ids_tensor(&ids, "pretrain_loss: ids")?;
        sft::pretrain_loss(&model.model, &ids, o.seed, o.eps)
            .map(loss_map)
            .map_err(fail("pretrain_loss"))
    }
    /// LLaDA's SFT loss on a `Rollout` (prompt ++ completion, the completion being the answer):
    /// the pretraining noise on the answer only, loss = mean over rows of Σ_masked CE / p_mask /
    /// answer length. Options: `seed` (default 0), `eps` (default 1e-3). Returns
    /// `#{loss, num_masked}`.
    #[rhai_fn(name = "sft_loss", return_raw)]
    pub fn sft_loss_r(model: &mut ScriptModel, r: ScriptRollout, opts: Map) -> RResult<Map> {
        let o: SftOptions = options("sft_loss", opts)?;
        on::sft_loss(&model.model, &r.0, &o)
            .map(loss_map)
            .map_err(fail("sft_loss"))
    }

    /// LLaDA's SFT loss on `ids` [B, T]: the pretraining noise on the answer only. `answer` is a
    /// [B, T] 0/1 mask (1 on the answer, EOS padding included) or a flat array of B prompt
    /// lengths. Options: `seed` (default 0), `eps` (default 1e-3), `normaliser`: `"per_row"`
    /// (default, LLaDA's mean over rows of CE / p_mask / answer length) or `"batch_tokens"`
    /// (d1's `SFT/sft_trainer.py`: the batch sum / (B·T − prompt tokens)). Returns
    /// `#{loss, num_masked}`.
    #[rhai_fn(name = "sft_loss", return_raw)]
    pub fn sft_loss(m: &mut ScriptModel, ids: Dynamic, answer: Dynamic, opts: Map) -> RResult<Map> {
        let o: SftOptions = options("sft_loss", opts)?;
        let norm = o.to_normaliser().map_err(fail("sft_loss"))?;
        let ids = ids_tensor(&ids, "sft_loss: ids")?;
        let (b, len) = ids
            .dims2()
            .map_err(|_| err("sft_loss: ids must be [B, T]"))?;
        let answer = match answer.clone().try_cast::<Array>() {
            Some(a) if a.len() == b && a.iter().all(|v| v.is_int()) => {
                let lens = super::super::convert::usize_list(&a, "sft_loss: prompt lengths")?;
                sft::answer_mask_from_prompt_lengths(&lens, len).map_err(fail("sft_loss"))?
            }
            _ => ids_tensor(&answer, "sft_loss: answer")?,
        };
        sft::sft_loss_with(
            &m.model,
            &ids,
            &answer.to_dtype(DType::F32).map_err(script_err)?,
            o.seed,
            o.eps,
            norm,
        )
        .map(loss_map)
        .map_err(fail("sft_loss"))
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
        let attn = attention_only(opts, w)?;
        est::logp_on_input(
            &model.model,
            &ids_tensor(&input, "logp_on_input: input")?,
            &ids_tensor(&completion, "logp_on_input: completion")?,
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
        let attn = attention_only(opts, w)?;
        let len = usize::try_from(len).map_err(|_| err(format!("{w}: len must be >= 0")))?;
        est::masked_entropy(
            &model.model,
            &ids_tensor(&prompt, "masked_entropy: prompt")?,
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

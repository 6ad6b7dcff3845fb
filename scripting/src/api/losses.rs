//! Rhai bindings for `workbench_core::train::losses`: advantages, the clipped surrogate, KL
//! estimators, loss reductions, entropy and the IGPO entropy filter.

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::train::losses::{self as wl, KlKind};
use workbench_core::train::options::{
    AdvantageOptions, ClipOptions, EntropyFilterOptions, MdpoAdvantageOptions, ReduceOptions,
};

use super::convert::{err, fail, options, script_err, take, IntoScript, RResult};
use super::tensor::{from_nested, ScriptTensor};

/// A tensor from a script value that is either a Tensor or a (nested) array of numbers.
fn tensor_arg(v: &Dynamic, what: &str) -> RResult<candle_core::Tensor> {
    if let Some(t) = v.clone().try_cast::<ScriptTensor>() {
        Ok(t.t)
    } else if let Some(a) = v.clone().try_cast::<Array>() {
        from_nested(&a)
    } else {
        Err(err(format!(
            "{what} must be a Tensor or an array of numbers, found {}",
            v.type_name()
        )))
    }
}

fn non_negative(x: i64, what: &str) -> RResult<usize> {
    usize::try_from(x).map_err(|_| err(format!("{what} must be >= 0, found {x}")))
}

fn group_adv(rewards: &Dynamic, group: i64, opts: Map) -> RResult<ScriptTensor> {
    let o: AdvantageOptions = options("group_advantages", opts)?;
    let r = tensor_arg(rewards, "group_advantages: rewards")?;
    let group = non_negative(group, "group_advantages: group")?;
    wl::group_advantages(&r, group, o.to_normalise()).script()
}

fn clipped(
    logp: &ScriptTensor,
    old_logp: &ScriptTensor,
    adv: &ScriptTensor,
    mask: &ScriptTensor,
    opts: Map,
) -> RResult<Map> {
    let o: ClipOptions = options("clipped_loss", opts)?;
    let level = o.to_level().map_err(fail("clipped_loss"))?;
    let out = wl::clipped_surrogate(
        &logp.t,
        &old_logp.t,
        &adv.t,
        &mask.t,
        o.eps_low,
        o.eps_high,
        level,
    )
    .map_err(script_err)?;
    Ok(Map::from_iter([
        ("loss".into(), Dynamic::from(ScriptTensor::new(out.loss))),
        ("clip_fraction".into(), Dynamic::from(out.clip_fraction)),
        ("ratio".into(), Dynamic::from(ScriptTensor::new(out.ratio))),
    ]))
}

fn reduce_with(
    loss: &ScriptTensor,
    mask: &ScriptTensor,
    o: ReduceOptions,
) -> RResult<ScriptTensor> {
    let r = o.to_reduction().map_err(fail("reduce_loss"))?;
    wl::reduce(&loss.t, &mask.t, r).script()
}

#[export_module]
mod losses_api {
    use super::*;

    /// Group-relative advantages `r − mean(group)` of `rewards` (a Tensor `[N]` or an array of
    /// numbers), consecutive groups of `group` completions: `group_advantages([1, 0, 0, 1], 2)`.
    /// Returns an f32 Tensor `[N]`.
    #[rhai_fn(name = "group_advantages", return_raw)]
    pub fn group_advantages2(rewards: Dynamic, group: i64) -> RResult<ScriptTensor> {
        group_adv(&rewards, group, Map::new())
    }
    /// Group-relative advantages with options: `#{std: true, eps: 1e-4}` divides by the group's
    /// unbiased sample std plus `eps` (GRPO papers, TRL); `std: false` (default) only centres
    /// (d1, CJ-GRPO, IGPO code).
    #[rhai_fn(name = "group_advantages", return_raw)]
    pub fn group_advantages3(rewards: Dynamic, group: i64, opts: Map) -> RResult<ScriptTensor> {
        group_adv(&rewards, group, opts)
    }
    /// MDPO per-step advantages of step rewards `[G, T]`:
    /// `A[k,t] = (r[k,t] − r[k,t−1]) + mean(r[k,t+1..])` with `r[k,−1] = 0`, last step
    /// `(r[k,T−1] − r[k,T−2]) + r[k,T−1]` (the released trainer), then
    /// `(A − mean_k)/(std_k + 1e-4)` per step across the group (unbiased std).
    #[rhai_fn(name = "mdpo_advantages", return_raw)]
    pub fn mdpo_advantages1(rewards: Dynamic) -> RResult<ScriptTensor> {
        mdpo_advantages2(rewards, Map::new())
    }
    /// MDPO per-step advantages with options `#{eps, last_step}`: `eps` the std offset
    /// (default 1e-4), `last_step` `"reference"` (default, the release) or `"reward"` (the
    /// paper's `A[k,T−1] = r[k,T−1]`).
    #[rhai_fn(name = "mdpo_advantages", return_raw)]
    pub fn mdpo_advantages2(rewards: Dynamic, opts: Map) -> RResult<ScriptTensor> {
        let o: MdpoAdvantageOptions = options("mdpo_advantages", opts)?;
        let r = tensor_arg(&rewards, "mdpo_advantages: rewards")?;
        let last = o.to_last_step().map_err(fail("mdpo_advantages"))?;
        wl::mdpo_step_advantages_with(&r, o.eps, last).script()
    }
    /// A 0/1 mask `[G, T]` of the `k` steps of each row of `adv` `[G, T]` with the largest
    /// `|adv|` (ties go to the earlier step; `k >= T` selects all).
    #[rhai_fn(return_raw)]
    pub fn top_k_steps(adv: ScriptTensor, k: i64) -> RResult<ScriptTensor> {
        let k = non_negative(k, "top_k_steps: k")?;
        wl::top_k_steps(&adv.t, k).script()
    }
    /// The clipped surrogate per token `−min(ρA, clip(ρ, 0.8, 1.2)A)` for `logp`, `old_logp`,
    /// `mask` `[B, L]` and `adv` `[B]` or `[B, L]`, with the token ratio
    /// `ρ = exp(logp − old_logp)`. Returns `#{loss, clip_fraction, ratio}`: the per-token loss
    /// (0 outside the mask; reduce it with `reduce_loss`), the share of masked tokens where the
    /// clip is active, and the detached ratio.
    #[rhai_fn(name = "clipped_loss", return_raw)]
    pub fn clipped_loss4(
        logp: ScriptTensor,
        old_logp: ScriptTensor,
        adv: ScriptTensor,
        mask: ScriptTensor,
    ) -> RResult<Map> {
        clipped(&logp, &old_logp, &adv, &mask, Map::new())
    }
    /// The clipped surrogate with options `#{eps_low: 0.2, eps_high: 0.2, level: "token"}`;
    /// `level: "sequence"` uses the GSPO ratio `exp(mean over all L positions of the row of
    /// (logp − old_logp))` on every token of the row (IGPO's release), `"sequence_masked"` the
    /// mean over the row's masked tokens only (the GSPO paper).
    #[rhai_fn(name = "clipped_loss", return_raw)]
    pub fn clipped_loss5(
        logp: ScriptTensor,
        old_logp: ScriptTensor,
        adv: ScriptTensor,
        mask: ScriptTensor,
        opts: Map,
    ) -> RResult<Map> {
        clipped(&logp, &old_logp, &adv, &mask, opts)
    }
    /// Per-token KL estimate from `logp` and `ref_logp` (same shape), `kind` one of `"k1"`
    /// (`lp − ref`), `"k2"` (`½(ref − lp)²`) or `"k3"` (`exp(ref − lp) − (ref − lp) − 1`).
    #[rhai_fn(return_raw)]
    pub fn kl(logp: ScriptTensor, ref_logp: ScriptTensor, kind: &str) -> RResult<ScriptTensor> {
        let kind = KlKind::from_name(kind).map_err(fail("kl"))?;
        wl::kl(&logp.t, &ref_logp.t, kind).script()
    }
    /// Reduces a per-token loss `[B, L]` with a 0/1 mask `[B, L]` to a scalar: `mode` is
    /// `"token_mean"` (`Σ loss·mask / Σ mask`) or `"seq_mean"` (mean over rows of the row means).
    #[rhai_fn(name = "reduce_loss", return_raw)]
    pub fn reduce_loss_mode(
        loss: ScriptTensor,
        mask: ScriptTensor,
        mode: &str,
    ) -> RResult<ScriptTensor> {
        reduce_with(
            &loss,
            &mask,
            ReduceOptions {
                mode: mode.to_string(),
                ..ReduceOptions::default()
            },
        )
    }
    /// Reduces a per-token loss with options `#{mode: "token_mean" | "micro_batch_token_mean" |
    /// "seq_mean" | "constant", constant: C, rows: n}`; `"constant"` is `Σ loss·mask / (B·C)`
    /// (Dr.GRPO); `"micro_batch_token_mean"` the token mean of every block of `rows` rows,
    /// averaged over the blocks (d1's trainer: one group per micro-batch).
    #[rhai_fn(name = "reduce_loss", return_raw)]
    pub fn reduce_loss_opts(
        loss: ScriptTensor,
        mask: ScriptTensor,
        opts: Map,
    ) -> RResult<ScriptTensor> {
        reduce_with(&loss, &mask, options("reduce_loss", opts)?)
    }
    /// d1's completion mask for generated ids [B, L]: 1.0 up to and including each row's
    /// first `eos_id`, 0.0 after it (a row without EOS is all ones).
    #[rhai_fn(return_raw)]
    pub fn completion_mask(ids: ScriptTensor, eos_id: i64) -> RResult<ScriptTensor> {
        wl::completion_mask(&ids.t, eos_id as u32).script()
    }
    /// Entropy `−Σ p log p` of `softmax(logits)` over the last dim (differentiable):
    /// `[..., V]` → `[...]`.
    #[rhai_fn(return_raw)]
    pub fn entropy(logits: ScriptTensor) -> RResult<ScriptTensor> {
        wl::entropy(&logits.t).script()
    }
    /// The IGPO entropy filter: a 0/1 mask `[B, L]`, 1 outside `subset` and, inside it, per row
    /// only the `max(1, floor(tau·n))` of the row's `n` subset positions with the highest
    /// `entropy` (IGPO's trainer).
    #[rhai_fn(name = "entropy_filter", return_raw)]
    pub fn entropy_filter3(
        entropy: ScriptTensor,
        subset: ScriptTensor,
        tau: f64,
    ) -> RResult<ScriptTensor> {
        wl::entropy_filter(&entropy.t, &subset.t, tau).script()
    }
    /// The IGPO entropy filter with options `#{cut}`: `"row_top_k"` (default, IGPO's trainer)
    /// or `"batch_quantile"` (one threshold `quantile(subset entropies of the whole batch,
    /// 1 − tau)`, ties kept, as TRL's `get_high_entropy_mask`).
    #[rhai_fn(name = "entropy_filter", return_raw)]
    pub fn entropy_filter4(
        entropy: ScriptTensor,
        subset: ScriptTensor,
        tau: f64,
        opts: Map,
    ) -> RResult<ScriptTensor> {
        let o: EntropyFilterOptions = options("entropy_filter", opts)?;
        let cut = o.to_cut().map_err(fail("entropy_filter"))?;
        wl::entropy_filter_with(&entropy.t, &subset.t, tau, cut).script()
    }

    /// MDPO's loss of (rollout, step) pairs, one per row, as the release computes it: `logp`,
    /// `mask` (the tokens masked in the step's input), `conf` (the sampler's confidence per
    /// token) `[B, L]`, `adv` `[B]`; per token `−min(ρÂ, clip(ρ)Â)·L/(n + 1e-4) + β·k2`, then
    /// `Σ per_token·mask·conf / (Σ mask + 1e-4)`. Options: `gen_length` (L, required),
    /// `beta` (0.02), `eps_low`/`eps_high` (0.2), `ref_logp` (needed when beta > 0),
    /// `old_logp` (default: logp detached, ρ = 1 with the gradient of logp, μ = 1),
    /// `kl_by_confidence` (true: the release weights the KL term by conf too). Returns
    /// `#{loss: [B], kl: [..]}`; the release's update is the sum over pairs / the rollouts.
    #[rhai_fn(return_raw)]
    pub fn mdpo_loss(
        logp: ScriptTensor,
        adv: ScriptTensor,
        mask: ScriptTensor,
        conf: ScriptTensor,
        opts: Map,
    ) -> RResult<Map> {
        let w = "mdpo_loss";
        let mut opts = opts;
        let tensor_opt = |opts: &mut Map, k: &str| -> RResult<Option<candle_core::Tensor>> {
            take::<Dynamic>(opts, k, w)?
                .map(|v| tensor_arg(&v, &format!("{w}: {k}")))
                .transpose()
        };
        let (rf, old) = (
            tensor_opt(&mut opts, "ref_logp")?,
            tensor_opt(&mut opts, "old_logp")?,
        );
        if !opts.contains_key("gen_length") {
            return Err(err(
                "mdpo_loss: `gen_length` (a positive integer) is required",
            ));
        }
        let cfg: wl::MdpoLossConfig = options(w, opts)?;
        if cfg.beta != 0.0 && rf.is_none() {
            return Err(err("mdpo_loss: beta > 0 needs `ref_logp`"));
        }
        let out = wl::mdpo_loss(
            &logp.t,
            old.as_ref(),
            rf.as_ref(),
            &adv.t,
            &mask.t,
            &conf.t,
            &cfg,
        )
        .map_err(script_err)?;
        let mut m = Map::new();
        m.insert("loss".into(), Dynamic::from(ScriptTensor::new(out.loss)));
        m.insert(
            "kl".into(),
            out.kl
                .into_iter()
                .map(Dynamic::from)
                .collect::<Array>()
                .into(),
        );
        Ok(m)
    }
}

/// Registers this area's types and functions.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(losses_api).into());
}

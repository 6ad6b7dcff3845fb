//! IGPO inpainting hints from scripts: `igpo_hints` (batch of hint maps from a reference
//! solution's tokens), `hint_mask` (the hint positions as a tensor) and
//! `reference_solution` (a task's full reference solution text, when the data has one).

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::train::hints::seeded_hints;
use workbench_core::train::options::HintOptions;

use super::convert::{err, options, value, IntoScript, RResult};
use super::tasks::ScriptTask;
use super::tensor::ScriptTensor;

#[export_module]
mod hints_api {
    use super::*;

    /// IGPO hint maps, one per entry of `etas` (the hint ratios η, e.g. drawn from
    /// U[0.2, 0.6]): the reference-solution `tokens` (array of ids) truncated to
    /// `gen_length − margin`, cut into chunks of random size `min_chunk..=max_chunk` (short
    /// tail dropped), `total − ⌊total·(1 − η)⌋` chunks revealed at random (the last always),
    /// placed with gaps stretched by `clamp((gen_length − margin) / trace_len, 1, max_stretch)`
    /// (each gap ≤ `max_spacing`). Options (IGPO's defaults): `seed` (0; row i draws from
    /// `seed + i`), `margin` 30, `min_chunk` 5, `max_chunk` 10, `max_spacing` 100,
    /// `max_stretch` 1.5. Returns an array of maps offset → token for `generate`'s `hints`.
    #[rhai_fn(return_raw)]
    pub fn igpo_hints(tokens: Array, gen_length: i64, etas: Array, opts: Map) -> RResult<Array> {
        let toks: Vec<u32> = value(
            &tokens.into(),
            "igpo_hints: tokens",
            "an array of token ids",
        )?;
        let etas: Vec<f64> = value(&etas.into(), "igpo_hints: etas", "an array of numbers")?;
        let gen_length = usize::try_from(gen_length)
            .map_err(|_| err("igpo_hints: gen_length must be non-negative"))?;
        let o: HintOptions = options("igpo_hints", opts)?;
        let (cfg, seed) = (o.to_config(), o.seed);
        etas.iter()
            .enumerate()
            .map(|(i, &eta)| {
                let h = seeded_hints(
                    &toks,
                    gen_length,
                    eta,
                    &cfg,
                    seed.wrapping_add(i as i64) as u64,
                );
                let m: Map = h
                    .into_iter()
                    .map(|(off, t)| (off.to_string().into(), Dynamic::from(i64::from(t))))
                    .collect();
                Ok(Dynamic::from_map(m))
            })
            .collect()
    }

    /// The hint positions of `hints` (an array of maps offset → token, one per row) as a
    /// `[B, gen_length]` u8 mask (1 = hint), e.g. the `subset` of `entropy_filter`.
    #[rhai_fn(return_raw)]
    pub fn hint_mask(hints: Array, gen_length: i64) -> RResult<ScriptTensor> {
        let l = usize::try_from(gen_length).map_err(|_| err("hint_mask: bad gen_length"))?;
        let mut flat = vec![0u8; hints.len() * l];
        for (b, h) in hints.iter().enumerate() {
            let m = h
                .clone()
                .try_cast::<Map>()
                .ok_or_else(|| err("hint_mask: each entry must be a map offset → token"))?;
            for k in m.keys() {
                let off = k
                    .parse::<usize>()
                    .ok()
                    .filter(|&o| o < l)
                    .ok_or_else(|| err(format!("hint_mask: bad offset `{k}`")))?;
                flat[b * l + off] = 1;
            }
        }
        candle_core::Tensor::from_vec(flat, (hints.len(), l), &candle_core::Device::Cpu).script()
    }

    /// The full reference solution (reasoning trace) of a data row, e.g. GSM8K's `answer`
    /// with `####` or MATH's `solution`, or `()` when the task's data has none (then use
    /// `t.reference(row)`).
    #[rhai_fn(return_raw)]
    pub fn reference_solution(t: &mut ScriptTask, row: Dynamic) -> RResult<Dynamic> {
        let ex = crate::api::tasks::example_of(&row)?;
        Ok(t.0
            .reference_solution(&ex)
            .map_or(Dynamic::UNIT, Dynamic::from))
    }

    /// IGPO's choice of the correct hinted candidates that replace the first rows of an
    /// all-wrong group: `correct` (candidate indices within the group, ascending), at most
    /// `max_replace`: all when they fit, else a random `max_replace` of them in random order
    /// from a generator seeded by `seed` (the release's `torch.randperm`). Entry i replaces
    /// row i of the group.
    #[rhai_fn(return_raw)]
    pub fn igpo_replacements(correct: Array, max_replace: i64, seed: i64) -> RResult<Array> {
        let idx: Vec<usize> = value(
            &correct.into(),
            "igpo_replacements: `correct`",
            "an array of indices >= 0",
        )?;
        let k = usize::try_from(max_replace)
            .map_err(|_| err("igpo_replacements: max_replace must be >= 0"))?;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed as u64);
        Ok(
            workbench_core::train::hints::choose_replacements(&idx, k, &mut rng)
                .into_iter()
                .map(|i| Dynamic::from(i as i64))
                .collect(),
        )
    }
}

/// Registers `igpo_hints`, `hint_mask` and `reference_solution`.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(hints_api).into());
}

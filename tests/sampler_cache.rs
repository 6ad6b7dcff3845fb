//! Fast-dLLM key/value reuse (`cache: prefix | dual`) against exact decoding on the golden
//! cases of `samplers.json`:
//!
//! * the cached forward itself: on an unchanged canvas it reproduces the full forward's hidden
//!   states (left padding included), and `forward_hidden_kv` is the plain forward bit for bit;
//! * every block's first step is the uncached step exactly (same state → same prediction,
//!   confidences and commits);
//! * agreement with exact decoding, printed per case: of whole generations (the canvases
//!   diverge after the first differing commit), and of single cached steps against the exact
//!   step on the same canvas; the bounds are the measured values minus a margin;
//! * the work per forward falls as expected: exact per-forward position counts for a known
//!   case, prefix < full and dual < prefix everywhere;
//! * cached decoding stays batch invariant, and RCR is refused by name.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{canvas_for, case_hints, golden, ids2, tiny};
use serde_json::Value;
use workbench_core::model::Llada;
use workbench_core::sampler::{
    generate_canvas, CacheMode, Canvas, GenerateOutput, SamplerConfig, Schedule, StepRecord,
};

/// The sampler config of a fixture case (shared with `sampler_parity.rs`, without recording),
/// or `None` for the cases a cache cannot run (RCR).
fn config_for(case: &Value) -> Option<SamplerConfig> {
    if case["sampler"].as_str() == Some("rcr") {
        return None;
    }
    let mut cfg = common::config_for(case);
    cfg.record = false;
    Some(cfg)
}

fn run(model: &Llada, case: &Value, cfg: &SamplerConfig, mask_id: u32) -> GenerateOutput {
    let canvas = canvas_for(case, cfg.gen_length, mask_id);
    generate_canvas(model, canvas, cfg, None).unwrap()
}

/// Every case a cache can run, with its exact config.
fn cases(g: &Value) -> Vec<(&Value, SamplerConfig)> {
    g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| config_for(c).map(|cfg| (c, cfg)))
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn cached_forward_on_an_unchanged_canvas_matches_the_full_forward() {
    let g = golden();
    let model = tiny();
    let mask_id = g["mask_id"].as_u64().unwrap() as u32;
    // A padded case: positions must count real tokens and the bias must cover every key.
    let case = g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "llada_lowconf_g32_s16_b8")
        .unwrap();
    let canvas = canvas_for(case, 32, mask_id);
    let (b, l, p) = (canvas.batch_size(), canvas.len(), canvas.prompt_len());
    assert!(canvas.is_padded());
    // Some committed tokens in the generation region, so the rows are not all MASK.
    let mut rows = canvas.ids().to_vec();
    for (r, row) in rows.iter_mut().enumerate() {
        for (j, t) in row[p..p + 12].iter_mut().enumerate() {
            *t = (37 * (j + r) % 900) as u32;
        }
    }
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    let ids = Tensor::from_vec(flat, (b, l), &Device::Cpu).unwrap();
    let mask = canvas.attention_tensor(&Device::Cpu).unwrap().unwrap();

    let plain = model.forward_hidden(&ids, Some(&mask)).unwrap();
    let (full, kv) = model.forward_hidden_kv(&ids, Some(&mask)).unwrap();
    assert_eq!(
        max_abs_diff(&plain, &full),
        0.0,
        "forward_hidden_kv must be bitwise"
    );
    assert_eq!(kv.len(), l);
    assert_eq!(kv.batch_size(), b);
    let cfg = model.config();
    for (k, v) in kv.layers() {
        assert_eq!(k.dims(), [b, cfg.kv_heads(), l, cfg.head_dim()]);
        assert_eq!(v.dims(), [b, cfg.kv_heads(), l, cfg.head_dim()]);
    }
    // Prefix-style [s, L), dual-style [s, e), and a range touching the padded prompt.
    for (s, e) in [(p + 8, l), (p + 8, p + 16), (0, 5), (3, p + 2), (0, l)] {
        let part = ids.narrow(1, s, e - s).unwrap();
        let got = model
            .forward_hidden_cached(&part, s, &kv, Some(&mask))
            .unwrap();
        let want = full.narrow(1, s, e - s).unwrap();
        // Padded query rows are never read; compare the real ones.
        let m = mask
            .narrow(1, s, e - s)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .unsqueeze(2)
            .unwrap();
        let d = max_abs_diff(
            &got.broadcast_mul(&m).unwrap(),
            &want.broadcast_mul(&m).unwrap(),
        );
        assert!(d <= 1e-5, "rows [{s}, {e}): max |cached - full| = {d}");
    }
    // Without padding (shared positions) too.
    let row0 = ids.narrow(0, 1, 1).unwrap();
    let (full1, kv1) = model.forward_hidden_kv(&row0, None).unwrap();
    let got = model
        .forward_hidden_cached(&row0.narrow(1, p, 16).unwrap(), p, &kv1, None)
        .unwrap();
    let d = max_abs_diff(&got, &full1.narrow(1, p, 16).unwrap());
    assert!(d <= 1e-5, "unpadded: max |cached - full| = {d}");
    // Mismatched shapes are refused by name.
    let e = model
        .forward_hidden_cached(&ids.narrow(1, l - 4, 4).unwrap(), l - 2, &kv, Some(&mask))
        .unwrap_err()
        .to_string();
    assert!(e.contains("past the cached length"), "{e}");
}

/// The first step of exact decoding from the canvas `state` (B·L ids): every non-mask
/// generation position is fixed as a hint, so it is neither a candidate nor counted, and the
/// step sees exactly `state`. (Not for CFG: its unconditional copy masks hints.)
fn replay_exact(
    model: &Llada,
    case: &Value,
    base: &SamplerConfig,
    state: &[u32],
    l: usize,
    p: usize,
    mask_id: u32,
) -> StepRecord {
    let hints: Vec<HashMap<usize, u32>> = state
        .chunks(l)
        .map(|row| {
            (p..l)
                .filter(|&q| row[q] != mask_id)
                .map(|q| (q - p, row[q]))
                .collect()
        })
        .collect();
    let prompts = ids2(&case["prompt_ids"]);
    let att = case
        .get("attention_mask")
        .filter(|m| !m.is_null())
        .map(ids2);
    let canvas = Canvas::from_padded(prompts, att, base.gen_length, mask_id)
        .unwrap()
        .with_hints(&hints)
        .unwrap();
    let exact = SamplerConfig {
        cache: CacheMode::None,
        record: true,
        ..base.clone()
    };
    let replay = generate_canvas(model, canvas, &exact, None).unwrap();
    replay.trajectory.unwrap().steps()[0].clone()
}

/// With a cache, the first forward of every block is the exact uncached one: replaying the
/// cached run's state at each block start through exact decoding (earlier blocks fixed as
/// hints, so they are neither candidates nor counted) gives the same step record.
#[test]
fn every_block_first_step_equals_the_uncached_step() {
    let g = golden();
    let model = tiny();
    let mask_id = g["mask_id"].as_u64().unwrap() as u32;
    let mut checked = 0;
    for (case, base) in cases(&g) {
        let name = case["name"].as_str().unwrap();
        for mode in [CacheMode::Prefix, CacheMode::Dual] {
            let cfg = SamplerConfig {
                cache: mode,
                record: true,
                ..base.clone()
            };
            let out = run(&model, case, &cfg, mask_id);
            let traj = out.trajectory.as_ref().unwrap();
            let (l, p) = (traj.len(), traj.prompt_len());
            let mut last_block = None;
            for (s, rec) in traj.steps().iter().enumerate() {
                if last_block == Some(rec.block) {
                    assert!(
                        out.forward_positions[s] < l,
                        "{name} {mode:?}: step {s} is not a block start but recomputed all {l}"
                    );
                    continue;
                }
                last_block = Some(rec.block);
                assert_eq!(
                    out.forward_positions[s], l,
                    "{name} {mode:?}: block start {s}"
                );
                // CFG masks every position that is fixed at the start in its unconditional
                // copy, so fixing earlier blocks as hints would change that copy: replay
                // only the first block there (its state is the initial canvas).
                if base.cfg_scale > 0.0 && s > 0 {
                    continue;
                }
                let first = replay_exact(&model, case, &base, &rec.state, l, p, mask_id);
                let first = &first;
                assert_eq!(first.block, rec.block, "{name} {mode:?} step {s}");
                assert_eq!(first.state, rec.state, "{name} {mode:?} step {s}: state");
                assert_eq!(
                    first.prediction, rec.prediction,
                    "{name} {mode:?} step {s}: prediction"
                );
                let same_conf = first
                    .confidence
                    .iter()
                    .zip(&rec.confidence)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same_conf, "{name} {mode:?} step {s}: confidences differ");
                assert_eq!(
                    first.committed, rec.committed,
                    "{name} {mode:?} step {s}: commits"
                );
                checked += 1;
            }
        }
    }
    println!("block starts checked: {checked}");
    assert!(checked >= 40, "only {checked} block starts checked");
}

/// Fraction of non-hint generation positions where two canvases agree.
fn agreement(
    a: &GenerateOutput,
    b: &GenerateOutput,
    hints: &HashMap<usize, u32>,
) -> (usize, usize) {
    let p = a.prompt_len;
    let mut same = 0;
    let mut total = 0;
    for (ra, rb) in a.canvas.iter().zip(&b.canvas) {
        for q in p..ra.len() {
            if hints.contains_key(&(q - p)) {
                continue;
            }
            total += 1;
            same += usize::from(ra[q] == rb[q]);
        }
    }
    (same, total)
}

#[test]
fn cached_generations_agreement_with_exact_decoding() {
    let g = golden();
    let model = tiny();
    let mask_id = g["mask_id"].as_u64().unwrap() as u32;
    let mut totals = HashMap::new();
    println!(
        "{:<28} {:>8} {:>8}   (agreement with exact decoding, non-hint generated tokens)",
        "case", "prefix", "dual"
    );
    for (case, base) in cases(&g) {
        let name = case["name"].as_str().unwrap();
        let exact = run(&model, case, &base, mask_id);
        // The exact engine is the golden reference (sampler_parity.rs checks it).
        assert_eq!(exact.canvas, ids2(&case["output_ids"]), "{name}");
        let hints = case_hints(case);
        let mut line = format!("{name:<28}");
        for mode in [CacheMode::Prefix, CacheMode::Dual] {
            let cfg = SamplerConfig {
                cache: mode,
                ..base.clone()
            };
            let out = run(&model, case, &cfg, mask_id);
            assert_eq!(out.forward_positions.len(), out.nfe);
            let (same, total) = agreement(&out, &exact, &hints);
            let t = totals.entry(mode).or_insert((0, 0));
            t.0 += same;
            t.1 += total;
            line += &format!(" {:>8.3}", same as f64 / total as f64);
        }
        println!("{line}");
    }
    let frac = |m: CacheMode| {
        let (s, t) = totals[&m];
        s as f64 / t as f64
    };
    println!(
        "{:<28} {:>8.3} {:>8.3}",
        "overall",
        frac(CacheMode::Prefix),
        frac(CacheMode::Dual)
    );
    // Measured: prefix 0.448, dual 0.439 — not "most tokens". The fixture checkpoint is tiny
    // and its predictions shift with every commit (exact decoding keeps only 64% of its
    // candidate predictions from one step to the next, see the per-step test), so one changed
    // commit sends the rest of a generation elsewhere. The bounds are the measured values
    // minus 0.05; the per-step test isolates the approximation itself.
    assert!(
        frac(CacheMode::Prefix) >= 0.40,
        "prefix agreement {}",
        frac(CacheMode::Prefix)
    );
    assert!(
        frac(CacheMode::Dual) >= 0.39,
        "dual agreement {}",
        frac(CacheMode::Dual)
    );
}

/// The approximation one cached step makes, without the divergence that compounds over a
/// generation: at every cached (non block-start) step, the candidate tokens against those of
/// the exact step on the very same canvas. For scale, the "stale" baseline: how often exact
/// decoding's prediction at a later step of a block equals its prediction at the block's
/// start (what reusing the first step's outputs unchanged would give). The cache must do
/// better than that.
#[test]
fn cached_steps_predict_like_exact_steps_on_the_same_canvas() {
    let g = golden();
    let model = tiny();
    let mask_id = g["mask_id"].as_u64().unwrap() as u32;
    let mut totals: HashMap<CacheMode, (usize, usize)> = HashMap::new();
    let mut stale = (0usize, 0usize);
    for (case, base) in cases(&g) {
        if base.cfg_scale > 0.0 {
            continue;
        }
        let cfg = SamplerConfig {
            record: true,
            ..base.clone()
        };
        let out = run(&model, case, &cfg, mask_id);
        let mut start: Option<&StepRecord> = None;
        for rec in out.trajectory.as_ref().unwrap().steps() {
            match start {
                Some(st) if st.block == rec.block => {
                    for q in (0..rec.state.len()).filter(|&q| rec.confidence[q].is_finite()) {
                        stale.1 += 1;
                        stale.0 += usize::from(rec.prediction[q] == st.prediction[q]);
                    }
                }
                _ => start = Some(rec),
            }
        }
    }
    let stale = stale.0 as f64 / stale.1 as f64;
    println!(
        "{:<28} {:>8} {:>8}   (candidate tokens equal to the exact step's, cached steps)",
        "case", "prefix", "dual"
    );
    for (case, base) in cases(&g) {
        if base.cfg_scale > 0.0 {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let mut line = format!("{name:<28}");
        for mode in [CacheMode::Prefix, CacheMode::Dual] {
            let cfg = SamplerConfig {
                cache: mode,
                record: true,
                ..base.clone()
            };
            let out = run(&model, case, &cfg, mask_id);
            let traj = out.trajectory.as_ref().unwrap();
            let (l, p) = (traj.len(), traj.prompt_len());
            let (mut same, mut total) = (0, 0);
            for (s, rec) in traj.steps().iter().enumerate() {
                if out.forward_positions[s] == l {
                    continue;
                }
                let exact = replay_exact(&model, case, &base, &rec.state, l, p, mask_id);
                for q in 0..rec.state.len() {
                    if rec.confidence[q].is_finite() {
                        total += 1;
                        same += usize::from(rec.prediction[q] == exact.prediction[q]);
                    }
                }
            }
            let t = totals.entry(mode).or_insert((0, 0));
            t.0 += same;
            t.1 += total;
            if total == 0 {
                line += &format!(" {:>8}", "-");
            } else {
                line += &format!(" {:>8.3}", same as f64 / total as f64);
            }
        }
        println!("{line}");
    }
    let frac = |m: CacheMode| {
        let (s, t) = totals[&m];
        s as f64 / t as f64
    };
    println!(
        "{:<28} {:>8.3} {:>8.3}",
        "overall",
        frac(CacheMode::Prefix),
        frac(CacheMode::Dual)
    );
    println!(
        "{:<28} {:>8.3}   (exact decoding: same prediction as at the block start)",
        "stale baseline", stale
    );
    // Measured: prefix 0.621, dual 0.614, stale baseline 0.305; bounds = measured − 0.05.
    for mode in [CacheMode::Prefix, CacheMode::Dual] {
        assert!(
            frac(mode) > stale,
            "{mode:?} per-step agreement {} <= stale {stale}",
            frac(mode)
        );
    }
    assert!(
        frac(CacheMode::Prefix) >= 0.57,
        "prefix per-step agreement {}",
        frac(CacheMode::Prefix)
    );
    assert!(
        frac(CacheMode::Dual) >= 0.56,
        "dual per-step agreement {}",
        frac(CacheMode::Dual)
    );
}

#[test]
fn forward_cost_falls_as_expected() {
    let g = golden();
    let model = tiny();
    let mask_id = g["mask_id"].as_u64().unwrap() as u32;
    let all = cases(&g);

    // Known case: prompt 11 + gen 32 = L 43, 4 blocks of 8, 4 steps per block, 2 commits per
    // step. Full: 16 × 43. Prefix: per block 43, then 3 × (L − block start) = 3 × (32 − 8k).
    // Dual: per block 43, then 3 × 8.
    let (case, base) = all
        .iter()
        .find(|(c, _)| c["name"] == "llada_lowconf_g32_s16_b8")
        .unwrap();
    let per_mode = |mode| {
        let cfg = SamplerConfig {
            cache: mode,
            ..base.clone()
        };
        run(&model, case, &cfg, mask_id)
    };
    let none = per_mode(CacheMode::None);
    let prefix = per_mode(CacheMode::Prefix);
    let dual = per_mode(CacheMode::Dual);
    assert_eq!(none.forward_positions, vec![43; 16]);
    let want_prefix: Vec<usize> = (0..4)
        .flat_map(|k| [43, 32 - 8 * k, 32 - 8 * k, 32 - 8 * k])
        .collect();
    assert_eq!(prefix.forward_positions, want_prefix);
    assert_eq!(dual.forward_positions, [43, 8, 8, 8].repeat(4));
    assert_eq!(
        (
            none.positions_processed,
            prefix.positions_processed,
            dual.positions_processed
        ),
        (688, 412, 268)
    );
    assert_eq!((none.nfe, prefix.nfe, dual.nfe), (16, 16, 16));

    // Every case: prefix < full and dual < prefix per step on average (block starts are full
    // forwards in every mode; ASS blocks of one step never reuse the cache).
    for (case, base) in &all {
        let name = case["name"].as_str().unwrap();
        let outs: Vec<GenerateOutput> = [CacheMode::None, CacheMode::Prefix, CacheMode::Dual]
            .into_iter()
            .map(|mode| {
                let cfg = SamplerConfig {
                    cache: mode,
                    ..base.clone()
                };
                run(&model, case, &cfg, mask_id)
            })
            .collect();
        let per_step: Vec<f64> = outs
            .iter()
            .map(|o| o.positions_processed as f64 / o.nfe as f64)
            .collect();
        println!(
            "{name:<28} positions/forward: full {:.1}, prefix {:.1}, dual {:.1} (nfe {} / {} / {})",
            per_step[0], per_step[1], per_step[2], outs[0].nfe, outs[1].nfe, outs[2].nfe
        );
        assert!(per_step[1] < per_step[0], "{name}: prefix {per_step:?}");
        // One block of the whole generation has no suffix: dual = prefix there.
        let blocks = match base.schedule {
            Schedule::Ass => base.block_num.unwrap_or(1),
            _ => base.gen_length / base.block_len(),
        };
        if blocks > 1 {
            assert!(per_step[2] < per_step[1], "{name}: dual {per_step:?}");
        } else {
            assert_eq!(per_step[2], per_step[1], "{name}: dual {per_step:?}");
        }
    }
}

#[test]
fn cached_decoding_is_batch_invariant() {
    let g = golden();
    let model = tiny();
    let mask_id = g["mask_id"].as_u64().unwrap() as u32;
    let pad = g["eos_id"].as_u64().unwrap() as u32;
    let mut checked = 0;
    for (case, base) in cases(&g) {
        let prompts = ids2(&case["prompt_ids"]);
        if prompts.len() < 2 || base.cfg_scale > 0.0 {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let att = ids2(&case["attention_mask"]);
        let real: Vec<Vec<u32>> = prompts
            .iter()
            .zip(&att)
            .map(|(r, m)| {
                r.iter()
                    .zip(m)
                    .filter(|(_, &m)| m != 0)
                    .map(|(&t, _)| t)
                    .collect()
            })
            .collect();
        for mode in [CacheMode::Prefix, CacheMode::Dual] {
            for temperature in [0.0, 0.7] {
                let cfg = SamplerConfig {
                    cache: mode,
                    temperature,
                    ..base.clone()
                };
                let batch = Canvas::new(&real, cfg.gen_length, pad, mask_id).unwrap();
                let together = generate_canvas(&model, batch, &cfg, None).unwrap();
                for (r, prompt) in real.iter().enumerate() {
                    let alone =
                        Canvas::new(std::slice::from_ref(prompt), cfg.gen_length, pad, mask_id)
                            .unwrap()
                            .with_row_seeds(vec![r as u64])
                            .unwrap();
                    let alone = generate_canvas(&model, alone, &cfg, None).unwrap();
                    assert_eq!(
                        alone.completions[0], together.completions[r],
                        "{name} {mode:?} T {temperature} row {r}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 16, "{checked}");
}

#[test]
fn cache_config_parses_and_refuses_rcr_by_name() {
    let cfg = SamplerConfig::from_json(
        r#"{"gen_length": 64, "steps": 32, "block_length": 16, "cache": "dual", "threshold": 0.9}"#,
    )
    .unwrap();
    assert_eq!(cfg.cache, CacheMode::Dual);
    for (cache, name) in [(CacheMode::Prefix, "prefix"), (CacheMode::Dual, "dual")] {
        let e = SamplerConfig {
            cache,
            rcr: true,
            ..SamplerConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&format!("cache {name} conflicts")) && e.contains("rcr"),
            "{e}"
        );
    }
}

//! The sampler engine against the reference samplers' golden outputs (`samplers.json`): every
//! case token for token, the canvas before every forward pass where the case records it, and
//! the number of forward passes of threshold decoding. Also: EOSER + ASS expressed through
//! [`SamplerHooks`] on plain low-confidence decoding reproduces the `eoser_ass` cases, and
//! config validation names the conflicting values.

mod common;

use anyhow::Result;
use candle_core::{DType, Tensor};
use common::{canvas_for, config_for, golden, ids2, tiny, usize_of};
use serde_json::Value;
use workbench_core::sampler::{
    generate_canvas, schedule, Eoser, GenerateOutput, SamplerConfig, SamplerHooks, Schedule,
};

/// First difference between two canvases as "row r position q: got a, want b".
fn first_diff(got: &[Vec<u32>], want: &[Vec<u32>]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{} rows, want {}", got.len(), want.len()));
    }
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        if g.len() != w.len() {
            return Some(format!("row {r} has {} tokens, want {}", g.len(), w.len()));
        }
        if let Some(q) = (0..g.len()).find(|&q| g[q] != w[q]) {
            return Some(format!("row {r} position {q}: got {}, want {}", g[q], w[q]));
        }
    }
    None
}

/// Checks one case's output (and states, nfe); returns the mismatches found.
fn check_case(case: &Value, out: &GenerateOutput) -> Vec<String> {
    let name = case["name"].as_str().unwrap();
    let mut errs = Vec::new();
    let want = ids2(&case["output_ids"]);
    if let Some(d) = first_diff(&out.canvas, &want) {
        errs.push(format!("{name}: output differs at {d}"));
    }
    if let Some(states) = case.get("states").filter(|s| !s.is_null()) {
        let states: Vec<Vec<Vec<u32>>> = states.as_array().unwrap().iter().map(ids2).collect();
        let traj = out.trajectory.as_ref().expect("recorded trajectory");
        let n = traj.num_steps();
        if states.len() != n && states.len() != n + 1 {
            errs.push(format!(
                "{name}: {} reference states but {n} recorded steps",
                states.len()
            ));
        }
        for (s, want_s) in states.iter().enumerate().take(n + 1) {
            let flat = traj.state_ids(s).unwrap();
            let l = traj.len();
            let got: Vec<Vec<u32>> = flat.chunks(l).map(<[u32]>::to_vec).collect();
            if let Some(d) = first_diff(&got, want_s) {
                errs.push(format!("{name}: state before forward {s} differs at {d}"));
                break;
            }
        }
    }
    if let Some(nfe) = case["params"]["nfe"].as_u64().or(case["nfe"].as_u64()) {
        if out.nfe as u64 != nfe {
            errs.push(format!(
                "{name}: nfe {} but the reference took {nfe}",
                out.nfe
            ));
        }
    }
    errs
}

fn replay(sampler: &str) {
    let g = golden();
    let model = tiny();
    let mask_id = g["mask_id"].as_u64().unwrap() as u32;
    let mut errs = Vec::new();
    let mut seen = 0;
    for case in g["cases"].as_array().unwrap() {
        if case["sampler"].as_str() != Some(sampler) {
            continue;
        }
        seen += 1;
        let cfg = config_for(case);
        let canvas = canvas_for(case, cfg.gen_length, mask_id);
        let out = generate_canvas(&model, canvas, &cfg, None).unwrap();
        errs.extend(check_case(case, &out));
    }
    assert!(seen > 0, "no {sampler} cases in samplers.json");
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn llada_low_confidence_cfg_and_eos_inf_match_reference() {
    replay("llada");
}

#[test]
fn mdpo_maskgit_linear_matches_reference() {
    replay("mdpo_linear");
}

#[test]
fn mdpo_running_confidence_remasking_matches_reference() {
    replay("rcr");
}

#[test]
fn eoser_matches_reference() {
    replay("eoser");
}

#[test]
fn eoser_with_ascending_step_size_matches_reference() {
    replay("eoser_ass");
}

#[test]
fn fast_dllm_threshold_matches_reference_tokens_and_nfe() {
    replay("threshold");
}

#[test]
fn igpo_inpainting_matches_reference() {
    replay("inpaint");
}

/// EOSER + ASS as hooks over plain LLaDA low-confidence decoding with one block of
/// `gen_length` and `steps = log2 gen_length`.
struct EoserAssHooks {
    eos: u32,
    gen_length: usize,
    block_num: usize,
    gamma_min: f64,
    gamma_max: f64,
}

impl EoserAssHooks {
    fn blocks(&self) -> Vec<schedule::Block> {
        schedule::ass_plan(self.gen_length, self.block_num)
    }
}

impl SamplerHooks for EoserAssHooks {
    fn schedule(&mut self, step: usize, remaining: &[usize]) -> Result<Option<Vec<usize>>> {
        let blocks = self.blocks();
        let blk = blocks.iter().find(|b| b.steps.contains(&step)).unwrap();
        let i = blk.steps.iter().position(|&s| s == step).unwrap();
        let k = blk.fixed_counts.as_ref().unwrap()[i];
        Ok(Some(remaining.iter().map(|_| k).collect()))
    }

    fn score(&mut self, step: usize, conf: &Tensor, cand: &Tensor) -> Result<Option<Tensor>> {
        let blocks = self.blocks();
        let end = blocks.iter().find(|b| b.steps.contains(&step)).unwrap().end;
        let s = (usize::BITS - 1 - self.gen_length.leading_zeros()) as usize;
        let t = ((1u64 << (step + 1)) - 1) as f64 / (1u64 << s) as f64;
        let gamma = self.gamma_min + (self.gamma_max - self.gamma_min) * t;
        let (b, g) = conf.dims2()?;
        let is_eos = cand.eq(self.eos)?.to_dtype(DType::F32)?;
        // conf · (1 + (γ − 1)·[x0 = EOS]), then −inf right of the ASS block of this step.
        let factor = ((is_eos * (gamma - 1.0))? + 1.0)?;
        let scaled = (conf * factor)?;
        let cols: Vec<f32> = (0..g)
            .map(|j| if j < end { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let right = Tensor::from_vec(cols, (1, g), conf.device())?.broadcast_as((b, g))?;
        Ok(Some((scaled + right)?))
    }
}

#[test]
fn eoser_ass_as_hooks_on_plain_low_confidence_matches_reference() {
    let g = golden();
    let model = tiny();
    let mask_id = g["mask_id"].as_u64().unwrap() as u32;
    let eos = g["eos_id"].as_u64().unwrap() as u32;
    let mut seen = 0;
    for case in g["cases"].as_array().unwrap() {
        if case["sampler"].as_str() != Some("eoser_ass") {
            continue;
        }
        seen += 1;
        let p = &case["params"];
        let cfg = SamplerConfig {
            gen_length: usize_of(p, "gen_length"),
            steps: usize_of(p, "steps"),
            ..SamplerConfig::default()
        };
        let mut hooks = EoserAssHooks {
            eos,
            gen_length: cfg.gen_length,
            block_num: usize_of(p, "block_num"),
            gamma_min: p["eos_min_gamma"].as_f64().unwrap(),
            gamma_max: p["eos_max_gamma"].as_f64().unwrap(),
        };
        let canvas = canvas_for(case, cfg.gen_length, mask_id);
        let out = generate_canvas(&model, canvas, &cfg, Some(&mut hooks)).unwrap();
        let errs = check_case(case, &out);
        assert!(errs.is_empty(), "{}", errs.join("\n"));
    }
    assert!(seen > 0);
}

#[test]
fn validation_errors_name_the_conflicting_values() {
    let err = |cfg: SamplerConfig| cfg.validate().unwrap_err().to_string();
    let base = SamplerConfig::default();
    let e = err(SamplerConfig {
        gen_length: 30,
        block_length: Some(8),
        ..base.clone()
    });
    assert!(
        e.contains("gen_length 30") && e.contains("block_length 8"),
        "{e}"
    );
    let e = err(SamplerConfig {
        gen_length: 32,
        block_length: Some(8),
        steps: 10,
        ..base.clone()
    });
    assert!(e.contains("steps 10") && e.contains("4"), "{e}");
    let e = err(SamplerConfig {
        gen_length: 32,
        steps: 6,
        schedule: Schedule::Ass,
        ..base.clone()
    });
    assert!(e.contains("steps 6") && e.contains("= 5"), "{e}");
    let e = err(SamplerConfig {
        threshold: Some(0.9),
        rcr: true,
        ..base.clone()
    });
    assert!(e.contains("0.9") && e.contains("rcr"), "{e}");
    let e = err(SamplerConfig {
        block_num: Some(3),
        ..base.clone()
    });
    assert!(
        e.contains("block_num 3") && e.contains("schedule is linear"),
        "{e}"
    );
    let e = err(SamplerConfig {
        eoser: Some(Eoser {
            gamma_min: 0.9,
            gamma_max: 0.1,
        }),
        ..base.clone()
    });
    assert!(e.contains("0.9") && e.contains("0.1"), "{e}");
    let e = err(SamplerConfig {
        cache: workbench_core::sampler::CacheMode::Dual,
        rcr: true,
        ..base.clone()
    });
    assert!(e.contains("cache dual") && e.contains("rcr"), "{e}");
    let e = SamplerConfig::from_json(r#"{"gen_length": 64, "stepz": 3}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stepz"), "{e}");
    let ok = SamplerConfig::from_json(
        r#"{"gen_length": 64, "steps": 32, "block_length": 16,
        "remasking": "margin", "schedule": "maskgit_cosine", "eoser": {"gamma_min": 0.4,
        "gamma_max": 1.0}}"#,
    )
    .unwrap();
    assert_eq!(ok.block_len(), 16);
}

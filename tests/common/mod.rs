//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::Tensor;
use workbench_core::sampler::{Canvas, Eoser, SamplerConfig, Schedule};

/// Path of a file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Largest |a - b| over the elements where `mask` (broadcast over the last dim) is 1.
pub fn max_abs_diff_masked(a: &Tensor, b: &Tensor, mask: Option<&Tensor>) -> f32 {
    let a = a.to_dtype(candle_core::DType::F32).unwrap();
    let b = b.to_dtype(candle_core::DType::F32).unwrap();
    let diff = (a - b).unwrap().abs().unwrap();
    let diff = match mask {
        Some(m) => {
            let m = m
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .unsqueeze(2)
                .unwrap();
            diff.broadcast_mul(&m).unwrap()
        }
        None => diff,
    };
    diff.flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The tiny fixture LLaDA on CPU, f32.
pub fn tiny() -> workbench_core::model::Llada {
    workbench_core::model::Llada::load(&fixture("llada-tiny"), &Default::default()).unwrap()
}

/// The reference samplers' golden outputs (`samplers.json`).
pub fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("samplers.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A JSON array of arrays of token ids.
pub fn ids2(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

/// Parameter `k` of a fixture case as usize.
pub fn usize_of(p: &serde_json::Value, k: &str) -> usize {
    p[k].as_u64()
        .unwrap_or_else(|| panic!("param {k} missing"))
        .try_into()
        .unwrap()
}

/// The sampler config a fixture case stands for (README table of `samplers.json`).
pub fn config_for(case: &serde_json::Value) -> SamplerConfig {
    let p = &case["params"];
    let mut cfg = SamplerConfig {
        gen_length: usize_of(p, "gen_length"),
        temperature: p["temperature"].as_f64().unwrap_or(0.0),
        ..SamplerConfig::default()
    };
    if let Some(s) = p["steps"].as_u64() {
        cfg.steps = s as usize;
    }
    if let Some(bl) = p["block_length"].as_u64() {
        cfg.block_length = Some(bl as usize);
    }
    let gammas = || Eoser {
        gamma_min: p["eos_min_gamma"].as_f64().unwrap(),
        gamma_max: p["eos_max_gamma"].as_f64().unwrap(),
    };
    match case["sampler"].as_str().unwrap() {
        "llada" => {
            assert_eq!(p["remasking"].as_str(), Some("low_confidence"));
            cfg.cfg_scale = p["cfg_scale"].as_f64().unwrap_or(0.0);
            cfg.logits_eos_inf = p["logits_eos_inf"].as_bool().unwrap_or(false);
        }
        "mdpo_linear" | "rcr" => {
            // MDPO's "linear" mode is the MaskGIT linear schedule.
            assert_eq!(p["schedule"].as_str(), Some("linear"));
            cfg.schedule = Schedule::MaskgitLinear;
            cfg.rcr = p["rcr"].as_bool().unwrap();
        }
        "eoser" => cfg.eoser = Some(gammas()),
        "eoser_ass" => {
            cfg.schedule = Schedule::Ass;
            cfg.block_num = Some(usize_of(p, "block_num"));
            cfg.eoser = Some(gammas());
        }
        "threshold" => cfg.threshold = Some(p["threshold"].as_f64().unwrap()),
        "inpaint" => cfg.eos_early_exit = true,
        other => panic!("unknown sampler {other}"),
    }
    cfg.record = case.get("states").is_some_and(|s| !s.is_null());
    cfg
}

/// The fixed hint tokens of a fixture case (offset in the generation → token).
pub fn case_hints(case: &serde_json::Value) -> HashMap<usize, u32> {
    match case["params"].get("hints") {
        Some(h) if !h.is_null() => h
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.as_u64().unwrap() as u32))
            .collect(),
        _ => HashMap::new(),
    }
}

/// The canvas of a fixture case: its pre-padded prompts, attention mask and hints.
pub fn canvas_for(case: &serde_json::Value, gen_length: usize, mask_id: u32) -> Canvas {
    let prompts = ids2(&case["prompt_ids"]);
    let mask = case
        .get("attention_mask")
        .filter(|m| !m.is_null())
        .map(ids2);
    let canvas = Canvas::from_padded(prompts, mask, gen_length, mask_id).unwrap();
    let hints = case_hints(case);
    if hints.is_empty() {
        canvas
    } else {
        let rows = canvas.batch_size();
        canvas.with_hints(&vec![hints; rows]).unwrap()
    }
}

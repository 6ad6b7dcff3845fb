//! The golden sampler fixtures (`samplers.json`, made by the reference samplers): what sampler
//! configuration and canvas each case stands for. The parity tests and `workbench bench
//! --targets parity` (the GPU check) replay the cases through these two functions.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::canvas::Canvas;
use super::config::{Eoser, SamplerConfig, Schedule};

fn ids2(v: &Value, what: &str) -> Result<Vec<Vec<u32>>> {
    let rows = v
        .as_array()
        .with_context(|| format!("{what} is not an array"))?;
    rows.iter()
        .map(|r| {
            r.as_array()
                .with_context(|| format!("{what} has a row that is not an array"))?
                .iter()
                .map(|t| {
                    t.as_u64()
                        .and_then(|t| u32::try_from(t).ok())
                        .with_context(|| format!("{what} has a non-token entry {t}"))
                })
                .collect()
        })
        .collect()
}

/// A case's token-id matrix under `key` (`prompt_ids`, `output_ids`, `attention_mask`).
pub fn case_ids(case: &Value, key: &str) -> Result<Vec<Vec<u32>>> {
    ids2(&case[key], key)
}

fn param_usize(p: &Value, k: &str) -> Result<usize> {
    p[k].as_u64()
        .map(|v| v as usize)
        .with_context(|| format!("fixture param `{k}` is missing or not an integer"))
}

fn param_f64(p: &Value, k: &str) -> Result<f64> {
    p[k].as_f64()
        .with_context(|| format!("fixture param `{k}` is missing or not a number"))
}

/// The sampler configuration a fixture case stands for (the `samplers.json` table of the
/// fixtures README); `record` is set when the case lists its intermediate states.
pub fn case_config(case: &Value) -> Result<SamplerConfig> {
    let p = &case["params"];
    let mut cfg = SamplerConfig {
        gen_length: param_usize(p, "gen_length")?,
        temperature: p["temperature"].as_f64().unwrap_or(0.0),
        ..SamplerConfig::default()
    };
    if let Some(s) = p["steps"].as_u64() {
        cfg.steps = s as usize;
    }
    if let Some(bl) = p["block_length"].as_u64() {
        cfg.block_length = Some(bl as usize);
    }
    let gammas = || -> Result<Eoser> {
        Ok(Eoser {
            gamma_min: param_f64(p, "eos_min_gamma")?,
            gamma_max: param_f64(p, "eos_max_gamma")?,
        })
    };
    match case["sampler"].as_str().unwrap_or("") {
        "llada" => {
            if p["remasking"].as_str() != Some("low_confidence") {
                bail!("llada fixture cases use low_confidence remasking");
            }
            cfg.cfg_scale = p["cfg_scale"].as_f64().unwrap_or(0.0);
            cfg.logits_eos_inf = p["logits_eos_inf"].as_bool().unwrap_or(false);
        }
        "mdpo_linear" | "rcr" => {
            // MDPO's "linear" mode is the MaskGIT linear schedule.
            if p["schedule"].as_str() != Some("linear") {
                bail!("mdpo fixture cases use the linear schedule");
            }
            cfg.schedule = Schedule::MaskgitLinear;
            cfg.rcr = p["rcr"].as_bool().unwrap_or(false);
        }
        "eoser" => cfg.eoser = Some(gammas()?),
        "eoser_ass" => {
            cfg.schedule = Schedule::Ass;
            cfg.block_num = Some(param_usize(p, "block_num")?);
            cfg.eoser = Some(gammas()?);
        }
        "threshold" => cfg.threshold = Some(param_f64(p, "threshold")?),
        "inpaint" => cfg.eos_early_exit = true,
        other => bail!("unknown fixture sampler `{other}`"),
    }
    cfg.record = case.get("states").is_some_and(|s| !s.is_null());
    Ok(cfg)
}

/// The fixed hint tokens of a fixture case (offset in the generation → token).
pub fn case_hints(case: &Value) -> Result<HashMap<usize, u32>> {
    match case["params"].get("hints") {
        Some(h) if !h.is_null() => h
            .as_object()
            .context("fixture param `hints` is not an object")?
            .iter()
            .map(|(k, v)| {
                let off = k
                    .parse()
                    .with_context(|| format!("bad hint offset `{k}`"))?;
                let tok = v
                    .as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .with_context(|| format!("bad hint token {v}"))?;
                Ok((off, tok))
            })
            .collect(),
        _ => Ok(HashMap::new()),
    }
}

/// The canvas of a fixture case: its pre-padded prompts, attention mask and hints.
pub fn case_canvas(case: &Value, gen_length: usize, mask_id: u32) -> Result<Canvas> {
    let prompts = case_ids(case, "prompt_ids")?;
    let mask = match case.get("attention_mask").filter(|m| !m.is_null()) {
        Some(m) => Some(ids2(m, "attention_mask")?),
        None => None,
    };
    let canvas = Canvas::from_padded(prompts, mask, gen_length, mask_id)?;
    let hints = case_hints(case)?;
    if hints.is_empty() {
        Ok(canvas)
    } else {
        let rows = canvas.batch_size();
        canvas.with_hints(&vec![hints; rows])
    }
}

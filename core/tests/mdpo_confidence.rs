//! MDPO's sampler confidence (`mdlm_generation_utils.py` 63–79): with `tempered_confidence`
//! the recorded (and ranking) confidence of every sampled token is softmax(logits / T) of the
//! step's input, also right of the current block; without it, LLaDA's untempered softmax and
//! −inf outside the block.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use workbench_core::model::{Llada, LoadOptions};
use workbench_core::sampler::{generate, GenerateOptions, SamplerConfig};

fn model() -> Llada {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llada-tiny");
    Llada::load(&dir, &LoadOptions::default()).unwrap()
}

/// softmax(logits / t) of `state` [1, T] at position q, gathered at `token`.
fn prob(m: &Llada, state: &[u32], q: usize, token: u32, t: f64) -> f64 {
    let x = Tensor::from_vec(state.to_vec(), (1, state.len()), &Device::Cpu).unwrap();
    let row: Vec<f64> = m
        .forward(&x, None)
        .unwrap()
        .get(0)
        .unwrap()
        .get(q)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let z: Vec<f64> = row.iter().map(|v| v / t).collect();
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
    (z[token as usize] - m).exp() / s
}

#[test]
fn tempered_confidence_is_the_sampling_distributions_and_covers_later_blocks() {
    let m = model();
    let prompt = vec![995u32, 17, 230, 42, 7];
    let (t, mask) = (0.4, 999u32);
    for tempered in [true, false] {
        let cfg = SamplerConfig {
            gen_length: 8,
            steps: 4,
            block_length: Some(4),
            temperature: t,
            tempered_confidence: tempered,
            record: true,
            seed: 3,
            ..SamplerConfig::default()
        };
        let out = generate(
            &m,
            std::slice::from_ref(&prompt),
            &cfg,
            GenerateOptions::default(),
        )
        .unwrap();
        let traj = out.trajectory.as_ref().unwrap();
        let p = traj.prompt_len();
        let mut later_block = 0;
        for rec in traj.steps() {
            let block_end = p + 4 * (rec.block + 1);
            for q in p..rec.state.len() {
                if rec.state[q] != mask {
                    continue;
                }
                let c = rec.confidence[q] as f64;
                if q >= block_end {
                    if tempered {
                        later_block += 1;
                    } else {
                        assert_eq!(c, f64::NEG_INFINITY, "untempered: none outside the block");
                        continue;
                    }
                }
                let want = prob(
                    &m,
                    &rec.state,
                    q,
                    rec.prediction[q],
                    if tempered { t } else { 1.0 },
                );
                assert!(
                    (c - want).abs() < 1e-5,
                    "tempered {tempered}, step {}, position {q}: {c} vs {want}",
                    rec.step
                );
            }
        }
        assert_eq!(later_block > 0, tempered);
    }
}

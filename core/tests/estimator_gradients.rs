//! Gradient coverage canary: for every estimator and training loss, backward from its value
//! reaches every LoRA adapter matrix with a finite non-zero gradient and nothing in the frozen
//! base — with and without activation checkpointing.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use workbench_core::model::{remat, Llada, LoadOptions, LoraConfig};
use workbench_core::train::{estimators as est, sft};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llada-tiny")
}

const MASK: u32 = 999;

fn models() -> (Llada, Llada) {
    let base = Llada::load(
        &fixture(),
        &LoadOptions {
            trainable: true,
            ..Default::default()
        },
    )
    .unwrap();
    let lora = base
        .add_lora(&LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            seed: 1,
            ..LoraConfig::default()
        })
        .unwrap();
    // PEFT starts B at zero, which would leave A without gradient; give B values.
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for (name, v) in lora.adapter_vars() {
        if name.contains("lora_B") {
            let data: Vec<f32> = (0..v.elem_count())
                .map(|_| rng.random_range(-0.1f32..0.1))
                .collect();
            v.set(&Tensor::from_vec(data, v.dims(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    (base, lora)
}

fn t2(rows: &[&[u32]]) -> Tensor {
    let w = rows[0].len();
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), w), &Device::Cpu).unwrap()
}

type Objective = Box<dyn Fn(&Llada) -> Result<Tensor>>;

fn objectives() -> Vec<(&'static str, Objective)> {
    let prompt = t2(&[&[5, 17, 230, 8], &[42, 7, 3, 11]]);
    let completion = t2(&[&[20, 21, 994, 994], &[30, 31, 32, 994]]);
    let full = Tensor::cat(&[&prompt, &completion], 1).unwrap();
    let state = t2(&[
        &[5, 17, 230, 8, 20, MASK, MASK, MASK],
        &[42, 7, 3, 11, MASK, 31, MASK, MASK],
    ]);
    let committed = t2(&[&[0, 0, 0, 0, 0, 1, 0, 1], &[0, 0, 0, 0, 1, 0, 0, 0]]);
    let sum = |t: Tensor| -> Result<Tensor> { Ok(t.sum_all()?) };
    let (p, c, f, s, k) = (
        prompt.clone(),
        completion.clone(),
        full.clone(),
        state.clone(),
        committed.clone(),
    );
    vec![
        ("d1 one-step", {
            let (p, c) = (p.clone(), c.clone());
            Box::new(move |m: &Llada| sum(est::logp_d1(m, &p, &c, 0.5, 3, None)?.logp))
        }),
        ("fully masked", {
            let (p, c) = (p.clone(), c.clone());
            Box::new(move |m: &Llada| sum(est::logp_masked(m, &p, &c, None)?.logp))
        }),
        ("trajectory step", {
            let (s, f, k) = (s.clone(), f.clone(), k.clone());
            Box::new(move |m: &Llada| sum(est::logp_step(m, &s, &f, &k, None)?.logp))
        }),
        ("mdpo step", {
            let (s, f) = (s.clone(), f.clone());
            Box::new(move |m: &Llada| sum(est::logp_mdpo(m, &s, &f, 4, 0.4, 1e-5, None)?.logp))
        }),
        ("mc elbo", {
            let (p, c) = (p.clone(), c.clone());
            Box::new(move |m: &Llada| sum(est::elbo(m, &p, &c, 4, 2, 5, None)?.loglik))
        }),
        ("coupled", {
            let (p, c) = (p.clone(), c.clone());
            Box::new(move |m: &Llada| sum(est::logp_coupled(m, &p, &c, Some(0.5), 6, None)?.logp))
        }),
        ("pretraining loss", {
            let f = f.clone();
            Box::new(move |m: &Llada| Ok(sft::pretrain_loss(m, &f, 7, 1e-3)?.loss))
        }),
        ("sft loss", {
            let f = f.clone();
            Box::new(move |m: &Llada| {
                let answer = sft::answer_mask_from_prompt_lengths(&[4, 4], 8)?;
                Ok(sft::sft_loss(m, &f, &answer, 8, 1e-3)?.loss)
            })
        }),
    ]
}

#[test]
fn every_estimator_reaches_every_adapter_and_nothing_in_the_base() {
    let (base, lora) = models();
    for checkpointing in [false, true] {
        let model = lora.with_checkpointing(checkpointing);
        for (name, objective) in objectives() {
            let value = objective(&model).unwrap();
            let grads = remat::backward(&value).unwrap();
            for (var_name, v) in model.trainable_vars() {
                let g = grads.get(v.as_tensor()).unwrap_or_else(|| {
                    panic!("{name} (checkpointing {checkpointing}): no gradient for {var_name}")
                });
                let n = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    n.is_finite() && n > 0.0,
                    "{name} (checkpointing {checkpointing}): |grad {var_name}|² = {n}"
                );
            }
            for (var_name, v) in base.vars() {
                assert!(
                    grads.get(v.as_tensor()).is_none(),
                    "{name}: frozen {var_name} got a gradient"
                );
            }
        }
    }
}

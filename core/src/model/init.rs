//! Random initialisation: seeded random checkpoints for tests and benchmarks.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

use super::config::Config;
use super::llada::{Llada, LoadOptions};
use super::names::tensor_names;
use super::weights::WeightSource;

impl Llada {
    /// Random weights drawn on the host from a seeded generator: N(0, init_std) for matrices,
    /// ones for norm weights. Same seed, same model, on any device.
    pub fn random(cfg: Config, seed: u64, opts: &LoadOptions) -> Result<Llada> {
        Llada::from_source(
            cfg.clone(),
            &WeightSource::Memory(random_weights(&cfg, seed)?),
            opts,
        )
    }

    /// Random weights for benchmarks at any size: [`Llada::random`] on the CPU; on an
    /// accelerator drawn there by its seeded generator straight in the compute dtype (an
    /// 8B-parameter model in seconds instead of minutes of host sampling). Same seed, same
    /// model on one device kind; values differ from [`Llada::random`]'s.
    pub fn random_fast(cfg: Config, seed: u64, opts: &LoadOptions) -> Result<Llada> {
        if opts.device.is_cpu() {
            return Llada::random(cfg, seed, opts);
        }
        opts.device.set_seed(seed)?;
        let std = cfg.init_std as f32;
        let mut out = HashMap::new();
        for (name, shape) in tensor_names(&cfg) {
            let t = if shape.len() == 1 {
                Tensor::ones(shape, opts.dtype, &opts.device)?
            } else {
                Tensor::randn(0f32, std, shape, &opts.device)?.to_dtype(opts.dtype)?
            };
            out.insert(name, t);
        }
        Llada::from_source(cfg, &WeightSource::Memory(out), opts)
    }
}

/// Seeded random checkpoint tensors (f32, host) for `cfg`.
pub fn random_weights(cfg: &Config, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = HashMap::new();
    for (name, shape) in tensor_names(cfg) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if shape.len() == 1 {
            vec![1.0; n]
        } else {
            (0..n)
                .map(|_| (normal(&mut rng) * cfg.init_std) as f32)
                .collect()
        };
        out.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
    }
    Ok(out)
}

/// One standard normal draw (Box–Muller), so only `rand` is needed.
pub fn normal<R: Rng>(rng: &mut R) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

//! `Rng`: a seeded generator owned by the script; every draw happens on the host, so the same
//! seed gives the same numbers on any device.

use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use rand::{Rng as _, SeedableRng};
use rhai::plugin::*;
use rhai::{Array, Engine};

use super::ScriptTensor;
use crate::api::convert::{err, script_err, usize_list, IntoScript, RResult};

/// A seeded random generator owned by the script.
#[derive(Clone)]
pub struct ScriptRng {
    /// The seed it was created with.
    pub seed: i64,
    /// The generator state (ChaCha12, the same stream as `rand`'s `StdRng`), shared by copies of
    /// the script value; `resume` replaces it in place.
    pub rng: Arc<Mutex<rand_chacha::ChaCha12Rng>>,
}

#[export_module]
mod rng_api {
    use super::*;

    /// A seeded random generator: `let g = rng(42); g.rand([2, 3]); g.randn([4])`.
    #[rhai_fn(name = "rng")]
    pub fn rng(seed: i64) -> ScriptRng {
        ScriptRng {
            seed,
            rng: Arc::new(Mutex::new(rand_chacha::ChaCha12Rng::seed_from_u64(
                seed as u64,
            ))),
        }
    }
    /// The seed a generator was created with.
    #[rhai_fn(get = "seed", pure)]
    pub fn rng_seed(g: &mut ScriptRng) -> i64 {
        g.seed
    }
    /// Uniform [0, 1) f32 samples of `shape`, drawn on the host from this generator.
    #[rhai_fn(name = "rand", return_raw)]
    pub fn rng_rand(g: &mut ScriptRng, shape: Array) -> RResult<ScriptTensor> {
        let s = usize_list(&shape, "shape")?;
        let n: usize = s.iter().product();
        let mut r = g.rng.lock().map_err(script_err)?;
        let data: Vec<f32> = (0..n).map(|_| r.random::<f32>()).collect();
        Tensor::from_vec(data, s, &Device::Cpu).script()
    }
    /// Standard normal f32 samples of `shape`, drawn on the host from this generator.
    #[rhai_fn(name = "randn", return_raw)]
    pub fn rng_randn(g: &mut ScriptRng, shape: Array) -> RResult<ScriptTensor> {
        let s = usize_list(&shape, "shape")?;
        let n: usize = s.iter().product();
        let mut r = g.rng.lock().map_err(script_err)?;
        let data: Vec<f32> = (0..n)
            .map(|_| workbench_core::model::llada::normal(&mut *r) as f32)
            .collect();
        Tensor::from_vec(data, s, &Device::Cpu).script()
    }
    /// A random integer in `lo..hi` from this generator.
    #[rhai_fn(name = "int", return_raw)]
    pub fn rng_int(g: &mut ScriptRng, lo: i64, hi: i64) -> RResult<i64> {
        if hi <= lo {
            return Err(err(format!("rng.int({lo}, {hi}): empty range")));
        }
        Ok(g.rng.lock().map_err(script_err)?.random_range(lo..hi))
    }
    /// A uniform [0, 1) float from this generator.
    #[rhai_fn(name = "float", return_raw)]
    pub fn rng_float(g: &mut ScriptRng) -> RResult<f64> {
        Ok(g.rng.lock().map_err(script_err)?.random::<f64>())
    }
}

/// Registers `Rng` and its functions.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptRng>("Rng");
    engine.register_global_module(exported_module!(rng_api).into());
}

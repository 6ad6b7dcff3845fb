//! `Tensor`, `Rng` and `Grads`: candle tensors in scripts, with autograd.
//!
//! Binary ops broadcast and promote mixed dtypes to a float type; every candle error (shape
//! mismatch, dtype) becomes a script error at the call's position with the shapes involved.

use std::sync::{Arc, Mutex};

use candle_core::{backprop::GradStore, DType, Device, Tensor, Var, D};
use rand::{Rng as _, SeedableRng};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};

use super::convert::{err, script_err, usize_list, RResult};

/// A tensor visible to scripts; `var` is set for trainable parameters made by `param`.
#[derive(Clone)]
pub struct ScriptTensor {
    /// The value.
    pub t: Tensor,
    /// The variable behind a parameter (so `set` can update it in place).
    pub var: Option<Var>,
}

impl ScriptTensor {
    /// Wraps a plain tensor.
    pub fn new(t: Tensor) -> Self {
        ScriptTensor { t, var: None }
    }
}

/// A seeded random generator owned by the script.
#[derive(Clone)]
pub struct ScriptRng {
    /// The seed it was created with.
    pub seed: i64,
    /// The generator state (ChaCha12, the same stream as `rand`'s `StdRng`), shared by copies of
    /// the script value; `resume` replaces it in place.
    pub rng: Arc<Mutex<rand_chacha::ChaCha12Rng>>,
}

/// Ids of every parameter scripts created (via `param` or a trainable model), so gradient
/// norms cover parameters only, not the intermediate tensors candle also keeps gradients for.
static PARAM_IDS: std::sync::LazyLock<Mutex<std::collections::HashSet<candle_core::TensorId>>> =
    std::sync::LazyLock::new(|| Mutex::new(std::collections::HashSet::new()));

/// Records `t` as a trainable parameter for [`ScriptGrads`] norms.
pub fn register_param(t: &Tensor) {
    if let Ok(mut ids) = PARAM_IDS.lock() {
        ids.insert(t.id());
    }
}

/// Gradients from `loss.backward()`.
#[derive(Clone)]
pub struct ScriptGrads(pub Arc<GradStore>);

fn dims_str(t: &Tensor) -> String {
    format!("{:?} {:?}", t.dims(), t.dtype())
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::U8 => "u8",
        DType::U32 => "u32",
        DType::I64 => "i64",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F32 => "f32",
        DType::F64 => "f64",
        _ => "other",
    }
}

/// Parses a dtype name as scripts write it.
pub fn parse_dtype(s: &str) -> RResult<DType> {
    Ok(match s {
        "u8" | "bool" => DType::U8,
        "u32" => DType::U32,
        "i64" | "int" => DType::I64,
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        "f32" | "float" => DType::F32,
        "f64" => DType::F64,
        _ => {
            return Err(err(format!(
                "unknown dtype `{s}`; expected u8, u32, i64, bf16, f16, f32 or f64"
            )))
        }
    })
}

/// Resolves a possibly negative dim against `rank`.
fn dim(t: &Tensor, d: i64) -> RResult<usize> {
    let rank = t.rank() as i64;
    let r = if d < 0 { rank + d } else { d };
    if r < 0 || r >= rank.max(1) {
        return Err(err(format!(
            "dim {d} is out of range for a tensor of shape {:?}",
            t.dims()
        )));
    }
    Ok(r as usize)
}

fn is_float(d: DType) -> bool {
    d.is_float()
}

/// Brings two tensors to a common dtype: equal stays, otherwise the wider float (f32 at least).
fn unify(a: &Tensor, b: &Tensor) -> RResult<(Tensor, Tensor)> {
    if a.dtype() == b.dtype() {
        return Ok((a.clone(), b.clone()));
    }
    let target = if a.dtype() == DType::F64 || b.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let conv = |t: &Tensor| t.to_dtype(target).map_err(script_err);
    Ok((conv(a)?, conv(b)?))
}

fn scalar_like(t: &Tensor, x: f64) -> RResult<(Tensor, Tensor)> {
    let base = if is_float(t.dtype()) || x.fract() == 0.0 {
        t.clone()
    } else {
        t.to_dtype(DType::F32).map_err(script_err)?
    };
    let s = Tensor::new(x, base.device())
        .and_then(|s| s.to_dtype(base.dtype()))
        .map_err(script_err)?;
    Ok((base, s))
}

fn binary(
    a: &Tensor,
    b: &Tensor,
    op: &str,
    f: impl Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
) -> RResult<ScriptTensor> {
    let (a2, b2) = unify(a, b)?;
    f(&a2, &b2).map(ScriptTensor::new).map_err(|e| {
        err(format!(
            "tensor {op}: cannot combine shapes {} and {}: {e}",
            dims_str(a),
            dims_str(b)
        ))
    })
}

fn wrap(r: candle_core::Result<Tensor>, what: &str, t: &Tensor) -> RResult<ScriptTensor> {
    r.map(ScriptTensor::new)
        .map_err(|e| err(format!("{what} on tensor {}: {e}", dims_str(t))))
}

/// Builds a tensor from a (nested) array: all integers give i64, otherwise f32.
pub fn from_nested(a: &Array) -> RResult<Tensor> {
    fn walk(
        v: &Dynamic,
        depth: usize,
        shape: &mut Vec<usize>,
        out: &mut Vec<f64>,
        ints: &mut bool,
    ) -> RResult<()> {
        if let Some(arr) = v.clone().try_cast::<Array>() {
            if shape.len() == depth {
                shape.push(arr.len());
            } else if shape.len() < depth || shape[depth] != arr.len() {
                return Err(err(format!(
                    "ragged nested array: expected {} elements at depth {depth}, found {}",
                    shape.get(depth).copied().unwrap_or(0),
                    arr.len()
                )));
            }
            for x in &arr {
                walk(x, depth + 1, shape, out, ints)?;
            }
            Ok(())
        } else if let Ok(i) = v.as_int() {
            if shape.len() != depth {
                return Err(err(
                    "ragged nested array: a number where an array was expected",
                ));
            }
            out.push(i as f64);
            Ok(())
        } else if let Ok(f) = v.as_float() {
            if shape.len() != depth {
                return Err(err(
                    "ragged nested array: a number where an array was expected",
                ));
            }
            *ints = false;
            out.push(f);
            Ok(())
        } else if let Ok(b) = v.as_bool() {
            out.push(f64::from(u8::from(b)));
            Ok(())
        } else {
            Err(err(format!(
                "tensor(): elements must be numbers, found {}",
                v.type_name()
            )))
        }
    }
    let mut shape = Vec::new();
    let mut data = Vec::new();
    let mut ints = true;
    walk(
        &Dynamic::from_array(a.clone()),
        0,
        &mut shape,
        &mut data,
        &mut ints,
    )?;
    let t = Tensor::from_vec(data, shape, &Device::Cpu).map_err(script_err)?;
    let dtype = if ints { DType::I64 } else { DType::F32 };
    t.to_dtype(dtype).map_err(script_err)
}

fn to_nested(t: &Tensor) -> RResult<Dynamic> {
    let ints = matches!(t.dtype(), DType::U8 | DType::U32 | DType::I64);
    let flat = t.flatten_all().map_err(script_err)?;
    let vals: Vec<Dynamic> = if ints {
        flat.to_dtype(DType::I64)
            .and_then(|f| f.to_vec1::<i64>())
            .map_err(script_err)?
            .into_iter()
            .map(Dynamic::from)
            .collect()
    } else {
        flat.to_dtype(DType::F64)
            .and_then(|f| f.to_vec1::<f64>())
            .map_err(script_err)?
            .into_iter()
            .map(Dynamic::from)
            .collect()
    };
    fn build(vals: &[Dynamic], dims: &[usize]) -> Dynamic {
        match dims {
            [] => vals.first().cloned().unwrap_or(Dynamic::UNIT),
            [_] => Dynamic::from_array(vals.to_vec()),
            [n, rest @ ..] => {
                let step: usize = rest.iter().product();
                Dynamic::from_array(
                    (0..*n)
                        .map(|i| build(&vals[i * step..(i + 1) * step], rest))
                        .collect(),
                )
            }
        }
    }
    Ok(build(&vals, t.dims()))
}

fn format_tensor(t: &Tensor) -> String {
    let head = format!(
        "Tensor{:?} {} {}",
        t.dims(),
        dtype_name(t.dtype()),
        device_name(t.device())
    );
    let vals: Vec<f64> = t
        .flatten_all()
        .and_then(|f| f.narrow(0, 0, f.elem_count().min(6)))
        .and_then(|f| f.to_dtype(DType::F64))
        .and_then(|f| f.to_vec1())
        .unwrap_or_default();
    let body: Vec<String> = vals.iter().map(|v| format!("{v:.4}")).collect();
    let more = if t.elem_count() > vals.len() {
        ", …"
    } else {
        ""
    };
    format!("{head} [{}{more}]", body.join(", "))
}

fn device_name(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        _ => "metal".into(),
    }
}

fn reduce(
    t: &Tensor,
    d: Option<i64>,
    what: &str,
    all: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    one: impl Fn(&Tensor, usize) -> candle_core::Result<Tensor>,
) -> RResult<ScriptTensor> {
    match d {
        None => wrap(all(t), what, t),
        Some(d) => {
            let d = dim(t, d)?;
            wrap(one(t, d), what, t)
        }
    }
}

#[export_module]
mod tensor_api {
    use super::*;

    /// A tensor from a nested array (all integers → i64, otherwise f32), e.g. `tensor([[1.0, 2.0]])`.
    #[rhai_fn(return_raw)]
    pub fn tensor(a: Array) -> RResult<ScriptTensor> {
        Ok(ScriptTensor::new(from_nested(&a)?))
    }
    /// A tensor from a flat array and a shape, e.g. `tensor([1, 2, 3, 4], [2, 2])`.
    #[rhai_fn(name = "tensor", return_raw)]
    pub fn tensor_shaped(a: Array, shape: Array) -> RResult<ScriptTensor> {
        let t = from_nested(&a)?;
        let shape = usize_list(&shape, "shape")?;
        wrap(t.reshape(shape), "tensor(data, shape)", &t)
    }
    /// f32 zeros of `shape`.
    #[rhai_fn(return_raw)]
    pub fn zeros(shape: Array) -> RResult<ScriptTensor> {
        let s = usize_list(&shape, "shape")?;
        Tensor::zeros(s, DType::F32, &Device::Cpu)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
    /// f32 ones of `shape`.
    #[rhai_fn(return_raw)]
    pub fn ones(shape: Array) -> RResult<ScriptTensor> {
        let s = usize_list(&shape, "shape")?;
        Tensor::ones(s, DType::F32, &Device::Cpu)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
    /// An f32 tensor of `shape` filled with `value`.
    #[rhai_fn(return_raw)]
    pub fn full(shape: Array, value: f64) -> RResult<ScriptTensor> {
        let s = usize_list(&shape, "shape")?;
        Tensor::full(value as f32, s, &Device::Cpu)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
    /// i64 values `0, 1, …, n-1`.
    #[rhai_fn(name = "arange", return_raw)]
    pub fn arange1(n: i64) -> RResult<ScriptTensor> {
        Tensor::arange(0i64, n, &Device::Cpu)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
    /// i64 values `start, start+1, …, end-1`.
    #[rhai_fn(name = "arange", return_raw)]
    pub fn arange2(start: i64, end: i64) -> RResult<ScriptTensor> {
        Tensor::arange(start, end, &Device::Cpu)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
    /// f32 values from `start` up to (not including) `end` by `step`.
    #[rhai_fn(name = "arange", return_raw)]
    pub fn arange3(start: f64, end: f64, step: f64) -> RResult<ScriptTensor> {
        if step == 0.0 {
            return Err(err("arange: step must not be 0"));
        }
        Tensor::arange_step(start as f32, end as f32, step as f32, &Device::Cpu)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }

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
        Tensor::from_vec(data, s, &Device::Cpu)
            .map(ScriptTensor::new)
            .map_err(script_err)
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
        Tensor::from_vec(data, s, &Device::Cpu)
            .map(ScriptTensor::new)
            .map_err(script_err)
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

    /// Elementwise sum with broadcasting.
    #[rhai_fn(name = "+", return_raw)]
    pub fn add(a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        binary(&a.t, &b.t, "+", |x, y| x.broadcast_add(y))
    }
    /// Elementwise difference with broadcasting.
    #[rhai_fn(name = "-", return_raw)]
    pub fn sub(a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        binary(&a.t, &b.t, "-", |x, y| x.broadcast_sub(y))
    }
    /// Elementwise product with broadcasting.
    #[rhai_fn(name = "*", return_raw)]
    pub fn mul(a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        binary(&a.t, &b.t, "*", |x, y| x.broadcast_mul(y))
    }
    /// Elementwise quotient with broadcasting.
    #[rhai_fn(name = "/", return_raw)]
    pub fn div(a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        binary(&a.t, &b.t, "/", |x, y| x.broadcast_div(y))
    }
    /// Tensor plus a number.
    #[rhai_fn(name = "+", return_raw)]
    pub fn add_f(a: ScriptTensor, b: f64) -> RResult<ScriptTensor> {
        let (x, s) = scalar_like(&a.t, b)?;
        binary(&x, &s, "+", |x, y| x.broadcast_add(y))
    }
    /// Tensor minus a number.
    #[rhai_fn(name = "-", return_raw)]
    pub fn sub_f(a: ScriptTensor, b: f64) -> RResult<ScriptTensor> {
        let (x, s) = scalar_like(&a.t, b)?;
        binary(&x, &s, "-", |x, y| x.broadcast_sub(y))
    }
    /// Tensor times a number.
    #[rhai_fn(name = "*", return_raw)]
    pub fn mul_f(a: ScriptTensor, b: f64) -> RResult<ScriptTensor> {
        let (x, s) = scalar_like(&a.t, b)?;
        binary(&x, &s, "*", |x, y| x.broadcast_mul(y))
    }
    /// Tensor divided by a number.
    #[rhai_fn(name = "/", return_raw)]
    pub fn div_f(a: ScriptTensor, b: f64) -> RResult<ScriptTensor> {
        let (x, s) = scalar_like(&a.t, b)?;
        binary(&x, &s, "/", |x, y| x.broadcast_div(y))
    }
    /// A number plus a tensor.
    #[rhai_fn(name = "+", return_raw)]
    pub fn f_add(a: f64, b: ScriptTensor) -> RResult<ScriptTensor> {
        let (x, s) = scalar_like(&b.t, a)?;
        binary(&s, &x, "+", |x, y| x.broadcast_add(y))
    }
    /// A number minus a tensor.
    #[rhai_fn(name = "-", return_raw)]
    pub fn f_sub(a: f64, b: ScriptTensor) -> RResult<ScriptTensor> {
        let (x, s) = scalar_like(&b.t, a)?;
        binary(&s, &x, "-", |x, y| x.broadcast_sub(y))
    }
    /// A number times a tensor.
    #[rhai_fn(name = "*", return_raw)]
    pub fn f_mul(a: f64, b: ScriptTensor) -> RResult<ScriptTensor> {
        let (x, s) = scalar_like(&b.t, a)?;
        binary(&s, &x, "*", |x, y| x.broadcast_mul(y))
    }
    /// A number divided by a tensor.
    #[rhai_fn(name = "/", return_raw)]
    pub fn f_div(a: f64, b: ScriptTensor) -> RResult<ScriptTensor> {
        let (x, s) = scalar_like(&b.t, a)?;
        binary(&s, &x, "/", |x, y| x.broadcast_div(y))
    }
    /// Tensor plus an integer.
    #[rhai_fn(name = "+", return_raw)]
    pub fn add_i(a: ScriptTensor, b: i64) -> RResult<ScriptTensor> {
        add_f(a, b as f64)
    }
    /// Tensor minus an integer.
    #[rhai_fn(name = "-", return_raw)]
    pub fn sub_i(a: ScriptTensor, b: i64) -> RResult<ScriptTensor> {
        sub_f(a, b as f64)
    }
    /// Tensor times an integer.
    #[rhai_fn(name = "*", return_raw)]
    pub fn mul_i(a: ScriptTensor, b: i64) -> RResult<ScriptTensor> {
        mul_f(a, b as f64)
    }
    /// Tensor divided by an integer.
    #[rhai_fn(name = "/", return_raw)]
    pub fn div_i(a: ScriptTensor, b: i64) -> RResult<ScriptTensor> {
        div_f(a, b as f64)
    }
    /// An integer times a tensor.
    #[rhai_fn(name = "*", return_raw)]
    pub fn i_mul(a: i64, b: ScriptTensor) -> RResult<ScriptTensor> {
        f_mul(a as f64, b)
    }
    /// Negation.
    #[rhai_fn(name = "-", return_raw)]
    pub fn neg(a: ScriptTensor) -> RResult<ScriptTensor> {
        wrap(a.t.neg(), "negation", &a.t)
    }
    /// Matrix product with batch broadcasting (`[.., m, k] × [.., k, n]`).
    #[rhai_fn(return_raw)]
    pub fn matmul(a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        binary(&a.t, &b.t, "matmul", |x, y| x.broadcast_matmul(y))
    }
    /// Elementwise e^x.
    #[rhai_fn(return_raw)]
    pub fn exp(a: ScriptTensor) -> RResult<ScriptTensor> {
        wrap(a.t.exp(), "exp", &a.t)
    }
    /// Elementwise natural log.
    #[rhai_fn(return_raw)]
    pub fn log(a: ScriptTensor) -> RResult<ScriptTensor> {
        wrap(a.t.log(), "log", &a.t)
    }
    /// Elementwise square root.
    #[rhai_fn(return_raw)]
    pub fn sqrt(a: ScriptTensor) -> RResult<ScriptTensor> {
        wrap(a.t.sqrt(), "sqrt", &a.t)
    }
    /// Elementwise absolute value.
    #[rhai_fn(return_raw)]
    pub fn abs(a: ScriptTensor) -> RResult<ScriptTensor> {
        wrap(a.t.abs(), "abs", &a.t)
    }
    /// Elementwise power `x^p`.
    #[rhai_fn(return_raw)]
    pub fn pow(a: ScriptTensor, p: f64) -> RResult<ScriptTensor> {
        wrap(a.t.powf(p), "pow", &a.t)
    }
    /// Clamps every element into `[lo, hi]`.
    #[rhai_fn(return_raw)]
    pub fn clamp(a: ScriptTensor, lo: f64, hi: f64) -> RResult<ScriptTensor> {
        wrap(a.t.clamp(lo, hi), "clamp", &a.t)
    }
    /// Sum of all elements (a 0-d tensor).
    #[rhai_fn(name = "sum", return_raw)]
    pub fn sum_all(a: ScriptTensor) -> RResult<ScriptTensor> {
        reduce(&a.t, None, "sum", |t| t.sum_all(), |t, d| t.sum(d))
    }
    /// Sum over `dim` (negative counts from the end); the dim is removed.
    #[rhai_fn(name = "sum", return_raw)]
    pub fn sum_dim(a: ScriptTensor, d: i64) -> RResult<ScriptTensor> {
        reduce(&a.t, Some(d), "sum", |t| t.sum_all(), |t, d| t.sum(d))
    }
    /// Mean of all elements.
    #[rhai_fn(name = "mean", return_raw)]
    pub fn mean_all(a: ScriptTensor) -> RResult<ScriptTensor> {
        reduce(&a.t, None, "mean", |t| t.mean_all(), |t, d| t.mean(d))
    }
    /// Mean over `dim`.
    #[rhai_fn(name = "mean", return_raw)]
    pub fn mean_dim(a: ScriptTensor, d: i64) -> RResult<ScriptTensor> {
        reduce(&a.t, Some(d), "mean", |t| t.mean_all(), |t, d| t.mean(d))
    }
    /// Largest element.
    #[rhai_fn(name = "max", return_raw)]
    pub fn max_all(a: ScriptTensor) -> RResult<ScriptTensor> {
        reduce(&a.t, None, "max", |t| t.max_all(), |t, d| t.max(d))
    }
    /// Largest element over `dim`.
    #[rhai_fn(name = "max", return_raw)]
    pub fn max_dim(a: ScriptTensor, d: i64) -> RResult<ScriptTensor> {
        reduce(&a.t, Some(d), "max", |t| t.max_all(), |t, d| t.max(d))
    }
    /// Smallest element.
    #[rhai_fn(name = "min", return_raw)]
    pub fn min_all(a: ScriptTensor) -> RResult<ScriptTensor> {
        reduce(&a.t, None, "min", |t| t.min_all(), |t, d| t.min(d))
    }
    /// Smallest element over `dim`.
    #[rhai_fn(name = "min", return_raw)]
    pub fn min_dim(a: ScriptTensor, d: i64) -> RResult<ScriptTensor> {
        reduce(&a.t, Some(d), "min", |t| t.min_all(), |t, d| t.min(d))
    }
    /// Index of the largest element over `dim` (u32).
    #[rhai_fn(return_raw)]
    pub fn argmax(a: ScriptTensor, d: i64) -> RResult<ScriptTensor> {
        let d = dim(&a.t, d)?;
        wrap(a.t.argmax(d), "argmax", &a.t)
    }
    /// Softmax over `dim` (differentiable; f32 accumulation).
    #[rhai_fn(return_raw)]
    pub fn softmax(a: ScriptTensor, d: i64) -> RResult<ScriptTensor> {
        let d = dim(&a.t, d)?;
        wrap(workbench_core::ops::softmax(&a.t, d), "softmax", &a.t)
    }
    /// Log-softmax over `dim` (differentiable; f32 accumulation).
    #[rhai_fn(return_raw)]
    pub fn log_softmax(a: ScriptTensor, d: i64) -> RResult<ScriptTensor> {
        let d = dim(&a.t, d)?;
        wrap(
            workbench_core::ops::log_softmax(&a.t, d),
            "log_softmax",
            &a.t,
        )
    }
    /// Picks values along `dim` at `index` (same rank as `a`).
    #[rhai_fn(return_raw)]
    pub fn gather(a: ScriptTensor, d: i64, index: ScriptTensor) -> RResult<ScriptTensor> {
        let d = dim(&a.t, d)?;
        let idx = index
            .t
            .to_dtype(DType::U32)
            .and_then(|i| i.contiguous())
            .map_err(script_err)?;
        a.t.contiguous()
            .and_then(|t| t.gather(&idx, d))
            .map(ScriptTensor::new)
            .map_err(|e| {
                err(format!(
                    "gather: tensor {} with index {}: {e}",
                    dims_str(&a.t),
                    dims_str(&index.t)
                ))
            })
    }
    /// Selects the slices `index` (1-d) along `dim`.
    #[rhai_fn(return_raw)]
    pub fn index_select(a: ScriptTensor, index: ScriptTensor, d: i64) -> RResult<ScriptTensor> {
        let d = dim(&a.t, d)?;
        let idx = index.t.to_dtype(DType::U32).map_err(script_err)?;
        a.t.index_select(&idx, d)
            .map(ScriptTensor::new)
            .map_err(|e| {
                err(format!(
                    "index_select: tensor {} with index {}: {e}",
                    dims_str(&a.t),
                    dims_str(&index.t)
                ))
            })
    }
    /// `len` elements of `dim` starting at `start`.
    #[rhai_fn(return_raw)]
    pub fn narrow(a: ScriptTensor, d: i64, start: i64, len: i64) -> RResult<ScriptTensor> {
        let d = dim(&a.t, d)?;
        if start < 0 || len < 0 {
            return Err(err("narrow: start and len must be non-negative"));
        }
        wrap(a.t.narrow(d, start as usize, len as usize), "narrow", &a.t)
    }
    /// Concatenates an array of tensors along `dim`.
    #[rhai_fn(return_raw)]
    pub fn cat(list: Array, d: i64) -> RResult<ScriptTensor> {
        let ts = tensors_of(&list, "cat")?;
        let d = dim(&ts[0], d)?;
        Tensor::cat(&ts, d).map(ScriptTensor::new).map_err(|e| {
            err(format!(
                "cat: shapes {:?}: {e}",
                ts.iter().map(|t| t.dims().to_vec()).collect::<Vec<_>>()
            ))
        })
    }
    /// Stacks an array of equal-shape tensors along a new `dim`.
    #[rhai_fn(return_raw)]
    pub fn stack(list: Array, d: i64) -> RResult<ScriptTensor> {
        let ts = tensors_of(&list, "stack")?;
        let rank = ts[0].rank() as i64 + 1;
        let d = if d < 0 { rank + d } else { d };
        if d < 0 || d >= rank {
            return Err(err(format!(
                "stack: dim out of range for rank {}",
                rank - 1
            )));
        }
        Tensor::stack(&ts, d as usize)
            .map(ScriptTensor::new)
            .map_err(|e| {
                err(format!(
                    "stack: shapes {:?}: {e}",
                    ts.iter().map(|t| t.dims().to_vec()).collect::<Vec<_>>()
                ))
            })
    }
    /// The same elements in a new `shape` (one entry may be -1).
    #[rhai_fn(return_raw)]
    pub fn reshape(a: ScriptTensor, shape: Array) -> RResult<ScriptTensor> {
        let n = a.t.elem_count();
        let mut dims: Vec<i64> = Vec::new();
        for d in &shape {
            dims.push(
                d.as_int()
                    .map_err(|_| err("reshape: shape entries must be integers"))?,
            );
        }
        let known: i64 = dims.iter().filter(|&&d| d >= 0).product();
        let holes = dims.iter().filter(|&&d| d < 0).count();
        if holes > 1 || known == 0 && holes == 1 {
            return Err(err(format!("reshape: invalid shape {dims:?}")));
        }
        let s: Vec<usize> = dims
            .iter()
            .map(|&d| {
                if d < 0 {
                    n / known as usize
                } else {
                    d as usize
                }
            })
            .collect();
        a.t.reshape(s.clone()).map(ScriptTensor::new).map_err(|_| {
            err(format!(
                "reshape: cannot view {:?} ({n} elements) as {s:?}",
                a.t.dims()
            ))
        })
    }
    /// Swaps two dims.
    #[rhai_fn(return_raw)]
    pub fn transpose(a: ScriptTensor, d1: i64, d2: i64) -> RResult<ScriptTensor> {
        let (x, y) = (dim(&a.t, d1)?, dim(&a.t, d2)?);
        wrap(a.t.transpose(x, y), "transpose", &a.t)
    }
    /// Inserts a dim of size 1 at `dim`.
    #[rhai_fn(return_raw)]
    pub fn unsqueeze(a: ScriptTensor, d: i64) -> RResult<ScriptTensor> {
        let rank = a.t.rank() as i64 + 1;
        let d = if d < 0 { rank + d } else { d };
        if d < 0 || d >= rank {
            return Err(err(format!(
                "unsqueeze: dim out of range for shape {:?}",
                a.t.dims()
            )));
        }
        wrap(a.t.unsqueeze(d as usize), "unsqueeze", &a.t)
    }
    /// Removes the size-1 dim `dim`.
    #[rhai_fn(return_raw)]
    pub fn squeeze(a: ScriptTensor, d: i64) -> RResult<ScriptTensor> {
        let d = dim(&a.t, d)?;
        wrap(a.t.squeeze(d), "squeeze", &a.t)
    }
    /// The `k` largest values over the last dim, sorted: `#{ values, indices }`.
    #[rhai_fn(return_raw)]
    pub fn topk(a: ScriptTensor, k: i64) -> RResult<Map> {
        let n = a.t.dim(D::Minus1).map_err(script_err)?;
        if k < 0 || k as usize > n {
            return Err(err(format!(
                "topk: k = {k} but the last dim has {n} elements"
            )));
        }
        let idx =
            a.t.contiguous()
                .and_then(|t| t.arg_sort_last_dim(false))
                .map_err(script_err)?;
        let idx = idx
            .narrow(D::Minus1, 0, k as usize)
            .and_then(|i| i.contiguous())
            .map_err(script_err)?;
        let vals =
            a.t.contiguous()
                .and_then(|t| t.gather(&idx, D::Minus1))
                .map_err(script_err)?;
        let mut m = Map::new();
        m.insert("values".into(), Dynamic::from(ScriptTensor::new(vals)));
        m.insert("indices".into(), Dynamic::from(ScriptTensor::new(idx)));
        Ok(m)
    }
    /// Elementwise `a == b` as a u8 mask.
    #[rhai_fn(name = "eq", return_raw)]
    pub fn eq_t(a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        binary(&a.t, &b.t, "eq", |x, y| x.broadcast_eq(y))
    }
    /// Elementwise `a != b` as a u8 mask.
    #[rhai_fn(name = "ne", return_raw)]
    pub fn ne_t(a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        binary(&a.t, &b.t, "ne", |x, y| x.broadcast_ne(y))
    }
    /// Elementwise `a < b` as a u8 mask.
    #[rhai_fn(name = "lt", return_raw)]
    pub fn lt_t(a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        binary(&a.t, &b.t, "lt", |x, y| x.broadcast_lt(y))
    }
    /// Elementwise `a <= b` as a u8 mask.
    #[rhai_fn(name = "le", return_raw)]
    pub fn le_t(a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        binary(&a.t, &b.t, "le", |x, y| x.broadcast_le(y))
    }
    /// Elementwise `a > b` as a u8 mask.
    #[rhai_fn(name = "gt", return_raw)]
    pub fn gt_t(a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        binary(&a.t, &b.t, "gt", |x, y| x.broadcast_gt(y))
    }
    /// Elementwise `a >= b` as a u8 mask.
    #[rhai_fn(name = "ge", return_raw)]
    pub fn ge_t(a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        binary(&a.t, &b.t, "ge", |x, y| x.broadcast_ge(y))
    }
    /// Elementwise `a == x` as a u8 mask.
    #[rhai_fn(name = "eq", return_raw)]
    pub fn eq_f(a: ScriptTensor, x: f64) -> RResult<ScriptTensor> {
        let (t, s) = scalar_like(&a.t, x)?;
        binary(&t, &s, "eq", |x, y| x.broadcast_eq(y))
    }
    /// Elementwise `a != x` as a u8 mask.
    #[rhai_fn(name = "ne", return_raw)]
    pub fn ne_f(a: ScriptTensor, x: f64) -> RResult<ScriptTensor> {
        let (t, s) = scalar_like(&a.t, x)?;
        binary(&t, &s, "ne", |x, y| x.broadcast_ne(y))
    }
    /// Elementwise `a < x` as a u8 mask.
    #[rhai_fn(name = "lt", return_raw)]
    pub fn lt_f(a: ScriptTensor, x: f64) -> RResult<ScriptTensor> {
        let (t, s) = scalar_like(&a.t, x)?;
        binary(&t, &s, "lt", |x, y| x.broadcast_lt(y))
    }
    /// Elementwise `a <= x` as a u8 mask.
    #[rhai_fn(name = "le", return_raw)]
    pub fn le_f(a: ScriptTensor, x: f64) -> RResult<ScriptTensor> {
        let (t, s) = scalar_like(&a.t, x)?;
        binary(&t, &s, "le", |x, y| x.broadcast_le(y))
    }
    /// Elementwise `a > x` as a u8 mask.
    #[rhai_fn(name = "gt", return_raw)]
    pub fn gt_f(a: ScriptTensor, x: f64) -> RResult<ScriptTensor> {
        let (t, s) = scalar_like(&a.t, x)?;
        binary(&t, &s, "gt", |x, y| x.broadcast_gt(y))
    }
    /// Elementwise `a >= x` as a u8 mask.
    #[rhai_fn(name = "ge", return_raw)]
    pub fn ge_f(a: ScriptTensor, x: f64) -> RResult<ScriptTensor> {
        let (t, s) = scalar_like(&a.t, x)?;
        binary(&t, &s, "ge", |x, y| x.broadcast_ge(y))
    }
    /// An f32 tensor of `shape` filled with the integer `value`.
    #[rhai_fn(name = "full", return_raw)]
    pub fn full_i(shape: Array, value: i64) -> RResult<ScriptTensor> {
        full(shape, value as f64)
    }
    /// Elementwise power with an integer exponent.
    #[rhai_fn(name = "pow", return_raw)]
    pub fn pow_i(a: ScriptTensor, p: i64) -> RResult<ScriptTensor> {
        pow(a, p as f64)
    }
    /// Clamps every element into the integer range `[lo, hi]`.
    #[rhai_fn(name = "clamp", return_raw)]
    pub fn clamp_i(a: ScriptTensor, lo: i64, hi: i64) -> RResult<ScriptTensor> {
        clamp(a, lo as f64, hi as f64)
    }
    /// Elementwise `a == n` for an integer `n`.
    #[rhai_fn(name = "eq", return_raw)]
    pub fn eq_i(a: ScriptTensor, n: i64) -> RResult<ScriptTensor> {
        eq_f(a, n as f64)
    }
    /// Elementwise `a != n` for an integer `n`.
    #[rhai_fn(name = "ne", return_raw)]
    pub fn ne_i(a: ScriptTensor, n: i64) -> RResult<ScriptTensor> {
        ne_f(a, n as f64)
    }
    /// Elementwise `a < n` for an integer `n`.
    #[rhai_fn(name = "lt", return_raw)]
    pub fn lt_i(a: ScriptTensor, n: i64) -> RResult<ScriptTensor> {
        lt_f(a, n as f64)
    }
    /// Elementwise `a <= n` for an integer `n`.
    #[rhai_fn(name = "le", return_raw)]
    pub fn le_i(a: ScriptTensor, n: i64) -> RResult<ScriptTensor> {
        le_f(a, n as f64)
    }
    /// Elementwise `a > n` for an integer `n`.
    #[rhai_fn(name = "gt", return_raw)]
    pub fn gt_i(a: ScriptTensor, n: i64) -> RResult<ScriptTensor> {
        gt_f(a, n as f64)
    }
    /// Elementwise `a >= n` for an integer `n`.
    #[rhai_fn(name = "ge", return_raw)]
    pub fn ge_i(a: ScriptTensor, n: i64) -> RResult<ScriptTensor> {
        ge_f(a, n as f64)
    }
    /// An integer plus a tensor.
    #[rhai_fn(name = "+", return_raw)]
    pub fn i_add(a: i64, b: ScriptTensor) -> RResult<ScriptTensor> {
        f_add(a as f64, b)
    }
    /// An integer minus a tensor.
    #[rhai_fn(name = "-", return_raw)]
    pub fn i_sub(a: i64, b: ScriptTensor) -> RResult<ScriptTensor> {
        f_sub(a as f64, b)
    }
    /// An integer divided by a tensor.
    #[rhai_fn(name = "/", return_raw)]
    pub fn i_div(a: i64, b: ScriptTensor) -> RResult<ScriptTensor> {
        f_div(a as f64, b)
    }
    /// `mask ? a : b` elementwise (mask is nonzero where `a` is taken).
    #[rhai_fn(name = "where_", return_raw)]
    pub fn where_(mask: ScriptTensor, a: ScriptTensor, b: ScriptTensor) -> RResult<ScriptTensor> {
        let (x, y) = unify(&a.t, &b.t)?;
        let shape = x
            .shape()
            .broadcast_shape_binary_op(y.shape(), "where_")
            .and_then(|s| mask.t.shape().broadcast_shape_binary_op(&s, "where_"))
            .map_err(|e| {
                err(format!(
                    "where_: mask {} with {} and {}: {e}",
                    dims_str(&mask.t),
                    dims_str(&a.t),
                    dims_str(&b.t)
                ))
            })?;
        let m = mask
            .t
            .to_dtype(DType::U8)
            .and_then(|m| m.broadcast_as(shape.clone()))
            .map_err(script_err)?;
        let x = x.broadcast_as(shape.clone()).map_err(script_err)?;
        let y = y.broadcast_as(shape).map_err(script_err)?;
        m.where_cond(&x, &y)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
    /// Moves to device `name` (`cpu`, `cuda`, `cuda:N`).
    #[rhai_fn(return_raw)]
    pub fn to_device(a: ScriptTensor, name: &str) -> RResult<ScriptTensor> {
        let d = workbench_core::device::parse_device(name).map_err(script_err)?;
        wrap(a.t.to_device(&d), "to_device", &a.t)
    }
    /// Converts to dtype `name` (`f32`, `f64`, `bf16`, `i64`, `u32`, `u8`).
    #[rhai_fn(return_raw)]
    pub fn to_dtype(a: ScriptTensor, name: &str) -> RResult<ScriptTensor> {
        let d = parse_dtype(name)?;
        wrap(a.t.to_dtype(d), "to_dtype", &a.t)
    }
    /// The shape as an array of integers.
    #[rhai_fn(get = "shape", pure)]
    pub fn shape(a: &mut ScriptTensor) -> Array {
        a.t.dims()
            .iter()
            .map(|&d| Dynamic::from(d as i64))
            .collect()
    }
    /// The dtype name.
    #[rhai_fn(get = "dtype", pure)]
    pub fn dtype(a: &mut ScriptTensor) -> String {
        dtype_name(a.t.dtype()).to_string()
    }
    /// The device name (`cpu` or `cuda`).
    #[rhai_fn(get = "device", pure)]
    pub fn device(a: &mut ScriptTensor) -> String {
        device_name(a.t.device())
    }
    /// The value of a one-element tensor as a number (int for integer dtypes).
    #[rhai_fn(return_raw)]
    pub fn item(a: ScriptTensor) -> RResult<Dynamic> {
        if a.t.elem_count() != 1 {
            return Err(err(format!(
                "item(): tensor has shape {:?}, expected one element",
                a.t.dims()
            )));
        }
        let flat = a.t.flatten_all().map_err(script_err)?;
        if a.t.dtype().is_int() {
            Ok(Dynamic::from(
                flat.to_dtype(DType::I64)
                    .and_then(|f| f.to_vec1::<i64>())
                    .map_err(script_err)?[0],
            ))
        } else {
            Ok(Dynamic::from(
                flat.to_dtype(DType::F64)
                    .and_then(|f| f.to_vec1::<f64>())
                    .map_err(script_err)?[0],
            ))
        }
    }
    /// The values as a nested array.
    #[rhai_fn(return_raw)]
    pub fn to_array(a: ScriptTensor) -> RResult<Dynamic> {
        to_nested(&a.t)
    }
    /// Shape, dtype, device and the first few values.
    #[rhai_fn(name = "to_string", pure)]
    pub fn to_string(a: &mut ScriptTensor) -> String {
        format_tensor(&a.t)
    }
    /// Same as `to_string` (used by `print` and `debug`).
    #[rhai_fn(name = "to_debug", pure)]
    pub fn to_debug(a: &mut ScriptTensor) -> String {
        format_tensor(&a.t)
    }
    /// The same values cut from the autograd graph.
    pub fn detach(a: ScriptTensor) -> ScriptTensor {
        ScriptTensor::new(a.t.detach())
    }

    /// A trainable variable initialised from `t` (f32/f64); gradients reach it through `backward`.
    #[rhai_fn(return_raw)]
    pub fn param(a: ScriptTensor) -> RResult<ScriptTensor> {
        let t = if a.t.dtype().is_float() {
            a.t.clone()
        } else {
            a.t.to_dtype(DType::F32).map_err(script_err)?
        };
        let v = Var::from_tensor(&t).map_err(script_err)?;
        register_param(v.as_tensor());
        Ok(ScriptTensor {
            t: v.as_tensor().clone(),
            var: Some(v),
        })
    }
    /// Overwrites a parameter in place with `value` (same shape).
    #[rhai_fn(name = "set", return_raw)]
    pub fn set_param(p: &mut ScriptTensor, value: ScriptTensor) -> RResult<()> {
        let Some(v) = &p.var else {
            return Err(err(
                "set(): only parameters made with param() can be updated in place",
            ));
        };
        let value = value.t.detach().to_dtype(v.dtype()).map_err(script_err)?;
        v.set(&value).map_err(|e| {
            err(format!(
                "set(): parameter {:?} cannot take {:?}: {e}",
                v.dims(),
                value.dims()
            ))
        })
    }
    /// Backpropagates from a one-element loss (through checkpointed model blocks too); returns
    /// the gradients of every parameter.
    #[rhai_fn(return_raw)]
    pub fn backward(loss: ScriptTensor) -> RResult<ScriptGrads> {
        if loss.t.elem_count() != 1 {
            return Err(err(format!(
                "backward(): loss must have one element, found shape {:?}",
                loss.t.dims()
            )));
        }
        workbench_core::model::remat::backward(&loss.t)
            .map(|g| ScriptGrads(Arc::new(g)))
            .map_err(script_err)
    }
    /// The gradient of parameter `p` (zeros if the loss does not depend on it).
    #[rhai_fn(index_get, return_raw)]
    pub fn grad_of(g: &mut ScriptGrads, p: ScriptTensor) -> RResult<ScriptTensor> {
        match g.0.get(&p.t) {
            Some(t) => Ok(ScriptTensor::new(t.clone())),
            None => p.t.zeros_like().map(ScriptTensor::new).map_err(script_err),
        }
    }
    /// Global L2 norm of the gradients of all parameters.
    #[rhai_fn(return_raw)]
    pub fn norm(g: &mut ScriptGrads) -> RResult<f64> {
        let ids: Vec<candle_core::TensorId> = PARAM_IDS
            .lock()
            .map_err(script_err)?
            .iter()
            .copied()
            .collect();
        let mut total = 0.0f64;
        for id in ids {
            if let Some(t) = g.0.get_id(id) {
                let s = t
                    .to_dtype(DType::F64)
                    .and_then(|t| t.sqr())
                    .and_then(|t| t.sum_all())
                    .and_then(|t| t.to_scalar::<f64>())
                    .map_err(script_err)?;
                total += s;
            }
        }
        Ok(total.sqrt())
    }
}

fn tensors_of(list: &Array, what: &str) -> RResult<Vec<Tensor>> {
    if list.is_empty() {
        return Err(err(format!("{what}: the array of tensors is empty")));
    }
    let ts: Vec<Tensor> = list
        .iter()
        .map(|d| {
            d.clone()
                .try_cast::<ScriptTensor>()
                .map(|s| s.t)
                .ok_or_else(|| {
                    err(format!(
                        "{what}: expected an array of tensors, found {}",
                        d.type_name()
                    ))
                })
        })
        .collect::<RResult<_>>()?;
    // Mixed dtypes are promoted like binary ops.
    if ts.iter().all(|t| t.dtype() == ts[0].dtype()) {
        return Ok(ts);
    }
    let target = if ts.iter().any(|t| t.dtype() == DType::F64) {
        DType::F64
    } else {
        DType::F32
    };
    ts.iter()
        .map(|t| t.to_dtype(target).map_err(script_err))
        .collect()
}

/// Registers `Tensor`, `Rng` and `Grads` and their functions.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptTensor>("Tensor");
    engine.register_type_with_name::<ScriptRng>("Rng");
    engine.register_type_with_name::<ScriptGrads>("Grads");
    engine.register_global_module(exported_module!(tensor_api).into());
}

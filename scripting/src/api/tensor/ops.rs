//! Tensor operations: arithmetic and comparisons (fanned out by [`fan_out!`] over Tensor,
//! float and integer operands, as rhai's own packages do), elementwise functions, reductions,
//! indexing and shape changes.

use candle_core::{DType, Tensor, D};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, FuncRegistration, Map};

use super::{binary, dim, dims_str, reduce, scalar_like, tensors_of, unify, wrap, ScriptTensor};
use crate::api::convert::{err, script_err, IntoScript, RResult};

/// Registers the operator or comparison `$name` (candle op `$op` on two broadcast tensors) for
/// `Tensor ∘ Tensor`, `Tensor ∘ f64` and `Tensor ∘ i64`, plus `f64 ∘ Tensor` and `i64 ∘ Tensor`
/// with `scalar_first`. A number operand takes the tensor's dtype (a float promotes an integer
/// tensor to f32).
macro_rules! fan_out {
    ($engine:expr, $name:literal, $doc:literal, $op:expr $(, $scalar_first:ident)?) => {{
        let op = $op;
        let doc = concat!("/// ", $doc);
        FuncRegistration::new($name)
            .with_comments([doc])
            .with_params_info(["a: Tensor", "b: Tensor", "Tensor"])
            .register_into_engine($engine, move |a: ScriptTensor, b: ScriptTensor| {
                binary(&a.t, &b.t, $name, op)
            });
        FuncRegistration::new($name)
            .with_comments([doc])
            .with_params_info(["a: Tensor", "x: f64", "Tensor"])
            .register_into_engine($engine, move |a: ScriptTensor, x: f64| {
                let (t, s) = scalar_like(&a.t, x)?;
                binary(&t, &s, $name, op)
            });
        FuncRegistration::new($name)
            .with_comments([doc])
            .with_params_info(["a: Tensor", "n: i64", "Tensor"])
            .register_into_engine($engine, move |a: ScriptTensor, n: i64| {
                let (t, s) = scalar_like(&a.t, n as f64)?;
                binary(&t, &s, $name, op)
            });
        $(
            let _ = stringify!($scalar_first);
            FuncRegistration::new($name)
                .with_comments([doc])
                .with_params_info(["x: f64", "a: Tensor", "Tensor"])
                .register_into_engine($engine, move |x: f64, a: ScriptTensor| {
                    let (t, s) = scalar_like(&a.t, x)?;
                    binary(&s, &t, $name, op)
                });
            FuncRegistration::new($name)
                .with_comments([doc])
                .with_params_info(["n: i64", "a: Tensor", "Tensor"])
                .register_into_engine($engine, move |n: i64, a: ScriptTensor| {
                    let (t, s) = scalar_like(&a.t, n as f64)?;
                    binary(&s, &t, $name, op)
                });
        )?
    }};
}

#[export_module]
mod ops_api {
    use super::*;

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
        m.where_cond(&x, &y).script()
    }
}

/// Registers the tensor operations.
pub fn register(engine: &mut Engine) {
    fan_out!(
        engine,
        "+",
        "Elementwise sum with broadcasting.",
        |x: &Tensor, y: &Tensor| x.broadcast_add(y),
        scalar_first
    );
    fan_out!(
        engine,
        "-",
        "Elementwise difference with broadcasting.",
        |x: &Tensor, y: &Tensor| x.broadcast_sub(y),
        scalar_first
    );
    fan_out!(
        engine,
        "*",
        "Elementwise product with broadcasting.",
        |x: &Tensor, y: &Tensor| x.broadcast_mul(y),
        scalar_first
    );
    fan_out!(
        engine,
        "/",
        "Elementwise quotient with broadcasting.",
        |x: &Tensor, y: &Tensor| x.broadcast_div(y),
        scalar_first
    );
    fan_out!(
        engine,
        "eq",
        "Elementwise `a == b` as a u8 mask.",
        |x: &Tensor, y: &Tensor| x.broadcast_eq(y)
    );
    fan_out!(
        engine,
        "ne",
        "Elementwise `a != b` as a u8 mask.",
        |x: &Tensor, y: &Tensor| x.broadcast_ne(y)
    );
    fan_out!(
        engine,
        "lt",
        "Elementwise `a < b` as a u8 mask.",
        |x: &Tensor, y: &Tensor| x.broadcast_lt(y)
    );
    fan_out!(
        engine,
        "le",
        "Elementwise `a <= b` as a u8 mask.",
        |x: &Tensor, y: &Tensor| x.broadcast_le(y)
    );
    fan_out!(
        engine,
        "gt",
        "Elementwise `a > b` as a u8 mask.",
        |x: &Tensor, y: &Tensor| x.broadcast_gt(y)
    );
    fan_out!(
        engine,
        "ge",
        "Elementwise `a >= b` as a u8 mask.",
        |x: &Tensor, y: &Tensor| x.broadcast_ge(y)
    );
    engine.register_global_module(exported_module!(ops_api).into());
}

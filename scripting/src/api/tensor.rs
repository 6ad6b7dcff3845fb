//! `Tensor`: candle tensors in scripts — the value, its construction and conversions. The ops
//! are in [`ops`] (one macro fans each binary operator out over Tensor, float and integer
//! operands), the seeded generator `Rng` in [`rng`], parameters and gradients in [`autograd`].
//!
//! Binary ops broadcast and promote mixed dtypes to a float type; every candle error (shape
//! mismatch, dtype) becomes a script error at the call's position with the shapes involved.

mod autograd;
mod ops;
mod rng;

pub use autograd::{register_param, ScriptGrads};
pub use rng::ScriptRng;

use candle_core::{DType, Device, Tensor, Var};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine};

use super::convert::{err, script_err, usize_list, IntoScript, RResult};
use workbench_core::device::{dtype_by_name, dtype_name};

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

pub(crate) fn dims_str(t: &Tensor) -> String {
    format!("{:?} {:?}", t.dims(), t.dtype())
}

/// A tensor dtype by its script name (`"f32"`, `"u8"`, ...), an error listing the names.
pub fn parse_dtype(s: &str) -> RResult<DType> {
    dtype_by_name(s).map_err(script_err)
}

/// Resolves a possibly negative dim against `rank`.
pub(crate) fn dim(t: &Tensor, d: i64) -> RResult<usize> {
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

/// Brings two tensors to a common dtype: equal stays, otherwise the wider float (f32 at least).
pub(crate) fn unify(a: &Tensor, b: &Tensor) -> RResult<(Tensor, Tensor)> {
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

pub(crate) fn scalar_like(t: &Tensor, x: f64) -> RResult<(Tensor, Tensor)> {
    let base = if t.dtype().is_float() || x.fract() == 0.0 {
        t.clone()
    } else {
        t.to_dtype(DType::F32).map_err(script_err)?
    };
    let s = Tensor::new(x, base.device())
        .and_then(|s| s.to_dtype(base.dtype()))
        .map_err(script_err)?;
    Ok((base, s))
}

pub(crate) fn binary(
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

pub(crate) fn wrap(
    r: candle_core::Result<Tensor>,
    what: &str,
    t: &Tensor,
) -> RResult<ScriptTensor> {
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

pub(crate) fn reduce(
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
        Tensor::zeros(s, DType::F32, &Device::Cpu).script()
    }
    /// f32 ones of `shape`.
    #[rhai_fn(return_raw)]
    pub fn ones(shape: Array) -> RResult<ScriptTensor> {
        let s = usize_list(&shape, "shape")?;
        Tensor::ones(s, DType::F32, &Device::Cpu).script()
    }
    /// An f32 tensor of `shape` filled with `value`.
    #[rhai_fn(return_raw)]
    pub fn full(shape: Array, value: f64) -> RResult<ScriptTensor> {
        let s = usize_list(&shape, "shape")?;
        Tensor::full(value as f32, s, &Device::Cpu).script()
    }
    /// An f32 tensor of `shape` filled with the integer `value`.
    #[rhai_fn(name = "full", return_raw)]
    pub fn full_i(shape: Array, value: i64) -> RResult<ScriptTensor> {
        full(shape, value as f64)
    }
    /// i64 values `0, 1, …, n-1`.
    #[rhai_fn(name = "arange", return_raw)]
    pub fn arange1(n: i64) -> RResult<ScriptTensor> {
        Tensor::arange(0i64, n, &Device::Cpu).script()
    }
    /// i64 values `start, start+1, …, end-1`.
    #[rhai_fn(name = "arange", return_raw)]
    pub fn arange2(start: i64, end: i64) -> RResult<ScriptTensor> {
        Tensor::arange(start, end, &Device::Cpu).script()
    }
    /// f32 values from `start` up to (not including) `end` by `step`.
    #[rhai_fn(name = "arange", return_raw)]
    pub fn arange3(start: f64, end: f64, step: f64) -> RResult<ScriptTensor> {
        if step == 0.0 {
            return Err(err("arange: step must not be 0"));
        }
        Tensor::arange_step(start as f32, end as f32, step as f32, &Device::Cpu).script()
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
        workbench_core::device::device_name(a.t.device())
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
        workbench_core::device::format_tensor(&a.t)
    }
    /// Same as `to_string` (used by `print` and `debug`).
    #[rhai_fn(name = "to_debug", pure)]
    pub fn to_debug(a: &mut ScriptTensor) -> String {
        workbench_core::device::format_tensor(&a.t)
    }
    /// The same values cut from the autograd graph.
    pub fn detach(a: ScriptTensor) -> ScriptTensor {
        ScriptTensor::new(a.t.detach())
    }
}

pub(crate) fn tensors_of(list: &Array, what: &str) -> RResult<Vec<Tensor>> {
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
    engine.register_global_module(exported_module!(tensor_api).into());
    ops::register(engine);
    rng::register(engine);
    autograd::register(engine);
}

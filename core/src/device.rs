//! Device and dtype selection: CPU f32 by default, CUDA bf16 with the `cuda` feature.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};

/// Parses a device name: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        s if s.starts_with("cuda:") => match s[5..].parse::<usize>() {
            Ok(i) => cuda(i),
            Err(_) => bail!("bad device `{s}`: expected cpu, cuda or cuda:N"),
        },
        s => bail!("unknown device `{s}`: expected cpu, cuda or cuda:N"),
    }
}

fn cuda(ordinal: usize) -> Result<Device> {
    if !cfg!(feature = "cuda") {
        bail!("device cuda:{ordinal} requested but this build has no CUDA support (rebuild with `--features cuda`)");
    }
    Ok(Device::new_cuda(ordinal)?)
}

/// Parses a dtype name: `f32`, `bf16`, `f16` or `f64`. CPU matmul has no bf16/f16 kernels, so
/// half precision on CPU is refused.
pub fn parse_dtype(name: &str, device: &Device) -> Result<DType> {
    let dt = match name {
        "f32" | "float32" => DType::F32,
        "bf16" | "bfloat16" => DType::BF16,
        "f16" | "float16" => DType::F16,
        "f64" | "float64" => DType::F64,
        s => bail!("unknown dtype `{s}`: expected f32, bf16, f16 or f64"),
    };
    if device.is_cpu() && matches!(dt, DType::BF16 | DType::F16) {
        bail!("dtype {name} is not supported on CPU (no half-precision matmul); use f32");
    }
    Ok(dt)
}

/// The compute dtype a device uses by default: bf16 on CUDA, f32 elsewhere.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    }
}

/// The default device: the first CUDA GPU when built with `cuda` and one is present, else CPU.
pub fn default_device() -> Device {
    if cfg!(feature = "cuda") {
        if let Ok(d) = Device::new_cuda(0) {
            return d;
        }
    }
    Device::Cpu
}

/// The device and dtype named by optional `device` / `dtype` options, `device_default` and
/// [`default_dtype`] where absent (the CLI's `--device`/`--dtype` and a script's
/// `load_model` options resolve the same way).
pub fn resolve(
    device: Option<&str>,
    dtype: Option<&str>,
    device_default: Device,
) -> Result<(Device, DType)> {
    let device = match device {
        Some(d) => parse_device(d)?,
        None => device_default,
    };
    let dtype = match dtype {
        Some(d) => parse_dtype(d, &device)?,
        None => default_dtype(&device),
    };
    Ok((device, dtype))
}

/// A tensor dtype by the name scripts use: `u8` (or `bool`), `u32`, `i64` (or `int`), `bf16`,
/// `f16`, `f32` (or `float`), `f64`; any other name is an error listing them.
pub fn dtype_by_name(name: &str) -> Result<DType> {
    Ok(match name {
        "u8" | "bool" => DType::U8,
        "u32" => DType::U32,
        "i64" | "int" => DType::I64,
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        "f32" | "float" => DType::F32,
        "f64" => DType::F64,
        _ => bail!("unknown dtype `{name}`; expected u8, u32, i64, bf16, f16, f32 or f64"),
    })
}

/// The name [`dtype_by_name`] reads for `d` (`"other"` for dtypes scripts do not use).
pub fn dtype_name(d: DType) -> &'static str {
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

/// A short description of a tensor for printing: shape, dtype, device and its first six
/// values (`…` when there are more).
pub fn format_tensor(t: &Tensor) -> String {
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

/// `cpu`, `cuda` or `metal`.
pub fn device_name(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        _ => "metal".into(),
    }
}

//! Device and dtype selection: CPU f32 by default, CUDA bf16 with the `cuda` feature.

use anyhow::{bail, Result};
use candle_core::{DType, Device};

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

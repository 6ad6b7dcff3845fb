//! Differentiable tensor ops.
//!
//! candle's fused `softmax_last_dim`, `rms_norm` and `rope` record no backward pass, so a loss
//! built on them silently stops its gradient. These compositions of elementary ops are used on
//! every path instead (inference included, so training and sampling see the same numbers).
//!
//! [`fused`] has the same ops (and SwiGLU, the attention softmax and the gathered log-softmax)
//! as single-pass CPU kernels with their own backward passes; the model and the estimators use
//! those, which fall back to the compositions here off the CPU or outside f32/f64.

pub mod deferred;
pub mod fused;
pub mod matmul;

use candle_core::{DType, Result, Tensor, D};

/// Softmax over `dim`, computed in f32 (or f64 when given f64) and returned in the input dtype.
pub fn softmax<Dim: candle_core::shape::Dim + Copy>(x: &Tensor, dim: Dim) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = upcast(x)?;
    // The max shift is a constant for the gradient; detaching keeps the graph small.
    let max = xf.max_keepdim(dim)?.detach();
    let e = xf.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(dim)?;
    e.broadcast_div(&s)?.to_dtype(dtype)
}

/// Log-softmax over `dim`, computed in f32 (or f64) and returned in that precision.
pub fn log_softmax<Dim: candle_core::shape::Dim + Copy>(x: &Tensor, dim: Dim) -> Result<Tensor> {
    let xf = upcast(x)?;
    let max = xf.max_keepdim(dim)?.detach();
    let shifted = xf.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(dim)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// RMSNorm over the last dim in f32: `w * (x / sqrt(mean(x²) + eps))`, the weight applied in
/// the input dtype as LLaDA does.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = upcast(x)?;
    let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (var + eps)?.sqrt()?.recip()?;
    xf.broadcast_mul(&inv)?
        .to_dtype(dtype)?
        .broadcast_mul(weight)
}

/// Rotary embedding in the half-split (NeoX/Llama) layout: `x*cos + rotate_half(x)*sin`, with
/// `x` [B, H, L, hd] and `cos`/`sin` [L, hd] (the frequencies repeated for both halves).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = upcast(x)?;
    let hd = xf.dim(D::Minus1)?;
    let x1 = xf.narrow(D::Minus1, 0, hd / 2)?;
    let x2 = xf.narrow(D::Minus1, hd / 2, hd / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    let cos = cos.to_dtype(xf.dtype())?;
    let sin = sin.to_dtype(xf.dtype())?;
    xf.broadcast_mul(&cos)?
        .add(&rotated.broadcast_mul(&sin)?)?
        .to_dtype(dtype)
}

/// Promotes half-precision tensors to f32; f32 and f64 pass through unchanged.
pub fn upcast(x: &Tensor) -> Result<Tensor> {
    match x.dtype() {
        DType::F32 | DType::F64 => Ok(x.clone()),
        _ => x.to_dtype(DType::F32),
    }
}

//! Fused CPU kernels with backward passes, for the hot ops of the transformer and the
//! estimators: RMSNorm, RoPE, SwiGLU, the attention softmax (scale + key bias + softmax) and the
//! log-softmax gathered at target ids.
//!
//! Each is a candle custom op whose forward is one pass over its input (instead of the 5–10
//! element-wise ops, and as many temporaries, of the composite form in [`crate::ops`]) and whose
//! `bwd` computes the input gradients in one more pass, as real tensors recorded by candle's
//! backward like any other op. The arithmetic follows the composite ops term by term (the same
//! operations in the same order per element; only sums over a row may be associated
//! differently), so values agree with them to float rounding; `core/tests/fused_ops.rs` checks
//! values and gradients against the composite ops.
//!
//! The kernels run on CPU tensors in f32 or f64. On any other device or dtype (CUDA, bf16) every
//! function here falls back to the composite ops, which record their own backward: there is no
//! path that silently drops a gradient.

use candle_core::{
    bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor,
    WithDType, D,
};

use super::matmul::{gemm_into, Scalar};
use super::{rms_norm as rms_norm_composite, rope as rope_composite, softmax, upcast};

/// Whether the fused kernels serve `t`: a CPU tensor in f32 or f64.
pub fn supported(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// Float element types of the kernels.
trait Real: WithDType + Scalar + std::ops::Neg<Output = Self> {
    fn exp_(self) -> Self;
    fn ln_(self) -> Self;
    fn sqrt_(self) -> Self;
    fn max_(self, other: Self) -> Self;
}

// `inline(always)` here and on the row helpers below: the wide-vector copies of the row
// kernels ([`wide`]) only get wide instructions for code inlined into them.
impl Real for f32 {
    #[inline(always)]
    fn exp_(self) -> Self {
        exp_f32(self)
    }
    fn ln_(self) -> Self {
        self.ln()
    }
    fn sqrt_(self) -> Self {
        self.sqrt()
    }
    #[inline(always)]
    fn max_(self, other: Self) -> Self {
        self.max(other)
    }
}

impl Real for f64 {
    fn exp_(self) -> Self {
        self.exp()
    }
    fn ln_(self) -> Self {
        self.ln()
    }
    fn sqrt_(self) -> Self {
        self.sqrt()
    }
    fn max_(self, other: Self) -> Self {
        self.max(other)
    }
}

/// `e^x` in f32 without a libm call, so that loops over rows vectorise: Cephes' `expf`
/// (round x·log2(e) to n, reduce r = x − n·ln 2 in two parts, degree-6 polynomial, scale by
/// 2ⁿ through the exponent bits), within 2 ulp of the correctly rounded value over the normal
/// range. Below −87.3 (where e^x is subnormal) it returns 0, so a −f32::MAX padding bias still
/// gives exactly zero probability; above 88.37 it saturates at e^88.37 ≈ 2.4e38 (the kernels
/// only take it of non-positive numbers and of −gate, where that bound does not matter).
/// Branch-free and made only of SSE2 operations (the round trick instead of `floor`).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LO: f32 = -87.336_55;
    const HI: f32 = 88.376_26; // x·log2(e) < 127.5, so n ≤ 127
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³: adding it rounds to an integer
    let xc = x.clamp(LO, HI);
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = (xc - n * C1) - n * C2;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    // n ∈ [-126, 127]: 2ⁿ from its exponent bits.
    let e = ((ni.clamp(-126, 127) + 127) as u32) << 23;
    let out = y * f32::from_bits(e);
    if x < LO {
        0.0
    } else {
        out
    }
}

#[inline(always)]
fn zero<T: Real>() -> T {
    T::from_f64(0.0)
}

#[inline(always)]
fn one<T: Real>() -> T {
    T::from_f64(1.0)
}

/// The elements of a contiguous tensor's storage (also the split gemm's residual).
pub(super) fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [T]> {
    let v = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: the kernel expects a contiguous input"),
    }
}

/// Runs `$body` with `$t` bound to the element type of storage `$s` (f32 or f64).
macro_rules! dispatch {
    ($s:expr, $op:expr, $t:ident => $body:expr) => {
        match $s {
            CpuStorage::F32(_) => {
                type $t = f32;
                $body
            }
            CpuStorage::F64(_) => {
                type $t = f64;
                $body
            }
            _ => bail!("{}: the fused kernel takes f32 or f64 only", $op),
        }
    };
}

fn last_dim(l: &Layout) -> Result<usize> {
    match l.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => bail!(
            "fused op: expected a non-empty last dimension, got {:?}",
            l.dims()
        ),
    }
}

fn same_dtype(a: &Tensor, b: &Tensor) -> bool {
    a.dtype() == b.dtype()
}

/// Input elements per task of a kernel's row loop. Fixed, not derived from the thread count,
/// so the tasks (and the order of any per-task partial sums) are the same with one thread or
/// many: results never depend on the thread count.
const TASK_ELEMS: usize = 1 << 15;

/// Rows per task for rows of `row_len` input elements.
fn rows_per_task(row_len: usize) -> usize {
    (TASK_ELEMS / row_len.max(1)).max(1)
}

/// A new buffer of `len` elements (all zero), cut into tasks of `rows` rows of `out_row`
/// elements; runs `f(first_row, chunk)` on each on the compute team ([`crate::team`]) and
/// returns the buffer and the tasks' results in order. Each task zero-fills its own chunk just
/// before `f` writes it, so the fill runs in parallel and in cache instead of as a serial
/// memset of the whole buffer on the calling thread.
fn row_tasks<T: Real, R: Send>(
    len: usize,
    out_row: usize,
    rows: usize,
    f: impl Fn(usize, &mut [T]) -> R + Sync + Send,
) -> (Vec<T>, Vec<R>) {
    let chunk = (rows * out_row).max(1);
    let tasks: Vec<usize> = (0..len.div_ceil(chunk)).collect();
    zeroed_tasks(len, tasks, |i, out| {
        f(i * rows, out.piece(i * chunk, chunk))
    })
}

/// The buffer under construction in [`zeroed_tasks`]: a task takes its disjoint pieces of it.
struct Pieces<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: tasks take disjoint pieces of one allocation that outlives the parallel loop.
#[allow(unsafe_code)]
unsafe impl<T: Send> Send for Pieces<T> {}
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for Pieces<T> {}

impl<T: Real> Pieces<T> {
    /// Elements `[at, at + n)` (cut at the end), zero-filled. Each range may be taken by one
    /// task only, once; the callers' ranges are disjoint by construction.
    #[allow(clippy::mut_from_ref, unsafe_code)]
    fn piece(&self, at: usize, n: usize) -> &mut [T] {
        let n = n.min(self.len.saturating_sub(at));
        // SAFETY: in bounds (cut above); all-zero bytes are 0.0 for f32 and f64 (the only
        // `Real` types), so the slice is initialised before it is made; ranges are disjoint.
        unsafe {
            let p = self.ptr.add(at.min(self.len));
            std::ptr::write_bytes(p, 0, n);
            std::slice::from_raw_parts_mut(p, n)
        }
    }
}

/// Allocates `len` elements and runs `f(task, pieces)` for every task on the compute team;
/// the tasks must between them take every element once (as [`Pieces::piece`]).
fn zeroed_tasks<T: Real, I: Send, R: Send>(
    len: usize,
    tasks: Vec<I>,
    f: impl Fn(I, &Pieces<T>) -> R + Sync + Send,
) -> (Vec<T>, Vec<R>) {
    let ([out], res) = zeroed_tasks_n([len], tasks, |i, [p]| f(i, p));
    (out, res)
}

/// [`zeroed_tasks`] with `N` output buffers of `lens` elements.
#[allow(unsafe_code)]
fn zeroed_tasks_n<T: Real, I: Send, R: Send, const N: usize>(
    lens: [usize; N],
    tasks: Vec<I>,
    f: impl Fn(I, &[Pieces<T>; N]) -> R + Sync + Send,
) -> ([Vec<T>; N], Vec<R>) {
    let mut outs: [Vec<T>; N] = lens.map(Vec::with_capacity);
    let pieces: [Pieces<T>; N] = std::array::from_fn(|j| Pieces {
        ptr: outs[j].as_mut_ptr(),
        len: lens[j],
    });
    let res = crate::team::map(tasks, &|i| f(i, &pieces));
    for (out, len) in outs.iter_mut().zip(lens) {
        // SAFETY: every element was written (zero-filled, then by `f`) by exactly one task.
        unsafe { out.set_len(len) };
    }
    (outs, res)
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

struct RmsNorm {
    eps: f64,
}

struct RmsNormBwd {
    eps: f64,
    /// Added to dx (see [`rms_norm_bwd_add`]); contiguous, x's shape and dtype.
    plus: Option<Tensor>,
}

/// `inv = 1 / sqrt(mean(x²) + eps)` of one row, as the composite op computes it.
fn inv_rms<T: Real>(row: &[T], inv_n: T, eps: T) -> T {
    let mut ss = zero::<T>();
    for &v in row {
        ss += v * v;
    }
    one::<T>() / (ss * inv_n + eps).sqrt_()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = last_dim(l1)?;
        dispatch!(s1, self.name(), T => {
            let x = slice::<T>(s1, l1, self.name())?;
            let w = slice::<T>(s2, l2, self.name())?;
            if w.len() != d {
                bail!("fused-rms-norm: weight has {} elements for rows of {d}", w.len());
            }
            let inv_n = T::from_f64(1.0 / d as f64);
            let eps = T::from_f64(self.eps);
            let (out, _) = row_tasks(x.len(), d, rows_per_task(d), |r0, oc| {
                for (i, orow) in oc.chunks_exact_mut(d).enumerate() {
                    let row = &x[(r0 + i) * d..][..d];
                    let inv = inv_rms(row, inv_n, eps);
                    for ((o, &v), &wi) in orow.iter_mut().zip(row).zip(w) {
                        *o = (v * inv) * wi;
                    }
                }
            });
            Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = rms_norm_bwd(x, w, self.eps, grad)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// The fused RMSNorm's gradients `(dx, dw)` for the input `x`, weight `w` and output
/// gradient `grad` (CPU f32/f64, `x` contiguous), without recording anything.
pub(crate) fn rms_norm_bwd(
    x: &Tensor,
    w: &Tensor,
    eps: f64,
    grad: &Tensor,
) -> Result<(Tensor, Tensor)> {
    rms_norm_bwd_add(x, w, eps, grad, None)
}

/// [`rms_norm_bwd`] with `plus` (x's shape) added to dx in the same pass: the residual
/// branch's gradient, summed bit for bit as `plus + dx` would be.
pub(crate) fn rms_norm_bwd_add(
    x: &Tensor,
    w: &Tensor,
    eps: f64,
    grad: &Tensor,
    plus: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let d = w.elem_count();
    let n = x.elem_count() / d;
    let g = grad.contiguous()?;
    let plus = match plus {
        Some(p) if p.shape() != x.shape() || p.dtype() != x.dtype() => {
            bail!(
                "fused-rms-norm-bwd: a residual gradient of {:?} expected",
                x.shape()
            )
        }
        Some(p) => Some(p.contiguous()?),
        None => None,
    };
    let both = x.apply_op3_no_bwd(w, &g, &RmsNormBwd { eps, plus })?;
    let dx = both.narrow(0, 0, n)?.reshape(x.shape())?;
    let dw = both.narrow(0, n, 1)?.reshape(w.shape())?;
    Ok((dx, dw))
}

impl CustomOp3 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "fused-rms-norm-bwd"
    }

    /// Returns [N + 1, D]: the N rows of dx, then dw.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = last_dim(l1)?;
        dispatch!(s1, self.name(), T => {
            let x = slice::<T>(s1, l1, self.name())?;
            let w = slice::<T>(s2, l2, self.name())?;
            let g = slice::<T>(s3, l3, self.name())?;
            let n = x.len() / d;
            let inv_n = T::from_f64(1.0 / d as f64);
            let eps = T::from_f64(self.eps);
            let plus_guard = self.plus.as_ref().map(|p| p.storage_and_layout());
            let plus = match &plus_guard {
                Some((st, l)) => match &**st {
                    Storage::Cpu(cs) => Some(slice::<T>(cs, l, self.name())?),
                    _ => bail!("fused-rms-norm-bwd: the residual gradient must be on the CPU"),
                },
                None => None,
            };
            // dx row by row; dw as per-task partial sums, added in task order. The first task
            // also takes (zero-fills) the dw row, written once all tasks are done.
            let rows = rows_per_task(d);
            let chunk = rows * d;
            let tasks: Vec<usize> = (0..(n * d).div_ceil(chunk)).collect();
            let (mut out, partials) = zeroed_tasks((n + 1) * d, tasks, |t, out| {
                if t == 0 {
                    out.piece(n * d, d);
                }
                let r0 = t * rows;
                let dxc = out.piece(t * chunk, chunk.min(n * d - t * chunk));
                let mut gw = vec![zero::<T>(); d];
                let mut dwp = vec![zero::<T>(); d];
                for (i, dxr) in dxc.chunks_exact_mut(d).enumerate() {
                    let (xr, gr) = (&x[(r0 + i) * d..][..d], &g[(r0 + i) * d..][..d]);
                    let inv = inv_rms(xr, inv_n, eps);
                    let mut dot = zero::<T>();
                    for j in 0..d {
                        let xh = xr[j] * inv;
                        gw[j] = gr[j] * w[j];
                        dot += gw[j] * xh;
                        dwp[j] += gr[j] * xh;
                    }
                    let c = dot * inv_n;
                    for j in 0..d {
                        dxr[j] = inv * (gw[j] - (xr[j] * inv) * c);
                    }
                    if let Some(p) = plus {
                        for (o, &pv) in dxr.iter_mut().zip(&p[(r0 + i) * d..][..d]) {
                            *o += pv;
                        }
                    }
                }
                dwp
            });
            let dw = &mut out[n * d..];
            for p in partials {
                for (a, b) in dw.iter_mut().zip(p) {
                    *a += b;
                }
            }
            Ok((T::to_cpu_storage_owned(out), Shape::from((n + 1, d))))
        })
    }
}

/// RMSNorm over the last dim, `w * (x / sqrt(mean(x²) + eps))`, fused on CPU f32/f64 with `x`
/// and `weight` [D] of one dtype; elsewhere [`crate::ops::rms_norm`]. Differentiable in both.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    if !(supported(x) && same_dtype(x, weight)) {
        return rms_norm_composite(x, weight, eps);
    }
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNorm { eps })
}

// ---------------------------------------------------------------------------------------------
// RoPE

struct Rope;
struct RopeBwd;

/// Checks `cos`/`sin` against x's [B, H, L, hd]: returns whether the tables are per batch row
/// ([B, 1, L, hd]) rather than shared ([L, hd]).
fn rope_tables(x: (usize, usize, usize, usize), cos: &Layout, sin: &Layout) -> Result<bool> {
    let (b, _, l, hd) = x;
    if cos.dims() != sin.dims() {
        bail!(
            "fused-rope: cos {:?} and sin {:?} differ in shape",
            cos.dims(),
            sin.dims()
        );
    }
    if hd % 2 != 0 {
        bail!("fused-rope: head dim {hd} is odd");
    }
    match cos.dims() {
        [ll, d] if *ll == l && *d == hd => Ok(false),
        [bb, 1, ll, d] if *bb == b && *ll == l && *d == hd => Ok(true),
        other => bail!("fused-rope: tables {other:?} do not fit x [{b}, _, {l}, {hd}]"),
    }
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    /// x may be strided (the [B, L, H, hd] → [B, H, L, hd] transpose of a projection); the
    /// output is contiguous.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims4()?;
        let per_batch = rope_tables(dims, l2, l3)?;
        let (b, h, l, hd) = dims;
        let half = hd / 2;
        let st = l1.stride();
        let start = l1.start_offset();
        dispatch!(s1, self.name(), T => {
            let x = s1.as_slice::<T>()?;
            let cos = slice::<T>(s2, l2, self.name())?;
            let sin = slice::<T>(s3, l3, self.name())?;
            let (out, _) = row_tasks(b * h * l * hd, hd, rows_per_task(hd), |r0, oc| {
                for (i, orow) in oc.chunks_exact_mut(hd).enumerate() {
                    let r = r0 + i;
                    let (bi, hi, li) = (r / (h * l), (r / l) % h, r % l);
                    let base = start + bi * st[0] + hi * st[1] + li * st[2];
                    let t = (if per_batch { bi * l + li } else { li }) * hd;
                    let (c, s) = (&cos[t..t + hd], &sin[t..t + hd]);
                    let at = |i: usize| x[base + i * st[3]];
                    for i in 0..half {
                        orow[i] = at(i) * c[i] + (-at(i + half)) * s[i];
                    }
                    for i in half..hd {
                        orow[i] = at(i) * c[i] + at(i - half) * s[i];
                    }
                }
            });
            Ok((T::to_cpu_storage_owned(out), Shape::from((b, h, l, hd))))
        })
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // The tables are constants of the forward (positions), never trained.
        Ok((Some(rope_bwd(grad, cos, sin)?), None, None))
    }
}

/// The fused RoPE's input gradient for the output gradient `grad` [B, H, L, hd] and the
/// tables of the forward in its dtype, contiguous (CPU f32/f64), without recording anything.
pub(crate) fn rope_bwd(grad: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    grad.contiguous()?.apply_op3_no_bwd(cos, sin, &RopeBwd)
}

impl CustomOp3 for RopeBwd {
    fn name(&self) -> &'static str {
        "fused-rope-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims4()?;
        let per_batch = rope_tables(dims, l2, l3)?;
        let (b, h, l, hd) = dims;
        let half = hd / 2;
        dispatch!(s1, self.name(), T => {
            let g = slice::<T>(s1, l1, self.name())?;
            let cos = slice::<T>(s2, l2, self.name())?;
            let sin = slice::<T>(s3, l3, self.name())?;
            let (out, _) = row_tasks(g.len(), hd, rows_per_task(hd), |r0, oc| {
                for (i, orow) in oc.chunks_exact_mut(hd).enumerate() {
                    let r = r0 + i;
                    let gr = &g[r * hd..][..hd];
                    let (bi, li) = (r / (h * l), r % l);
                    let t = (if per_batch { bi * l + li } else { li }) * hd;
                    let (c, s) = (&cos[t..t + hd], &sin[t..t + hd]);
                    // out_i = x_i c_i + r_i s_i with r = [-x2, x1].
                    for j in 0..half {
                        orow[j] = gr[j] * c[j] + gr[j + half] * s[j + half];
                    }
                    for j in half..hd {
                        orow[j] = gr[j] * c[j] - gr[j - half] * s[j - half];
                    }
                }
            });
            Ok((T::to_cpu_storage_owned(out), Shape::from((b, h, l, hd))))
        })
    }
}

/// Rotary embedding in the half-split layout, `x*cos + rotate_half(x)*sin`, with `x`
/// [B, H, L, hd] (any strides) and `cos`/`sin` [L, hd] or [B, 1, L, hd]: fused on CPU f32/f64
/// (tables in x's dtype), returning a contiguous tensor; elsewhere [`crate::ops::rope`].
/// Differentiable in `x` (the tables are constants).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if !(supported(x) && x.rank() == 4) || cos.track_op() || sin.track_op() {
        return rope_composite(x, cos, sin);
    }
    let (cos, sin) = rope_tables_for(x, cos, sin)?;
    x.apply_op3(&cos, &sin, Rope)
}

/// The RoPE tables in `x`'s dtype, contiguous, as the fused kernel reads them.
pub(crate) fn rope_tables_for(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<(Tensor, Tensor)> {
    Ok((
        cos.to_dtype(x.dtype())?.contiguous()?,
        sin.to_dtype(x.dtype())?.contiguous()?,
    ))
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

struct SwiGlu;
struct SwiGluBwd;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            bail!(
                "fused-swiglu: gate {:?} and up {:?} differ in shape",
                l1.dims(),
                l2.dims()
            );
        }
        dispatch!(s1, self.name(), T => {
            let g = slice::<T>(s1, l1, self.name())?;
            let u = slice::<T>(s2, l2, self.name())?;
            let (out, _) = row_tasks(g.len(), 1, TASK_ELEMS, |i0, oc| {
                let (gc, uc) = (&g[i0..][..oc.len()], &u[i0..][..oc.len()]);
                wide::swiglu(gc, uc, oc);
            });
            Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
        })
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dg, du) = swiglu_bwd(gate, up, grad)?;
        Ok((Some(dg), Some(du)))
    }
}

/// The fused SwiGLU's gradients `(d gate, d up)` (CPU f32/f64, contiguous inputs), without
/// recording anything.
pub(crate) fn swiglu_bwd(gate: &Tensor, up: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = gate.elem_count();
    let both = gate.apply_op3_no_bwd(up, &grad.contiguous()?, &SwiGluBwd)?;
    let dg = both.narrow(0, 0, n)?.reshape(gate.shape())?;
    let du = both.narrow(0, n, n)?.reshape(up.shape())?;
    Ok((dg, du))
}

impl CustomOp3 for SwiGluBwd {
    fn name(&self) -> &'static str {
        "fused-swiglu-bwd"
    }

    /// Returns [2N]: d gate, then d up.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1, self.name(), T => {
            let g = slice::<T>(s1, l1, self.name())?;
            let u = slice::<T>(s2, l2, self.name())?;
            let dy = slice::<T>(s3, l3, self.name())?;
            let n = g.len();
            // [dgate; dup]: task k writes elements [k·TASK_ELEMS, ..) of both halves.
            let tasks: Vec<usize> = (0..n.div_ceil(TASK_ELEMS)).collect();
            let (out, _) = zeroed_tasks(2 * n, tasks, |k, out| {
                let i0 = k * TASK_ELEMS;
                let len = TASK_ELEMS.min(n - i0);
                let (dgc, duc) = (out.piece(i0, len), out.piece(n + i0, len));
                let at = i0..i0 + len;
                wide::swiglu_bwd(&g[at.clone()], &u[at.clone()], &dy[at], dgc, duc);
            });
            Ok((T::to_cpu_storage_owned(out), Shape::from(2 * n)))
        })
    }
}

/// [`SwiGlu`] over a run of elements: `out = silu(g) · u`.
#[inline(always)]
fn swiglu_run<T: Real>(g: &[T], u: &[T], out: &mut [T]) {
    for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
        *o = (g / (one::<T>() + (-g).exp_())) * u;
    }
}

/// [`SwiGluBwd`] over a run of elements: `dg = dy · u · silu'(g)`, `du = dy · silu(g)`.
#[inline(always)]
fn swiglu_bwd_run<T: Real>(g: &[T], u: &[T], dy: &[T], dg: &mut [T], du: &mut [T]) {
    for (i, (a, b)) in dg.iter_mut().zip(du.iter_mut()).enumerate() {
        let e = one::<T>() + (-g[i]).exp_();
        let sig = one::<T>() / e;
        let silu = g[i] / e;
        *a = dy[i] * u[i] * (sig * (one::<T>() + g[i] * (one::<T>() - sig)));
        *b = dy[i] * silu;
    }
}

/// SwiGLU's gating `silu(gate) * up` (same shapes), fused on CPU f32/f64; elsewhere
/// `gate.silu()? * up`. Differentiable in both.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if !(supported(gate) && same_dtype(gate, up) && gate.dims() == up.dims()) {
        return gate.silu()? * up;
    }
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

// ---------------------------------------------------------------------------------------------
// Attention softmax

struct AttnSoftmax {
    scale: f64,
}

struct AttnSoftmaxBwd {
    scale: f64,
}

impl CustomOp2 for AttnSoftmax {
    fn name(&self) -> &'static str {
        "fused-attention-softmax"
    }

    /// scores [B, H, Lq, Lk] and bias [B, Lk] → probabilities [B, H, Lq, Lk].
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, h, lq, lk) = l1.shape().dims4()?;
        if lk == 0 {
            bail!("fused-attention-softmax: no keys");
        }
        if l2.dims() != [b, lk] {
            bail!(
                "fused-attention-softmax: bias {:?} is not [{b}, {lk}]",
                l2.dims()
            );
        }
        dispatch!(s1, self.name(), T => {
            let s = slice::<T>(s1, l1, self.name())?;
            let bias = slice::<T>(s2, l2, self.name())?;
            let scale = T::from_f64(self.scale);
            let (out, _) = row_tasks(s.len(), lk, rows_per_task(lk), |r0, oc| {
                for (i, or) in oc.chunks_exact_mut(lk).enumerate() {
                    let r = r0 + i;
                    or.copy_from_slice(&s[r * lk..][..lk]);
                    wide::attn_softmax_row(or, &bias[(r / (h * lq)) * lk..][..lk], scale);
                }
            });
            Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
        })
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _bias: &Tensor,
        probs: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ds =
            probs.apply_op2_no_bwd(&grad.contiguous()?, &AttnSoftmaxBwd { scale: self.scale })?;
        // The key bias is a constant of the forward (the padding mask).
        Ok((Some(ds), None))
    }
}

impl CustomOp2 for AttnSoftmaxBwd {
    fn name(&self) -> &'static str {
        "fused-attention-softmax-bwd"
    }

    /// probabilities P and their gradient G → `scale · P ⊙ (G − Σ_k G_k P_k)` per row.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let lk = last_dim(l1)?;
        dispatch!(s1, self.name(), T => {
            let p = slice::<T>(s1, l1, self.name())?;
            let g = slice::<T>(s2, l2, self.name())?;
            let scale = T::from_f64(self.scale);
            let (out, _) = row_tasks(p.len(), lk, rows_per_task(lk), |r0, oc| {
                for (i, or) in oc.chunks_exact_mut(lk).enumerate() {
                    or.copy_from_slice(&g[(r0 + i) * lk..][..lk]);
                    wide::attn_softmax_grad_row(&p[(r0 + i) * lk..][..lk], or, scale);
                }
            });
            Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
        })
    }
}

/// One row of [`AttnSoftmax`] in place: scores `row` → `softmax(row · scale + bias)`.
#[inline(always)]
fn softmax_row<T: Real>(out: &mut [T], bias: &[T], scale: T) {
    for (o, &bv) in out.iter_mut().zip(bias) {
        *o = *o * scale + bv;
    }
    let m = row_max(out);
    for o in out.iter_mut() {
        *o = (*o - m).exp_();
    }
    let sum = row_sum(out);
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// One row of [`AttnSoftmaxBwd`] in place: the probabilities' gradient `g` →
/// `scale · p ⊙ (g − Σ_k g_k p_k)`, the sum in order (see [`row_sum`]).
#[inline(always)]
fn attn_grad_row<T: Real>(p: &[T], g: &mut [T], scale: T) {
    let mut dot = zero::<T>();
    for (&pv, &gv) in p.iter().zip(g.iter()) {
        dot += pv * gv;
    }
    for (o, &pv) in g.iter_mut().zip(p) {
        *o = scale * pv * (*o - dot);
    }
}

/// Attention probabilities `softmax(scores · scale + bias)` over the last dim of `scores`
/// [B, H, Lq, Lk], with an optional key bias [B, 1, 1, Lk] (0 for real keys, a large negative
/// number for padding). Computed in f32 (f64 for f64) and fused on CPU; elsewhere the composite
/// upcast, scale, broadcast add and [`crate::ops::softmax`]. Differentiable in `scores`; the
/// backward keeps only the probabilities.
pub fn attention_softmax(scores: &Tensor, scale: f64, bias: Option<&Tensor>) -> Result<Tensor> {
    let scores = upcast(scores)?;
    let bias_ok = bias.is_none_or(|b| !b.track_op());
    if !(supported(&scores) && scores.rank() == 4 && bias_ok) {
        let mut s = (scores * scale)?;
        if let Some(bias) = bias {
            s = s.broadcast_add(&bias.to_dtype(s.dtype())?)?;
        }
        return softmax(&s, D::Minus1);
    }
    let (b, _, _, lk) = scores.dims4()?;
    let bias = match bias {
        Some(t) => t.to_dtype(scores.dtype())?.reshape((b, lk))?.contiguous()?,
        None => Tensor::zeros((b, lk), scores.dtype(), scores.device())?,
    };
    scores.contiguous()?.apply_op2(&bias, AttnSoftmax { scale })
}

// ---------------------------------------------------------------------------------------------
// Log-softmax gathered at targets

/// The forward keeps each row's max and log-sum-exp (`stats`, [m, lse] per row) for the
/// backward, which then needs one pass over the logits instead of three.
#[derive(Default)]
struct LogSoftmaxGather {
    stats: std::sync::Mutex<Option<Vec<f64>>>,
}

struct LogSoftmaxGatherBwd {
    stats: Vec<f64>,
}

/// Copies of the row kernels compiled for AVX-512 or AVX2, picked at run time: the same
/// operations in the same order per element (no fused multiply-add is introduced), so every
/// width gives the same bits; the baseline build only has SSE2's four lanes.
mod wide {
    use super::{
        attn_grad_row, lse_grad_row, max_lse, softmax_row, swiglu_bwd_run, swiglu_run, Real,
    };

    /// `pub(super) fn $name` running `$base` on the widest vector unit the CPU has.
    macro_rules! widest {
        ($(#[$doc:meta])* fn $name:ident($($a:ident: $t:ty),*) $(-> $r:ty)? = $base:ident) => {
            $(#[$doc])*
            #[allow(unsafe_code)]
            pub(super) fn $name<T: Real>($($a: $t),*) $(-> $r)? {
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx512f")]
                    unsafe fn avx512<T: Real>($($a: $t),*) $(-> $r)? {
                        $base($($a),*)
                    }
                    #[target_feature(enable = "avx2")]
                    unsafe fn avx2<T: Real>($($a: $t),*) $(-> $r)? {
                        $base($($a),*)
                    }
                    if std::arch::is_x86_feature_detected!("avx512f") {
                        // SAFETY: the CPU has AVX-512F (checked just above).
                        return unsafe { avx512($($a),*) };
                    }
                    if std::arch::is_x86_feature_detected!("avx2") {
                        // SAFETY: the CPU has AVX2 (checked just above).
                        return unsafe { avx2($($a),*) };
                    }
                }
                $base($($a),*)
            }
        };
    }

    widest!(
        /// [`max_lse`].
        fn max_lse_row(row: &[T], buf: &mut [T]) -> (T, T) = max_lse
    );
    widest!(
        /// [`lse_grad_row`].
        fn grad_row(row: &[T], out: &mut [T], m: T, lse: T, g: T) = lse_grad_row
    );
    widest!(
        /// [`softmax_row`].
        fn attn_softmax_row(row: &mut [T], bias: &[T], scale: T) = softmax_row
    );
    widest!(
        /// [`attn_grad_row`].
        fn attn_softmax_grad_row(p: &[T], g: &mut [T], scale: T) = attn_grad_row
    );
    widest!(
        /// [`swiglu_run`].
        fn swiglu(g: &[T], u: &[T], out: &mut [T]) = swiglu_run
    );
    widest!(
        /// [`swiglu_bwd_run`].
        fn swiglu_bwd(g: &[T], u: &[T], dy: &[T], dg: &mut [T], du: &mut [T]) = swiglu_bwd_run
    );
}

/// One row of the gathered log-softmax's backward without its target term:
/// `out = −g · e^((x − m) − lse)`, the softmax from the forward's row statistics.
#[inline(always)]
fn lse_grad_row<T: Real>(row: &[T], out: &mut [T], m: T, lse: T, g: T) {
    for (o, &x) in out.iter_mut().zip(row) {
        *o = -(g * ((x - m) - lse).exp_());
    }
}

/// Row max and log-sum-exp of the shifted row; `buf` (the row's length) receives the
/// exponentials. The sum runs in eight lanes (a vocabulary row has no padding whose bits must
/// stay out of the sum, unlike attention rows): a sequential 8192-term sum was ~6% of a d1
/// training step, one add latency per term.
#[inline(always)]
fn max_lse<T: Real>(row: &[T], buf: &mut [T]) -> (T, T) {
    let m = row_max(row);
    for (b, &v) in buf.iter_mut().zip(row) {
        *b = (v - m).exp_();
    }
    (m, lane_sum(buf).ln_())
}

/// Sum of a row in eight independent lanes, combined pairwise at the end.
#[inline(always)]
fn lane_sum<T: Real>(row: &[T]) -> T {
    let mut acc = [zero::<T>(); 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in rest {
        s += v;
    }
    s
}

/// Maximum of a non-empty row, in eight independent lanes.
#[inline(always)]
fn row_max<T: Real>(row: &[T]) -> T {
    let mut acc = [row[0]; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max_(v);
        }
    }
    let mut m = acc.iter().fold(row[0], |m, &a| m.max_(a));
    for &v in rest {
        m = m.max_(v);
    }
    m
}

/// Sum of a row, left to right. Sequential on purpose: leading zeros (the probabilities of
/// left-padded keys) then leave the sum bit for bit what it is without them, so a padded row
/// gets exactly the numbers it gets alone.
#[inline(always)]
fn row_sum<T: Real>(row: &[T]) -> T {
    let mut s = zero::<T>();
    for &v in row {
        s += v;
    }
    s
}

fn targets(s: &CpuStorage, l: &Layout, n: usize, v: usize) -> Result<Vec<usize>> {
    let t = slice::<u32>(s, l, "fused-log-softmax-gather")?;
    if t.len() != n {
        bail!("fused-log-softmax-gather: {} targets for {n} rows", t.len());
    }
    t.iter()
        .map(|&i| {
            let i = i as usize;
            if i >= v {
                bail!("fused-log-softmax-gather: target id {i} is outside the vocabulary of {v}")
            }
            Ok(i)
        })
        .collect()
}

impl CustomOp2 for LogSoftmaxGather {
    fn name(&self) -> &'static str {
        "fused-log-softmax-gather"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, v) = l1.shape().dims2()?;
        if v == 0 {
            bail!("fused-log-softmax-gather: empty vocabulary");
        }
        let tg = targets(s2, l2, n, v)?;
        dispatch!(s1, self.name(), T => {
            let x = slice::<T>(s1, l1, self.name())?;
            let (out, stats) = row_tasks(n, 1, rows_per_task(v), |r0, oc| {
                let mut buf = vec![zero::<T>(); v];
                let mut stats = Vec::with_capacity(2 * oc.len());
                for (i, o) in oc.iter_mut().enumerate() {
                    let row = &x[(r0 + i) * v..][..v];
                    let t = tg[r0 + i];
                    let (m, lse) = wide::max_lse_row(row, &mut buf);
                    *o = (row[t] - m) - lse;
                    stats.extend([m.to_f64(), lse.to_f64()]);
                }
                stats
            });
            if let Ok(mut kept) = self.stats.lock() {
                *kept = Some(stats.concat());
            }
            Ok((T::to_cpu_storage_owned(out), Shape::from(n)))
        })
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let stats = match self.stats.lock().ok().and_then(|s| s.clone()) {
            Some(s) => s,
            None => bail!("fused-log-softmax-gather: backward before the forward kept its rows"),
        };
        let dx = logits.apply_op3_no_bwd(targets, &g, &LogSoftmaxGatherBwd { stats })?;
        Ok((Some(dx), None))
    }
}

impl CustomOp3 for LogSoftmaxGatherBwd {
    fn name(&self) -> &'static str {
        "fused-log-softmax-gather-bwd"
    }

    /// logits [N, V], targets [N], incoming gradient [N] → `g · (onehot(target) − softmax)`,
    /// the softmax from the forward's row statistics.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, v) = l1.shape().dims2()?;
        if v == 0 {
            bail!("fused-log-softmax-gather: empty vocabulary");
        }
        let tg = targets(s2, l2, n, v)?;
        dispatch!(s1, self.name(), T => {
            let x = slice::<T>(s1, l1, self.name())?;
            let g = slice::<T>(s3, l3, self.name())?;
            if g.len() != n {
                bail!("fused-log-softmax-gather-bwd: {} gradients for {n} rows", g.len());
            }
            let stats = &self.stats;
            if stats.len() != 2 * n {
                bail!("fused-log-softmax-gather-bwd: row statistics for {} rows, not {n}", stats.len() / 2);
            }
            let (out, _) = row_tasks(n * v, v, rows_per_task(v), |r0, oc| {
                for (i, or) in oc.chunks_exact_mut(v).enumerate() {
                    let r = r0 + i;
                    let (row, t, gi) = (&x[r * v..][..v], tg[r], g[r]);
                    let (m, lse) = (T::from_f64(stats[2 * r]), T::from_f64(stats[2 * r + 1]));
                    wide::grad_row(row, or, m, lse, gi);
                    or[t] += gi;
                }
            });
            Ok((T::to_cpu_storage_owned(out), Shape::from((n, v))))
        })
    }
}

/// `log_softmax(logits)[i, targets[i]]` for logits [N, V] and u32 targets [N]: the [N]
/// log-probabilities of the targets, in f32 (f64 for f64). Fused on CPU: the forward and the
/// backward (`g · (onehot − softmax)`) each take one pass over the logits, and no [N, V]
/// log-softmax enters the graph. Elsewhere [`crate::ops::log_softmax`] and a gather.
/// Differentiable in `logits`; a target outside `0..V` is an error.
pub fn log_softmax_gather(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = upcast(logits)?;
    let (n, _) = logits.dims2()?;
    let targets = targets.to_dtype(DType::U32)?.reshape(n)?;
    if !supported(&logits) {
        let lsm = super::log_softmax(&logits, D::Minus1)?;
        return lsm.gather(&targets.reshape((n, 1))?, 1)?.squeeze(1);
    }
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, LogSoftmaxGather::default())
}

// ---------------------------------------------------------------------------------------------
// Attention

/// `softmax(q kᵀ · scale + bias) v` as one graph node. The forward runs on detached inputs
/// ([`attention_fwd`], recorded nowhere); the op keeps the probabilities
/// for its backward, so neither the [B, H, Lq, Lk] scores nor their gradients become graph
/// edges of their own.
struct Attention {
    scale: f64,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    probs: Tensor,
    out: Tensor,
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    /// Hands over the output computed when the op was built (the arguments are the same
    /// q, k, v, undetached, so that the graph records them).
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        hand_over(&self.out)
    }

    fn bwd(
        &self,
        _q: &Tensor,
        _k: &Tensor,
        _v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dq, dk, dv) = attention_bwd(&self.q, &self.k, &self.v, &self.probs, self.scale, grad)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// A CPU tensor's values as a new storage with its shape: what a custom op whose output was
/// computed before the op was applied (on detached inputs) returns from `cpu_fwd`.
pub(crate) fn hand_over(t: &Tensor) -> Result<(CpuStorage, Shape)> {
    {
        let (st, l) = t.storage_and_layout();
        if let (Storage::Cpu(cs), Some((0, end))) = (&*st, l.contiguous_offsets()) {
            if end == t.elem_count() && cs_len(cs) == end {
                return Ok((cs.clone(), t.shape().clone()));
            }
        }
    }
    let flat = t.flatten_all()?.to_device(&candle_core::Device::Cpu)?;
    let out = match flat.dtype() {
        DType::F32 => CpuStorage::F32(flat.to_vec1()?),
        DType::F64 => CpuStorage::F64(flat.to_vec1()?),
        other => bail!("hand_over: the fused kernels take f32 or f64, not {other:?}"),
    };
    Ok((out, t.shape().clone()))
}

/// Elements in a CPU storage of a float type the kernels take (0 for any other).
fn cs_len(cs: &CpuStorage) -> usize {
    match cs {
        CpuStorage::F32(v) => v.len(),
        CpuStorage::F64(v) => v.len(),
        _ => 0,
    }
}

/// The fused attention's forward on detached contiguous q [B, H, Lq, hd], k and v
/// [B, H, Lk, hd] (keys repeated to the query heads): `(output, probabilities)`, recording
/// nothing. One task per (batch, head) on the compute team: scores `q kᵀ`, the softmax in place
/// and `P v`, so a head's scores stay in cache between the three (the arithmetic, and the bits,
/// of [`super::matmul::matmul`], [`attention_softmax`] and `matmul` run one after the other).
pub(crate) fn attention_fwd(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    bias: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let name = "fused-attention";
    let (b, h, lq, hd) = q.dims4()?;
    let lk = k.dim(2)?;
    if k.dims4()? != (b, h, lk, hd) || v.dims4()? != (b, h, lk, hd) || lk == 0 {
        bail!(
            "{name}: q {:?}, k {:?} and v {:?} are not [B, H, Lq, hd], [B, H, Lk, hd] with Lk > 0",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    // No bias is a zero bias, added as the unfused softmax adds it.
    let bias = match bias {
        Some(t) => t.to_dtype(q.dtype())?.reshape((b, lk))?.contiguous()?,
        None => Tensor::zeros((b, lk), q.dtype(), q.device())?,
    };
    let (qg, ql) = q.storage_and_layout();
    let (kg, kl) = k.storage_and_layout();
    let (vg, vl) = v.storage_and_layout();
    let (bg, bl) = bias.storage_and_layout();
    let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs), Storage::Cpu(bs)) =
        (&*qg, &*kg, &*vg, &*bg)
    else {
        bail!("{name}: CPU tensors expected");
    };
    let scale_t = scale;
    dispatch!(qs, name, T => {
        let (qd, kd, vd) = (slice::<T>(qs, ql, name)?, slice::<T>(ks, kl, name)?, slice::<T>(vs, vl, name)?);
        let bd = slice::<T>(bs, bl, name)?;
        let scale = T::from_f64(scale_t);
        let heads: Vec<usize> = (0..b * h).collect();
        let ([probs, out], done) = zeroed_tasks_n([b * h * lq * lk, b * h * lq * hd], heads, |t, [pp, op]| {
            let p = pp.piece(t * lq * lk, lq * lk);
            let (qh, kh, vh) = (&qd[t * lq * hd..][..lq * hd], &kd[t * lk * hd..][..lk * hd], &vd[t * lk * hd..][..lk * hd]);
            gemm_into(p, (lq, hd, lk), qh, (hd, 1), kh, (1, hd))?;
            let br = &bd[(t / h) * lk..][..lk];
            for row in p.chunks_exact_mut(lk) {
                wide::attn_softmax_row(row, br, scale);
            }
            gemm_into(op.piece(t * lq * hd, lq * hd), (lq, lk, hd), p, (lk, 1), vh, (hd, 1))
        });
        done.into_iter().collect::<Result<()>>()?;
        let dev = q.device();
        Ok((Tensor::from_vec(out, (b, h, lq, hd), dev)?, Tensor::from_vec(probs, (b, h, lq, lk), dev)?))
    })
}

/// The fused attention's gradients `(dq, dk, dv)` from the forward's contiguous q, k, v, its
/// probabilities and the output gradient (`dV = Pᵀ dO`, `dS` from the softmax backward,
/// `dQ = dS K`, `dK = dSᵀ Q`), recording nothing. One task per (batch, head), like
/// [`attention_fwd`]; a head's dS lives only in its task.
pub(crate) fn attention_bwd(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    probs: &Tensor,
    scale: f64,
    grad: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let name = "fused-attention-bwd";
    let (b, h, lq, hd) = q.dims4()?;
    let lk = k.dim(2)?;
    let g = grad.contiguous()?;
    let (q, k, v, probs) = (
        q.contiguous()?,
        k.contiguous()?,
        v.contiguous()?,
        probs.contiguous()?,
    );
    if k.dims4()? != (b, h, lk, hd)
        || v.dims4()? != (b, h, lk, hd)
        || probs.dims4()? != (b, h, lq, lk)
        || g.dims4()? != (b, h, lq, hd)
    {
        bail!("{name}: the forward's tensors and the output gradient disagree in shape");
    }
    let (qg, ql) = q.storage_and_layout();
    let (kg, kl) = k.storage_and_layout();
    let (vg, vl) = v.storage_and_layout();
    let (pg, pl) = probs.storage_and_layout();
    let (gg, gl) = g.storage_and_layout();
    let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs), Storage::Cpu(ps), Storage::Cpu(gs)) =
        (&*qg, &*kg, &*vg, &*pg, &*gg)
    else {
        bail!("{name}: CPU tensors expected");
    };
    let scale_t = scale;
    dispatch!(qs, name, T => {
        let (qd, kd, vd) = (slice::<T>(qs, ql, name)?, slice::<T>(ks, kl, name)?, slice::<T>(vs, vl, name)?);
        let (pd, gd) = (slice::<T>(ps, pl, name)?, slice::<T>(gs, gl, name)?);
        let scale = T::from_f64(scale_t);
        let heads: Vec<usize> = (0..b * h).collect();
        let (nq, nk) = (b * h * lq * hd, b * h * lk * hd);
        let ([dq, dk, dv], done) = zeroed_tasks_n([nq, nk, nk], heads, |t, [pq, pk, pv]| {
            let (qh, kh, vh) = (&qd[t * lq * hd..][..lq * hd], &kd[t * lk * hd..][..lk * hd], &vd[t * lk * hd..][..lk * hd]);
            let (ph, gh) = (&pd[t * lq * lk..][..lq * lk], &gd[t * lq * hd..][..lq * hd]);
            gemm_into(pv.piece(t * lk * hd, lk * hd), (lk, lq, hd), ph, (1, lk), gh, (hd, 1))?;
            let mut ds = vec![zero::<T>(); lq * lk];
            gemm_into(&mut ds, (lq, hd, lk), gh, (hd, 1), vh, (1, hd))?;
            for (dsr, pr) in ds.chunks_exact_mut(lk).zip(ph.chunks_exact(lk)) {
                wide::attn_softmax_grad_row(pr, dsr, scale);
            }
            gemm_into(pq.piece(t * lq * hd, lq * hd), (lq, lk, hd), &ds, (lk, 1), kh, (hd, 1))?;
            gemm_into(pk.piece(t * lk * hd, lk * hd), (lk, lq, hd), &ds, (1, lk), qh, (hd, 1))
        });
        done.into_iter().collect::<Result<()>>()?;
        let dev = q.device();
        Ok((
            Tensor::from_vec(dq, (b, h, lq, hd), dev)?,
            Tensor::from_vec(dk, (b, h, lk, hd), dev)?,
            Tensor::from_vec(dv, (b, h, lk, hd), dev)?,
        ))
    })
}

/// Scaled dot-product attention `softmax(q kᵀ · scale + bias) v` with q [B, H, Lq, hd], k and
/// v [B, H, Lk, hd] (keys already repeated to the query heads) and an optional key bias
/// [B, 1, 1, Lk]. Scores and softmax are in f32 (f64 for f64), the matmuls in the input
/// dtype. On CPU f32/f64 one graph node with its own backward (`dV = Pᵀ dO`, `dS` from the
/// softmax backward, `dQ = dS K`, `dK = dSᵀ Q`) that keeps only the probabilities; elsewhere
/// the composite matmul, [`attention_softmax`] and matmul. Differentiable in q, k and v.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let fused = supported(q) && same_dtype(q, k) && same_dtype(q, v) && q.rank() == 4;
    if !fused {
        let scores = q.contiguous()?.matmul(&k.t()?.contiguous()?)?;
        let probs = attention_softmax(&scores, scale, bias)?.to_dtype(v.dtype())?;
        return probs.matmul(&v.contiguous()?);
    }
    let (qd, kd, vd) = (
        q.detach().contiguous()?,
        k.detach().contiguous()?,
        v.detach().contiguous()?,
    );
    let bias = bias.map(Tensor::detach);
    let (out, probs) = attention_fwd(&qd, &kd, &vd, scale, bias.as_ref())?;
    q.apply_op3(
        k,
        v,
        Attention {
            scale,
            q: qd,
            k: kd,
            v: vd,
            probs,
            out,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::{
        attn_grad_row, exp_f32, lse_grad_row, max_lse, softmax_row, swiglu_bwd_run, swiglu_run,
        wide,
    };

    fn same(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    /// The AVX-512 / AVX2 copies of the row kernels give the baseline's bits (on a CPU without
    /// them the dispatch runs the baseline and this holds trivially).
    #[test]
    fn wide_row_kernels_give_the_baseline_bits() {
        let row: Vec<f32> = (0..8197)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 37.0)
            .collect();
        let (mut a, mut b) = (vec![0f32; row.len()], vec![0f32; row.len()]);
        let (m0, l0) = max_lse(&row, &mut a);
        let (m1, l1) = wide::max_lse_row(&row, &mut b);
        assert_eq!((m0.to_bits(), l0.to_bits()), (m1.to_bits(), l1.to_bits()));
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        lse_grad_row(&row, &mut a, m0, l0, 0.3);
        wide::grad_row(&row, &mut b, m0, l0, 0.3);
        assert!(same(&a, &b));
        // Attention rows with a padding bias, and SwiGLU runs (odd lengths: vector tails).
        let n = 203;
        let bias: Vec<f32> = (0..n)
            .map(|j| if j < 5 { -f32::MAX } else { 0.0 })
            .collect();
        let (s, g) = (&row[..n], &row[1000..1000 + n]);
        let (mut a, mut b) = (s.to_vec(), s.to_vec());
        softmax_row(&mut a, &bias, 0.17);
        wide::attn_softmax_row(&mut b, &bias, 0.17);
        assert!(same(&a, &b));
        let p = a.clone();
        let (mut a, mut b) = (g.to_vec(), g.to_vec());
        attn_grad_row(&p, &mut a, 0.17);
        wide::attn_softmax_grad_row(&p, &mut b, 0.17);
        assert!(same(&a, &b));
        swiglu_run(s, g, &mut a);
        wide::swiglu(s, g, &mut b);
        assert!(same(&a, &b));
        let (mut c, mut d) = (vec![0f32; n], vec![0f32; n]);
        swiglu_bwd_run(s, g, &p, &mut a, &mut c);
        wide::swiglu_bwd(s, g, &p, &mut b, &mut d);
        assert!(same(&a, &b) && same(&c, &d));
    }

    #[test]
    fn exp_f32_is_within_two_ulp_and_zero_below_the_normal_range() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x < 88.3 {
            let want = f64::from(x).exp();
            let got = f64::from(exp_f32(x));
            worst = worst.max((got - want).abs() / want);
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-f32::MAX), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert!(exp_f32(1e4).is_finite());
        assert!(exp_f32(f32::NAN).is_nan());
    }
}

//! Matrix products on CPU f32/f64 through gemm directly, split between the pool's workers.
//!
//! candle's CPU matmul zero-fills its output on the calling thread before gemm overwrites it
//! (~7% of a d1 step), loops over a batch one product at a time, and hands each product to
//! gemm's own threading, which at these shapes (a few hundred rows) scales 1.3-1.5x from one
//! thread to two. Here the output is written once, and the products are cut into tasks along
//! the batch and along the longer of the output's rows and columns, one gemm call per task on
//! one thread each: measured 1.6-1.8x from one thread to two at the bench shapes.
//!
//! Each output element is the same k-ordered sum whatever the cut (gemm's k blocking depends on
//! k alone), so results are bit for bit those of candle's matmul for any thread count and any
//! batch size. The backward skips the gradient of an argument that tracks nothing (a frozen
//! base weight under LoRA), where candle's computes both.

// gemm's entry point is raw pointers and strides; the bounds are checked before each call
// (`Operand::new`) and each task owns a disjoint block of the output.
#![allow(unsafe_code)]

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// Below this many multiply-adds a product runs as one task (a pool hand-off costs more).
const SERIAL_WORK: usize = 1 << 18;

/// Smallest slice of the cut dimension a task gets.
const MIN_SLICE: usize = 32;

/// `a · b` for `a` [.., m, k] and `b` [.., k, n] with equal batch dims, differentiable in both
/// (any strides: `w.t()` is not copied). On CPU f32/f64 the split gemm described in the module
/// docs; elsewhere, and for shapes candle's matmul would reject, candle's matmul (and its
/// error).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !applies(a, b) {
        return a.matmul(b);
    }
    a.apply_op2(b, MatMul)
}

/// `x · wᵀ` for a weight `w` [out, in] (a linear layer without bias), differentiable in both.
/// For x [rows, in] on CPU f32/f64 one graph node over `x` and `w` themselves (the product is
/// [`matmul`]'s, bit for bit): its backward makes dw = gᵀ x in w's own [out, in] layout and
/// hands it to [`super::deferred`], where a `w.t()` node would cost candle's backward a
/// transposed add into a zero-filled buffer.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let wt = w.t()?;
    if x.rank() != 2 || w.rank() != 2 || !applies(x, &wt) {
        return matmul(x, &wt);
    }
    x.apply_op2(w, Linear)
}

/// `a · b + res`, recording nothing (for the hand-written backwards, which work on detached
/// tensors): each task adds `res` to its block of the product right after computing it, so the
/// sum is the one `(a.matmul(b) + res)` gives, bit for bit, without a pass of its own over the
/// output. `res` has the product's shape; shapes or devices the split gemm does not take fall
/// back to candle's ops.
pub fn matmul_add(a: &Tensor, b: &Tensor, res: &Tensor) -> Result<Tensor> {
    if !applies(a, b) || res.dtype() != a.dtype() || !res.device().is_cpu() {
        return matmul(a, b)? + res;
    }
    let res = res.contiguous()?;
    a.apply_op3_no_bwd(b, &res, &MatMulAdd)
}

/// `x · wᵀ + res` (a linear layer and a residual add), recording nothing; see [`matmul_add`].
pub fn linear_add(x: &Tensor, w: &Tensor, res: &Tensor) -> Result<Tensor> {
    matmul_add(x, &w.t()?, res)
}

fn applies(a: &Tensor, b: &Tensor) -> bool {
    let (da, db) = (a.dims(), b.dims());
    let r = da.len();
    a.device().is_cpu()
        && b.device().is_cpu()
        && matches!(a.dtype(), DType::F32 | DType::F64)
        && a.dtype() == b.dtype()
        && r >= 2
        && db.len() == r
        && da[..r - 2] == db[..r - 2]
        && da[r - 1] == db[r - 2]
}

struct MatMul;

impl CustomOp2 for MatMul {
    fn name(&self) -> &'static str {
        "split-gemm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        product_storage(self.name(), (s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.detach();
        let ga = match a.track_op() {
            true => Some(matmul(&g, &b.detach().t()?)?),
            false => None,
        };
        let gb = match b.track_op() {
            true => Some(matmul(&a.detach().t()?, &g)?),
            false => None,
        };
        Ok((ga, gb))
    }
}

/// `x · wᵀ` with w [out, in] as the op's argument (see [`linear`]).
struct Linear;

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "split-gemm-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        MatMul.cpu_fwd(s1, l1, s2, &l2.transpose(0, 1)?)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.detach();
        let gx = match x.track_op() {
            true => Some(matmul(&g, &w.detach())?),
            false => None,
        };
        let gw = match w.track_op() {
            true => super::deferred::hand(w, matmul(&g.t()?, &x.detach())?),
            false => None,
        };
        Ok((gx, gw))
    }
}

/// The product plus a residual of its shape (no backward: see [`matmul_add`]).
struct MatMulAdd;

impl CustomOp3 for MatMulAdd {
    fn name(&self) -> &'static str {
        "split-gemm-add"
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
        product_storage(self.name(), (s1, l1), (s2, l2), Some((s3, l3)))
    }
}

/// [`product`] on candle storages of one float dtype, plus the contiguous residual `res`
/// where given.
fn product_storage(
    op: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    res: Option<(&CpuStorage, &Layout)>,
) -> Result<(CpuStorage, Shape)> {
    match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => {
            let r = res
                .map(|(s, l)| super::fused::slice::<f32>(s, l, op))
                .transpose()?;
            let (v, s) = product(a, l1, b, l2, r)?;
            Ok((CpuStorage::F32(v), s))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            let r = res
                .map(|(s, l)| super::fused::slice::<f64>(s, l, op))
                .transpose()?;
            let (v, s) = product(a, l1, b, l2, r)?;
            Ok((CpuStorage::F64(v), s))
        }
        _ => bail!("{op}: f32 or f64 operands of one dtype expected"),
    }
}

/// A strided operand: the start of each batch item and the row and column strides.
struct Operand {
    starts: Vec<usize>,
    rs: usize,
    cs: usize,
}

impl Operand {
    /// Checks that every element the product reads lies inside the storage.
    fn new(l: &Layout, rows: usize, cols: usize, len: usize) -> Result<Operand> {
        let (dims, strides) = (l.dims(), l.stride());
        let r = dims.len();
        let mut starts = vec![l.start_offset()];
        for (&d, &s) in dims[..r - 2].iter().zip(&strides[..r - 2]) {
            starts = starts
                .iter()
                .flat_map(|&o| (0..d).map(move |i| o + i * s))
                .collect();
        }
        let (rs, cs) = (strides[r - 2], strides[r - 1]);
        let reach = (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs;
        if starts.iter().any(|&o| o + reach >= len.max(1)) && rows * cols > 0 {
            bail!("split-gemm: layout {l:?} reaches past a storage of {len} elements");
        }
        Ok(Operand { starts, rs, cs })
    }
}

/// The element types the product takes.
pub(crate) trait Scalar: Copy + Send + Sync + std::ops::AddAssign + 'static {
    const ZERO: Self;
    const ONE: Self;
}

impl Scalar for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
}

impl Scalar for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
}

/// `out = a · b` on the calling thread for `a` [m, k] and `b` [k, n] given as slices with
/// their (row, column) strides, into the first m·n elements of `out` (row-major): for kernels
/// that run one product per task themselves. Each element is the k-ordered sum [`matmul`]
/// computes, bit for bit.
pub(crate) fn gemm_into<T: Scalar>(
    out: &mut [T],
    (m, k, n): (usize, usize, usize),
    a: &[T],
    (a_rs, a_cs): (usize, usize),
    b: &[T],
    (b_rs, b_cs): (usize, usize),
) -> Result<()> {
    let reach = |rows: usize, cols: usize, rs: usize, cs: usize| match rows * cols {
        0 => 0,
        _ => (rows - 1) * rs + (cols - 1) * cs + 1,
    };
    if out.len() < m * n || a.len() < reach(m, k, a_rs, a_cs) || b.len() < reach(k, n, b_rs, b_cs) {
        bail!("gemm_into: operands too short for a [{m}, {k}] · [{k}, {n}] product");
    }
    if m * n == 0 {
        return Ok(());
    }
    if k == 0 {
        out[..m * n].fill(T::ZERO);
        return Ok(());
    }
    // SAFETY: every read is inside `a` and `b` and every write inside `out` (checked above).
    unsafe {
        gemm_raw(
            (m, k, n),
            out.as_mut_ptr(),
            n,
            a.as_ptr(),
            (a_rs, a_cs),
            b.as_ptr(),
            (b_rs, b_cs),
        )
    };
    Ok(())
}

/// One single-threaded gemm call: `dst = a · b` for `a` [m, k] and `b` [k, n] with (row,
/// column) strides, `dst` rows `dst_rs` apart, overwritten (not read).
///
/// # Safety
/// Every element the strides reach must lie inside `a`'s and `b`'s allocations, and the
/// m × n block of `dst` inside its allocation, written by no one else meanwhile.
unsafe fn gemm_raw<T: Scalar>(
    (m, k, n): (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    a: *const T,
    (a_rs, a_cs): (usize, usize),
    b: *const T,
    (b_rs, b_cs): (usize, usize),
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        false,
        a,
        a_cs as isize,
        a_rs as isize,
        b,
        b_cs as isize,
        b_rs as isize,
        T::ZERO,
        T::ONE,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// The output pointer shared by the tasks, each of which writes its own disjoint block.
#[derive(Clone, Copy)]
struct Dst<T>(*mut T);
// SAFETY: tasks write disjoint blocks of one allocation that outlives the parallel loop.
unsafe impl<T> Send for Dst<T> {}
unsafe impl<T> Sync for Dst<T> {}

/// `a · b`, plus `res` (the output's shape, contiguous) where given.
fn product<T: Scalar>(
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
    res: Option<&[T]>,
) -> Result<(Vec<T>, Shape)> {
    let da = la.dims();
    let r = da.len();
    let (m, k, n) = (da[r - 2], da[r - 1], lb.dims()[r - 1]);
    let lhs = Operand::new(la, m, k, a.len())?;
    let rhs = Operand::new(lb, k, n, b.len())?;
    let batch = lhs.starts.len();
    let mut shape = da.to_vec();
    shape[r - 1] = n;
    let total = batch * m * n;
    if res.is_some_and(|r| r.len() != total) {
        bail!("split-gemm-add: a residual of {total} elements expected");
    }
    if k == 0 || total == 0 {
        let out = res.map_or_else(|| vec![T::ZERO; total], <[T]>::to_vec);
        return Ok((out, Shape::from(shape)));
    }
    // Cut along the longer output side, into enough slices that every worker gets one.
    let along_rows = m > n;
    let side = if along_rows { m } else { n };
    let workers = crate::team::size();
    let slices = if batch * m * n * k < SERIAL_WORK || batch >= workers {
        1
    } else {
        workers.div_ceil(batch).min(side.div_ceil(MIN_SLICE)).max(1)
    };
    let per = side.div_ceil(slices);
    let mut out: Vec<T> = Vec::with_capacity(total);
    let dst = Dst(out.as_mut_ptr());
    let task = |t: usize| {
        let (i, s) = (t / slices, t % slices);
        let lo = s * per;
        let len = per.min(side.saturating_sub(lo));
        if len == 0 {
            return;
        }
        let (rows, cols) = if along_rows { (len, n) } else { (m, len) };
        let (a_at, b_at, d_at) = if along_rows {
            (
                lhs.starts[i] + lo * lhs.rs,
                rhs.starts[i],
                i * m * n + lo * n,
            )
        } else {
            (lhs.starts[i], rhs.starts[i] + lo * rhs.cs, i * m * n + lo)
        };
        let d = dst;
        // SAFETY: `Operand::new` bounds every read; each task writes rows (or columns)
        // [lo, lo + len) of batch item i only, inside the `total` reserved elements.
        unsafe {
            gemm_raw(
                (rows, k, cols),
                d.0.add(d_at),
                n,
                a.as_ptr().add(a_at),
                (lhs.rs, lhs.cs),
                b.as_ptr().add(b_at),
                (rhs.rs, rhs.cs),
            )
        };
        if let Some(res) = res {
            // The block just written, still in cache: `rows` runs of `cols` elements, `n` apart.
            for r in 0..rows {
                let at = d_at + r * n;
                // SAFETY: inside this task's block, written by the gemm call above.
                let dst = unsafe { std::slice::from_raw_parts_mut(d.0.add(at), cols) };
                for (o, &x) in dst.iter_mut().zip(&res[at..at + cols]) {
                    *o += x;
                }
            }
        }
    };
    let tasks = batch * slices;
    crate::team::for_each(tasks, &task);
    // SAFETY: the tasks above wrote every one of the `total` elements (each batch item's
    // slices cover [0, side) along the cut, the whole other side, with read_dst off).
    unsafe { out.set_len(total) };
    Ok((out, Shape::from(shape)))
}

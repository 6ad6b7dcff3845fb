//! One transformer block as five graph nodes with a hand-written backward, for training
//! forwards without adapters (full finetuning) on CPU f32/f64.
//!
//! Built from candle ops, a block is ~30 graph nodes and ~45 edges, and candle's backward pays
//! for every edge with a zero-filled buffer and an add (`or_insert` + `add`): ~15% of a d1 step
//! at the bench shape, all on one thread. Here the block's forward runs on detached tensors with
//! exactly the kernels of [`Block::forward`] (so its output is bit for bit the same), keeps the
//! activations its backward needs, and enters the graph as a chain of five nodes that carry the
//! block's weights as arguments (candle custom ops take at most three):
//!
//! `t0 = Carry(x, attn_norm, ff_norm)`, `t1 = Carry(t0, q, k)`, `t2 = Carry(t1, v, attn_out)`,
//! `t3 = Carry(t2, ff_proj, up)`, `y = Last(t3, ff_out)`.
//!
//! The `t_i` are one-element tokens and only `y` is the block output, so ∂L/∂y reaches `Last`
//! first, complete; `Last` computes the gradients of the input and of all nine weights at once
//! (the formulas of the fused ops' own backwards, each residual sum done in the pass that
//! makes its last term) and leaves them in the chain's shared cell, where the other nodes pick
//! up theirs. Gradients stay ordinary candle gradients: a plain `loss.backward()` sees every
//! weight, nothing lives outside the graph; inside [`deferred::backward`] (what
//! [`super::remat::backward`] runs) the weights' gradients skip candle's accumulation.

use std::sync::{Arc, Mutex};

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::llada::{Block, Frame};
use crate::ops::matmul::{linear, linear_add, matmul, matmul_add};
use crate::ops::{deferred, fused};

/// The block's weights in `BLOCK_TENSORS` order: attn_norm, q, k, v, attn_out, ff_norm,
/// ff_proj, up, ff_out.
const N_WEIGHTS: usize = 9;

/// Whether [`forward`] serves this call: a training forward (something in it has a gradient),
/// the adapters off or absent, a CPU f32/f64 input.
pub(super) fn applies(block: &Block, x: &Tensor, frame: &Frame) -> bool {
    if !ENABLED.with(|e| e.get()) {
        return false;
    }
    let weights = block.tensors();
    let tracked = x.track_op() || weights.iter().any(|w| w.track_op());
    let adapters = frame.adapters && block.linears().iter().any(|l| l.lora.is_some());
    tracked && !adapters && fused::supported(x) && weights.iter().all(|w| w.dtype() == x.dtype())
}

thread_local! {
    static ENABLED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` with the fused block path on (the default) or off on this thread: `false` builds
/// every block from candle ops, the reference the tests compare the fused path with.
pub fn with_fused_blocks<R>(on: bool, f: impl FnOnce() -> R) -> R {
    let before = ENABLED.with(|e| e.replace(on));
    let out = f();
    ENABLED.with(|e| e.set(before));
    out
}

/// Activations of the forward that the backward reads (detached).
struct Saved {
    x: Tensor,
    h: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    probs: Tensor,
    attn: Tensor,
    x2: Tensor,
    m: Tensor,
    gate: Tensor,
    up: Tensor,
    s: Tensor,
    out: Tensor,
}

/// Gradients of the input and the weights (None where a weight has no gradient).
struct Grads {
    dx: Tensor,
    dw: [Option<Tensor>; N_WEIGHTS],
}

/// What the five nodes of one block share.
struct Chain {
    saved: Saved,
    w: [Tensor; N_WEIGHTS],
    need: [bool; N_WEIGHTS],
    cos: Tensor,
    sin: Tensor,
    dims: (usize, usize, usize, usize, usize),
    eps: f64,
    scale: f64,
    grads: Mutex<Option<Arc<Grads>>>,
}

/// The block over `x` [B, n, d] (the whole canvas, no cache) as five graph nodes; see the
/// module docs. Call only where [`applies`].
pub(super) fn forward(block: &Block, x: &Tensor, frame: &Frame) -> Result<Tensor> {
    let (b, l, d) = x.dims3()?;
    let (nh, nkv, hd) = (block.n_heads, block.n_kv_heads, block.head_dim);
    let weights = block.tensors();
    let w: [Tensor; N_WEIGHTS] = std::array::from_fn(|i| weights[i].detach());
    let (cos, sin) = fused::rope_tables_for(x, &frame.cos, &frame.sin)?;
    let xd = x.detach().reshape((b * l, d))?;
    // The arithmetic of `Block::forward_kv` without a cache, op for op.
    let h = fused::rms_norm(&xd, &w[0], block.eps)?;
    let heads = |t: Tensor, n: usize| t.reshape((b, l, n, hd))?.transpose(1, 2);
    let q = fused::rope(&heads(linear(&h, &w[1])?, nh)?, &cos, &sin)?;
    let k = fused::rope(&heads(linear(&h, &w[2])?, nkv)?, &cos, &sin)?;
    let v = heads(linear(&h, &w[3])?, nkv)?;
    let k = super::llada::repeat_kv(&k, nh / nkv)?.contiguous()?;
    let v = super::llada::repeat_kv(&v, nh / nkv)?.contiguous()?;
    let q = q.contiguous()?;
    let scale = 1.0 / (hd as f64).sqrt();
    let bias = frame.bias.as_ref().map(Tensor::detach);
    let (o, probs) = fused::attention_fwd(&q, &k, &v, scale, bias.as_ref())?;
    let attn = o.transpose(1, 2)?.reshape((b * l, d))?;
    let x2 = linear_add(&attn, &w[4], &xd)?;
    let m = fused::rms_norm(&x2, &w[5], block.eps)?;
    let gate = linear(&m, &w[6])?;
    let up = linear(&m, &w[7])?;
    let s = fused::swiglu(&gate, &up)?;
    // [B, n, d], the block's output shape: the last node hands it over as it is.
    let out = linear_add(&s, &w[8], &x2)?.reshape((b, l, d))?;
    let chain = Arc::new(Chain {
        need: std::array::from_fn(|i| weights[i].track_op()),
        w,
        cos,
        sin,
        dims: (b, l, nh, nkv, hd),
        eps: block.eps,
        scale,
        grads: Mutex::new(None),
        saved: Saved {
            x: xd,
            h,
            q,
            k,
            v,
            probs,
            attn,
            x2,
            m,
            gate,
            up,
            s,
            out,
        },
    });
    let node = |slots: [usize; 2]| Carry {
        chain: chain.clone(),
        slots,
        first: slots == [0, 5],
    };
    let t = x.apply_op3(weights[0], weights[5], node([0, 5]))?;
    let t = t.apply_op3(weights[1], weights[2], node([1, 2]))?;
    let t = t.apply_op3(weights[3], weights[4], node([3, 4]))?;
    let t = t.apply_op3(weights[6], weights[7], node([6, 7]))?;
    t.apply_op2(weights[8], Last(chain))
}

impl Chain {
    /// The gradients for the block-output gradient `g` [B·n, d].
    fn backward(&self, g: &Tensor) -> Result<Grads> {
        let (s, w) = (&self.saved, &self.w);
        let (b, l, nh, nkv, hd) = self.dims;
        let d = s.x.dim(1)?;
        let g = g.contiguous()?.reshape((b * l, d))?;
        let dw_of = |i: usize, dy: &Tensor, x: &Tensor| -> Result<Option<Tensor>> {
            // y = x Wᵀ: dW = dyᵀ x, [out, in].
            if self.need[i] {
                Ok(Some(matmul(&dy.t()?, x)?))
            } else {
                Ok(None)
            }
        };
        let mut dw: [Option<Tensor>; N_WEIGHTS] = Default::default();
        // out = x2 + s W8ᵀ
        dw[8] = dw_of(8, &g, &s.s)?;
        let ds = matmul(&g, &w[8])?;
        let (dgate, dup) = fused::swiglu_bwd(&s.gate, &s.up, &ds)?;
        dw[6] = dw_of(6, &dgate, &s.m)?;
        dw[7] = dw_of(7, &dup, &s.m)?;
        // The sums of the composite backward, each fused into the pass that makes its last
        // term (same additions, same order): dm = dgate W6 + dup W7, gx2 = g + dx2.
        let dm = matmul_add(&dup, &w[7], &matmul(&dgate, &w[6])?)?;
        let (gx2, dw5) = fused::rms_norm_bwd_add(&s.x2, &w[5], self.eps, &dm, Some(&g))?;
        dw[5] = self.need[5].then_some(dw5);
        // x2 = x + attn W4ᵀ
        dw[4] = dw_of(4, &gx2, &s.attn)?;
        let da = matmul(&gx2, &w[4])?;
        let do4 = da.reshape((b, l, nh, hd))?.transpose(1, 2)?;
        let (dq, dk, dv) = fused::attention_bwd(&s.q, &s.k, &s.v, &s.probs, self.scale, &do4)?;
        // The GQA repeat's backward sums the copies of each key/value head.
        let unrepeat = |t: Tensor| -> Result<Tensor> {
            if nh == nkv {
                return Ok(t);
            }
            t.reshape((b, nkv, nh / nkv, l, hd))?.sum(2)
        };
        let dq = fused::rope_bwd(&dq, &self.cos, &self.sin)?;
        let dk = fused::rope_bwd(&unrepeat(dk)?, &self.cos, &self.sin)?;
        let dv = unrepeat(dv)?;
        let rows = |t: Tensor, n: usize| t.transpose(1, 2)?.reshape((b * l, n * hd));
        let (dq, dk, dv) = (rows(dq, nh)?, rows(dk, nkv)?, rows(dv, nkv)?);
        dw[1] = dw_of(1, &dq, &s.h)?;
        dw[2] = dw_of(2, &dk, &s.h)?;
        dw[3] = dw_of(3, &dv, &s.h)?;
        let dh = matmul_add(&dv, &w[3], &matmul_add(&dk, &w[2], &matmul(&dq, &w[1])?)?)?;
        let (dx, dw0) = fused::rms_norm_bwd_add(&s.x, &w[0], self.eps, &dh, Some(&gx2))?;
        dw[0] = self.need[0].then_some(dw0);
        let dx = dx.reshape((b, l, d))?;
        Ok(Grads { dx, dw })
    }

    /// The gradients the last node left (it runs first in every backward pass).
    fn grads(&self) -> Result<Arc<Grads>> {
        match &*self
            .grads
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?
        {
            Some(g) => Ok(g.clone()),
            None => bail!("fused block: a gradient was asked for before the block's last node ran"),
        }
    }
}

/// The first and middle nodes: each carries two weights (`slots`) and returns a one-element
/// token that only links it to the next node (a block-sized link would cost candle's backward
/// a zero-filled buffer and an add per node); the first also carries the input, whose gradient
/// it hands on.
struct Carry {
    chain: Arc<Chain>,
    slots: [usize; 2],
    first: bool,
}

impl CustomOp3 for Carry {
    fn name(&self) -> &'static str {
        "fused-block-carry"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let token = match s1 {
            CpuStorage::F64(_) => CpuStorage::F64(vec![0.0]),
            _ => CpuStorage::F32(vec![0.0]),
        };
        Ok((token, Shape::from(1)))
    }

    fn bwd(
        &self,
        _: &Tensor,
        wa: &Tensor,
        wb: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.chain.grads()?;
        let [a, b] = self.slots;
        let first = if self.first {
            g.dx.clone()
        } else {
            grad.clone()
        };
        let dw = |w: &Tensor, i: usize| g.dw[i].clone().and_then(|d| deferred::hand(w, d));
        Ok((Some(first), dw(wa, a), dw(wb, b)))
    }
}

/// Last node: carries ff_out and computes every gradient of the block.
struct Last(Arc<Chain>);

impl CustomOp2 for Last {
    fn name(&self) -> &'static str {
        "fused-block-last"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fused::hand_over(&self.0.saved.out)
    }

    fn bwd(
        &self,
        token: &Tensor,
        w8: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = Arc::new(self.0.backward(grad)?);
        let d8 = g.dw[8].clone().and_then(|d| deferred::hand(w8, d));
        *self
            .0
            .grads
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))? = Some(g);
        Ok((Some(token.zeros_like()?), d8))
    }
}

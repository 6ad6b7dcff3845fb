//! Weight gradients handed to the gradient store directly instead of through candle's
//! accumulation.
//!
//! candle's backward adds every gradient an op returns into its store with `or_insert` + `add`:
//! a zero-filled buffer and an add for each weight, even when that weight gets exactly one
//! gradient. For a full finetune that is two extra passes over every parameter per step, on one
//! thread: ~8% of a d1 step at the bench shape with one thread, and more with two (the other
//! thread idles). PyTorch's `AccumulateGrad` instead takes the first gradient as it is.
//!
//! Inside [`backward`], ops that compute a variable's gradient themselves (the fused block, the
//! linear layer) give it to [`hand`], which keeps it aside, and return no gradient for that
//! argument to candle; when candle's pass is done the kept gradients go into the store, added
//! to any the store already has for the same variable (a weight used twice in one loss).
//! Outside [`backward`] (a plain `loss.backward()`), [`hand`] gives the gradient back and the op
//! returns it to candle as usual, so both ways of taking a backward see every gradient.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};

thread_local! {
    /// The gradients kept aside by the innermost open [`backward`] of this thread, if any.
    static SINK: RefCell<Option<Vec<(Tensor, Tensor)>>> = const { RefCell::new(None) };
}

/// Gives the gradient `grad` of op argument `arg` to the open [`backward`] of this thread if
/// there is one and `arg` is a variable (then returns `None`: the op reports no gradient for
/// it); otherwise returns `grad` for the op to report as usual. Only variables are kept aside:
/// any other tensor has a graph of its own that the gradient must still flow through.
pub fn hand(arg: &Tensor, grad: Tensor) -> Option<Tensor> {
    if !arg.is_variable() {
        return Some(grad);
    }
    SINK.with(|s| match &mut *s.borrow_mut() {
        Some(kept) => {
            kept.push((arg.clone(), grad));
            None
        }
        None => Some(grad),
    })
}

/// Closes the sink it opened (restoring the one around it) however the backward ends.
struct Open(Option<Option<Vec<(Tensor, Tensor)>>>);

impl Open {
    fn new() -> Open {
        Open(Some(SINK.with(|s| s.replace(Some(Vec::new())))))
    }

    fn close(mut self) -> Vec<(Tensor, Tensor)> {
        let outer = self.0.take().unwrap_or_default();
        SINK.with(|s| s.replace(outer)).unwrap_or_default()
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(outer) = self.0.take() {
            SINK.with(|s| s.replace(outer));
        }
    }
}

/// `loss.backward()` with the variables' gradients that ops [`hand`] over put into the store
/// directly (see the module docs). The store holds the same gradients a plain
/// `loss.backward()` gives, up to the order in which several gradients of one variable are
/// added.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    let open = Open::new();
    let mut grads = loss.backward()?;
    for (var, g) in open.close() {
        add_to(&mut grads, &var, g)?;
    }
    Ok(grads)
}

/// Adds `g` to the gradient `grads` holds for `var` (the one already there first), or stores
/// it if there is none.
pub fn add_to(grads: &mut GradStore, var: &Tensor, g: Tensor) -> Result<()> {
    let sum = match grads.remove(var) {
        Some(g0) => (g0 + g)?,
        None => g,
    };
    grads.insert(var, sum);
    Ok(())
}

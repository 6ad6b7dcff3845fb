//! Activation checkpointing per transformer block ("rematerialisation").
//!
//! A checkpointed forward ([`forward`], used by [`Llada::forward_hidden`] when the model is
//! built [`Llada::with_checkpointing`]) runs every block on a detached input and keeps only the
//! block inputs; the final hidden state becomes a fresh leaf variable, so the autograd graph of
//! the loss stops there. [`backward`] then runs the ordinary backward pass, reads the gradient
//! at each pending leaf, and walks the blocks in reverse: recompute block i from its stored input
//! (with the same dropout key), backpropagate the incoming gradient through it, add the
//! parameter gradients to the store and pass the input gradient down. Peak memory holds one
//! block's activations instead of all of them; the gradients are those of the plain graph.
//!
//! Pending forwards live in a per-thread list (scripts run on one thread). [`backward`] drains
//! it; forwards whose leaf gets no gradient are simply dropped. Callers that compute log-probs
//! without gradients (old/reference policies) should use a view without checkpointing or
//! [`discard_pending`].

use std::cell::RefCell;

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use super::llada::{Frame, Llada};
use crate::ops::{deferred, fused};

/// One checkpointed forward waiting for its backward.
struct Pending {
    model: Llada,
    frame: Frame,
    /// The embedding output with its graph (reaches `wte` under full finetuning).
    embedded: Tensor,
    /// Detached input of every block.
    inputs: Vec<Tensor>,
    /// Leaf standing for the last block's output.
    leaf: Var,
}

thread_local! {
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
}

/// Number of checkpointed forwards waiting for a backward on this thread.
pub fn pending() -> usize {
    PENDING.with(|p| p.borrow().len())
}

/// Drops every pending checkpointed forward of this thread (their activations are freed).
pub fn discard_pending() {
    PENDING.with(|p| p.borrow_mut().clear());
}

/// The checkpointed form of the block stack plus the final norm; see the module docs.
pub(crate) fn forward(model: &Llada, embedded: Tensor, frame: Frame) -> Result<Tensor> {
    let mut inputs = Vec::with_capacity(model.blocks().len());
    let mut x = embedded.detach();
    for (i, block) in model.blocks().iter().enumerate() {
        inputs.push(x.clone());
        x = block.forward(&x, &frame, i)?.detach();
    }
    let leaf = Var::from_tensor(&x)?;
    let (ln_f, eps) = model.final_norm();
    let hidden = fused::rms_norm(leaf.as_tensor(), ln_f, eps)?;
    PENDING.with(|p| {
        p.borrow_mut().push(Pending {
            model: model.clone(),
            frame,
            embedded,
            inputs,
            leaf,
        })
    });
    Ok(hidden)
}

/// Backpropagates from a one-element `loss` through ordinary and checkpointed graphs alike;
/// the returned store holds the gradient of every variable the loss depends on.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    let mut grads = deferred::backward(loss)?;
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for p in pending.into_iter().rev() {
        let Some(mut g) = grads.remove(p.leaf.as_tensor()) else {
            continue;
        };
        let vars = p.model.trainable_vars();
        for (i, block) in p.model.blocks().iter().enumerate().rev() {
            let input = Var::from_tensor(&p.inputs[i])?;
            let out = block.forward(input.as_tensor(), &p.frame, i)?;
            let local = deferred::backward(&(out * &g)?.sum_all()?)?;
            add_into(&mut grads, &local, &vars)?;
            g = match local.get(input.as_tensor()) {
                Some(gi) => gi.clone(),
                None => input.as_tensor().zeros_like()?,
            };
        }
        if vars.iter().any(|(n, _)| n == super::names::WTE) {
            let local = deferred::backward(&(p.embedded * &g)?.sum_all()?)?;
            add_into(&mut grads, &local, &vars)?;
        }
    }
    Ok(grads)
}

/// Adds the gradients `local` holds for `vars` into `grads`.
fn add_into(grads: &mut GradStore, local: &GradStore, vars: &[(String, Var)]) -> Result<()> {
    for (_, v) in vars {
        if let Some(gl) = local.get(v.as_tensor()) {
            deferred::add_to(grads, v.as_tensor(), gl.clone())?;
        }
    }
    Ok(())
}

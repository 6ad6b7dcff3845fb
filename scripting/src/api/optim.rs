//! Rhai bindings for `workbench_core::train::optim`.

use rhai::Engine;

/// Registers this area's types and functions.
pub fn register(_engine: &mut Engine) {}

//! workbench-scripting: the Rhai engine over workbench-core.
//!
//! Thin by design: every Rhai-visible function converts its arguments and delegates to one core
//! function. Each core area registers its own functions from its own module under `api/`
//! (tensors, models and tokenizers, files, ...), documented with doc comments that become
//! `docs/api.md` and the REPL's `:help`.

pub mod api;
pub mod engine;

pub use engine::{new_engine, run_file};

//! workbench-core: the compiled core of workbench — the LLaDA model, tokenizer and chat
//! template, and (in later modules) samplers, estimators, losses, optimizers and rewards.
//! It knows nothing of Rhai; the scripting crate is a thin layer over it.

pub mod cancel;
pub mod data;
pub mod device;
pub mod error_report;
pub mod fsio;
pub mod literal;
pub mod malloc;
pub mod memstat;
pub mod model;
pub mod ops;
pub mod plot;
pub mod sampler;
pub mod tasks;
pub mod team;
pub mod term;
pub mod threads;
pub mod tokenizer;
pub mod train;

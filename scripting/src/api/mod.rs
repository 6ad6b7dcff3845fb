//! The Rhai-visible API, one module per core area. Each module exposes `register(engine)`.

pub mod convert;
pub mod io;
pub mod model;
pub mod sampler;
pub mod tasks;
pub mod tensor;

use rhai::Engine;

/// Registers every area's types and functions on `engine`.
pub fn register_all(engine: &mut Engine) {
    tensor::register(engine);
    model::register(engine);
    io::register(engine);
    sampler::register(engine);
    tasks::register(engine);
}

//! The Rhai-visible API, one module per core area. Each module exposes `register(engine)`.

pub mod adapters;
pub mod convert;
pub mod estimators;
pub mod hints;
pub mod io;
pub mod losses;
pub mod model;
pub mod optim;
pub mod runlog;
pub mod sampler;
pub mod tasks;
pub mod tensor;

use rhai::Engine;

/// Registers every area's types and functions on `engine`.
pub fn register_all(engine: &mut Engine) {
    tensor::register(engine);
    model::register(engine);
    adapters::register(engine);
    io::register(engine);
    sampler::register(engine);
    tasks::register(engine);
    estimators::register(engine);
    hints::register(engine);
    losses::register(engine);
    optim::register(engine);
    runlog::register(engine);
}

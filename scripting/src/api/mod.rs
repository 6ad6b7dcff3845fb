//! The Rhai-visible API, one module per core area. Each module exposes `register(engine)`.

pub mod adapters;
pub mod checkpoint;
pub mod convert;
pub mod data;
pub mod estimators;
pub mod hints;
pub mod hygiene;
pub mod io;
pub mod losses;
pub mod model;
pub mod optim;
pub mod parity;
pub mod plot;
pub mod runlog;
pub mod sampler;
pub mod tasks;
pub mod tensor;
pub mod toy;

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
    data::register(engine);
    checkpoint::register(engine);
    hygiene::register(engine);
    toy::register(engine);
    plot::register(engine);
    parity::register(engine);
}

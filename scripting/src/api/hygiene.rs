//! `shipped_test_set` and `reference_training_data`: research hygiene for training scripts
//! (see `workbench_core::data::hygiene`).

use std::path::Path;

use rhai::plugin::*;
use rhai::{Dynamic, Engine, Map};
use workbench_core::data::hygiene;

use super::convert::{err, RResult};

#[export_module]
mod hygiene_api {
    use super::*;

    /// The shipped test set whose content equals the file at `path` (a copy or a rename is
    /// recognised): `#{file, task}`, or `()` when the file is not one.
    #[rhai_fn(return_raw)]
    pub fn shipped_test_set(path: &str) -> RResult<Dynamic> {
        let found = hygiene::shipped_test_set(Path::new(path))
            .map_err(|e| err(format!("shipped_test_set: {e:#}")))?;
        Ok(found.map_or(Dynamic::UNIT, |t| {
            let mut m = Map::new();
            m.insert("file".into(), t.file.into());
            m.insert("task".into(), t.task.into());
            m.into()
        }))
    }
    /// The public training data the reference trainers used for `task` ("" when unknown).
    pub fn reference_training_data(task: &str) -> String {
        hygiene::reference_training_data(task)
            .unwrap_or_default()
            .to_string()
    }
}

/// Registers `shipped_test_set` and `reference_training_data`.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(hygiene_api).into());
}

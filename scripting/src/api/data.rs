//! `DataLoader`: endless seeded batches over an array of rows, with the core `Batcher`'s order
//! (a fresh permutation per epoch) and a resumable cursor.

use std::sync::{Arc, Mutex, MutexGuard};

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::data::loader::IndexLoader;

use workbench_core::train::options::LoaderOptions;

use super::convert::{err, fail, options, to_script, RResult};

/// A loader's rows and the core loader of their indices.
pub struct LoaderState {
    /// The rows, handed out as they are.
    pub rows: Vec<Dynamic>,
    /// Batches of indices into `rows`, with the resumable cursor.
    pub loader: IndexLoader,
}

/// A `DataLoader` visible to scripts; copies share one position.
#[derive(Clone)]
pub struct ScriptLoader(pub Arc<Mutex<LoaderState>>);

impl ScriptLoader {
    /// Locks the loader.
    pub fn lock(&self) -> RResult<MutexGuard<'_, LoaderState>> {
        self.0
            .lock()
            .map_err(|_| err("data loader is unusable: an earlier call panicked"))
    }
}

#[export_module]
mod data_api {
    use super::*;

    /// An endless loader of batches over `rows` (any values, usually maps). Options:
    /// `batch_size` (required, ≥ 1), `shuffle` (default true: a fresh seeded permutation each
    /// epoch), `seed` (default 0), `drop_last` (default false: an epoch's short last batch is
    /// kept). Copies share one position; `save_checkpoint`/`resume` store and restore it.
    #[rhai_fn(return_raw)]
    pub fn data_loader(rows: Array, opts: Map) -> RResult<ScriptLoader> {
        let o: LoaderOptions = options("data_loader", opts)?;
        let loader = IndexLoader::new(rows.len(), o.batch_size, o.shuffle, o.drop_last, o.seed)
            .map_err(fail("data_loader"))?;
        Ok(ScriptLoader(Arc::new(Mutex::new(LoaderState {
            rows,
            loader,
        }))))
    }
    /// The next batch: an array of `batch_size` rows (fewer for an epoch's last batch unless
    /// `drop_last`); endless, a new epoch starts after the last row.
    #[rhai_fn(name = "next", return_raw)]
    pub fn next(l: &mut ScriptLoader) -> RResult<Array> {
        let mut l = l.lock()?;
        let idx = l.loader.next_indices().map_err(fail("data loader"))?;
        Ok(idx.iter().map(|&i| l.rows[i].clone()).collect())
    }
    /// The epoch of the next batch (from 0).
    #[rhai_fn(get = "epoch", pure, return_raw)]
    pub fn epoch(l: &mut ScriptLoader) -> RResult<i64> {
        Ok(l.lock()?.loader.cursor.epoch as i64)
    }
    /// The position of the next batch: `#{epoch, position, seed}`.
    #[rhai_fn(get = "cursor", pure, return_raw)]
    pub fn cursor(l: &mut ScriptLoader) -> RResult<Dynamic> {
        to_script(l.lock()?.loader.cursor)
    }
    /// Number of rows.
    #[rhai_fn(name = "len", pure, return_raw)]
    pub fn len(l: &mut ScriptLoader) -> RResult<i64> {
        Ok(l.lock()?.rows.len() as i64)
    }
}

/// Registers `DataLoader`.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptLoader>("DataLoader");
    engine.register_global_module(exported_module!(data_api).into());
}

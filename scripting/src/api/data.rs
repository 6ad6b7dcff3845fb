//! `DataLoader`: endless seeded batches over an array of rows, with the core `Batcher`'s order
//! (a fresh permutation per epoch) and a resumable cursor.

use std::sync::{Arc, Mutex, MutexGuard};

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::data::dataset::{BatchOptions, Cursor, Dataset, Example};

use workbench_core::train::options::LoaderOptions;

use super::convert::{err, options, script_err, to_script, RResult};

/// The state of a loader: the rows, a dataset of the same length driving the order, options
/// and the cursor of the next batch.
pub struct LoaderState {
    /// The script's rows, handed out as they are.
    pub rows: Vec<Dynamic>,
    /// A field-less dataset of `rows.len()` rows: the core batcher walks its indices.
    pub index: Dataset,
    /// Batch size, shuffling, short batches.
    pub options: BatchOptions,
    /// Where the next batch starts.
    pub cursor: Cursor,
}

impl LoaderState {
    /// The next batch of rows; advances the cursor.
    pub fn next_rows(&mut self) -> RResult<Array> {
        let mut b = self
            .index
            .batcher(self.options, self.cursor)
            .map_err(script_err)?;
        let batch = b.next_batch().ok_or_else(|| {
            err(format!(
                "data loader: no full batch of {} can be formed from {} rows with drop_last",
                self.options.batch_size,
                self.rows.len()
            ))
        })?;
        self.cursor = batch.next;
        Ok(batch
            .indices
            .iter()
            .map(|&i| self.rows[i].clone())
            .collect())
    }

    /// Replaces the cursor after checking it fits these rows.
    pub fn set_cursor(&mut self, cursor: Cursor) -> Result<(), String> {
        if cursor.position > self.rows.len() {
            return Err(format!(
                "the loader cursor is at row {} but this loader has {} rows",
                cursor.position,
                self.rows.len()
            ));
        }
        self.cursor = cursor;
        Ok(())
    }
}

/// A data loader shared by every copy of the script value (copies advance together).
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
        let batch_size = o.batch_size;
        if batch_size == 0 {
            return Err(err(
                "data_loader: option `batch_size` (at least 1) is required",
            ));
        }
        if rows.is_empty() {
            return Err(err("data_loader: no rows"));
        }
        let options = BatchOptions {
            batch_size,
            shuffle: o.shuffle,
            drop_last: o.drop_last,
            max_epochs: None,
        };
        if options.drop_last && rows.len() < batch_size {
            return Err(err(format!(
                "data_loader: drop_last with {} rows never forms a batch of {batch_size}",
                rows.len()
            )));
        }
        let index = Dataset::from_examples(
            "data_loader",
            (0..rows.len())
                .map(|_| Example::from_pairs(Vec::<(String, serde_json::Value)>::new()))
                .collect(),
        );
        Ok(ScriptLoader(Arc::new(Mutex::new(LoaderState {
            rows,
            index,
            options,
            cursor: Cursor::new(o.seed),
        }))))
    }
    /// The next batch: an array of `batch_size` rows (fewer for an epoch's last batch unless
    /// `drop_last`); endless, a new epoch starts after the last row.
    #[rhai_fn(name = "next", return_raw)]
    pub fn next(l: &mut ScriptLoader) -> RResult<Array> {
        l.lock()?.next_rows()
    }
    /// The epoch of the next batch (from 0).
    #[rhai_fn(get = "epoch", pure, return_raw)]
    pub fn epoch(l: &mut ScriptLoader) -> RResult<i64> {
        Ok(l.lock()?.cursor.epoch as i64)
    }
    /// The position of the next batch: `#{epoch, position, seed}`.
    #[rhai_fn(get = "cursor", pure, return_raw)]
    pub fn cursor(l: &mut ScriptLoader) -> RResult<Dynamic> {
        to_script(l.lock()?.cursor)
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

//! [`Example`], [`Dataset`] and resumable seeded batching ([`Batcher`], [`Cursor`]).
//!
//! Reference: TRL / d1's training loop, which shuffles the prompt set with a seed and walks it
//! epoch by epoch. Here the walk is a pure function of `(dataset, options, cursor)`: epoch `e`
//! uses the permutation drawn by `StdRng::seed_from_u64(mix(seed, e))`, batches never straddle
//! an epoch boundary, and the cursor after a batch points at the first row not yet handed out.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::DataError;

/// Where a row came from: the file (or `<memory>`) and its 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// File path as given to the loader, or `<memory>`.
    pub file: Arc<str>,
    /// 1-based line number (record start for CSV, element index for JSON arrays).
    pub line: usize,
}

impl Origin {
    /// An origin for rows built in code: file `<memory>`, line = `index + 1`.
    pub fn memory(index: usize) -> Self {
        Origin {
            file: Arc::from("<memory>"),
            line: index + 1,
        }
    }
}

/// One row of a dataset: string-keyed JSON values plus its [`Origin`] for error messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// The row's fields (JSONL rows keep their JSON types; CSV values are strings).
    pub fields: Map<String, Value>,
    /// Where the row came from.
    pub origin: Origin,
}

impl Example {
    /// Builds an example from fields and an origin.
    pub fn new(fields: Map<String, Value>, origin: Origin) -> Self {
        Example { fields, origin }
    }

    /// Builds an in-memory example from `(key, value)` pairs (origin `<memory>`, line 1).
    pub fn from_pairs<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Self {
        let fields = pairs.into_iter().map(|(k, v)| (k.into(), v)).collect();
        Example::new(fields, Origin::memory(0))
    }

    /// The value of `name`, if present and not `null`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).filter(|v| !v.is_null())
    }

    /// The value of `name`, or a [`DataError::MissingField`] naming file, line and field.
    pub fn field(&self, name: &str) -> Result<&Value, DataError> {
        self.get(name).ok_or_else(|| self.missing(name))
    }

    /// The first present field among `names` as `(name, value)`; the error names all of them.
    pub fn first_field<'a>(&'a self, names: &[&'a str]) -> Result<(&'a str, &'a Value), DataError> {
        for n in names {
            if let Some(v) = self.get(n) {
                return Ok((n, v));
            }
        }
        Err(self.missing(&names.join("` or `")))
    }

    /// The field `name` as text: strings as-is, numbers and booleans in their JSON spelling
    /// (so `27.0` stays `"27.0"`); arrays and objects are an error.
    pub fn text(&self, name: &str) -> Result<String, DataError> {
        let v = self.field(name)?;
        value_to_text(v).ok_or_else(|| self.bad(name, "expected a string or a number"))
    }

    /// Like [`Example::text`] for the first present field among `names`.
    pub fn first_text(&self, names: &[&str]) -> Result<String, DataError> {
        let (n, v) = self.first_field(names)?;
        value_to_text(v).ok_or_else(|| self.bad(n, "expected a string or a number"))
    }

    /// A [`DataError::MissingField`] for this row.
    pub fn missing(&self, field: &str) -> DataError {
        DataError::MissingField {
            path: self.origin.file.as_ref().into(),
            line: self.origin.line,
            field: field.to_string(),
        }
    }

    /// A [`DataError::BadField`] for this row.
    pub fn bad(&self, field: &str, message: impl Into<String>) -> DataError {
        DataError::BadField {
            path: self.origin.file.as_ref().into(),
            line: self.origin.line,
            field: field.to_string(),
            message: message.into(),
        }
    }
}

fn value_to_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An in-memory list of [`Example`]s with a name (the file stem when loaded from a file).
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    name: String,
    examples: Vec<Example>,
}

impl Dataset {
    /// Wraps a list of examples.
    pub fn from_examples(name: impl Into<String>, examples: Vec<Example>) -> Self {
        Dataset {
            name: name.into(),
            examples,
        }
    }

    /// Builds a dataset from JSON objects (non-objects are an error naming their index).
    pub fn from_values(name: impl Into<String>, rows: Vec<Value>) -> Result<Self, DataError> {
        let mut examples = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            match row {
                Value::Object(fields) => examples.push(Example::new(fields, Origin::memory(i))),
                _ => {
                    return Err(DataError::Parse {
                        path: "<memory>".into(),
                        line: i + 1,
                        message: "row is not a JSON object".into(),
                    })
                }
            }
        }
        Ok(Dataset::from_examples(name, examples))
    }

    /// Loads a `.jsonl` / `.json` / `.csv` file (see [`super::load_file`]).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, DataError> {
        super::load_file(path)
    }

    /// The dataset's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Row `i`, if in range.
    pub fn get(&self, i: usize) -> Option<&Example> {
        self.examples.get(i)
    }

    /// All rows in file order.
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// Iterates the rows in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Example> {
        self.examples.iter()
    }

    /// Keeps the rows for which `keep` is true (order preserved).
    pub fn filter(mut self, mut keep: impl FnMut(&Example) -> bool) -> Self {
        self.examples.retain(|e| keep(e));
        self
    }

    /// Keeps the first `n` rows.
    pub fn take(mut self, n: usize) -> Self {
        self.examples.truncate(n);
        self
    }

    /// Splits off the last `n` rows (d1 holds out the last 500 shuffled rows of Countdown and
    /// Sudoku for evaluation): returns `(first len−n rows, last n rows)`.
    pub fn split_last(mut self, n: usize) -> (Dataset, Dataset) {
        let at = self.examples.len().saturating_sub(n);
        let tail = self.examples.split_off(at);
        let name = self.name.clone();
        (self, Dataset::from_examples(format!("{name}-tail"), tail))
    }

    /// A new dataset with the rows permuted by `seed` (the epoch-0 order of a [`Batcher`]
    /// with this seed).
    pub fn shuffled(&self, seed: u64) -> Dataset {
        let order = self.epoch_order(seed, 0, true);
        let examples = order
            .iter()
            .filter_map(|&i| self.examples.get(i).cloned())
            .collect();
        Dataset::from_examples(self.name.clone(), examples)
    }

    /// The row order of `epoch`: a seeded permutation when `shuffle`, else `0..len`.
    pub fn epoch_order(&self, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.examples.len()).collect();
        if shuffle {
            let mut rng = StdRng::seed_from_u64(mix_seed(seed, epoch));
            order.shuffle(&mut rng);
        }
        order
    }

    /// A [`Batcher`] starting at `cursor` (use `Cursor::new(seed)` for a fresh start).
    pub fn batcher(&self, options: BatchOptions, cursor: Cursor) -> Result<Batcher<'_>, DataError> {
        Batcher::new(self, options, cursor)
    }
}

/// SplitMix64-style mixing of a seed and an epoch into one `u64` seed.
fn mix_seed(seed: u64, epoch: u64) -> u64 {
    let mut z = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Position in a seeded walk over a dataset: the next batch starts at `position` in the order
/// of `epoch`. Serializable, so it can be stored with a checkpoint and restored exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cursor {
    /// Epoch number, from 0.
    pub epoch: u64,
    /// Index into the epoch's order of the next row to hand out.
    pub position: usize,
    /// Shuffle seed (each epoch's permutation is derived from it and the epoch).
    pub seed: u64,
}

impl Cursor {
    /// The start of epoch 0 with `seed`.
    pub fn new(seed: u64) -> Self {
        Cursor {
            epoch: 0,
            position: 0,
            seed,
        }
    }
}

/// Options of a [`Batcher`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOptions {
    /// Rows per batch (≥ 1).
    pub batch_size: usize,
    /// Draw a fresh seeded permutation each epoch (else file order).
    pub shuffle: bool,
    /// Skip an epoch's last, short batch.
    pub drop_last: bool,
    /// Stop after this many epochs (`None`: never stop).
    pub max_epochs: Option<u64>,
}

impl BatchOptions {
    /// `batch_size` rows, shuffled, short batches kept, endless.
    pub fn new(batch_size: usize) -> Self {
        BatchOptions {
            batch_size,
            shuffle: true,
            drop_last: false,
            max_epochs: None,
        }
    }
}

/// One batch: the rows, their indices in the dataset, and the cursors around it.
#[derive(Clone, Debug)]
pub struct Batch<'a> {
    /// The rows.
    pub examples: Vec<&'a Example>,
    /// Their indices in the dataset (file order).
    pub indices: Vec<usize>,
    /// Where this batch started.
    pub start: Cursor,
    /// Where the next batch starts (save this to resume after this batch).
    pub next: Cursor,
}

/// Hands out batches epoch after epoch from a [`Cursor`]; see the module docs for the order.
#[derive(Debug)]
pub struct Batcher<'a> {
    dataset: &'a Dataset,
    options: BatchOptions,
    cursor: Cursor,
    order: Vec<usize>,
    order_epoch: Option<u64>,
}

impl<'a> Batcher<'a> {
    /// A batcher over `dataset` resuming at `cursor`.
    pub fn new(
        dataset: &'a Dataset,
        options: BatchOptions,
        cursor: Cursor,
    ) -> Result<Self, DataError> {
        if options.batch_size == 0 {
            return Err(DataError::InvalidOption(
                "batch_size must be at least 1".into(),
            ));
        }
        if cursor.position > dataset.len() {
            return Err(DataError::InvalidOption(format!(
                "cursor position {} is past the dataset's {} rows",
                cursor.position,
                dataset.len()
            )));
        }
        Ok(Batcher {
            dataset,
            options,
            cursor,
            order: Vec::new(),
            order_epoch: None,
        })
    }

    /// The cursor of the next batch (save it to resume).
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The next batch, or `None` when `max_epochs` is reached or the dataset is empty.
    pub fn next_batch(&mut self) -> Option<Batch<'a>> {
        let n = self.dataset.len();
        if n == 0 {
            return None;
        }
        loop {
            if let Some(max) = self.options.max_epochs {
                if self.cursor.epoch >= max {
                    return None;
                }
            }
            let remaining = n - self.cursor.position.min(n);
            let take = remaining.min(self.options.batch_size);
            let short = take < self.options.batch_size;
            if take == 0 || (short && self.options.drop_last) {
                self.cursor = Cursor {
                    epoch: self.cursor.epoch.saturating_add(1),
                    position: 0,
                    seed: self.cursor.seed,
                };
                if n < self.options.batch_size && self.options.drop_last {
                    return None; // no full batch can ever be formed
                }
                continue;
            }
            if self.order_epoch != Some(self.cursor.epoch) {
                self.order = self.dataset.epoch_order(
                    self.cursor.seed,
                    self.cursor.epoch,
                    self.options.shuffle,
                );
                self.order_epoch = Some(self.cursor.epoch);
            }
            let start = self.cursor;
            let indices: Vec<usize> = self.order[start.position..start.position + take].to_vec();
            let examples = indices
                .iter()
                .filter_map(|&i| self.dataset.get(i))
                .collect();
            let mut next = Cursor {
                position: start.position + take,
                ..start
            };
            if next.position >= n {
                next = Cursor {
                    epoch: start.epoch.saturating_add(1),
                    position: 0,
                    seed: start.seed,
                };
            }
            self.cursor = next;
            return Some(Batch {
                examples,
                indices,
                start,
                next,
            });
        }
    }
}

impl<'a> Iterator for Batcher<'a> {
    type Item = Batch<'a>;

    fn next(&mut self) -> Option<Batch<'a>> {
        self.next_batch()
    }
}

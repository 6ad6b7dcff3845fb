//! [`IndexLoader`]: endless seeded batches of row indices over `len` rows in the [`Batcher`]'s
//! order (a fresh permutation per epoch), with a resumable [`Cursor`] — what a script's
//! `data_loader(rows, opts)` hands out, the rows themselves staying with the caller.

use anyhow::{bail, Result};

use super::dataset::{BatchOptions, Batcher, Cursor, Dataset, Example};

/// Batches of indices into `len` rows; the cursor is saved and restored by checkpoints.
#[derive(Debug, Clone)]
pub struct IndexLoader {
    index: Dataset,
    len: usize,
    /// Batch size, shuffling and `drop_last`.
    pub options: BatchOptions,
    /// Where the next batch starts.
    pub cursor: Cursor,
}

impl IndexLoader {
    /// A loader over `len` rows. A batch size of 0, no rows, or `drop_last` with fewer rows
    /// than a batch (no batch could ever form) is an error naming the option.
    pub fn new(
        len: usize,
        batch_size: usize,
        shuffle: bool,
        drop_last: bool,
        seed: u64,
    ) -> Result<IndexLoader> {
        if batch_size == 0 {
            bail!("option `batch_size` (at least 1) is required");
        }
        if len == 0 {
            bail!("no rows");
        }
        if drop_last && len < batch_size {
            bail!("drop_last with {len} rows never forms a batch of {batch_size}");
        }
        let index = Dataset::from_examples(
            "data_loader",
            (0..len)
                .map(|_| Example::from_pairs(Vec::<(String, serde_json::Value)>::new()))
                .collect(),
        );
        Ok(IndexLoader {
            index,
            len,
            options: BatchOptions {
                batch_size,
                shuffle,
                drop_last,
                max_epochs: None,
            },
            cursor: Cursor::new(seed),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows (never: [`IndexLoader::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The indices of the next batch; the cursor moves past it.
    pub fn next_indices(&mut self) -> Result<Vec<usize>> {
        let mut b = Batcher::new(&self.index, self.options, self.cursor)?;
        let Some(batch) = b.next_batch() else {
            bail!(
                "no full batch of {} can be formed from {} rows with drop_last",
                self.options.batch_size,
                self.len
            );
        };
        self.cursor = batch.next;
        Ok(batch.indices)
    }
}

//! Datasets: loading JSONL / CSV files into rows, and iterating them in seeded, resumable order.
//!
//! Reference: the d1 / TRL training loop (`datasets.Dataset.shuffle(seed)` then batches of
//! prompts, epoch after epoch). We keep the same ideas — rows are string-keyed JSON maps, a
//! permutation per epoch is drawn from a seed — but make the position explicit: a [`Cursor`]
//! `{ epoch, position, seed }` fully determines what comes next, so saving it with a checkpoint
//! and restoring it resumes on exactly the same next batch.
//!
//! - [`load`]: [`load_jsonl`], [`load_csv`] (header row), [`load_file`] (by extension). Every
//!   error names the file, the line and, for a missing field, the field ([`DataError`]).
//! - [`dataset`]: [`Example`] (one row plus where it came from), [`Dataset`] (filtering,
//!   splitting, per-epoch seeded order) and [`Batcher`] / [`Cursor`] (batches across epochs).
//!
//! Shuffling uses `rand::rngs::StdRng` seeded with a mix of the cursor's seed and the epoch; the
//! order is stable for a given `rand` version (pinned in Cargo.lock).

pub mod dataset;
pub mod hygiene;
pub mod load;
pub mod loader;

pub use dataset::{Batch, BatchOptions, Batcher, Cursor, Dataset, Example, Origin};
pub use load::{load_csv, load_file, load_jsonl, require_fields};

use std::path::PathBuf;

/// Everything that can go wrong while loading or reading a dataset. Each variant names the
/// file and (1-based) line it concerns, so a user can open the file at the right place.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line (JSONL) or record (CSV) is malformed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number (for CSV, where the record starts).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A row lacks a field that the caller (or a task) requires.
    #[error("{path}:{line}: missing field `{field}`")]
    MissingField {
        /// The file (or `<memory>` for rows built in code).
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field name.
        field: String,
    },
    /// A field is present but has the wrong type or an unusable value.
    #[error("{path}:{line}: field `{field}`: {message}")]
    BadField {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field name.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The file extension is not one this module reads.
    #[error("{path}: unsupported data file type (expected .jsonl, .json or .csv)")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// A batching option is invalid (for example a batch size of zero).
    #[error("invalid batching option: {0}")]
    InvalidOption(String),
}

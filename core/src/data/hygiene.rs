//! Research hygiene: recognising the shipped test sets (`data/*_test.*`) by content, so a
//! training script can refuse to train on one unless told to (`allow_test_data`), and name the
//! public training sets the reference trainers used where none ships.

use std::path::Path;

use anyhow::{Context, Result};

/// A shipped evaluation file: its name under `data/`, task, and content hash ([`content_hash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestSet {
    /// File name under `data/`.
    pub file: &'static str,
    /// The task it evaluates (the name `task(...)` takes).
    pub task: &'static str,
    /// [`content_hash`] of the file's bytes.
    pub hash: u64,
}

/// Every shipped test set (tests/… check each hash against the file in `data/`).
pub const TEST_SETS: &[TestSet] = &[
    TestSet {
        file: "gsm8k_test.jsonl",
        task: "gsm8k",
        hash: 0x99a4_3c15_af04_88c0,
    },
    TestSet {
        file: "math500_test.jsonl",
        task: "math500",
        hash: 0x46cd_bb85_0051_4b2b,
    },
    TestSet {
        file: "amc23_test.jsonl",
        task: "amc",
        hash: 0xcd2c_a17c_2ab0_9168,
    },
    TestSet {
        file: "aime24_test.jsonl",
        task: "aime",
        hash: 0xc615_ecd6_5c21_0fc2,
    },
    TestSet {
        file: "countdown_cd3_test.jsonl",
        task: "countdown",
        hash: 0xd065_5ca2_8b3b_d111,
    },
    TestSet {
        file: "sudoku_4x4_test.csv",
        task: "sudoku",
        hash: 0x9e16_cd9c_e521_ba7a,
    },
];

/// The 64-bit FNV-1a hash of `bytes` (the `file_hash` of scripts).
pub fn content_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shipped test set whose content equals the file at `path`, if any (a renamed or copied
/// test file is recognised; a subset or an edited copy is not).
pub fn shipped_test_set(path: &Path) -> Result<Option<TestSet>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let h = content_hash(&bytes);
    Ok(TEST_SETS.iter().copied().find(|t| t.hash == h))
}

/// The public training data the reference trainers used for `task` (for the message of a
/// script that needs `--set data=...` because no training split ships), or `None` if unknown.
pub fn reference_training_data(task: &str) -> Option<&'static str> {
    Some(match task.split(':').next().unwrap_or(task) {
        "gsm8k" => "the GSM8K train split (openai/gsm8k `main`, 7,473 problems; d1, IGPO)",
        "math500" | "math" => {
            "the MATH train split (Hendrycks et al., 7,500 problems; d1 trains on it and evaluates on MATH-500)"
        }
        "countdown" => {
            "the Countdown-Tasks-3to4 problems of TinyZero (Jiayi-Pan/Countdown-Tasks-3to4, 3-number subset; d1)"
        }
        "sudoku" => "d1's 4×4 Sudoku training puzzles (or generated ones: sudoku_puzzles)",
        _ => return None,
    })
}

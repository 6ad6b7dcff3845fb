//! A 4×4 Sudoku solver (solution counting up to a limit) and a seeded puzzle generator.
//!
//! Reference: the d1 Sudoku data (`4x4_sudoku_unique_puzzles.csv`: 16-digit row-major strings,
//! `0` = blank, every puzzle with a unique solution). Grids are filled by randomised
//! backtracking; blanks are then opened one cell at a time in a random order, keeping a removal
//! only while the puzzle still has exactly one solution ([`count_solutions`] with limit 2).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::data::{Example, Origin};
use crate::tasks::TaskError;

/// A 4×4 grid, row-major, 0 = blank.
pub type Grid = [u8; 16];

fn box_of(i: usize) -> usize {
    (i / 8) * 2 + (i % 4) / 2
}

/// Whether `v` can go in cell `i` of `g` (row, column and 2×2 box free of `v`).
fn allowed(g: &Grid, i: usize, v: u8) -> bool {
    let (r, c, b) = (i / 4, i % 4, box_of(i));
    (0..16).all(|j| j == i || g[j] != v || (j / 4 != r && j % 4 != c && box_of(j) != b))
}

/// Whether a full grid is a valid solution.
pub fn is_valid_solution(g: &Grid) -> bool {
    g.iter().all(|&v| (1..=4).contains(&v)) && (0..16).all(|i| allowed(g, i, g[i]))
}

/// Counts the solutions of `g`, stopping at `limit`.
pub fn count_solutions(g: &Grid, limit: usize) -> usize {
    for i in 0..16 {
        if g[i] != 0 && !allowed(g, i, g[i]) {
            return 0;
        }
    }
    let mut g = *g;
    let mut count = 0;
    search(&mut g, limit, &mut count, &mut None);
    count
}

/// Solves `g`, returning the first solution found.
pub fn solve(g: &Grid) -> Option<Grid> {
    for i in 0..16 {
        if g[i] != 0 && !allowed(g, i, g[i]) {
            return None;
        }
    }
    let mut g = *g;
    let mut count = 0;
    let mut first = None;
    search(&mut g, 1, &mut count, &mut first);
    first
}

fn search(g: &mut Grid, limit: usize, count: &mut usize, first: &mut Option<Grid>) {
    if *count >= limit {
        return;
    }
    let Some(i) = g.iter().position(|&v| v == 0) else {
        *count += 1;
        if first.is_none() {
            *first = Some(*g);
        }
        return;
    };
    for v in 1..=4u8 {
        if allowed(g, i, v) {
            g[i] = v;
            search(g, limit, count, first);
            g[i] = 0;
            if *count >= limit {
                return;
            }
        }
    }
}

fn fill_random(g: &mut Grid, rng: &mut StdRng) -> bool {
    let Some(i) = g.iter().position(|&v| v == 0) else {
        return true;
    };
    let mut vals = [1u8, 2, 3, 4];
    vals.shuffle(rng);
    for v in vals {
        if allowed(g, i, v) {
            g[i] = v;
            if fill_random(g, rng) {
                return true;
            }
            g[i] = 0;
        }
    }
    false
}

/// Parses a 16-character digit string (`0`–`4`) into a grid.
pub fn parse_grid(s: &str) -> Option<Grid> {
    let mut g = [0u8; 16];
    let mut n = 0;
    for c in s.chars() {
        let v = c.to_digit(10)?;
        if v > 4 || n >= 16 {
            return None;
        }
        g[n] = v as u8;
        n += 1;
    }
    (n == 16).then_some(g)
}

/// Writes a grid as a 16-digit string.
pub fn grid_string(g: &Grid) -> String {
    g.iter().map(|&v| char::from(b'0' + v.min(9))).collect()
}

/// A generated puzzle (same schema as d1's CSV: `Puzzle`, `Solution`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SudokuPuzzle {
    /// 16 digits, `0` = blank.
    pub puzzle: String,
    /// 16 digits, the unique solution.
    pub solution: String,
}

impl SudokuPuzzle {
    /// The row in the shipped CSV's schema: `{"Puzzle": …, "Solution": …}`.
    pub fn to_json(&self) -> Value {
        json!({ "Puzzle": self.puzzle, "Solution": self.solution })
    }

    /// [`SudokuPuzzle::to_json`] as an in-memory [`Example`].
    pub fn to_example(&self, index: usize) -> Example {
        let fields = match self.to_json() {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        Example::new(fields, Origin::memory(index))
    }
}

/// The most blanks a 4×4 puzzle with a unique solution can have (4 clues minimum).
pub const MAX_BLANKS: usize = 12;

/// Generates `n` puzzles with exactly `blanks` blank cells and a unique solution, from `seed`.
pub fn generate(seed: u64, n: usize, blanks: usize) -> Result<Vec<SudokuPuzzle>, TaskError> {
    if blanks > MAX_BLANKS {
        return Err(TaskError::InvalidOption(format!(
            "blanks must be at most {MAX_BLANKS} for a unique 4x4 solution"
        )));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0usize;
    while out.len() < n {
        attempts += 1;
        if attempts > 1000usize.saturating_mul(n.max(1)) {
            return Err(TaskError::InvalidOption(format!(
                "could not reach {blanks} blanks with a unique solution"
            )));
        }
        let mut full = [0u8; 16];
        if !fill_random(&mut full, &mut rng) {
            continue;
        }
        let mut puzzle = full;
        let mut order: Vec<usize> = (0..16).collect();
        order.shuffle(&mut rng);
        let mut opened = 0;
        for &i in &order {
            if opened == blanks {
                break;
            }
            let keep = puzzle[i];
            puzzle[i] = 0;
            if count_solutions(&puzzle, 2) == 1 {
                opened += 1;
            } else {
                puzzle[i] = keep;
            }
        }
        if opened == blanks {
            out.push(SudokuPuzzle {
                puzzle: grid_string(&puzzle),
                solution: grid_string(&full),
            });
        }
    }
    Ok(out)
}

//! 4×4 Sudoku: 16-character row-major strings, `0` = blank.
//!
//! Reference: d1 `diffu-grpo/data_utils.py::get_sudoku_questions` (prompt),
//! `diffu-grpo/reward_func.py::sudoku_reward_func` (the digits of the last `<answer>` block,
//! padded with `0` / truncated to 16; reward = fraction of the originally blank cells that match
//! the solution) and `eval/parse_and_get_acc.py::parse_sudoku_answers` (a cascade of five
//! patterns, see [`eval_solution_string`]; accuracy = correct blanks / all blanks). Data fields:
//! `Puzzle`/`puzzle` and `Solution`/`solution`.

pub mod solver;

pub use solver::{count_solutions, generate, solve, SudokuPuzzle, MAX_BLANKS};

use super::pytext::{is_py_decimal, is_py_digit, is_py_space, is_py_word, py_strip};
use super::{clean, d1, prompts, Evaluation, Prompt, PromptStyle, Reward, Task, TaskError};
use crate::data::Example;

/// d1 `extract_answer_sudoku`: the `isdigit()` characters of the last `<answer>` block
/// (stripped); `None` without a block.
pub fn extract_training_answer(text: &str) -> Option<String> {
    d1::last_answer_block(text).map(|s| s.chars().filter(|&c| is_py_digit(c)).collect())
}

/// The fraction of `puzzle`'s blanks (`'0'`) whose character in `candidate` (padded with `0` /
/// truncated to 16 characters) equals the solution's. 0 when there are no blanks or the
/// candidate is empty; also returns the number of correct cells and of blanks.
pub fn cell_accuracy(candidate: &str, solution: &str, puzzle: &str) -> (f64, usize, usize) {
    let puzzle: Vec<char> = puzzle.chars().collect();
    let solution: Vec<char> = solution.chars().collect();
    let blanks: Vec<usize> = (0..16).filter(|&i| puzzle.get(i) == Some(&'0')).collect();
    if candidate.is_empty() || blanks.is_empty() {
        return (0.0, 0, blanks.len());
    }
    let mut cand: Vec<char> = candidate.chars().take(16).collect();
    cand.resize(16, '0');
    let correct = blanks
        .iter()
        .filter(|&&i| solution.get(i).is_some_and(|s| *s == cand[i]))
        .count();
    (correct as f64 / blanks.len() as f64, correct, blanks.len())
}

/// d1 `sudoku_reward_func` for one completion.
pub fn sudoku_reward(completion: &str, puzzle: &str, solution: &str) -> f64 {
    match extract_training_answer(completion) {
        Some(ans) => cell_accuracy(&ans, solution, puzzle).0,
        None => 0.0,
    }
}

const TERMINATORS: [&str; 2] = ["<|eot_id|>", "<|endoftext|>"];

fn earliest(text: &str, from: usize, pats: &[&str]) -> Option<usize> {
    let tail = text.get(from..)?;
    pats.iter()
        .filter_map(|p| tail.find(p))
        .min()
        .map(|i| from + i)
}

/// Pattern 1: `<answer>.*?```\s*([\d\s]+)```` (DOTALL).
fn pattern_fenced(text: &str) -> Option<String> {
    let a = text.find("<answer>")? + "<answer>".len();
    let mut from = a;
    while let Some(rel) = text.get(from..).and_then(|t| t.find("```")) {
        let t = from + rel;
        let body_start = t + 3;
        let body = &text[body_start..];
        let run_len: usize = body
            .chars()
            .take_while(|&c| is_py_decimal(c) || is_py_space(c))
            .map(char::len_utf8)
            .sum();
        if run_len > 0 && body[run_len..].starts_with("```") {
            // first lazy match found; its group strips to "" when the run is all whitespace
            return Some(py_strip(&body[..run_len]).to_string());
        }
        from = t + 1;
    }
    None
}

/// Pattern 2: `<answer>(.*?)(?:<\|eot_id\|>|<\|endoftext\|>|</answer>)` (DOTALL).
fn pattern_answer_block(text: &str) -> Option<String> {
    let a = text.find("<answer>")? + "<answer>".len();
    let end = earliest(text, a, &[TERMINATORS[0], TERMINATORS[1], "</answer>"])?;
    Some(py_strip(&text[a..end]).to_string())
}

/// Pattern 3: `</answer>\s*(.*?)(?:<\|eot_id\|>|<\|endoftext\|>|$)` (DOTALL).
fn pattern_after_answer(text: &str) -> Option<String> {
    let p = text.find("</answer>")? + "</answer>".len();
    let rest = &text[p..];
    let j = p + (rest.len() - rest.trim_start_matches(is_py_space).len());
    let mut q = text.len();
    if text.ends_with('\n') && text.len() > j {
        q = text.len() - 1;
    }
    if let Some(t) = earliest(text, j, &TERMINATORS) {
        q = q.min(t);
    }
    Some(py_strip(&text[j..q]).to_string())
}

/// Pattern 4: `.*?(\d{16})\s*</answer>` (DOTALL) — the first 16 digits followed by optional
/// whitespace and `</answer>`.
fn pattern_digits_before_close(chars: &[(usize, char)], text: &str) -> Option<String> {
    let n = chars.len();
    let mut run = 0usize; // length of the digit run ending at i (inclusive)
    for i in 0..n {
        if is_py_decimal(chars[i].1) {
            run += 1;
        } else {
            run = 0;
            continue;
        }
        if run < 16 {
            continue;
        }
        // digits chars[i-15..=i]; the next char must not be a digit for \s*</answer> to follow
        let mut j = i + 1;
        while j < n && is_py_space(chars[j].1) {
            j += 1;
        }
        let byte = if j < n { chars[j].0 } else { text.len() };
        if text[byte..].starts_with("</answer>") {
            let s = chars[i + 1 - 16].0;
            let e = if i + 1 < n {
                chars[i + 1].0
            } else {
                text.len()
            };
            return Some(text[s..e].to_string());
        }
    }
    None
}

/// Pattern 5: `\b(\d{16})\b`.
fn pattern_bare_digits(chars: &[(usize, char)], text: &str) -> Option<String> {
    let n = chars.len();
    let mut run = 0usize;
    for i in 0..n {
        if is_py_decimal(chars[i].1) {
            run += 1;
        } else {
            run = 0;
            continue;
        }
        if run < 16 {
            continue;
        }
        let start = i + 1 - 16;
        let left_ok = start == 0 || !is_py_word(chars[start - 1].1);
        let right_ok = i + 1 == n || !is_py_word(chars[i + 1].1);
        if left_ok && right_ok {
            let s = chars[start].0;
            let e = if i + 1 < n {
                chars[i + 1].0
            } else {
                text.len()
            };
            return Some(text[s..e].to_string());
        }
    }
    None
}

/// d1's evaluation-time solution string: the first of five patterns whose group is non-empty
/// after stripping (fenced digits in the answer, the first `<answer>` block, the text after
/// `</answer>`, 16 digits before `</answer>`, 16 bare digits), with all whitespace removed.
pub fn eval_solution_string(text: &str) -> String {
    let mut solution = String::new();
    let found = [
        pattern_fenced(text),
        pattern_answer_block(text),
        pattern_after_answer(text),
    ];
    for g in found.into_iter().flatten() {
        if !g.is_empty() {
            solution = g;
            break;
        }
    }
    if solution.is_empty() {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        for g in [
            pattern_digits_before_close(&chars, text),
            pattern_bare_digits(&chars, text),
        ]
        .into_iter()
        .flatten()
        {
            let g = py_strip(&g).to_string();
            if !g.is_empty() {
                solution = g;
                break;
            }
        }
    }
    solution.chars().filter(|&c| !is_py_space(c)).collect()
}

/// The 4×4 Sudoku task.
#[derive(Clone, Debug, Default)]
pub struct Sudoku;

impl Sudoku {
    /// The Sudoku task.
    pub fn new() -> Self {
        Sudoku
    }

    fn fields(example: &Example) -> Result<(String, String), TaskError> {
        let puzzle = example.first_text(&["Puzzle", "puzzle"])?;
        let solution = example.first_text(&["Solution", "solution"])?;
        if puzzle.chars().count() != 16 || !puzzle.chars().all(|c| c.is_ascii_digit()) {
            let name = if example.get("Puzzle").is_some() {
                "Puzzle"
            } else {
                "puzzle"
            };
            return Err(example.bad(name, "expected 16 digits").into());
        }
        if solution.chars().count() != 16 || !solution.chars().all(|c| c.is_ascii_digit()) {
            let name = if example.get("Solution").is_some() {
                "Solution"
            } else {
                "solution"
            };
            return Err(example.bad(name, "expected 16 digits").into());
        }
        Ok((puzzle, solution))
    }
}

impl Task for Sudoku {
    fn name(&self) -> &str {
        "sudoku"
    }

    fn prompt(&self, example: &Example, style: PromptStyle) -> Result<Prompt, TaskError> {
        let (puzzle, _) = Self::fields(example)?;
        Ok(match style {
            PromptStyle::D1Train => Prompt::user(format!(
                "{}\n\nSolve the following Sudoku puzzle: {puzzle}\n",
                prompts::D1_TRAIN_SUDOKU_SYSTEM
            )),
            PromptStyle::D1Eval => Prompt::eval(format!(
                "{}\n\nSolve the following Sudoku puzzle: {puzzle}\n",
                prompts::D1_EVAL_SUDOKU_SYSTEM
            )),
            PromptStyle::Mdpo | PromptStyle::Igpo => {
                return Err(TaskError::UnsupportedStyle {
                    task: self.name().into(),
                    style: style.name(),
                })
            }
        })
    }

    fn reference(&self, example: &Example) -> Result<String, TaskError> {
        Ok(Self::fields(example)?.1)
    }

    fn extract_answer(&self, completion: &str) -> Option<String> {
        extract_training_answer(clean(completion))
    }

    fn reward(&self, example: &Example, completion: &str) -> Result<Reward, TaskError> {
        let (puzzle, solution) = Self::fields(example)?;
        let c = clean(completion);
        let extracted = extract_training_answer(c);
        let (score, correct, blanks) = match &extracted {
            Some(a) => cell_accuracy(a, &solution, &puzzle),
            None => (0.0, 0, 0),
        };
        Ok(Reward::from_parts(
            &[("sudoku", score)],
            blanks > 0 && correct == blanks,
            extracted,
        ))
    }

    fn evaluate(&self, example: &Example, completion: &str) -> Result<Evaluation, TaskError> {
        let (puzzle, solution) = Self::fields(example)?;
        // The raw completion: d1's patterns treat <|eot_id|> / <|endoftext|> as terminators.
        let s = eval_solution_string(completion);
        let (score, correct, blanks) = cell_accuracy(&s, &solution, &puzzle);
        Ok(Evaluation {
            correct: blanks > 0 && correct == blanks,
            score,
            weight: blanks as f64,
            extracted: Some(s),
        })
    }
}

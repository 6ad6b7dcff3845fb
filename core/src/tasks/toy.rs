//! Token-level toy tasks for models without a tokenizer (the quickstart's tiny models): the task
//! owns its vocabulary ([`CharVocab`]: digits for Sudoku, a 18-character alphabet for Countdown),
//! so prompts, answers and completions cross between text and token ids in one place.
//!
//! Behind the same [`Task`] trait as GSM8K: the "completion" text a reward or an evaluation
//! reads is the vocabulary's decoding of the generated ids ([`Task::vocab`]).
//!
//! - `sudoku:toy`: prompt = the 16 puzzle digits, answer = the 16 solution digits (id = digit);
//!   reward = d1's cell accuracy (fraction of the blanks filled with the solution's digit),
//!   evaluation weight = the blanks (accuracy over all blanks, as d1 reports it).
//! - `countdown:toy`: prompt = `input:output` (e.g. `12,5,3:51`), answer = the `expression`
//!   without spaces, over [`COUNTDOWN_ALPHABET`]; the completion's text ends at the first id
//!   outside the alphabet (mask, EOS); reward 1.0 when it uses exactly the numbers and hits the
//!   target, 0.1 when it uses exactly the numbers but misses (d1's format credit), else 0.0.

use super::countdown::{eval_expression, expr::close_to, uses_exactly, Problem};
use super::sudoku::cell_accuracy;
use super::{Evaluation, Prompt, PromptStyle, Reward, Task, TaskError};
use crate::data::Example;

/// The toy Countdown's characters: digits, the four operators, parentheses, `,` between the
/// numbers and `:` before the target. Token id = index; a model for it needs `vocab_size` ≥ 20
/// (18 = mask, 19 = EOS/pad by convention).
pub const COUNTDOWN_ALPHABET: &str = "0123456789+-*/(),:";

/// A character vocabulary: token id = the character's index in `alphabet`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharVocab {
    alphabet: Vec<char>,
    /// Decoding: `Some(c)` writes `c` for an id outside the alphabet and goes on (digit grids:
    /// `'.'`); `None` ends the text at the first such id (expressions end at EOS).
    unknown: Option<char>,
}

impl CharVocab {
    /// A vocabulary over `alphabet`; ids outside it decode as `unknown` (or end the text).
    pub fn new(alphabet: &str, unknown: Option<char>) -> CharVocab {
        CharVocab {
            alphabet: alphabet.chars().collect(),
            unknown,
        }
    }

    /// Digits `'0'..='9'` → 0..=9; any other id decodes as `'.'`.
    pub fn digits() -> CharVocab {
        CharVocab::new("0123456789", Some('.'))
    }

    /// [`COUNTDOWN_ALPHABET`]; a text ends at the first id outside it.
    pub fn countdown() -> CharVocab {
        CharVocab::new(COUNTDOWN_ALPHABET, None)
    }

    /// The characters, in id order.
    pub fn alphabet(&self) -> String {
        self.alphabet.iter().collect()
    }

    /// Token ids of `text`; a character outside the alphabet is an error naming it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        text.chars()
            .map(|c| {
                self.alphabet
                    .iter()
                    .position(|a| *a == c)
                    .map(|i| i as u32)
                    .ok_or_else(|| {
                        format!(
                            "`{c}` in \"{text}\" is not in the alphabet \"{}\"",
                            self.alphabet()
                        )
                    })
            })
            .collect()
    }

    /// The text of `ids` (see [`CharVocab::new`] for ids outside the alphabet).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = String::new();
        for &i in ids {
            match (self.alphabet.get(i as usize), self.unknown) {
                (Some(&c), _) | (None, Some(c)) => out.push(c),
                (None, None) => break,
            }
        }
        out
    }
}

/// Per cell, 1.0 where the digit grid `completion` fills a blank of `puzzle` with the
/// solution's digit and 0.0 elsewhere (givens included); the mean over the blanks is the cell
/// accuracy.
pub fn sudoku_cell_rewards(completion: &str, puzzle: &str, solution: &str) -> Vec<f32> {
    let p: Vec<char> = puzzle.chars().collect();
    let s: Vec<char> = solution.chars().collect();
    completion
        .chars()
        .enumerate()
        .map(|(i, c)| f32::from(u8::from(p.get(i) == Some(&'0') && s.get(i) == Some(&c))))
        .collect()
}

/// The toy Countdown reward of an expression text: 1.0 correct, 0.1 the right numbers but a
/// wrong value, else 0.0.
pub fn countdown_toy_reward(expr: &str, numbers: &[i64], target: i64) -> f64 {
    if !uses_exactly(expr, numbers) {
        return 0.0;
    }
    match eval_expression(expr) {
        Some(v) if close_to(v, target) => 1.0,
        _ => 0.1,
    }
}

/// The toy Sudoku (`sudoku:toy`).
#[derive(Clone, Debug)]
pub struct SudokuToy(CharVocab);

impl Default for SudokuToy {
    fn default() -> Self {
        SudokuToy(CharVocab::digits())
    }
}

fn sudoku_fields(example: &Example) -> Result<(String, String), TaskError> {
    Ok((
        example.first_text(&["Puzzle", "puzzle"])?,
        example.first_text(&["Solution", "solution"])?,
    ))
}

impl Task for SudokuToy {
    fn name(&self) -> &str {
        "sudoku:toy"
    }
    fn prompt(&self, example: &Example, _style: PromptStyle) -> Result<Prompt, TaskError> {
        Ok(Prompt::user(sudoku_fields(example)?.0))
    }
    fn reference(&self, example: &Example) -> Result<String, TaskError> {
        Ok(sudoku_fields(example)?.1)
    }
    fn extract_answer(&self, completion: &str) -> Option<String> {
        Some(completion.to_string())
    }
    fn reward(&self, example: &Example, completion: &str) -> Result<Reward, TaskError> {
        let e = self.evaluate(example, completion)?;
        Ok(Reward::from_parts(
            &[("cell_accuracy", e.score)],
            e.correct,
            e.extracted,
        ))
    }
    fn evaluate(&self, example: &Example, completion: &str) -> Result<Evaluation, TaskError> {
        let (puzzle, solution) = sudoku_fields(example)?;
        let (score, correct, blanks) = cell_accuracy(completion, &solution, &puzzle);
        Ok(Evaluation {
            correct: blanks > 0 && correct == blanks,
            score,
            weight: blanks as f64,
            extracted: Some(completion.to_string()),
        })
    }
    fn vocab(&self) -> Option<&CharVocab> {
        Some(&self.0)
    }
}

/// The toy Countdown (`countdown:toy`).
#[derive(Clone, Debug)]
pub struct CountdownToy(CharVocab);

impl Default for CountdownToy {
    fn default() -> Self {
        CountdownToy(CharVocab::countdown())
    }
}

impl Task for CountdownToy {
    fn name(&self) -> &str {
        "countdown:toy"
    }
    fn prompt(&self, example: &Example, _style: PromptStyle) -> Result<Prompt, TaskError> {
        Ok(Prompt::user(format!(
            "{}:{}",
            example.text("input")?,
            example.text("output")?
        )))
    }
    fn reference(&self, example: &Example) -> Result<String, TaskError> {
        Ok(example.text("expression")?.replace(' ', ""))
    }
    fn extract_answer(&self, completion: &str) -> Option<String> {
        Some(completion.to_string())
    }
    fn reward(&self, example: &Example, completion: &str) -> Result<Reward, TaskError> {
        let p = Problem::from_example(example)?;
        let r = countdown_toy_reward(completion, &p.numbers, p.target);
        Ok(Reward::from_parts(
            &[("countdown", r)],
            r == 1.0,
            Some(completion.to_string()),
        ))
    }
    fn evaluate(&self, example: &Example, completion: &str) -> Result<Evaluation, TaskError> {
        let r = self.reward(example, completion)?;
        Ok(Evaluation::binary(r.correct, r.extracted))
    }
    fn vocab(&self) -> Option<&CharVocab> {
        Some(&self.0)
    }
}

/// Token ids of each of `texts` over `o.alphabet` (id = index), padded to `o.length` with
/// `o.pad` when given: `align` `"left"` (default: text first, padding after — answers) or
/// `"right"` (padding first — prompts). An empty alphabet, a bad `align`, a `length` without
/// `pad`, a character outside the alphabet or a text longer than `length` is an error.
pub fn char_ids(
    texts: &[String],
    o: &crate::train::options::CharIdsOptions,
) -> anyhow::Result<Vec<Vec<u32>>> {
    use anyhow::bail;
    if o.alphabet.is_empty() {
        bail!("`alphabet` (a non-empty string) is required");
    }
    let right = match o.align.as_deref() {
        None | Some("left") => false,
        Some("right") => true,
        Some(a) => bail!("`align` must be \"left\" or \"right\", found \"{a}\""),
    };
    let pad = match (o.length, o.pad) {
        (Some(n), Some(p)) => Some((n, p)),
        (Some(_), None) => bail!("`length` needs a `pad` id"),
        _ => None,
    };
    let v = CharVocab::new(&o.alphabet, None);
    texts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let row = v.encode(s).map_err(anyhow::Error::msg)?;
            let Some((n, p)) = pad else { return Ok(row) };
            if row.len() > n {
                bail!(
                    "text {i} \"{s}\" has {} characters, more than `length` {n}",
                    row.len()
                );
            }
            let fill = std::iter::repeat_n(p, n - row.len());
            Ok(if right {
                fill.chain(row).collect()
            } else {
                row.into_iter().chain(fill).collect()
            })
        })
        .collect()
}

/// The reference answer of `row` as token ids of the toy `task`'s vocabulary (the Sudoku
/// solution digits, the Countdown expression without spaces): what IGPO's hints are cut from.
pub fn answer_ids(task: &dyn Task, row: &Example) -> anyhow::Result<Vec<u32>> {
    let text = task.reference(row)?;
    let vocab = task
        .vocab()
        .ok_or_else(|| anyhow::anyhow!("`{}` is not a toy task", task.name()))?;
    vocab.encode(&text).map_err(anyhow::Error::msg)
}

/// The decoded text of each grouped completion with its data row: completion i answers
/// `rows[i / group]`, decoded with the toy `task`'s vocabulary. A group below 1, a count other
/// than `rows.len() × group` or a task without a vocabulary is an error.
pub fn grouped_texts<'a>(
    task: &dyn Task,
    completions: &[Vec<u32>],
    rows: &'a [Example],
    group: usize,
) -> anyhow::Result<Vec<(&'a Example, String)>> {
    if group < 1 {
        anyhow::bail!("group must be at least 1, found {group}");
    }
    if completions.len() != rows.len() * group {
        anyhow::bail!(
            "{} completions for {} rows × group {group} (expected {})",
            completions.len(),
            rows.len(),
            rows.len() * group
        );
    }
    let vocab = task
        .vocab()
        .ok_or_else(|| anyhow::anyhow!("`{}` is not a toy task", task.name()))?;
    Ok(completions
        .iter()
        .enumerate()
        .map(|(i, c)| (&rows[i / group], vocab.decode(c)))
        .collect())
}

/// The reward total of each grouped completion (see [`grouped_texts`]) under the toy `task`.
pub fn grouped_rewards(
    task: &dyn Task,
    completions: &[Vec<u32>],
    rows: &[Example],
    group: usize,
) -> anyhow::Result<Vec<f64>> {
    grouped_texts(task, completions, rows, group)?
        .into_iter()
        .map(|(row, text)| Ok(task.reward(row, &text)?.total))
        .collect()
}

/// Per-cell Sudoku rewards ([`sudoku_cell_rewards`], 16 per completion) of grouped
/// completions (see [`grouped_texts`]).
pub fn grouped_cell_rewards(
    completions: &[Vec<u32>],
    rows: &[Example],
    group: usize,
) -> anyhow::Result<Vec<Vec<f32>>> {
    grouped_texts(&SudokuToy::default(), completions, rows, group)?
        .into_iter()
        .map(|(row, text)| {
            let (p, s) = sudoku_fields(row)?;
            let mut r = sudoku_cell_rewards(&text, &p, &s);
            r.resize(16, 0.0);
            Ok(r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vocabularies_round_trip_and_name_bad_characters() {
        let d = CharVocab::digits();
        assert_eq!(d.encode("3102").unwrap(), vec![3, 1, 0, 2]);
        assert_eq!(d.decode(&[5, 10, 99, 9]), "5..9");
        assert!(d.encode("12a").unwrap_err().contains("`a`"));
        let c = CharVocab::countdown();
        let ids = c.encode("(12+5)*3").unwrap();
        assert_eq!(ids, vec![14, 1, 2, 10, 5, 15, 12, 3]);
        let mut padded = ids.clone();
        padded.extend([19, 4, 19]);
        assert_eq!(c.decode(&padded), "(12+5)*3");
        assert!(c.encode("1 2").unwrap_err().contains("` `"));
    }

    #[test]
    fn countdown_toy_reward_grades() {
        assert_eq!(countdown_toy_reward("(12+5)*3", &[12, 5, 3], 51), 1.0);
        assert_eq!(countdown_toy_reward("12+5*3", &[12, 5, 3], 51), 0.1);
        assert_eq!(countdown_toy_reward("12+5", &[12, 5, 3], 51), 0.0);
        assert_eq!(countdown_toy_reward("", &[12, 5, 3], 51), 0.0);
    }

    #[test]
    fn cell_rewards_mark_correct_blanks_only() {
        let r = sudoku_cell_rewards("3142", "3002", "3142");
        assert_eq!(r, vec![0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn toy_tasks_answer_through_the_task_trait() {
        let t = super::super::task_by_name("sudoku:toy").unwrap();
        let row = Example::from_pairs([
            ("Puzzle", json!("3102200002100320")),
            ("Solution", json!("3142243142131324")),
        ]);
        let v = t.vocab().unwrap();
        let prompt = t.prompt(&row, PromptStyle::D1Train).unwrap();
        assert_eq!(v.encode(&prompt.user).unwrap()[..4], [3, 1, 0, 2]);
        let solved = v.decode(&v.encode(&t.reference(&row).unwrap()).unwrap());
        assert_eq!(t.reward(&row, &solved).unwrap().total, 1.0);
        let e = t.evaluate(&row, "3102200002100320").unwrap();
        assert_eq!((e.correct, e.score, e.weight), (false, 0.0, 8.0));
        let wrong_blank = "3132243142131324";
        assert!((t.reward(&row, wrong_blank).unwrap().total - 7.0 / 8.0).abs() < 1e-12);

        let t = super::super::task_by_name("countdown:toy").unwrap();
        let row = Example::from_pairs([
            ("input", json!("12,5,3")),
            ("output", json!("51")),
            ("expression", json!("(12 + 5) * 3")),
        ]);
        assert_eq!(
            t.prompt(&row, PromptStyle::D1Train).unwrap().user,
            "12,5,3:51"
        );
        assert_eq!(t.reference(&row).unwrap(), "(12+5)*3");
        assert!(t.evaluate(&row, "(12+5)*3").unwrap().correct);
        assert_eq!(t.reward(&row, "12+5*3").unwrap().total, 0.1);
        assert!(t.splits().train.is_none() && t.splits().generated);
    }
}

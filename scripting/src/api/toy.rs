//! Helpers for token-level toy tasks on models without a tokenizer (`new_model`): digit and
//! character strings ↔ token-id arrays, Sudoku cell accuracy and Countdown rewards of generated
//! ids, computed in Rust so scripts never loop over tokens. Used by `scripts/quickstart.rhai`
//! and `scripts/experiments/toy_compare.rhai`.

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::tasks::countdown::{eval_expression, expr::close_to, uses_exactly, Problem};
use workbench_core::tasks::sudoku::cell_accuracy;

use super::convert::{check_keys, err, opt_str, script_err, RResult};
use super::tasks::example_of;
use super::tensor::ScriptTensor;

/// Token ids of a digit string: `'0'..='9'` → 0..=9.
pub fn digits_to_ids(text: &str) -> Result<Vec<i64>, String> {
    text.chars()
        .map(|c| {
            c.to_digit(10)
                .map(i64::from)
                .ok_or_else(|| format!("digit_ids: `{c}` in \"{text}\" is not a digit 0-9"))
        })
        .collect()
}

/// The digit string of token ids: ids 0..=9 become `'0'..='9'`, any other id (mask, EOS, pad)
/// becomes `'.'`.
pub fn ids_to_digits(ids: &[i64]) -> String {
    ids.iter()
        .map(|&i| {
            u32::try_from(i)
                .ok()
                .and_then(|d| char::from_digit(d, 10))
                .unwrap_or('.')
        })
        .collect()
}

/// Per row, the fraction of the puzzle's blank cells that `completion` (16 ids, the whole
/// grid row-major) fills with the solution's digit — d1's Sudoku reward and cell accuracy.
pub fn sudoku_cell_accuracy(completion: &[i64], puzzle: &str, solution: &str) -> f64 {
    cell_accuracy(&ids_to_digits(completion), solution, puzzle).0
}

/// Per cell, 1.0 where `completion` fills a blank of `puzzle` with the solution's digit and
/// 0.0 elsewhere (givens included); the mean over the blanks is [`sudoku_cell_accuracy`].
pub fn sudoku_cell_rewards(completion: &[i64], puzzle: &str, solution: &str) -> Vec<f32> {
    let p: Vec<char> = puzzle.chars().collect();
    let s: Vec<char> = solution.chars().collect();
    let c: Vec<char> = ids_to_digits(completion).chars().collect();
    (0..c.len())
        .map(|i| {
            let blank = p.get(i) == Some(&'0');
            f32::from(u8::from(blank && s.get(i).is_some_and(|d| *d == c[i])))
        })
        .collect()
}

/// The character vocabulary of the toy Countdown (`char_ids`/`char_texts`): digits, the four
/// operators, parentheses, `,` between the numbers and `:` before the target. Token id = index;
/// a model for it needs `vocab_size` ≥ 20 (18 = mask, 19 = EOS/pad by convention).
pub const COUNTDOWN_ALPHABET: &str = "0123456789+-*/(),:";

/// Token ids of `text` over `alphabet` (id = the character's index).
pub fn chars_to_ids(text: &str, alphabet: &[char]) -> Result<Vec<i64>, String> {
    text.chars()
        .map(|c| {
            alphabet
                .iter()
                .position(|a| *a == c)
                .map(|i| i as i64)
                .ok_or_else(|| {
                    format!(
                        "char_ids: `{c}` in \"{text}\" is not in the alphabet \"{}\"",
                        alphabet.iter().collect::<String>()
                    )
                })
        })
        .collect()
}

/// The text of token ids over `alphabet`, up to (not including) the first id outside it (the
/// mask, EOS or padding ends a completion).
pub fn ids_to_chars(ids: &[i64], alphabet: &[char]) -> String {
    ids.iter()
        .map_while(|&i| {
            usize::try_from(i)
                .ok()
                .and_then(|i| alphabet.get(i).copied())
        })
        .collect()
}

/// The toy Countdown reward of a completion (ids over [`COUNTDOWN_ALPHABET`]): its text up to
/// the first non-character id is the expression; 1.0 when it uses exactly `numbers` and
/// evaluates to `target`, 0.1 when it uses exactly the numbers but misses (d1's format credit),
/// else 0.0.
pub fn countdown_toy_reward(completion: &[i64], numbers: &[i64], target: i64) -> f64 {
    let alphabet: Vec<char> = COUNTDOWN_ALPHABET.chars().collect();
    let expr = ids_to_chars(completion, &alphabet);
    if !uses_exactly(&expr, numbers) {
        return 0.0;
    }
    match eval_expression(&expr) {
        Some(v) if close_to(v, target) => 1.0,
        _ => 0.1,
    }
}

/// The toy task of a name: `"sudoku"` or `"countdown"`.
fn toy_task(name: &str, what: &str) -> RResult<bool> {
    match name {
        "sudoku" => Ok(true),
        "countdown" => Ok(false),
        _ => Err(err(format!(
            "{what}: unknown toy task \"{name}\" (expected \"sudoku\" or \"countdown\")"
        ))),
    }
}

/// Rows of ids from a `[B, L]` Tensor or an array of arrays of integers.
fn id_rows(v: &Dynamic, what: &str) -> RResult<Vec<Vec<i64>>> {
    let t = if let Some(t) = v.clone().try_cast::<ScriptTensor>() {
        t.t
    } else if let Some(a) = v.clone().try_cast::<Array>() {
        // Rows of ids may differ in length (e.g. unpadded reference answers).
        return a
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let r = row.clone().into_array().map_err(|t| {
                    err(format!(
                        "{what}: row {i} must be an array of ids, found {t}"
                    ))
                })?;
                r.iter()
                    .map(|x| {
                        x.as_int().map_err(|t| {
                            err(format!("{what}: row {i} holds a {t}, expected integer ids"))
                        })
                    })
                    .collect()
            })
            .collect();
    } else {
        return Err(err(format!(
            "{what} must be a Tensor [B, L] or an array of arrays of ids, found {}",
            v.type_name()
        )));
    };
    if t.rank() != 2 {
        return Err(err(format!(
            "{what} must have 2 dims [B, L], found shape {:?}",
            t.dims()
        )));
    }
    t.to_dtype(candle_core::DType::I64)
        .and_then(|t| t.to_vec2::<i64>())
        .map_err(script_err)
}

fn field(row: &Dynamic, names: &[&str], i: usize, what: &str) -> RResult<String> {
    let m = row
        .read_lock::<rhai::Map>()
        .ok_or_else(|| err(format!("{what}: row {i} is not a map")))?;
    for n in names {
        if let Some(v) = m.get(*n) {
            return v.clone().into_string().map_err(|t| {
                err(format!(
                    "{what}: row {i}: `{n}` must be a string, found {t}"
                ))
            });
        }
    }
    Err(err(format!("{what}: row {i} has no `{}` field", names[0])))
}

#[export_module]
mod toy_api {
    use super::*;

    /// The toy Countdown's character vocabulary, `"0123456789+-*/(),:"` (token id = index;
    /// use mask id 18 and EOS 19 with `vocab_size` 20).
    pub fn countdown_alphabet() -> String {
        COUNTDOWN_ALPHABET.to_string()
    }
    /// Token ids of each string of `texts` over a character vocabulary. Options: `alphabet`
    /// (required; id = index), `length` (pad every row to this many ids; longer texts are an
    /// error), `pad` (the padding id, required with `length`), `align` (`"left"`: text first,
    /// padding after — answers; `"right"`: padding first — prompts). Returns arrays of ids.
    #[rhai_fn(return_raw)]
    pub fn char_ids(texts: Array, opts: Map) -> RResult<Array> {
        let what = "char_ids";
        check_keys(&opts, &["alphabet", "length", "pad", "align"], what)?;
        let alphabet: Vec<char> = opt_str(&opts, "alphabet", "")?.chars().collect();
        if alphabet.is_empty() {
            return Err(err("char_ids: `alphabet` (a non-empty string) is required"));
        }
        let length = match opts.get("length") {
            None => None,
            Some(v) => Some(
                v.as_int()
                    .map_err(|_| err("char_ids: `length` must be an integer"))?,
            ),
        };
        let pad = match opts.get("pad") {
            None => None,
            Some(v) => Some(
                v.as_int()
                    .map_err(|_| err("char_ids: `pad` must be an integer id"))?,
            ),
        };
        let align = opt_str(&opts, "align", "left")?;
        if align != "left" && align != "right" {
            return Err(err(format!(
                "char_ids: `align` must be \"left\" or \"right\", found \"{align}\""
            )));
        }
        if length.is_some() && pad.is_none() {
            return Err(err("char_ids: `length` needs a `pad` id"));
        }
        texts
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let s = t.into_string().map_err(|ty| {
                    err(format!("char_ids: text {i}: expected a string, found {ty}"))
                })?;
                let mut ids = chars_to_ids(&s, &alphabet).map_err(err)?;
                if let (Some(n), Some(p)) = (length, pad) {
                    let n = n.max(0) as usize;
                    if ids.len() > n {
                        return Err(err(format!(
                            "char_ids: text {i} \"{s}\" has {} characters, more than `length` {n}",
                            ids.len()
                        )));
                    }
                    let fill = std::iter::repeat_n(p, n - ids.len());
                    ids = if align == "left" {
                        ids.into_iter().chain(fill).collect()
                    } else {
                        fill.chain(ids).collect()
                    };
                }
                Ok(Dynamic::from_array(
                    ids.into_iter().map(Dynamic::from).collect(),
                ))
            })
            .collect()
    }
    /// The text of each row of ids `[B, L]` (Tensor or arrays) over `alphabet`, up to the first
    /// id outside it (mask, EOS, padding).
    #[rhai_fn(return_raw)]
    pub fn char_texts(ids: Dynamic, alphabet: &str) -> RResult<Array> {
        let a: Vec<char> = alphabet.chars().collect();
        Ok(id_rows(&ids, "char_texts: ids")?
            .iter()
            .map(|r| Dynamic::from(ids_to_chars(r, &a)))
            .collect())
    }
    /// Rewards of grouped toy completions (completion i answers `rows[i / group]`): for
    /// `"sudoku"` the cell accuracy (rows `Puzzle`/`Solution`, 16 digit ids per completion),
    /// for `"countdown"` the toy Countdown reward over `countdown_alphabet()` (rows
    /// `input`/`output`: 1.0 correct, 0.1 the right numbers but a wrong value, else 0.0).
    /// A reward of 1.0 means solved. Returns one float per completion.
    #[rhai_fn(return_raw)]
    pub fn toy_rewards(
        task: &str,
        completions: Dynamic,
        rows: Array,
        group: i64,
    ) -> RResult<Array> {
        if toy_task(task, "toy_rewards")? {
            return cell_accuracy_grouped(completions, rows, group);
        }
        let what = "toy_rewards";
        let (comps, g) = grouped_ids(completions, rows.len(), group, what)?;
        let problems = rows
            .iter()
            .map(|r| {
                example_of(r).and_then(|e| {
                    Problem::from_example(&e).map_err(|e| err(format!("{what}: {e}")))
                })
            })
            .collect::<RResult<Vec<_>>>()?;
        Ok(comps
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let p = &problems[i / g];
                Dynamic::from(countdown_toy_reward(c, &p.numbers, p.target))
            })
            .collect())
    }
    /// The reference answer of a toy row as token ids: the Sudoku `Solution` digits, or the
    /// Countdown `expression` (spaces removed) over `countdown_alphabet()`. IGPO's hints are
    /// cut from it.
    #[rhai_fn(return_raw)]
    pub fn toy_answer(task: &str, row: Dynamic) -> RResult<Array> {
        let sudoku = toy_task(task, "toy_answer")?;
        let text = if sudoku {
            field(&row, &["Solution", "solution"], 0, "toy_answer")?
        } else {
            field(&row, &["expression"], 0, "toy_answer")?.replace(' ', "")
        };
        let ids = if sudoku {
            digits_to_ids(&text).map_err(err)?
        } else {
            chars_to_ids(&text, &COUNTDOWN_ALPHABET.chars().collect::<Vec<_>>()).map_err(err)?
        };
        Ok(ids.into_iter().map(Dynamic::from).collect())
    }

    /// Token ids of a digit string (`'0'..='9'` → 0..=9), e.g. a Sudoku `Puzzle`:
    /// `digit_ids("3102")` is `[3, 1, 0, 2]`.
    #[rhai_fn(name = "digit_ids", return_raw)]
    pub fn digit_ids(text: &str) -> RResult<Array> {
        digits_to_ids(text)
            .map(|v| v.into_iter().map(Dynamic::from).collect())
            .map_err(err)
    }
    /// Token ids of each digit string of an array: `digit_ids(["12", "34"])` is
    /// `[[1, 2], [3, 4]]`.
    #[rhai_fn(name = "digit_ids", return_raw)]
    pub fn digit_ids_all(texts: Array) -> RResult<Array> {
        texts
            .into_iter()
            .map(|t| {
                let s = t
                    .into_string()
                    .map_err(|ty| err(format!("digit_ids: expected strings, found {ty}")))?;
                digit_ids(&s).map(Dynamic::from_array)
            })
            .collect()
    }
    /// Digit strings of token ids `[B, L]` (a Tensor or arrays of ids): ids 0..=9 become
    /// `'0'..='9'`, any other id (mask, EOS) `'.'`. Builds task text from generated ids.
    #[rhai_fn(return_raw)]
    pub fn digit_texts(ids: Dynamic) -> RResult<Array> {
        Ok(id_rows(&ids, "digit_texts: ids")?
            .iter()
            .map(|r| Dynamic::from(ids_to_digits(r)))
            .collect())
    }
    /// Sudoku cell accuracy of generated grids: for completion i (16 ids, the whole grid
    /// row-major, id = digit) and data row `rows[i]` (`Puzzle`/`Solution` strings, as from
    /// `sudoku_puzzles`), the fraction of the puzzle's blanks filled with the solution's digit.
    /// `completions` is a Tensor `[B, 16]` or arrays of ids; returns B floats.
    #[rhai_fn(name = "cell_accuracy", return_raw)]
    pub fn cell_accuracy1(completions: Dynamic, rows: Array) -> RResult<Array> {
        cell_accuracy_grouped(completions, rows, 1)
    }
    /// Cell accuracy of grouped completions (GRPO rollouts with `repeat: group`): completion
    /// i is scored against `rows[i / group]`; returns one float per completion (the d1 Sudoku
    /// reward).
    #[rhai_fn(name = "cell_accuracy", return_raw)]
    pub fn cell_accuracy_grouped(completions: Dynamic, rows: Array, group: i64) -> RResult<Array> {
        let mut out = Array::new();
        for_each_scored(completions, &rows, group, "cell_accuracy", |c, p, sol| {
            out.push(Dynamic::from(sudoku_cell_accuracy(c, p, sol)));
        })?;
        Ok(out)
    }
    /// Per-cell Sudoku rewards of grouped completions (as `cell_accuracy`): an f32 Tensor
    /// `[B, 16]`, 1.0 where completion i fills a blank of `rows[i / group]` correctly and 0.0
    /// elsewhere; its row mean over the blanks is the `cell_accuracy` reward. For per-cell
    /// (token-level) credit in GRPO.
    #[rhai_fn(return_raw)]
    pub fn cell_rewards(completions: Dynamic, rows: Array, group: i64) -> RResult<ScriptTensor> {
        let mut flat = Vec::new();
        let mut n = 0usize;
        for_each_scored(completions, &rows, group, "cell_rewards", |c, p, sol| {
            let mut r = sudoku_cell_rewards(c, p, sol);
            r.resize(16, 0.0);
            flat.extend(r);
            n += 1;
        })?;
        candle_core::Tensor::from_vec(flat, (n, 16), &candle_core::Device::Cpu)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
}

/// The completion id rows and the group size, checked: `group` ≥ 1 and one completion per
/// (row, group member).
fn grouped_ids(
    completions: Dynamic,
    rows: usize,
    group: i64,
    what: &str,
) -> RResult<(Vec<Vec<i64>>, usize)> {
    if group < 1 {
        return Err(err(format!(
            "{what}: group must be at least 1, found {group}"
        )));
    }
    let comps = id_rows(&completions, &format!("{what}: completions"))?;
    let g = group as usize;
    if comps.len() != rows * g {
        return Err(err(format!(
            "{what}: {} completions for {rows} rows × group {g} (expected {})",
            comps.len(),
            rows * g
        )));
    }
    Ok((comps, g))
}

/// Calls `f(completion, puzzle, solution)` for each completion i against `rows[i / group]`.
fn for_each_scored(
    completions: Dynamic,
    rows: &Array,
    group: i64,
    what: &str,
    mut f: impl FnMut(&[i64], &str, &str),
) -> RResult<()> {
    let (comps, g) = grouped_ids(completions, rows.len(), group, what)?;
    for (i, c) in comps.iter().enumerate() {
        let row = &rows[i / g];
        let puzzle = field(row, &["Puzzle", "puzzle"], i / g, what)?;
        let solution = field(row, &["Solution", "solution"], i / g, what)?;
        f(c, &puzzle, &solution);
    }
    Ok(())
}

/// Registers the toy-task helpers.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(toy_api).into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_round_trip_and_reject_non_digits() {
        assert_eq!(digits_to_ids("3102").unwrap(), vec![3, 1, 0, 2]);
        assert_eq!(ids_to_digits(&[3, 1, 0, 2]), "3102");
        assert_eq!(ids_to_digits(&[5, 10, -1, 9]), "5..9");
        assert!(digits_to_ids("12a").unwrap_err().contains("`a`"));
    }

    #[test]
    fn chars_round_trip_and_countdown_reward_grades() {
        let a: Vec<char> = COUNTDOWN_ALPHABET.chars().collect();
        let ids = chars_to_ids("(12+5)*3", &a).unwrap();
        assert_eq!(ids, vec![14, 1, 2, 10, 5, 15, 12, 3]);
        // the text ends at the first id outside the alphabet (EOS 19, mask 18)
        let mut padded = ids.clone();
        padded.extend([19, 4, 19]);
        assert_eq!(ids_to_chars(&padded, &a), "(12+5)*3");
        assert!(chars_to_ids("1 2", &a).unwrap_err().contains("` `"));
        let solved = chars_to_ids("(12+5)*3", &a).unwrap();
        assert_eq!(countdown_toy_reward(&solved, &[12, 5, 3], 51), 1.0);
        let wrong = chars_to_ids("12+5*3", &a).unwrap(); // 27: right numbers, wrong value
        assert_eq!(countdown_toy_reward(&wrong, &[12, 5, 3], 51), 0.1);
        let missing = chars_to_ids("12+5", &a).unwrap();
        assert_eq!(countdown_toy_reward(&missing, &[12, 5, 3], 51), 0.0);
        assert_eq!(countdown_toy_reward(&[18, 18], &[12, 5, 3], 51), 0.0);
    }

    #[test]
    fn cell_accuracy_counts_blanks_only() {
        let puzzle = "3102200002100320";
        let solution = "3142243142131324";
        let sol: Vec<i64> = digits_to_ids(solution).unwrap();
        assert_eq!(sudoku_cell_accuracy(&sol, puzzle, solution), 1.0);
        // The puzzle itself (givens right, blanks 0) scores 0.
        let p: Vec<i64> = digits_to_ids(puzzle).unwrap();
        assert_eq!(sudoku_cell_accuracy(&p, puzzle, solution), 0.0);
        // One blank wrong out of 8 (the givens do not count, even when wrong).
        let mut c = sol.clone();
        c[2] = 3; // blank
        c[0] = 4; // given
        let blanks = puzzle.chars().filter(|&ch| ch == '0').count();
        assert_eq!(blanks, 8);
        assert!((sudoku_cell_accuracy(&c, puzzle, solution) - 7.0 / 8.0).abs() < 1e-12);
        // Mask / EOS ids never match.
        let mut m = sol;
        m[2] = 5;
        m[5] = 6;
        assert!((sudoku_cell_accuracy(&m, puzzle, solution) - 6.0 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn rhai_helpers_group_and_validate() {
        let mut engine = Engine::new();
        super::super::tensor::register(&mut engine);
        register(&mut engine);
        let r: Array = engine
            .eval(
                r#"
                let rows = [#{ Puzzle: "3102200002100320", Solution: "3142243142131324" }];
                let good = digit_ids("3142243142131324");
                let bad = digit_ids("3102200002100320");
                cell_accuracy([good, bad, good], rows, 3)
                "#,
            )
            .unwrap();
        let r: Vec<f64> = r.into_iter().map(|d| d.as_float().unwrap()).collect();
        assert_eq!(r, vec![1.0, 0.0, 1.0]);
        let c: Vec<f32> = engine
            .eval::<ScriptTensor>(
                r#"
                let rows = [#{ Puzzle: "3102200002100320", Solution: "3142243142131324" }];
                cell_rewards([digit_ids("3142243142131324")], rows, 1)
                "#,
            )
            .unwrap()
            .t
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want: Vec<f32> = "3102200002100320"
            .chars()
            .map(|ch| if ch == '0' { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(c, want);
        let t: Array = engine
            .eval(r#"digit_texts(tensor([[1, 2, 10], [0, 4, 3]]))"#)
            .unwrap();
        assert_eq!(t[0].clone().into_string().unwrap(), "12.");
        assert_eq!(t[1].clone().into_string().unwrap(), "043");
        let nested: Array = engine.eval(r#"digit_ids(["12", "34"])"#).unwrap();
        assert_eq!(nested.len(), 2);
        let e = engine
            .eval::<Array>(r#"cell_accuracy([[1, 2]], [#{ Puzzle: "1", Solution: "1" }], 2)"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 completions for 1 rows × group 2"), "{e}");
        let e = engine
            .eval::<Array>(r#"cell_accuracy([[1, 2]], [#{ puzzle: "1" }])"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `Solution` field"), "{e}");
    }
}

//! Helpers for token-level toy tasks on models without a tokenizer (`new_model`): digit
//! strings ↔ token-id arrays (token id = digit value) and Sudoku cell accuracy of generated ids,
//! computed in Rust so scripts never loop over tokens. Used by `scripts/quickstart.rhai`.

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine};
use workbench_core::tasks::sudoku::cell_accuracy;

use super::convert::{err, script_err, RResult};
use super::tensor::{from_nested, ScriptTensor};

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

/// Rows of ids from a `[B, L]` Tensor or an array of arrays of integers.
fn id_rows(v: &Dynamic, what: &str) -> RResult<Vec<Vec<i64>>> {
    let t = if let Some(t) = v.clone().try_cast::<ScriptTensor>() {
        t.t
    } else if let Some(a) = v.clone().try_cast::<Array>() {
        if a.is_empty() {
            return Ok(Vec::new());
        }
        from_nested(&a)?
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

/// Calls `f(completion, puzzle, solution)` for each completion i against `rows[i / group]`.
fn for_each_scored(
    completions: Dynamic,
    rows: &Array,
    group: i64,
    what: &str,
    mut f: impl FnMut(&[i64], &str, &str),
) -> RResult<()> {
    if group < 1 {
        return Err(err(format!(
            "{what}: group must be at least 1, found {group}"
        )));
    }
    let comps = id_rows(&completions, &format!("{what}: completions"))?;
    let g = group as usize;
    if comps.len() != rows.len() * g {
        return Err(err(format!(
            "{what}: {} completions for {} rows × group {g} (expected {})",
            comps.len(),
            rows.len(),
            rows.len() * g
        )));
    }
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

//! Token-level toy-task helpers for models without a tokenizer: digit and character strings ↔
//! token ids and grouped rewards of generated ids, over the core toy tasks
//! (`workbench_core::tasks::toy`: `sudoku:toy`, `countdown:toy`), which `task(...)` also gives
//! with `judge`/`evaluate`.

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::tasks::toy::{sudoku_cell_rewards, CharVocab, COUNTDOWN_ALPHABET};
use workbench_core::tasks::{task_by_name, Task};
use workbench_core::train::options::CharIdsOptions;

use super::convert::{err, fail, options, script_err, to_script, RResult};
use super::tasks::example_of;
use super::tensor::ScriptTensor;

/// Rows of ids from a `[B, L]` Tensor or an array of arrays of integers (rows may differ in
/// length); ids outside `u32` become `u32::MAX` (outside every vocabulary).
fn id_rows(v: &Dynamic, what: &str) -> RResult<Vec<Vec<u32>>> {
    let rows: Vec<Vec<i64>> = if let Some(t) = v.clone().try_cast::<ScriptTensor>() {
        if t.t.rank() != 2 {
            return Err(err(format!(
                "{what} must have 2 dims [B, L], found shape {:?}",
                t.t.dims()
            )));
        }
        t.t.to_dtype(candle_core::DType::I64)
            .and_then(|t| t.to_vec2::<i64>())
            .map_err(script_err)?
    } else {
        rhai::serde::from_dynamic(v).map_err(|_| {
            err(format!(
                "{what} must be a Tensor [B, L] or an array of arrays of integer ids, found {}",
                v.type_name()
            ))
        })?
    };
    Ok(rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
                .collect()
        })
        .collect())
}

fn ids(v: Vec<u32>) -> Dynamic {
    Dynamic::from_array(v.into_iter().map(|i| Dynamic::from(i64::from(i))).collect())
}

fn toy(name: &str, what: &str) -> RResult<Box<dyn Task>> {
    match name {
        "sudoku" | "countdown" => task_by_name(&format!("{name}:toy")).map_err(script_err),
        _ => Err(err(format!(
            "{what}: unknown toy task \"{name}\" (expected \"sudoku\" or \"countdown\")"
        ))),
    }
}

/// Calls `f(row, completion text)` for completion i against `rows[i / group]` (the text is
/// the task vocabulary's decoding of the ids).
fn for_each<T>(
    task: &dyn Task,
    completions: Dynamic,
    rows: &Array,
    group: i64,
    what: &str,
    mut f: impl FnMut(&workbench_core::data::Example, &str) -> RResult<T>,
) -> RResult<Vec<T>> {
    let comps = id_rows(&completions, &format!("{what}: completions"))?;
    let g = usize::try_from(group)
        .ok()
        .filter(|&g| g >= 1)
        .ok_or_else(|| err(format!("{what}: group must be at least 1, found {group}")))?;
    if comps.len() != rows.len() * g {
        return Err(err(format!(
            "{what}: {} completions for {} rows × group {g} (expected {})",
            comps.len(),
            rows.len(),
            rows.len() * g
        )));
    }
    let vocab = task
        .vocab()
        .ok_or_else(|| err(format!("{what}: not a toy task")))?;
    let examples = rows.iter().map(example_of).collect::<RResult<Vec<_>>>()?;
    comps
        .iter()
        .enumerate()
        .map(|(i, c)| f(&examples[i / g], &vocab.decode(c)))
        .collect()
}

fn rewards(
    task: &str,
    completions: Dynamic,
    rows: Array,
    group: i64,
    what: &str,
) -> RResult<Array> {
    let t = toy(task, what)?;
    let r = for_each(&*t, completions, &rows, group, what, |row, text| {
        t.reward(row, text).map(|r| r.total).map_err(fail(what))
    })?;
    Ok(r.into_iter().map(Dynamic::from).collect())
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
        let w = "char_ids";
        let o: CharIdsOptions = options(w, opts)?;
        if o.alphabet.is_empty() {
            return Err(err("char_ids: `alphabet` (a non-empty string) is required"));
        }
        let right = match o.align.as_deref() {
            None | Some("left") => false,
            Some("right") => true,
            Some(a) => {
                return Err(err(format!(
                    "char_ids: `align` must be \"left\" or \"right\", found \"{a}\""
                )))
            }
        };
        let pad = match (o.length, o.pad) {
            (Some(n), Some(p)) => Some((n, p)),
            (Some(_), None) => return Err(err("char_ids: `length` needs a `pad` id")),
            _ => None,
        };
        let v = CharVocab::new(&o.alphabet, None);
        texts
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let s = t.into_string().map_err(|ty| {
                    err(format!("char_ids: text {i}: expected a string, found {ty}"))
                })?;
                let mut row = v.encode(&s).map_err(|e| err(format!("char_ids: {e}")))?;
                if let Some((n, p)) = pad {
                    if row.len() > n {
                        return Err(err(format!(
                            "char_ids: text {i} \"{s}\" has {} characters, more than `length` {n}",
                            row.len()
                        )));
                    }
                    let fill = std::iter::repeat_n(p, n - row.len());
                    row = if right {
                        fill.chain(row).collect()
                    } else {
                        row.into_iter().chain(fill).collect()
                    };
                }
                Ok(ids(row))
            })
            .collect()
    }
    /// The text of each row of ids `[B, L]` (Tensor or arrays) over `alphabet`, up to the first
    /// id outside it (mask, EOS, padding).
    #[rhai_fn(return_raw)]
    pub fn char_texts(ids: Dynamic, alphabet: &str) -> RResult<Array> {
        let v = CharVocab::new(alphabet, None);
        Ok(id_rows(&ids, "char_texts: ids")?
            .iter()
            .map(|r| Dynamic::from(v.decode(r)))
            .collect())
    }
    /// Rewards of grouped toy completions (completion i answers `rows[i / group]`): for
    /// `"sudoku"` the cell accuracy (rows `Puzzle`/`Solution`, 16 digit ids per completion),
    /// for `"countdown"` the toy Countdown reward over `countdown_alphabet()` (rows
    /// `input`/`output`: 1.0 correct, 0.1 the right numbers but a wrong value, else 0.0).
    /// A reward of 1.0 means solved. Returns one float per completion. (`task("sudoku:toy")`
    /// gives the same through `t.judge(rollout, rows)`.)
    #[rhai_fn(return_raw)]
    pub fn toy_rewards(
        task: &str,
        completions: Dynamic,
        rows: Array,
        group: i64,
    ) -> RResult<Array> {
        rewards(task, completions, rows, group, "toy_rewards")
    }
    /// The reference answer of a toy row as token ids: the Sudoku `Solution` digits, or the
    /// Countdown `expression` (spaces removed) over `countdown_alphabet()`. IGPO's hints are
    /// cut from it.
    #[rhai_fn(return_raw)]
    pub fn toy_answer(task: &str, row: Dynamic) -> RResult<Array> {
        let t = toy(task, "toy_answer")?;
        let text = t
            .reference(&example_of(&row)?)
            .map_err(fail("toy_answer"))?;
        let v = t.vocab().ok_or_else(|| err("toy_answer: not a toy task"))?;
        Ok(ids(v
            .encode(&text)
            .map_err(|e| err(format!("toy_answer: {e}")))?)
        .cast())
    }
    /// Token ids of a digit string (`'0'..='9'` → 0..=9), e.g. a Sudoku `Puzzle`:
    /// `digit_ids("3102")` is `[3, 1, 0, 2]`.
    #[rhai_fn(name = "digit_ids", return_raw)]
    pub fn digit_ids(text: &str) -> RResult<Array> {
        CharVocab::digits()
            .encode(text)
            .map(|v| ids(v).cast())
            .map_err(|e| err(format!("digit_ids: {e}")))
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
        let v = CharVocab::digits();
        Ok(id_rows(&ids, "digit_texts: ids")?
            .iter()
            .map(|r| Dynamic::from(v.decode(r)))
            .collect())
    }
    /// Sudoku cell accuracy of generated grids: for completion i (16 ids, the whole grid
    /// row-major, id = digit) and data row `rows[i]` (`Puzzle`/`Solution` strings, as from
    /// `sudoku_puzzles`), the fraction of the puzzle's blanks filled with the solution's digit.
    /// `completions` is a Tensor `[B, 16]` or arrays of ids; returns B floats.
    #[rhai_fn(name = "cell_accuracy", return_raw)]
    pub fn cell_accuracy1(completions: Dynamic, rows: Array) -> RResult<Array> {
        rewards("sudoku", completions, rows, 1, "cell_accuracy")
    }
    /// Cell accuracy of grouped completions (GRPO rollouts with `repeat: group`): completion
    /// i is scored against `rows[i / group]`; returns one float per completion (the d1 Sudoku
    /// reward).
    #[rhai_fn(name = "cell_accuracy", return_raw)]
    pub fn cell_accuracy_grouped(completions: Dynamic, rows: Array, group: i64) -> RResult<Array> {
        rewards("sudoku", completions, rows, group, "cell_accuracy")
    }
    /// Per-cell Sudoku rewards of grouped completions (as `cell_accuracy`): an f32 Tensor
    /// `[B, 16]`, 1.0 where completion i fills a blank of `rows[i / group]` correctly and 0.0
    /// elsewhere; its row mean over the blanks is the `cell_accuracy` reward. For per-cell
    /// (token-level) credit in GRPO.
    #[rhai_fn(return_raw)]
    pub fn cell_rewards(completions: Dynamic, rows: Array, group: i64) -> RResult<ScriptTensor> {
        let t = toy("sudoku", "cell_rewards")?;
        let w = "cell_rewards";
        let rows = for_each(&*t, completions, &rows, group, w, |row, text| {
            let p = row.first_text(&["Puzzle", "puzzle"]).map_err(fail(w))?;
            let s = row.first_text(&["Solution", "solution"]).map_err(fail(w))?;
            let mut r = sudoku_cell_rewards(text, &p, &s);
            r.resize(16, 0.0);
            Ok(r)
        })?;
        let n = rows.len();
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        candle_core::Tensor::from_vec(flat, (n, 16), &candle_core::Device::Cpu)
            .map(ScriptTensor::new)
            .map_err(script_err)
    }
    /// The task's own vocabulary, for a toy task's prompts or answers as token ids:
    /// `task("sudoku:toy").encode("3102")` is `[3, 1, 0, 2]`.
    #[rhai_fn(return_raw)]
    pub fn encode(t: &mut super::super::tasks::ScriptTask, text: &str) -> RResult<Dynamic> {
        let v = t.0.vocab().ok_or_else(|| {
            err(format!(
                "encode: task `{}` has no vocabulary of its own (use the model's tokenizer)",
                t.0.name()
            ))
        })?;
        to_script(v.encode(text).map_err(|e| err(format!("encode: {e}")))?)
    }
}

/// Registers the toy-task helpers.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(toy_api).into());
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(e.contains("Solution"), "{e}");
        let e = engine
            .eval::<Array>(r#"char_ids(["12"], #{ alphabet: "0123456789", lenght: 3 })"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("char_ids") && e.contains("`lenght`") && e.contains("`length`"),
            "{e}"
        );
    }
}

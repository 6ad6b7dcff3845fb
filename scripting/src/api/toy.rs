//! Token-level toy-task helpers for models without a tokenizer: digit and character strings ↔
//! token ids and grouped rewards of generated ids, over the core toy tasks
//! (`workbench_core::tasks::toy`: `sudoku:toy`, `countdown:toy`), which `task(...)` also gives
//! with `judge`/`evaluate`.

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::data::Example;
use workbench_core::tasks::toy::{self, CharVocab, COUNTDOWN_ALPHABET};
use workbench_core::tasks::{task_by_name, Task};
use workbench_core::train::options::CharIdsOptions;

use super::convert::{err, fail, options, script_err, to_script, value, IntoScript, RResult};
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

fn toy(name: &str, what: &str) -> RResult<Box<dyn Task>> {
    match name {
        "sudoku" | "countdown" => task_by_name(&format!("{name}:toy")).map_err(script_err),
        _ => Err(err(format!(
            "{what}: unknown toy task \"{name}\" (expected \"sudoku\" or \"countdown\")"
        ))),
    }
}

/// Completion id rows, data rows and group of a grouped toy call, converted.
fn grouped(
    c: Dynamic,
    rows: &Array,
    group: i64,
    w: &str,
) -> RResult<(Vec<Vec<u32>>, Vec<Example>, usize)> {
    let comps = id_rows(&c, &format!("{w}: completions"))?;
    let rows = rows.iter().map(example_of).collect::<RResult<Vec<_>>>()?;
    let g = usize::try_from(group)
        .map_err(|_| err(format!("{w}: group must be at least 1, found {group}")))?;
    Ok((comps, rows, g))
}

fn rewards(task: &str, c: Dynamic, rows: Array, group: i64, w: &str) -> RResult<Array> {
    let t = toy(task, w)?;
    let (c, rows, g) = grouped(c, &rows, group, w)?;
    let r = toy::grouped_rewards(&*t, &c, &rows, g).map_err(fail(w))?;
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
        let o: CharIdsOptions = options("char_ids", opts)?;
        let texts: Vec<String> = value(&texts.into(), "char_ids: texts", "an array of strings")?;
        let rows = toy::char_ids(&texts, &o).map_err(fail("char_ids"))?;
        Ok(to_script(rows)?.cast())
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
        let ids = toy::answer_ids(&*t, &example_of(&row)?).map_err(fail("toy_answer"))?;
        Ok(to_script(ids)?.cast())
    }
    /// Token ids of a digit string (`'0'..='9'` → 0..=9), e.g. a Sudoku `Puzzle`:
    /// `digit_ids("3102")` is `[3, 1, 0, 2]`.
    #[rhai_fn(name = "digit_ids", return_raw)]
    pub fn digit_ids(text: &str) -> RResult<Array> {
        let ids = CharVocab::digits()
            .encode(text)
            .map_err(fail("digit_ids"))?;
        Ok(to_script(ids)?.cast())
    }
    /// Token ids of each digit string of an array: `digit_ids(["12", "34"])` is
    /// `[[1, 2], [3, 4]]`.
    #[rhai_fn(name = "digit_ids", return_raw)]
    pub fn digit_ids_all(texts: Array) -> RResult<Array> {
        let texts: Vec<String> = value(&texts.into(), "digit_ids", "an array of strings")?;
        texts
            .iter()
            .map(|s| digit_ids(s).map(Dynamic::from_array))
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
        let w = "cell_rewards";
        let (c, rows, g) = grouped(completions, &rows, group, w)?;
        let r = toy::grouped_cell_rewards(&c, &rows, g).map_err(fail(w))?;
        let n = r.len();
        candle_core::Tensor::from_vec(r.concat(), (n, 16), &candle_core::Device::Cpu).script()
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

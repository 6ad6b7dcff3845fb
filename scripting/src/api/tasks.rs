//! Tasks, rewards, datasets and generators: `task(name)`, `t.prompt`, `t.reward`,
//! `t.evaluate`, `load_data`, `sudoku_puzzles`, `countdown_problems`.

use std::sync::Arc;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::data::{Example, Origin};
use workbench_core::tasks::{task_by_name, PromptStyle, Task};

use super::convert::{
    check_keys, dynamic_to_json, err, json_to_dynamic, opt_f64, script_err, RResult,
};

/// A task (prompts, answer extraction, rewards).
#[derive(Clone)]
pub struct ScriptTask(pub Arc<dyn Task>);

pub(crate) fn example_of(row: &Dynamic) -> RResult<Example> {
    match dynamic_to_json(row) {
        serde_json::Value::Object(fields) => Ok(Example::new(fields, Origin::memory(0))),
        _ => Err(err(format!(
            "expected a data row (a map), found {}",
            row.type_name()
        ))),
    }
}

fn example_to_dynamic(e: &Example) -> Dynamic {
    json_to_dynamic(&serde_json::Value::Object(e.fields.clone()))
}

#[export_module]
mod tasks_api {
    use super::*;

    /// The task named `name`: gsm8k, math500, countdown, sudoku, amc, aime (plus variants such
    /// as `gsm8k:igpo`, `math500:verify`; see docs/tasks.md).
    #[rhai_fn(return_raw)]
    pub fn task(name: &str) -> RResult<ScriptTask> {
        task_by_name(name)
            .map(|t| ScriptTask(Arc::from(t)))
            .map_err(script_err)
    }
    /// The task's name.
    #[rhai_fn(get = "name", pure)]
    pub fn name(t: &mut ScriptTask) -> String {
        t.0.name().to_string()
    }
    /// The prompt of a data row in a convention (`d1_train`, `d1_eval`, `mdpo`, `igpo`):
    /// `#{ user, prefill }` — `user` is the user turn, `prefill` the text to append after
    /// the chat template (d1 evaluation: `<reasoning>`).
    #[rhai_fn(return_raw)]
    pub fn prompt(t: &mut ScriptTask, row: Dynamic, style: &str) -> RResult<Map> {
        let style = PromptStyle::from_name(style).map_err(script_err)?;
        let p = t.0.prompt(&example_of(&row)?, style).map_err(script_err)?;
        let mut m = Map::new();
        m.insert("user".into(), p.user.into());
        m.insert("prefill".into(), p.assistant_prefill.into());
        Ok(m)
    }
    /// The training reward of `completion` for a data row:
    /// `#{ total, components: #{name: value}, correct, extracted }`.
    #[rhai_fn(return_raw)]
    pub fn reward(t: &mut ScriptTask, row: Dynamic, completion: &str) -> RResult<Map> {
        let r =
            t.0.reward(&example_of(&row)?, completion)
                .map_err(script_err)?;
        let mut m = Map::new();
        m.insert("total".into(), r.total.into());
        m.insert(
            "components".into(),
            r.components
                .iter()
                .map(|(k, v)| (k.as_str().into(), Dynamic::from(*v)))
                .collect::<Map>()
                .into(),
        );
        m.insert("correct".into(), r.correct.into());
        m.insert(
            "extracted".into(),
            r.extracted.map_or(Dynamic::UNIT, Dynamic::from),
        );
        Ok(m)
    }
    /// The evaluation verdict (d1's parsers): `#{ correct, score, weight, extracted }`; for
    /// Sudoku `score` is the fraction of blanks filled correctly and `weight` the blanks.
    #[rhai_fn(return_raw)]
    pub fn evaluate(t: &mut ScriptTask, row: Dynamic, completion: &str) -> RResult<Map> {
        let e =
            t.0.evaluate(&example_of(&row)?, completion)
                .map_err(script_err)?;
        let mut m = Map::new();
        m.insert("correct".into(), e.correct.into());
        m.insert("score".into(), e.score.into());
        m.insert("weight".into(), e.weight.into());
        m.insert(
            "extracted".into(),
            e.extracted.map_or(Dynamic::UNIT, Dynamic::from),
        );
        Ok(m)
    }
    /// The reference answer of a data row.
    #[rhai_fn(return_raw)]
    pub fn reference(t: &mut ScriptTask, row: Dynamic) -> RResult<String> {
        t.0.reference(&example_of(&row)?).map_err(script_err)
    }
    /// Loads a JSONL or CSV file (by extension) as an array of row maps; errors name the
    /// file, the line and the problem.
    #[rhai_fn(return_raw)]
    pub fn load_data(path: &str) -> RResult<Array> {
        let ds = workbench_core::data::load_file(path).map_err(script_err)?;
        Ok(ds.iter().map(example_to_dynamic).collect())
    }
    /// `n` seeded 4×4 Sudoku puzzles with a unique solution and `blanks` empty cells, as rows
    /// `#{ Puzzle, Solution }` like the shipped test set.
    #[rhai_fn(return_raw)]
    pub fn sudoku_puzzles(seed: i64, n: i64, blanks: i64) -> RResult<Array> {
        let ps = workbench_core::tasks::sudoku::generate(
            seed as u64,
            n.max(0) as usize,
            blanks.max(0) as usize,
        )
        .map_err(script_err)?;
        Ok(ps
            .iter()
            .enumerate()
            .map(|(i, p)| example_to_dynamic(&p.to_example(i)))
            .collect())
    }
    /// `n` seeded Countdown problems with 3 numbers in 1..=100 and a reachable target, as rows
    /// `#{ input, output, expression }` like the shipped test set.
    #[rhai_fn(return_raw)]
    pub fn countdown_problems(seed: i64, n: i64) -> RResult<Array> {
        countdown_problems_with(seed, n, Map::new())
    }
    /// `countdown_problems` with generator options (d1's defaults): `count` (numbers per
    /// problem, 3; 2–6), `min_number` (1), `max_number` (100), `min_target` (1),
    /// `max_target` (100). E.g. a toy set: `countdown_problems(0, 1000, #{ max_number: 20 })`.
    #[rhai_fn(name = "countdown_problems", return_raw)]
    pub fn countdown_problems_with(seed: i64, n: i64, opts: Map) -> RResult<Array> {
        use workbench_core::tasks::countdown::CountdownOptions;
        let what = "countdown_problems";
        check_keys(
            &opts,
            &[
                "count",
                "min_number",
                "max_number",
                "min_target",
                "max_target",
            ],
            what,
        )?;
        let d = CountdownOptions::default();
        let int = |k: &str, dflt: i64| -> RResult<i64> {
            let v = opt_f64(&opts, k, dflt as f64, what)?;
            if v.fract() != 0.0 {
                return Err(err(format!("{what}: `{k}` must be an integer, found {v}")));
            }
            Ok(v as i64)
        };
        let o = CountdownOptions {
            count: int("count", d.count as i64)?.max(0) as usize,
            min_number: int("min_number", d.min_number)?,
            max_number: int("max_number", d.max_number)?,
            min_target: int("min_target", d.min_target)?,
            max_target: int("max_target", d.max_target)?,
        };
        let ps = workbench_core::tasks::countdown::generate(seed as u64, n.max(0) as usize, &o)
            .map_err(|e| err(format!("{what}: {e}")))?;
        Ok(ps
            .iter()
            .enumerate()
            .map(|(i, p)| example_to_dynamic(&p.to_example(i)))
            .collect())
    }
}

/// Registers `Task` and the data functions.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptTask>("Task");
    engine.register_global_module(exported_module!(tasks_api).into());
}

//! Tasks, rewards, datasets and generators: `task(name)`, `t.prompts`, `t.judge(rollout, rows)`,
//! `t.evaluate`, `t.splits`, `load_data`, `sudoku_puzzles`, `countdown_problems`. Text and toy
//! tasks answer the same calls (the core decodes toy completions with the task's vocabulary).

use std::sync::Arc;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::data::{Example, Origin};
use workbench_core::sampler::{PromptInput, SamplerConfig};
use workbench_core::tasks::countdown::CountdownOptions;
use workbench_core::tasks::judge::{self, EvalRequest};
use workbench_core::tasks::{task_by_name, PromptStyle, Task};

use super::convert::{err, fail, options, options2, script_err, to_json, to_script, RResult};
use super::model::ScriptModel;
use super::sampler::ScriptRollout;

/// A task (prompts, answer extraction, rewards, data splits).
#[derive(Clone)]
pub struct ScriptTask(pub Arc<dyn Task>);

/// A data row (a map) as a core example.
pub(crate) fn example_of(row: &Dynamic) -> RResult<Example> {
    match to_json(row, "a data row")? {
        serde_json::Value::Object(fields) => Ok(Example::new(fields, Origin::memory(0))),
        _ => Err(err(format!(
            "expected a data row (a map), found {}",
            row.type_name()
        ))),
    }
}

fn examples_of(rows: &Array) -> RResult<Vec<Example>> {
    rows.iter().map(example_of).collect()
}

fn rows_of(examples: impl IntoIterator<Item = Example>) -> RResult<Array> {
    examples
        .into_iter()
        .map(|e| to_script(serde_json::Value::Object(e.fields)))
        .collect()
}

#[export_module]
mod tasks_api {
    use super::*;

    /// The task named `name`: gsm8k, math500, countdown, sudoku, amc, aime (plus variants such
    /// as `gsm8k:igpo`, `math500:verify`), and the token-level toy tasks `sudoku:toy`,
    /// `countdown:toy` (see docs/tasks.md).
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
    /// The task's data: `#{ train, test, train_source, generated }` — the shipped training and
    /// test files (`()` when none ships), the public training set the reference used, and
    /// whether training problems can be generated.
    #[rhai_fn(get = "splits", pure, return_raw)]
    pub fn splits(t: &mut ScriptTask) -> RResult<Dynamic> {
        to_script(t.0.splits())
    }
    /// Whether the task has its own token vocabulary (a toy task for models without a tokenizer).
    #[rhai_fn(get = "is_toy", pure)]
    pub fn is_toy(t: &mut ScriptTask) -> bool {
        t.0.vocab().is_some()
    }
    /// The prompt of a data row in a convention (`d1_train`, `d1_eval`, `mdpo`, `igpo`):
    /// `#{ user, assistant_prefill }` — the user turn and the text to append after the chat
    /// template (d1 evaluation: `<reasoning>`); `prefill` is the same text.
    #[rhai_fn(return_raw)]
    pub fn prompt(t: &mut ScriptTask, row: Dynamic, style: &str) -> RResult<Dynamic> {
        let style = PromptStyle::from_name(style).map_err(script_err)?;
        let p = t.0.prompt(&example_of(&row)?, style).map_err(script_err)?;
        let mut m: Map = to_script(&p)?.cast();
        m.insert("prefill".into(), p.assistant_prefill.into());
        Ok(m.into())
    }
    /// The prompts of `rows` in `style`, ready for `generate`: `#{ prompts, chat, prefill }` —
    /// strings to chat-template for text tasks, token ids (the task's vocabulary) for toy
    /// tasks: `let p = t.prompts(rows, "d1_train"); generate(m, p.prompts, s + #{ chat: p.chat,
    /// prefill: p.prefill })`.
    #[rhai_fn(return_raw)]
    pub fn prompts(t: &mut ScriptTask, rows: Array, style: &str) -> RResult<Map> {
        let style = PromptStyle::from_name(style).map_err(script_err)?;
        let (ps, req) =
            judge::prompts_for(&*t.0, &examples_of(&rows)?, style).map_err(fail("prompts"))?;
        let prompts: Array = ps
            .into_iter()
            .map(|p| match p {
                PromptInput::Text(s) => Ok(Dynamic::from(s)),
                PromptInput::Ids(ids) => to_script(ids),
            })
            .collect::<RResult<_>>()?;
        let mut m = Map::new();
        m.insert("prompts".into(), prompts.into());
        m.insert("chat".into(), req.chat.into());
        m.insert("prefill".into(), req.prefill.into());
        Ok(m)
    }
    /// The training reward of `completion` for a data row:
    /// `#{ total, components: #{name: value}, correct, extracted }`.
    #[rhai_fn(return_raw)]
    pub fn reward(t: &mut ScriptTask, row: Dynamic, completion: &str) -> RResult<Dynamic> {
        to_script(
            t.0.reward(&example_of(&row)?, completion)
                .map_err(script_err)?,
        )
    }
    /// The training rewards of every completion of `rollout`, row b answering
    /// `rows[rollout.prompt_index[b]]`: `#{ rewards: [f64], correct: [bool], extracted: [...] }`.
    /// Toy tasks read the ids through their vocabulary, text tasks the decoded texts.
    #[rhai_fn(return_raw)]
    pub fn judge(t: &mut ScriptTask, rollout: ScriptRollout, rows: Array) -> RResult<Dynamic> {
        to_script(judge::judge(&*t.0, &examples_of(&rows)?, &rollout.0).map_err(fail("judge"))?)
    }
    /// The evaluation verdict (d1's parsers): `#{ correct, score, weight, extracted }`; for
    /// Sudoku `score` is the fraction of blanks filled correctly and `weight` the blanks.
    #[rhai_fn(name = "evaluate", return_raw)]
    pub fn evaluate(t: &mut ScriptTask, row: Dynamic, completion: &str) -> RResult<Dynamic> {
        to_script(
            t.0.evaluate(&example_of(&row)?, completion)
                .map_err(script_err)?,
        )
    }
    /// Greedy evaluation of `model` on `rows`: generates with the sampler options of `opts`
    /// (any `generate` sampler field) plus `style` (prompt convention, default `d1_eval`) and
    /// `batch` (rows per generation, 16), with dropout off, and scores each completion with the
    /// task's evaluation. Returns `#{ n, accuracy, solved, scores }` (accuracy = Σ score·weight
    /// / Σ weight; Sudoku: correct blanks / all blanks; solved = share fully correct).
    #[rhai_fn(name = "evaluate", return_raw)]
    pub fn evaluate_model(
        t: &mut ScriptTask,
        model: ScriptModel,
        rows: Array,
        opts: Map,
    ) -> RResult<Dynamic> {
        let (req, cfg): (EvalRequest, SamplerConfig) =
            options2("evaluate", opts, EvalRequest::KEYS)?;
        let m = model.model.with_training(false);
        let s = judge::evaluate(
            &*t.0,
            &m,
            model.tokenizer.as_deref(),
            &examples_of(&rows)?,
            &cfg,
            &req,
        )
        .map_err(fail("evaluate"))?;
        to_script(s)
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
        rows_of(ds.examples().to_vec())
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
        rows_of(ps.iter().enumerate().map(|(i, p)| p.to_example(i)))
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
        let o: CountdownOptions = options("countdown_problems", opts)?;
        let ps = workbench_core::tasks::countdown::generate(seed as u64, n.max(0) as usize, &o)
            .map_err(fail("countdown_problems"))?;
        rows_of(ps.iter().enumerate().map(|(i, p)| p.to_example(i)))
    }
}

/// Registers `Task` and the data functions.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptTask>("Task");
    engine.register_global_module(exported_module!(tasks_api).into());
}

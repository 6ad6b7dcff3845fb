//! Countdown: combine the given numbers with `+ - * /` to reach a target.
//!
//! Reference: d1 `diffu-grpo/data_utils.py::get_countdown_questions` (prompt),
//! `diffu-grpo/reward_func.py::compute_score` (0 without an `<answer>` block; 0.1 when the
//! numbers used are not exactly the given multiset, or the expression is invalid or wrong; 1.0
//! when `|value − target| < 1e-5`) and `eval/parse_and_get_acc.py::parse_countdown_answers`
//! (the last `\boxed{}` — else the whole text —, `\div`/`\times`/`\cdot` mapped to operators,
//! `expr = target` reduced to `expr`). Expressions are evaluated exactly by [`expr`], not with
//! Python's `eval`. Data: `numbers`/`nums` (a list) or `input` (`"a,b,c"`), and `target` or
//! `output`.

pub mod expr;
pub mod generate;

pub use expr::{eval_expression, Number};
pub use generate::{generate, CountdownOptions, CountdownProblem};

use super::pytext::{digit_runs, py_strip};
use super::{clean, d1, prompts, Evaluation, Prompt, PromptStyle, Reward, Task, TaskError};
use crate::data::Example;
use serde_json::Value;

/// A Countdown problem's numbers and target, read from an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The numbers to use, each exactly once.
    pub numbers: Vec<i64>,
    /// The target value.
    pub target: i64,
}

impl Problem {
    /// Reads `numbers` / `nums` (JSON array of integers) or `input` (`"a,b,c"`), and `target`
    /// or `output` (integer or integer string).
    pub fn from_example(example: &Example) -> Result<Problem, TaskError> {
        let (field, v) = example.first_field(&["numbers", "nums", "input"])?;
        let numbers: Vec<i64> = match v {
            Value::Array(items) => items
                .iter()
                .map(json_int)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| example.bad(field, "expected a list of integers"))?,
            Value::String(s) => parse_number_list(s)
                .ok_or_else(|| example.bad(field, "expected integers like \"3,5,7\""))?,
            _ => return Err(example.bad(field, "expected a list or a string").into()),
        };
        if numbers.is_empty() {
            return Err(example.bad(field, "no numbers").into());
        }
        let (tfield, t) = example.first_field(&["target", "output"])?;
        let target = json_int(t).ok_or_else(|| example.bad(tfield, "expected an integer"))?;
        Ok(Problem { numbers, target })
    }

    /// The numbers as Python prints a list: `[30, 100, 93]`.
    pub fn numbers_list(&self) -> String {
        let parts: Vec<String> = self.numbers.iter().map(|n| n.to_string()).collect();
        format!("[{}]", parts.join(", "))
    }
}

fn json_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn parse_number_list(s: &str) -> Option<Vec<i64>> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    s.split(',').map(|p| p.trim().parse().ok()).collect()
}

/// d1 `validate_equation`: the integers of `re.findall(r"\d+", equation)` are exactly the given
/// multiset.
pub fn uses_exactly(equation: &str, numbers: &[i64]) -> bool {
    let mut found = digit_runs(equation);
    let mut given: Vec<String> = numbers.iter().map(|n| n.to_string()).collect();
    found.sort();
    given.sort();
    found == given
}

/// d1 `compute_score` (the training reward) for one completion: 0.0, 0.1 or 1.0.
pub fn countdown_reward(completion: &str, numbers: &[i64], target: i64) -> f64 {
    let Some(equation) = d1::last_answer_block(completion) else {
        return 0.0;
    };
    if !uses_exactly(equation, numbers) {
        return 0.1;
    }
    match eval_expression(equation) {
        Some(v) if expr::close_to(v, target) => 1.0,
        _ => 0.1,
    }
}

/// d1's evaluation-time extraction of the expression (see the module docs).
pub fn eval_equation(text: &str) -> String {
    let equation = match d1::last_boxed_only_string(text) {
        None => {
            // remove_boxed(None) raises: fall back to the first <answer> block, else the text
            match super::pytext::search_between(text, "<answer>", "</answer>") {
                Some(inner) => py_strip(inner).to_string(),
                None => text.to_string(),
            }
        }
        Some(s) => match d1::remove_boxed(Some(&s)) {
            Ok(r) => r,
            Err(d1::Raised) => match super::pytext::search_between(text, "<answer>", "</answer>") {
                Some(inner) => py_strip(inner).to_string(),
                None => text.to_string(),
            },
        },
    };
    let equation = equation
        .replace("\\div", "/")
        .replace("\\times", "*")
        .replace("\\cdot", "*");
    match expression_before_equals(&equation) {
        Some(e) => py_strip(e).to_string(),
        None => equation,
    }
}

/// `re.search(r"([0-9+\-*/() ]+)=[0-9. ]+", s).group(1)`.
fn expression_before_equals(s: &str) -> Option<&str> {
    let in_class = |b: u8| b.is_ascii_digit() || b"+-*/() ".contains(&b);
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !in_class(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && in_class(bytes[i]) {
            i += 1;
        }
        // the greedy run [start, i) must be followed by '=' and one of [0-9. ]
        if i < bytes.len()
            && bytes[i] == b'='
            && bytes
                .get(i + 1)
                .is_some_and(|&b| b.is_ascii_digit() || b == b'.' || b == b' ')
        {
            return Some(&s[start..i]);
        }
    }
    None
}

/// d1 `parse_countdown_answers` for one generation: whether the extracted expression uses
/// exactly the numbers and evaluates to the target (within 1e-5).
pub fn countdown_eval(text: &str, numbers: &[i64], target: i64) -> (bool, String) {
    let equation = eval_equation(text);
    let ok = uses_exactly(&equation, numbers)
        && eval_expression(&equation).is_some_and(|v| expr::close_to(v, target));
    (ok, equation)
}

/// The Countdown task (3 numbers in d1; any count works).
#[derive(Clone, Debug, Default)]
pub struct Countdown;

impl Countdown {
    /// The Countdown task.
    pub fn new() -> Self {
        Countdown
    }
}

impl Task for Countdown {
    fn name(&self) -> &str {
        "countdown"
    }

    fn prompt(&self, example: &Example, style: PromptStyle) -> Result<Prompt, TaskError> {
        let p = Problem::from_example(example)?;
        let nums = p.numbers_list();
        let t = p.target;
        Ok(match style {
            PromptStyle::D1Train => Prompt::user(format!(
                "{}\nUsing only the numbers {nums}, create an arithmetic expression that evaluates to exactly {t}. You must use all numbers from the list, and each number must be used exactly once. You may use the operations +, -, *, and / as needed. After reasoning, provide only your final expression inside <answer></answer> tags without including an equals sign or the target number. For example, if the numbers are [2, 3, 4] and the target is 5, a valid answer is: <answer>\n2*4-3\n</answer>",
                prompts::D1_TRAIN_SYSTEM
            )),
            PromptStyle::D1Eval => Prompt::eval(format!(
                "{}\n\nNumbers: {nums}\nTarget: {t}",
                prompts::D1_EVAL_COUNTDOWN_SYSTEM
            )),
            PromptStyle::Mdpo => Prompt::user(format!(
                "{}\n\nNumbers: {nums}\nTarget: {t}",
                prompts::MDPO_COUNTDOWN_SYSTEM
            )),
            PromptStyle::Igpo => {
                return Err(TaskError::UnsupportedStyle {
                    task: self.name().into(),
                    style: style.name(),
                })
            }
        })
    }

    fn reference(&self, example: &Example) -> Result<String, TaskError> {
        Ok(Problem::from_example(example)?.target.to_string())
    }

    fn reference_solution(&self, example: &Example) -> Option<String> {
        example.text("expression").ok()
    }

    fn extract_answer(&self, completion: &str) -> Option<String> {
        d1::last_answer_block(clean(completion)).map(str::to_string)
    }

    fn reward(&self, example: &Example, completion: &str) -> Result<Reward, TaskError> {
        let p = Problem::from_example(example)?;
        let c = clean(completion);
        let r = countdown_reward(c, &p.numbers, p.target);
        Ok(Reward::from_parts(
            &[("countdown", r)],
            r == 1.0,
            self.extract_answer(c),
        ))
    }

    fn evaluate(&self, example: &Example, completion: &str) -> Result<Evaluation, TaskError> {
        let p = Problem::from_example(example)?;
        let (ok, eq) = countdown_eval(clean(completion), &p.numbers, p.target);
        Ok(Evaluation::binary(ok, Some(eq)))
    }
}

//! Tasks: prompts, answer extraction, rewards and evaluation for the benchmarks the
//! masked-diffusion RL papers train and report on (GSM8K, MATH-500, Countdown, 4×4 Sudoku,
//! AMC, AIME).
//!
//! Reference: d1 (dllm-reasoning/d1: `diffu-grpo/reward_func.py`, `diffu-grpo/data_utils.py`,
//! `eval/parse_and_get_acc.py`), reproduced exactly in [`d1`]; IGPO (facebookresearch/igpo
//! `utils/reward_func.py`) for the `:igpo` variants; MDPO's prompts; math-verify's behaviour for
//! the `:verify` judges ([`math_equiv`]). See `shared/reference/ALGORITHMS.md` §5 and
//! `PROMPTS.md`.
//!
//! One trait, [`Task`]: `prompt` (user-message text plus an assistant prefill in a named
//! [`PromptStyle`]; the chat template is applied by `crate::tokenizer::Tokenizer::chat`),
//! `extract_answer`, `reward` (a [`Reward`] with named components, as the d1 reward functions
//! are summed) and `evaluate` (an [`Evaluation`] as d1's evaluation parser scores it). Tasks are
//! looked up by name with [`task_by_name`]. Completions may end with special tokens
//! (`<|eot_id|>`, `<|endoftext|>`); those are removed first
//! ([`pytext::strip_trailing_special_tokens`]), as decoding with `skip_special_tokens` would.

pub mod countdown;
pub mod d1;
pub mod gsm8k;
pub mod judge;
pub mod math;
pub mod math_equiv;
pub mod prompts;
pub mod pytext;
pub mod sudoku;
pub mod toy;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::{DataError, Example};

/// A reward: named components (summed in the reference's order into `total`), whether the
/// completion counts as correct, and the answer extracted from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reward {
    /// Each reward function's value, by name (`xmlcount`, `correctness`, …).
    pub components: BTreeMap<String, f64>,
    /// Sum of the components, added in the order the reference sums its reward functions.
    pub total: f64,
    /// Whether the answer is correct (the correctness component is at its maximum).
    pub correct: bool,
    /// The extracted answer, when one was found.
    pub extracted: Option<String>,
}

impl Reward {
    /// Builds a reward from `(name, value)` pairs in summation order.
    pub fn from_parts(parts: &[(&str, f64)], correct: bool, extracted: Option<String>) -> Self {
        let mut total = 0.0;
        let mut components = BTreeMap::new();
        for (name, v) in parts {
            total += v;
            components.insert((*name).to_string(), *v);
        }
        Reward {
            components,
            total,
            correct,
            extracted,
        }
    }
}

/// The evaluation of one completion as the reference's evaluation script scores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Fully correct.
    pub correct: bool,
    /// Score in [0, 1] (1/0 for most tasks; the fraction of blanks filled correctly for Sudoku).
    pub score: f64,
    /// Weight for aggregation: accuracy = Σ score·weight / Σ weight (the number of blanks for
    /// Sudoku, as d1 reports cell accuracy over all blanks; 1 otherwise).
    pub weight: f64,
    /// The extracted answer (as the evaluation parser saw it).
    pub extracted: Option<String>,
}

impl Evaluation {
    fn binary(correct: bool, extracted: Option<String>) -> Self {
        Evaluation {
            correct,
            score: if correct { 1.0 } else { 0.0 },
            weight: 1.0,
            extracted,
        }
    }
}

/// A prompt: the user message's content (the chat template is applied elsewhere) and text to
/// append after the template's generation prompt (`<reasoning>` for d1 evaluation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// The user turn's content.
    pub user: String,
    /// Appended after the assistant header (empty for training prompts).
    pub assistant_prefill: String,
}

impl Prompt {
    fn user(user: String) -> Self {
        Prompt {
            user,
            assistant_prefill: String::new(),
        }
    }
    fn eval(user: String) -> Self {
        Prompt {
            user,
            assistant_prefill: prompts::D1_EVAL_REASONING_PREFILL.to_string(),
        }
    }
}

/// Named prompt conventions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromptStyle {
    /// d1 training prompts (`diffu-grpo/data_utils.py`), no prefill.
    D1Train,
    /// d1 evaluation prompts (`eval/*.py`): system prompt + `"\n\n"` + question, prefill
    /// `<reasoning>`.
    D1Eval,
    /// MDPO's prompts (math: problem + "Let's think step by step …"; Countdown: its CTD prompt).
    Mdpo,
    /// IGPO: the d1 training format with `\boxed{<Your answer>}` in the answer block
    /// ([`prompts::IGPO_SYSTEM`] + `"\n\n"` + question; IGPO's own GSM8K loader omits the
    /// `"\n\n"`, its MetaMath / DeepScaleR loaders — what it trained on — keep it, so we keep it).
    Igpo,
}

impl PromptStyle {
    /// Every style.
    pub const ALL: [PromptStyle; 4] = [
        PromptStyle::D1Train,
        PromptStyle::D1Eval,
        PromptStyle::Mdpo,
        PromptStyle::Igpo,
    ];

    /// The style's name: `d1_train`, `d1_eval`, `mdpo`, `igpo`.
    pub fn name(self) -> &'static str {
        match self {
            PromptStyle::D1Train => "d1_train",
            PromptStyle::D1Eval => "d1_eval",
            PromptStyle::Mdpo => "mdpo",
            PromptStyle::Igpo => "igpo",
        }
    }

    /// Looks a style up by [`PromptStyle::name`].
    pub fn from_name(name: &str) -> Result<Self, TaskError> {
        PromptStyle::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| TaskError::UnknownStyle(name.to_string()))
    }
}

/// Errors of task lookup and of reading a task's fields from an example.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// An example lacks a field or has a bad one (names file, line and field).
    #[error(transparent)]
    Data(#[from] DataError),
    /// No task has this name.
    #[error("unknown task `{0}` (known: {known})", known = task_names().join(", "))]
    UnknownTask(String),
    /// No prompt style has this name.
    #[error("unknown prompt style `{0}` (known: d1_train, d1_eval, mdpo, igpo)")]
    UnknownStyle(String),
    /// The task has no prompt in this style (e.g. Sudoku has no MDPO prompt).
    #[error("task `{task}` has no `{style}` prompt")]
    UnsupportedStyle {
        /// The task's name.
        task: String,
        /// The style's name.
        style: &'static str,
    },
    /// A generator option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

/// Which reward / judging rules a task uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scheme {
    /// d1's reward functions and evaluation parser (the default).
    D1,
    /// IGPO's rewards: IGPO xmlcount + correctness 3.0 on the first `\boxed{}`.
    Igpo,
    /// d1's reward structure with math-verify-style equivalence ([`math_equiv`]) as the judge.
    Verify,
}

/// A benchmark task.
pub trait Task: Send + Sync + std::fmt::Debug {
    /// The registry name (e.g. `gsm8k`, `math500:verify`).
    fn name(&self) -> &str;

    /// The prompt for `example` in `style`.
    fn prompt(&self, example: &Example, style: PromptStyle) -> Result<Prompt, TaskError>;

    /// The reference answer of `example` as text (also validates the example's fields).
    fn reference(&self, example: &Example) -> Result<String, TaskError>;

    /// A worked reference solution when the data has one (IGPO builds hints from it).
    fn reference_solution(&self, _example: &Example) -> Option<String> {
        None
    }

    /// The answer the training reward reads from a completion (`None`: nothing found).
    fn extract_answer(&self, completion: &str) -> Option<String>;

    /// The training reward of `completion` for `example`.
    fn reward(&self, example: &Example, completion: &str) -> Result<Reward, TaskError>;

    /// The evaluation score of `completion` for `example`.
    fn evaluate(&self, example: &Example, completion: &str) -> Result<Evaluation, TaskError>;

    /// The task's own token vocabulary (toy tasks on models without a tokenizer): prompts are
    /// encoded with it and completions decoded with it before `reward` / `evaluate`. `None`:
    /// text prompts through the model's tokenizer and chat template.
    fn vocab(&self) -> Option<&toy::CharVocab> {
        None
    }

    /// Where the task's training and test data come from.
    fn splits(&self) -> Splits {
        splits_of(self.name())
    }
}

/// A task's data: the shipped files under `data/`, and where training data comes from when
/// none is shipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Splits {
    /// The shipped training file, if any (none is shipped today: see `train_source`).
    pub train: Option<&'static str>,
    /// The shipped test file (evaluation only; never train on it).
    pub test: Option<&'static str>,
    /// The public training set the reference code trained on, to pass with `--set data=...`.
    pub train_source: &'static str,
    /// Whether seeded generators can make training problems (`sudoku_puzzles`,
    /// `countdown_problems`), distinct from the shipped test rows.
    pub generated: bool,
}

/// The data table of every task (by base name, without the `:variant`).
fn splits_of(name: &str) -> Splits {
    let base = name.split(':').next().unwrap_or(name);
    let toy = name.ends_with(":toy");
    let (test, train_source, generated) = match base {
        "gsm8k" => (
            "data/gsm8k_test.jsonl",
            "the GSM8K train split (openai/grade-school-math grade_school_math/data/train.jsonl, \
             7,473 rows), which d1 and IGPO train on",
            false,
        ),
        "math500" | "math" => (
            "data/math500_test.jsonl",
            "the MATH train split (Hendrycks et al., 7,500 problems), which d1 trains on \
             (IGPO: MetaMathQA / DeepScaleR)",
            false,
        ),
        "countdown" => (
            "data/countdown_cd3_test.jsonl",
            "the d1/TinyZero Countdown train set (Jiayi-Pan/Countdown-Tasks-3to4), or \
             generated problems",
            true,
        ),
        "sudoku" | "sudoku4x4" => (
            "data/sudoku_4x4_test.csv",
            "d1's 4x4 Sudoku training puzzles (dllm-reasoning/d1 dataset/), or generated puzzles",
            true,
        ),
        "amc" | "amc23" => (
            "data/amc23_test.jsonl",
            "none: AMC23 is evaluation-only (d1/IGPO train on MATH or DeepScaleR)",
            false,
        ),
        "aime" | "aime24" => (
            "data/aime24_test.jsonl",
            "none: AIME24 is evaluation-only (d1/IGPO train on MATH or DeepScaleR)",
            false,
        ),
        _ => ("", "unknown", false),
    };
    Splits {
        train: None,
        test: (!test.is_empty() && !toy).then_some(test),
        train_source: if toy {
            "generated problems (seeded)"
        } else {
            train_source
        },
        generated,
    }
}

/// Names accepted by [`task_by_name`].
pub fn task_names() -> &'static [&'static str] {
    &[
        "gsm8k",
        "gsm8k:igpo",
        "math500",
        "math500:verify",
        "math500:igpo",
        "countdown",
        "sudoku",
        "amc",
        "amc:igpo",
        "aime",
        "aime:igpo",
        "sudoku:toy",
        "countdown:toy",
    ]
}

/// Looks a task up by name: `gsm8k`, `math500`, `countdown`, `sudoku` (alias `sudoku4x4`),
/// `amc` (alias `amc23`), `aime` (alias `aime24`), optionally suffixed `:igpo` (IGPO rewards)
/// or, for `math500`, `:verify` (math-verify-style equivalence instead of d1's string match);
/// `sudoku:toy` and `countdown:toy` are the token-level toy tasks of [`toy`].
pub fn task_by_name(name: &str) -> Result<Box<dyn Task>, TaskError> {
    let unknown = || TaskError::UnknownTask(name.to_string());
    let (base, variant) = match name.split_once(':') {
        Some((b, v)) => (b, Some(v)),
        None => (name, None),
    };
    match (base, variant) {
        ("sudoku" | "sudoku4x4", Some("toy")) => return Ok(Box::new(toy::SudokuToy::default())),
        ("countdown", Some("toy")) => return Ok(Box::new(toy::CountdownToy::default())),
        _ => {}
    }
    let scheme = match variant {
        None | Some("d1") => Scheme::D1,
        Some("igpo") => Scheme::Igpo,
        Some("verify") => Scheme::Verify,
        Some(_) => return Err(unknown()),
    };
    Ok(match (base, scheme) {
        ("gsm8k", Scheme::D1 | Scheme::Igpo) => Box::new(gsm8k::Gsm8k::new(scheme)),
        ("math500" | "math", _) => Box::new(math::Math500::new(scheme)),
        ("countdown", Scheme::D1) => Box::new(countdown::Countdown::new()),
        ("sudoku" | "sudoku4x4", Scheme::D1) => Box::new(sudoku::Sudoku::new()),
        ("amc" | "amc23", Scheme::D1 | Scheme::Igpo) => {
            Box::new(math::NumericAnswer::new("amc", scheme))
        }
        ("aime" | "aime24", Scheme::D1 | Scheme::Igpo) => {
            Box::new(math::NumericAnswer::new("aime", scheme))
        }
        _ => return Err(unknown()),
    })
}

/// The completion with trailing special tokens removed.
pub(crate) fn clean(completion: &str) -> &str {
    pytext::strip_trailing_special_tokens(completion)
}

/// The question text of an example (`question`, else `problem`, else `prompt`).
pub(crate) fn question_text(example: &Example) -> Result<String, TaskError> {
    Ok(example.first_text(&["question", "problem", "prompt"])?)
}

/// The problem text of a math example (`problem`, else `question`, else `prompt`).
pub(crate) fn problem_text(example: &Example) -> Result<String, TaskError> {
    Ok(example.first_text(&["problem", "question", "prompt"])?)
}

//! MATH-500 and the numeric-answer competitions (AMC 2023, AIME 2024).
//!
//! Reference: d1 `diffu-grpo/data_utils.py::get_math_questions` (training prompt),
//! `diffu-grpo/reward_func.py::correctness_reward_func_math` (2.0 when Hendrycks' `is_equiv`
//! accepts the last `\boxed{}`) and `boxed_and_answer_tags_format_reward` (0.5 ×
//! `boxed_in_answer`, see [`d1`] for its escape quirk), summed in that order;
//! `eval/parse_and_get_acc.py::parse_math_answers` for evaluation; IGPO's rewards for `:igpo`;
//! math-verify behaviour ([`math_equiv`]) for `:verify` and for AMC / AIME, whose references are
//! numbers (`27.0`, `"025"`) that a string match would reject.

use super::math_equiv;
use super::{
    clean, d1, problem_text, prompts, Evaluation, Prompt, PromptStyle, Reward, Scheme, Task,
    TaskError,
};
use crate::data::Example;

fn math_prompt(problem: &str, style: PromptStyle) -> Prompt {
    match style {
        PromptStyle::D1Train => Prompt::user(format!(
            "{}\n\n{}\n\n{problem}",
            prompts::D1_TRAIN_SYSTEM,
            prompts::MATH_EXPERT_INSTRUCTION
        )),
        PromptStyle::D1Eval => {
            Prompt::eval(format!("{}\n\n{problem}", prompts::D1_EVAL_MATH500_SYSTEM))
        }
        PromptStyle::Mdpo => Prompt::user(format!("{problem}\n{}", prompts::MDPO_MATH_SUFFIX)),
        PromptStyle::Igpo => Prompt::user(format!("{}\n\n{problem}", prompts::IGPO_SYSTEM)),
    }
}

fn has_box(text: &str) -> bool {
    text.contains("\\boxed") || text.contains("\\fbox")
}

/// The MATH-500 task. Example fields: `problem`, and `answer` (preferred) or `solution` (whose
/// last `\boxed{}` is the answer, as d1 extracts it).
#[derive(Clone, Debug)]
pub struct Math500 {
    scheme: Scheme,
    name: String,
}

impl Math500 {
    /// A MATH-500 task judged by d1's string equivalence ([`Scheme::D1`]), math-verify-style
    /// equivalence ([`Scheme::Verify`]) or IGPO's rewards ([`Scheme::Igpo`]).
    pub fn new(scheme: Scheme) -> Self {
        let name = match scheme {
            Scheme::D1 => "math500",
            Scheme::Verify => "math500:verify",
            Scheme::Igpo => "math500:igpo",
        };
        Math500 {
            scheme,
            name: name.to_string(),
        }
    }
}

impl Task for Math500 {
    fn name(&self) -> &str {
        &self.name
    }

    fn prompt(&self, example: &Example, style: PromptStyle) -> Result<Prompt, TaskError> {
        Ok(math_prompt(&problem_text(example)?, style))
    }

    fn reference(&self, example: &Example) -> Result<String, TaskError> {
        if let Ok(a) = example.text("answer") {
            return Ok(a);
        }
        let solution = example
            .text("solution")
            .map_err(|_| example.missing("answer` or `solution"))?;
        d1::boxed_answer_d1(&solution).ok_or_else(|| {
            example
                .bad("solution", "no balanced \\boxed{} answer")
                .into()
        })
    }

    fn reference_solution(&self, example: &Example) -> Option<String> {
        example.text("solution").ok()
    }

    fn extract_answer(&self, completion: &str) -> Option<String> {
        let c = clean(completion);
        match self.scheme {
            Scheme::D1 => has_box(c).then(|| d1::math_response_answer_d1(c)),
            Scheme::Verify => math_equiv::extract_answer(c),
            Scheme::Igpo => Some(d1::igpo_extract_boxed(c)).filter(|s| !s.is_empty()),
        }
    }

    fn reward(&self, example: &Example, completion: &str) -> Result<Reward, TaskError> {
        let reference = self.reference(example)?;
        let c = clean(completion);
        let extracted = self.extract_answer(c);
        Ok(match self.scheme {
            Scheme::D1 => {
                let correctness = d1::math_correctness_reward(c, &reference);
                Reward::from_parts(
                    &[
                        ("correctness", correctness),
                        ("format", d1::math_format_reward(c)),
                    ],
                    correctness > 0.0,
                    extracted,
                )
            }
            Scheme::Verify => {
                let ok = math_equiv::verify(c, &reference);
                Reward::from_parts(
                    &[
                        ("correctness", if ok { 2.0 } else { 0.0 }),
                        ("format", d1::math_format_reward(c)),
                    ],
                    ok,
                    extracted,
                )
            }
            Scheme::Igpo => {
                let correctness = d1::igpo_correctness_reward(c, &reference);
                Reward::from_parts(
                    &[
                        ("xmlcount", d1::igpo_xmlcount_reward(c)),
                        ("correctness", correctness),
                    ],
                    correctness > 0.0,
                    extracted,
                )
            }
        })
    }

    fn evaluate(&self, example: &Example, completion: &str) -> Result<Evaluation, TaskError> {
        let reference = self.reference(example)?;
        let c = clean(completion);
        Ok(match self.scheme {
            Scheme::Verify => {
                let ok = math_equiv::verify(c, &reference);
                Evaluation::binary(ok, math_equiv::extract_answer(c))
            }
            _ => {
                let parsed = d1::parse_math_eval(c);
                let ok = parsed
                    .as_deref()
                    .is_some_and(|p| d1::hendrycks_is_equiv(p, &reference));
                Evaluation::binary(ok, parsed)
            }
        })
    }
}

/// AMC / AIME: competition problems with a numeric answer. Example fields: `problem` (or
/// `question`), `answer` (a number or a string). Judged with [`math_equiv::is_equivalent`], so
/// `27`, `27.0` and `\boxed{027}` all match `27.0`. Rewards: correctness 2.0 + d1's MATH format
/// reward ([`Scheme::D1`]), or IGPO's xmlcount + correctness 3.0 on the first `\boxed{}`
/// ([`Scheme::Igpo`]).
#[derive(Clone, Debug)]
pub struct NumericAnswer {
    scheme: Scheme,
    name: String,
}

impl NumericAnswer {
    /// A numeric-answer task called `name` (`amc`, `aime`).
    pub fn new(name: &str, scheme: Scheme) -> Self {
        let name = match scheme {
            Scheme::Igpo => format!("{name}:igpo"),
            _ => name.to_string(),
        };
        NumericAnswer { scheme, name }
    }
}

impl Task for NumericAnswer {
    fn name(&self) -> &str {
        &self.name
    }

    fn prompt(&self, example: &Example, style: PromptStyle) -> Result<Prompt, TaskError> {
        Ok(math_prompt(&problem_text(example)?, style))
    }

    fn reference(&self, example: &Example) -> Result<String, TaskError> {
        Ok(example.text("answer")?)
    }

    fn reference_solution(&self, example: &Example) -> Option<String> {
        example.text("solution").ok()
    }

    fn extract_answer(&self, completion: &str) -> Option<String> {
        let c = clean(completion);
        match self.scheme {
            Scheme::Igpo => Some(d1::igpo_extract_boxed(c)).filter(|s| !s.is_empty()),
            _ => math_equiv::extract_answer(c),
        }
    }

    fn reward(&self, example: &Example, completion: &str) -> Result<Reward, TaskError> {
        let reference = self.reference(example)?;
        let c = clean(completion);
        let extracted = self.extract_answer(c);
        let ok = extracted
            .as_deref()
            .is_some_and(|a| math_equiv::is_equivalent(a, &reference));
        Ok(match self.scheme {
            Scheme::Igpo => Reward::from_parts(
                &[
                    ("xmlcount", d1::igpo_xmlcount_reward(c)),
                    ("correctness", if ok { 3.0 } else { 0.0 }),
                ],
                ok,
                extracted,
            ),
            _ => Reward::from_parts(
                &[
                    ("correctness", if ok { 2.0 } else { 0.0 }),
                    ("format", d1::math_format_reward(c)),
                ],
                ok,
                extracted,
            ),
        })
    }

    fn evaluate(&self, example: &Example, completion: &str) -> Result<Evaluation, TaskError> {
        let reference = self.reference(example)?;
        let extracted = math_equiv::extract_answer(clean(completion));
        let ok = extracted
            .as_deref()
            .is_some_and(|a| math_equiv::is_equivalent(a, &reference));
        Ok(Evaluation::binary(ok, extracted))
    }
}

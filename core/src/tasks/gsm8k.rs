//! GSM8K (grade-school math word problems).
//!
//! Reference: d1 `diffu-grpo/data_utils.py::get_gsm8k_questions` (prompt, answer = text after
//! `####`), `diffu-grpo/reward_func.py` (rewards xmlcount + soft format + strict format + int +
//! correctness, summed in that order; 0.5 + 0.5 + 0.5 + 2.0 + ≤0.5 at most) and
//! `eval/parse_and_get_acc.py::parse_gsm_answers` (first numeric `\boxed{}`, else the first
//! `<answer>` block's number, compared as a float with the reference `#### n` value). Note: d1's
//! evaluation does not fall back to the last number of the whole text, only of the `<answer>`
//! block. The `:igpo` variant scores with IGPO's xmlcount + correctness 3.0.

use super::d1;
use super::{
    clean, prompts, question_text, Evaluation, Prompt, PromptStyle, Reward, Scheme, Task, TaskError,
};
use crate::data::Example;

/// The GSM8K task. Example fields: `question`, `answer` (a solution ending in `#### n`, or the
/// bare final answer).
#[derive(Clone, Debug)]
pub struct Gsm8k {
    scheme: Scheme,
    name: String,
}

impl Gsm8k {
    /// A GSM8K task with d1 ([`Scheme::D1`]) or IGPO ([`Scheme::Igpo`]) rewards
    /// ([`Scheme::Verify`] behaves as [`Scheme::D1`]: GSM8K answers are plain numbers).
    pub fn new(scheme: Scheme) -> Self {
        let name = match scheme {
            Scheme::Igpo => "gsm8k:igpo",
            _ => "gsm8k",
        };
        Gsm8k {
            scheme,
            name: name.to_string(),
        }
    }
}

/// The reference answer d1 trains against: `answer.split("####")[1].strip()` when the field has
/// `####`, else the stripped field.
pub fn reference_answer(answer_field: &str) -> String {
    match d1::extract_hash_answer(answer_field) {
        Some(a) => a.to_string(),
        None => super::pytext::py_strip(answer_field).to_string(),
    }
}

impl Task for Gsm8k {
    fn name(&self) -> &str {
        &self.name
    }

    fn prompt(&self, example: &Example, style: PromptStyle) -> Result<Prompt, TaskError> {
        let q = question_text(example)?;
        Ok(match style {
            PromptStyle::D1Train => Prompt::user(format!("{}\n\n{q}", prompts::D1_TRAIN_SYSTEM)),
            PromptStyle::D1Eval => Prompt::eval(format!("{}\n\n{q}", prompts::D1_EVAL_GSM_SYSTEM)),
            PromptStyle::Mdpo => Prompt::user(format!("{q}\n{}", prompts::MDPO_MATH_SUFFIX)),
            PromptStyle::Igpo => Prompt::user(format!("{}\n\n{q}", prompts::IGPO_SYSTEM)),
        })
    }

    fn reference(&self, example: &Example) -> Result<String, TaskError> {
        Ok(reference_answer(&example.text("answer")?))
    }

    fn reference_solution(&self, example: &Example) -> Option<String> {
        let a = example.text("answer").ok()?;
        a.contains("####").then_some(a)
    }

    fn extract_answer(&self, completion: &str) -> Option<String> {
        let c = clean(completion);
        match self.scheme {
            Scheme::Igpo => Some(d1::igpo_extract_boxed(c)).filter(|s| !s.is_empty()),
            _ => Some(d1::extract_xml_answer(c).to_string()),
        }
    }

    fn reward(&self, example: &Example, completion: &str) -> Result<Reward, TaskError> {
        let answer = self.reference(example)?;
        let c = clean(completion);
        Ok(match self.scheme {
            Scheme::Igpo => {
                let correctness = d1::igpo_correctness_reward(c, &answer);
                Reward::from_parts(
                    &[
                        ("xmlcount", d1::igpo_xmlcount_reward(c)),
                        ("correctness", correctness),
                    ],
                    correctness > 0.0,
                    self.extract_answer(c),
                )
            }
            _ => {
                let correctness = d1::correctness_reward(c, &answer);
                Reward::from_parts(
                    &[
                        ("xmlcount", d1::xmlcount_reward(c)),
                        ("soft_format", d1::soft_format_reward(c)),
                        ("strict_format", d1::strict_format_reward(c)),
                        ("int", d1::int_reward(c)),
                        ("correctness", correctness),
                    ],
                    correctness > 0.0,
                    Some(d1::extract_xml_answer(c).to_string()),
                )
            }
        })
    }

    fn evaluate(&self, example: &Example, completion: &str) -> Result<Evaluation, TaskError> {
        let field = example.text("answer")?;
        let truth = d1::gsm8k_reference_value(&field)
            .or_else(|| super::pytext::py_float(&field.replace(',', "")))
            .ok_or_else(|| example.bad("answer", "no numeric final answer (`#### n`)"))?;
        let parsed = d1::parse_gsm8k_eval(clean(completion));
        let correct = parsed.is_some_and(|p| p == truth);
        Ok(Evaluation::binary(correct, parsed.map(format_float)))
    }
}

/// Python's `repr(float)`-like text for an extracted value (`18.0`, `0.5`).
fn format_float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

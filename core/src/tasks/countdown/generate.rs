//! Seeded generator of Countdown problems with a reachable target and a reference expression.
//!
//! Reference: the Countdown-Tasks-3to4 set d1 trains on (numbers 1–100, a positive target
//! reachable with `+ - * /` using every number once) and d1's shipped test file
//! (`{"input": "a,b,c", "output": "t"}`), whose schema [`CountdownProblem::to_example`] writes.
//! A problem is drawn by picking the numbers, then combining random pairs with random operators
//! (divisions only when exact) until one value is left; it is kept when that value is an integer
//! in the target range. The reference expression is re-checked with [`super::eval_expression`].

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::expr::{close_to, eval_expression, Number};
use crate::data::{Example, Origin};
use crate::tasks::TaskError;

/// Generator options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CountdownOptions {
    /// How many numbers per problem (d1 uses 3; 2–6 accepted).
    pub count: usize,
    /// Smallest number drawn.
    pub min_number: i64,
    /// Largest number drawn.
    pub max_number: i64,
    /// Smallest accepted target.
    pub min_target: i64,
    /// Largest accepted target.
    pub max_target: i64,
}

impl Default for CountdownOptions {
    /// d1's setting: 3 numbers in 1..=100, targets in 1..=100.
    fn default() -> Self {
        CountdownOptions {
            count: 3,
            min_number: 1,
            max_number: 100,
            min_target: 1,
            max_target: 100,
        }
    }
}

/// A generated problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountdownProblem {
    /// The numbers, in presentation order.
    pub numbers: Vec<i64>,
    /// The target.
    pub target: i64,
    /// One expression that reaches the target using every number once.
    pub expression: String,
}

impl CountdownProblem {
    /// The row in the shipped test set's schema: `input` (`"a,b,c"`), `output` (the target as a
    /// string), plus `expression`.
    pub fn to_json(&self) -> Value {
        let input: Vec<String> = self.numbers.iter().map(|n| n.to_string()).collect();
        json!({
            "input": input.join(","),
            "output": self.target.to_string(),
            "expression": self.expression,
        })
    }

    /// [`CountdownProblem::to_json`] as an in-memory [`Example`] (line = `index + 1`).
    pub fn to_example(&self, index: usize) -> Example {
        let fields = match self.to_json() {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        Example::new(fields, Origin::memory(index))
    }
}

/// Draws `n` problems from `seed` (the same seed and options give the same problems).
pub fn generate(
    seed: u64,
    n: usize,
    options: &CountdownOptions,
) -> Result<Vec<CountdownProblem>, TaskError> {
    let o = options;
    if !(2..=6).contains(&o.count) {
        return Err(TaskError::InvalidOption("count must be 2..=6".into()));
    }
    if o.min_number < 1 || o.max_number < o.min_number || o.max_number > 1_000_000 {
        return Err(TaskError::InvalidOption(
            "numbers must satisfy 1 <= min_number <= max_number <= 1e6".into(),
        ));
    }
    if o.max_target < o.min_target {
        return Err(TaskError::InvalidOption("max_target < min_target".into()));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    let max_attempts = 10_000usize.saturating_mul(n.max(1));
    let mut attempts = 0;
    while out.len() < n {
        attempts += 1;
        if attempts > max_attempts {
            return Err(TaskError::InvalidOption(
                "could not find problems with these options (target range unreachable?)".into(),
            ));
        }
        if let Some(p) = draw(&mut rng, o) {
            out.push(p);
        }
    }
    Ok(out)
}

fn draw(rng: &mut StdRng, o: &CountdownOptions) -> Option<CountdownProblem> {
    let numbers: Vec<i64> = (0..o.count)
        .map(|_| rng.random_range(o.min_number..=o.max_number))
        .collect();
    // (value numerator/denominator kept integral, expression text, is_atom)
    let mut items: Vec<(i128, String, bool)> = numbers
        .iter()
        .map(|&x| (x as i128, x.to_string(), true))
        .collect();
    while items.len() > 1 {
        let i = rng.random_range(0..items.len());
        let a = items.swap_remove(i);
        let j = rng.random_range(0..items.len());
        let b = items.swap_remove(j);
        let op = rng.random_range(0..4u8);
        let (value, sym) = match op {
            0 => (a.0.checked_add(b.0)?, '+'),
            1 => (a.0.checked_sub(b.0)?, '-'),
            2 => (a.0.checked_mul(b.0)?, '*'),
            _ => {
                if b.0 == 0 || a.0 % b.0 != 0 {
                    return None;
                }
                (a.0 / b.0, '/')
            }
        };
        let wrap = |e: &(i128, String, bool)| {
            if e.2 {
                e.1.clone()
            } else {
                format!("({})", e.1)
            }
        };
        items.push((value, format!("{} {sym} {}", wrap(&a), wrap(&b)), false));
    }
    let (value, expression, _) = items.pop()?;
    let target = i64::try_from(value).ok()?;
    if target < o.min_target || target > o.max_target {
        return None;
    }
    // Self-check with the evaluator the rewards use.
    match eval_expression(&expression) {
        Some(v @ Number::Rational(..)) if close_to(v, target) => {}
        _ => return None,
    }
    Some(CountdownProblem {
        numbers,
        target,
        expression,
    })
}

//! Every extractor, reward and equivalence check returns — without panicking and in bounded
//! time — on arbitrary strings (proptest), 1 MB inputs, 100k-deep brackets and multi-byte text.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::json;
use workbench_core::data::{load::parse_csv, load::parse_jsonl, Example};
use workbench_core::tasks::{
    countdown, d1, math_equiv, pytext, sudoku, task_by_name, task_names, Task,
};

fn examples() -> Vec<(Box<dyn Task>, Example)> {
    task_names()
        .iter()
        .map(|name| {
            let ex = match name.split(':').next().unwrap() {
                "gsm8k" => {
                    Example::from_pairs([("question", json!("Q")), ("answer", json!("w\n#### 18"))])
                }
                "math500" => Example::from_pairs([
                    ("problem", json!("P")),
                    ("answer", json!(r"\frac{1}{2}")),
                ]),
                "countdown" => {
                    Example::from_pairs([("input", json!("30,100,93")), ("output", json!("23"))])
                }
                "sudoku" => Example::from_pairs([
                    ("Puzzle", json!("3102200002100320")),
                    ("Solution", json!("3142243142131324")),
                ]),
                _ => Example::from_pairs([("problem", json!("P")), ("answer", json!(27.0))]),
            };
            (task_by_name(name).unwrap(), ex)
        })
        .collect()
}

/// Calls everything on `s` and checks the value ranges that hold for every input.
fn exercise(s: &str, tasks: &[(Box<dyn Task>, Example)]) {
    let x = d1::xmlcount_reward(s);
    assert!(x <= 0.5 + 0.001 + 1e-12 && x.is_finite());
    assert!([0.0, 0.5].contains(&d1::soft_format_reward(s)));
    assert!([0.0, 0.5].contains(&d1::strict_format_reward(s)));
    assert!([0.0, 0.5].contains(&d1::int_reward(s)));
    assert!([0.0, 2.0].contains(&d1::correctness_reward(s, "18")));
    let _ = d1::extract_xml_answer(s);
    let _ = d1::last_boxed_only_string(s);
    let _ = d1::remove_boxed(Some(s));
    let _ = d1::strip_string(s);
    let _ = d1::hendrycks_is_equiv(s, r"\frac{1}{2}");
    let f = d1::math_format_reward(s);
    assert!([0.25, 0.5, 0.75, 1.0].contains(&f));
    let _ = d1::math_correctness_reward(s, "5");
    let _ = d1::igpo_xmlcount_reward(s);
    let _ = d1::igpo_correctness_reward(s, "5");
    let _ = d1::parse_gsm8k_eval(s);
    let _ = d1::gsm8k_reference_value(s);
    let _ = d1::parse_math_eval(s);
    let _ = d1::last_answer_block(s);
    let _ = pytext::py_float(s);
    let _ = pytext::py_int_canonical(s);
    let _ = pytext::find_numbers(s);
    let c = countdown::countdown_reward(s, &[30, 100, 93], 23);
    assert!([0.0, 0.1, 1.0].contains(&c));
    let _ = countdown::countdown_eval(s, &[30, 100, 93], 23);
    let _ = countdown::eval_expression(s);
    let r = sudoku::sudoku_reward(s, "3102200002100320", "3142243142131324");
    assert!((0.0..=1.0).contains(&r));
    let _ = sudoku::eval_solution_string(s);
    let _ = math_equiv::last_boxed(s);
    let _ = math_equiv::extract_answer(s);
    let n = math_equiv::normalize(s);
    if !n.is_empty() {
        assert!(math_equiv::is_equivalent(s, s) || s.contains("\\boxed") || s.contains("\\fbox"));
    }
    let _ = math_equiv::is_equivalent(s, "x^2+1");
    let _ = math_equiv::verify(s, r"\frac{1}{2}");
    for (task, ex) in tasks {
        let rw = task.reward(ex, s).unwrap();
        assert!(rw.total.is_finite());
        let ev = task.evaluate(ex, s).unwrap();
        assert!((0.0..=1.0).contains(&ev.score));
        let _ = task.extract_answer(s);
    }
}

fn timed(label: &str, s: &str, tasks: &[(Box<dyn Task>, Example)]) {
    let t = Instant::now();
    exercise(s, tasks);
    // a second equivalence with the big input on both sides
    let _ = math_equiv::is_equivalent(s, s);
    let el = t.elapsed();
    assert!(el < Duration::from_secs(5), "{label}: {el:?}");
}

const FRAGMENTS: &[&str] = &[
    "<reasoning>",
    "</reasoning>",
    "<answer>",
    "</answer>",
    "\n",
    " ",
    "\\boxed{",
    "\\boxed ",
    "\\fbox{",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "\\{",
    "\\}",
    "$",
    "1",
    "23",
    "0.5",
    "-",
    "+",
    "*",
    "/",
    "**",
    "//",
    "=",
    "\\frac",
    "\\dfrac",
    "\\sqrt",
    "\\sqrt[",
    "\\left(",
    "\\right)",
    "\\text{",
    "\\text{ ",
    "\\mbox{",
    "^",
    "_",
    "\\circ",
    "\\%",
    "%",
    "\\$",
    "\\!",
    ",",
    ".",
    "x",
    "y",
    "i",
    "e",
    "\\pi",
    "\\infty",
    "\\pm",
    "\\cup",
    "\\in",
    "\\begin{pmatrix}",
    "\\end{pmatrix}",
    "\\\\",
    "&",
    "|",
    "!",
    "\\sin",
    "\\log_",
    "####",
    "```",
    "<|eot_id|>",
    "<|endoftext|>",
    "é",
    "漢",
    "😀",
    "²",
    "٣",
    "\u{a0}",
    "\u{1c}",
    "\t",
    "\r\n",
    "\\",
    "cm",
    "The answer is",
    "\\times",
    "\\div",
    "\\cdot",
    "1234123412341234",
    "\\binom",
    "\\lfloor",
    "\\rfloor",
];

fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..80).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings(s in any::<String>()) {
        let tasks = examples();
        exercise(&s, &tasks);
    }

    #[test]
    fn fragment_soup(s in fragments()) {
        let tasks = examples();
        exercise(&s, &tasks);
    }

    #[test]
    fn equivalence_is_total_and_reflexive(a in fragments(), b in fragments()) {
        let _ = math_equiv::is_equivalent(&a, &b);
        if !math_equiv::normalize(&a).is_empty() && !a.contains("\\boxed") && !a.contains("\\fbox") {
            prop_assert!(math_equiv::is_equivalent(&a, &a));
        }
    }

    #[test]
    fn loaders_never_panic(s in fragments()) {
        let _ = parse_csv(&s, "fuzz.csv");
        let _ = parse_jsonl(&s, "fuzz.jsonl");
    }
}

#[test]
fn huge_and_deep_inputs() {
    let tasks = examples();
    let mb = 1 << 20;
    let cases: Vec<(&str, String)> = vec![
        ("100k {", "{".repeat(100_000)),
        ("100k }", "}".repeat(100_000)),
        ("100k (", "(".repeat(100_000)),
        (
            "100k ( in answer",
            format!(
                "<answer>{}1{}</answer>",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ),
        ),
        (
            "100k unary minus",
            format!("<answer>{}1</answer>", "-".repeat(100_000)),
        ),
        (
            "power tower",
            format!("<answer>{}2</answer>", "2**".repeat(50_000)),
        ),
        (
            "nested boxes",
            format!("{}1{}", "\\boxed{".repeat(50_000), "}".repeat(50_000)),
        ),
        ("unclosed boxes", "\\boxed{".repeat(100_000)),
        ("boxes with newlines", "\\boxed{\n".repeat(100_000)),
        (
            "nested text",
            format!("{}a{}", "\\text{".repeat(50_000), "}".repeat(50_000)),
        ),
        (
            "nested fracs",
            format!("{}1{}", "\\frac{".repeat(50_000), "}{2}".repeat(50_000)),
        ),
        ("answer tags", "<answer>".repeat(100_000)),
        ("closing tags", "</answer>\n".repeat(100_000)),
        ("newlines", "\n".repeat(mb)),
        ("spaces", " ".repeat(mb)),
        ("digits", "7".repeat(mb)),
        ("multibyte", "é漢😀".repeat(mb / 9)),
        ("fences", format!("<answer>{}", "```1 ".repeat(mb / 5))),
        ("unit words", format!("1{}", " cm".repeat(mb / 3))),
        ("hashes", "#### ".repeat(mb / 5)),
        ("dollars", "\\boxed $".repeat(mb / 8)),
        ("sqrt chain", "\\sqrt".repeat(mb / 5)),
        ("pm list", "1\\pm 2,".repeat(mb / 7)),
        ("left right", "\\left(\\right.".repeat(mb / 13)),
    ];
    for (label, s) in &cases {
        timed(label, s, &tasks);
    }
    // a 1 MB random mix of fragments (deterministic)
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut mix = String::new();
    while mix.len() < mb {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        mix.push_str(FRAGMENTS[(state % FRAGMENTS.len() as u64) as usize]);
    }
    timed("1 MB fragment mix", &mix, &tasks);
}

#[test]
fn multibyte_boundaries() {
    let tasks = examples();
    let pieces = ["é", "漢", "😀", "\u{a0}", "٣", "²"];
    let anchors = [
        "<answer>",
        "</answer>",
        "\\boxed{",
        "}",
        "\\boxed ",
        "####",
        "```",
        "=",
        "\\text{ ",
        "<reasoning>\n",
        "\n</answer>\n",
        "<|eot_id|>",
    ];
    for p in pieces {
        for a in anchors {
            for s in [
                format!("{p}{a}{p}"),
                format!("{a}{p}"),
                format!("{p}{a}"),
                format!("{a}{p}{a}{p}{a}"),
                format!("<answer>{p}</answer>{a}{p}"),
                format!("\\boxed{{{p}}}{a}"),
            ] {
                exercise(&s, &tasks);
            }
        }
    }
}

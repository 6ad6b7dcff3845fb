//! Table tests of the d1 / IGPO reward functions with hand-worked values (the arithmetic is in
//! the comments), plus the task-level rewards, evaluations, prompts and registry.

use serde_json::json;
use workbench_core::data::Example;
use workbench_core::tasks::{
    countdown, d1, prompts, sudoku, task_by_name, task_names, PromptStyle, TaskError,
};

const PERFECT: &str = "<reasoning>\nR\n</reasoning>\n<answer>\n42\n</answer>\n";

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn xmlcount_table() {
    let cases: &[(&str, f64, &str)] = &[
        // four tags once: 4 × 0.125 = 0.5; after "\n</answer>\n": "" → −0;
        // after "\n</answer>": "\n" → −(1 − 1)·0.001 = 0
        (PERFECT, 0.5, "perfect"),
        // third: "xyz" → −0.003; fourth: "\nxyz" (4 chars) → −(4 − 1)·0.001 = −0.003
        // 0.5 − 0.003 − 0.003 = 0.494
        (
            "<reasoning>\nR\n</reasoning>\n<answer>\n42\n</answer>\nxyz",
            0.494,
            "trailing text",
        ),
        // no "\n</answer>\n": split(...)[-1] is the whole 48-char text → −0.048;
        // after "\n</answer>": "" → −(0 − 1)·0.001 = +0.001; 0.5 − 0.048 + 0.001 = 0.453
        (
            "<reasoning>\nR\n</reasoning>\n<answer>\n42\n</answer>",
            0.453,
            "no final newline",
        ),
        ("hello", 0.0, "no tags"),
        // "<reasoning>\n" twice → not counted: 3 × 0.125 = 0.375
        (
            "<reasoning>\n<reasoning>\nR\n</reasoning>\n<answer>\n42\n</answer>\n",
            0.375,
            "duplicate opening tag",
        ),
        // "é" is one character: third −0.001, fourth −(2 − 1)·0.001: 0.5 − 0.002 = 0.498
        (
            "<reasoning>\nR\n</reasoning>\n<answer>\n42\n</answer>\né",
            0.498,
            "multi-byte trailing char",
        ),
        // only "\n</answer>" once (+0.125), after it "\n" → 0: 0.125
        ("x\n</answer>\n", 0.125, "only the closing tag"),
    ];
    for (text, want, why) in cases {
        let got = d1::xmlcount_reward(text);
        assert!(close(got, *want), "{why}: got {got}, want {want}");
    }
}

#[test]
fn soft_format_table() {
    let cases: &[(&str, f64, &str)] = &[
        (PERFECT, 0.5, "perfect"),
        (
            "<reasoning>a</reasoning> \n <answer>b</answer>",
            0.5,
            "whitespace between blocks",
        ),
        (
            "<reasoning>a</reasoning><answer>b</answer> trailing",
            0.5,
            "not anchored at the end",
        ),
        (
            " <reasoning>a</reasoning><answer>b</answer>",
            0.0,
            "re.match is anchored at the start",
        ),
        (
            "<reasoning>a</reasoning>x<answer>b</answer>",
            0.0,
            "non-space between the blocks",
        ),
        (
            "<reasoning>a</reasoning>b</reasoning><answer>c</answer>",
            0.5,
            "a later </reasoning> is tried",
        ),
        ("<reasoning>a</reasoning><answer>b", 0.0, "no </answer>"),
        (
            "<reasoning>\nmulti\nline\n</reasoning>\n<answer>\n1\n</answer>",
            0.5,
            "DOTALL",
        ),
    ];
    for (text, want, why) in cases {
        assert_eq!(d1::soft_format_reward(text), *want, "{why}");
    }
}

#[test]
fn strict_format_table() {
    let cases: &[(&str, f64, &str)] = &[
        (PERFECT, 0.5, "perfect"),
        (
            "<reasoning>\nR\n</reasoning>\n<answer>\n42\n</answer>\n\n",
            0.5,
            "$ matches before a final newline",
        ),
        (
            "<reasoning>\nR\n</reasoning>\n<answer>\n42\n</answer>",
            0.0,
            "needs the final newline",
        ),
        (
            "<reasoning>\nR\n</reasoning>\n<answer>\n42\n</answer>\nx",
            0.0,
            "nothing may follow",
        ),
        (
            "<reasoning>\n\n</reasoning>\n<answer>\n\n</answer>\n",
            0.5,
            "empty contents",
        ),
        (
            "<reasoning>R\n</reasoning>\n<answer>\n42\n</answer>\n",
            0.0,
            "newline after <reasoning> required",
        ),
        (
            "<reasoning>\na\n</reasoning>\nb\n</reasoning>\n<answer>\n1\n</answer>\n",
            0.5,
            "lazy .*? spans tags",
        ),
        (
            "<reasoning>\nR\n</reasoning>\n<answer>\n</answer>\n",
            0.0,
            "answer block needs its inner newline",
        ),
    ];
    for (text, want, why) in cases {
        assert_eq!(d1::strict_format_reward(text), *want, "{why}");
    }
}

#[test]
fn int_and_correctness_table() {
    let wrap = |a: &str| format!("<reasoning>\nr\n</reasoning>\n<answer>\n{a}\n</answer>\n");
    // (answer text, int reward, correctness vs "18")
    let cases: &[(&str, f64, f64, &str)] = &[
        ("18", 0.5, 2.0, "digits, exact match"),
        (" 18 ", 0.5, 2.0, "stripped"),
        (
            "18.0",
            0.0,
            0.0,
            "string match: 18.0 != 18; '.' is not a digit",
        ),
        ("-18", 0.0, 0.0, "'-' is not a digit"),
        ("$18", 0.0, 0.0, "dollar sign"),
        ("", 0.0, 0.0, "empty"),
        ("²", 0.5, 0.0, "Python isdigit() accepts superscript two"),
    ];
    for (a, int_r, corr, why) in cases {
        let t = wrap(a);
        assert_eq!(d1::int_reward(&t), *int_r, "int: {why}");
        assert_eq!(
            d1::correctness_reward(&t, "18"),
            *corr,
            "correctness: {why}"
        );
    }
    // split("<answer>")[-1]: the text after the last <answer>, cut at the next </answer>
    assert_eq!(
        d1::extract_xml_answer("<answer>1</answer><answer> 2 </answer>"),
        "2"
    );
    assert_eq!(d1::extract_xml_answer("no tags at all "), "no tags at all");
}

#[test]
fn gsm8k_task_reward_totals() {
    let task = task_by_name("gsm8k").unwrap();
    let ex = Example::from_pairs([
        ("question", json!("Q?")),
        ("answer", json!("work\n#### 42")),
    ]);
    // xmlcount 0.5 + soft 0.5 + strict 0.5 + int 0.5 + correctness 2.0 = 4.0
    let r = task.reward(&ex, PERFECT).unwrap();
    assert!(close(r.total, 4.0), "{r:?}");
    assert!(r.correct);
    assert_eq!(r.extracted.as_deref(), Some("42"));
    assert_eq!(r.components.len(), 5);
    // trailing special tokens are ignored: same reward
    let r2 = task
        .reward(
            &ex,
            &format!("{PERFECT}<|eot_id|><|endoftext|><|endoftext|>"),
        )
        .unwrap();
    assert_eq!(r, r2);
    // wrong answer 41: 0.5 + 0.5 + 0.5 + 0.5 + 0 = 2.0
    let wrong = PERFECT.replace("42", "41");
    let r3 = task.reward(&ex, &wrong).unwrap();
    assert!(close(r3.total, 2.0) && !r3.correct);
    // IGPO variant: count_xml = 0.125 × 4 (+0.25 for \boxed{) and correctness 3.0
    let igpo = task_by_name("gsm8k:igpo").unwrap();
    let boxed = "<reasoning>\nR\n</reasoning>\n<answer>\n\\boxed{42}\n</answer>";
    let r4 = igpo.reward(&ex, boxed).unwrap();
    assert!(close(r4.components["xmlcount"], 0.75), "{r4:?}");
    assert!(close(r4.total, 3.75) && r4.correct);
}

#[test]
fn gsm8k_evaluation() {
    let task = task_by_name("gsm8k").unwrap();
    let ex = Example::from_pairs([("question", json!("Q")), ("answer", json!("x\n#### 1,234"))]);
    let cases: &[(&str, bool, &str)] = &[
        (r"\boxed{1234}", true, "boxed number"),
        (
            r"\boxed{...} then \boxed{1234.0}",
            true,
            "skips '...' boxes, floats compare equal",
        ),
        (
            r"\boxed{x = 1234 dollars}",
            true,
            "first number inside the box",
        ),
        (
            "<answer>\nthe total is 1234\n</answer>",
            true,
            "last number of the <answer> block",
        ),
        (
            "it is 1234",
            false,
            "d1 does not fall back to the whole text",
        ),
        (
            r"\boxed{1,234}",
            false,
            "float('1,234') fails; first number is 1",
        ),
        ("<answer>1233</answer>", false, "wrong"),
    ];
    for (text, want, why) in cases {
        assert_eq!(task.evaluate(&ex, text).unwrap().correct, *want, "{why}");
    }
    assert_eq!(d1::gsm8k_reference_value("a #### $1,234.5"), Some(1234.5));
}

#[test]
fn math_rewards() {
    let task = task_by_name("math500").unwrap();
    let ex = Example::from_pairs([("problem", json!("P")), ("answer", json!(r"\frac12"))]);
    // boxed_in_answer: <answer> present → +1.0; "\boxed" in a non-raw Python string is
    // backspace+"oxed", absent → +0.5; format = 0.5 × 1.5 = 0.75
    let with_tags = "<reasoning>\nr\n</reasoning>\n<answer>\n\\boxed{\\frac{1}{2}}\n</answer>";
    let r = task.reward(&ex, with_tags).unwrap();
    assert!(close(r.components["format"], 0.75), "{r:?}");
    // strip_string turns \frac12 into \frac{1}{2}: correctness 2.0; total 2.75
    assert!(close(r.components["correctness"], 2.0) && close(r.total, 2.75) && r.correct);
    // no <answer>: boxed_in_answer = 0 + 0.5 → format 0.25
    assert!(close(d1::math_format_reward(r"\boxed{1}"), 0.25));
    // a literal backspace+"oxed" inside the answer block: 1.0 + 1.0 → format 1.0
    assert!(close(
        d1::math_format_reward("<answer>\u{8}oxed</answer>"),
        1.0
    ));
    // Hendrycks equivalences
    for (resp, ok) in [
        (r"\boxed{0.5}", true), // "0.5" is special-cased to \frac{1}{2}
        (r"\boxed{1/2}", true), // fix_a_slash_b
        (r"\boxed{\dfrac{1}{2}}", true),
        (r"\boxed{2/4}", false),        // no arithmetic
        (r"\frac{1}{2}", true),         // no box: the whole response is compared (d1 quirk)
        (r"\boxed{\frac{1}{2}", false), // unbalanced: whole response compared, fails
    ] {
        assert_eq!(
            d1::math_correctness_reward(resp, r"\frac12") == 2.0,
            ok,
            "{resp}"
        );
    }
    // the verify judge accepts what d1's string match does not
    let verify = task_by_name("math500:verify").unwrap();
    let r = verify.reward(&ex, r"so \boxed{2/4}").unwrap();
    assert!(r.correct && close(r.total, 2.25), "{r:?}");
    // evaluation: last box, else the <answer> block
    assert!(
        task.evaluate(&ex, r"\boxed{7} then \boxed{1/2}")
            .unwrap()
            .correct
    );
    // no box at all: last_boxed_only_string returns the whole text, which is then compared
    assert!(
        !task
            .evaluate(&ex, "<answer> 0.5 </answer>")
            .unwrap()
            .correct
    );
    // an unbalanced box makes extraction raise → the first <answer> block is used
    assert!(
        task.evaluate(&ex, r"<answer> 0.5 </answer> \boxed{oops")
            .unwrap()
            .correct
    );
    // IGPO: first box, correctness 3.0 + xmlcount
    let igpo = task_by_name("math500:igpo").unwrap();
    let r = igpo
        .reward(&ex, r"\boxed{0.5} and later \boxed{9}")
        .unwrap();
    assert!(close(r.components["correctness"], 3.0), "{r:?}");
    assert!(close(r.components["xmlcount"], 0.25));
}

#[test]
fn countdown_reward_table() {
    let n = [30, 100, 93];
    let w = |e: &str| format!("<reasoning>\nr\n</reasoning>\n<answer>\n{e}\n</answer>");
    let cases: &[(&str, f64, &str)] = &[
        ("30 - (100 - 93)", 1.0, "30 − 7 = 23"),
        ("30 - 100 + 93", 1.0, "left to right: −70 + 93 = 23"),
        ("30 + 100 - 93", 0.1, "= 37, wrong value"),
        ("30 - (100 - 94)", 0.1, "94 is not a given number"),
        ("30 - (100 - 93) = 23", 0.1, "23 counts as an extra number"),
        ("30 - (100 - 93", 0.1, "syntax error"),
        ("030 - (100 - 93)", 0.1, "Python rejects the literal 030"),
        (
            "(30*100 - 93*30 - 30*7)/100 + 23",
            0.1,
            "numbers used more than once",
        ),
    ];
    for (e, want, why) in cases {
        assert_eq!(countdown::countdown_reward(&w(e), &n, 23), *want, "{why}");
    }
    assert_eq!(
        countdown::countdown_reward("no tags", &n, 23),
        0.0,
        "no <answer> → 0"
    );
    // exact rationals: 1/3·3 = 1 exactly
    assert_eq!(
        countdown::countdown_reward("<answer>1/3*3</answer>", &[1, 3, 3], 1),
        1.0
    );
    // Python ** is accepted by d1's character filter: 2**3*2 = 16
    assert_eq!(
        countdown::countdown_reward("<answer>2**3*2</answer>", &[2, 3, 2], 16),
        1.0
    );
    // division by zero: ZeroDivisionError → 0.1
    assert_eq!(
        countdown::countdown_reward("<answer>5/0+1</answer>", &[5, 0, 1], 1),
        0.1
    );
    // the last <answer> block counts
    assert_eq!(
        countdown::countdown_reward("<answer>1</answer><answer>30-(100-93)</answer>", &n, 23),
        1.0
    );
}

#[test]
fn countdown_evaluation() {
    let n = [30, 100, 93];
    let cases: &[(&str, bool, &str)] = &[
        (r"\boxed{30 - (100 - 93)}", true, "boxed expression"),
        (
            r"\boxed{30 - (100 - 93) = 23}",
            true,
            "expr = target reduced to expr",
        ),
        (
            r"\boxed{(100 - 93) \times 1 + 30}",
            false,
            "1 is not a given number",
        ),
        (r"\boxed{30 \div 1}", false, "wrong numbers"),
        (
            "30 - (100 - 93) = 23",
            true,
            "no box: the whole text, then 'expr = target'",
        ),
        (
            "<answer>30-(100-93)</answer>",
            false,
            "no box: the whole text is evaluated and has tags",
        ),
        (
            r"\boxed{30 - (100 - 93)",
            false,
            "unbalanced box, no <answer>: the whole text (with '\\boxed{')",
        ),
        (
            r"<answer>30-(100-93)</answer> \boxed{oops",
            true,
            "unbalanced box → the first <answer> block",
        ),
    ];
    for (text, want, why) in cases {
        assert_eq!(countdown::countdown_eval(text, &n, 23).0, *want, "{why}");
    }
    let ok = countdown::countdown_eval(r"\boxed{(100-93) \cdot 3}", &[100, 93, 3], 21);
    assert!(ok.0, "\\cdot is multiplication");
}

#[test]
fn sudoku_reward_table() {
    // Row 1 of data/sudoku_4x4_test.csv. Blanks ('0') at 2,5,6,7,8,11,12,15: 8 cells.
    let puzzle = "3102200002100320";
    let solution = "3142243142131324";
    let w = |a: &str| format!("<reasoning>\nr\n</reasoning>\n<answer>\n{a}\n</answer>");
    let cases: &[(&str, f64, &str)] = &[
        ("3142243142131324", 1.0, "all 8 blanks right"),
        ("3112243142131324", 0.875, "index 2 wrong: 7/8"),
        ("3142", 0.125, "padded with 0: only index 2 right, 1/8"),
        ("3142 2431\n4213 1324", 1.0, "non-digits dropped"),
        ("31422431421313241111", 1.0, "truncated to 16"),
        ("abc", 0.0, "no digits → empty → 0"),
    ];
    for (a, want, why) in cases {
        let got = sudoku::sudoku_reward(&w(a), puzzle, solution);
        assert!(close(got, *want), "{why}: got {got}");
    }
    assert_eq!(sudoku::sudoku_reward("no tags", puzzle, solution), 0.0);
    // evaluation cascade
    let fenced = "<answer>\n```\n3142\n2431\n4213\n1324\n```\n</answer>";
    assert_eq!(sudoku::eval_solution_string(fenced), solution);
    assert_eq!(
        sudoku::eval_solution_string("Final: 3142243142131324."),
        solution
    );
    assert_eq!(
        sudoku::eval_solution_string("<answer>\n3142 2431<|eot_id|>"),
        "31422431"
    );
    let task = task_by_name("sudoku").unwrap();
    let ex = Example::from_pairs([("Puzzle", json!(puzzle)), ("Solution", json!(solution))]);
    let e = task.evaluate(&ex, fenced).unwrap();
    assert!(e.correct && e.score == 1.0 && e.weight == 8.0);
}

#[test]
fn prompts_are_exact() {
    let gsm = task_by_name("gsm8k").unwrap();
    let ex = Example::from_pairs([
        ("question", json!("What is 2+2?")),
        ("answer", json!("#### 4")),
    ]);
    let p = gsm.prompt(&ex, PromptStyle::D1Train).unwrap();
    assert_eq!(
        p.user,
        format!("{}\n\nWhat is 2+2?", prompts::D1_TRAIN_SYSTEM)
    );
    assert_eq!(p.assistant_prefill, "");
    let p = gsm.prompt(&ex, PromptStyle::D1Eval).unwrap();
    assert!(
        p.user.starts_with("You are a math expert.")
            && p.user.ends_with("</answer>\n\nWhat is 2+2?")
    );
    assert_eq!(p.assistant_prefill, "<reasoning>");
    let p = gsm.prompt(&ex, PromptStyle::Mdpo).unwrap();
    assert_eq!(
        p.user,
        "What is 2+2?\nLet's think step by step and output the final answer within \\boxed{}."
    );
    let p = gsm.prompt(&ex, PromptStyle::Igpo).unwrap();
    assert!(p.user.contains("\\boxed{<Your answer>}") && p.user.ends_with("\n\nWhat is 2+2?"));

    let ctd = task_by_name("countdown").unwrap();
    let ex = Example::from_pairs([("input", json!("30,100,93")), ("output", json!("23"))]);
    let p = ctd.prompt(&ex, PromptStyle::D1Train).unwrap();
    assert!(p.user.starts_with(prompts::D1_TRAIN_SYSTEM));
    assert!(p.user.contains("\nUsing only the numbers [30, 100, 93], create an arithmetic expression that evaluates to exactly 23."));
    let p = ctd.prompt(&ex, PromptStyle::D1Eval).unwrap();
    assert!(p
        .user
        .ends_with("</answer>\n\nNumbers: [30, 100, 93]\nTarget: 23"));
    assert!(matches!(
        ctd.prompt(&ex, PromptStyle::Igpo),
        Err(TaskError::UnsupportedStyle { .. })
    ));

    let sud = task_by_name("sudoku").unwrap();
    let ex = Example::from_pairs([
        ("Puzzle", json!("3102200002100320")),
        ("Solution", json!("3142243142131324")),
    ]);
    let p = sud.prompt(&ex, PromptStyle::D1Train).unwrap();
    assert_eq!(
        p.user,
        format!(
            "{}\n\nSolve the following Sudoku puzzle: 3102200002100320\n",
            prompts::D1_TRAIN_SUDOKU_SYSTEM
        )
    );

    let math = task_by_name("math500").unwrap();
    let ex = Example::from_pairs([("problem", json!("P")), ("answer", json!("1"))]);
    let p = math.prompt(&ex, PromptStyle::D1Train).unwrap();
    assert_eq!(p.user, format!("{}\n\nYou are a math expert. You will be given a question to solve. Solve it step by step. Wrap the final answer in a \\boxed{{}}. \n\nP", prompts::D1_TRAIN_SYSTEM));
    assert_eq!(
        PromptStyle::from_name("d1_eval").unwrap(),
        PromptStyle::D1Eval
    );
    assert!(PromptStyle::from_name("nope").is_err());
}

#[test]
fn registry() {
    for name in task_names() {
        let t = task_by_name(name).unwrap();
        assert_eq!(t.name(), *name);
    }
    assert!(task_by_name("sudoku4x4").is_ok());
    assert!(task_by_name("amc23").is_ok());
    assert!(task_by_name("countdown:igpo").is_err());
    assert!(matches!(
        task_by_name("chess"),
        Err(TaskError::UnknownTask(_))
    ));
}

#[test]
fn numeric_answers() {
    let amc = task_by_name("amc").unwrap();
    let ex = Example::from_pairs([("problem", json!("P")), ("answer", json!(27.0))]);
    assert!(amc.evaluate(&ex, r"\boxed{27}").unwrap().correct);
    assert!(!amc.evaluate(&ex, r"\boxed{28}").unwrap().correct);
    let aime = task_by_name("aime").unwrap();
    let ex = Example::from_pairs([("problem", json!("P")), ("answer", json!("025"))]);
    let r = aime
        .reward(&ex, "<answer>\n\\boxed{25}\n</answer>")
        .unwrap();
    // correctness 2.0 + format 0.5 × (1.0 + 0.5) = 2.75
    assert!(r.correct && close(r.total, 2.75), "{r:?}");
}

#[test]
fn missing_fields_name_the_field() {
    let task = task_by_name("gsm8k").unwrap();
    let ex = Example::from_pairs([("question", json!("Q"))]);
    let err = task.reward(&ex, "x").unwrap_err().to_string();
    assert!(
        err.contains("<memory>:1") && err.contains("`answer`"),
        "{err}"
    );
}

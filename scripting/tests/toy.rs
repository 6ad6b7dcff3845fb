//! The toy-task bindings used by the quickstart and the toy comparison: character vocabularies,
//! the Countdown generator's options, grouped toy rewards and reference answers.

use rhai::{Array, Dynamic};

fn eval<T: Clone + Send + Sync + 'static>(src: &str) -> Result<T, String> {
    let engine = workbench_scripting::new_engine();
    engine.eval::<T>(src).map_err(|e| e.to_string())
}

fn floats(a: Array) -> Vec<f64> {
    a.into_iter().map(|d| d.as_float().unwrap()).collect()
}

#[test]
fn char_ids_pads_and_aligns() {
    let r: Array = eval(
        r#"let a = countdown_alphabet();
           [char_ids(["1,2:3"], #{ alphabet: a, length: 7, pad: 19, align: "right" })[0],
            char_ids(["1+2"], #{ alphabet: a, length: 5, pad: 19 })[0],
            char_texts([[1, 10, 2, 19, 3]], a)[0]]"#,
    )
    .unwrap();
    let ids = |d: &Dynamic| -> Vec<i64> {
        d.clone()
            .into_array()
            .unwrap()
            .into_iter()
            .map(|x| x.as_int().unwrap())
            .collect()
    };
    assert_eq!(ids(&r[0]), vec![19, 19, 1, 16, 2, 17, 3]);
    assert_eq!(ids(&r[1]), vec![1, 10, 2, 19, 19]);
    assert_eq!(r[2].clone().into_string().unwrap(), "1+2");
    let e =
        eval::<Array>(r#"char_ids(["12345"], #{ alphabet: "0123456789", length: 3, pad: 10 })"#)
            .unwrap_err();
    assert!(e.contains("more than `length` 3"), "{e}");
    let e = eval::<Array>(r#"char_ids(["1"], #{ alphabet: "01", length: 3 })"#).unwrap_err();
    assert!(e.contains("needs a `pad`"), "{e}");
    let e = eval::<Array>(r#"char_ids(["1"], #{ alphabet: "01", colour: 3 })"#).unwrap_err();
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn countdown_options_and_toy_rewards_agree_with_the_reference_expression() {
    // Every generated problem's own expression scores 1.0; the numbers in the options' range.
    let r: Array = eval(
        r#"let rows = countdown_problems(3, 20, #{ max_number: 20, max_target: 50 });
           let ok = rows.all(|r| r.input.split(",").all(|x| x.parse_int() <= 20) && r.output.parse_int() <= 50);
           let answers = rows.map(|r| toy_answer("countdown", r));
           let scores = toy_rewards("countdown", answers, rows, 1);
           // the first row's answer for every row of a group of 2: right for row 0 only
           let first = [answers[0], answers[0]];
           [ok, scores, toy_rewards("countdown", first, [rows[0]], 2)]"#,
    )
    .unwrap();
    assert!(r[0].as_bool().unwrap());
    let scores = floats(r[1].clone().into_array().unwrap());
    assert_eq!(scores.len(), 20);
    assert!(scores.iter().all(|&s| s == 1.0), "{scores:?}");
    assert_eq!(floats(r[2].clone().into_array().unwrap()), vec![1.0, 1.0]);
    let e = eval::<Array>(r#"countdown_problems(0, 2, #{ count: 9 })"#).unwrap_err();
    assert!(e.contains("count must be 2..=6"), "{e}");
    let e = eval::<Array>(r#"toy_rewards("chess", [[1]], [#{}], 1)"#).unwrap_err();
    assert!(e.contains("unknown toy task"), "{e}");
}

#[test]
fn sudoku_toy_rewards_are_cell_accuracy() {
    let r: Array = eval(
        r#"let rows = sudoku_puzzles(1, 3, 8);
           let sol = rows.map(|r| toy_answer("sudoku", r));
           let puz = digit_ids(rows.map(|r| r.Puzzle));
           toy_rewards("sudoku", sol + puz, rows + rows, 1)"#,
    )
    .unwrap();
    assert_eq!(floats(r), vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn rhai_helpers_group_and_validate() {
    let r: Array = eval(
        r#"let rows = [#{ Puzzle: "3102200002100320", Solution: "3142243142131324" }];
           let good = digit_ids("3142243142131324");
           let bad = digit_ids("3102200002100320");
           cell_accuracy([good, bad, good], rows, 3)"#,
    )
    .unwrap();
    assert_eq!(floats(r), vec![1.0, 0.0, 1.0]);
    let c: Array = eval(
        r#"let rows = [#{ Puzzle: "3102200002100320", Solution: "3142243142131324" }];
           cell_rewards([digit_ids("3142243142131324")], rows, 1).to_array()[0]"#,
    )
    .unwrap();
    let want: Vec<f64> = "3102200002100320"
        .chars()
        .map(|ch| if ch == '0' { 1.0 } else { 0.0 })
        .collect();
    assert_eq!(floats(c), want);
    let t: Array = eval(r#"digit_texts(tensor([[1, 2, 10], [0, 4, 3]]))"#).unwrap();
    assert_eq!(t[0].clone().into_string().unwrap(), "12.");
    assert_eq!(t[1].clone().into_string().unwrap(), "043");
    let nested: Array = eval(r#"digit_ids(["12", "34"])"#).unwrap();
    assert_eq!(nested.len(), 2);
    let e = eval::<Array>(r#"cell_accuracy([[1, 2]], [#{ Puzzle: "1", Solution: "1" }], 2)"#)
        .unwrap_err();
    assert!(e.contains("1 completions for 1 rows × group 2"), "{e}");
    let e = eval::<Array>(r#"cell_accuracy([[1, 2]], [#{ puzzle: "1" }])"#).unwrap_err();
    assert!(e.contains("Solution"), "{e}");
    let e =
        eval::<Array>(r#"char_ids(["12"], #{ alphabet: "0123456789", lenght: 3 })"#).unwrap_err();
    assert!(
        e.contains("char_ids") && e.contains("`lenght`") && e.contains("`length`"),
        "{e}"
    );
}

#[test]
fn hint_maps_are_seeded_and_masked() {
    let r: Array = eval(
        r#"let toks = []; for i in 0..60 { toks.push(100 + i); }
           let a = igpo_hints(toks, 96, [0.4, 0.6], #{ seed: 7 });
           let b = igpo_hints(toks, 96, [0.4, 0.6], #{ seed: 7 });
           let total = 0; for h in a { total += h.len(); }
           [`${a}` == `${b}`, hint_mask(a, 96).to_dtype("f32").sum().item(), total]"#,
    )
    .unwrap();
    assert!(r[0].as_bool().unwrap());
    let total = r[2].as_int().unwrap();
    assert!(total > 0);
    let n = r[1]
        .as_float()
        .unwrap_or_else(|_| r[1].as_int().unwrap() as f64);
    assert_eq!(n, total as f64);
}

//! Typed options (an unknown or mistyped key names the key, the function and the accepted
//! keys) and the `Rollout` / `Task` nouns from a script.

fn engine() -> rhai::Engine {
    workbench_scripting::new_engine()
}

const MODEL: &str = r#"
    let m = new_model(#{ d_model: 16, n_layers: 1, n_heads: 2, n_kv_heads: 2, mlp_hidden_size: 32,
                         vocab_size: 20, max_sequence_length: 64, mask_token_id: 19,
                         eos_token_id: 14, pad_token_id: 14 }, #{ seed: 1 });
"#;

fn run_err(body: &str) -> String {
    let e = engine()
        .run(&format!("{MODEL}\n{body}"))
        .expect_err("the script should fail");
    e.to_string()
}

#[test]
fn unknown_and_mistyped_options_name_key_function_and_accepted_keys() {
    let e = run_err("generate(m, [[1, 2]], #{ gen_lenght: 4 });");
    for want in [
        "generate",
        "`gen_lenght`",
        "`gen_length`",
        "`steps`",
        "`repeat`",
    ] {
        assert!(e.contains(want), "missing {want}: {e}");
    }
    let e = run_err("generate(m, [[1, 2]], #{ gen_length: \"four\" });");
    for want in ["generate", "`gen_length`", "`temperature`"] {
        assert!(e.contains(want), "missing {want}: {e}");
    }
    let e = run_err("adamw([param(zeros([2]))], #{ lr: \"fast\" });");
    for want in ["adamw", "`lr`", "`betas`"] {
        assert!(e.contains(want), "missing {want}: {e}");
    }
    let e = run_err(
        "clipped_loss(zeros([1, 2]), zeros([1, 2]), zeros([1]), ones([1, 2]), #{ eps_lo: 0.1 });",
    );
    for want in ["clipped_loss", "`eps_lo`", "`eps_low`", "`level`"] {
        assert!(e.contains(want), "missing {want}: {e}");
    }
    let e = run_err("let r = generate(m, [[1, 2]], #{ gen_length: 4, steps: 4 }); logp_d1(m, r, #{ seed: 1.5 });");
    for want in ["logp_d1", "`seed`", "`p_mask_prompt`"] {
        assert!(e.contains(want), "missing {want}: {e}");
    }
    // An integer where a float is expected is fine.
    engine()
        .run(&format!(
            "{MODEL}\nlet o = adamw([param(zeros([2]))], #{{ lr: 1, weight_decay: 0 }});\n\
             generate(m, [[1]], #{{ gen_length: 4, steps: 4, temperature: 1, eoser: #{{ gamma_min: 0, gamma_max: 1 }} }});"
        ))
        .unwrap();
}

#[test]
fn rollout_methods_and_estimators_on_a_rollout() {
    let script = format!(
        r#"{MODEL}
        let r = generate(m, [[1, 2, 3], [4]], #{{ gen_length: 4, steps: 4, temperature: 1.0,
                                               repeat: 2, record: true, seed: 3 }});
        if r.batch_size != 4 || r.group != 2 {{ throw "layout"; }}
        if r.prompt.shape != [4, 3] || r.completion.shape != [4, 4] || r.attention.shape != [4, 7] {{ throw "shapes"; }}
        if r.prompt_index != [0, 0, 1, 1] {{ throw "prompt_index"; }}
        // the old Generation fields still read the same data
        if (r.completion_ids - r.completion).abs().sum().item() != 0 {{ throw "alias"; }}
        let a = logp_d1(m, r, #{{ seed: 2 }}).logp;
        let b = logp_d1(m, r.prompt, r.completion, #{{ seed: 2, attention_mask: r.attention }}).logp;
        if (a - b).abs().max().item() > 0.0 {{ throw "rollout form differs"; }}
        let s = logp_step(m, r, 0);
        if s.logp.shape != [4, 7] {{ throw "step"; }}
        let half = r.select([2, 3]);
        if half.group != 2 || half.prompt_index != [1, 1] || half.trajectory.num_steps != r.trajectory.num_steps {{ throw "select"; }}
        let w = r.with_completion(zeros([4, 4]).to_dtype("u32"));
        if w.trajectory != () || w.completion.sum().item() != 0 {{ throw "with_completion"; }}
        logp_masked(m, half).logp.shape
        "#
    );
    let shape: rhai::Array = engine().eval(&script).unwrap();
    assert_eq!(shape.len(), 2);
}

#[test]
fn toy_and_text_tasks_answer_the_same_calls() {
    let script = format!(
        r#"{MODEL}
        let t = task("sudoku:toy");
        let rows = [#{{ Puzzle: "3102200002100320", Solution: "3142243142131324" }}];
        let p = t.prompts(rows, "d1_train");
        if p.chat {{ throw "toy prompts are ids"; }}
        let r = generate(m, p.prompts, #{{ gen_length: 16, steps: 8, repeat: 2 }});
        let solved = r.with_completion([t.encode("3142243142131324"), t.encode("3102200002100320")]);
        let j = t.judge(solved, rows);
        if j.rewards != [1.0, 0.0] || j.correct != [true, false] {{ throw `judge ${{j}}`; }}
        let e = t.evaluate(m, rows, #{{ gen_length: 16, steps: 8 }});
        if e.n != 1 {{ throw "evaluate"; }}
        let g = task("gsm8k");
        if g.splits.test != "data/gsm8k_test.jsonl" || g.splits.train != () {{ throw "splits"; }}
        g.prompts([#{{ question: "1+1?", answer: "2" }}], "d1_train").chat
        "#
    );
    assert!(engine().eval::<bool>(&script).unwrap());
}

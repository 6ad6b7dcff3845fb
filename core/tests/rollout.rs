//! The core generation entry (`generate_rollout`, what the CLI and scripts call), the `Rollout`
//! it returns, and the toy tasks judged through the `Task` trait from Rust.

use std::collections::HashMap;

use candle_core::{DType, Device};
use serde_json::json;
use workbench_core::data::Example;
use workbench_core::model::{Config, Llada, LoadOptions};
use workbench_core::sampler::{
    self, generate_rollout, Canvas, GenerateRequest, PromptInput, SamplerConfig,
};
use workbench_core::tasks::judge::{evaluate, judge, prompts_for, EvalRequest};
use workbench_core::tasks::{task_by_name, PromptStyle};

fn model() -> Llada {
    // 20 ids: 0..=9 digits, mask 19, EOS/pad 14.
    let cfg = Config::small(16, 1, 2, 2, 32, 20);
    let load = LoadOptions {
        device: Device::Cpu,
        dtype: DType::F32,
        trainable: false,
    };
    Llada::random(cfg, 3, &load).unwrap()
}

fn sampler(record: bool) -> SamplerConfig {
    SamplerConfig {
        gen_length: 4,
        steps: 4,
        temperature: 1.0,
        record,
        seed: 5,
        ..SamplerConfig::default()
    }
}

#[test]
fn the_entry_matches_the_canvas_path_token_for_token() {
    let m = model();
    let prompts = vec![vec![1, 2, 3], vec![4, 5]];
    let hints = vec![HashMap::from([(1usize, 7u32)]), HashMap::new()];
    let cfg = sampler(false);
    let canvas = Canvas::new(&prompts, 4, 14, 19)
        .unwrap()
        .with_hints(&hints)
        .unwrap()
        .with_row_seeds(vec![10, 11])
        .unwrap();
    let want = sampler::generate_canvas(&m, canvas, &cfg, None).unwrap();
    let req = GenerateRequest {
        hints: Some(hints),
        row_seeds: Some(vec![10, 11]),
        ..GenerateRequest::default()
    };
    let input: Vec<PromptInput> = prompts.into_iter().map(PromptInput::Ids).collect();
    let got = generate_rollout(&m, None, &input, &cfg, &req, None).unwrap();
    assert_eq!(got.completion, want.completions);
    assert_eq!(got.completion[0][1], 7, "the hint stays");
    assert_eq!(got.canvas(), want.canvas);
    assert_eq!(got.attention[1][0], 0, "row 1 is left-padded");
    assert!(got.texts.is_empty(), "no tokenizer, no texts");
    // Bad requests are errors, not panics.
    let zero = GenerateRequest {
        repeat: 0,
        ..GenerateRequest::default()
    };
    assert!(generate_rollout(&m, None, &input, &cfg, &zero, None).is_err());
    let text = [PromptInput::Text("hi".into())];
    let e = generate_rollout(&m, None, &text, &cfg, &GenerateRequest::default(), None);
    assert!(format!("{:#}", e.unwrap_err()).contains("tokenizer"));
}

#[test]
fn rollout_groups_select_and_replace() {
    let m = model();
    let input = vec![PromptInput::Ids(vec![1, 2]), PromptInput::Ids(vec![3])];
    let req = GenerateRequest {
        repeat: 2,
        ..GenerateRequest::default()
    };
    let r = generate_rollout(&m, None, &input, &sampler(true), &req, None).unwrap();
    assert_eq!(
        (r.batch_size(), r.group, r.prompt_len(), r.gen_length()),
        (4, 2, 2, 4)
    );
    assert_eq!(r.prompt_index, vec![0, 0, 1, 1]);
    assert_eq!(r.prompt_tensor().unwrap().dims(), &[4, 2]);
    assert_eq!(r.attention_tensor().unwrap().dims(), &[4, 6]);
    let tr = r.trajectory.as_ref().unwrap();

    let whole = r.select(&[2, 3]).unwrap();
    assert_eq!((whole.group, whole.prompt_index.clone()), (2, vec![1, 1]));
    assert_eq!(whole.completion, r.completion[2..].to_vec());
    let part = r.select(&[3, 0]).unwrap();
    assert_eq!(part.group, 1, "not whole groups");
    let ptr = part.trajectory.as_ref().unwrap();
    assert_eq!(ptr.batch_size(), 2);
    assert_eq!(ptr.num_steps(), tr.num_steps());
    let (a, b) = (ptr.state_ids(0).unwrap(), tr.state_ids(0).unwrap());
    assert_eq!(a[..6], b[18..24], "row 3's state comes first");
    assert_eq!(
        ptr.step(0).unwrap().committed[1],
        tr.step(0).unwrap().committed[0]
    );
    assert!(r.select(&[4]).is_err());

    let other = vec![vec![9; 4]; 4];
    let w = r.with_completion(other.clone(), Vec::new()).unwrap();
    assert_eq!(w.completion, other);
    assert!(w.trajectory.is_none());
    assert_eq!(w.prompt, r.prompt);
    assert!(r.with_completion(vec![vec![9; 3]; 4], Vec::new()).is_err());
    assert!(r.with_completion(vec![vec![9; 4]; 3], Vec::new()).is_err());
}

#[test]
fn toy_tasks_judge_and_evaluate_a_rollout_from_rust() {
    let m = model();
    let t = task_by_name("sudoku:toy").unwrap();
    let rows = vec![Example::from_pairs([
        ("Puzzle", json!("3102200002100320")),
        ("Solution", json!("3142243142131324")),
    ])];
    let (prompts, req) = prompts_for(&*t, &rows, PromptStyle::D1Train).unwrap();
    assert!(!req.chat, "toy prompts are ids, not chat text");
    assert_eq!(
        prompts[0],
        PromptInput::Ids(vec![3, 1, 0, 2, 2, 0, 0, 0, 0, 2, 1, 0, 0, 3, 2, 0])
    );
    let cfg = SamplerConfig {
        gen_length: 16,
        steps: 8,
        ..SamplerConfig::default()
    };
    let req = GenerateRequest { repeat: 2, ..req };
    let r = generate_rollout(&m, None, &prompts, &cfg, &req, None).unwrap();
    let solved = t.vocab().unwrap().encode("3142243142131324").unwrap();
    let r = r
        .with_completion(vec![solved, vec![19; 16]], Vec::new())
        .unwrap();
    let j = judge(&*t, &rows, &r).unwrap();
    assert_eq!(j.rewards, vec![1.0, 0.0]);
    assert_eq!(j.correct, vec![true, false]);
    let s = evaluate(&*t, &m, None, &rows, &cfg, &EvalRequest::default()).unwrap();
    assert_eq!(s.n, 1);
    assert!((0.0..=1.0).contains(&s.accuracy));
    // A text task needs decoded texts: a clear error for a tokenizer-less rollout.
    let g = task_by_name("gsm8k").unwrap();
    let e = judge(&*g, &rows, &r).unwrap_err();
    assert!(format!("{e:#}").contains("no decoded texts"), "{e:#}");
    // Splits: only test files ship; the training source is named.
    let s = g.splits();
    assert_eq!(s.test, Some("data/gsm8k_test.jsonl"));
    assert!(s.train.is_none() && s.train_source.contains("train"));
    assert!(task_by_name("math500")
        .unwrap()
        .splits()
        .train_source
        .contains("MATH train"));
}

//! AdamW against a hand-rolled f64 reference, clipping, accumulation, schedules, the non-finite
//! guard and bit-exact state round trips.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, DType, Device, Tensor, Var};
use workbench_core::train::optim::{AdamW, AdamWConfig, OnNonFinite, Schedule};

/// One variable of the quadratic: value, curvature `a`, centre `c`.
struct Quad {
    x0: Vec<f64>,
    a: Vec<f64>,
    c: Vec<f64>,
    shape: Vec<usize>,
}

fn problem() -> Vec<Quad> {
    vec![
        Quad {
            x0: vec![1.0, -2.0, 0.5],
            a: vec![1.0, 3.0, 0.5],
            c: vec![0.3, 1.5, -1.0],
            shape: vec![3],
        },
        Quad {
            x0: vec![2.0, -1.0, 0.75, 1.25],
            a: vec![0.2, 2.0, 1.0, 4.0],
            c: vec![-0.5, 0.5, 2.0, 1.0],
            shape: vec![2, 2],
        },
    ]
}

fn vars_of(p: &[Quad], dtype: DType) -> Vec<(String, Var)> {
    p.iter()
        .enumerate()
        .map(|(i, q)| {
            let t = Tensor::from_vec(q.x0.clone(), q.shape.as_slice(), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            (format!("w{i}"), Var::from_tensor(&t).unwrap())
        })
        .collect()
}

/// ½ Σ a (x − c)², scaled by `scale`, as a candle graph.
fn loss_of(p: &[Quad], vars: &[(String, Var)], scale: f64) -> Tensor {
    let mut total: Option<Tensor> = None;
    for (q, (_, v)) in p.iter().zip(vars) {
        let x = v.as_tensor().to_dtype(DType::F32).unwrap();
        let a = Tensor::from_vec(q.a.clone(), q.shape.as_slice(), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let c = Tensor::from_vec(q.c.clone(), q.shape.as_slice(), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let l = ((x - c).unwrap().sqr().unwrap() * a)
            .unwrap()
            .sum_all()
            .unwrap()
            .affine(0.5 * scale, 0.0)
            .unwrap();
        total = Some(match total {
            Some(t) => (t + l).unwrap(),
            None => l,
        });
    }
    total.unwrap()
}

fn values(v: &Var) -> Vec<f64> {
    v.as_tensor()
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn bits(v: &Var) -> Vec<u32> {
    v.as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// torch.optim.AdamW written out in f64, on the same quadratic.
fn reference(p: &[Quad], cfg: &AdamWConfig, sched: &Schedule, steps: u64) -> Vec<Vec<f64>> {
    let mut x: Vec<Vec<f64>> = p.iter().map(|q| q.x0.clone()).collect();
    let mut m: Vec<Vec<f64>> = p.iter().map(|q| vec![0.0; q.x0.len()]).collect();
    let mut v = m.clone();
    for t in 1..=steps {
        let lr = cfg.lr * sched.factor(t - 1);
        let bc1 = 1.0 - cfg.beta1.powf(t as f64);
        let bc2 = 1.0 - cfg.beta2.powf(t as f64);
        for (k, q) in p.iter().enumerate() {
            for i in 0..q.x0.len() {
                let g = q.a[i] * (x[k][i] - q.c[i]);
                x[k][i] *= 1.0 - lr * cfg.weight_decay;
                m[k][i] = cfg.beta1 * m[k][i] + (1.0 - cfg.beta1) * g;
                v[k][i] = cfg.beta2 * v[k][i] + (1.0 - cfg.beta2) * g * g;
                let mh = m[k][i] / bc1;
                let vh = v[k][i] / bc2;
                x[k][i] -= lr * mh / (vh.sqrt() + cfg.eps);
            }
        }
    }
    x
}

fn config(lr: f64, wd: f64) -> AdamWConfig {
    AdamWConfig {
        lr,
        weight_decay: wd,
        ..AdamWConfig::default()
    }
}

#[test]
fn twenty_adamw_steps_match_an_f64_reference_with_weight_decay_and_a_schedule() {
    let p = problem();
    let cfg = config(0.05, 0.1);
    let sched = Schedule::Cosine {
        warmup: 3,
        total: 20,
        min_ratio: 0.1,
    };
    let vars = vars_of(&p, DType::F32);
    let mut opt = AdamW::new(vars.clone(), cfg.clone(), sched.clone()).unwrap();
    for t in 1..=20u64 {
        let grads = loss_of(&p, &vars, 1.0).backward().unwrap();
        let info = opt.step_with(&grads).unwrap();
        assert_eq!(info.step, t);
        assert!(!info.skipped);
        assert!((info.lr - cfg.lr * sched.factor(t - 1)).abs() < 1e-15);
    }
    assert_eq!(opt.step_count(), 20);
    let want = reference(&p, &cfg, &sched, 20);
    for ((_, v), w) in vars.iter().zip(&want) {
        for (got, want) in values(v).iter().zip(w) {
            // Relative error, floored at 0.1: f32 arithmetic on O(1) updates leaves ~1e-8
            // absolute error, which would dominate for weights that end up near zero.
            let rel = (got - want).abs() / want.abs().max(0.1);
            assert!(rel <= 1e-6, "got {got}, reference {want}, rel {rel:e}");
        }
    }
    // The optimizer moved the weights a long way, so the comparison is not trivial.
    let start: Vec<f64> = p[0].x0.clone();
    assert!(values(&vars[0].1)
        .iter()
        .zip(&start)
        .all(|(a, b)| (a - b).abs() > 0.05));
}

#[test]
fn bf16_and_f64_variables_keep_their_dtype_and_f32_state() {
    let p = problem();
    for dtype in [DType::BF16, DType::F64] {
        let vars = vars_of(&p, dtype);
        let mut opt = AdamW::new(vars.clone(), config(0.1, 0.0), Schedule::Constant).unwrap();
        for _ in 0..3 {
            let grads = loss_of(&p, &vars, 1.0).backward().unwrap();
            opt.step_with(&grads).unwrap();
        }
        for (_, v) in &vars {
            assert_eq!(v.dtype(), dtype);
        }
        for (_, t) in opt.state_tensors() {
            assert_eq!(t.dtype(), DType::F32);
        }
        // Three steps of ~lr each towards the centre.
        let got = values(&vars[0].1);
        assert!((got[0] - 0.7).abs() < 0.02, "{dtype:?}: {got:?}");
    }
}

#[test]
fn clipping_returns_the_pre_clip_norm_and_scales_the_gradients() {
    let p = problem();
    let vars = vars_of(&p, DType::F32);
    let grads = loss_of(&p, &vars, 1.0).backward().unwrap();
    // The hand norm from the same f32 gradients.
    let mut sq = 0.0f64;
    let mut flat = Vec::new();
    for (_, v) in &vars {
        let g: Vec<f64> = grads
            .get(v.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap();
        sq += g.iter().map(|x| x * x).sum::<f64>();
        flat.push(g);
    }
    let norm = sq.sqrt();
    assert!(norm > 1.0);
    let max = 0.5;
    let cfg = AdamWConfig {
        max_grad_norm: Some(max),
        ..config(0.01, 0.0)
    };
    let mut opt = AdamW::new(vars.clone(), cfg, Schedule::Constant).unwrap();
    let info = opt.step_with(&grads).unwrap();
    assert!(
        (info.grad_norm - norm).abs() <= 1e-12 * norm,
        "{} vs {norm}",
        info.grad_norm
    );
    // After one step exp_avg = (1 − β1) · clip · g.
    let coef = max / (norm + 1e-6);
    let state: HashMap<String, Tensor> = opt.state_tensors().into_iter().collect();
    for (i, g) in flat.iter().enumerate() {
        let m: Vec<f64> = state[&format!("exp_avg.w{i}")]
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap();
        for (m, g) in m.iter().zip(g) {
            let want = 0.1 * coef * g;
            assert!(
                (m - want).abs() <= 1e-6 * want.abs().max(1e-6),
                "{m} vs {want}"
            );
        }
    }
    // Below the threshold nothing is scaled.
    let vars2 = vars_of(&p, DType::F32);
    let grads2 = loss_of(&p, &vars2, 1.0).backward().unwrap();
    let cfg = AdamWConfig {
        max_grad_norm: Some(norm * 2.0),
        ..config(0.01, 0.0)
    };
    let mut opt = AdamW::new(vars2.clone(), cfg, Schedule::Constant).unwrap();
    opt.step_with(&grads2).unwrap();
    let state: HashMap<String, Tensor> = opt.state_tensors().into_iter().collect();
    let m: Vec<f64> = state["exp_avg.w0"]
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    for (m, g) in m.iter().zip(&flat[0]) {
        assert!((m - 0.1 * g).abs() <= 1e-7 * g.abs().max(1e-6));
    }
}

#[test]
fn two_half_loss_micro_batches_equal_one_full_batch() {
    // Loss over 4 samples: mean_k ½ (w·x_k − y_k)²; micro-batches hold two samples each.
    let xs = [[1.0f32, 2.0], [0.5, -1.0], [-2.0, 0.3], [1.5, 1.5]];
    let ys = [1.0f32, -0.5, 2.0, 0.25];
    let loss = |w: &Var, idx: &[usize], scale: f64| -> Tensor {
        let x: Vec<f32> = idx.iter().flat_map(|&i| xs[i]).collect();
        let y: Vec<f32> = idx.iter().map(|&i| ys[i]).collect();
        let x = Tensor::from_vec(x, (idx.len(), 2), &Device::Cpu).unwrap();
        let y = Tensor::from_vec(y, idx.len(), &Device::Cpu).unwrap();
        let pred = x
            .matmul(&w.as_tensor().unsqueeze(1).unwrap())
            .unwrap()
            .squeeze(1)
            .unwrap();
        ((pred - y).unwrap().sqr().unwrap().mean_all().unwrap())
            .affine(0.5 * scale, 0.0)
            .unwrap()
    };
    let init = Tensor::new(&[0.2f32, -0.4], &Device::Cpu).unwrap();
    let w_full = Var::from_tensor(&init).unwrap();
    let w_acc = Var::from_tensor(&init).unwrap();
    let cfg = AdamWConfig {
        max_grad_norm: Some(0.3),
        ..config(0.05, 0.01)
    };
    let mut full = AdamW::new(
        vec![("w".into(), w_full.clone())],
        cfg.clone(),
        Schedule::Constant,
    )
    .unwrap();
    let mut acc = AdamW::new(vec![("w".into(), w_acc.clone())], cfg, Schedule::Constant).unwrap();
    for _ in 0..4 {
        let g = loss(&w_full, &[0, 1, 2, 3], 1.0).backward().unwrap();
        let a = full.step_with(&g).unwrap();
        acc.accumulate(&loss(&w_acc, &[0, 1], 0.5).backward().unwrap())
            .unwrap();
        acc.accumulate(&loss(&w_acc, &[2, 3], 0.5).backward().unwrap())
            .unwrap();
        assert_eq!(acc.accumulated(), 2);
        let b = acc.step().unwrap();
        assert_eq!(acc.accumulated(), 0);
        assert!((a.grad_norm - b.grad_norm).abs() <= 1e-6 * a.grad_norm);
    }
    for (a, b) in values(&w_full).iter().zip(values(&w_acc)) {
        assert!((a - b).abs() <= 1e-6 * a.abs().max(1e-3), "{a} vs {b}");
    }
    // A step with nothing accumulated is an error.
    let e = acc.step().unwrap_err().to_string();
    assert!(e.contains("no gradients accumulated"), "{e}");
}

#[test]
fn schedule_factors_follow_the_hf_formulas() {
    let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    let c = Schedule::Constant;
    for s in [0, 1, 100] {
        close(c.factor(s), 1.0);
    }
    let cw = Schedule::ConstantWithWarmup { warmup: 4 };
    for (s, f) in [(0, 0.0), (1, 0.25), (2, 0.5), (4, 1.0), (100, 1.0)] {
        close(cw.factor(s), f);
    }
    let lin = Schedule::Linear {
        warmup: 10,
        total: 100,
    };
    for (s, f) in [
        (0, 0.0),
        (5, 0.5),
        (10, 1.0),
        (55, 0.5),
        (91, 0.1),
        (100, 0.0),
        (120, 0.0),
    ] {
        close(lin.factor(s), f);
    }
    let cos = Schedule::Cosine {
        warmup: 10,
        total: 110,
        min_ratio: 0.0,
    };
    let pi = std::f64::consts::PI;
    for (s, f) in [
        (0, 0.0),
        (5, 0.5),
        (10, 1.0),
        (35, 0.5 * (1.0 + (pi * 0.25).cos())),
        (60, 0.5),
        (110, 0.0),
    ] {
        close(cos.factor(s), f);
    }
    let cos_min = Schedule::Cosine {
        warmup: 0,
        total: 100,
        min_ratio: 0.1,
    };
    close(cos_min.factor(0), 1.0);
    close(cos_min.factor(50), 0.55);
    close(cos_min.factor(100), 0.1);
    // No warmup: HF's max(1, 0) keeps the first factor at 1.
    close(
        Schedule::Linear {
            warmup: 0,
            total: 4,
        }
        .factor(1),
        0.75,
    );

    // Parsing.
    assert_eq!(
        Schedule::parse("linear", Some(10), Some(100), None).unwrap(),
        lin
    );
    assert_eq!(
        Schedule::parse("cosine", None, Some(100), Some(0.1)).unwrap(),
        cos_min
    );
    assert_eq!(
        Schedule::parse("constant_with_warmup", Some(4), None, None).unwrap(),
        cw
    );
    let e = Schedule::parse("exponential", None, None, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("exponential") && e.contains("constant, constant_with_warmup, linear, cosine"),
        "{e}"
    );
    let e = Schedule::parse("linear", Some(5), None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("total_steps"), "{e}");
    let e = Schedule::parse("linear", Some(50), Some(10), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("warmup (50) exceeds total_steps (10)"), "{e}");

    // The optimizer's lr follows the schedule: the first update uses factor(0).
    let p = problem();
    let vars = vars_of(&p, DType::F32);
    let mut opt = AdamW::new(vars.clone(), config(0.1, 0.0), cw).unwrap();
    assert_eq!(opt.lr(), 0.0);
    close(opt.lr_at(2), 0.05);
    let info = opt
        .step_with(&loss_of(&p, &vars, 1.0).backward().unwrap())
        .unwrap();
    assert_eq!(info.lr, 0.0);
    close(opt.lr(), 0.025);
    opt.set_lr(1.0).unwrap();
    close(opt.lr(), 0.25);
}

fn nan_grads(vars: &[(String, Var)], bad: usize, value: f32) -> GradStore {
    let mut g = GradStore::default();
    for (i, (_, v)) in vars.iter().enumerate() {
        let t = if i == bad {
            v.as_tensor()
                .ones_like()
                .unwrap()
                .affine(0.0, 0.0)
                .unwrap()
                .broadcast_add(&Tensor::new(value, &Device::Cpu).unwrap())
                .unwrap()
        } else {
            v.as_tensor().ones_like().unwrap()
        };
        g.insert(v.as_tensor(), t);
    }
    g
}

#[test]
fn non_finite_gradients_error_or_skip_and_leave_everything_untouched() {
    let p = problem();
    let vars = vars_of(&p, DType::F32);
    let mut opt = AdamW::new(vars.clone(), config(0.1, 0.1), Schedule::Constant).unwrap();
    opt.step_with(&loss_of(&p, &vars, 1.0).backward().unwrap())
        .unwrap();
    let before: Vec<Vec<u32>> = vars.iter().map(|(_, v)| bits(v)).collect();
    let state_before: Vec<Vec<f32>> = opt
        .state_tensors()
        .iter()
        .map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap())
        .collect();

    let e = opt
        .step_with(&nan_grads(&vars, 1, f32::NAN))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("step 2: gradient of w1 is not finite (NaN)"),
        "{e}"
    );
    let e = opt
        .step_with(&nan_grads(&vars, 0, f32::INFINITY))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("step 2: gradient of w0 is not finite (Inf)"),
        "{e}"
    );
    let good = loss_of(&p, &vars, 1.0).backward().unwrap();
    let e = opt.step_with_loss(&good, f64::NAN).unwrap_err().to_string();
    assert!(e.contains("step 2: loss is not finite (NaN)"), "{e}");
    assert_eq!(opt.step_count(), 1);
    let after: Vec<Vec<u32>> = vars.iter().map(|(_, v)| bits(v)).collect();
    assert_eq!(before, after, "weights changed");
    let state_after: Vec<Vec<f32>> = opt
        .state_tensors()
        .iter()
        .map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    assert_eq!(state_before, state_after, "state changed");
    // The failed step's gradients were dropped: the next step works from fresh ones.
    assert_eq!(opt.accumulated(), 0);
    assert_eq!(opt.step_with(&good).unwrap().step, 2);

    // Skip mode.
    let vars = vars_of(&p, DType::F32);
    let cfg = AdamWConfig {
        on_nonfinite: OnNonFinite::Skip,
        ..config(0.1, 0.1)
    };
    let mut opt = AdamW::new(vars.clone(), cfg, Schedule::Constant).unwrap();
    let before: Vec<Vec<u32>> = vars.iter().map(|(_, v)| bits(v)).collect();
    let info = opt.step_with(&nan_grads(&vars, 0, f32::NAN)).unwrap();
    assert!(info.skipped && info.grad_norm.is_nan() && info.step == 0);
    // A bad micro-batch loss poisons the accumulated step.
    let good = loss_of(&p, &vars, 1.0).backward().unwrap();
    opt.accumulate_with_loss(&good, f64::INFINITY).unwrap();
    let info = opt.step().unwrap();
    assert!(info.skipped && info.grad_norm.is_finite());
    assert_eq!(opt.step_count(), 0);
    let after: Vec<Vec<u32>> = vars.iter().map(|(_, v)| bits(v)).collect();
    assert_eq!(before, after);
    let info = opt.step_with(&good).unwrap();
    assert!(!info.skipped && info.step == 1);
}

#[test]
fn state_round_trip_continues_bit_identically() {
    let p = problem();
    let cfg = AdamWConfig {
        max_grad_norm: Some(1.0),
        ..config(0.03, 0.05)
    };
    let sched = Schedule::Linear {
        warmup: 2,
        total: 6,
    };
    let run = |vars: &[(String, Var)], opt: &mut AdamW, n: usize| {
        for _ in 0..n {
            let g = loss_of(&p, vars, 1.0).backward().unwrap();
            opt.step_with(&g).unwrap();
        }
    };
    // Straight through.
    let va = vars_of(&p, DType::F32);
    let mut a = AdamW::new(va.clone(), cfg.clone(), sched.clone()).unwrap();
    run(&va, &mut a, 6);

    // 3 steps, save (through a safetensors file and JSON text), fresh optimizer, 3 steps.
    let vb = vars_of(&p, DType::F32);
    let mut b = AdamW::new(vb.clone(), cfg.clone(), sched.clone()).unwrap();
    run(&vb, &mut b, 3);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("optim.safetensors");
    let tensors: HashMap<String, Tensor> = b.state_tensors().into_iter().collect();
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let text = serde_json::to_string(&b.state_json()).unwrap();
    let weights: Vec<Vec<f32>> = vb
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    drop(b);

    let vc: Vec<(String, Var)> = vb
        .iter()
        .zip(&weights)
        .map(|((n, v), w)| {
            let t = Tensor::from_vec(w.clone(), v.shape(), &Device::Cpu).unwrap();
            (n.clone(), Var::from_tensor(&t).unwrap())
        })
        .collect();
    // A fresh optimizer with other settings: the checkpoint's config and schedule win.
    let mut c = AdamW::new(vc.clone(), config(1.0, 0.0), Schedule::Constant).unwrap();
    let loaded = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    c.load_state(&loaded, &json).unwrap();
    assert_eq!(c.step_count(), 3);
    assert_eq!(c.config(), &cfg);
    assert_eq!(c.schedule(), &sched);
    run(&vc, &mut c, 3);
    assert_eq!(c.step_count(), 6);
    for ((_, x), (_, y)) in va.iter().zip(&vc) {
        assert_eq!(bits(x), bits(y), "resume is not bit-exact");
    }

    // Validation errors name the problem.
    let mut bad = loaded.clone();
    bad.remove("exp_avg_sq.w1");
    let e = c.load_state(&bad, &json).unwrap_err().to_string();
    assert!(e.contains("`exp_avg_sq.w1` is missing"), "{e}");
    let mut bad = loaded.clone();
    bad.insert(
        "exp_avg.w0".into(),
        Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
    );
    let e = c.load_state(&bad, &json).unwrap_err().to_string();
    assert!(e.contains("`exp_avg.w0` has shape [4]"), "{e}");
    let mut bad = loaded.clone();
    bad.insert(
        "exp_avg.zz".into(),
        Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
    );
    let e = c.load_state(&bad, &json).unwrap_err().to_string();
    assert!(e.contains("unexpected tensors [\"exp_avg.zz\"]"), "{e}");
    let mut other = json.clone();
    other["var_names"] = serde_json::json!(["w0", "w9"]);
    let e = c.load_state(&loaded, &other).unwrap_err().to_string();
    assert!(e.contains("w9") && e.contains("w1"), "{e}");
    assert_eq!(c.step_count(), 6, "a failed load changed nothing");
}

#[test]
fn constructor_rejects_bad_settings() {
    let p = problem();
    let e = AdamW::new(vec![], AdamWConfig::default(), Schedule::Constant)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no variables"), "{e}");
    let e = AdamW::new(
        vars_of(&p, DType::F32),
        AdamWConfig {
            beta1: 1.0,
            ..AdamWConfig::default()
        },
        Schedule::Constant,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("beta1"), "{e}");
    let mut v = vars_of(&p, DType::F32);
    v[1].0 = "w0".into();
    let e = AdamW::new(v, AdamWConfig::default(), Schedule::Constant)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`w0` appears twice"), "{e}");
    assert_eq!(OnNonFinite::parse("skip").unwrap(), OnNonFinite::Skip);
    assert!(OnNonFinite::parse("ignore").is_err());
}

#[test]
fn warmup_ratio_rounds_up_as_hugging_face() {
    use workbench_core::train::optim::warmup_steps_from_ratio;
    // d1: warmup_ratio 1e-4 of any run shorter than 10 000 steps is one step, not zero.
    assert_eq!(warmup_steps_from_ratio(1e-4, 6000).unwrap(), 1);
    assert_eq!(warmup_steps_from_ratio(0.1, 25).unwrap(), 3);
    assert_eq!(warmup_steps_from_ratio(0.0, 25).unwrap(), 0);
    assert_eq!(warmup_steps_from_ratio(0.5, 10).unwrap(), 5);
    assert!(warmup_steps_from_ratio(1.5, 10).is_err());
}

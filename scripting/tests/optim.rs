//! `adamw` and the `Optimizer` type through the script engine: `tests/scripts/optim.rhai`
//! fits a linear regression to its closed form and checks the guards and option errors.

use std::path::PathBuf;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts/optim.rhai")
}

#[test]
fn optim_script_reaches_the_closed_form_and_checks_the_guards() {
    workbench_scripting::engine::run_file(&script(), &[], &[]).unwrap();
    // Too few steps cannot reach the optimum: the script's assertion must fire.
    let e = workbench_scripting::engine::run_file(&script(), &["steps=3".into()], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("did not reach the optimum"), "{e}");
}

#[test]
fn optimizer_values_in_rust_match_the_script_view() {
    let engine = workbench_scripting::new_engine();
    let m: rhai::Map = engine
        .eval(
            r#"
            let w = param(tensor([1.0, -1.0]));
            let opt = adamw([w], #{ lr: 0.5, schedule: "cosine", warmup: 0, total_steps: 4,
                                    min_lr_ratio: 0.2 });
            let l = (w * w).sum();
            let info = opt.step(l.backward());
            info.next_lr = opt.lr;
            info.w = w.to_array();
            info
            "#,
        )
        .unwrap();
    assert_eq!(m["step"].as_int().unwrap(), 1);
    assert!((m["lr"].as_float().unwrap() - 0.5).abs() < 1e-12);
    // Gradient 2w = [2, -2]: norm sqrt(8).
    assert!((m["grad_norm"].as_float().unwrap() - 8f64.sqrt()).abs() < 1e-9);
    // Cosine with floor 0.2 after one of four steps: 0.5 (1 + cos(pi/4)) * 0.8 + 0.2.
    let f = 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos()) * 0.8 + 0.2;
    assert!((m["next_lr"].as_float().unwrap() - 0.5 * f).abs() < 1e-12);
    // First AdamW step moves each weight by lr (sign of the gradient), after decay 1 - lr wd.
    let w: Vec<f64> = m["w"]
        .clone()
        .into_array()
        .unwrap()
        .iter()
        .map(|d| d.as_float().unwrap())
        .collect();
    let decay = 1.0 - 0.5 * 0.01;
    assert!((w[0] - (decay - 0.5)).abs() < 1e-5, "{w:?}");
    assert!((w[1] - (-decay + 0.5)).abs() < 1e-5, "{w:?}");
}

#[test]
fn bad_options_are_errors_naming_them() {
    let engine = workbench_scripting::new_engine();
    for (src, want) in [
        (
            "adamw([param(zeros([1]))], #{ lr: 0.1, momentum: 0.9 })",
            "unknown option `momentum`",
        ),
        (
            "adamw([param(zeros([1]))], #{ betas: [0.9] })",
            "option `betas`",
        ),
        (
            "adamw([param(zeros([1]))], #{ schedule: \"linear\" })",
            "total_steps",
        ),
        (
            "adamw([param(zeros([1]))], #{ on_nonfinite: \"ignore\" })",
            "error, skip",
        ),
        (
            "adamw([param(zeros([1]))], #{ lr: -1.0 })",
            "lr must be >= 0",
        ),
        ("adamw([], #{})", "empty"),
    ] {
        let e = engine.eval::<rhai::Dynamic>(src).unwrap_err().to_string();
        assert!(e.contains(want), "{src}: {e}");
    }
}

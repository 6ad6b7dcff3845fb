//! The losses bindings end to end: `tests/scripts/losses.rhai` checks values and errors.

use std::path::Path;

#[test]
fn losses_script_matches_hand_computed_values() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts/losses.rhai");
    workbench_scripting::run_file(&script, &[], &[]).unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn clipped_loss_returns_a_map_and_rejects_unknown_options() {
    let engine = workbench_scripting::new_engine();
    let keys: String = engine
        .eval(
            r#"let o = clipped_loss(tensor([[0.0]]), tensor([[0.0]]), tensor([1.0]), tensor([[1.0]]));
               o.keys().sort(); o.keys().reduce(|a, k| if a == () { k } else { a + "," + k })"#,
        )
        .unwrap();
    let mut k: Vec<&str> = keys.split(',').collect();
    k.sort();
    assert_eq!(k, ["clip_fraction", "loss", "ratio"]);
    let e = engine
        .eval::<rhai::Dynamic>(
            r#"clipped_loss(tensor([[0.0]]), tensor([[0.0]]), tensor([1.0]), tensor([[1.0]]), #{eps: 0.2})"#,
        )
        .expect_err("unknown option");
    assert!(e.to_string().contains("unknown option `eps`"), "{e}");
}

//! The estimator and diffusion-loss bindings end to end: `tests/scripts/estimators.rhai` calls
//! each once on the fixture model and checks shapes and finite values.

use std::path::Path;

#[test]
fn estimator_script_runs_on_the_fixture_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = std::fs::read_to_string(root.join("tests/scripts/estimators.rhai")).unwrap();
    let fixture = root.join("tests/fixtures/llada-tiny");
    let engine = workbench_scripting::new_engine();
    let mut scope = rhai::Scope::new();
    scope.push_constant("FIXTURE", fixture.to_string_lossy().to_string());
    if let Err(e) = engine.run_with_scope(&mut scope, &script) {
        panic!("estimators.rhai failed: {e}");
    }
}

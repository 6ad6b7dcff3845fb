//! `docs/api.md` is generated from the registered functions and must be current; every
//! Rhai-visible function carries a doc comment.

#[test]
fn api_reference_is_up_to_date() {
    let engine = workbench_scripting::new_engine();
    let text = workbench::docs::api_markdown(&engine).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == text,
        "docs/api.md is stale: run `cargo run -- doc`"
    );
}

#[test]
fn every_registered_function_is_documented() {
    let engine = workbench_scripting::new_engine();
    let missing = workbench::docs::undocumented(&engine).unwrap();
    assert!(missing.is_empty(), "undocumented: {missing:?}");
}

/// The optimizer, estimator and loss bindings (whose per-area checks lived in the scripting
/// crate's tests before the generator moved here) are all in the reference.
#[test]
fn optimizer_estimator_and_loss_bindings_are_in_the_reference() {
    let engine = workbench_scripting::new_engine();
    let md = workbench::docs::api_markdown(&engine).unwrap();
    for name in [
        "adamw",
        "apply",
        "logp_d1",
        "logp_masked",
        "logp_step",
        "logp_mdpo",
        "elbo",
        "elbo_counts",
        "logp_coupled",
        "pretrain_loss",
        "sft_loss",
        "group_advantages",
        "mdpo_advantages",
        "top_k_steps",
        "clipped_loss",
        "kl",
        "reduce_loss",
        "entropy",
        "entropy_filter",
    ] {
        assert!(
            md.contains(&format!("### {name}\n")),
            "{name} missing from docs/api.md"
        );
    }
}

struct Lines(std::vec::IntoIter<String>);

impl workbench::repl::LineSource for Lines {
    fn read_line(&mut self, _prompt: &str) -> Option<String> {
        self.0.next()
    }
}

#[test]
fn repl_with_the_workbench_engine_keeps_tensors_and_shows_help() {
    let engine = workbench_scripting::new_engine();
    let lines: Vec<String> = [
        "let t = tensor([1.0, 2.0]);",
        "t.sum().item()",
        ":help softmax",
        "let u = t * 3;",
        "u.to_array()",
        ":vars",
        ":quit",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut out = Vec::new();
    workbench::repl::run_repl(&engine, &mut Lines(lines.into_iter()), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("=> 3.0"), "{out}");
    assert!(out.contains("Softmax over `dim`"), "{out}");
    assert!(out.contains("[3.0, 6.0]"), "{out}");
    assert!(out.contains("Tensor"), "{out}");
}

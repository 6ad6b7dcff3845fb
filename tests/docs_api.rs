//! `docs/api.md` is generated from the registered functions and must be current; every
//! Rhai-visible function carries a doc comment.

#[test]
fn api_reference_is_up_to_date() {
    let engine = workbench_scripting::new_engine();
    let text = workbench_scripting::docs::api_markdown(&engine).unwrap();
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
    let missing = workbench_scripting::docs::undocumented(&engine).unwrap();
    assert!(missing.is_empty(), "undocumented: {missing:?}");
}

struct Lines(std::vec::IntoIter<String>);

impl workbench_scripting::repl::LineSource for Lines {
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
    workbench_scripting::repl::run_repl(&engine, &mut Lines(lines.into_iter()), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("=> 3.0"), "{out}");
    assert!(out.contains("Softmax over `dim`"), "{out}");
    assert!(out.contains("[3.0, 6.0]"), "{out}");
    assert!(out.contains("Tensor"), "{out}");
}

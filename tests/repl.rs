//! REPL behaviour, driven by scripted input lines.

use std::collections::VecDeque;

use rhai::{Engine, FuncRegistration};
use workbench::repl::{brackets_balanced, run_repl, LineSource, Repl, ReplControl};

/// A line source that hands out scripted lines, then EOF.
struct VecSource {
    lines: VecDeque<String>,
    prompts: Vec<String>,
    history: Vec<String>,
    names: Vec<String>,
}

impl VecSource {
    fn new(lines: &[&str]) -> Self {
        Self {
            lines: lines.iter().map(|l| l.to_string()).collect(),
            prompts: Vec::new(),
            history: Vec::new(),
            names: Vec::new(),
        }
    }
}

impl LineSource for VecSource {
    fn read_line(&mut self, prompt: &str) -> Option<String> {
        self.prompts.push(prompt.to_string());
        self.lines.pop_front()
    }

    fn add_history(&mut self, line: &str) {
        self.history.push(line.to_string());
    }

    fn set_scope_names(&mut self, names: Vec<String>) {
        self.names = names;
    }
}

fn engine() -> Engine {
    let mut engine = Engine::new();
    FuncRegistration::new("double")
        .with_comments(["/// Doubles a number.\n/// Returns `2 * x`."])
        .with_params_info(["x: i64", "i64"])
        .register_into_engine(&mut engine, |x: i64| x * 2);
    engine
}

fn session(engine: &Engine, lines: &[&str]) -> (String, VecSource) {
    let mut source = VecSource::new(lines);
    let mut out = Vec::new();
    run_repl(engine, &mut source, &mut out).unwrap();
    (String::from_utf8(out).unwrap(), source)
}

#[test]
fn variables_persist_between_entries() {
    let (out, source) = session(&engine(), &["let x = 40;", "let y = x + 1;", "y + 1"]);
    assert!(out.contains("=> 42"), "{out}");
    assert!(source.names.contains(&"x".to_string()));
    assert!(source.names.contains(&"y".to_string()));
    assert_eq!(source.history.len(), 3);
    assert!(source.prompts.iter().all(|p| p == "wb> "));
}

#[test]
fn unit_results_are_not_echoed() {
    let (out, _) = session(&engine(), &["let x = 1;"]);
    assert!(!out.contains("=>"), "{out}");
}

#[test]
fn functions_defined_earlier_are_callable() {
    let (out, source) = session(
        &engine(),
        &["fn inc(x) { x + 1 }", "inc(41)", "double(inc(1))"],
    );
    assert!(out.contains("=> 42"), "{out}");
    assert!(out.contains("=> 4"), "{out}");
    assert!(source.names.contains(&"inc".to_string()));
}

#[test]
fn redefining_a_function_replaces_it() {
    let (out, _) = session(
        &engine(),
        &["fn f(x) { x + 1 }", "fn f(x) { x + 100 }", "f(1)"],
    );
    assert!(out.contains("=> 101"), "{out}");
}

#[test]
fn errors_do_not_end_the_session() {
    let (out, _) = session(
        &engine(),
        &["let x = ;", "no_such_fn(1)", "throw \"boom\"", "1 + 2"],
    );
    assert!(out.contains("error at 1:"), "{out}");
    assert!(out.contains("no_such_fn"), "{out}");
    assert!(out.contains("boom"), "{out}");
    assert!(out.contains("=> 3"), "{out}");
}

#[test]
fn error_shows_position_and_source_line() {
    let mut repl = Repl::new();
    let mut out = Vec::new();
    repl.eval_line(&engine(), "let y = 1 +;", &mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("error at 1:"), "{out}");
    assert!(out.contains("  | let y = 1 +;"), "{out}");
    assert!(out.contains('^'), "{out}");
}

#[test]
fn help_name_prints_signature_and_doc() {
    let (out, _) = session(&engine(), &[":help double"]);
    assert!(out.contains("double(x: i64) -> i64"), "{out}");
    assert!(out.contains("Doubles a number."), "{out}");
    assert!(out.contains("Returns `2 * x`."), "{out}");
    assert!(!out.contains("///"), "{out}");
}

#[test]
fn help_unknown_name_is_a_message_with_suggestions() {
    let (out, _) = session(&engine(), &[":help doubel", "1 + 1"]);
    assert!(out.contains("no function named `doubel`"), "{out}");
    assert!(out.contains("double"), "{out}");
    assert!(out.contains("=> 2"), "{out}");
}

#[test]
fn help_covers_session_functions() {
    let (out, _) = session(
        &engine(),
        &["/// Adds one.\nfn inc(x) { x + 1 }", ":help inc"],
    );
    assert!(out.contains("inc(x)"), "{out}");
    assert!(out.contains("Adds one."), "{out}");
}

#[test]
fn help_lists_commands() {
    let (out, _) = session(&engine(), &[":help"]);
    for cmd in [":help", ":vars", ":load", ":quit"] {
        assert!(out.contains(cmd), "{cmd} missing in {out}");
    }
}

#[test]
fn vars_lists_variables_with_types() {
    let long = format!("let s = \"{}\";", "a".repeat(500));
    let (out, _) = session(
        &engine(),
        &[
            "let n = 7;",
            "const PI = 3.5;",
            &long,
            "let n = 8;",
            ":vars",
        ],
    );
    assert!(out.contains("n: i64 = 8"), "{out}");
    assert!(!out.contains("n: i64 = 7"), "{out}");
    assert!(out.contains("const PI: f64 = 3.5"), "{out}");
    let s_line = out
        .lines()
        .find(|l| l.starts_with("s: string"))
        .expect(&out);
    assert!(s_line.chars().count() < 120, "{s_line}");
    assert!(s_line.ends_with('…'), "{s_line}");
}

#[test]
fn load_runs_a_file_in_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.rhai");
    std::fs::write(&path, "let loaded = 5;\nfn triple(x) { 3 * x }\n").unwrap();
    let bad = dir.path().join("bad.rhai");
    std::fs::write(&bad, "let a = 1;\nlet b = ;\n").unwrap();
    let (out, _) = session(
        &engine(),
        &[
            &format!(":load {}", path.display()),
            "triple(loaded)",
            &format!(":load {}", bad.display()),
            ":load /definitely/not/here.rhai",
            "1",
        ],
    );
    assert!(out.contains("loaded "), "{out}");
    assert!(out.contains("=> 15"), "{out}");
    assert!(out.contains("bad.rhai:2:"), "{out}");
    assert!(out.contains("cannot read"), "{out}");
    assert!(out.contains("=> 1"), "{out}");
}

#[test]
fn quit_stops_before_later_lines() {
    for quit in [":quit", ":q", ":exit"] {
        let (out, source) = session(&engine(), &["1 + 1", quit, "40 + 2"]);
        assert!(out.contains("=> 2"), "{out}");
        assert!(!out.contains("=> 42"), "{out}");
        assert_eq!(source.lines.len(), 1);
    }
    let mut repl = Repl::new();
    assert_eq!(
        repl.eval_line(&engine(), ":quit", &mut Vec::new()),
        ReplControl::Quit
    );
    assert_eq!(
        repl.eval_line(&engine(), "1", &mut Vec::new()),
        ReplControl::Continue
    );
}

#[test]
fn eof_ends_the_session() {
    let (out, _) = session(&engine(), &[]);
    assert!(out.contains("REPL"), "{out}");
}

#[test]
fn unknown_command_is_reported() {
    let (out, _) = session(&engine(), &[":frobnicate", "2"]);
    assert!(out.contains("unknown command"), "{out}");
    assert!(out.contains("=> 2"), "{out}");
}

#[test]
fn open_brackets_continue_on_the_next_line() {
    let (out, source) = session(&engine(), &["fn f(x) {", "  x * 10", "}", "f(4)"]);
    assert!(out.contains("=> 40"), "{out}");
    assert_eq!(source.prompts[..3], ["wb> ", "..> ", "..> "]);
    assert_eq!(source.history[0], "fn f(x) {\n  x * 10\n}");
}

#[test]
fn brackets_balanced_validator() {
    assert!(!brackets_balanced("fn f(x) {"));
    assert!(brackets_balanced("fn f(x) { x }"));
    assert!(brackets_balanced("let s = \"(\";"));
    assert!(brackets_balanced("let c = '{';"));
    assert!(brackets_balanced("let s = \"\\\"(\";"));
    assert!(!brackets_balanced("let a = [1, 2,"));
    assert!(brackets_balanced("let a = [1, 2, (3)];"));
    assert!(brackets_balanced("f(1) // (unclosed in comment"));
    assert!(!brackets_balanced("/* open comment"));
    assert!(!brackets_balanced("let s = `multi"));
    assert!(brackets_balanced("let s = `multi\nline`;"));
    assert!(brackets_balanced("f(1))"));
    assert!(brackets_balanced(""));
}

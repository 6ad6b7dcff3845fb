//! The interactive REPL (`workbench repl`).
//!
//! Modelled on rhai's own `rhai-repl`: every entry is compiled against the persistent scope,
//! functions defined so far are kept in an accumulated [`AST`] (statements are thrown away after
//! each run), and the value of an expression entry is echoed as `=> value`. On top of that the
//! workbench REPL has `:`-commands (`:help NAME` shows the signatures and doc comments of a
//! registered function), tab completion of functions, methods, variables, commands and keywords,
//! signature hints, multi-line input while brackets are open, and a persistent history file.
//!
//! Input comes from a [`LineSource`] so the loop can be driven by scripted lines in tests;
//! [`RustylineSource`] is the terminal implementation.

use std::collections::BTreeSet;
use std::io::Write;

use rhai::{Dynamic, Engine, EvalAltResult, Scope, AST};

use crate::docs::{self, FnEntry, FnKind};

mod editor;

pub use editor::{history_path, LineSource, RustylineSource};

/// The primary prompt.
pub const PROMPT: &str = "wb> ";
/// The prompt for continuation lines when a [`LineSource`] hands over an entry with open brackets.
pub const CONTINUATION_PROMPT: &str = "..> ";

/// The `:`-commands, for `:help` and completion.
const COMMANDS: &[(&str, &str)] = &[
    (":help", "list the commands"),
    (
        ":help NAME",
        "signatures and documentation of function NAME",
    ),
    (":vars", "variables in scope, with type and value"),
    (":fns", "functions defined in this session"),
    (
        ":load FILE",
        "run a script file, keeping its variables and functions",
    ),
    (":quit", "leave (also :q, :exit, Ctrl-D)"),
];

/// Longest value shown by `:vars` (in characters) before it is cut off.
const MAX_VALUE_CHARS: usize = 72;

// ------------------------------------------------------------------------------------------------
// Multi-line input
// ------------------------------------------------------------------------------------------------

/// Whether `input` is complete as far as brackets go: `false` while a `(`, `[` or `{` (or a
/// `/* */` comment or back-tick string) is still open, so the REPL keeps reading lines.
///
/// Brackets inside string and character literals and comments are ignored. Surplus or
/// mismatched closing brackets count as complete (the parser reports them).
pub fn brackets_balanced(input: &str) -> bool {
    let chars: Vec<char> = input.chars().collect();
    let mut stack: Vec<char> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if next == Some('*') => {
                // Block comments nest in Rhai.
                let mut depth = 0usize;
                loop {
                    if i >= chars.len() {
                        return false;
                    }
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            '"' | '\'' => {
                // String/char literal: skip to the closing quote (an unterminated one is left to
                // the parser).
                i += 1;
                while i < chars.len() && chars[i] != c && chars[i] != '\n' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            '`' => {
                // Back-tick strings may span lines: an unterminated one is incomplete.
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                if i >= chars.len() {
                    return false;
                }
            }
            '(' => stack.push(')'),
            '[' => stack.push(']'),
            '{' => stack.push('}'),
            // A surplus or mismatched closer: complete, the parser will report it.
            ')' | ']' | '}' if stack.pop() != Some(c) => return true,
            _ => {}
        }
        i += 1;
    }
    stack.is_empty()
}

fn is_command(input: &str) -> bool {
    input.trim_start().starts_with(':')
}

// ------------------------------------------------------------------------------------------------
// The REPL state
// ------------------------------------------------------------------------------------------------

/// What the loop should do after an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplControl {
    /// Read the next entry.
    Continue,
    /// End the session.
    Quit,
}

/// A REPL session: the persistent variable scope and the functions defined so far.
pub struct Repl {
    scope: Scope<'static>,
    functions: AST,
}

impl Default for Repl {
    fn default() -> Self {
        Self::new()
    }
}

impl Repl {
    /// An empty session.
    pub fn new() -> Self {
        Self {
            scope: Scope::new(),
            functions: AST::empty(),
        }
    }

    /// The session's variables.
    pub fn scope(&self) -> &Scope<'static> {
        &self.scope
    }

    /// The session's variables, e.g. to predefine some before the loop starts.
    pub fn scope_mut(&mut self) -> &mut Scope<'static> {
        &mut self.scope
    }

    /// The functions defined so far (an AST without statements).
    pub fn functions(&self) -> &AST {
        &self.functions
    }

    /// Names of the variables in scope and of the functions defined in the session, sorted and
    /// without duplicates (for completion).
    pub fn completion_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self
            .scope
            .iter_raw()
            .map(|(n, _, _)| n.to_string())
            .collect();
        names.extend(self.functions.iter_functions().map(|f| f.name.to_string()));
        names.into_iter().collect()
    }

    /// Runs the read-eval-print loop over `source` until `:quit` or end of input.
    pub fn run(
        &mut self,
        engine: &Engine,
        source: &mut dyn LineSource,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        writeln!(
            out,
            "workbench {} REPL (Rhai) - :help for commands, Tab to complete, :quit or Ctrl-D to leave",
            env!("CARGO_PKG_VERSION")
        )?;
        out.flush()?;
        source.set_scope_names(self.completion_names());
        while let Some(mut input) = source.read_line(PROMPT) {
            // Sources without a validator may hand over an entry with brackets still open.
            if !is_command(&input) {
                while !brackets_balanced(&input) {
                    match source.read_line(CONTINUATION_PROMPT) {
                        Some(more) => {
                            input.push('\n');
                            input.push_str(&more);
                        }
                        None => break,
                    }
                }
            }
            if !input.trim().is_empty() {
                source.add_history(&input);
            }
            let control = self.eval_line(engine, &input, out);
            out.flush()?;
            if control == ReplControl::Quit {
                break;
            }
            source.set_scope_names(self.completion_names());
        }
        Ok(())
    }

    /// Handles one entry: a `:`-command, or Rhai code that is compiled against the session's
    /// scope and run with the functions defined so far. Results and errors are written to `out`;
    /// errors never end the session.
    pub fn eval_line(&mut self, engine: &Engine, input: &str, out: &mut dyn Write) -> ReplControl {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return ReplControl::Continue;
        }
        if let Some(command) = trimmed.strip_prefix(':') {
            let (cmd, arg) = match command.split_once(char::is_whitespace) {
                Some((cmd, arg)) => (cmd, arg.trim()),
                None => (command, ""),
            };
            // Output errors (e.g. a closed pipe) are not the session's concern.
            let _ = match cmd {
                "q" | "quit" | "exit" => return ReplControl::Quit,
                "help" | "h" | "?" if arg.is_empty() => print_commands(out),
                "help" | "h" | "?" => self.print_help(engine, arg, out),
                "vars" => self.print_vars(engine, out),
                "fns" | "functions" => self.print_functions(out),
                "load" => self.load(engine, arg, out),
                _ => writeln!(out, "unknown command `:{cmd}` (try :help)"),
            };
            return ReplControl::Continue;
        }
        let _ = self.run_source(engine, input, None, true, out);
        ReplControl::Continue
    }

    /// Compiles and runs `source` in the session; returns whether it succeeded.
    fn run_source(
        &mut self,
        engine: &Engine,
        source: &str,
        origin: Option<&str>,
        echo: bool,
        out: &mut dyn Write,
    ) -> std::io::Result<bool> {
        let ast = match engine.compile_with_scope(&self.scope, source) {
            Ok(ast) => ast,
            Err(err) => {
                let err: Box<EvalAltResult> = err.into();
                print_error(out, source, origin, *err)?;
                return Ok(false);
            }
        };
        // New definitions replace older ones with the same name and arity.
        let mut merged = self.functions.merge(&ast);
        let result = engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, &merged);
        merged.clear_statements();
        self.functions = merged;
        match result {
            Ok(value) => {
                if echo && !value.is_unit() {
                    writeln!(out, "=> {value:?}")?;
                }
                Ok(true)
            }
            Err(err) => {
                print_error(out, source, origin, *err)?;
                Ok(false)
            }
        }
    }

    fn load(&mut self, engine: &Engine, arg: &str, out: &mut dyn Write) -> std::io::Result<()> {
        let path = arg.trim_matches(|c| c == '"' || c == '\'');
        if path.is_empty() {
            return writeln!(out, "usage: :load FILE");
        }
        let script = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(err) => return writeln!(out, "error: cannot read {path}: {err}"),
        };
        if self.run_source(engine, &script, Some(path), false, out)? {
            writeln!(out, "loaded {path}")?;
        }
        Ok(())
    }

    fn print_vars(&self, engine: &Engine, out: &mut dyn Write) -> std::io::Result<()> {
        // Shadowed variables appear several times: show the latest of each, in definition order.
        let mut seen = BTreeSet::new();
        let mut vars: Vec<(&str, bool, &Dynamic)> = self
            .scope
            .iter_raw()
            .filter(|(name, _, _)| seen.insert(*name))
            .collect();
        vars.reverse();
        if vars.is_empty() {
            return writeln!(out, "(no variables)");
        }
        for (name, constant, value) in vars {
            let value = value.flatten_clone();
            let typ = engine.map_type_name(value.type_name());
            let shown = short_value(&value);
            let kw = if constant { "const " } else { "" };
            writeln!(out, "{kw}{name}: {typ} = {shown}")?;
        }
        Ok(())
    }

    fn print_functions(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut sigs: Vec<String> = self
            .functions
            .iter_functions()
            .map(|f| f.to_string())
            .collect();
        if sigs.is_empty() {
            return writeln!(out, "(no functions defined in this session)");
        }
        sigs.sort();
        for s in sigs {
            writeln!(out, "{s}")?;
        }
        Ok(())
    }

    fn print_help(&self, engine: &Engine, name: &str, out: &mut dyn Write) -> std::io::Result<()> {
        let meta = engine
            .gen_fn_metadata_with_ast_to_json(&self.functions, true)
            .map_err(anyhow::Error::from)
            .and_then(|json| docs::parse_metadata(engine, &json));
        let meta = match meta {
            Ok(meta) => meta,
            Err(err) => return writeln!(out, "error: {err:#}"),
        };
        let matches: Vec<&FnEntry> = meta
            .functions
            .iter()
            .filter(|f| {
                f.qualified_name() == name
                    || (f.global && f.name == name)
                    || matches!(f.kind(), FnKind::Getter(ref p) | FnKind::Setter(ref p) if p == name)
            })
            .collect();
        let types: Vec<_> = meta
            .types
            .iter()
            .filter(|t| t.display_name == name || t.type_name == name)
            .collect();

        if matches.is_empty() && types.is_empty() {
            write!(out, "no function named `{name}`")?;
            let close = close_matches(name, meta.functions.iter().map(|f| f.qualified_name()));
            if close.is_empty() {
                writeln!(out)?;
            } else {
                writeln!(out, "; did you mean: {}?", close.join(", "))?;
            }
            return Ok(());
        }

        for t in types {
            writeln!(out, "type {} ({})", t.display_name, t.type_name)?;
            write_indented(out, &t.doc)?;
        }
        // Overloads sharing a doc comment are shown together.
        let mut groups: Vec<(String, &str, Vec<String>)> = Vec::new();
        for f in matches {
            let title = f.kind().title(&f.qualified_name());
            match groups
                .iter_mut()
                .find(|(t, doc, _)| *t == title && *doc == f.doc)
            {
                Some((_, _, sigs)) => sigs.push(f.display_signature()),
                None => groups.push((title, &f.doc, vec![f.display_signature()])),
            }
        }
        for (_, doc, sigs) in groups {
            for sig in sigs {
                writeln!(out, "{sig}")?;
            }
            if doc.is_empty() {
                writeln!(out, "    (undocumented)")?;
            } else {
                write_indented(out, doc)?;
            }
        }
        Ok(())
    }
}

/// Runs an interactive session with a fresh [`Repl`]: banner, prompt `wb> `, one entry at a
/// time, until `:quit` or end of input.
pub fn run_repl(
    engine: &Engine,
    source: &mut dyn LineSource,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    Repl::new().run(engine, source, out)
}

// ------------------------------------------------------------------------------------------------
// Output helpers
// ------------------------------------------------------------------------------------------------

fn print_commands(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "Commands:")?;
    for (cmd, what) in COMMANDS {
        writeln!(out, "  {cmd:<12} {what}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Anything else is Rhai code. Variables and functions persist between entries;"
    )?;
    writeln!(
        out,
        "the value of an expression is shown as `=> value`. Input continues on the"
    )?;
    writeln!(
        out,
        "next line while brackets are open. Tab completes names, `.` then Tab methods."
    )
}

fn write_indented(out: &mut dyn Write, text: &str) -> std::io::Result<()> {
    for line in text.lines() {
        if line.is_empty() {
            writeln!(out)?;
        } else {
            writeln!(out, "    {line}")?;
        }
    }
    writeln!(out)
}

/// `value` as `Debug`, on one line, cut to [`MAX_VALUE_CHARS`].
fn short_value(value: &Dynamic) -> String {
    let text = format!("{value:?}");
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > MAX_VALUE_CHARS {
        let cut: String = one_line.chars().take(MAX_VALUE_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// Prints an error with its `line:col` position and the offending source line.
fn print_error(
    out: &mut dyn Write,
    source: &str,
    origin: Option<&str>,
    mut err: EvalAltResult,
) -> std::io::Result<()> {
    let pos = err.take_position();
    let origin = origin.map(|o| format!("{o}:")).unwrap_or_default();
    match pos.line() {
        None => writeln!(out, "error: {err}"),
        Some(line) => {
            let col = pos.position();
            match col {
                Some(col) => writeln!(out, "error at {origin}{line}:{col}: {err}")?,
                None => writeln!(out, "error at {origin}{line}: {err}")?,
            }
            // `split('\n')` rather than `lines()` so a trailing empty line still counts.
            if let Some(text) = source.split('\n').nth(line.saturating_sub(1)) {
                let text = text.trim_end_matches('\r');
                writeln!(out, "  | {text}")?;
                if let Some(col) = col {
                    writeln!(out, "  | {:>col$}", "^")?;
                }
            }
            Ok(())
        }
    }
}

/// Up to 8 names close to `name` (substring or small edit distance), sorted.
fn close_matches(name: &str, names: impl Iterator<Item = String>) -> Vec<String> {
    let lower = name.to_lowercase();
    let limit = (name.chars().count() / 3).clamp(1, 3);
    let set: BTreeSet<String> = names
        .filter(|n| {
            let nl = n.to_lowercase();
            (lower.len() >= 3 && nl.contains(&lower)) || edit_distance(&lower, &nl) <= limit
        })
        .collect();
    set.into_iter().take(8).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

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

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rhai::{Dynamic, Engine, EvalAltResult, Scope, AST};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::{Hint, Hinter};
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{CompletionType, Config, Context, Editor, Helper};

use crate::docs::{self, FnEntry, FnKind};

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

const COMMAND_NAMES: &[&str] = &[":help", ":vars", ":fns", ":load", ":quit", ":exit", ":q"];

/// Rhai keywords (and keyword-like built-ins) offered by completion.
const KEYWORDS: &[&str] = &[
    "let",
    "const",
    "fn",
    "private",
    "if",
    "else",
    "switch",
    "do",
    "while",
    "until",
    "loop",
    "for",
    "in",
    "return",
    "throw",
    "try",
    "catch",
    "break",
    "continue",
    "import",
    "export",
    "as",
    "true",
    "false",
    "this",
    "global",
    "Fn",
    "call",
    "curry",
    "type_of",
    "print",
    "debug",
    "is_def_var",
    "is_def_fn",
    "is_shared",
];

/// Longest value shown by `:vars` (in characters) before it is cut off.
const MAX_VALUE_CHARS: usize = 72;

// ------------------------------------------------------------------------------------------------
// Line sources
// ------------------------------------------------------------------------------------------------

/// Where the REPL gets its input lines from.
pub trait LineSource {
    /// Reads one entry, showing `prompt`. `None` means end of input (the session ends); an
    /// interrupted line (Ctrl-C) should be returned as `Some(String::new())`.
    fn read_line(&mut self, prompt: &str) -> Option<String>;

    /// Records a submitted entry in the history (default: nothing).
    fn add_history(&mut self, _line: &str) {}

    /// Tells the source which names are currently defined in the session (variables and
    /// script-defined functions), e.g. for tab completion (default: nothing).
    fn set_scope_names(&mut self, _names: Vec<String>) {}
}

/// A [`LineSource`] reading from the terminal with rustyline: persistent history, tab
/// completion, signature hints and multi-line input while brackets are open.
pub struct RustylineSource {
    editor: Editor<ReplHelper, DefaultHistory>,
    history: Option<PathBuf>,
    names: Arc<Mutex<Vec<String>>>,
}

impl RustylineSource {
    /// Creates the line editor, with completion drawn from the functions registered in
    /// `engine`, and loads the history file (see [`history_path`]); history errors are ignored.
    pub fn new(engine: &Engine) -> anyhow::Result<Self> {
        let config = Config::builder()
            .auto_add_history(false)
            .completion_type(CompletionType::List)
            .tab_stop(4)
            .indent_size(4)
            .bracketed_paste(true)
            .history_ignore_space(true)
            .max_history_size(10_000)?
            .history_ignore_dups(true)?
            .build();
        let names = Arc::new(Mutex::new(Vec::new()));
        let helper = ReplHelper::new(engine, Arc::clone(&names))?;
        let mut editor: Editor<ReplHelper, DefaultHistory> = Editor::with_config(config)?;
        editor.set_helper(Some(helper));

        let history = history_path();
        if let Some(path) = &history {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = editor.load_history(path);
        }
        Ok(Self {
            editor,
            history,
            names,
        })
    }
}

impl LineSource for RustylineSource {
    fn read_line(&mut self, prompt: &str) -> Option<String> {
        match self.editor.readline(prompt) {
            Ok(line) => Some(line),
            Err(ReadlineError::Interrupted) => Some(String::new()),
            Err(ReadlineError::Eof) => None,
            Err(err) => {
                eprintln!("input error: {err}");
                None
            }
        }
    }

    fn add_history(&mut self, line: &str) {
        if matches!(self.editor.add_history_entry(line), Ok(true)) {
            if let Some(path) = &self.history {
                let _ = self.editor.append_history(path);
            }
        }
    }

    fn set_scope_names(&mut self, names: Vec<String>) {
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) = names;
    }
}

/// The REPL history file: `$XDG_STATE_HOME/workbench/history`, or
/// `~/.local/state/workbench/history` (`None` if neither variable is usable).
pub fn history_path() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("state"))
        })?;
    Some(state.join("workbench").join("history"))
}

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
// The rustyline helper
// ------------------------------------------------------------------------------------------------

/// Completion, hints and validation for [`RustylineSource`].
struct ReplHelper {
    /// Names callable as functions (plain and module-qualified).
    functions: Vec<String>,
    /// Names usable after a `.`: functions taking at least one argument, and properties.
    methods: Vec<String>,
    /// Signatures by callable name, for hints.
    signatures: BTreeMap<String, Vec<String>>,
    /// Variables and script functions defined in the session.
    names: Arc<Mutex<Vec<String>>>,
    files: FilenameCompleter,
}

impl ReplHelper {
    fn new(engine: &Engine, names: Arc<Mutex<Vec<String>>>) -> anyhow::Result<Self> {
        let entries = docs::function_entries(engine, true)?;
        let mut functions = BTreeSet::new();
        let mut methods = BTreeSet::new();
        let mut signatures: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in &entries {
            match e.kind() {
                FnKind::Function => {
                    let mut callable = vec![e.qualified_name()];
                    if e.global {
                        callable.push(e.name.clone());
                    }
                    for name in callable {
                        functions.insert(name.clone());
                        signatures
                            .entry(name)
                            .or_default()
                            .push(e.display_signature());
                    }
                    if e.num_params >= 1 && (e.module.is_empty() || e.global) {
                        methods.insert(e.name.clone());
                    }
                }
                FnKind::Getter(p) | FnKind::Setter(p) => {
                    methods.insert(p);
                }
                _ => {}
            }
        }
        for sigs in signatures.values_mut() {
            sigs.sort();
            sigs.dedup();
        }
        Ok(Self {
            functions: functions.into_iter().collect(),
            methods: methods.into_iter().collect(),
            signatures,
            names,
            files: FilenameCompleter::new(),
        })
    }

    fn session_names(&self) -> Vec<String> {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte offset where the (possibly `::`-qualified) identifier ending at `before.len()` starts.
fn word_start(before: &str) -> usize {
    let bytes = before.as_bytes();
    let mut start = before.len();
    for (i, c) in before.char_indices().rev() {
        if i + c.len_utf8() != start {
            // Skipped the second ':' of a `::` pair.
            continue;
        }
        if is_ident_char(c) {
            start = i;
        } else if c == ':' && i > 0 && bytes[i - 1] == b':' {
            start = i - 1;
        } else {
            break;
        }
    }
    start
}

fn candidates<'a>(prefix: &str, pools: impl IntoIterator<Item = &'a String>) -> Vec<Pair> {
    let set: BTreeSet<&str> = pools
        .into_iter()
        .map(String::as_str)
        .filter(|n| n.starts_with(prefix))
        .collect();
    set.into_iter()
        .map(|n| Pair {
            display: n.to_string(),
            replacement: n.to_string(),
        })
        .collect()
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let trimmed = before.trim_start();
        if trimmed.starts_with(':') {
            let offset = before.len() - trimmed.len();
            if trimmed.starts_with(":load ") {
                return self.files.complete(line, pos, ctx);
            }
            if let Some(arg) = trimmed.strip_prefix(":help ") {
                let start = pos - arg.trim_start().len();
                let prefix = &line[start..pos];
                return Ok((start, candidates(prefix, &self.functions)));
            }
            if !trimmed.contains(char::is_whitespace) {
                let cmds: Vec<Pair> = COMMAND_NAMES
                    .iter()
                    .filter(|c| c.starts_with(trimmed))
                    .map(|c| Pair {
                        display: c.to_string(),
                        replacement: c.to_string(),
                    })
                    .collect();
                return Ok((offset, cmds));
            }
            return Ok((pos, Vec::new()));
        }

        let start = word_start(before);
        let prefix = &before[start..];
        if before[..start].ends_with('.') {
            return Ok((start, candidates(prefix, &self.methods)));
        }
        if prefix.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let session = self.session_names();
        let keywords: Vec<String> = KEYWORDS.iter().map(|k| k.to_string()).collect();
        Ok((
            start,
            candidates(
                prefix,
                session.iter().chain(&self.functions).chain(&keywords),
            ),
        ))
    }
}

/// A hint shown after the cursor: a signature (display only) or the rest of a unique name.
struct ReplHint {
    display: String,
    completion: Option<String>,
}

impl Hint for ReplHint {
    fn display(&self) -> &str {
        &self.display
    }

    fn completion(&self) -> Option<&str> {
        self.completion.as_deref()
    }
}

/// The name of the function whose argument list the end of `before` is in, if any.
fn open_call(before: &str) -> Option<&str> {
    let mut depth = 0usize;
    for (i, c) in before.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' if depth > 0 => depth -= 1,
            '(' => {
                let head = before[..i].trim_end();
                let start = word_start(head);
                let name = &head[start..];
                return (!name.is_empty()).then_some(name);
            }
            ';' | '{' | '}' => return None,
            _ => {}
        }
    }
    None
}

impl Hinter for ReplHelper {
    type Hint = ReplHint;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<ReplHint> {
        if pos != line.len() || is_command(line) {
            return None;
        }
        if let Some(name) = open_call(line) {
            let sigs = self.signatures.get(name)?;
            let mut display = sigs.iter().take(3).cloned().collect::<Vec<_>>().join(" | ");
            if sigs.len() > 3 {
                display.push_str(&format!(" | … ({} overloads)", sigs.len()));
            }
            return Some(ReplHint {
                display: format!("    {display}"),
                completion: None,
            });
        }
        let start = word_start(line);
        let prefix = &line[start..];
        if prefix.len() < 2 || line[..start].ends_with('.') {
            return None;
        }
        let session = self.session_names();
        let mut matches = session
            .iter()
            .chain(&self.functions)
            .filter(|n| n.starts_with(prefix) && n.len() > prefix.len());
        let first = matches.next()?;
        if matches.any(|n| n != first) {
            return None;
        }
        let rest = first[prefix.len()..].to_string();
        Some(ReplHint {
            display: rest.clone(),
            completion: Some(rest),
        })
    }
}

impl Highlighter for ReplHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if is_command(input) || brackets_balanced(input) {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl Helper for ReplHelper {}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_start_handles_paths_and_methods() {
        assert_eq!(word_start("let x = foo"), 8);
        assert_eq!(word_start("m::fo"), 0);
        assert_eq!(word_start("x.le"), 2);
        assert_eq!(word_start("a :b"), 3);
    }

    fn helper() -> ReplHelper {
        let mut engine = Engine::new();
        rhai::FuncRegistration::new("tensor_zeros")
            .with_comments(["/// Zeros."])
            .with_params_info(["n: i64", "i64"])
            .register_into_engine(&mut engine, |n: i64| n);
        let names = Arc::new(Mutex::new(vec!["my_var".to_string()]));
        ReplHelper::new(&engine, names).unwrap()
    }

    fn complete(h: &ReplHelper, line: &str) -> (usize, Vec<String>) {
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let (start, pairs) = h.complete(line, line.len(), &ctx).unwrap();
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn completes_functions_variables_commands_and_methods() {
        let h = helper();
        assert_eq!(
            complete(&h, "let t = tensor_z"),
            (8, vec!["tensor_zeros".into()])
        );
        assert_eq!(complete(&h, "my_"), (0, vec!["my_var".into()]));
        assert!(complete(&h, "whi").1.contains(&"while".to_string()));
        assert_eq!(complete(&h, ":he"), (0, vec![":help".into()]));
        assert_eq!(complete(&h, ":help tens"), (6, vec!["tensor_zeros".into()]));
        let (start, methods) = complete(&h, "[1].le");
        assert_eq!(start, 4);
        assert!(methods.contains(&"len".to_string()), "{methods:?}");
        // Hints: the signature inside an open call, the rest of a unique name otherwise.
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let hint = h.hint("tensor_zeros(", 13, &ctx).unwrap();
        assert!(hint.display().contains("tensor_zeros(n: i64) -> i64"));
        assert_eq!(hint.completion(), None);
        let hint = h.hint("tensor_ze", 9, &ctx).unwrap();
        assert_eq!(hint.completion(), Some("ros"));
    }

    #[test]
    fn open_call_finds_innermost_function() {
        assert_eq!(open_call("add(1, "), Some("add"));
        assert_eq!(open_call("f(g(1), "), Some("f"));
        assert_eq!(open_call("f(g(1)"), Some("f"));
        assert_eq!(open_call("f(1)"), None);
    }
}

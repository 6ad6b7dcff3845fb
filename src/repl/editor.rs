//! The REPL's line editor: rustyline with history, tab completion of functions, methods,
//! variables, commands and keywords, signature hints and multi-line validation.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rhai::Engine;
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::{Hint, Hinter};
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{CompletionType, Config, Context, Editor, Helper};

use crate::docs::{self, FnKind};

use super::{brackets_balanced, is_command};

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

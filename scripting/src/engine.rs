//! The configured Rhai engine: explicit limits, Ctrl-C cancellation, module resolution, the
//! `CONFIG` pattern, and error formatting with `file:line:col` and a caret.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::{
    Dynamic, Engine, EvalAltResult, Map, Module, ModuleResolver, Position, Scope, Shared, AST,
};
use workbench_core::cancel;

use crate::api;

/// The `.rhai` files of `stdlib/`, embedded so imports work from any directory.
pub const STDLIB: &[(&str, &str)] = &[
    ("util", include_str!("../../stdlib/util.rhai")),
    ("trainer", include_str!("../../stdlib/trainer.rhai")),
    ("judge", include_str!("../../stdlib/judge.rhai")),
    ("objectives", include_str!("../../stdlib/objectives.rhai")),
    ("sft_data", include_str!("../../stdlib/sft_data.rhai")),
    ("mdpo", include_str!("../../stdlib/mdpo.rhai")),
    ("cj_grpo", include_str!("../../stdlib/cj_grpo.rhai")),
    ("igpo", include_str!("../../stdlib/igpo.rhai")),
];

/// Resolves `import "name"`: next to the importing script, then the folders of
/// `WORKBENCH_PATH` (which may override the stdlib), then the embedded stdlib.
#[derive(Debug, Default)]
pub struct WorkbenchResolver;

fn with_ext(name: &str) -> String {
    if name.ends_with(".rhai") {
        name.to_string()
    } else {
        format!("{name}.rhai")
    }
}

impl WorkbenchResolver {
    /// The places `name` is looked for, in order, for a script at `source`.
    pub fn candidates(source: Option<&str>, name: &str) -> Vec<PathBuf> {
        let file = with_ext(name);
        let mut out = Vec::new();
        let base = source
            .map(Path::new)
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        out.push(base.join(&file));
        if let Some(paths) = std::env::var_os("WORKBENCH_PATH") {
            for dir in std::env::split_paths(&paths) {
                out.push(dir.join(&file));
            }
        }
        out
    }
}

/// Where an import was found: a file, or the text of an embedded stdlib module.
enum Found {
    File(PathBuf),
    Stdlib(&'static str),
}

/// The module `import "path"` in a script at `source` loads, in [`WorkbenchResolver`]'s order.
fn find_module(source: Option<&str>, path: &str) -> Option<Found> {
    // A script never imports itself: `scripts/mdpo.rhai` importing "mdpo" means the stdlib's.
    let itself = |p: &&PathBuf| {
        source.is_some_and(|s| {
            let (a, b) = (Path::new(s).canonicalize(), p.canonicalize());
            a.is_ok() && a.ok() == b.ok()
        })
    };
    if let Some(p) = WorkbenchResolver::candidates(source, path)
        .iter()
        .filter(|p| !itself(p))
        .find(|p| p.is_file())
    {
        return Some(Found::File(p.clone()));
    }
    STDLIB
        .iter()
        .find(|(n, _)| *n == path.trim_end_matches(".rhai"))
        .map(|(_, text)| Found::Stdlib(text))
}

/// The text of a script by the name an AST carries (`source`): a file, or `stdlib/NAME.rhai`
/// of the embedded stdlib.
fn source_text(origin: &str) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(origin) {
        return Some(text);
    }
    let name = origin.strip_prefix("stdlib/")?.trim_end_matches(".rhai");
    STDLIB
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t.to_string())
}

impl ModuleResolver for WorkbenchResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let (text, origin) = match find_module(source, path) {
            Some(Found::File(p)) => {
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    Box::new(EvalAltResult::ErrorInModule(
                        path.into(),
                        format!("cannot read {}: {e}", p.display()).into(),
                        pos,
                    ))
                })?;
                (text, p.display().to_string())
            }
            Some(Found::Stdlib(text)) => (text.to_string(), format!("stdlib/{}", with_ext(path))),
            None => {
                let places = WorkbenchResolver::candidates(source, path);
                let mut looked: Vec<String> =
                    places.iter().map(|p| p.display().to_string()).collect();
                looked.push(format!(
                    "the bundled stdlib ({})",
                    STDLIB
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                return Err(EvalAltResult::ErrorRuntime(
                    format!(
                        "module `{path}` not found; looked in: {}",
                        looked.join("; ")
                    )
                    .into(),
                    pos,
                )
                .into());
            }
        };
        let mut ast = engine
            .compile(&text)
            .map_err(|e| EvalAltResult::ErrorInModule(path.into(), Box::new(e.into()), pos))?;
        ast.set_source(origin.as_str());
        let m = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| EvalAltResult::ErrorInModule(path.into(), e, pos))?;
        Ok(m.into())
    }
}

/// `--set` overrides for the script's `config(defaults)` call.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Key and parsed value, in command-line order.
    pub values: Vec<(String, Dynamic)>,
    /// Whether the script called `config()` (overrides were applied).
    pub applied: bool,
}

/// Builds the engine every entry point uses (run, REPL, tests, docs).
pub fn new_engine() -> Engine {
    new_engine_with(Arc::new(Mutex::new(Overrides::default())))
}

/// [`new_engine`] with the `--set` overrides `config()` merges.
pub fn new_engine_with(overrides: Arc<Mutex<Overrides>>) -> Engine {
    let mut engine = Engine::new();
    // Explicit limits: the defaults differ between debug and release builds of rhai.
    engine.set_max_call_levels(256);
    engine.set_max_expr_depths(256, 256);
    engine.set_max_operations(0);
    engine.set_max_string_size(0);
    engine.set_max_array_size(0);
    engine.set_max_map_size(0);
    engine.set_module_resolver(WorkbenchResolver);
    engine.on_progress(|_| {
        if cancel::is_requested() {
            Some(Dynamic::from(cancel::message()))
        } else {
            None
        }
    });
    engine.on_print(workbench_core::term::print_line);
    engine.on_debug(|s, src, pos| match (src, pos.line()) {
        (Some(src), Some(line)) => eprintln!("[{src}:{line}] {s}"),
        (None, Some(line)) => eprintln!("[line {line}] {s}"),
        _ => eprintln!("{s}"),
    });
    api::register_all(&mut engine);
    rhai::FuncRegistration::new("exit")
        .with_comments([
            "/// Ends the script now; `workbench run` exits with status `code`, an integer in\n\
             /// 0..=255 (anything else is an error naming the value, exit status 1).",
        ])
        .with_params_info(["code: i64", "()"])
        .register_into_engine(&mut engine, |code: i64| -> Result<(), Box<EvalAltResult>> {
            if !(0..=255).contains(&code) {
                return Err(
                    format!("exit({code}): the exit status must be an integer in 0..=255").into(),
                );
            }
            workbench_core::error_report::request_exit(code);
            Err(EvalAltResult::Exit(Dynamic::from(code), Position::NONE).into())
        });
    // Rhai's own `exit(value)` would end the script with status 0 for any other value.
    rhai::FuncRegistration::new("exit")
        .with_comments(["/// `exit` with anything but an integer: an error naming the value."])
        .with_params_info(["code: Dynamic", "()"])
        .register_into_engine(
            &mut engine,
            |code: Dynamic| -> Result<(), Box<EvalAltResult>> {
                Err(format!(
                    "exit({code:?}): the exit status must be an integer in 0..=255, found {}",
                    code.type_name()
                )
                .into())
            },
        );
    let ov = overrides.clone();
    rhai::FuncRegistration::new("config")
        .with_comments([
            "/// The script's configuration: `let CONFIG = config(#{ lr: 1e-3, steps: 10 });`\n\
             /// returns the defaults with every `--set key=value` of the command line merged over\n\
             /// them (an unknown key or a value of another type than its default is an error).",
        ])
        .with_params_info(["defaults: Map", "Map"])
        .register_into_engine(
            &mut engine,
            move |defaults: Map| -> Result<Map, Box<EvalAltResult>> {
                let mut ov = ov.lock().map_err(|e| e.to_string())?;
                ov.applied = true;
                merge_config(defaults, &ov.values)
            },
        );
    engine
}

/// Merges `--set` values over a script's defaults: an unknown key is an error naming it and
/// the known ones (a misspelt hyperparameter must stop a run, not be ignored), an integer given
/// for a float default is widened, any other type change is an error.
pub fn merge_config(
    mut defaults: Map,
    values: &[(String, Dynamic)],
) -> Result<Map, Box<EvalAltResult>> {
    for (k, v) in values {
        match defaults.get(k.as_str()) {
            None => {
                let mut known: Vec<String> = defaults.keys().map(|k| k.to_string()).collect();
                known.sort();
                return Err(format!(
                    "--set {k}: unknown key; this script's CONFIG has: {}",
                    known.join(", ")
                )
                .into());
            }
            Some(d) => {
                let v = if d.is_float() && v.is_int() {
                    Dynamic::from(v.as_int().unwrap_or_default() as f64)
                } else {
                    v.clone()
                };
                if !d.is_unit() && d.type_name() != v.type_name() {
                    return Err(format!(
                        "--set {k}: expected a {} like the default `{d}`, found {} `{v}`",
                        d.type_name(),
                        v.type_name()
                    )
                    .into());
                }
                defaults.insert(k.as_str().into(), v);
            }
        }
    }
    Ok(defaults)
}

/// Parses one `--set key=value`: the value is a Rhai literal (number, bool, string, array,
/// map), parsed and never evaluated (`workbench_core::literal`); a bare word that is not a
/// literal is taken as a string.
pub fn parse_set(arg: &str) -> anyhow::Result<(String, Dynamic)> {
    let (k, v) = workbench_core::literal::parse_set(arg)?;
    Ok((k, api::convert::json_to_dynamic(&v)))
}

/// Where a script error happened: the innermost location (an error inside a function points
/// at the line inside it, also in an imported module's file, e.g. `stdlib/trainer.rhai`), and
/// the calls that led there.
#[derive(Debug, Clone)]
struct ErrorSite<'a> {
    /// The script (AST source) of the innermost location: `file` as given for the top level.
    file: String,
    /// The innermost position (the innermost call site when the error itself has none).
    pos: Position,
    /// The innermost error (unwrapped from the calls).
    error: &'a EvalAltResult,
    /// The calls, innermost first: `in call to function 'f' at nest.rhai:4:11`.
    calls: Vec<String>,
}

impl ErrorSite<'_> {
    /// The innermost error's message without Rhai's own ` (line 1, position 14)`, since the
    /// location is said once, in front.
    fn message(&self) -> String {
        let p = self.error.position();
        self.error.to_string().replace(&format!(" ({p})"), "")
    }
}

fn at(file: &str, pos: Position) -> Option<String> {
    let line = pos.line()?;
    let col = pos.position().unwrap_or(1);
    Some(if file.is_empty() {
        format!("{line}:{col}")
    } else {
        format!("{file}:{line}:{col}")
    })
}

/// Unwraps the function calls (and imports) of `err`, raised by the script `file` (`""` when
/// it has no name, as in the REPL).
fn error_site<'a>(file: &str, err: &'a EvalAltResult) -> ErrorSite<'a> {
    // From the outermost frame inwards: each call, and where it was made.
    let mut chain: Vec<(String, String, Position)> = Vec::new();
    let (mut here, mut e) = (file.to_string(), err);
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                let what = if name.starts_with("anon$") {
                    "in closure call".to_string()
                } else {
                    format!("in call to function '{name}'")
                };
                chain.push((what, here.clone(), *pos));
                if !src.is_empty() {
                    here = src.clone();
                }
                e = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, pos) => {
                let Some(found) = find_module((!here.is_empty()).then_some(here.as_str()), name)
                else {
                    break;
                };
                chain.push((format!("in module '{name}' imported"), here.clone(), *pos));
                here = match found {
                    Found::File(p) => p.display().to_string(),
                    Found::Stdlib(_) => format!("stdlib/{}", with_ext(name)),
                };
                e = inner;
            }
            _ => break,
        }
    }
    let mut pos = e.position();
    if pos.is_none() {
        // Raised without a position (a native function's own error): at the innermost call.
        if let Some((_, f, p)) = chain.last() {
            (here, pos) = (f.clone(), *p);
        }
    }
    let calls = chain
        .iter()
        .rev()
        .map(|(what, f, p)| match at(f, *p) {
            Some(loc) => format!("{what} at {loc}"),
            None => what.clone(),
        })
        .collect();
    ErrorSite {
        file: here,
        pos,
        error: e,
        calls,
    }
}

/// The text of the script a location names: `source` when it is `file` itself, else the file
/// on disk or the embedded stdlib module (`stdlib/NAME.rhai`).
fn site_source(site: &ErrorSite<'_>, file: &str, source: &str) -> Option<String> {
    if site.file == file {
        Some(source.to_string())
    } else {
        source_text(&site.file)
    }
}

/// Renders a script error as `file:line:col: message` with the source line and a caret, at
/// the innermost location ([`error_site`]), followed by the call chain, innermost call first,
/// each location said once:
///
/// ```text
/// nest.rhai:2:5: Function not found: foo (i64)
///  2 |     foo(x)
///    |     ^
///   in call to function 'f' at nest.rhai:4:11
///   in call to function 'g' at nest.rhai:5:1
/// ```
pub fn format_error(file: &str, source: &str, err: &EvalAltResult) -> String {
    let site = error_site(file, err);
    let msg = match site.error {
        EvalAltResult::ErrorTerminated(token, _) => format!("stopped: {token}"),
        _ => site.message(),
    };
    let pos = site.pos;
    let mut out = match (site_source(&site, file, source), pos.line()) {
        (Some(text), _) => workbench_core::error_report::at_source(
            &site.file,
            &text,
            pos.line(),
            pos.position(),
            &msg,
        ),
        (None, Some(_)) => format!(
            "{}: {}",
            at(&site.file, pos).unwrap_or_default(),
            workbench_core::error_report::strip_backtrace(&msg)
        ),
        (None, None) => format!("{}: {msg}", site.file),
    };
    for c in &site.calls {
        out.push_str("\n  ");
        out.push_str(c);
    }
    out
}

/// Compiles a script file, tagging it with its path so imports resolve next to it.
pub fn compile_file(engine: &Engine, path: &Path) -> anyhow::Result<(AST, String)> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read script {}: {e}", path.display()))?;
    let mut ast = engine.compile(&source).map_err(|e| {
        let pe: EvalAltResult = e.into();
        anyhow::anyhow!(
            "{}",
            format_error(&path.display().to_string(), &source, &pe)
        )
    })?;
    ast.set_source(path.display().to_string());
    Ok((ast, source))
}

/// Runs a script file with `--set` overrides and positional `ARGS`.
pub fn run_file(path: &Path, sets: &[String], args: &[String]) -> anyhow::Result<()> {
    let overrides = Arc::new(Mutex::new(Overrides::default()));
    let engine = new_engine_with(overrides.clone());
    let mut parsed = Vec::new();
    for s in sets {
        parsed.push(parse_set(s)?);
    }
    overrides.lock().map_err(|e| anyhow::anyhow!("{e}"))?.values = parsed;
    let (ast, source) = compile_file(&engine, path)?;
    let mut scope = Scope::new();
    scope.push(
        "ARGS",
        args.iter()
            .map(|a| Dynamic::from(a.clone()))
            .collect::<rhai::Array>(),
    );
    let _ = workbench_core::error_report::take_exit_request();
    let result = engine.run_ast_with_scope(&mut scope, &ast);
    if let Some(code) = workbench_core::error_report::take_exit_request() {
        if code != 0 && result.is_ok() {
            return Err(workbench_core::error_report::ScriptExit(code).into());
        }
    }
    let ov = overrides.lock().map_err(|e| anyhow::anyhow!("{e}"))?;
    if !ov.values.is_empty() && !ov.applied && result.is_ok() {
        eprintln!(
            "warning: --set was given but {} never called config(#{{...}}), so the values were not used",
            path.display()
        );
    }
    result
        .map_err(|e| anyhow::anyhow!("{}", format_error(&path.display().to_string(), &source, &e)))
}

//! API reference generation from the engine's registration metadata.
//!
//! Everything here reads `Engine::gen_fn_metadata_to_json`, so the reference (and the REPL's
//! `:help`) always describes exactly what is registered: signatures come from the registered
//! Rust types (mapped to their Rhai display names), descriptions from the doc comments attached
//! with `FuncRegistration::with_comments` (or `///` comments of script-defined functions).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use rhai::Engine;
use serde_json::Value;

/// One registered function overload, as described by the engine's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnEntry {
    /// Module path (`""` for the global namespace, `"a::b"` for nested static modules).
    pub module: String,
    /// Raw registered name, e.g. `add`, `get$x`, `index$get$` or `+`.
    pub name: String,
    /// Call-form signature with display type names, e.g. `add(a: i64, b: i64) -> i64`
    /// (not module-qualified; see [`FnEntry::display_signature`]).
    pub signature: String,
    /// Display type of each parameter (`_` where the metadata has no type).
    pub param_types: Vec<String>,
    /// Display return type (empty for `()`).
    pub return_type: String,
    /// Doc comment text with the comment markers (`///`, `/** */`) stripped; empty if none.
    pub doc: String,
    /// Number of parameters.
    pub num_params: usize,
    /// Whether a function inside a module is also callable without the module prefix.
    pub global: bool,
}

impl FnEntry {
    /// The name to call the function by: `name` or `module::name`.
    pub fn qualified_name(&self) -> String {
        qualify(&self.module, &self.name)
    }

    /// What kind of function this is (plain function, property accessor, indexer, operator).
    pub fn kind(&self) -> FnKind {
        fn_kind(&self.name)
    }

    /// The signature as a script would use it: `geo::dist(a: Point) -> f64` for functions,
    /// `Point.x -> i64` / `Point.x = i64` for properties, `Grid[i64] -> f64` for indexers and
    /// `i64 + i64 -> i64` for operators.
    pub fn display_signature(&self) -> String {
        let t = |i: usize| {
            let t = self.param_types[i].as_str();
            t.strip_prefix("&mut ").unwrap_or(t).to_string()
        };
        let ret = if self.return_type.is_empty() {
            String::new()
        } else {
            format!(" -> {}", self.return_type)
        };
        let n = self.param_types.len();
        match self.kind() {
            FnKind::Getter(p) if n == 1 => format!("{}.{p}{ret}", t(0)),
            FnKind::Setter(p) if n == 2 => format!("{}.{p} = {}", t(0), t(1)),
            FnKind::IndexGetter if n == 2 => format!("{}[{}]{ret}", t(0), t(1)),
            FnKind::IndexSetter if n == 3 => format!("{}[{}] = {}", t(0), t(1), t(2)),
            FnKind::Operator if n == 2 => format!("{} {} {}{ret}", t(0), self.name, t(1)),
            FnKind::Operator if n == 1 => format!("{}{}{ret}", self.name, t(0)),
            _ => qualify(&self.module, &self.signature),
        }
    }
}

/// A custom type registered with a display name, as described by the engine's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeEntry {
    /// Module path (`""` for the global namespace).
    pub module: String,
    /// The Rust type name.
    pub type_name: String,
    /// The name scripts see (e.g. in `type_of`).
    pub display_name: String,
    /// Doc comment text with the comment markers stripped; empty if none.
    pub doc: String,
}

/// Classification of a registered function name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FnKind {
    /// A plain function or method, called by name.
    Function,
    /// A property getter (`obj.prop`), registered as `get$prop`.
    Getter(String),
    /// A property setter (`obj.prop = v`), registered as `set$prop`.
    Setter(String),
    /// An indexer getter (`obj[i]`).
    IndexGetter,
    /// An indexer setter (`obj[i] = v`).
    IndexSetter,
    /// An operator such as `+` or `==`.
    Operator,
}

impl FnKind {
    /// A human-readable title, e.g. ``property `x` (get)`` or ``operator `+` ``.
    pub fn title(&self, qualified_name: &str) -> String {
        match self {
            FnKind::Function => qualified_name.to_string(),
            FnKind::Getter(p) => format!("property `{p}` (get)"),
            FnKind::Setter(p) => format!("property `{p}` (set)"),
            FnKind::IndexGetter => "indexer `[]` (get)".to_string(),
            FnKind::IndexSetter => "indexer `[]` (set)".to_string(),
            FnKind::Operator => format!("operator `{qualified_name}`"),
        }
    }
}

/// Classifies a raw registered function name (`get$x` → getter, `+` → operator, ...).
pub fn fn_kind(name: &str) -> FnKind {
    if name == "index$get$" {
        FnKind::IndexGetter
    } else if name == "index$set$" {
        FnKind::IndexSetter
    } else if let Some(p) = name.strip_prefix("get$") {
        FnKind::Getter(p.to_string())
    } else if let Some(p) = name.strip_prefix("set$") {
        FnKind::Setter(p.to_string())
    } else if name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
    {
        FnKind::Function
    } else {
        FnKind::Operator
    }
}

/// Strips comment markers from a list of doc comments as stored in rhai's metadata.
///
/// Each element is either a block of `///` lines or one `/** ... */` block. Indentation after
/// the `/// ` marker is preserved (so code examples keep their layout).
pub fn strip_doc_comments<S: AsRef<str>>(comments: &[S]) -> String {
    let mut lines: Vec<String> = Vec::new();
    for comment in comments {
        let comment = comment.as_ref().trim();
        if let Some(body) = comment.strip_prefix("/**") {
            let body = body.strip_suffix("*/").unwrap_or(body);
            let mut block: Vec<String> = body
                .lines()
                .map(|line| {
                    let t = line.trim();
                    if t == "*" {
                        String::new()
                    } else if let Some(rest) = t.strip_prefix("* ") {
                        rest.trim_end().to_string()
                    } else {
                        t.to_string()
                    }
                })
                .collect();
            trim_blank_lines(&mut block);
            lines.extend(block);
        } else {
            for line in comment.lines() {
                let t = line.trim_start();
                let t = t
                    .strip_prefix("///")
                    .or_else(|| t.strip_prefix("//!"))
                    .unwrap_or(t);
                let t = t.strip_prefix(' ').unwrap_or(t);
                lines.push(t.trim_end().to_string());
            }
        }
    }
    trim_blank_lines(&mut lines);
    lines.join("\n")
}

fn trim_blank_lines(lines: &mut Vec<String>) {
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let leading = lines.iter().take_while(|l| l.trim().is_empty()).count();
    lines.drain(..leading);
}

fn qualify(module: &str, name: &str) -> String {
    if module.is_empty() {
        name.to_string()
    } else {
        format!("{module}::{name}")
    }
}

/// Maps a Rust type name from the metadata to the name scripts see.
fn display_type(engine: &Engine, typ: &str) -> String {
    let typ = typ.trim();
    if let Some(inner) = typ.strip_prefix("&mut ") {
        return format!("&mut {}", display_type(engine, inner));
    }
    // Plugin functions record the Rust spelling: unwrap the error type and use script names.
    if let Some(inner) = typ
        .strip_prefix("RResult<")
        .and_then(|t| t.strip_suffix('>'))
    {
        return display_type(engine, inner);
    }
    match typ {
        "ScriptTensor" => "Tensor".into(),
        "ScriptRng" => "Rng".into(),
        "ScriptGrads" => "Grads".into(),
        "ScriptModel" => "Model".into(),
        "ScriptTokenizer" => "Tokenizer".into(),
        "ScriptRollout" => "Rollout".into(),
        "ScriptTrajectory" => "Trajectory".into(),
        "ScriptTask" => "Task".into(),
        "&str" | "ImmutableString" => "String".into(),
        "Array" => "Array".into(),
        _ => engine.map_type_name(typ).to_string(),
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Renders `(signature, parameter types, return type)` from one function's metadata.
fn render_signature(
    engine: &Engine,
    f: &Value,
    name: &str,
    num_params: usize,
) -> (String, Vec<String>, String) {
    let mut rendered = Vec::with_capacity(num_params);
    let mut types = Vec::with_capacity(num_params);
    match f.get("params").and_then(Value::as_array) {
        Some(params) if !params.is_empty() => {
            for p in params {
                let pname = p.get("name").and_then(Value::as_str).unwrap_or("_");
                match p.get("type").and_then(Value::as_str) {
                    Some(t) if !t.trim().is_empty() => {
                        let t = display_type(engine, t);
                        rendered.push(format!("{pname}: {t}"));
                        types.push(t);
                    }
                    _ => {
                        rendered.push(pname.to_string());
                        types.push("_".to_string());
                    }
                }
            }
        }
        _ => {
            rendered = vec!["_".to_string(); num_params];
            types = rendered.clone();
        }
    }
    let ret = match f.get("returnType").and_then(Value::as_str).map(str::trim) {
        Some(r) if !r.is_empty() && r != "()" => display_type(engine, r),
        _ => String::new(),
    };
    let mut sig = format!("{name}({})", rendered.join(", "));
    if !ret.is_empty() {
        let _ = write!(sig, " -> {ret}");
    }
    (sig, types, ret)
}

fn collect_module(
    engine: &Engine,
    module_path: &str,
    module: &Value,
    fns: &mut Vec<FnEntry>,
    types: &mut Vec<TypeEntry>,
) {
    if let Some(functions) = module.get("functions").and_then(Value::as_array) {
        for f in functions {
            let Some(name) = f.get("name").and_then(Value::as_str) else {
                continue;
            };
            let anonymous = f
                .get("isAnonymous")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let private = f.get("access").and_then(Value::as_str) == Some("private");
            if anonymous || private || name.starts_with("anon$") {
                continue;
            }
            let num_params = f.get("numParams").and_then(Value::as_u64).unwrap_or(0) as usize;
            let global = f.get("namespace").and_then(Value::as_str) == Some("global");
            let (signature, param_types, return_type) =
                render_signature(engine, f, name, num_params);
            fns.push(FnEntry {
                module: module_path.to_string(),
                name: name.to_string(),
                signature,
                param_types,
                return_type,
                doc: strip_doc_comments(&string_list(f.get("docComments"))),
                num_params,
                global: global && !module_path.is_empty(),
            });
        }
    }
    if let Some(custom) = module.get("customTypes").and_then(Value::as_array) {
        for t in custom {
            let type_name = t
                .get("typeName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let display_name = t
                .get("displayName")
                .and_then(Value::as_str)
                .unwrap_or(type_name);
            types.push(TypeEntry {
                module: module_path.to_string(),
                type_name: type_name.to_string(),
                display_name: display_name.to_string(),
                doc: strip_doc_comments(&string_list(t.get("docComments"))),
            });
        }
    }
    if let Some(modules) = module.get("modules").and_then(Value::as_object) {
        for (name, sub) in modules {
            collect_module(engine, &qualify(module_path, name), sub, fns, types);
        }
    }
}

/// Parsed metadata: functions, custom types and the module-level doc text.
pub(crate) struct Metadata {
    pub(crate) functions: Vec<FnEntry>,
    pub(crate) types: Vec<TypeEntry>,
    pub(crate) doc: String,
}

/// Parses a metadata JSON document produced by `gen_fn_metadata*_to_json`, sorted
/// deterministically.
pub(crate) fn parse_metadata(engine: &Engine, json: &str) -> Result<Metadata> {
    let root: Value = serde_json::from_str(json).context("parsing rhai function metadata")?;
    let mut functions = Vec::new();
    let mut types = Vec::new();
    collect_module(engine, "", &root, &mut functions, &mut types);
    functions.sort_by(|a, b| {
        (
            &a.module,
            a.kind(),
            &a.name,
            a.num_params,
            &a.signature,
            &a.doc,
        )
            .cmp(&(
                &b.module,
                b.kind(),
                &b.name,
                b.num_params,
                &b.signature,
                &b.doc,
            ))
    });
    functions.dedup();
    types.sort_by(|a, b| {
        (&a.module, &a.display_name, &a.type_name).cmp(&(&b.module, &b.display_name, &b.type_name))
    });
    types.dedup();
    let doc = root
        .get("doc")
        .and_then(Value::as_str)
        .map(|d| strip_doc_comments(&d.lines().collect::<Vec<_>>()))
        .unwrap_or_default();
    Ok(Metadata {
        functions,
        types,
        doc,
    })
}

/// All registered function overloads (optionally including rhai's standard packages), sorted by
/// module, kind, name, arity and signature.
pub fn function_entries(engine: &Engine, include_standard_packages: bool) -> Result<Vec<FnEntry>> {
    let json = engine
        .gen_fn_metadata_to_json(include_standard_packages)
        .context("generating rhai function metadata")?;
    Ok(parse_metadata(engine, &json)?.functions)
}

/// All custom types registered with a display name (and their doc comments), sorted.
pub fn custom_types(engine: &Engine) -> Result<Vec<TypeEntry>> {
    let json = engine
        .gen_fn_metadata_to_json(false)
        .context("generating rhai function metadata")?;
    Ok(parse_metadata(engine, &json)?.types)
}

/// Generates the Markdown API reference (`docs/api.md`) for everything registered into
/// `engine` beyond rhai's standard packages. The output is deterministic.
pub fn api_markdown(engine: &Engine) -> Result<String> {
    let json = engine
        .gen_fn_metadata_to_json(false)
        .context("generating rhai function metadata")?;
    let meta = parse_metadata(engine, &json)?;

    let mut md = String::new();
    md.push_str("# Rhai API reference\n\n");
    md.push_str(
        "> Generated by `workbench doc` from the engine's registration metadata. \
         Do not edit by hand: change the doc comments where the functions are registered \
         and regenerate. Rhai's standard library (<https://rhai.rs/book/>) is not listed.\n\n",
    );
    if !meta.doc.is_empty() {
        md.push_str(&meta.doc);
        md.push_str("\n\n");
    }

    if !meta.types.is_empty() {
        md.push_str("## Types\n\n");
        for t in &meta.types {
            let _ = writeln!(md, "### `{}`\n", qualify(&t.module, &t.display_name));
            if t.type_name != t.display_name {
                let _ = writeln!(md, "Rust type: `{}`\n", t.type_name);
            }
            if !t.doc.is_empty() {
                md.push_str(&demote_headings(&t.doc));
                md.push_str("\n\n");
            }
        }
    }

    // Group by module (global first, since "" sorts first), then by (kind, name).
    let mut modules: BTreeMap<&str, Vec<&FnEntry>> = BTreeMap::new();
    for f in &meta.functions {
        modules.entry(f.module.as_str()).or_default().push(f);
    }
    for (module, fns) in &modules {
        if module.is_empty() {
            md.push_str("## Functions\n\n");
        } else {
            let _ = writeln!(md, "## Module `{module}`\n");
        }
        let mut i = 0;
        while i < fns.len() {
            let name = &fns[i].name;
            let j = i + fns[i..].iter().take_while(|f| &f.name == name).count();
            write_function_section(&mut md, &fns[i..j]);
            i = j;
        }
    }
    while md.ends_with("\n\n") {
        md.pop();
    }
    Ok(md)
}

/// Writes one `### name` section: overloads sharing a doc comment are listed together.
fn write_function_section(md: &mut String, overloads: &[&FnEntry]) {
    let first = overloads[0];
    let _ = writeln!(md, "### {}\n", first.kind().title(&first.qualified_name()));
    if first.global {
        md.push_str("*Also callable without the module prefix.*\n\n");
    }
    // Group consecutive-or-not overloads by identical doc text, keeping first-seen order.
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for f in overloads {
        match groups.iter_mut().find(|(doc, _)| *doc == f.doc) {
            Some((_, sigs)) => sigs.push(f.display_signature()),
            None => groups.push((&f.doc, vec![f.display_signature()])),
        }
    }
    for (doc, sigs) in groups {
        md.push_str("```rust\n");
        for sig in sigs {
            md.push_str(&sig);
            md.push('\n');
        }
        md.push_str("```\n\n");
        if !doc.is_empty() {
            md.push_str(&demote_headings(doc));
            md.push_str("\n\n");
        }
    }
}

/// Nests Markdown headings of a doc comment (`# Example`) below the `###` function heading,
/// leaving fenced code blocks alone.
fn demote_headings(doc: &str) -> String {
    let mut in_fence = false;
    doc.lines()
        .map(|line| {
            let t = line.trim_start();
            if t.starts_with("```") || t.starts_with("~~~") {
                in_fence = !in_fence;
            }
            if !in_fence && line.starts_with('#') {
                format!("###{line}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Signatures (module-qualified) of plain functions registered without a doc comment, sorted.
///
/// Property accessors, indexers and operators are exempt. A test can require this to be empty so
/// that every scripting function is documented.
pub fn undocumented(engine: &Engine) -> Result<Vec<String>> {
    let mut out: Vec<String> = function_entries(engine, false)?
        .into_iter()
        .filter(|f| f.kind() == FnKind::Function && f.doc.trim().is_empty())
        .map(|f| f.display_signature())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

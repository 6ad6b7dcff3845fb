//! The Python-compatible side of chat-template rendering: a minijinja environment configured like
//! `transformers`' `_compile_jinja_template`, with `raise_exception`, a `tojson` filter that
//! writes like Python's `json.dumps(..., ensure_ascii=False)`, a `trim` filter with Python's
//! whitespace, and the common Python `str`/`dict` methods.

use minijinja::value::{from_args, Kwargs, ValueKind};
use minijinja::{AutoEscape, Environment, Error as JinjaError, ErrorKind, State, Value};

/// Name under which the chat template is registered in the environment.
pub(crate) const TEMPLATE_NAME: &str = "chat_template";

/// A minijinja environment set up like `transformers`' `_compile_jinja_template`.
pub(crate) fn build_env(template: String) -> std::result::Result<Environment<'static>, JinjaError> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.add_function("raise_exception", raise_exception);
    env.add_filter("tojson", tojson);
    env.add_filter("trim", py_trim_filter);
    env.set_unknown_method_callback(py_method);
    env.add_template_owned(TEMPLATE_NAME, template)?;
    Ok(env)
}

fn raise_exception(message: String) -> std::result::Result<Value, JinjaError> {
    Err(JinjaError::new(
        ErrorKind::InvalidOperation,
        format!("raise_exception: {message}"),
    ))
}

/// Python's `str.isspace` for one character.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip/lstrip/rstrip(chars)`.
fn py_strip<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let matches = |c: char| match chars {
        Some(set) => set.contains(c),
        None => is_py_space(c),
    };
    let s = if left {
        s.trim_start_matches(matches)
    } else {
        s
    };
    if right {
        s.trim_end_matches(matches)
    } else {
        s
    }
}

/// Jinja2's `trim` filter (`str.strip(chars)`).
fn py_trim_filter(value: &Value, chars: Option<String>) -> String {
    py_strip(&value.to_string(), chars.as_deref(), true, true).to_string()
}

/// Python's `str.split(sep, maxsplit)`.
fn py_split(
    s: &str,
    sep: Option<&str>,
    maxsplit: i64,
) -> std::result::Result<Vec<String>, JinjaError> {
    let limit = usize::try_from(maxsplit).ok();
    match sep {
        Some("") => Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            "split: empty separator",
        )),
        Some(sep) => Ok(match limit {
            Some(n) => s.splitn(n + 1, sep).map(str::to_string).collect(),
            None => s.split(sep).map(str::to_string).collect(),
        }),
        None => {
            let mut out = Vec::new();
            let mut rest = py_strip(s, None, true, false);
            while !rest.is_empty() {
                if limit.is_some_and(|n| out.len() == n) {
                    out.push(py_strip(rest, None, false, true).to_string());
                    break;
                }
                let end = rest.find(is_py_space).unwrap_or(rest.len());
                out.push(rest[..end].to_string());
                rest = py_strip(&rest[end..], None, true, false);
            }
            Ok(out)
        }
    }
}

/// Python `str` and `dict` methods that chat templates commonly call.
fn py_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, JinjaError> {
    if let Some(s) = value.as_str() {
        return match method {
            "strip" | "lstrip" | "rstrip" => {
                let (chars,): (Option<&str>,) = from_args(args)?;
                let (l, r) = match method {
                    "strip" => (true, true),
                    "lstrip" => (true, false),
                    _ => (false, true),
                };
                Ok(Value::from(py_strip(s, chars, l, r)))
            }
            "split" => {
                let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
                Ok(Value::from(py_split(s, sep, maxsplit.unwrap_or(-1))?))
            }
            "startswith" | "endswith" => {
                let (pat,): (Value,) = from_args(args)?;
                let test = |p: &str| {
                    if method == "startswith" {
                        s.starts_with(p)
                    } else {
                        s.ends_with(p)
                    }
                };
                let hit = match pat.as_str() {
                    Some(p) => test(p),
                    None => pat.try_iter()?.any(|p| p.as_str().is_some_and(test)),
                };
                Ok(Value::from(hit))
            }
            "replace" => {
                let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
                Ok(Value::from(match usize::try_from(count.unwrap_or(-1)) {
                    Ok(n) => s.replacen(old, new, n),
                    Err(_) => s.replace(old, new),
                }))
            }
            "upper" | "lower" | "title" | "capitalize" => {
                let _: () = from_args(args)?;
                state.apply_filter(method, std::slice::from_ref(value))
            }
            _ => Err(JinjaError::from(ErrorKind::UnknownMethod)),
        };
    }
    if value.kind() == ValueKind::Map {
        return match method {
            "items" => {
                let _: () = from_args(args)?;
                state.apply_filter("items", std::slice::from_ref(value))
            }
            "keys" => {
                let _: () = from_args(args)?;
                Ok(Value::from(value.try_iter()?.collect::<Vec<_>>()))
            }
            "values" => {
                let _: () = from_args(args)?;
                let vals: std::result::Result<Vec<Value>, JinjaError> =
                    value.try_iter()?.map(|k| value.get_item(&k)).collect();
                Ok(Value::from(vals?))
            }
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                let v = value.get_item(&key)?;
                Ok(if v.is_undefined() {
                    default.unwrap_or(Value::from(()))
                } else {
                    v
                })
            }
            _ => Err(JinjaError::from(ErrorKind::UnknownMethod)),
        };
    }
    Err(JinjaError::from(ErrorKind::UnknownMethod))
}

/// Options of Python's `json.dumps` that `transformers`' `tojson` filter passes through.
struct JsonOpts {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

/// `transformers`' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, unescaped (unlike minijinja's HTML-safe `tojson`).
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, JinjaError> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(usize::try_from(n).unwrap_or(0))),
            (None, Some(s)) => Some(s.to_string()),
            _ => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an int or str",
                ))
            }
        },
    };
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        Some(_) => {
            return Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let opts = JsonOpts {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    dump_json(value, &opts, 0, &mut out)?;
    Ok(Value::from(out))
}

fn dump_json(
    v: &Value,
    o: &JsonOpts,
    level: usize,
    out: &mut String,
) -> std::result::Result<(), JinjaError> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number if v.is_integer() => out.push_str(&v.to_string()),
        ValueKind::Number => {
            let f = f64::try_from(v.clone())?;
            out.push_str(&py_float_repr(f));
        }
        ValueKind::String => dump_json_str(v.as_str().unwrap_or_default(), o.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            dump_container(out, o, level, '[', ']', &items, |item, out| {
                dump_json(item, o, level + 1, out)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if o.sort_keys {
                keys.sort();
            }
            dump_container(out, o, level, '{', '}', &keys, |k, out| {
                match k.as_str() {
                    Some(s) => dump_json_str(s, o.ensure_ascii, out),
                    None => dump_json_str(&k.to_string(), o.ensure_ascii, out),
                }
                out.push_str(&o.key_sep);
                dump_json(&v.get_item(k)?, o, level + 1, out)
            })?;
        }
        _ => dump_json_str(&v.to_string(), o.ensure_ascii, out),
    }
    Ok(())
}

fn dump_container(
    out: &mut String,
    o: &JsonOpts,
    level: usize,
    open: char,
    close: char,
    items: &[Value],
    mut each: impl FnMut(&Value, &mut String) -> std::result::Result<(), JinjaError>,
) -> std::result::Result<(), JinjaError> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, depth: usize| {
        if let Some(ind) = &o.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(ind);
            }
        }
    };
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&o.item_sep);
        }
        newline(out, level + 1);
        each(item, out)?;
    }
    newline(out, level);
    out.push(close);
    Ok(())
}

fn dump_json_str(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !(' '..='~').contains(&c)) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)` as `json.dumps` writes it.
fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        format!("{mant}e{sign}{digits:0>2}")
    } else {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, ctx: Value) -> String {
        let env = build_env(template.to_string()).unwrap();
        env.get_template(TEMPLATE_NAME)
            .unwrap()
            .render(ctx)
            .unwrap()
    }

    #[test]
    fn trim_blocks_and_lstrip_blocks_like_transformers() {
        let t = "  {% for x in xs %}\n{{ x }}\n  {% endfor %}\n";
        let ctx: Value = [("xs", Value::from(vec![1, 2]))].into_iter().collect();
        assert_eq!(render(t, ctx), "1\n2\n");
    }

    #[test]
    fn raise_exception_aborts_with_message() {
        let env = build_env("{{ raise_exception('bad role') }}".into()).unwrap();
        let err = env
            .get_template(TEMPLATE_NAME)
            .unwrap()
            .render(())
            .unwrap_err();
        assert!(format!("{err:#}").contains("bad role"));
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let ctx =
            Value::from_serialize(serde_json::json!({"x": {"b": [1, 2.5, "é<>\n"], "a": null}}));
        // minijinja maps iterate in key order (no `preserve_order`), so "a" comes first.
        assert_eq!(
            render("{{ x | tojson }}", ctx.clone()),
            r#"{"a": null, "b": [1, 2.5, "é<>\n"]}"#
        );
        assert_eq!(
            render("{{ x | tojson(indent=2, sort_keys=true) }}", ctx),
            "{\n  \"a\": null,\n  \"b\": [\n    1,\n    2.5,\n    \"é<>\\n\"\n  ]\n}"
        );
    }

    #[test]
    fn python_string_methods() {
        let ctx: Value = [("s", Value::from("  a b  c \n"))].into_iter().collect();
        assert_eq!(
            render(
                "{{ s.strip() }}|{{ s.split() | join(',') }}|{{ s.split(' ', 2) | length }}",
                ctx
            ),
            "a b  c|a,b,c|3"
        );
        assert_eq!(
            py_split("a,b,,c", Some(","), -1).unwrap(),
            ["a", "b", "", "c"]
        );
        assert_eq!(py_split("  x  y z ", None, 1).unwrap(), ["x", "y z"]);
    }

    #[test]
    fn float_repr() {
        assert_eq!(py_float_repr(1.0), "1.0");
        assert_eq!(py_float_repr(1e-7), "1e-07");
        assert_eq!(py_float_repr(1.5e20), "1.5e+20");
        assert_eq!(py_float_repr(0.1), "0.1");
    }
}

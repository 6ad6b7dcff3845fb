//! Math answer extraction and equivalence: a bounded-time, dependency-free stand-in for
//! HuggingFace math-verify (which MDPO and others score with), used by the MATH-500, AMC and
//! AIME tasks' "verify" judges.
//!
//! Reference: math-verify's pipeline — extract the answer (last `\boxed{}`, else other anchors),
//! normalise the LaTeX, then decide equality (string, numeric, symbolic; tuples, intervals,
//! sets, equations, matrices) — and Hendrycks' MATH `strip_string` normalisations. Symbolic
//! equality is decided by evaluating both trees at fixed pseudo-random points instead of SymPy
//! simplification (the private `expr` submodule; `latex` does the normalisation).
//!
//! Entry points: [`last_boxed`], [`extract_answer`], [`normalize`], [`is_equivalent`],
//! [`verify`]. Every function returns in bounded time on any input: inputs longer than
//! [`MAX_ANSWER_CHARS`] are only compared as normalised strings, parsing depth is limited, and
//! sets / tuples are limited to [`MAX_ITEMS`] elements.
//!
//! Covered: `\frac`/`\dfrac`/`\tfrac` (and `\frac12`), `\sqrt`/`\sqrt[n]`, `\left`/`\right`,
//! spacing commands, `\text`/`\mathrm`/`\mbox` wrappers, trailing units, `^\circ`, `\%`,
//! `\$`, thousands separators (`10,\!080`), trailing `.0`, `$…$`, mixed numbers
//! (`1\frac{4}{5}`), decimals / fractions / scientific notation / `\pi` / `e` / `i`, implicit
//! multiplication, trig / log / exp functions, `|x|`, floor / ceiling, binomials, factorials,
//! tuples and intervals (bracket kinds must match), unions, sets and bare comma lists
//! (order-free), `\pm` (a two-element set), equations (`x = 5` vs `5`; equal sides, or
//! proportional `lhs − rhs`), `x \in [a, b]`, matrices (`pmatrix`/`bmatrix`/…, also a column
//! vector vs a tuple), words (`\text{Evelyn}`, case-insensitive) and multiple-choice letters.
//! Not covered: inequalities as sets (`x > 2` vs `(2, \infty)`), base-n numbers other than by
//! string equality (`52_8`), simplification of expressions that are not defined on the positive
//! reals sample range, units conversion, and `\log` with other than natural base unless written
//! `\log_b`.

pub(crate) mod expr;
pub(crate) mod latex;

use latex::{is_close, is_open, normalize_tokens, serialize, tokenize, Normalized, Tok};

/// Answers longer than this (in bytes) are compared only as normalised strings.
pub const MAX_ANSWER_CHARS: usize = 2000;
/// Maximum elements of a set / tuple / matrix that are compared structurally.
pub const MAX_ITEMS: usize = 64;
/// Maximum nesting of structures (sets of tuples of …).
const MAX_NEST: usize = 6;

/// The content of the last `\boxed{…}` or `\fbox{…}` (nested braces balanced, escaped braces
/// `\{ \}` ignored), or of `\boxed x` without braces (up to whitespace or `$`). `None` when
/// there is none or its braces never close.
pub fn last_boxed(text: &str) -> Option<String> {
    let b = text.rfind("\\boxed");
    let f = text.rfind("\\fbox");
    let (idx, len) = match (b, f) {
        (Some(b), Some(f)) if f > b => (f, 5),
        (Some(b), _) => (b, 6),
        (None, Some(f)) => (f, 5),
        (None, None) => return None,
    };
    let rest = &text[idx + len..];
    let trimmed = rest.trim_start();
    if let Some(body) = trimmed.strip_prefix('{') {
        let bytes = body.as_bytes();
        let mut depth = 1usize;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                // skip an escaped brace (other escapes are harmless)
                b'\\' if i + 1 < bytes.len() && (bytes[i + 1] == b'{' || bytes[i + 1] == b'}') => {
                    i += 2;
                    continue;
                }
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(body[..i].trim().to_string());
                    }
                }
                _ => {}
            }
            i += 1;
        }
        return None;
    }
    // `\boxed 5` / `\boxed5`: the next whitespace-delimited word, without a trailing `$`.
    if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None; // `\boxedx` is another command
    }
    let word: &str = trimmed
        .split(|c: char| c.is_whitespace() || c == '$')
        .next()
        .unwrap_or("");
    let word = word.trim_end_matches(['.', ',']);
    if word.is_empty() {
        None
    } else {
        Some(word.to_string())
    }
}

/// The final answer in a model response: the last `\boxed{}` (see [`last_boxed`]); else the last
/// `<answer>…</answer>` block (an unclosed last `<answer>` runs to the end); else the text after
/// the last "the answer is" / "final answer:" (case-insensitive) up to the end of the line;
/// else the text after the last `####` up to the end of the line. Trailing special tokens
/// (`<|eot_id|>`, `<|endoftext|>`) are ignored. `None` when there is no anchor.
pub fn extract_answer(text: &str) -> Option<String> {
    let text = crate::tasks::pytext::strip_trailing_special_tokens(text);
    if let Some(b) = last_boxed(text) {
        if !b.trim().is_empty() {
            return Some(b);
        }
    }
    if let Some(i) = text.rfind("<answer>") {
        let inner = &text[i + "<answer>".len()..];
        let inner = inner.split("</answer>").next().unwrap_or(inner);
        let inner = inner.trim();
        if !inner.is_empty() {
            return Some(inner.to_string());
        }
    }
    let lower = text.to_ascii_lowercase();
    let mut best: Option<usize> = None;
    for anchor in [
        "the answer is",
        "final answer is",
        "final answer:",
        "answer:",
    ] {
        if let Some(i) = lower.rfind(anchor) {
            let end = i + anchor.len();
            if best.is_none_or(|b| end > b) {
                best = Some(end);
            }
        }
    }
    if let Some(end) = best {
        if let Some(a) = line_answer(&text[end..]) {
            return Some(a);
        }
    }
    if let Some(i) = text.rfind("####") {
        if let Some(a) = line_answer(&text[i + 4..]) {
            return Some(a);
        }
    }
    None
}

fn line_answer(rest: &str) -> Option<String> {
    let line = rest.trim_start().lines().next().unwrap_or("");
    let line = line
        .trim()
        .trim_start_matches(':')
        .trim()
        .trim_end_matches(['.', '!'])
        .trim();
    let line = line.strip_prefix('$').unwrap_or(line);
    let line = line.strip_suffix('$').unwrap_or(line).trim();
    if line.is_empty() {
        None
    } else {
        Some(line.to_string())
    }
}

/// The canonical string of an answer after LaTeX normalisation (what "exact after
/// normalisation" compares): wrappers, spacing, `\left`/`\right`, units, degrees, percent and
/// dollar signs, thousands separators and spaces removed; `\dfrac`/`\tfrac` → `\frac`;
/// `\cdot`/`\times` → `*`. Linear time on any input.
pub fn normalize(answer: &str) -> String {
    serialize(&normalize_full(answer).toks)
}

fn normalize_full(answer: &str) -> Normalized {
    normalize_tokens(&tokenize(answer.trim()))
}

/// Whether two final answers are mathematically equivalent (see the module docs for what is
/// covered). If an argument contains `\boxed`, its last boxed content is compared.
pub fn is_equivalent(a: &str, b: &str) -> bool {
    let a = boxed_or_self(a);
    let b = boxed_or_self(b);
    if a.len() > MAX_ANSWER_CHARS || b.len() > MAX_ANSWER_CHARS {
        return a.trim() == b.trim();
    }
    let na = normalize_full(&a);
    let nb = normalize_full(&b);
    if na.toks.is_empty() || nb.toks.is_empty() {
        return na.toks.is_empty() && nb.toks.is_empty() && !a.trim().is_empty();
    }
    if na.toks == nb.toks {
        return true;
    }
    let va = parse_value(&na.toks, 0);
    let vb = parse_value(&nb.toks, 0);
    if equal(&va, &vb, 0) {
        return true;
    }
    // A percentage also matches its fraction: 50\% ~ 0.5.
    if na.percent != nb.percent {
        let scaled = |v: &Value| match v {
            Value::Expr(e) => Some(Value::Expr(expr::Expr::Prod(vec![
                (false, e.clone()),
                (true, expr::Expr::Num(100.0)),
            ]))),
            _ => None,
        };
        let (pa, pb) = if na.percent {
            (scaled(&va), Some(vb.clone()))
        } else {
            (Some(va.clone()), scaled(&vb))
        };
        if let (Some(x), Some(y)) = (pa, pb) {
            return equal(&x, &y, 0);
        }
    }
    false
}

fn boxed_or_self(s: &str) -> String {
    if s.contains("\\boxed") || s.contains("\\fbox") {
        if let Some(b) = last_boxed(s) {
            return b;
        }
    }
    s.to_string()
}

/// Extracts the final answer of `response` ([`extract_answer`]) and checks it against
/// `reference` ([`is_equivalent`]); `false` when no answer can be extracted.
pub fn verify(response: &str, reference: &str) -> bool {
    match extract_answer(response) {
        Some(a) => is_equivalent(&a, reference),
        None => false,
    }
}

/// A parsed answer.
#[derive(Clone, Debug)]
enum Value {
    Expr(expr::Expr),
    /// `(a, b]` etc.: bracket kinds and ordered items.
    Tuple(char, char, Vec<Value>),
    /// Order-free collection; `true` when written with `\{ \}`.
    Set(Vec<Value>, bool),
    Union(Vec<Value>),
    /// `lhs = rhs`, with whether each side is a plain symbol (`x`, `f(x)`, `y_1`).
    Eq(Box<Value>, Box<Value>, bool, bool),
    Matrix(Vec<Vec<Value>>),
    Text(String),
}

/// Splits at depth-0 tokens satisfying `sep`.
fn split_top(toks: &[Tok], sep: impl Fn(&Tok) -> bool) -> Vec<&[Tok]> {
    let mut parts = Vec::new();
    let mut depth: i64 = 0;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        if is_open(t) {
            depth += 1;
        } else if is_close(t) {
            depth -= 1;
        } else if depth == 0 && sep(t) {
            parts.push(&toks[start..i]);
            start = i + 1;
        }
    }
    parts.push(&toks[start..]);
    parts
}

/// If `toks[0]` opens a bracket whose matching close is the last token, that close's index.
fn wraps_whole(toks: &[Tok]) -> bool {
    if toks.len() < 2 || !is_open(&toks[0]) || !is_close(&toks[toks.len() - 1]) {
        return false;
    }
    let mut depth: i64 = 0;
    for (i, t) in toks.iter().enumerate() {
        if is_open(t) {
            depth += 1;
        } else if is_close(t) {
            depth -= 1;
            if depth == 0 {
                return i == toks.len() - 1;
            }
        }
    }
    false
}

fn is_simple_symbol(toks: &[Tok]) -> bool {
    if toks.is_empty() || toks.len() > 6 {
        return false;
    }
    let starts_letter = match &toks[0] {
        Tok::Ch(c) => c.is_ascii_alphabetic(),
        Tok::Cmd(n) => n.chars().all(|c| c.is_ascii_alphabetic()) && n != "frac" && n != "sqrt",
        _ => false,
    };
    starts_letter
        && toks.iter().all(|t| match t {
            Tok::Ch(c) => {
                c.is_ascii_alphanumeric() || matches!(c, '_' | '(' | ')' | '{' | '}' | '\'')
            }
            Tok::Cmd(n) => n.chars().all(|c| c.is_ascii_alphabetic()),
            _ => false,
        })
}

fn is_relation(t: &Tok) -> bool {
    match t {
        Tok::Ch(c) => matches!(c, '<' | '>'),
        Tok::Cmd(n) => matches!(
            n.as_str(),
            "leq"
                | "geq"
                | "neq"
                | "approx"
                | "sim"
                | "equiv"
                | "subset"
                | "subseteq"
                | "to"
                | "rightarrow"
                | "Rightarrow"
                | "implies"
                | "iff"
        ),
        _ => false,
    }
}

/// Items of a comma list, with one `\pm` / `\mp` per item expanded to two items.
fn list_items(parts: &[&[Tok]], nest: usize) -> Option<Vec<Value>> {
    if parts.len() > MAX_ITEMS {
        return None;
    }
    let mut items = Vec::new();
    for p in parts {
        match expand_pm(p) {
            Some((plus, minus)) => {
                items.push(parse_value(&plus, nest + 1));
                items.push(parse_value(&minus, nest + 1));
            }
            None => items.push(parse_value(p, nest + 1)),
        }
    }
    Some(items)
}

/// `a \pm b` → (`a + b`, `a - b`) when there is exactly one top-level `\pm` / `\mp`.
fn expand_pm(toks: &[Tok]) -> Option<(Vec<Tok>, Vec<Tok>)> {
    let pms: Vec<usize> = {
        let mut depth: i64 = 0;
        let mut v = Vec::new();
        for (i, t) in toks.iter().enumerate() {
            if is_open(t) {
                depth += 1;
            } else if is_close(t) {
                depth -= 1;
            } else if depth == 0 && (t.is_cmd("pm") || t.is_cmd("mp")) {
                v.push(i);
            }
        }
        v
    };
    if pms.len() != 1 {
        return None;
    }
    let i = pms[0];
    let first = if toks[i].is_cmd("pm") { '+' } else { '-' };
    let second = if first == '+' { '-' } else { '+' };
    let mut a = toks.to_vec();
    let mut b = toks.to_vec();
    a[i] = Tok::Ch(first);
    b[i] = Tok::Ch(second);
    Some((a, b))
}

fn matrix(toks: &[Tok], nest: usize) -> Option<Value> {
    // \begin{…matrix} … \end{…matrix}
    let env_name = |start: usize| -> Option<(String, usize)> {
        if !toks.get(start)?.is_ch('{') {
            return None;
        }
        let mut name = String::new();
        let mut j = start + 1;
        while let Some(Tok::Ch(c)) = toks.get(j) {
            if *c == '}' {
                return Some((name, j + 1));
            }
            name.push(*c);
            j += 1;
        }
        None
    };
    if !toks.first()?.is_cmd("begin") {
        return None;
    }
    let (name, body_start) = env_name(1)?;
    if !name.ends_with("matrix") {
        return None;
    }
    // find the final \end
    let end_idx = toks.iter().rposition(|t| t.is_cmd("end"))?;
    let (end_name, after) = env_name(end_idx + 1)?;
    if end_name != name || after != toks.len() || end_idx < body_start {
        return None;
    }
    let body = &toks[body_start..end_idx];
    let rows = split_top(body, |t| t.is_cmd("\\"));
    let mut out = Vec::new();
    for r in rows {
        if r.is_empty() {
            continue;
        }
        let cells = split_top(r, |t| t.is_ch('&'));
        if cells.len() > MAX_ITEMS || out.len() >= MAX_ITEMS {
            return None;
        }
        out.push(cells.iter().map(|c| parse_value(c, nest + 1)).collect());
    }
    Some(Value::Matrix(out))
}

fn parse_value(toks: &[Tok], nest: usize) -> Value {
    let text = || Value::Text(serialize(toks));
    if nest > MAX_NEST || toks.is_empty() {
        return text();
    }
    // unions
    let parts = split_top(toks, |t| t.is_cmd("cup"));
    if parts.len() > 1 {
        if parts.len() > MAX_ITEMS {
            return text();
        }
        return Value::Union(parts.iter().map(|p| parse_value(p, nest + 1)).collect());
    }
    // x \in S
    let parts = split_top(toks, |t| t.is_cmd("in"));
    if parts.len() == 2 && is_simple_symbol(parts[0]) {
        return parse_value(parts[1], nest + 1);
    }
    // bare comma list
    let parts = split_top(toks, |t| t.is_ch(','));
    if parts.len() > 1 {
        return match list_items(&parts, nest) {
            Some(items) => Value::Set(items, false),
            None => text(),
        };
    }
    // equations
    let parts = split_top(toks, |t| t.is_ch('='));
    if parts.len() == 2 {
        let (l, r) = (parts[0], parts[1]);
        return Value::Eq(
            Box::new(parse_value(l, nest + 1)),
            Box::new(parse_value(r, nest + 1)),
            is_simple_symbol(l),
            is_simple_symbol(r),
        );
    }
    if parts.len() > 2 || toks.iter().any(is_relation) {
        return text();
    }
    if let Some(m) = matrix(toks, nest) {
        return m;
    }
    if wraps_whole(toks) {
        let inner = &toks[1..toks.len() - 1];
        let first = &toks[0];
        let last = &toks[toks.len() - 1];
        if first.is_cmd("{") && last.is_cmd("}") {
            let parts = split_top(inner, |t| t.is_ch(','));
            return match list_items(&parts, nest) {
                Some(items) => Value::Set(items, true),
                None => text(),
            };
        }
        let bracket = |t: &Tok| match t {
            Tok::Ch(c) if matches!(c, '(' | '[' | ')' | ']') => Some(*c),
            Tok::Cmd(n) if n == "langle" => Some('('),
            Tok::Cmd(n) if n == "rangle" => Some(')'),
            _ => None,
        };
        if let (Some(o), Some(c)) = (bracket(first), bracket(last)) {
            let parts = split_top(inner, |t| t.is_ch(','));
            if parts.len() > 1 {
                if parts.len() > MAX_ITEMS {
                    return text();
                }
                let items = parts.iter().map(|p| parse_value(p, nest + 1)).collect();
                return Value::Tuple(o, c, items);
            }
            if (o, c) == ('(', ')') || (o, c) == ('[', ']') {
                // a parenthesised single value
                return parse_value(inner, nest + 1);
            }
        }
    }
    if let Some((a, b)) = expand_pm(toks) {
        return Value::Set(
            vec![parse_value(&a, nest + 1), parse_value(&b, nest + 1)],
            false,
        );
    }
    match expr::parse(toks) {
        Some(e) => Value::Expr(e),
        None => text(),
    }
}

fn text_key(s: &str) -> String {
    let t: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(|c| c.to_lowercase())
        .collect();
    // multiple choice: (c) -> c
    let t2 = t.trim_start_matches('(').trim_end_matches(')');
    if t2.chars().count() == 1 {
        return t2.to_string();
    }
    t
}

fn equal_lists(xs: &[Value], ys: &[Value], nest: usize) -> bool {
    xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| equal(x, y, nest + 1))
}

fn equal_multiset(xs: &[Value], ys: &[Value], nest: usize) -> bool {
    if xs.len() != ys.len() {
        return false;
    }
    let mut used = vec![false; ys.len()];
    'outer: for x in xs {
        for (j, y) in ys.iter().enumerate() {
            if !used[j] && equal(x, y, nest + 1) {
                used[j] = true;
                continue 'outer;
            }
        }
        return false;
    }
    true
}

fn equation_difference(l: &Value, r: &Value) -> Option<expr::Expr> {
    match (l, r) {
        (Value::Expr(a), Value::Expr(b)) => {
            Some(expr::Expr::Sum(vec![(false, a.clone()), (true, b.clone())]))
        }
        _ => None,
    }
}

fn equal(a: &Value, b: &Value, nest: usize) -> bool {
    if nest > MAX_NEST * 2 {
        return false;
    }
    use Value::*;
    match (a, b) {
        (Expr(x), Expr(y)) => expr::equivalent(x, y),
        (Text(x), Text(y)) => text_key(x) == text_key(y),
        (Text(x), Expr(_)) | (Expr(_), Text(x)) => {
            // a single-letter choice written as text vs as a variable
            let k = text_key(x);
            k.chars().count() == 1 && {
                let other = if matches!(a, Text(_)) { b } else { a };
                matches!(other, Expr(expr::Expr::Var(v)) if v.to_lowercase() == k)
            }
        }
        (Tuple(o1, c1, xs), Tuple(o2, c2, ys)) => o1 == o2 && c1 == c2 && equal_lists(xs, ys, nest),
        (Set(xs, _), Set(ys, _)) => equal_multiset(xs, ys, nest),
        (Union(xs), Union(ys)) => equal_multiset(xs, ys, nest),
        (Matrix(xs), Matrix(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(r1, r2)| equal_lists(r1, r2, nest))
        }
        (Eq(l1, r1, _, _), Eq(l2, r2, _, _)) => {
            (equal(l1, l2, nest + 1) && equal(r1, r2, nest + 1))
                || (equal(l1, r2, nest + 1) && equal(r1, l2, nest + 1))
                || match (equation_difference(l1, r1), equation_difference(l2, r2)) {
                    (Some(d1), Some(d2)) => expr::proportional(&d1, &d2),
                    _ => false,
                }
        }
        (Eq(l, r, ls, rs), other) | (other, Eq(l, r, ls, rs)) => {
            (*ls && equal(r, other, nest + 1)) || (*rs && equal(l, other, nest + 1))
        }
        // a column vector written as a tuple
        (Matrix(rows), Tuple('(', ')', items)) | (Tuple('(', ')', items), Matrix(rows)) => {
            rows.len() == items.len()
                && rows
                    .iter()
                    .zip(items)
                    .all(|(r, x)| r.len() == 1 && equal(&r[0], x, nest + 1))
        }
        // a bare list in the order of a tuple
        (Set(xs, false), Tuple('(', ')', ys)) | (Tuple('(', ')', ys), Set(xs, false)) => {
            equal_lists(xs, ys, nest)
        }
        (Set(xs, _), other) | (other, Set(xs, _)) if xs.len() == 1 => {
            equal(&xs[0], other, nest + 1)
        }
        (Union(xs), other) | (other, Union(xs)) if xs.len() == 1 => equal(&xs[0], other, nest + 1),
        _ => false,
    }
}

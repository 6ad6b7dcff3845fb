//! Math answer extraction and equivalence: a bounded-time, dependency-free stand-in for
//! HuggingFace math-verify (which MDPO and others score with), used by the MATH-500, AMC and
//! AIME tasks' "verify" judges.
//!
//! Reference: math-verify's pipeline — extract the answer from free text in its priority order
//! ([`extract`]: `\boxed{}`, "final answer is", "answer:", then the last `$…$` / `\[…\]` /
//! `\(…\)` / plain number), normalise the LaTeX, then decide equality (string, numeric,
//! symbolic; relations, tuples, intervals, sets, equations, matrices) — and Hendrycks' MATH
//! `strip_string` normalisations. Symbolic equality is decided by evaluating both trees at fixed
//! pseudo-random points instead of SymPy simplification (the private `expr` submodule; `latex`
//! does the normalisation). Agreement with math-verify's own test suite is measured by
//! `core/tests/math_verify_parity.rs` (docs/tasks.md, "math-verify parity").
//!
//! Entry points: [`last_boxed`], [`extract_answer`], [`parse_answer`], [`normalize`],
//! [`is_equivalent`] (symmetric), [`verify`] and [`verify_with`] (gold vs prediction, as
//! math-verify). Every function returns in bounded time on any input: only the last
//! [`extract::MAX_SCAN`] bytes of a response are scanned, inputs longer than
//! [`MAX_ANSWER_CHARS`] are only compared as normalised strings, parsing depth is limited, and
//! sets / tuples are limited to [`MAX_ITEMS`] elements.
//!
//! Covered: `\frac`/`\dfrac`/`\tfrac` (and `\frac12`), `\sqrt`/`\sqrt[n]`, `\left`/`\right`,
//! spacing commands, `\text`/`\mathrm`/`\mbox` wrappers, trailing units, `^\circ`, `\%` and
//! percent words (`28 pct`), `\$`, thousands separators (`10,\!080`, `7,425,000`, `1 000`),
//! decimal commas (`1000,99`), trailing `.0`, mixed numbers (`1\frac{4}{5}`), decimals /
//! fractions / scientific notation / `\pi` / `e` / `i`, implicit multiplication, trig / log / exp
//! functions, `|x|`, floor / ceiling, binomials, factorials, tuples and intervals (bracket kinds
//! must match), unions, sets and bare comma lists (order-free; `and` / `or` separate items),
//! `\pm` (a two-element set), equations (`x = 5` vs `5`; chains `x = a = b`; equal sides, or
//! proportional `lhs − rhs`), `\approx` (the exact side), inequalities and their chains (`x \ge
//! 5` ≡ `5 \le x`, `-x > -1` ≡ `x < 1`) and as sets (`-2 \le x \le 7` vs `[-2, 7]`), ratios
//! (`7:32`), `x \in [a, b]`, matrices (`pmatrix`/`bmatrix`/`array`, sums and products of
//! explicit matrices, a column vector vs a tuple), words (`\text{Evelyn}`, case-insensitive) and
//! multiple-choice letters. Not covered: inequalities that need solving (`1 \le |z| \le 2`),
//! `\sum` / `\int`, base-n numbers other than by string equality (`52_8`), simplification of
//! expressions that are not defined on the positive reals sample range, units conversion, and
//! `\log` with other than natural base unless written `\log_b`.

pub(crate) mod expr;
pub mod extract;
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

/// Options of [`verify_with`] / [`parse_answer`]: math-verify's `parse` targets and `verify`
/// arguments. The default is math-verify's test harness (`compare_strings`): LaTeX and plain
/// numbers, `\boxed{}` at priority 0, 6 decimal places, strict variables, sets vs relations
/// only when the prediction is the set.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Extract LaTeX environments and `\boxed{}` (`LatexExtractionConfig`).
    pub latex: bool,
    /// Extract plain numbers and `1/2`-like expressions (`ExprExtractionConfig`).
    pub expr: bool,
    /// Priority of `\boxed{}` among the anchors (0: before everything, math-verify's default
    /// is 50: after "final answer is …").
    pub boxed_priority: u32,
    /// Decimal places compared when either side is a decimal number (`float_rounding`).
    pub float_rounding: u32,
    /// `strict`: variable names matter (`f(x)` ≠ `f(y)`); when false, expressions that differ
    /// only by a renaming of their variables are equal.
    pub strict: bool,
    /// `allow_set_relation_comp`: a relation in the prediction also matches a set in the gold
    /// (`-2 ≤ x ≤ 7` vs `[-2, 7]`); the other direction is always allowed.
    pub allow_set_relation_comp: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            latex: true,
            expr: true,
            boxed_priority: 0,
            float_rounding: 6,
            strict: true,
            allow_set_relation_comp: false,
        }
    }
}

/// The answer math-verify would extract from free text: the first candidate (see
/// [`extract::candidates`] for the order: `\boxed{}` and "final answer is $…$. I hope" first,
/// then "final answer … is", "answer:", "answer", then the last `$…$` / `\[…\]` / `\(…\)` /
/// plain number) that parses; if none parses, the first candidate. `None` when there is no
/// candidate at all.
pub fn parse_answer(text: &str, opts: &VerifyOptions) -> Option<String> {
    let text = crate::tasks::pytext::strip_trailing_special_tokens(text);
    let targets = extract::Targets {
        latex: opts.latex,
        expr: opts.expr,
        boxed_priority: opts.boxed_priority,
    };
    let cands = extract::candidates(text, targets);
    let answers = cands
        .iter()
        .map(|c| extract::normalize_text(&c.answer).trim().to_string());
    let mut first = None;
    for a in answers {
        if parses(&a) {
            return Some(a);
        }
        first.get_or_insert(a);
    }
    first
}

/// Whether an extracted answer reads as mathematics (math-verify keeps trying candidates until
/// latex2sympy accepts one): non-empty after normalisation, brackets balanced, and a parsed
/// value or a short word answer.
fn parses(answer: &str) -> bool {
    if answer.len() > MAX_ANSWER_CHARS {
        return false;
    }
    let n = normalize_full(answer);
    if n.toks.is_empty() {
        return false;
    }
    let mut depth: i64 = 0;
    for t in &n.toks {
        if is_open(t) {
            depth += 1;
        } else if is_close(t) {
            depth -= 1;
            if depth < 0 {
                return false;
            }
        }
    }
    if depth != 0 {
        return false;
    }
    match parse_value(&n.toks, 0) {
        Value::Text(t) => {
            t.chars().count() <= 60
                && t.chars()
                    .all(|c| c.is_alphanumeric() || c.is_whitespace() || "\\{}_'".contains(c))
        }
        _ => true,
    }
}

/// The final answer in a model response, as math-verify extracts it ([`parse_answer`] with the
/// default [`VerifyOptions`]); when there is no candidate, the last `<answer>…</answer>` block
/// (an unclosed last `<answer>` runs to the end), else the text after the last `####` up to the
/// end of the line. Trailing special tokens (`<|eot_id|>`, `<|endoftext|>`) are ignored.
/// `None` when there is no anchor.
pub fn extract_answer(text: &str) -> Option<String> {
    if let Some(a) = parse_answer(text, &VerifyOptions::default()) {
        if !a.trim().is_empty() {
            return Some(a);
        }
    }
    let text = crate::tasks::pytext::strip_trailing_special_tokens(text);
    if let Some(i) = text.rfind("<answer>") {
        let inner = &text[i + "<answer>".len()..];
        let inner = inner.split("</answer>").next().unwrap_or(inner);
        let inner = inner.trim();
        if !inner.is_empty() {
            return Some(inner.to_string());
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
/// covered). If an argument contains `\boxed`, its last boxed content is compared. Symmetric;
/// [`verify_with`] is math-verify's gold-vs-prediction comparison.
pub fn is_equivalent(a: &str, b: &str) -> bool {
    equivalent(a, b, &Cmp::SYMMETRIC)
}

/// How two parsed answers are compared.
struct Cmp {
    /// `a` is the gold and `b` the prediction (math-verify's asymmetric rules for equations
    /// and relation-vs-set); otherwise both directions are accepted.
    directed: bool,
    /// Decimal places compared when a side is a decimal number; `None`: relative 1e-6.
    rounding: Option<u32>,
    /// Variable names matter.
    strict: bool,
    /// A relation in the prediction may match a set in the gold.
    set_rel: bool,
}

impl Cmp {
    const SYMMETRIC: Cmp = Cmp {
        directed: false,
        rounding: None,
        strict: true,
        set_rel: true,
    };

    fn of(opts: &VerifyOptions) -> Cmp {
        Cmp {
            directed: true,
            rounding: Some(opts.float_rounding),
            strict: opts.strict,
            set_rel: opts.allow_set_relation_comp,
        }
    }
}

fn equivalent(a: &str, b: &str, cmp: &Cmp) -> bool {
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
    if equal(&va, &vb, 0, cmp) {
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
            return equal(&x, &y, 0, cmp);
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

/// Whether a reference is free text to extract from (it has `$`, `\[`, `\(` or `\boxed`)
/// rather than a bare answer such as MATH's `answer` field.
fn has_math_delimiters(s: &str) -> bool {
    let escaped_dollars = s.matches("\\$").count();
    s.matches('$').count() > escaped_dollars
        || s.contains("\\[")
        || s.contains("\\(")
        || s.contains("\\boxed")
        || s.contains("\\fbox")
}

/// math-verify's `verify(parse(gold), parse(response))`: extracts the answer of each side
/// ([`parse_answer`]; a gold without any candidate is used as written) and compares them as
/// math-verify does: gold-vs-prediction asymmetric for equations (a prediction `k = 1` matches
/// a gold `1`; a gold `k = 1` matches a prediction `1` only because `k` is a plain symbol) and
/// for relation-vs-set (`x > 2` in the gold matches `(2, \infty)`; the reverse needs
/// [`VerifyOptions::allow_set_relation_comp`]), decimals rounded to
/// [`VerifyOptions::float_rounding`] places.
pub fn verify_with(gold: &str, response: &str, opts: &VerifyOptions) -> bool {
    let g = parse_answer(gold, opts).unwrap_or_else(|| gold.to_string());
    match parse_answer(response, opts) {
        Some(p) => equivalent(&g, &p, &Cmp::of(opts)),
        None => false,
    }
}

/// Extracts the final answer of `response` ([`extract_answer`]) and checks it against
/// `reference` as math-verify would ([`verify_with`] with the default options). A reference
/// written as free text (`$…$`, `\boxed{}`) has its answer extracted first; a bare answer
/// (MATH's `answer` field) is used as it is. `false` when no answer can be extracted.
pub fn verify(response: &str, reference: &str) -> bool {
    let opts = VerifyOptions::default();
    let gold = if has_math_delimiters(reference) {
        parse_answer(reference, &opts).unwrap_or_else(|| reference.to_string())
    } else {
        reference.to_string()
    };
    match extract_answer(response) {
        Some(a) => equivalent(&gold, &a, &Cmp::of(&opts)),
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
    /// `a < b ≤ c …`: the sides, the operators between them, and whether each side is a plain
    /// symbol (for reading the relation as a set of that variable).
    Rel(Vec<Value>, Vec<RelOp>, Vec<bool>),
    Text(String),
}

/// An inequality operator.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RelOp {
    Lt,
    Le,
    Gt,
    Ge,
    Ne,
}

impl RelOp {
    /// The operator with its sides swapped (`a < b` ⇔ `b > a`).
    fn flipped(self) -> RelOp {
        match self {
            RelOp::Lt => RelOp::Gt,
            RelOp::Le => RelOp::Ge,
            RelOp::Gt => RelOp::Lt,
            RelOp::Ge => RelOp::Le,
            RelOp::Ne => RelOp::Ne,
        }
    }
}

/// The inequality operator at `toks[i]` and how many tokens it takes (`<=` is two).
fn rel_op_at(toks: &[Tok], i: usize) -> Option<(RelOp, usize)> {
    let next_eq = toks.get(i + 1).is_some_and(|t| t.is_ch('='));
    match &toks[i] {
        Tok::Ch('<') => Some(if next_eq {
            (RelOp::Le, 2)
        } else {
            (RelOp::Lt, 1)
        }),
        Tok::Ch('>') => Some(if next_eq {
            (RelOp::Ge, 2)
        } else {
            (RelOp::Gt, 1)
        }),
        Tok::Ch('!') if next_eq => Some((RelOp::Ne, 2)),
        Tok::Cmd(n) => match n.as_str() {
            "lt" => Some((RelOp::Lt, 1)),
            "gt" => Some((RelOp::Gt, 1)),
            "le" | "leq" | "leqslant" => Some((RelOp::Le, 1)),
            "ge" | "geq" | "geqslant" => Some((RelOp::Ge, 1)),
            "ne" | "neq" => Some((RelOp::Ne, 1)),
            _ => None,
        },
        _ => None,
    }
}

/// Splits at top-level inequality operators: the sides and the operators (none: not a
/// relation).
fn split_relations(toks: &[Tok]) -> (Vec<&[Tok]>, Vec<RelOp>) {
    let mut parts = Vec::new();
    let mut ops = Vec::new();
    let mut depth: i64 = 0;
    let mut start = 0;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if is_open(t) {
            depth += 1;
        } else if is_close(t) {
            depth -= 1;
        } else if depth == 0 {
            if let Some((op, len)) = rel_op_at(toks, i) {
                parts.push(&toks[start..i]);
                ops.push(op);
                i += len;
                start = i;
                continue;
            }
        }
        i += 1;
    }
    parts.push(&toks[start..]);
    (parts, ops)
}

/// A left-hand side that makes an equation an assignment (math-verify's
/// `is_expr_of_only_symbols`): letters, subscripts, `:` ratios, `|…|`, `\frac` of symbols —
/// no numbers (outside subscripts) and no `+` / `-`.
fn is_symbolic_lhs(toks: &[Tok]) -> bool {
    if toks.is_empty() || toks.len() > 24 {
        return false;
    }
    let mut letter = false;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ch('_') => {
                // skip the subscript: one token or a braced group
                i += 1;
                if toks.get(i).is_some_and(|t| t.is_ch('{')) {
                    let mut depth = 0;
                    while i < toks.len() {
                        if toks[i].is_ch('{') {
                            depth += 1;
                        } else if toks[i].is_ch('}') {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        i += 1;
                    }
                }
            }
            Tok::Ch(c) if c.is_ascii_alphabetic() => letter = true,
            Tok::Ch(c) if c.is_ascii_digit() || matches!(c, '+' | '-' | '*' | '.') => return false,
            Tok::Ch(_) | Tok::Space => {}
            Tok::Word(_) => letter = true,
            Tok::Cmd(n) => {
                if matches!(
                    n.as_str(),
                    "pi" | "infty" | "sqrt" | "cdot" | "times" | "pm"
                ) {
                    return false;
                }
                if GREEK_LETTERS.contains(&n.as_str()) {
                    letter = true;
                }
            }
        }
        i += 1;
    }
    letter
}

const GREEK_LETTERS: &[&str] = &[
    "alpha", "beta", "gamma", "delta", "theta", "lambda", "mu", "sigma", "phi", "omega", "rho",
    "tau", "psi", "xi", "eta", "zeta", "kappa", "nu", "chi",
];

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
    if !toks.first()?.is_cmd("begin") || env_groups(toks)?.len() != 1 {
        return None;
    }
    let (name, mut body_start) = env_name(1)?;
    if name == "array" {
        // skip the column spec `{cc}`
        let (_, after_spec) = env_name(body_start)?;
        body_start = after_spec;
    } else if !name.ends_with("matrix") {
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
        if r.iter().all(|t| matches!(t, Tok::Space)) {
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

/// `toks` split into consecutive `\begin{…} … \end{…}` groups (spaces, `\cdot`, `\times`
/// between them ignored); `None` unless the whole of `toks` is such groups.
fn env_groups(toks: &[Tok]) -> Option<Vec<&[Tok]>> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if matches!(toks[i], Tok::Space) || toks[i].is_cmd("cdot") || toks[i].is_cmd("times") {
            i += 1;
            continue;
        }
        if !toks[i].is_cmd("begin") {
            return None;
        }
        let start = i;
        let mut depth: i64 = 0;
        let mut end = None;
        while i < toks.len() {
            if toks[i].is_cmd("begin") {
                depth += 1;
            } else if toks[i].is_cmd("end") {
                depth -= 1;
                if depth == 0 {
                    // the `{name}` after the matching \end
                    let mut j = i + 1;
                    while j < toks.len() && !toks[j].is_ch('}') {
                        j += 1;
                    }
                    end = Some(j + 1);
                    break;
                }
            }
            i += 1;
        }
        let end = end?.min(toks.len());
        groups.push(&toks[start..end]);
        i = end;
    }
    Some(groups)
}

fn matrix_exprs(v: Value) -> Option<Vec<Vec<expr::Expr>>> {
    let Value::Matrix(rows) = v else {
        return None;
    };
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .map(|c| match c {
                    Value::Expr(e) => Some(e),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

fn exprs_matrix(rows: Vec<Vec<expr::Expr>>) -> Value {
    Value::Matrix(
        rows.into_iter()
            .map(|r| r.into_iter().map(Value::Expr).collect())
            .collect(),
    )
}

/// A sum (`A + B`) or product (`A B`, `A \cdot B`) of explicit matrices, evaluated entrywise
/// (math-verify lets SymPy do this).
fn matrix_arithmetic(toks: &[Tok], nest: usize) -> Option<Value> {
    use expr::Expr;
    let terms = split_top(toks, |t| t.is_ch('+'));
    if terms.len() > 1 {
        let mut acc: Option<Vec<Vec<Expr>>> = None;
        for t in terms {
            let groups = env_groups(t)?;
            if groups.len() != 1 {
                return None;
            }
            let m = matrix_exprs(matrix(groups[0], nest)?)?;
            acc = Some(match acc {
                None => m,
                Some(a) => {
                    if a.len() != m.len() || a.iter().zip(&m).any(|(x, y)| x.len() != y.len()) {
                        return None;
                    }
                    a.into_iter()
                        .zip(m)
                        .map(|(r1, r2)| {
                            r1.into_iter()
                                .zip(r2)
                                .map(|(x, y)| Expr::Sum(vec![(false, x), (false, y)]))
                                .collect()
                        })
                        .collect()
                }
            });
        }
        return acc.map(exprs_matrix);
    }
    let groups = env_groups(toks)?;
    if groups.len() < 2 || groups.len() > 4 {
        return None;
    }
    let mut acc = matrix_exprs(matrix(groups[0], nest)?)?;
    for g in &groups[1..] {
        let m = matrix_exprs(matrix(g, nest)?)?;
        let inner = m.len();
        if acc.iter().any(|r| r.len() != inner) || inner == 0 {
            return None;
        }
        let cols = m[0].len();
        if m.iter().any(|r| r.len() != cols) {
            return None;
        }
        acc = acc
            .iter()
            .map(|r| {
                (0..cols)
                    .map(|j| {
                        Expr::Sum(
                            (0..inner)
                                .map(|k| {
                                    (
                                        false,
                                        Expr::Prod(vec![
                                            (false, r[k].clone()),
                                            (false, m[k][j].clone()),
                                        ]),
                                    )
                                })
                                .collect(),
                        )
                    })
                    .collect()
            })
            .collect();
    }
    Some(exprs_matrix(acc))
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
    // `p=5,q=2; p=7,q=2`: groups of assignments are tuples of their values
    let groups = split_top(toks, |t| t.is_ch(';'));
    if groups.len() > 1 && toks.iter().any(|t| t.is_ch(',')) {
        if groups.len() > MAX_ITEMS {
            return text();
        }
        let items = groups
            .iter()
            .map(|g| match parse_value(g, nest + 1) {
                Value::Set(xs, false)
                    if xs.iter().all(|x| matches!(x, Value::Eq(_, _, true, _))) =>
                {
                    Value::Tuple(
                        '(',
                        ')',
                        xs.into_iter()
                            .map(|x| match x {
                                Value::Eq(_, r, _, _) => *r,
                                other => other,
                            })
                            .collect(),
                    )
                }
                v => v,
            })
            .collect();
        return Value::Set(items, false);
    }
    // bare comma (or semicolon) list
    let parts = split_top(toks, |t| t.is_ch(',') || t.is_ch(';'));
    if parts.len() > 1 {
        return match list_items(&parts, nest) {
            Some(items) => Value::Set(items, false),
            None => text(),
        };
    }
    // `lhs \approx v`: v when lhs is a symbol, else lhs (the exact value) — latex2sympy
    let parts = split_top(toks, |t| t.is_cmd("approx"));
    if parts.len() > 1 {
        let last = parts[parts.len() - 1];
        let before = &toks[..toks.len() - last.len() - 1];
        return if is_simple_symbol(before) {
            parse_value(last, nest + 1)
        } else {
            parse_value(before, nest + 1)
        };
    }
    // inequalities (`<=`, `\le`, chains)
    let (sides, ops) = split_relations(toks);
    if !ops.is_empty() {
        if sides.len() > MAX_ITEMS || sides.iter().any(|p| p.is_empty()) {
            return text();
        }
        let symbols = sides.iter().map(|p| is_simple_symbol(p)).collect();
        let values = sides.iter().map(|p| parse_value(p, nest + 1)).collect();
        return Value::Rel(values, ops, symbols);
    }
    // equations; a chain `x = a = b` is the assignment `x = b`, another chain its last side
    let parts = split_top(toks, |t| t.is_ch('='));
    if parts.len() >= 2 {
        let (l, r) = (parts[0], parts[parts.len() - 1]);
        if parts.len() > 2 && !is_symbolic_lhs(l) {
            return parse_value(r, nest + 1);
        }
        if l.is_empty() || r.is_empty() {
            return text();
        }
        return Value::Eq(
            Box::new(parse_value(l, nest + 1)),
            Box::new(parse_value(r, nest + 1)),
            is_symbolic_lhs(l),
            is_symbolic_lhs(r),
        );
    }
    if toks.iter().any(is_relation) {
        return text();
    }
    // ratios `7:32`
    let parts = split_top(toks, |t| t.is_ch(':'));
    if parts.len() > 1 && parts.len() <= MAX_ITEMS && parts.iter().all(|p| !p.is_empty()) {
        let items = parts.iter().map(|p| parse_value(p, nest + 1)).collect();
        return Value::Tuple(':', ':', items);
    }
    if let Some(m) = matrix(toks, nest) {
        return m;
    }
    if let Some(m) = matrix_arithmetic(toks, nest) {
        return m;
    }
    if wraps_whole(toks) {
        let inner = &toks[1..toks.len() - 1];
        let first = &toks[0];
        let last = &toks[toks.len() - 1];
        // `\{1, 2\}`, and `{1, 2}` which latex2sympy also reads as a set
        if (first.is_cmd("{") && last.is_cmd("}")) || (first.is_ch('{') && last.is_ch('}')) {
            let parts = split_top(inner, |t| t.is_ch(',') || t.is_ch(';'));
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
            let parts = split_top(inner, |t| t.is_ch(',') || t.is_ch(';'));
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

fn equal_lists(xs: &[Value], ys: &[Value], nest: usize, cmp: &Cmp) -> bool {
    xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| equal(x, y, nest + 1, cmp))
}

fn equal_multiset(xs: &[Value], ys: &[Value], nest: usize, cmp: &Cmp) -> bool {
    if cmp.directed {
        // math-verify compares SymPy sets: duplicates collapse
        let covers = |a: &[Value], b: &[Value]| {
            a.iter()
                .all(|x| b.iter().any(|y| equal(x, y, nest + 1, cmp)))
        };
        return !xs.is_empty()
            && covers(xs, ys)
            && ys
                .iter()
                .all(|y| xs.iter().any(|x| equal(x, y, nest + 1, cmp)));
    }
    if xs.len() != ys.len() {
        return false;
    }
    let mut used = vec![false; ys.len()];
    'outer: for x in xs {
        for (j, y) in ys.iter().enumerate() {
            if !used[j] && equal(x, y, nest + 1, cmp) {
                used[j] = true;
                continue 'outer;
            }
        }
        return false;
    }
    true
}

fn difference(l: &Value, r: &Value) -> Option<expr::Expr> {
    match (l, r) {
        (Value::Expr(a), Value::Expr(b)) => {
            Some(expr::Expr::Sum(vec![(false, a.clone()), (true, b.clone())]))
        }
        _ => None,
    }
}

/// A decimal literal (`0.333`, `-2.5`): math-verify rounds both sides when one is a Float.
fn is_float_atom(e: &expr::Expr) -> bool {
    match e {
        expr::Expr::Num(x) => x.fract() != 0.0,
        expr::Expr::Neg(a) => is_float_atom(a),
        _ => false,
    }
}

fn expr_equal(x: &expr::Expr, y: &expr::Expr, cmp: &Cmp) -> bool {
    if let Some(places) = cmp.rounding {
        if is_float_atom(x) || is_float_atom(y) {
            if let Some(eq) = expr::rounded_equal(x, y, places) {
                return eq;
            }
        }
    }
    if expr::equivalent(x, y) {
        return true;
    }
    !cmp.strict && expr::equivalent_renamed(x, y)
}

/// Two single relations `l1 op1 r1`, `l2 op2 r2`: the same operator and `l1 − r1 = l2 − r2`,
/// or swapped operators and `l1 − r1 = r2 − l2` (math-verify `sympy_compare_relational`).
fn relation_equal(a: (&Value, RelOp, &Value), b: (&Value, RelOp, &Value), cmp: &Cmp) -> bool {
    let (Some(d1), Some(d2), Some(d2r)) = (
        difference(a.0, a.2),
        difference(b.0, b.2),
        difference(b.2, b.0),
    ) else {
        return false;
    };
    (a.1 == b.1 && expr_equal(&d1, &d2, cmp))
        || (a.1.flipped() == b.1 && expr_equal(&d1, &d2r, cmp))
}

fn infinity(negative: bool) -> Value {
    let inf = expr::Expr::Const(expr::C::real(f64::INFINITY));
    Value::Expr(if negative {
        expr::Expr::Neg(Box::new(inf))
    } else {
        inf
    })
}

fn interval(lo: Value, lo_closed: bool, hi: Value, hi_closed: bool) -> Value {
    Value::Tuple(
        if lo_closed { '[' } else { '(' },
        if hi_closed { ']' } else { ')' },
        vec![lo, hi],
    )
}

/// A relation in one variable as the set it describes (`x > 2` → `(2, ∞)`, `a ≤ x < b` →
/// `[a, b)`, `x ≠ 3` → `(−∞, 3) ∪ (3, ∞)`); math-verify's `as_set()`.
fn relation_as_set(sides: &[Value], ops: &[RelOp], symbols: &[bool]) -> Option<Value> {
    match (sides, ops) {
        ([l, r], [op]) => {
            let (bound, op) = if symbols[0] && !symbols[1] {
                (r, *op)
            } else if symbols[1] && !symbols[0] {
                (l, op.flipped())
            } else {
                return None;
            };
            let b = bound.clone();
            Some(match op {
                RelOp::Lt => interval(infinity(true), false, b, false),
                RelOp::Le => interval(infinity(true), false, b, true),
                RelOp::Gt => interval(b, false, infinity(false), false),
                RelOp::Ge => interval(b, true, infinity(false), false),
                RelOp::Ne => Value::Union(vec![
                    interval(infinity(true), false, b.clone(), false),
                    interval(b, false, infinity(false), false),
                ]),
            })
        }
        ([a, _, c], [o1, o2]) if symbols[1] && !symbols[0] && !symbols[2] => {
            let lower = |o: RelOp| matches!(o, RelOp::Lt | RelOp::Le);
            let upper = |o: RelOp| matches!(o, RelOp::Gt | RelOp::Ge);
            if lower(*o1) && lower(*o2) {
                Some(interval(
                    a.clone(),
                    *o1 == RelOp::Le,
                    c.clone(),
                    *o2 == RelOp::Le,
                ))
            } else if upper(*o1) && upper(*o2) {
                Some(interval(
                    c.clone(),
                    *o2 == RelOp::Ge,
                    a.clone(),
                    *o1 == RelOp::Ge,
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn is_set_like(v: &Value) -> bool {
    matches!(v, Value::Tuple(..) | Value::Set(..) | Value::Union(_))
}

fn equal(a: &Value, b: &Value, nest: usize, cmp: &Cmp) -> bool {
    if nest > MAX_NEST * 2 {
        return false;
    }
    use Value::*;
    // relations: against each other, or read as sets
    match (a, b) {
        (Rel(s1, o1, _), Rel(s2, o2, _)) => {
            return o1.len() == o2.len()
                && (0..o1.len()).all(|i| {
                    relation_equal(
                        (&s1[i], o1[i], &s1[i + 1]),
                        (&s2[i], o2[i], &s2[i + 1]),
                        cmp,
                    )
                });
        }
        (Rel(s, o, sym), other) if is_set_like(other) => {
            return relation_as_set(s, o, sym).is_some_and(|set| equal(&set, other, nest + 1, cmp));
        }
        (other, Rel(s, o, sym)) if is_set_like(other) && (cmp.set_rel || !cmp.directed) => {
            return relation_as_set(s, o, sym).is_some_and(|set| equal(other, &set, nest + 1, cmp));
        }
        (Rel(..), _) | (_, Rel(..)) => return false,
        _ => {}
    }
    // equations, gold (`a`) vs prediction (`b`) as math-verify does
    if cmp.directed {
        match (a, b) {
            (Eq(..), Eq(..)) => {}
            // a predicted equation counts by its right-hand side
            (_, Eq(_, r, _, _)) => return equal(a, r, nest + 1, cmp),
            // a gold assignment `k = 1` counts by its value
            (Eq(_, r, ls, _), _) => return *ls && equal(r, b, nest + 1, cmp),
            _ => {}
        }
    }
    match (a, b) {
        (Expr(x), Expr(y)) => expr_equal(x, y, cmp),
        (Text(x), Text(y)) => text_key(x) == text_key(y),
        (Text(x), Expr(_)) | (Expr(_), Text(x)) => {
            // a single-letter choice written as text vs as a variable
            let k = text_key(x);
            k.chars().count() == 1 && {
                let other = if matches!(a, Text(_)) { b } else { a };
                matches!(other, Expr(expr::Expr::Var(v)) if v.to_lowercase() == k)
            }
        }
        (Tuple(o1, c1, xs), Tuple(o2, c2, ys)) => {
            o1 == o2 && c1 == c2 && equal_lists(xs, ys, nest, cmp)
        }
        (Set(xs, _), Set(ys, _)) => equal_multiset(xs, ys, nest, cmp),
        (Union(xs), Union(ys)) => equal_multiset(xs, ys, nest, cmp),
        (Matrix(xs), Matrix(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .zip(ys)
                    .all(|(r1, r2)| equal_lists(r1, r2, nest, cmp))
        }
        (Eq(l1, r1, _, _), Eq(l2, r2, _, _)) => {
            (equal(l1, l2, nest + 1, cmp) && equal(r1, r2, nest + 1, cmp))
                || (equal(l1, r2, nest + 1, cmp) && equal(r1, l2, nest + 1, cmp))
                || match (difference(l1, r1), difference(l2, r2)) {
                    (Some(d1), Some(d2)) => expr::proportional(&d1, &d2),
                    _ => false,
                }
        }
        (Eq(l, r, ls, rs), other) | (other, Eq(l, r, ls, rs)) => {
            (*ls && equal(r, other, nest + 1, cmp)) || (*rs && equal(l, other, nest + 1, cmp))
        }
        // a column vector written as a tuple
        (Matrix(rows), Tuple('(', ')', items)) | (Tuple('(', ')', items), Matrix(rows)) => {
            rows.len() == items.len()
                && rows
                    .iter()
                    .zip(items)
                    .all(|(r, x)| r.len() == 1 && equal(&r[0], x, nest + 1, cmp))
        }
        // a bare list in the order of a tuple (math-verify: any set, in its written order)
        (Set(xs, braced), Tuple('(', ')', ys)) | (Tuple('(', ')', ys), Set(xs, braced))
            if !*braced || cmp.directed =>
        {
            equal_lists(xs, ys, nest, cmp)
        }
        (Set(xs, _), other) | (other, Set(xs, _)) if xs.len() == 1 => {
            equal(&xs[0], other, nest + 1, cmp)
        }
        (Union(xs), other) | (other, Union(xs)) if xs.len() == 1 => {
            equal(&xs[0], other, nest + 1, cmp)
        }
        _ => false,
    }
}

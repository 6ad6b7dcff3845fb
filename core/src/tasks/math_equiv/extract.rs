//! Free-text answer extraction in math-verify's order (the extraction half of `verify`).
//!
//! Reference: huggingface/Math-Verify `src/math_verify/parser.py` (`lazy_latex_regex`,
//! `make_latex_env_pattern`, `lazy_expr_regex`, `extract_target_from_pred`) and
//! latex2sympy2_extended `math_normalization.py::extract_boxed_content`. math-verify runs
//! regexes grouped by priority (lower first); inside a group every match is tried from the one
//! that ends last (ties: the one that starts first) until one parses. The patterns, by priority:
//!
//! | priority | LaTeX target (`$…$`, `$$…$$`, `\[…\]`, `\(…\)`, ` […] `, `\frac{n}{m}`) | plain-number target |
//! |---|---|---|
//! | 0   | `final answer is` ENV `I hope`; `\boxed{}` (the harness' `boxed_match_priority=0`) | `final answer is` NUM `I hope` |
//! | 50  | `final answer … is` ENV                                                  | same with NUM |
//! | 100 | `answer:` ≤50 chars ENV                                                  | `answer:` (… `=`) NUM |
//! | 200 | `answer` ≤50 chars ENV                                                   | `answer` (… `=`) NUM |
//! | 300 | any ENV                                                                   | any NUM / `1+2`-like expression |
//!
//! ENV may be followed by a percent word (`%`, `percent`, `pct`) and chained to up to five more
//! with `,` / `and` / `or` (a set of all). Here the regexes are hand-written scanners: each
//! costs linear time per start position and is bounded by [`MAX_SCAN`], so hostile input stays
//! cheap. Differences from the reference are listed in docs/tasks.md ("math-verify parity").

/// Only this many bytes at the end of a response are scanned (answers sit at the end; a 1 MB
/// response is cut to its tail).
pub const MAX_SCAN: usize = 32 * 1024;
/// Longest environment content considered (longer `$…$` spans are not answers); bounds the
/// scan from each start position.
const MAX_ENV: usize = 2048;
/// Longest plain expression (`1 + 2 / 3 …`) considered.
const MAX_EXPR: usize = 256;
/// Only the last this many anchor words (`answer`, `final answer`) are tried.
const MAX_ANCHORS: usize = 32;
/// Chained environments after the first (`$1$, $2$ and $3$`), as in math-verify.
const MAX_CHAIN: usize = 5;

/// Which targets to extract (math-verify's `LatexExtractionConfig` / `ExprExtractionConfig`).
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    /// LaTeX environments and `\boxed{}`.
    pub latex: bool,
    /// Plain numbers and `1/2`-like expressions.
    pub expr: bool,
    /// Priority of `\boxed{}` matches (math-verify: 50 by default, 0 in its test harness).
    pub boxed_priority: u32,
}

/// One extraction candidate: where it was found and the answer text it yields.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The match's priority group (lower is tried first).
    pub priority: u32,
    /// Byte range of the match in the scanned text.
    pub start: usize,
    /// End of the match (exclusive).
    pub end: usize,
    /// The answer text: environment contents (boxed contents extracted), joined with `,` for
    /// a chain, with `\%` appended where a percent word followed.
    pub answer: String,
}

/// Where `pat` first occurs in `s[from..]` within [`MAX_ENV`] bytes (from rounded up to a char
/// boundary).
fn find_near(s: &str, mut from: usize, pat: &str) -> Option<usize> {
    while from < s.len() && !s.is_char_boundary(from) {
        from += 1;
    }
    let rest = s.get(from..)?;
    let mut end = rest.len().min(MAX_ENV + pat.len());
    while !rest.is_char_boundary(end) {
        end -= 1;
    }
    rest[..end].find(pat).map(|r| from + r)
}

fn at(s: &str, i: usize, pat: &str) -> bool {
    s.as_bytes().get(i..i + pat.len()) == Some(pat.as_bytes())
}

fn byte(s: &str, i: usize) -> Option<u8> {
    s.as_bytes().get(i).copied()
}

fn prev(s: &str, i: usize) -> Option<u8> {
    i.checked_sub(1).and_then(|j| byte(s, j))
}

fn is_space(b: u8) -> bool {
    b.is_ascii_whitespace()
}

fn skip_spaces(s: &str, mut i: usize) -> usize {
    while byte(s, i).is_some_and(is_space) {
        i += 1;
    }
    i
}

/// One environment starting at `i`: (content range, end). `boxed` restricts to contents with a
/// `\boxed{…}` (math-verify's "boxed" context, which also has no `\frac` alternative).
fn env_at(s: &str, i: usize, boxed: bool) -> Option<(usize, usize, usize)> {
    let found = display_dollar(s, i)
        .or_else(|| display_bracket(s, i))
        .or_else(|| inline_dollar(s, i))
        .or_else(|| inline_paren(s, i))
        .or_else(|| inline_bracket(s, i))
        .or_else(|| if boxed { None } else { plain_frac(s, i) })?;
    if boxed {
        let content = &s[found.0..found.1];
        let b = content.find("\\boxed{")?;
        content[b + 7..].find('}')?;
    }
    Some(found)
}

/// `$$…$$` (may span lines; neither dollar pair escaped).
fn display_dollar(s: &str, i: usize) -> Option<(usize, usize, usize)> {
    if !at(s, i, "$$") || prev(s, i) == Some(b'\\') {
        return None;
    }
    let c = i + 2;
    let close = find_near(s, c + 1, "$$")?;
    if prev(s, close) == Some(b'\\') {
        return None;
    }
    Some((c, close, close + 2))
}

/// `\[…\]`.
fn display_bracket(s: &str, i: usize) -> Option<(usize, usize, usize)> {
    if !at(s, i, "\\[") || prev(s, i) == Some(b'\\') {
        return None;
    }
    let c = i + 2;
    let close = find_near(s, c + 1, "\\]")?;
    Some((c, close, close + 2))
}

/// `$…$` on one line, the opening dollar not after `\` or a digit; `\$` inside is content.
fn inline_dollar(s: &str, i: usize) -> Option<(usize, usize, usize)> {
    if byte(s, i) != Some(b'$') || prev(s, i).is_some_and(|b| b == b'\\' || b.is_ascii_digit()) {
        return None;
    }
    let c = i + 1;
    let mut j = c;
    loop {
        if j - c > MAX_ENV {
            return None;
        }
        match byte(s, j)? {
            b'\\' if byte(s, j + 1) == Some(b'$') => j += 2,
            b'\n' => return None,
            b'$' => {
                return if j > c { Some((c, j, j + 1)) } else { None };
            }
            _ => j += 1,
        }
    }
}

/// `\(…\)` on one line.
fn inline_paren(s: &str, i: usize) -> Option<(usize, usize, usize)> {
    if !at(s, i, "\\(") || prev(s, i) == Some(b'\\') {
        return None;
    }
    let c = i + 2;
    let mut j = c;
    loop {
        if j - c > MAX_ENV {
            return None;
        }
        match byte(s, j)? {
            b'\n' => return None,
            b'\\' if byte(s, j + 1) == Some(b')') => {
                return if j > c { Some((c, j, j + 2)) } else { None };
            }
            _ => j += 1,
        }
    }
}

/// ` […] ` with whitespace on both sides, one line, no nested brackets.
fn inline_bracket(s: &str, i: usize) -> Option<(usize, usize, usize)> {
    if !byte(s, i).is_some_and(is_space) || byte(s, i + 1) != Some(b'[') {
        return None;
    }
    let c = i + 2;
    let mut j = c;
    loop {
        if j - c > MAX_ENV {
            return None;
        }
        match byte(s, j)? {
            b'\n' | b'[' => return None,
            b']' => {
                return if j > c && byte(s, j + 1).is_some_and(is_space) {
                    Some((c, j, j + 2))
                } else {
                    None
                };
            }
            _ => j += 1,
        }
    }
}

/// `-?\d+([.,]\d+)?` at `i`: its end.
fn simple_number(s: &str, i: usize) -> Option<usize> {
    let mut j = i;
    if byte(s, j) == Some(b'-') {
        j += 1;
    }
    let d = j;
    while byte(s, j).is_some_and(|b| b.is_ascii_digit()) {
        j += 1;
    }
    if j == d {
        return None;
    }
    if byte(s, j).is_some_and(|b| b == b'.' || b == b',')
        && byte(s, j + 1).is_some_and(|b| b.is_ascii_digit())
    {
        j += 1;
        while byte(s, j).is_some_and(|b| b.is_ascii_digit()) {
            j += 1;
        }
    }
    Some(j)
}

/// A bare `-?\frac{n}{m}` with plain numbers.
fn plain_frac(s: &str, i: usize) -> Option<(usize, usize, usize)> {
    let j = if byte(s, i) == Some(b'-') { i + 1 } else { i };
    if !at(s, j, "\\frac{") {
        return None;
    }
    let a = simple_number(s, j + 6)?;
    if !at(s, a, "}{") {
        return None;
    }
    let b = simple_number(s, a + 2)?;
    if byte(s, b) != Some(b'}') {
        return None;
    }
    Some((i, b + 1, b + 1))
}

/// A percent word right after an environment (`\s*(\\?%|[Pp]ercent|[Pp]ercentage|[Pp]ct)`):
/// its end.
fn percent_after(s: &str, i: usize) -> Option<usize> {
    let j = skip_spaces(s, i);
    if at(s, j, "\\%") {
        return Some(j + 2);
    }
    if at(s, j, "%") {
        return Some(j + 1);
    }
    for w in ["ercent", "ct"] {
        if byte(s, j).is_some_and(|b| b == b'p' || b == b'P') && at(s, j + 1, w) {
            return Some(j + 1 + w.len());
        }
    }
    None
}

/// `\s*(,?and|,?or|,)\s*` at `i`: its end.
fn chain_separator(s: &str, i: usize) -> Option<usize> {
    let mut j = skip_spaces(s, i);
    let comma = byte(s, j) == Some(b',');
    if comma {
        j += 1;
    }
    if at(s, j, "and") {
        j += 3;
    } else if at(s, j, "or") {
        j += 2;
    } else if !comma {
        return None;
    }
    Some(skip_spaces(s, j))
}

/// An environment and its chain at `i`: (answer, end).
fn env_chain_at(s: &str, i: usize, boxed: bool) -> Option<(String, usize)> {
    let (c0, c1, mut end) = env_at(s, i, boxed)?;
    let mut parts = vec![env_answer(s, c0, c1, &mut end)];
    for _ in 0..MAX_CHAIN {
        let Some(j) = chain_separator(s, end) else {
            break;
        };
        let Some((d0, d1, mut e)) = env_at(s, j, boxed) else {
            break;
        };
        parts.push(env_answer(s, d0, d1, &mut e));
        end = e;
    }
    Some((parts.join(","), end))
}

fn env_answer(s: &str, c0: usize, c1: usize, end: &mut usize) -> String {
    let mut a = extract_boxed_content(&s[c0..c1], BoxedMode::All);
    if let Some(p) = percent_after(s, *end) {
        a.push_str("\\%");
        *end = p;
    }
    a
}

/// How [`extract_boxed_content`] treats several `\boxed{}`.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum BoxedMode {
    /// All of them, joined by `,`.
    All,
    /// The last one, and those before it that are close (< 10 chars apart) or separated by
    /// `and` / `or` / `,` / `;` within 70 chars with different contents.
    Last,
}

/// latex2sympy2_extended `extract_boxed_content`: the contents of `\boxed{}` / `\fbox{}` read
/// from the right, joined by `,` (see [`BoxedMode`]); an unclosed last box runs to the end; the
/// text itself when there is none.
pub(crate) fn extract_boxed_content(text: &str, mode: BoxedMode) -> String {
    let mut results: Vec<&str> = Vec::new();
    let mut current = text.len();
    let mut max_pos = text.len();
    let mut last_start: Option<usize> = None;
    loop {
        let b = text[..current].rfind("\\boxed");
        let f = text[..current].rfind("\\fbox");
        let (start, cmd_len) = match (b, f) {
            (None, None) => break,
            (Some(b), Some(f)) if f > b => (f, 5),
            (Some(b), _) => (b, 6),
            (None, Some(f)) => (f, 5),
        };
        let mut open = start + cmd_len;
        while open < max_pos && byte(text, open).is_some_and(is_space) {
            open += 1;
        }
        if open >= max_pos {
            break;
        }
        if byte(text, open) != Some(b'{') {
            if results.is_empty() {
                results.push(&text[open..]);
            }
            break;
        }
        let mut depth = 1usize;
        let mut close = None;
        let bytes = text.as_bytes();
        let mut k = open + 1;
        while k < max_pos {
            match bytes[k] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(k);
                        break;
                    }
                }
                _ => {}
            }
            k += 1;
        }
        let Some(close) = close else {
            if results.is_empty() {
                results.push(&text[open..]);
            }
            break;
        };
        let content = text[open + 1..close].trim();
        if mode == BoxedMode::Last {
            if let Some(ls) = last_start {
                let between = &text[(close + 1).min(ls)..ls];
                let previous = results.last().copied().unwrap_or("");
                let near = between.len() < 10;
                let separated = content != previous && between.len() < 70 && has_separator(between);
                if !(near || separated) {
                    break;
                }
            }
        }
        if results.last() != Some(&content) {
            results.push(content);
        }
        last_start = Some(start);
        max_pos = start;
        current = start;
    }
    if results.is_empty() {
        return text.to_string();
    }
    results.reverse();
    results.join(",")
}

/// `\b(and|or)\b|,|;`
fn has_separator(s: &str) -> bool {
    if s.contains([',', ';']) {
        return true;
    }
    let b = s.as_bytes();
    let word = |i: usize| {
        b.get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    };
    for w in ["and", "or"] {
        let mut from = 0;
        while let Some(rel) = s[from..].find(w) {
            let i = from + rel;
            if !(word(i + w.len()) || i > 0 && word(i - 1)) {
                return true;
            }
            from = i + 1;
        }
    }
    false
}

/// Every environment chain in `s` scanned left to right without overlaps (`re.finditer`).
fn all_env_chains(s: &str, boxed: bool) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if let Some((a, end)) = env_chain_at(s, i, boxed) {
            out.push((i, end, a));
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Start offsets of `word` (ASCII case-insensitive) in `s`.
fn find_all_ci(s: &str, word: &str) -> Vec<usize> {
    let lower = s.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = lower[from..].find(word) {
        out.push(from + rel);
        from += rel + word.len();
    }
    let skip = out.len().saturating_sub(MAX_ANCHORS);
    out.split_off(skip)
}

/// The first match of `item` starting within `window` bytes after `from` (a lazy `.{0,n}?`);
/// `same_line` forbids crossing a newline (no DOTALL).
fn lazy_window<T>(
    s: &str,
    from: usize,
    window: usize,
    same_line: bool,
    item: impl Fn(usize) -> Option<T>,
) -> Option<(usize, T)> {
    let mut j = from;
    for _ in 0..=window {
        if j > s.len() {
            break;
        }
        if let Some(t) = item(j) {
            return Some((j, t));
        }
        match byte(s, j) {
            None => break,
            Some(b'\n') if same_line => break,
            _ => {}
        }
        j += 1;
        while j < s.len() && !s.is_char_boundary(j) {
            j += 1;
        }
    }
    None
}

/// `final answer is:?\s*` at `i` (already matched case-insensitively): the position after.
fn final_answer_is(s: &str, i: usize) -> usize {
    let mut j = i + "final answer is".len();
    if byte(s, j) == Some(b':') {
        j += 1;
    }
    skip_spaces(s, j)
}

/// `final answer.{0,100}?\s+is:?\s*` at `i`: the position after, if there is such an `is`.
fn final_answer_then_is(s: &str, i: usize, dotall: bool) -> Option<usize> {
    let from = i + "final answer".len();
    let (p, _) = lazy_window(s, from, 100, !dotall, |j| {
        let k = skip_spaces(s, j);
        (k > j && at(s, k, "is")).then_some(k)
    })?;
    let mut j = skip_spaces(s, p) + 2;
    if byte(s, j) == Some(b':') {
        j += 1;
    }
    Some(j)
}

/// `\.?\s?I hope` at `i`.
fn i_hope(s: &str, i: usize) -> Option<usize> {
    let mut j = i;
    if byte(s, j) == Some(b'.') {
        j += 1;
    }
    if byte(s, j).is_some_and(is_space) && !at(s, j, "I hope") {
        j += 1;
    }
    at(s, j, "I hope").then_some(j + 6)
}

fn latex_candidates(s: &str, boxed_priority: u32, out: &mut Vec<Candidate>) {
    let push = |out: &mut Vec<Candidate>, priority, start, end, answer: String| {
        out.push(Candidate {
            priority,
            start,
            end,
            answer,
        })
    };
    // anchored forms
    for i in find_all_ci(s, "final answer is") {
        let j = final_answer_is(s, i);
        if let Some((a, e)) = env_chain_at(s, j, false) {
            if let Some(end) = i_hope(s, e) {
                push(out, 0, i, end, a);
            }
        }
    }
    for i in find_all_ci(s, "final answer") {
        if let Some(j) = final_answer_then_is(s, i, true) {
            let j = skip_spaces(s, j);
            if let Some((a, e)) = env_chain_at(s, j, false) {
                push(out, 50, i, e, a);
            }
        }
    }
    for i in find_all_ci(s, "answer") {
        let from = i + 6;
        if byte(s, from) == Some(b':') {
            if let Some((_, (a, e))) =
                lazy_window(s, from + 1, 50, false, |j| env_chain_at(s, j, false))
            {
                push(out, 100, i, e, a);
            }
        }
        if let Some((_, (a, e))) = lazy_window(s, from, 50, false, |j| env_chain_at(s, j, false)) {
            push(out, 200, i, e, a);
        }
    }
    for (start, end, a) in all_env_chains(s, false) {
        push(out, 300, start, end, a);
    }
    // boxed: an environment holding a \boxed{…}, or a bare \boxed{ … last }
    for (start, end, a) in all_env_chains(s, true) {
        push(out, boxed_priority, start, end, a);
    }
    if let Some(b) = s.find("\\boxed{") {
        if let Some(close) = s.rfind('}') {
            if close > b + 7 {
                let inner = &s[b..=close];
                push(
                    out,
                    boxed_priority,
                    b,
                    close + 1,
                    extract_boxed_content(inner, BoxedMode::Last),
                );
            }
        }
    }
}

const CURRENCY: &str = "$€£¥₹₽₪₩₫฿₡₢₣₤₥₦₧₨₭₮₯₰₱₲₳₴₵₶₷₸₺₻₼₾₿";

/// math-verify's plain number at `i` (after its prefix): (normalised text, end).
fn number_at(s: &str, i: usize) -> Option<(String, usize)> {
    if prev(s, i).is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = |mut j: usize| {
        let d = j;
        while byte(s, j).is_some_and(|b| b.is_ascii_digit()) {
            j += 1;
        }
        (j > d).then_some(j)
    };
    let neg = byte(s, i) == Some(b'-');
    let d0 = if neg { i + 1 } else { i };
    let mut integer = String::new();
    let mut decimal = String::new();
    let mut end = None;
    // 1: thousands groups `[1-9]\d{0,2}([ ,]\d{3})+(\.\d+)?`
    if byte(s, d0).is_some_and(|b| (b'1'..=b'9').contains(&b)) {
        'lead: for lead in (1..=3).rev() {
            let lead_end = d0 + lead;
            if !s
                .as_bytes()
                .get(d0..lead_end)
                .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
            {
                continue;
            }
            let mut j = lead_end;
            let mut groups = 0;
            while byte(s, j).is_some_and(|b| b == b' ' || b == b',')
                && s.as_bytes()
                    .get(j + 1..j + 4)
                    .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
            {
                j += 4;
                groups += 1;
            }
            if groups > 0 {
                // commas stay (the normaliser reads `1,234` as thousands), spaces go
                integer = s[d0..j].replace(' ', "");
                if byte(s, j) == Some(b'.') {
                    if let Some(e) = digits(j + 1) {
                        decimal = s[j..e].to_string();
                        j = e;
                    }
                }
                end = Some(j);
                break 'lead;
            }
        }
    }
    // 2: `\d+[.,]\d+`; 3: `\.\d+`; 4: `\d+`
    if end.is_none() {
        if let Some(e) = digits(d0) {
            if byte(s, e).is_some_and(|b| b == b'.' || b == b',') {
                if let Some(e2) = digits(e + 1) {
                    integer = s[d0..e].to_string();
                    decimal = format!(".{}", &s[e + 1..e2]);
                    end = Some(e2);
                }
            }
            if end.is_none() {
                integer = s[d0..e].to_string();
                end = Some(e);
            }
        } else if !neg && byte(s, i) == Some(b'.') {
            let e = digits(i + 1)?;
            decimal = s[i..e].to_string();
            end = Some(e);
        }
    }
    let mut end = end?;
    let trimmed = integer.trim_start_matches('0');
    let mut text = String::new();
    if neg && !integer.is_empty() {
        text.push('-');
    }
    text.push_str(if trimmed.is_empty() { "0" } else { trimmed });
    text.push_str(&decimal);
    // percent suffix
    let j = skip_spaces(s, end);
    if at(s, j, "%") {
        text.push_str("\\%");
        end = j + 1;
    } else {
        for w in ["ercentage", "ercent", "ct"] {
            if byte(s, j).is_some_and(|b| b == b'p' || b == b'P') && at(s, j + 1, w) {
                text.push_str("\\%");
                end = j + 1 + w.len();
                break;
            }
        }
    }
    Some((text, end))
}

fn is_expr_op(c: char) -> bool {
    matches!(c, '+' | '-' | '*' | '×' | '/' | '^' | '(' | ')' | '÷')
}

fn is_expr_char(c: char) -> bool {
    c.is_ascii_digit() || c == '.' || c.is_whitespace() || is_expr_op(c)
}

/// `(?:\*\*)?(?:\.|,|:|\s|\)|\$|$)` at `i`.
fn expr_suffix(s: &str, i: usize) -> bool {
    let j = if at(s, i, "**") { i + 2 } else { i };
    match byte(s, j) {
        None => true,
        Some(b) => matches!(b, b'.' | b',' | b':' | b')' | b'$') || is_space(b),
    }
}

/// math-verify's operator expression (`-?\(?-?\d[…]*[ops][…]+\)?` + suffix) at `i`.
fn expr_at(s: &str, i: usize) -> Option<(String, usize)> {
    let mut j = i;
    for c in ['-', '(', '-'] {
        if s[j..].starts_with(c) {
            j += 1;
        }
    }
    if !byte(s, j).is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    let digit = j;
    // the maximal run of expression characters after the first digit
    let mut ends = vec![];
    let mut k = digit + 1;
    for c in s[digit + 1..].chars().take(MAX_EXPR) {
        if !is_expr_char(c) {
            break;
        }
        k += c.len_utf8();
        ends.push((k, c));
    }
    // the longest prefix with an operator followed by at least one more character, and a
    // valid suffix after it
    let first_op = ends.iter().position(|&(_, c)| is_expr_op(c))?;
    for idx in (first_op + 1..ends.len()).rev() {
        let e = ends[idx].0;
        if expr_suffix(s, e) {
            let text = s[i..e].trim().replace('×', "*").replace('÷', "/");
            return Some((text, e));
        }
    }
    None
}

/// A plain number or expression matched at `p` with its prefix (`(?:^|\s|=)(?:\*\*)?`): the
/// prefix is the start of the text, or the whitespace / `=` at `p`.
fn expr_or_number_at(s: &str, p: usize) -> Option<(String, usize)> {
    let starts_at = |j: usize| -> Option<(String, usize)> {
        let j = if at(s, j, "**") { j + 2 } else { j };
        if let Some(e) = expr_at(s, j) {
            return Some(e);
        }
        let mut k = j;
        if let Some(c) = s.get(j..).and_then(|r| r.chars().next()) {
            if CURRENCY.contains(c) {
                k += c.len_utf8();
            }
        }
        number_at(s, k)
    };
    if p == 0 {
        if let Some(found) = starts_at(0) {
            return Some(found);
        }
    }
    match byte(s, p)? {
        b'=' => starts_at(p + 1),
        b if is_space(b) => starts_at(p + 1),
        _ => None,
    }
}

/// Every plain number / expression in `s`, non-overlapping, left to right.
fn all_exprs(s: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < s.len() {
        if s.is_char_boundary(p) {
            if let Some((t, e)) = expr_or_number_at(s, p) {
                out.push((p, e, t));
                p = e.max(p + 1);
                continue;
            }
        }
        p += 1;
    }
    out
}

/// Not followed by `\s*=`.
fn not_before_equals(s: &str, e: usize) -> bool {
    byte(s, skip_spaces(s, e)) != Some(b'=')
}

fn expr_candidates(s: &str, out: &mut Vec<Candidate>) {
    let mut push = |priority, start, end, answer: String| {
        out.push(Candidate {
            priority,
            start,
            end,
            answer,
        })
    };
    for i in find_all_ci(s, "final answer is") {
        let j = final_answer_is(s, i);
        // the prefix of the number is the whitespace before it
        let p = if j > 0 && prev(s, j).is_some_and(is_space) {
            j - 1
        } else {
            j
        };
        if let Some((a, e)) = expr_or_number_at(s, p) {
            if let Some(end) = i_hope(s, e) {
                push(0, i, end, a);
            }
        }
    }
    for i in find_all_ci(s, "final answer") {
        if let Some(j) = final_answer_then_is(s, i, false) {
            if let Some((a, e)) = expr_or_number_at(s, j) {
                push(50, i, e, a);
            }
        }
    }
    for i in find_all_ci(s, "answer") {
        let from = i + 6;
        let line_end = s[from..].find('\n').map_or(s.len(), |r| from + r);
        for (colon, priority) in [(true, 100), (false, 200)] {
            let from = if colon {
                if byte(s, from) != Some(b':') {
                    continue;
                }
                from + 1
            } else {
                from
            };
            // `.{0,100}=\s*` (greedy: the last `=` within reach first), else `.{0,50}?`
            let reach = (from + 100 + 1).min(line_end);
            let mut found = None;
            let mut q = reach;
            while q > from {
                q -= 1;
                if byte(s, q) == Some(b'=') {
                    let k = skip_spaces(s, q + 1);
                    if k > q + 1 {
                        if let Some((a, e)) = expr_or_number_at(s, k - 1) {
                            if not_before_equals(s, e) {
                                found = Some((a, e));
                                break;
                            }
                        }
                    }
                }
            }
            if found.is_none() {
                found = lazy_window(s, from, 50, true, |j| {
                    expr_or_number_at(s, j).filter(|(_, e)| not_before_equals(s, *e))
                })
                .map(|(_, t)| t);
            }
            if let Some((a, e)) = found {
                push(priority, i, e, a);
            }
        }
    }
    for (start, end, a) in all_exprs(s) {
        push(300, start, end, a);
    }
}

/// Every answer candidate of `text` for `targets`, in the order math-verify tries them:
/// by priority, then the match ending last first, then the one starting first. Only the last
/// [`MAX_SCAN`] bytes are scanned.
pub fn candidates(text: &str, targets: Targets) -> Vec<Candidate> {
    let mut cut = text.len().saturating_sub(MAX_SCAN);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    let s = &text[cut..];
    let mut out = Vec::new();
    if targets.latex {
        latex_candidates(s, targets.boxed_priority, &mut out);
    }
    if targets.expr {
        expr_candidates(s, &mut out);
    }
    out.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.end.cmp(&a.end))
            .then(a.start.cmp(&b.start))
    });
    out
}

/// The textual part of latex2sympy2_extended's `normalize_latex` that our token normaliser
/// does not do, applied to every extracted answer: `\\cmd` → `\cmd` (unless a matrix), `{,}`
/// and the words `and` / `or` (also in `\text{}`) → `,`, `\ ` → space, percent words → `\%`,
/// `infinity` → `\infty`, `~=` → `\approx`, and `\quadx` → `\quad x`. Linear time.
pub(crate) fn normalize_text(s: &str) -> String {
    let matrix = s.contains("matrix") || s.contains("array");
    let b = s.as_bytes();
    let letter = |i: usize| b.get(i).is_some_and(|c| c.is_ascii_alphabetic());
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if !s.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &s[i..];
        // `\\left` → `\left`
        if !matrix && rest.starts_with("\\\\") && letter(i + 2) {
            out.push('\\');
            i += 2;
            continue;
        }
        if rest.starts_with("\\\\") {
            out.push_str("\\\\");
            i += 2;
            continue;
        }
        if rest.starts_with("\\ ") {
            out.push(' ');
            i += 2;
            continue;
        }
        if rest.starts_with("~=") {
            out.push_str("\\approx");
            i += 2;
            continue;
        }
        // `\quadx` (no space) → `\quad x`
        if rest.starts_with("\\quad") && !rest.starts_with("\\quad ") {
            let n = if rest.starts_with("\\qquad") { 6 } else { 5 };
            out.push_str(&rest[..n]);
            out.push(' ');
            i += n;
            continue;
        }
        if rest.starts_with("\\qquad") {
            out.push_str("\\qquad");
            i += 6;
            continue;
        }
        // `{ , }` → `,`
        if rest.starts_with('{') {
            let j = skip_spaces(s, i + 1);
            if byte(s, j) == Some(b',') {
                let k = skip_spaces(s, j + 1);
                if byte(s, k) == Some(b'}') {
                    out.push(',');
                    i = k + 1;
                    continue;
                }
            }
        }
        // `\text{ and }` / `\text{or}` (optionally after a comma) → `,`
        if rest.starts_with("\\text{") {
            let inner = skip_spaces(s, i + 6);
            let mut next = None;
            for w in ["and", "or"] {
                if at(s, inner, w) {
                    let k = skip_spaces(s, inner + w.len());
                    if byte(s, k) == Some(b'}') {
                        next = Some(k + 1);
                        break;
                    }
                }
            }
            if let Some(next) = next {
                trim_comma(&mut out);
                out.push(',');
                i = next;
                continue;
            }
        }
        // the words `and` / `or` → `,`; percent words → `\%`
        if letter(i) && !(i > 0 && letter(i - 1)) {
            let mut end = i;
            while letter(end) {
                end += 1;
            }
            let word = &s[i..end];
            match word {
                "and" | "or" => {
                    trim_comma(&mut out);
                    out.push(',');
                    i = end;
                    continue;
                }
                "percentage" | "percent" | "pct" if !(i > 0 && byte(s, i - 1) == Some(b'\\')) => {
                    while out.ends_with(char::is_whitespace) {
                        out.pop();
                    }
                    out.push_str("\\%");
                    i = end;
                    continue;
                }
                "infinity" => {
                    out.push_str("\\infty");
                    i = end;
                    continue;
                }
                _ => {
                    // copy a command name whole so `\cdot` never loses a word
                    out.push_str(word);
                    i = end;
                    continue;
                }
            }
        }
        if rest.starts_with('\\') && letter(i + 1) {
            let mut end = i + 1;
            while letter(end) {
                end += 1;
            }
            out.push_str(&s[i..end]);
            i = end;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Drops a trailing `,` and spaces (`a, and b` → `a, b`).
fn trim_comma(out: &mut String) {
    while out.ends_with(char::is_whitespace) {
        out.pop();
    }
    if out.ends_with(',') {
        out.pop();
    }
}

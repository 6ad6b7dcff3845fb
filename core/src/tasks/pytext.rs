//! Python string semantics that the d1 reference code relies on, re-implemented exactly enough
//! for its reward and parsing functions: `str.strip()`, `str.isspace()`, `str.isdigit()`,
//! `str.count()`, `str.split(sep)[-1]`, `re`'s `\s` / `\d` / `\w`, `float(str)` and `int(str)`.
//!
//! Reference: CPython 3 semantics. Known approximations (documented, never panicking):
//! Unicode decimal digits (`\d`, `int()`) are recognised from a table of the Unicode `Nd`
//! blocks below U+20000; `isdigit()` additionally knows the common superscript, subscript and
//! circled digits; `\w` uses Rust's `char::is_alphanumeric`. Lengths are counted in `char`s, like
//! Python's `len()` on `str`.

/// Python's `str.isspace()` for one character (also what `re`'s `\s` matches): Rust's
/// `White_Space` set plus the ASCII information separators U+001C..U+001F.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no argument.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Zero code points of the Unicode `Nd` (decimal digit) blocks, each followed by 9 more digits.
const ND_ZEROS: &[u32] = &[
    0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
    0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80,
    0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
    0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0,
    0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// The value of `c` if it is a Unicode decimal digit (Python `str.isdecimal()`, `re` `\d`).
pub fn decimal_value(c: char) -> Option<u32> {
    if c.is_ascii_digit() {
        return Some(c as u32 - '0' as u32);
    }
    if c.is_ascii() {
        return None;
    }
    let cp = c as u32;
    ND_ZEROS
        .iter()
        .find(|&&z| cp >= z && cp < z + 10)
        .map(|&z| cp - z)
}

/// Python `re`'s `\d` (Unicode decimal digit).
pub fn is_py_decimal(c: char) -> bool {
    decimal_value(c).is_some()
}

/// Python's `str.isdigit()` for one character: decimal digits plus the common
/// `Numeric_Type=Digit` characters (superscripts, subscripts, circled / parenthesised digits).
pub fn is_py_digit(c: char) -> bool {
    if is_py_decimal(c) {
        return true;
    }
    matches!(c as u32,
        0x00B2 | 0x00B3 | 0x00B9 | 0x2070 | 0x2074..=0x2079 | 0x2080..=0x2089
        | 0x2460..=0x2468 | 0x2474..=0x247C | 0x2488..=0x2490 | 0x24EA | 0x24F5..=0x24FD
        | 0x24FF | 0x2776..=0x277E | 0x2780..=0x2788 | 0x278A..=0x2792 | 0x1369..=0x1371
        | 0x19DA | 0x10A40..=0x10A43 | 0x1F100..=0x1F10A)
}

/// Python's `str.isdigit()`: non-empty and every character a digit.
pub fn py_isdigit(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_py_digit)
}

/// Python `re`'s `\w` (approximated by `char::is_alphanumeric` plus `_`).
pub fn is_py_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Python's `text.count(sub)` (non-overlapping, left to right; `sub` non-empty).
pub fn py_count(text: &str, sub: &str) -> usize {
    if sub.is_empty() {
        return text.chars().count() + 1;
    }
    text.matches(sub).count()
}

/// Python's `text.split(sep)[-1]` (left-to-right non-overlapping split; `sep` non-empty).
pub fn split_last<'a>(text: &'a str, sep: &str) -> &'a str {
    if sep.is_empty() {
        return text;
    }
    text.split(sep).last().unwrap_or(text)
}

/// Python's `len(s)` for a `str` (code points).
pub fn py_len(s: &str) -> usize {
    s.chars().count()
}

/// Replaces every Unicode decimal digit with its ASCII digit.
fn ascii_digits(s: &str) -> String {
    s.chars()
        .map(|c| match decimal_value(c) {
            Some(v) if !c.is_ascii_digit() => char::from_digit(v, 10).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Checks Python's digit-group syntax `d+(_d+)*` (Unicode decimal digits allowed).
fn digit_groups(s: &str) -> bool {
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return false;
    }
    s.chars().all(|c| c == '_' || is_py_decimal(c))
}

/// Python's `float(s)` for a `str`: surrounding whitespace, a sign, `_` between digits,
/// `inf` / `infinity` / `nan` in any case, exponents; `None` where Python raises `ValueError`.
pub fn py_float(s: &str) -> Option<f64> {
    let t = py_strip(s);
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = body.to_ascii_lowercase();
    let special = match lower.as_str() {
        "inf" | "infinity" => Some(f64::INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    };
    if let Some(v) = special {
        return Some(if neg { -v } else { v });
    }
    // mantissa [e exponent]
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = match mant.find('.') {
        Some(i) => (&mant[..i], Some(&mant[i + 1..])),
        None => (mant, None),
    };
    let int_ok = int_part.is_empty() || digit_groups(int_part);
    let frac_ok = match frac_part {
        None => true,
        Some(f) => f.is_empty() || digit_groups(f),
    };
    let has_digits = !int_part.is_empty() || frac_part.is_some_and(|f| !f.is_empty());
    if !(int_ok && frac_ok && has_digits) {
        return None;
    }
    if let Some(e) = exp {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if !digit_groups(e) {
            return None;
        }
    }
    let cleaned: String = ascii_digits(body).chars().filter(|&c| c != '_').collect();
    let v: f64 = cleaned.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Python's `int(s)` for a `str`, as the canonical decimal string of the value (`str(int(s))`),
/// or `None` where Python raises `ValueError`. Arbitrary length (no overflow).
pub fn py_int_canonical(s: &str) -> Option<String> {
    let t = py_strip(s);
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if !digit_groups(body) {
        return None;
    }
    let digits: String = ascii_digits(body).chars().filter(|&c| c != '_').collect();
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return Some("0".to_string());
    }
    Some(if neg {
        format!("-{trimmed}")
    } else {
        trimmed.to_string()
    })
}

/// Python `re.findall(r"\d+", s)` mapped through `int()`: the canonical decimal strings of the
/// maximal runs of decimal digits.
pub fn digit_runs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        if let Some(v) = decimal_value(c) {
            cur.push(char::from_digit(v, 10).unwrap_or('0'));
        } else if !cur.is_empty() {
            out.push(canonical_digits(&cur));
            cur.clear();
        }
    }
    if !cur.is_empty() {
        out.push(canonical_digits(&cur));
    }
    out
}

fn canonical_digits(d: &str) -> String {
    let t = d.trim_start_matches('0');
    if t.is_empty() {
        "0".to_string()
    } else {
        t.to_string()
    }
}

/// Python `re.findall(r"-?\d+\.?\d*", s)`: the number-looking substrings, in order.
pub fn find_numbers(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let n = chars.len();
    let mut i = 0;
    while i < n {
        let start = i;
        let mut j = i;
        if chars[j].1 == '-' {
            j += 1;
        }
        if j < n && is_py_decimal(chars[j].1) {
            while j < n && is_py_decimal(chars[j].1) {
                j += 1;
            }
            if j < n && chars[j].1 == '.' {
                j += 1;
                while j < n && is_py_decimal(chars[j].1) {
                    j += 1;
                }
            }
            let b0 = chars[start].0;
            let b1 = if j < n { chars[j].0 } else { s.len() };
            out.push(&s[b0..b1]);
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Python `re.findall(r"<open>(.*?)<close>", s, re.DOTALL)`: the non-overlapping lazy
/// matches, in order (e.g. every `<answer>…</answer>` block's inner text).
pub fn findall_between<'a>(s: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(rel) = s.get(pos..).and_then(|t| t.find(open)) {
        let inner_start = pos + rel + open.len();
        match s.get(inner_start..).and_then(|t| t.find(close)) {
            Some(rel_end) => {
                out.push(&s[inner_start..inner_start + rel_end]);
                pos = inner_start + rel_end + close.len();
            }
            None => break,
        }
    }
    out
}

/// Python `re.search(r"<open>(.*?)<close>", s, re.DOTALL).group(1)`: the first lazy match.
pub fn search_between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)?;
    Some(&s[start..start + end])
}

/// Whether Python's `$` (no MULTILINE) matches at byte offset `i` of `s`: at the end, or just
/// before a final `\n`.
pub fn py_dollar_at(s: &str, i: usize) -> bool {
    i == s.len() || (i + 1 == s.len() && s.as_bytes().get(i) == Some(&b'\n'))
}

/// Special tokens that may trail a decoded completion (LLaDA's end-of-turn, end-of-text, mask
/// and header tokens); [`strip_trailing_special_tokens`] removes them.
pub const TRAILING_SPECIAL_TOKENS: &[&str] = &[
    "<|eot_id|>",
    "<|endoftext|>",
    "<|mdm_mask|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
];

/// Removes any run of [`TRAILING_SPECIAL_TOKENS`] at the end of a completion (what decoding
/// with `skip_special_tokens=True` would drop there); text before them is untouched.
pub fn strip_trailing_special_tokens(text: &str) -> &str {
    let mut t = text;
    loop {
        let mut changed = false;
        for tok in TRAILING_SPECIAL_TOKENS {
            if let Some(rest) = t.strip_suffix(tok) {
                t = rest;
                changed = true;
            }
        }
        if !changed {
            return t;
        }
    }
}

//! The d1 (diffu-GRPO) reward and answer-parsing functions, reproduced exactly.
//!
//! Reference: dllm-reasoning/d1 — `diffu-grpo/reward_func.py` (xmlcount, soft/strict format,
//! int and correctness rewards, `boxed_in_answer`), `diffu-grpo/math500_utils.py` and
//! `eval/parser_helper.py` (Hendrycks' `last_boxed_only_string`, `remove_boxed`,
//! `strip_string`, `is_equiv`), and `eval/parse_and_get_acc.py` (`parse_gsm_answers`,
//! `parse_math_answers`); and facebookresearch/igpo `utils/reward_func.py` for the IGPO
//! variants (`count_xml` with the `\boxed{` bonus, first-`\boxed{` extraction, correctness 3.0).
//!
//! The Python regular expressions are hand-matched here (no regex crate), each function's doc
//! gives the pattern it is equivalent to. Python exceptions that the reference code catches are
//! reproduced as the fallback it takes (e.g. `is_equiv` compares the raw strings when
//! `strip_string` raises). Quirks kept on purpose, because they produced the published numbers:
//!
//! - `xmlcount`: when `\n<answer>\n` occurs once but `\n</answer>\n` never does, the penalty is
//!   0.001 × the length of the *whole* text (`text.split(sep)[-1]` is the whole text);
//!   when the text ends exactly with `\n</answer>` the fourth term adds +0.001 (`(0 − 1)·−0.001`).
//! - `boxed_in_answer` tests `"\boxed" in r` in a non-raw Python string, i.e. for
//!   backspace + `oxed`, so its second term is almost always 0.5; the MATH format reward is
//!   therefore 0.25 without an `<answer>` tag and 0.75 with one ([`boxed_in_answer`]).

use super::pytext::{
    find_numbers, findall_between, is_py_space, py_count, py_dollar_at, py_float, py_int_canonical,
    py_isdigit, py_len, py_strip, search_between, split_last,
};

/// Marks where the Python reference raises an exception (which its caller then handles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raised;

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the reference implementation raises here")
    }
}

impl std::error::Error for Raised {}

/// `<reasoning>\n` etc.: the four tags the xmlcount reward counts.
const TAGS: [&str; 4] = [
    "<reasoning>\n",
    "\n</reasoning>\n",
    "\n<answer>\n",
    "\n</answer>",
];

/// d1 `count_xml` / `xmlcount_reward_func`: +0.125 for each of `<reasoning>\n`,
/// `\n</reasoning>\n`, `\n<answer>\n`, `\n</answer>` occurring exactly once; with the third,
/// −0.001 × len(text after the last `\n</answer>\n`, or the whole text if absent); with the
/// fourth, −0.001 × (len(text after the last `\n</answer>`) − 1). Lengths in characters.
pub fn xmlcount_reward(text: &str) -> f64 {
    let mut count = 0.0f64;
    if py_count(text, TAGS[0]) == 1 {
        count += 0.125;
    }
    if py_count(text, TAGS[1]) == 1 {
        count += 0.125;
    }
    if py_count(text, TAGS[2]) == 1 {
        count += 0.125;
        count -= py_len(split_last(text, "\n</answer>\n")) as f64 * 0.001;
    }
    if py_count(text, TAGS[3]) == 1 {
        count += 0.125;
        count -= (py_len(split_last(text, "\n</answer>")) as f64 - 1.0) * 0.001;
    }
    count
}

/// Whether `re.match(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", text, re.DOTALL)`
/// succeeds (anchored at the start, not at the end).
pub fn soft_format_matches(text: &str) -> bool {
    const OPEN: &str = "<reasoning>";
    const CLOSE: &str = "</reasoning>";
    if !text.starts_with(OPEN) {
        return false;
    }
    let mut from = OPEN.len();
    while let Some(rel) = text.get(from..).and_then(|t| t.find(CLOSE)) {
        let after_close = from + rel + CLOSE.len();
        let rest = &text[after_close..];
        let trimmed = rest.trim_start_matches(is_py_space);
        if let Some(after_answer) = trimmed.strip_prefix("<answer>") {
            // The earliest viable `</reasoning>` leaves the most room for `</answer>`.
            return after_answer.contains("</answer>");
        }
        from = after_close;
    }
    false
}

/// d1 `soft_format_reward_func`: 0.5 if [`soft_format_matches`], else 0.
pub fn soft_format_reward(text: &str) -> f64 {
    if soft_format_matches(text) {
        0.5
    } else {
        0.0
    }
}

/// Whether `re.match(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n$", text,
/// re.DOTALL)` succeeds. Python's `$` also matches before one final `\n`, so a text ending in
/// `\n</answer>\n\n` passes too.
pub fn strict_format_matches(text: &str) -> bool {
    const START: &str = "<reasoning>\n";
    const MID: &str = "\n</reasoning>\n<answer>\n";
    const END: &str = "\n</answer>\n";
    let Some(rest) = text.strip_prefix(START) else {
        return false;
    };
    let Some(mid) = rest.find(MID) else {
        return false;
    };
    let q = START.len() + mid + MID.len();
    // END must start at or after q and be followed by `$`.
    let n = text.len();
    let at_end = n >= END.len() && n - END.len() >= q && text.ends_with(END);
    let before_final_newline = n > END.len()
        && n - END.len() > q
        && text.ends_with("\n</answer>\n\n")
        && py_dollar_at(text, n - 1);
    at_end || before_final_newline
}

/// d1 `strict_format_reward_func`: 0.5 if [`strict_format_matches`], else 0.
pub fn strict_format_reward(text: &str) -> f64 {
    if strict_format_matches(text) {
        0.5
    } else {
        0.0
    }
}

/// d1 `extract_xml_answer`: `text.split("<answer>")[-1].split("</answer>")[0].strip()`.
pub fn extract_xml_answer(text: &str) -> &str {
    let after = split_last(text, "<answer>");
    let inner = after.split("</answer>").next().unwrap_or(after);
    py_strip(inner)
}

/// d1 `extract_hash_answer`: `text.split("####")[1].strip()`, `None` without `####`.
pub fn extract_hash_answer(text: &str) -> Option<&str> {
    let mut parts = text.split("####");
    parts.next();
    parts.next().map(py_strip)
}

/// d1 `int_reward_func`: 0.5 if the extracted `<answer>` text `isdigit()` (non-empty, all
/// digits — so `-3` and `3.5` get 0).
pub fn int_reward(text: &str) -> f64 {
    if py_isdigit(extract_xml_answer(text)) {
        0.5
    } else {
        0.0
    }
}

/// d1 `correctness_reward_func`: 2.0 if the extracted `<answer>` text equals `answer` exactly
/// (string comparison, so `18.0` ≠ `18`), else 0.
pub fn correctness_reward(text: &str, answer: &str) -> f64 {
    if extract_xml_answer(text) == answer {
        2.0
    } else {
        0.0
    }
}

/// Hendrycks' `last_boxed_only_string`. `Some(whole string)` when there is no `\boxed` /
/// `\fbox` at all; `None` when the braces after the last one never balance; with `"\boxed "`
/// (with a space) anywhere, `"\boxed " + text after the last "\boxed " up to the next "$"`.
pub fn last_boxed_only_string(s: &str) -> Option<String> {
    if s.contains("\\boxed ") {
        let tail = split_last(s, "\\boxed ");
        let tail = tail.split('$').next().unwrap_or(tail);
        return Some(format!("\\boxed {tail}"));
    }
    let idx = match s.rfind("\\boxed") {
        Some(i) => i,
        None => match s.rfind("\\fbox") {
            Some(i) => i,
            None => return Some(s.to_string()),
        },
    };
    let mut open: i64 = 0;
    for (off, b) in s.as_bytes()[idx..].iter().enumerate() {
        match b {
            b'{' => open += 1,
            b'}' => {
                open -= 1;
                if open == 0 {
                    return Some(s[idx..idx + off + 1].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// Hendrycks' `remove_boxed` with its exceptions: `Err(Raised)` where Python raises (a `None`
/// argument, or `"\boxed "` present but not at the start); `\boxed{…}` → the inside;
/// anything else is returned unchanged.
pub fn remove_boxed(s: Option<&str>) -> Result<String, Raised> {
    let s = s.ok_or(Raised)?;
    if s.contains("\\boxed ") {
        return s.strip_prefix("\\boxed ").map(str::to_string).ok_or(Raised);
    }
    if let Some(inner) = s.strip_prefix("\\boxed{").and_then(|r| r.strip_suffix('}')) {
        return Ok(inner.to_string());
    }
    Ok(s.to_string())
}

/// `remove_boxed(last_boxed_only_string(text))`, `None` where that raises.
pub fn boxed_answer_d1(text: &str) -> Option<String> {
    remove_boxed(last_boxed_only_string(text).as_deref()).ok()
}

fn fix_fracs(string: &str) -> Result<String, Raised> {
    let mut parts = string.split("\\frac");
    let mut new_str = parts.next().unwrap_or("").to_string();
    for substr in parts {
        new_str.push_str("\\frac");
        let mut chars = substr.chars();
        let a = chars.next().ok_or(Raised)?; // substr[0] on "" raises IndexError
        if a == '{' {
            new_str.push_str(substr);
            continue;
        }
        let Some(b) = chars.next() else {
            return Ok(string.to_string()); // len(substr) < 2
        };
        let post: String = chars.collect();
        if b != '{' {
            new_str.push_str(&format!("{{{a}}}{{{b}}}{post}"));
        } else {
            new_str.push_str(&format!("{{{a}}}{b}{post}"));
        }
    }
    Ok(new_str)
}

fn remove_right_units(string: &str) -> Result<String, Raised> {
    if string.contains("\\text{ ") {
        let splits: Vec<&str> = string.split("\\text{ ").collect();
        if splits.len() != 2 {
            return Err(Raised); // AssertionError
        }
        Ok(splits[0].to_string())
    } else {
        Ok(string.to_string())
    }
}

fn fix_sqrt(string: &str) -> Result<String, Raised> {
    if !string.contains("\\sqrt") {
        return Ok(string.to_string());
    }
    let mut parts = string.split("\\sqrt");
    let mut new_string = parts.next().unwrap_or("").to_string();
    for split in parts {
        let mut chars = split.chars();
        let a = chars.next().ok_or(Raised)?; // split[0] on "" raises IndexError
        if a != '{' {
            let rest: String = chars.collect();
            new_string.push_str(&format!("\\sqrt{{{a}}}{rest}"));
        } else {
            new_string.push_str("\\sqrt");
            new_string.push_str(split);
        }
    }
    Ok(new_string)
}

fn fix_a_slash_b(string: &str) -> Result<String, Raised> {
    let parts: Vec<&str> = string.split('/').collect();
    if parts.len() != 2 {
        return Ok(string.to_string());
    }
    // int() raising ValueError is not caught by fix_a_slash_b.
    let a = py_int_canonical(parts[0]).ok_or(Raised)?;
    let b = py_int_canonical(parts[1]).ok_or(Raised)?;
    if string != format!("{a}/{b}") {
        return Ok(string.to_string()); // AssertionError is caught
    }
    Ok(format!("\\frac{{{a}}}{{{b}}}"))
}

/// Hendrycks' `strip_string` (MATH answer normalisation); `Err(Raised)` where Python raises.
pub fn strip_string(string: &str) -> Result<String, Raised> {
    let mut s = string.replace('\n', "");
    s = s.replace("\\!", "");
    s = s.replace("\\\\", "\\");
    s = s.replace("tfrac", "frac");
    s = s.replace("dfrac", "frac");
    s = s.replace("\\left", "");
    s = s.replace("\\right", "");
    s = s.replace("^{\\circ}", "");
    s = s.replace("^\\circ", "");
    s = s.replace("\\$", "");
    s = remove_right_units(&s)?;
    s = s.replace("\\%", "");
    s = s.replace("\\%", "");
    s = s.replace(" .", " 0.");
    s = s.replace("{.", "{0.");
    if s.is_empty() {
        return Ok(s);
    }
    if s.starts_with('.') {
        s = format!("0{s}");
    }
    {
        let parts: Vec<&str> = s.split('=').collect();
        if parts.len() == 2 && py_len(parts[0]) <= 2 {
            s = parts[1].to_string();
        }
    }
    s = fix_sqrt(&s)?;
    s = s.replace(' ', "");
    s = fix_fracs(&s)?;
    if s == "0.5" {
        s = "\\frac{1}{2}".to_string();
    }
    fix_a_slash_b(&s)
}

/// Hendrycks / d1 `is_equiv` on two strings: `strip_string` both and compare; if either
/// raises, compare the raw strings.
pub fn hendrycks_is_equiv(a: &str, b: &str) -> bool {
    match (strip_string(a), strip_string(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// d1 `boxed_in_answer` (one completion): `+1.0` if the text contains `<answer>` (the segment
/// between the first `<answer>` and the next `</answer>` becomes `r`, else `r` is the whole
/// text), then `+1.0` if `r` contains backspace + `oxed` (the Python literal `"\boxed"`), else
/// `+0.5`. See the module docs for why the second test almost never passes.
pub fn boxed_in_answer(text: &str) -> f64 {
    let mut reward = 0.0;
    let mut r = text;
    let mut parts = text.split("<answer>");
    parts.next();
    if let Some(seg) = parts.next() {
        r = seg.split("</answer>").next().unwrap_or(seg);
        reward += 1.0;
    }
    reward += if r.contains("\u{8}oxed") { 1.0 } else { 0.5 };
    reward
}

/// d1 `boxed_and_answer_tags_format_reward`: `0.5 × boxed_in_answer`.
pub fn math_format_reward(text: &str) -> f64 {
    boxed_in_answer(text) * 0.5
}

/// What d1's `correctness_reward_func_math` compares for a response: the inside of the last
/// `\boxed{}`, or the whole response where extraction raises or finds no box.
pub fn math_response_answer_d1(text: &str) -> String {
    boxed_answer_d1(text).unwrap_or_else(|| text.to_string())
}

/// d1 `correctness_reward_func_math` (one completion): 2.0 if
/// `is_equiv(math_response_answer_d1(text), reference)` else 0. `reference` is the already
/// extracted answer (d1 applies `remove_boxed(last_boxed_only_string(·))` to the solution;
/// on a plain answer that is the identity).
pub fn math_correctness_reward(text: &str, reference: &str) -> f64 {
    if hendrycks_is_equiv(&math_response_answer_d1(text), reference) {
        2.0
    } else {
        0.0
    }
}

/// IGPO `count_xml`: +0.125 each for `<reasoning>\n`, `</reasoning>`, `<answer>\n`,
/// `</answer>` occurring exactly once, +0.25 if `\boxed{` occurs.
pub fn igpo_xmlcount_reward(text: &str) -> f64 {
    let mut count = 0.0;
    for tag in ["<reasoning>\n", "</reasoning>", "<answer>\n", "</answer>"] {
        if py_count(text, tag) == 1 {
            count += 0.125;
        }
    }
    if text.contains("\\boxed{") {
        count += 0.25;
    }
    count
}

/// IGPO `extract_boxed_answer`: the brace-balanced inside of the *first* `\boxed{`, stripped;
/// `""` when there is none or it never closes.
pub fn igpo_extract_boxed(text: &str) -> String {
    const OPEN: &str = "\\boxed{";
    let Some(i) = text.find(OPEN) else {
        return String::new();
    };
    let start = i + OPEN.len();
    let mut depth = 1i64;
    for (off, b) in text.as_bytes()[start..].iter().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return py_strip(&text[start..start + off]).to_string();
                }
            }
            _ => {}
        }
    }
    String::new()
}

/// IGPO `manual_math_verify(answer, extracted)`: the answer parsed out of `extracted` the way
/// d1's MATH evaluation does ([`parse_math_eval`]) and compared with `is_equiv`.
pub fn igpo_verify(reference: &str, extracted: &str) -> bool {
    match parse_math_eval(extracted) {
        Some(p) => hendrycks_is_equiv(&p, reference),
        None => false,
    }
}

/// IGPO `correctness_reward_func`: 3.0 if [`igpo_verify`] on the first boxed answer.
pub fn igpo_correctness_reward(text: &str, reference: &str) -> f64 {
    if igpo_verify(reference, &igpo_extract_boxed(text)) {
        3.0
    } else {
        0.0
    }
}

/// The contents of each non-overlapping `re.findall(r"\\boxed{(.*?)}", text)` match (no
/// DOTALL: a newline before the first `}` makes that attempt fail and the scan moves on).
pub fn findall_boxed_lazy(text: &str) -> Vec<&str> {
    const OPEN: &str = "\\boxed{";
    let mut out = Vec::new();
    let mut pos = 0;
    // The next `}` or `\n` at or after some position, cached so that many failed attempts
    // (a newline before any `}`) do not rescan the same stretch: linear time overall.
    let mut stop: Option<Option<usize>> = None;
    while let Some(rel) = text.get(pos..).and_then(|t| t.find(OPEN)) {
        let idx = pos + rel;
        let start = idx + OPEN.len();
        let next = match stop {
            Some(Some(s)) if s >= start => Some(s),
            Some(None) => None,
            _ => text[start..].find(['}', '\n']).map(|j| start + j),
        };
        stop = Some(next);
        match next {
            Some(j) if text.as_bytes()[j] == b'}' => {
                out.push(&text[start..j]);
                pos = j + 1;
            }
            Some(_) => pos = idx + 1,
            None => break,
        }
    }
    out
}

/// d1 `parse_gsm_answers` for one generation: the first `\boxed{…}` whose stripped content is
/// non-empty and not all dots and parses with `float()` (or else contains a number, whose first
/// occurrence is taken); failing that, the first `<answer>…</answer>` block (`float()` of the
/// whole stripped text, else its last number). `None` if nothing parses.
pub fn parse_gsm8k_eval(text: &str) -> Option<f64> {
    for content in findall_boxed_lazy(text) {
        let c = py_strip(content);
        if c.is_empty() || c == "..." || c.chars().all(|ch| ch == '.') {
            continue;
        }
        if let Some(v) = py_float(c) {
            return Some(v);
        }
        if let Some(first) = find_numbers(c).first() {
            if let Some(v) = py_float(first) {
                return Some(v);
            }
        }
    }
    let inner = search_between(text, "<answer>", "</answer>")?;
    let t = py_strip(inner);
    if t.is_empty() {
        return None;
    }
    if let Some(v) = py_float(t) {
        return Some(v);
    }
    find_numbers(t).last().and_then(|n| py_float(n))
}

/// d1 eval `Parser.extract_answer_gsm8k` on a reference solution:
/// `float(re.search(r"####\s*\$?([\d,]+(?:\.\d+)?)").group(1).replace(",", ""))`.
pub fn gsm8k_reference_value(solution: &str) -> Option<f64> {
    let mut from = 0;
    while let Some(rel) = solution.get(from..).and_then(|t| t.find("####")) {
        let mut rest = &solution[from + rel + 4..];
        rest = rest.trim_start_matches(is_py_space);
        rest = rest.strip_prefix('$').unwrap_or(rest);
        let int_len: usize = rest
            .char_indices()
            .take_while(|&(_, c)| c == ',' || super::pytext::is_py_decimal(c))
            .map(|(_, c)| c.len_utf8())
            .sum();
        if int_len > 0 {
            let mut end = int_len;
            let after = &rest[int_len..];
            if let Some(frac) = after.strip_prefix('.') {
                let flen: usize = frac
                    .char_indices()
                    .take_while(|&(_, c)| super::pytext::is_py_decimal(c))
                    .map(|(_, c)| c.len_utf8())
                    .sum();
                if flen > 0 {
                    end += 1 + flen;
                }
            }
            let num: String = rest[..end].chars().filter(|&c| c != ',').collect();
            return py_float(&num);
        }
        from += rel + 1;
    }
    None
}

/// d1 `parse_math_answers` extraction for one generation: `remove_boxed(last_boxed_only_string
/// (text))` (`None` where that raises); if that is `None` or empty, the stripped first
/// `<answer>…</answer>` block when there is one.
pub fn parse_math_eval(text: &str) -> Option<String> {
    let parsed = boxed_answer_d1(text);
    if parsed.as_deref().is_some_and(|p| !p.is_empty()) {
        return parsed;
    }
    match search_between(text, "<answer>", "</answer>") {
        Some(inner) => Some(py_strip(inner).to_string()),
        None => parsed,
    }
}

/// d1's `extract_solution` (Countdown) / the last `<answer>…</answer>` block, stripped.
pub fn last_answer_block(text: &str) -> Option<&str> {
    findall_between(text, "<answer>", "</answer>")
        .last()
        .map(|s| py_strip(s))
}

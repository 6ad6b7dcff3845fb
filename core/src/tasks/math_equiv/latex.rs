//! LaTeX answer tokenizer and normaliser (the string-level half of math equivalence).
//!
//! Reference: the normalisations of Hendrycks' MATH `strip_string` and of HuggingFace
//! math-verify's LaTeX pre-processing (drop `\left`/`\right`, spacing commands, `$`, `\text`
//! wrappers, units, degrees, percent and dollar signs, thousands separators), done on a token
//! list instead of by string replacement so that e.g. `\cot x` never becomes `\cotx`. All passes
//! are linear (brace matching is precomputed), so arbitrarily long inputs finish quickly.

/// One LaTeX token.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// `\name` (letters) or `\c` for one non-letter character `c` (`\{`, `\,`, `\\`, …).
    Cmd(String),
    /// Any other character.
    Ch(char),
    /// A run of whitespace.
    Space,
    /// A word of two or more letters that came from a `\text{…}`-like wrapper (never parsed as a
    /// product of variables).
    Word(String),
}

impl Tok {
    pub(crate) fn is_ch(&self, c: char) -> bool {
        matches!(self, Tok::Ch(x) if *x == c)
    }
    pub(crate) fn is_cmd(&self, name: &str) -> bool {
        matches!(self, Tok::Cmd(x) if x == name)
    }
}

/// Splits LaTeX into tokens.
pub(crate) fn tokenize(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek().copied() {
                Some(n) if n.is_ascii_alphabetic() => {
                    let mut name = String::new();
                    while let Some(&n) = chars.peek() {
                        if n.is_ascii_alphabetic() {
                            name.push(n);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    out.push(Tok::Cmd(name));
                }
                Some(n) => {
                    chars.next();
                    let name = if n.is_whitespace() { ' ' } else { n };
                    out.push(Tok::Cmd(name.to_string()));
                }
                None => out.push(Tok::Ch('\\')),
            }
        } else if c.is_whitespace() {
            if !matches!(out.last(), Some(Tok::Space)) {
                out.push(Tok::Space);
            }
        } else {
            out.push(Tok::Ch(c));
        }
    }
    out
}

/// Writes tokens back as a canonical string (no spaces, except one between a letter command
/// and a following letter).
pub(crate) fn serialize(toks: &[Tok]) -> String {
    let mut s = String::new();
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Cmd(name) => {
                s.push('\\');
                s.push_str(name);
                let letter_cmd = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
                let next_letter = match toks.get(i + 1) {
                    Some(Tok::Ch(c)) => c.is_ascii_alphabetic(),
                    Some(Tok::Word(_)) => true,
                    _ => false,
                };
                if letter_cmd && next_letter {
                    s.push(' ');
                }
            }
            Tok::Ch(c) => s.push(*c),
            Tok::Space => s.push(' '),
            Tok::Word(w) => s.push_str(w),
        }
    }
    s
}

/// Whether a token opens a bracket level (for top-level splitting and matching).
pub(crate) fn is_open(t: &Tok) -> bool {
    match t {
        Tok::Ch(c) => matches!(c, '(' | '[' | '{'),
        Tok::Cmd(n) => matches!(n.as_str(), "{" | "langle" | "lfloor" | "lceil" | "begin"),
        _ => false,
    }
}

/// Whether a token closes a bracket level.
pub(crate) fn is_close(t: &Tok) -> bool {
    match t {
        Tok::Ch(c) => matches!(c, ')' | ']' | '}'),
        Tok::Cmd(n) => matches!(n.as_str(), "}" | "rangle" | "rfloor" | "rceil" | "end"),
        _ => false,
    }
}

/// For each `Ch('{')`, the index of its matching `Ch('}')` (braces only), computed in one pass.
fn brace_matches(toks: &[Tok]) -> Vec<Option<usize>> {
    let mut m = vec![None; toks.len()];
    let mut stack = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if t.is_ch('{') {
            stack.push(i);
        } else if t.is_ch('}') {
            if let Some(o) = stack.pop() {
                m[o] = Some(i);
            }
        }
    }
    m
}

/// Commands dropped outright.
const DROP_CMDS: &[&str] = &[
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "Biggl",
    "Biggr",
    "displaystyle",
    "textstyle",
    "scriptstyle",
    "!",
    ",",
    ";",
    ":",
    " ",
    "quad",
    "qquad",
    "(",
    ")",
    "[",
    "]",
    "limits",
    "nolimits",
    "mathstrut",
    "$",
    "degree",
    "enspace",
    "thinspace",
    "medspace",
    "thickspace",
    "negthinspace",
    "hfill",
    "phantom",
];

/// Wrapper commands whose braced argument is kept as plain content.
const TEXT_CMDS: &[&str] = &[
    "text",
    "textbf",
    "textit",
    "textrm",
    "textsf",
    "texttt",
    "textnormal",
    "mathrm",
    "mathbf",
    "mathit",
    "mathsf",
    "mathtt",
    "mathnormal",
    "mbox",
    "hbox",
    "operatorname",
    "boldsymbol",
    "bm",
    "mathbb",
    "mathcal",
    "emph",
    "textup",
];

/// Unit words removed when they trail a numeric answer outside `\text{…}`.
const UNIT_WORDS: &[&str] = &[
    "cm",
    "mm",
    "km",
    "meter",
    "meters",
    "metre",
    "metres",
    "centimeter",
    "centimeters",
    "kilometer",
    "kilometers",
    "inch",
    "inches",
    "ft",
    "feet",
    "foot",
    "yard",
    "yards",
    "mile",
    "miles",
    "degree",
    "degrees",
    "deg",
    "cent",
    "cents",
    "dollar",
    "dollars",
    "unit",
    "units",
    "square",
    "sq",
    "cubic",
    "hour",
    "hours",
    "hr",
    "hrs",
    "minute",
    "minutes",
    "min",
    "mins",
    "second",
    "seconds",
    "day",
    "days",
    "week",
    "weeks",
    "month",
    "months",
    "year",
    "years",
    "pound",
    "pounds",
    "lb",
    "lbs",
    "ounce",
    "ounces",
    "oz",
    "gallon",
    "gallons",
    "liter",
    "liters",
    "litre",
    "litres",
    "ml",
    "kg",
    "mph",
    "points",
    "point",
    "percent",
    "radians",
    "radian",
    "rad",
    "people",
    "students",
    "ways",
    "times",
    "th",
    "st",
    "nd",
    "rd",
];

/// Result of normalising one answer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Normalized {
    /// Tokens after normalisation (no `Space`).
    pub toks: Vec<Tok>,
    /// The answer carried a percent sign.
    pub percent: bool,
}

fn has_numeric(toks: &[Tok]) -> bool {
    toks.iter().any(|t| match t {
        Tok::Ch(c) => c.is_ascii_digit(),
        Tok::Cmd(n) => matches!(n.as_str(), "frac" | "sqrt" | "pi" | "dfrac" | "tfrac"),
        _ => false,
    })
}

/// Index just past an optional `^2`, `^3`, `^{2}`, `^{3}` starting at `i` (or `i` itself).
fn skip_unit_power(toks: &[Tok], i: usize) -> usize {
    if !toks.get(i).is_some_and(|t| t.is_ch('^')) {
        return i;
    }
    match toks.get(i + 1) {
        Some(Tok::Ch(c)) if c.is_ascii_digit() => i + 2,
        Some(t) if t.is_ch('{') => {
            if matches!(toks.get(i + 2), Some(Tok::Ch(c)) if c.is_ascii_digit())
                && toks.get(i + 3).is_some_and(|t| t.is_ch('}'))
            {
                i + 4
            } else {
                i
            }
        }
        _ => i,
    }
}

fn only_spaces_from(toks: &[Tok], i: usize) -> bool {
    toks.get(i..)
        .is_some_and(|r| r.iter().all(|t| matches!(t, Tok::Space)))
}

/// Normalises an answer's tokens (see the module docs).
pub(crate) fn normalize_tokens(input: &[Tok]) -> Normalized {
    let mut percent = false;
    // Pass 1: drop / rename commands, degrees, percent, dollars.
    let mut toks: Vec<Tok> = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let t = &input[i];
        match t {
            Tok::Cmd(n) if n == "left" || n == "right" => {
                if input.get(i + 1).is_some_and(|t| t.is_ch('.')) {
                    i += 1;
                }
            }
            Tok::Cmd(n) if DROP_CMDS.contains(&n.as_str()) => {}
            Tok::Cmd(n) if n == "%" => percent = true,
            Tok::Ch('%') => percent = true,
            Tok::Ch('$') | Tok::Ch('°') => {}
            Tok::Ch('~') => toks.push(Tok::Space),
            Tok::Ch('^') => {
                // ^\circ and ^{\circ}
                if input.get(i + 1).is_some_and(|t| t.is_cmd("circ")) {
                    i += 2;
                    continue;
                }
                if input.get(i + 1).is_some_and(|t| t.is_ch('{'))
                    && input.get(i + 2).is_some_and(|t| t.is_cmd("circ"))
                    && input.get(i + 3).is_some_and(|t| t.is_ch('}'))
                {
                    i += 4;
                    continue;
                }
                toks.push(t.clone());
            }
            Tok::Cmd(n) => {
                let renamed = match n.as_str() {
                    "dfrac" | "tfrac" | "cfrac" => Tok::Cmd("frac".into()),
                    "dbinom" | "tbinom" => Tok::Cmd("binom".into()),
                    "cdot" | "times" | "ast" => Tok::Ch('*'),
                    "div" => Tok::Ch('/'),
                    "le" | "leqslant" => Tok::Cmd("leq".into()),
                    "ge" | "geqslant" => Tok::Cmd("geq".into()),
                    "ne" => Tok::Cmd("neq".into()),
                    "lt" => Tok::Ch('<'),
                    "gt" => Tok::Ch('>'),
                    "lbrace" => Tok::Cmd("{".into()),
                    "rbrace" => Tok::Cmd("}".into()),
                    "varphi" => Tok::Cmd("phi".into()),
                    "vartheta" => Tok::Cmd("theta".into()),
                    "varepsilon" => Tok::Cmd("epsilon".into()),
                    "infin" | "infinity" => Tok::Cmd("infty".into()),
                    "vert" | "lvert" | "rvert" | "mid" => Tok::Ch('|'),
                    "circ" if i + 1 == input.len() => {
                        i += 1;
                        continue;
                    }
                    _ => t.clone(),
                };
                toks.push(renamed);
            }
            _ => toks.push(t.clone()),
        }
        i += 1;
    }

    // Pass 2: unwrap \text{…}-like wrappers; drop a trailing unit in one.
    let matches = brace_matches(&toks);
    let mut skip = vec![false; toks.len()];
    let mut out: Vec<Tok> = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        if skip[i] {
            i += 1;
            continue;
        }
        let t = &toks[i];
        if let Tok::Cmd(n) = t {
            if TEXT_CMDS.contains(&n.as_str()) {
                let mut j = i + 1;
                while matches!(toks.get(j), Some(Tok::Space)) {
                    j += 1;
                }
                match (toks.get(j), matches.get(j).copied().flatten()) {
                    (Some(b), Some(k)) if b.is_ch('{') => {
                        let inner = &toks[j + 1..k];
                        let wordy = inner.iter().all(|t| match t {
                            Tok::Ch(c) => c.is_alphabetic() || *c == '.',
                            Tok::Space => true,
                            _ => false,
                        });
                        let letters = if wordy {
                            inner
                                .iter()
                                .filter(|t| matches!(t, Tok::Ch(c) if c.is_alphabetic()))
                                .count()
                        } else {
                            0
                        };
                        let after = skip_unit_power(&toks, k + 1);
                        if wordy
                            && letters > 0
                            && only_spaces_from(&toks, after)
                            && has_numeric(&out)
                        {
                            break; // a trailing unit: drop it and everything after
                        }
                        if wordy && letters >= 2 {
                            let w: String = inner
                                .iter()
                                .filter_map(|t| match t {
                                    Tok::Ch(c) => Some(*c),
                                    Tok::Space => Some(' '),
                                    _ => None,
                                })
                                .collect();
                            let w = w.trim().trim_end_matches('.').to_string();
                            if !w.is_empty() {
                                out.push(Tok::Word(w));
                            }
                            i = k + 1;
                            continue;
                        }
                        skip[k] = true;
                        i = j + 1;
                        continue;
                    }
                    _ => {
                        i += 1; // a wrapper without a braced argument: drop the command
                        continue;
                    }
                }
            }
        }
        out.push(t.clone());
        i += 1;
    }

    // Pass 3: trailing plain unit words (after a space), possibly several ("square feet").
    let first_numeric = out
        .iter()
        .position(|t| has_numeric(std::slice::from_ref(t)))
        .unwrap_or(usize::MAX);
    loop {
        while matches!(out.last(), Some(Tok::Space)) {
            out.pop();
        }
        // optional ^2 / ^3 after the unit
        let mut end = out.len();
        if end >= 2
            && out[end - 2].is_ch('^')
            && matches!(out[end - 1], Tok::Ch(c) if c.is_ascii_digit())
        {
            end -= 2;
        }
        let mut start = end;
        while start > 0 && matches!(out[start - 1], Tok::Ch(c) if c.is_ascii_alphabetic()) {
            start -= 1;
        }
        if start == end || start == 0 || !matches!(out[start - 1], Tok::Space) {
            break;
        }
        let word: String = out[start..end]
            .iter()
            .filter_map(|t| match t {
                Tok::Ch(c) => Some(c.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        if !UNIT_WORDS.contains(&word.as_str()) || first_numeric >= start {
            break;
        }
        out.truncate(start);
    }

    // Pass 4: drop spaces, `{,}` → `,`, trailing periods.
    let mut toks: Vec<Tok> = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        match &out[i] {
            Tok::Space => {}
            t if t.is_ch('{')
                && out.get(i + 1).is_some_and(|t| t.is_ch(','))
                && out.get(i + 2).is_some_and(|t| t.is_ch('}')) =>
            {
                toks.push(Tok::Ch(','));
                i += 3;
                continue;
            }
            // x_{1} → x_1, x^{2} → x^2 (one-token scripts)
            t if (t.is_ch('_') || t.is_ch('^'))
                && out.get(i + 1).is_some_and(|t| t.is_ch('{'))
                && matches!(out.get(i + 2), Some(Tok::Ch(c)) if c.is_ascii_alphanumeric())
                && out.get(i + 3).is_some_and(|t| t.is_ch('}')) =>
            {
                toks.push(t.clone());
                toks.push(out[i + 2].clone());
                i += 4;
                continue;
            }
            t => toks.push(t.clone()),
        }
        i += 1;
    }
    while toks.last().is_some_and(|t| t.is_ch('.')) {
        toks.pop();
    }
    // Thousands separators: the whole answer is `-?d{1,3}(,ddd)+(.d+)?`, written without a
    // space after a comma (`32, 349` is a list, as math-verify reads it).
    let comma_space = input
        .windows(2)
        .any(|w| w[0].is_ch(',') && matches!(w[1], Tok::Space));
    if !comma_space && is_thousands(&toks) {
        toks.retain(|t| !t.is_ch(','));
    }
    Normalized { toks, percent }
}

fn is_thousands(toks: &[Tok]) -> bool {
    let s: String = match toks
        .iter()
        .map(|t| match t {
            Tok::Ch(c) => Some(*c),
            _ => None,
        })
        .collect::<Option<String>>()
    {
        Some(s) => s,
        None => return false,
    };
    let body = s.strip_prefix('-').unwrap_or(&s);
    let (int, frac) = match body.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (body, None),
    };
    if let Some(f) = frac {
        if f.is_empty() || !f.chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    let groups: Vec<&str> = int.split(',').collect();
    if groups.len() < 2 {
        return false;
    }
    let first = groups[0];
    if first.is_empty() || first.len() > 3 || !first.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    groups[1..]
        .iter()
        .all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()))
}

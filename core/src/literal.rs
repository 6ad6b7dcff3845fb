//! Rhai literals for `--set key=value`: parsed, never evaluated, so a command-line value cannot
//! call a function (`--set x='write_text("f", "")'` is an error, not a file write).
//!
//! Accepted: integers (`3`, `-2`, `1_000`, `0x1f`), floats (`1e-4`, `0.5`, `-2.0`), `true` /
//! `false`, strings in double quotes or backticks (with `\n \t \r \\ \" \0 \u{…}` escapes),
//! `()`, arrays `[1, 2]` and maps `#{lr: 1e-4, "name": "x"}`, nested. The result is JSON with
//! integers and floats kept apart (`3` is an integer, `3.0` a float).

use anyhow::{bail, Result};
use serde_json::{Map, Number, Value};

/// Parses one `--set key=value` argument: the key must be an identifier, the value a literal
/// ([`parse`], never evaluated), except that a bare word that is not a literal
/// (`task=math500`, `model=GSAI-ML/LLaDA-8B-Instruct`) is taken as a string. Errors name the
/// argument.
pub fn parse_set(arg: &str) -> Result<(String, Value)> {
    let Some((k, v)) = arg.split_once('=') else {
        bail!("--set {arg}: expected key=value");
    };
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_alphanumeric() || c == '_') {
        bail!("--set {arg}: the key must be an identifier");
    }
    let v = v.trim();
    let bare_word = !v.is_empty()
        && !v.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        && v.chars()
            .all(|c| c.is_alphanumeric() || "_-./:".contains(c))
        && !matches!(v, "true" | "false");
    if bare_word {
        return Ok((k.to_string(), Value::String(v.to_string())));
    }
    let value = parse(v).map_err(|e| anyhow::anyhow!("--set {k}={v}: not a valid literal: {e}"))?;
    Ok((k.to_string(), value))
}

/// Parses one literal; anything else (an operator, a call, a variable) is an error saying what
/// was expected and where.
pub fn parse(text: &str) -> Result<Value> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
        depth: 0,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i < p.s.len() {
        bail!(
            "unexpected `{}` at position {} after the literal (a value is parsed, never evaluated: \
             use a number, true/false, \"string\", [array] or #{{map}})",
            &text[p.i..],
            p.i + 1
        );
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    depth: usize,
}

/// Nesting deeper than this is refused (a literal, not a stack-overflow test).
const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            bail!(
                "expected `{}` at position {}, found {}",
                c as char,
                self.i + 1,
                self.rest()
            )
        }
    }

    fn rest(&self) -> String {
        if self.i >= self.s.len() {
            "the end".into()
        } else {
            format!("`{}`", &self.text[self.i..])
        }
    }

    fn value(&mut self) -> Result<Value> {
        self.ws();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            bail!("literal nested deeper than {MAX_DEPTH} levels");
        }
        let v = match self.peek() {
            Some(b'[') => self.array(),
            Some(b'#') => self.map(),
            Some(b'"') | Some(b'`') => self.string().map(Value::String),
            Some(b'(') => {
                self.i += 1;
                self.expect(b')')?;
                Ok(Value::Null)
            }
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' || c == b'.' => self.number(),
            Some(_) => {
                let word = self.word();
                match word {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    _ => bail!(
                        "expected a literal (number, true/false, \"string\", [array], #{{map}}), \
                         found {}",
                        self.rest()
                    ),
                }
            }
            None => bail!("expected a value, found the end"),
        };
        self.depth -= 1;
        v
    }

    fn word(&mut self) -> &str {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.i += 1;
        }
        let w = &self.text[start..self.i];
        if !matches!(w, "true" | "false") {
            self.i = start;
        }
        w
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"_.+-".contains(&c))
        {
            // `+`/`-` only at the start or after an exponent marker.
            let c = self.s[self.i];
            if (c == b'+' || c == b'-')
                && self.i > start
                && !matches!(self.s[self.i - 1], b'e' | b'E')
            {
                break;
            }
            self.i += 1;
        }
        let raw = &self.text[start..self.i];
        let clean: String = raw.chars().filter(|&c| c != '_').collect();
        let (neg, body) = match clean.strip_prefix('-') {
            Some(b) => (true, b.to_string()),
            None => (false, clean.trim_start_matches('+').to_string()),
        };
        let radix = [("0x", 16), ("0o", 8), ("0b", 2)]
            .into_iter()
            .find(|(p, _)| body.starts_with(p));
        if let Some((p, r)) = radix {
            let n = i64::from_str_radix(&body[p.len()..], r)
                .map_err(|e| anyhow::anyhow!("`{raw}` is not an integer: {e}"))?;
            return Ok(Value::from(if neg { -n } else { n }));
        }
        let is_float = body.contains(['.', 'e', 'E']);
        if !is_float {
            if let Ok(n) = clean.parse::<i64>() {
                return Ok(Value::from(n));
            }
            bail!("`{raw}` is not a number (or does not fit a 64-bit integer)");
        }
        match clean.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Number(
                Number::from_f64(f).unwrap_or_else(|| Number::from(0)),
            )),
            Ok(_) => bail!("`{raw}` is not a finite number"),
            Err(_) => bail!("`{raw}` is not a number"),
        }
    }

    fn string(&mut self) -> Result<String> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = String::new();
        let mut chars = self.text[self.i..].char_indices();
        while let Some((k, c)) = chars.next() {
            if c as u32 == u32::from(quote) {
                self.i += k + 1;
                return Ok(out);
            }
            if c != '\\' || quote == b'`' {
                out.push(c);
                continue;
            }
            let Some((_, e)) = chars.next() else { break };
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                '\\' | '"' | '\'' => out.push(e),
                'u' => {
                    let hex: String = chars
                        .by_ref()
                        .map(|(_, c)| c)
                        .skip_while(|&c| c == '{')
                        .take_while(|&c| c != '}')
                        .collect();
                    let ch = u32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| anyhow::anyhow!("bad escape \\u{{{hex}}}"))?;
                    out.push(ch);
                }
                other => bail!("unknown escape `\\{other}` in a string"),
            }
        }
        bail!("unterminated string")
    }

    fn array(&mut self) -> Result<Value> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.peek() == Some(b']') {
                self.i += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {}
                _ => bail!("expected `,` or `]` in an array, found {}", self.rest()),
            }
        }
    }

    fn map(&mut self) -> Result<Value> {
        self.i += 1;
        if self.peek() != Some(b'{') {
            bail!("expected `#{{` to start a map, found {}", self.rest());
        }
        self.i += 1;
        let mut m = Map::new();
        loop {
            self.ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(Value::Object(m));
            }
            let key = if matches!(self.peek(), Some(b'"') | Some(b'`')) {
                self.string()?
            } else {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.i += 1;
                }
                if start == self.i {
                    bail!("expected a map key, found {}", self.rest());
                }
                self.text[start..self.i].to_string()
            };
            self.expect(b':')?;
            let v = self.value()?;
            m.insert(key, v);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                _ => bail!("expected `,` or `}}` in a map, found {}", self.rest()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_parse_with_their_types() {
        assert_eq!(parse("3").unwrap(), json!(3));
        assert!(parse("3.0").unwrap().is_f64());
        assert_eq!(parse("-1e-4").unwrap(), json!(-1e-4));
        assert_eq!(parse("1_000").unwrap(), json!(1000));
        assert_eq!(parse("0x1f").unwrap(), json!(31));
        assert_eq!(parse("true").unwrap(), json!(true));
        assert_eq!(parse(r#""a\"b\n""#).unwrap(), json!("a\"b\n"));
        assert_eq!(
            parse(r#"[1, 2.5, "x", [true]]"#).unwrap(),
            json!([1, 2.5, "x", [true]])
        );
        assert_eq!(
            parse(r#"#{lr: 1e-3, "name": `raw\n`, nested: #{a: []}}"#).unwrap(),
            json!({"lr": 1e-3, "name": "raw\\n", "nested": {"a": []}})
        );
        assert_eq!(parse("()").unwrap(), Value::Null);
    }

    #[test]
    fn expressions_are_refused() {
        for e in [
            "1 + 2",
            r#"write_text("x", "")"#,
            "[1, f()]",
            "x",
            "#{a: 1 * 2}",
            "\"open",
        ] {
            assert!(parse(e).is_err(), "{e} was accepted");
        }
    }
}

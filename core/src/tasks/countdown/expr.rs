//! Exact evaluation of Countdown expressions — the subset of Python expressions that d1's
//! `evaluate_equation` lets through (`^[\d+\-*/().\s]+$`, then `eval`).
//!
//! Reference: Python 3 expression semantics for that character set: integer and float literals
//! (`05` is a syntax error, `05.5` and `.5` and `5.` are not), `+ - * / // **`, unary `+`/`-`
//! (binding looser than `**`: `-2**2 = -4`), parentheses, a line break only inside parentheses.
//! Arithmetic is exact over rationals with `i128` numerator and denominator; on overflow the
//! computation continues in `f64` (as Python's floats would); a division by zero or any syntax
//! error makes the expression invalid. Nesting deeper than [`MAX_DEPTH`] is invalid.

/// Maximum nesting (parentheses and unary operators) accepted.
pub const MAX_DEPTH: usize = 200;

/// A number: an exact rational or, after overflow, a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// `num / den`, reduced, `den > 0`.
    Rational(i128, i128),
    /// A float (after i128 overflow or a non-integer power).
    Float(f64),
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.checked_abs().unwrap_or(i128::MAX);
    b = b.checked_abs().unwrap_or(i128::MAX);
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

fn rational(n: i128, d: i128) -> Option<Number> {
    if d == 0 {
        return None;
    }
    let g = gcd(n, d);
    let (mut n, mut d) = if g > 1 { (n / g, d / g) } else { (n, d) };
    if d < 0 {
        n = n.checked_neg()?;
        d = d.checked_neg()?;
    }
    Some(Number::Rational(n, d))
}

impl Number {
    /// The value as `f64`.
    pub fn to_f64(self) -> f64 {
        match self {
            Number::Rational(n, d) => n as f64 / d as f64,
            Number::Float(f) => f,
        }
    }

    fn is_zero(self) -> bool {
        match self {
            Number::Rational(n, _) => n == 0,
            Number::Float(f) => f == 0.0,
        }
    }

    fn add(self, o: Number) -> Number {
        if let (Number::Rational(a, b), Number::Rational(c, d)) = (self, o) {
            let r = (|| {
                let num = a.checked_mul(d)?.checked_add(c.checked_mul(b)?)?;
                rational(num, b.checked_mul(d)?)
            })();
            if let Some(r) = r {
                return r;
            }
        }
        Number::Float(self.to_f64() + o.to_f64())
    }

    fn neg(self) -> Number {
        match self {
            Number::Rational(n, d) => match n.checked_neg() {
                Some(n) => Number::Rational(n, d),
                None => Number::Float(-(n as f64) / d as f64),
            },
            Number::Float(f) => Number::Float(-f),
        }
    }

    fn sub(self, o: Number) -> Number {
        self.add(o.neg())
    }

    fn mul(self, o: Number) -> Number {
        if let (Number::Rational(a, b), Number::Rational(c, d)) = (self, o) {
            let r = (|| rational(a.checked_mul(c)?, b.checked_mul(d)?))();
            if let Some(r) = r {
                return r;
            }
        }
        Number::Float(self.to_f64() * o.to_f64())
    }

    fn div(self, o: Number) -> Option<Number> {
        if o.is_zero() {
            return None; // ZeroDivisionError
        }
        if let (Number::Rational(a, b), Number::Rational(c, d)) = (self, o) {
            let r = (|| rational(a.checked_mul(d)?, b.checked_mul(c)?))();
            if let Some(r) = r {
                return Some(r);
            }
        }
        Some(Number::Float(self.to_f64() / o.to_f64()))
    }

    fn floor_div(self, o: Number) -> Option<Number> {
        let q = self.div(o)?;
        Some(match q {
            Number::Rational(n, d) => Number::Rational(n.div_euclid(d), 1),
            Number::Float(f) => Number::Float(f.floor()),
        })
    }

    fn pow(self, e: Number) -> Option<Number> {
        if let Number::Rational(en, 1) = e {
            if let Number::Rational(n, d) = self {
                if en.unsigned_abs() <= 256 {
                    if n == 0 && en < 0 {
                        return None; // ZeroDivisionError
                    }
                    let k = en.unsigned_abs() as u32;
                    let exact = (|| {
                        let pn = n.checked_pow(k)?;
                        let pd = d.checked_pow(k)?;
                        if en < 0 {
                            rational(pd, pn)
                        } else {
                            rational(pn, pd)
                        }
                    })();
                    if let Some(r) = exact {
                        return Some(r);
                    }
                }
            }
        }
        let b = self.to_f64();
        let x = e.to_f64();
        if b == 0.0 && x < 0.0 {
            return None;
        }
        if b < 0.0 && x.fract() != 0.0 {
            return None; // Python gives a complex number; not a Countdown value
        }
        let v = b.powf(x);
        if v.is_infinite() {
            return None; // OverflowError
        }
        Some(Number::Float(v))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(Number),
    Plus,
    Minus,
    Star,
    Slash,
    DoubleSlash,
    DoubleStar,
    LParen,
    RParen,
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let last_non_space = chars.iter().rposition(|c| !c.is_whitespace());
    let mut out = Vec::new();
    let mut depth: i64 = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\x0c' => i += 1,
            '\n' | '\r' => {
                if depth == 0 && last_non_space.is_some_and(|l| l > i) {
                    return None; // a statement break outside brackets
                }
                i += 1;
            }
            '0'..='9' | '.' => {
                let start = i;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let int_part: String = chars[start..i].iter().collect();
                let mut frac_part: Option<String> = None;
                if i < chars.len() && chars[i] == '.' {
                    i += 1;
                    let fs = i;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    frac_part = Some(chars[fs..i].iter().collect());
                }
                out.push(Tok::Num(literal(&int_part, frac_part.as_deref())?));
            }
            '+' => {
                out.push(Tok::Plus);
                i += 1;
            }
            '-' => {
                out.push(Tok::Minus);
                i += 1;
            }
            '*' => {
                if chars.get(i + 1) == Some(&'*') {
                    out.push(Tok::DoubleStar);
                    i += 2;
                } else {
                    out.push(Tok::Star);
                    i += 1;
                }
            }
            '/' => {
                if chars.get(i + 1) == Some(&'/') {
                    out.push(Tok::DoubleSlash);
                    i += 2;
                } else {
                    out.push(Tok::Slash);
                    i += 1;
                }
            }
            '(' => {
                depth += 1;
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                depth -= 1;
                out.push(Tok::RParen);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A Python numeric literal from its integer and fractional digit strings.
fn literal(int_part: &str, frac_part: Option<&str>) -> Option<Number> {
    match frac_part {
        None => {
            if int_part.is_empty() {
                return None;
            }
            // Python 3: non-zero decimal integers may not start with 0.
            if int_part.len() > 1
                && int_part.starts_with('0')
                && int_part.bytes().any(|b| b != b'0')
            {
                return None;
            }
            match int_part.parse::<i128>() {
                Ok(n) => Some(Number::Rational(n, 1)),
                Err(_) => int_part.parse::<f64>().ok().map(Number::Float),
            }
        }
        Some(frac) => {
            if int_part.is_empty() && frac.is_empty() {
                return None; // a lone "."
            }
            let digits = format!("{int_part}{frac}");
            let digits = if digits.is_empty() {
                "0".to_string()
            } else {
                digits
            };
            let exact = (|| {
                let n = digits.parse::<i128>().ok()?;
                let d = 10i128.checked_pow(u32::try_from(frac.len()).ok()?)?;
                rational(n, d)
            })();
            match exact {
                Some(r) => Some(r),
                None => format!("{int_part}.{frac}0")
                    .parse::<f64>()
                    .ok()
                    .map(Number::Float),
            }
        }
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn expr(&mut self) -> Option<Number> {
        self.enter()?;
        let mut v = self.term()?;
        loop {
            if self.eat(&Tok::Plus) {
                v = v.add(self.term()?);
            } else if self.eat(&Tok::Minus) {
                v = v.sub(self.term()?);
            } else {
                break;
            }
        }
        self.depth -= 1;
        Some(v)
    }

    fn term(&mut self) -> Option<Number> {
        let mut v = self.factor()?;
        loop {
            if self.eat(&Tok::Star) {
                v = v.mul(self.factor()?);
            } else if self.eat(&Tok::Slash) {
                v = v.div(self.factor()?)?;
            } else if self.eat(&Tok::DoubleSlash) {
                v = v.floor_div(self.factor()?)?;
            } else {
                break;
            }
        }
        Some(v)
    }

    fn factor(&mut self) -> Option<Number> {
        self.enter()?;
        let r = if self.eat(&Tok::Minus) {
            self.factor().map(Number::neg)
        } else if self.eat(&Tok::Plus) {
            self.factor()
        } else {
            self.power()
        };
        self.depth -= 1;
        r
    }

    fn power(&mut self) -> Option<Number> {
        let base = self.atom()?;
        if self.eat(&Tok::DoubleStar) {
            let e = self.factor()?;
            return base.pow(e);
        }
        Some(base)
    }

    fn atom(&mut self) -> Option<Number> {
        match self.peek()?.clone() {
            Tok::Num(n) => {
                self.pos += 1;
                Some(n)
            }
            Tok::LParen => {
                self.pos += 1;
                let v = self.expr()?;
                if !self.eat(&Tok::RParen) {
                    return None;
                }
                Some(v)
            }
            _ => None,
        }
    }
}

/// Evaluates a Countdown expression with Python semantics; `None` where Python's `eval` would
/// raise (syntax error, division by zero) or not give a real number. Only the characters of
/// d1's allowed pattern are accepted; surrounding whitespace is ignored.
pub fn eval_expression(expr: &str) -> Option<Number> {
    let toks = tokenize(expr.trim())?;
    if toks.is_empty() {
        return None;
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let v = p.expr()?;
    if p.pos != p.toks.len() {
        return None;
    }
    Some(v)
}

/// Whether `|value − target| < 1e-5` (d1's test), computed exactly when both are rational.
pub fn close_to(value: Number, target: i64) -> bool {
    let t = Number::Rational(target as i128, 1);
    let diff = value.sub(t);
    match diff {
        Number::Rational(n, d) => {
            // |n/d| < 1e-5  ⇔  |n|·10^5 < d
            match n.unsigned_abs().checked_mul(100_000) {
                Some(lhs) => lhs < d.unsigned_abs(),
                None => false,
            }
        }
        Number::Float(f) => f.abs() < 1e-5,
    }
}

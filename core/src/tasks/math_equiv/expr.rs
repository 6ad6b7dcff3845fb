//! A small LaTeX expression parser (to a tree) and complex-valued evaluator, used to decide
//! whether two answers are numerically or symbolically equal.
//!
//! Reference: the symbolic half of HuggingFace math-verify (latex2sympy parsing, then SymPy
//! `simplify(a − b) == 0`), replaced here by evaluation at fixed pseudo-random points: two
//! expressions are equal when they agree (relative tolerance 1e-6) at every point where both are
//! defined. Arithmetic is complex, so `i`, `\sqrt{-3}` and complex roots work; `\pi`, `e` and
//! `\infty` are constants. Parsing is recursive descent with a depth limit
//! ([`MAX_DEPTH`]); sums and products are n-ary so long chains do not deepen the tree.

use super::latex::Tok;

/// Maximum parser nesting depth; deeper input is rejected (treated as unparseable).
pub(crate) const MAX_DEPTH: usize = 48;
/// Maximum chained `^` / `!` on one factor.
const MAX_CHAIN: usize = 6;

/// A complex number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct C {
    pub re: f64,
    pub im: f64,
}

impl C {
    pub(crate) const fn new(re: f64, im: f64) -> Self {
        C { re, im }
    }
    pub(crate) const fn real(re: f64) -> Self {
        C { re, im: 0.0 }
    }
    const NAN: C = C::real(f64::NAN);
    fn add(self, o: C) -> C {
        C::new(self.re + o.re, self.im + o.im)
    }
    fn sub(self, o: C) -> C {
        C::new(self.re - o.re, self.im - o.im)
    }
    fn mul(self, o: C) -> C {
        if self.im == 0.0 && o.im == 0.0 {
            return C::real(self.re * o.re);
        }
        C::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
    fn div(self, o: C) -> C {
        if self.im == 0.0 && o.im == 0.0 {
            if o.re == 0.0 {
                return C::NAN;
            }
            return C::real(self.re / o.re);
        }
        let d = o.re * o.re + o.im * o.im;
        if d == 0.0 {
            return C::NAN;
        }
        C::new(
            (self.re * o.re + self.im * o.im) / d,
            (self.im * o.re - self.re * o.im) / d,
        )
    }
    fn neg(self) -> C {
        C::new(-self.re, -self.im)
    }
    pub(crate) fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn is_real(self) -> bool {
        self.im.abs() <= 1e-12 * self.re.abs().max(1.0)
    }
    pub(crate) fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
    fn exp(self) -> C {
        let m = self.re.exp();
        if self.im == 0.0 {
            return C::real(m);
        }
        C::new(m * self.im.cos(), m * self.im.sin())
    }
    fn ln(self) -> C {
        if self.im == 0.0 && self.re > 0.0 {
            return C::real(self.re.ln());
        }
        if self.re == 0.0 && self.im == 0.0 {
            return C::NAN;
        }
        C::new(self.abs().ln(), self.im.atan2(self.re))
    }
    fn sqrt(self) -> C {
        if self.im == 0.0 {
            if self.re >= 0.0 {
                return C::real(self.re.sqrt());
            }
            return C::new(0.0, (-self.re).sqrt());
        }
        let r = self.abs().sqrt();
        let th = self.im.atan2(self.re) / 2.0;
        C::new(r * th.cos(), r * th.sin())
    }
    fn powi(self, n: i64) -> C {
        let mut base = self;
        let mut e = n.unsigned_abs();
        let mut acc = C::real(1.0);
        while e > 0 {
            if e & 1 == 1 {
                acc = acc.mul(base);
            }
            base = base.mul(base);
            e >>= 1;
        }
        if n < 0 {
            C::real(1.0).div(acc)
        } else {
            acc
        }
    }
    fn pow(self, w: C) -> C {
        if w.im == 0.0 && w.re.fract() == 0.0 && w.re.abs() <= 4096.0 {
            return self.powi(w.re as i64);
        }
        if self.re == 0.0 && self.im == 0.0 {
            return if w.re > 0.0 { C::real(0.0) } else { C::NAN };
        }
        if self.im == 0.0 && self.re > 0.0 && w.im == 0.0 {
            return C::real(self.re.powf(w.re));
        }
        w.mul(self.ln()).exp()
    }
    fn sin(self) -> C {
        C::new(
            self.re.sin() * self.im.cosh(),
            self.re.cos() * self.im.sinh(),
        )
    }
    fn cos(self) -> C {
        C::new(
            self.re.cos() * self.im.cosh(),
            -self.re.sin() * self.im.sinh(),
        )
    }
}

/// Closeness of two values: relative 1e-6 (plus 1e-9 absolute); infinities equal only to the
/// same infinity; NaN equal to nothing.
pub(crate) fn close(a: C, b: C) -> bool {
    if a.re.is_nan() || a.im.is_nan() || b.re.is_nan() || b.im.is_nan() {
        return false;
    }
    if !a.is_finite() || !b.is_finite() {
        return a.re == b.re && a.im == b.im;
    }
    let d = a.sub(b).abs();
    d <= 1e-9 + 1e-6 * a.abs().max(b.abs())
}

/// Built-in one-argument functions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Func {
    Sin,
    Cos,
    Tan,
    Cot,
    Sec,
    Csc,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Ln,
    Log10,
    Exp,
    Sqrt,
    Abs,
    Floor,
    Ceil,
}

fn func_of(name: &str) -> Option<Func> {
    Some(match name {
        "sin" => Func::Sin,
        "cos" => Func::Cos,
        "tan" => Func::Tan,
        "cot" => Func::Cot,
        "sec" => Func::Sec,
        "csc" => Func::Csc,
        "arcsin" => Func::Asin,
        "arccos" => Func::Acos,
        "arctan" => Func::Atan,
        "sinh" => Func::Sinh,
        "cosh" => Func::Cosh,
        "tanh" => Func::Tanh,
        "ln" => Func::Ln,
        "log" => Func::Ln,
        "lg" => Func::Log10,
        "exp" => Func::Exp,
        _ => return None,
    })
}

const GREEK: &[&str] = &[
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega",
    "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
];

/// Expression tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Num(f64),
    Const(C),
    Var(String),
    /// Terms with a "subtract" flag.
    Sum(Vec<(bool, Expr)>),
    /// Factors with a "divide" flag.
    Prod(Vec<(bool, Expr)>),
    Neg(Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    Apply(Func, Box<Expr>),
    /// `\log_b x`
    Log(Box<Expr>, Box<Expr>),
    /// `\sqrt[n]{x}`
    Root(Box<Expr>, Box<Expr>),
    Binom(Box<Expr>, Box<Expr>),
    Fact(Box<Expr>),
}

impl Expr {
    /// Collects variable names (sorted, deduplicated by the caller).
    pub(crate) fn vars(&self, out: &mut Vec<String>) {
        match self {
            Expr::Num(_) | Expr::Const(_) => {}
            Expr::Var(v) => {
                if !out.contains(v) {
                    out.push(v.clone())
                }
            }
            Expr::Sum(v) | Expr::Prod(v) => v.iter().for_each(|(_, e)| e.vars(out)),
            Expr::Neg(a) | Expr::Apply(_, a) | Expr::Fact(a) => a.vars(out),
            Expr::Pow(a, b) | Expr::Log(a, b) | Expr::Root(a, b) | Expr::Binom(a, b) => {
                a.vars(out);
                b.vars(out)
            }
        }
    }

    /// Evaluates with `env` giving each variable's value.
    pub(crate) fn eval(&self, env: &dyn Fn(&str) -> C) -> C {
        match self {
            Expr::Num(x) => C::real(*x),
            Expr::Const(c) => *c,
            Expr::Var(v) => env(v),
            Expr::Sum(terms) => terms.iter().fold(C::real(0.0), |acc, (neg, e)| {
                let v = e.eval(env);
                if *neg {
                    acc.sub(v)
                } else {
                    acc.add(v)
                }
            }),
            Expr::Prod(fs) => fs.iter().fold(C::real(1.0), |acc, (div, e)| {
                let v = e.eval(env);
                if *div {
                    acc.div(v)
                } else {
                    acc.mul(v)
                }
            }),
            Expr::Neg(a) => a.eval(env).neg(),
            Expr::Pow(a, b) => a.eval(env).pow(b.eval(env)),
            Expr::Apply(f, a) => apply(*f, a.eval(env)),
            Expr::Log(b, x) => x.eval(env).ln().div(b.eval(env).ln()),
            Expr::Root(n, x) => {
                let n = n.eval(env);
                let x = x.eval(env);
                if n.is_real() && x.is_real() && n.re.fract() == 0.0 && n.re != 0.0 {
                    let k = n.re;
                    if x.re < 0.0 && (k as i64) % 2 != 0 {
                        return C::real(-(-x.re).powf(1.0 / k));
                    }
                }
                x.pow(C::real(1.0).div(n))
            }
            Expr::Binom(n, k) => {
                let n = n.eval(env);
                let k = k.eval(env);
                if !(n.is_real() && k.is_real()) {
                    return C::NAN;
                }
                let (n, k) = (n.re, k.re);
                if k.fract() != 0.0 || !(0.0..=1000.0).contains(&k) {
                    return C::NAN;
                }
                let mut acc = 1.0;
                let mut i = 0.0;
                while i < k {
                    acc = acc * (n - i) / (i + 1.0);
                    i += 1.0;
                }
                C::real(acc)
            }
            Expr::Fact(a) => {
                let v = a.eval(env);
                if !v.is_real() || v.re < 0.0 || v.re.fract() != 0.0 || v.re > 170.0 {
                    return C::NAN;
                }
                let mut acc = 1.0;
                let mut i = 2.0;
                while i <= v.re {
                    acc *= i;
                    i += 1.0;
                }
                C::real(acc)
            }
        }
    }
}

fn real_only(x: C, f: impl Fn(f64) -> f64) -> C {
    if x.is_real() {
        C::real(f(x.re))
    } else {
        C::NAN
    }
}

fn apply(f: Func, x: C) -> C {
    match f {
        Func::Sin => x.sin(),
        Func::Cos => x.cos(),
        Func::Tan => x.sin().div(x.cos()),
        Func::Cot => x.cos().div(x.sin()),
        Func::Sec => C::real(1.0).div(x.cos()),
        Func::Csc => C::real(1.0).div(x.sin()),
        Func::Asin => real_only(x, f64::asin),
        Func::Acos => real_only(x, f64::acos),
        Func::Atan => real_only(x, f64::atan),
        Func::Sinh => x.exp().sub(x.neg().exp()).div(C::real(2.0)),
        Func::Cosh => x.exp().add(x.neg().exp()).div(C::real(2.0)),
        Func::Tanh => {
            let a = x.exp();
            let b = x.neg().exp();
            a.sub(b).div(a.add(b))
        }
        Func::Ln => x.ln(),
        Func::Log10 => x.ln().div(C::real(std::f64::consts::LN_10)),
        Func::Exp => x.exp(),
        Func::Sqrt => x.sqrt(),
        Func::Abs => C::real(x.abs()),
        Func::Floor => real_only(x, f64::floor),
        Func::Ceil => real_only(x, f64::ceil),
    }
}

/// Parses a whole token slice as one expression; `None` if it is not one.
pub(crate) fn parse(toks: &[Tok]) -> Option<Expr> {
    if toks.is_empty() {
        return None;
    }
    let toks = expand_words(toks)?;
    let mut p = Parser {
        toks: &toks,
        pos: 0,
        depth: 0,
    };
    let e = p.sum()?;
    if p.pos == toks.len() {
        Some(e)
    } else {
        None
    }
}

/// Plain-letter function names (`sin x`, `sqrt2`) become commands; any other run of three or
/// more letters (a word such as `east`) makes the input a non-expression, as do words from
/// `\text{…}` and short English words.
fn expand_words(toks: &[Tok]) -> Option<Vec<Tok>> {
    const NAMES: &[&str] = &[
        "arcsin", "arccos", "arctan", "sqrt", "sinh", "cosh", "tanh", "sin", "cos", "tan", "cot",
        "sec", "csc", "log", "exp", "ln", "pi",
    ];
    const STOP: &[&str] = &[
        "no", "on", "or", "an", "is", "it", "in", "at", "to", "of", "up", "so", "as", "if", "be",
        "by", "we", "he", "me", "my", "do", "go",
    ];
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Word(_) => return None,
            Tok::Ch(c) if c.is_ascii_alphabetic() => {
                let mut j = i;
                let mut run = String::new();
                while let Some(Tok::Ch(c)) = toks.get(j) {
                    if c.is_ascii_alphabetic() {
                        run.push(*c);
                        j += 1;
                    } else {
                        break;
                    }
                }
                // a subscript letter run like x_ab stays as is (handled by the parser)
                let after_underscore = i > 0 && toks[i - 1].is_ch('_');
                if after_underscore {
                    out.extend_from_slice(&toks[i..j]);
                    i = j;
                    continue;
                }
                let mut k = 0;
                let bytes = run.as_bytes();
                let mut unknown_len = 0usize;
                while k < bytes.len() {
                    if let Some(name) = NAMES.iter().find(|n| run[k..].starts_with(**n)) {
                        if unknown_len >= 3 {
                            return None;
                        }
                        unknown_len = 0;
                        out.push(Tok::Cmd((*name).to_string()));
                        k += name.len();
                    } else {
                        out.push(Tok::Ch(bytes[k] as char));
                        unknown_len += 1;
                        k += 1;
                    }
                }
                if unknown_len >= 3
                    || (run.len() == 2 && STOP.contains(&run.to_ascii_lowercase().as_str()))
                {
                    return None;
                }
                i = j;
            }
            t => {
                out.push(t.clone());
                i += 1;
            }
        }
    }
    Some(out)
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn peek_ch(&self, c: char) -> bool {
        self.peek().is_some_and(|t| t.is_ch(c))
    }
    fn eat_ch(&mut self, c: char) -> bool {
        if self.peek_ch(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            None
        } else {
            Some(())
        }
    }
    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn sum(&mut self) -> Option<Expr> {
        self.enter()?;
        let r = self.sum_inner();
        self.leave();
        r
    }

    fn sum_inner(&mut self) -> Option<Expr> {
        let mut terms = Vec::new();
        let mut neg = false;
        loop {
            if self.eat_ch('+') {
            } else if self.eat_ch('-') {
                neg = !neg;
            } else {
                break;
            }
        }
        terms.push((neg, self.product()?));
        loop {
            if self.eat_ch('+') {
                terms.push((false, self.unary_product()?));
            } else if self.eat_ch('-') {
                terms.push((true, self.unary_product()?));
            } else {
                break;
            }
        }
        if terms.len() == 1 && !terms[0].0 {
            return terms.pop().map(|(_, e)| e);
        }
        Some(Expr::Sum(terms))
    }

    /// A product that may start with extra signs (`a + -b`).
    fn unary_product(&mut self) -> Option<Expr> {
        let mut neg = false;
        loop {
            if self.eat_ch('+') {
            } else if self.eat_ch('-') {
                neg = !neg;
            } else {
                break;
            }
        }
        let p = self.product()?;
        Some(if neg { Expr::Neg(Box::new(p)) } else { p })
    }

    fn product(&mut self) -> Option<Expr> {
        let mut fs = vec![(false, self.unary()?)];
        loop {
            if self.eat_ch('*') {
                fs.push((false, self.unary()?));
            } else if self.eat_ch('/') {
                fs.push((true, self.unary()?));
            } else if self.starts_primary(true) {
                fs.push((false, self.power()?));
            } else {
                break;
            }
        }
        if fs.len() == 1 {
            return fs.pop().map(|(_, e)| e);
        }
        Some(Expr::Prod(fs))
    }

    fn unary(&mut self) -> Option<Expr> {
        self.enter()?;
        let r = if self.eat_ch('-') {
            self.unary().map(|e| Expr::Neg(Box::new(e)))
        } else if self.eat_ch('+') {
            self.unary()
        } else {
            self.power()
        };
        self.leave();
        r
    }

    fn power(&mut self) -> Option<Expr> {
        let mut base = self.postfix()?;
        let mut chain = 0;
        while self.eat_ch('^') {
            chain += 1;
            if chain > MAX_CHAIN {
                return None;
            }
            let e = self.exponent()?;
            base = Expr::Pow(Box::new(base), Box::new(e));
        }
        Some(base)
    }

    fn exponent(&mut self) -> Option<Expr> {
        self.enter()?;
        let r = self.exponent_inner();
        self.leave();
        r
    }

    fn exponent_inner(&mut self) -> Option<Expr> {
        if self.eat_ch('-') {
            return self.exponent().map(|e| Expr::Neg(Box::new(e)));
        }
        if self.eat_ch('+') {
            return self.exponent();
        }
        match self.peek()? {
            Tok::Ch('{') => self.group(),
            Tok::Ch(c) if c.is_ascii_digit() => self.number(false),
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Option<Expr> {
        let mut p = self.primary()?;
        let mut chain = 0;
        while self.eat_ch('!') {
            chain += 1;
            if chain > MAX_CHAIN {
                return None;
            }
            p = Expr::Fact(Box::new(p));
        }
        Some(p)
    }

    /// Whether the next token can begin an implicitly multiplied factor.
    fn starts_primary(&self, allow_funcs: bool) -> bool {
        match self.peek() {
            Some(Tok::Ch(c)) => c.is_ascii_alphanumeric() || matches!(c, '(' | '{'),
            Some(Tok::Cmd(n)) => {
                matches!(
                    n.as_str(),
                    "frac" | "sqrt" | "binom" | "pi" | "infty" | "lfloor" | "lceil" | "imath"
                ) || GREEK.contains(&n.as_str())
                    || (allow_funcs && func_of(n).is_some())
            }
            _ => false,
        }
    }

    fn group(&mut self) -> Option<Expr> {
        if !self.eat_ch('{') {
            return None;
        }
        let e = self.sum()?;
        if !self.eat_ch('}') {
            return None;
        }
        Some(e)
    }

    /// A LaTeX macro argument: a braced group or a single token.
    fn arg(&mut self) -> Option<Expr> {
        match self.peek()? {
            Tok::Ch('{') => self.group(),
            Tok::Ch(c) if c.is_ascii_digit() => {
                let d = c.to_digit(10)? as f64;
                self.pos += 1;
                Some(Expr::Num(d))
            }
            Tok::Ch(c) if c.is_ascii_alphabetic() => self.variable(),
            Tok::Cmd(_) => self.primary(),
            _ => None,
        }
    }

    fn number(&mut self, allow_mixed: bool) -> Option<Expr> {
        let mut s = String::new();
        while let Some(Tok::Ch(c)) = self.peek() {
            if c.is_ascii_digit() {
                s.push(*c);
                self.pos += 1;
            } else {
                break;
            }
        }
        let mut integer = true;
        if self.peek_ch('.')
            && matches!(self.toks.get(self.pos + 1), Some(Tok::Ch(c)) if c.is_ascii_digit())
        {
            integer = false;
            s.push('.');
            self.pos += 1;
            while let Some(Tok::Ch(c)) = self.peek() {
                if c.is_ascii_digit() {
                    s.push(*c);
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        if s.is_empty() || s == "." {
            return None;
        }
        // scientific notation 1.5e3 / 2E-4
        if matches!(self.peek(), Some(Tok::Ch('e' | 'E'))) {
            let mut j = self.pos + 1;
            let mut exp = String::new();
            if let Some(Tok::Ch(c @ ('+' | '-'))) = self.toks.get(j) {
                exp.push(*c);
                j += 1;
            }
            let digits_start = exp.len();
            while let Some(Tok::Ch(c)) = self.toks.get(j) {
                if c.is_ascii_digit() {
                    exp.push(*c);
                    j += 1;
                } else {
                    break;
                }
            }
            if exp.len() > digits_start {
                self.pos = j;
                s.push('e');
                s.push_str(&exp);
                integer = false;
            }
        }
        // a subscript on a number is a base (52_8): not an expression
        if self.peek_ch('_') {
            return None;
        }
        let v: f64 = s.parse().ok()?;
        if allow_mixed && integer && self.peek().is_some_and(|t| t.is_cmd("frac")) {
            if let Some((n, d)) = self.mixed_fraction() {
                return Some(Expr::Num(v + n / d));
            }
        }
        Some(Expr::Num(v))
    }

    /// `\frac{int}{int}` right after an integer: a mixed number (`1\frac{4}{5}` = 9/5).
    fn mixed_fraction(&mut self) -> Option<(f64, f64)> {
        let save = self.pos;
        self.pos += 1; // \frac
        let n = self.int_arg();
        let d = n.and_then(|_| self.int_arg());
        match (n, d) {
            (Some(n), Some(d)) if d != 0.0 => Some((n, d)),
            _ => {
                self.pos = save;
                None
            }
        }
    }

    fn int_arg(&mut self) -> Option<f64> {
        match self.peek()? {
            Tok::Ch(c) if c.is_ascii_digit() => {
                let v = c.to_digit(10)? as f64;
                self.pos += 1;
                Some(v)
            }
            Tok::Ch('{') => {
                let mut j = self.pos + 1;
                let mut s = String::new();
                while let Some(Tok::Ch(c)) = self.toks.get(j) {
                    if c.is_ascii_digit() {
                        s.push(*c);
                        j += 1;
                    } else {
                        break;
                    }
                }
                if s.is_empty() || !self.toks.get(j).is_some_and(|t| t.is_ch('}')) {
                    return None;
                }
                self.pos = j + 1;
                s.parse().ok()
            }
            _ => None,
        }
    }

    fn variable(&mut self) -> Option<Expr> {
        let Some(Tok::Ch(c)) = self.peek() else {
            return None;
        };
        let c = *c;
        self.pos += 1;
        let mut name = c.to_string();
        if self.eat_ch('_') {
            let sub = match self.peek()? {
                Tok::Ch('{') => {
                    let start = self.pos + 1;
                    let mut j = start;
                    while j < self.toks.len() && !self.toks[j].is_ch('}') {
                        if self.toks[j].is_ch('{') || j - start > 16 {
                            return None;
                        }
                        j += 1;
                    }
                    if j >= self.toks.len() {
                        return None;
                    }
                    let s = super::latex::serialize(&self.toks[start..j]);
                    self.pos = j + 1;
                    s
                }
                Tok::Ch(s) if s.is_ascii_alphanumeric() => {
                    let s = s.to_string();
                    self.pos += 1;
                    s
                }
                _ => return None,
            };
            name.push('_');
            name.push_str(&sub);
            return Some(Expr::Var(name));
        }
        Some(match c {
            'i' => Expr::Const(C::new(0.0, 1.0)),
            'e' => Expr::Const(C::real(std::f64::consts::E)),
            _ => Expr::Var(name),
        })
    }

    fn primary(&mut self) -> Option<Expr> {
        self.enter()?;
        let r = self.primary_inner();
        self.leave();
        r
    }

    fn primary_inner(&mut self) -> Option<Expr> {
        match self.peek()?.clone() {
            Tok::Ch(c) if c.is_ascii_digit() => self.number(true),
            Tok::Ch('.') => {
                // .5
                if matches!(self.toks.get(self.pos + 1), Some(Tok::Ch(c)) if c.is_ascii_digit()) {
                    let mut s = String::from("0.");
                    self.pos += 1;
                    while let Some(Tok::Ch(c)) = self.peek() {
                        if c.is_ascii_digit() {
                            s.push(*c);
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                    s.parse().ok().map(Expr::Num)
                } else {
                    None
                }
            }
            Tok::Ch(c) if c.is_ascii_alphabetic() => self.variable(),
            Tok::Ch('(') => {
                self.pos += 1;
                let e = self.sum()?;
                self.eat_ch(')').then_some(e)
            }
            Tok::Ch('[') => {
                self.pos += 1;
                let e = self.sum()?;
                self.eat_ch(']').then_some(e)
            }
            Tok::Ch('{') => self.group(),
            Tok::Ch('|') => {
                self.pos += 1;
                let e = self.sum()?;
                self.eat_ch('|')
                    .then(|| Expr::Apply(Func::Abs, Box::new(e)))
            }
            Tok::Cmd(name) => {
                self.pos += 1;
                self.command(&name)
            }
            _ => None,
        }
    }

    fn command(&mut self, name: &str) -> Option<Expr> {
        match name {
            "frac" => {
                let a = self.arg()?;
                let b = self.arg()?;
                Some(Expr::Prod(vec![(false, a), (true, b)]))
            }
            "sqrt" => {
                if self.eat_ch('[') {
                    let n = self.sum()?;
                    if !self.eat_ch(']') {
                        return None;
                    }
                    let x = self.arg()?;
                    return Some(Expr::Root(Box::new(n), Box::new(x)));
                }
                let x = self.arg()?;
                Some(Expr::Apply(Func::Sqrt, Box::new(x)))
            }
            "binom" => {
                let a = self.arg()?;
                let b = self.arg()?;
                Some(Expr::Binom(Box::new(a), Box::new(b)))
            }
            "pi" => Some(Expr::Const(C::real(std::f64::consts::PI))),
            "infty" => Some(Expr::Const(C::real(f64::INFINITY))),
            "imath" => Some(Expr::Const(C::new(0.0, 1.0))),
            "lfloor" | "lceil" => {
                let e = self.sum()?;
                let close = if name == "lfloor" { "rfloor" } else { "rceil" };
                if !self.peek().is_some_and(|t| t.is_cmd(close)) {
                    return None;
                }
                self.pos += 1;
                let f = if name == "lfloor" {
                    Func::Floor
                } else {
                    Func::Ceil
                };
                Some(Expr::Apply(f, Box::new(e)))
            }
            n if GREEK.contains(&n) => Some(Expr::Var(n.to_string())),
            n => {
                let f = func_of(n)?;
                self.function(f, n == "log")
            }
        }
    }

    fn function(&mut self, f: Func, is_log: bool) -> Option<Expr> {
        let mut base: Option<Expr> = None;
        if is_log && self.eat_ch('_') {
            base = Some(self.arg()?);
        }
        let mut power: Option<Expr> = None;
        if self.eat_ch('^') {
            power = Some(self.exponent()?);
        }
        let arg = if self.peek_ch('(') {
            self.pos += 1;
            let e = self.sum()?;
            if !self.eat_ch(')') {
                return None;
            }
            e
        } else if self.peek_ch('{') {
            self.group()?
        } else {
            // `\sin 2x`: an implicit product, stopping at the next function
            let mut fs = vec![(false, self.power()?)];
            while self.starts_primary(false) {
                fs.push((false, self.power()?));
            }
            if fs.len() == 1 {
                fs.pop()?.1
            } else {
                Expr::Prod(fs)
            }
        };
        let applied = match base {
            Some(b) => Expr::Log(Box::new(b), Box::new(arg)),
            None => Expr::Apply(f, Box::new(arg)),
        };
        Some(match power {
            Some(p) => Expr::Pow(Box::new(applied), Box::new(p)),
            None => applied,
        })
    }
}

/// Deterministic pseudo-random value of variable `name` at evaluation point `k` (in
/// [0.35, 2.45], away from 0 and 1 where identities degenerate).
pub(crate) fn var_value(name: &str, k: usize) -> C {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    C::real(0.35 + 2.1 * u)
}

/// Number of evaluation points for expressions with variables.
pub(crate) const POINTS: usize = 6;

/// Whether two expressions agree: equal constants, or equal at every one of [`POINTS`] points
/// where both are defined (and at least two such points).
pub(crate) fn equivalent(a: &Expr, b: &Expr) -> bool {
    let mut vars = Vec::new();
    a.vars(&mut vars);
    b.vars(&mut vars);
    if vars.is_empty() {
        return close(a.eval(&|_| C::NAN), b.eval(&|_| C::NAN));
    }
    let mut agreed = 0;
    for k in 0..POINTS {
        let env = |v: &str| var_value(v, k);
        let x = a.eval(&env);
        let y = b.eval(&env);
        let x_bad = x.re.is_nan() || x.im.is_nan();
        let y_bad = y.re.is_nan() || y.im.is_nan();
        if x_bad && y_bad {
            continue;
        }
        if !close(x, y) {
            return false;
        }
        agreed += 1;
    }
    agreed >= 2
}

/// Whether `a = c·b` for one non-zero constant `c` at every point (for equations such as
/// `2x + 2y = 2` vs `x + y = 1`). Needs variables.
pub(crate) fn proportional(a: &Expr, b: &Expr) -> bool {
    let mut vars = Vec::new();
    a.vars(&mut vars);
    b.vars(&mut vars);
    if vars.is_empty() {
        return false;
    }
    let mut ratio: Option<C> = None;
    let mut agreed = 0;
    for k in 0..POINTS {
        let env = |v: &str| var_value(v, k);
        let x = a.eval(&env);
        let y = b.eval(&env);
        if !x.is_finite() || !y.is_finite() {
            continue;
        }
        let zero_x = x.abs() <= 1e-9;
        let zero_y = y.abs() <= 1e-9;
        if zero_x || zero_y {
            if zero_x != zero_y {
                return false;
            }
            agreed += 1;
            continue;
        }
        let r = x.div(y);
        match ratio {
            None => ratio = Some(r),
            Some(r0) => {
                if !close(r, r0) {
                    return false;
                }
            }
        }
        agreed += 1;
    }
    agreed >= 2 && ratio.is_some()
}

/// For constant expressions: whether both round to the same value at `places` decimals
/// (math-verify's `Float.round(float_rounding)` comparison). `None` when a side has variables,
/// is not finite, or is too large to round in `f64`.
pub(crate) fn rounded_equal(a: &Expr, b: &Expr, places: u32) -> Option<bool> {
    let mut vars = Vec::new();
    a.vars(&mut vars);
    b.vars(&mut vars);
    if !vars.is_empty() {
        return None;
    }
    let x = a.eval(&|_| C::NAN);
    let y = b.eval(&|_| C::NAN);
    if !x.is_finite() || !y.is_finite() || !x.is_real() || !y.is_real() {
        return None;
    }
    let scale = 10f64.powi(places.min(15) as i32);
    let (sx, sy) = (x.re * scale, y.re * scale);
    if sx.abs() > 1e15 || sy.abs() > 1e15 {
        return None;
    }
    Some(sx.round() == sy.round())
}

impl Expr {
    /// A copy with variables renamed by `map` (others unchanged).
    fn renamed(&self, map: &[(String, String)]) -> Expr {
        let r = |e: &Expr| Box::new(e.renamed(map));
        match self {
            Expr::Num(_) | Expr::Const(_) => self.clone(),
            Expr::Var(v) => Expr::Var(
                map.iter()
                    .find(|(from, _)| from == v)
                    .map_or_else(|| v.clone(), |(_, to)| to.clone()),
            ),
            Expr::Sum(v) => Expr::Sum(v.iter().map(|(n, e)| (*n, e.renamed(map))).collect()),
            Expr::Prod(v) => Expr::Prod(v.iter().map(|(n, e)| (*n, e.renamed(map))).collect()),
            Expr::Neg(a) => Expr::Neg(r(a)),
            Expr::Apply(f, a) => Expr::Apply(*f, r(a)),
            Expr::Fact(a) => Expr::Fact(r(a)),
            Expr::Pow(a, b) => Expr::Pow(r(a), r(b)),
            Expr::Log(a, b) => Expr::Log(r(a), r(b)),
            Expr::Root(a, b) => Expr::Root(r(a), r(b)),
            Expr::Binom(a, b) => Expr::Binom(r(a), r(b)),
        }
    }
}

/// Whether `b` equals `a` after renaming its variables to `a`'s, in sorted order, when both
/// have the same number of variables (math-verify's non-strict mode).
pub(crate) fn equivalent_renamed(a: &Expr, b: &Expr) -> bool {
    let (mut va, mut vb) = (Vec::new(), Vec::new());
    a.vars(&mut va);
    b.vars(&mut vb);
    if va.is_empty() || va.len() != vb.len() {
        return false;
    }
    va.sort();
    vb.sort();
    let map: Vec<(String, String)> = vb.into_iter().zip(va).collect();
    equivalent(a, &b.renamed(&map))
}

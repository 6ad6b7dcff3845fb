//! Table test of `tasks::math_equiv`: realistic answer forms drawn from the MATH-500 `answer`
//! field (`data/math500_test.jsonl`), paired with equivalent and non-equivalent rewrites. Each row
//! says why the verdict holds.

use workbench_core::tasks::math_equiv::{
    extract_answer, is_equivalent, last_boxed, normalize, verify,
};

/// (reference, candidate, expected, why)
const CASES: &[(&str, &str, bool, &str)] = &[
    // ---- equivalent: normalisation -------------------------------------------------------
    (
        r"\left( 3, \frac{\pi}{2} \right)",
        r"(3,\frac{\pi}{2})",
        true,
        "\\left/\\right and spaces dropped",
    ),
    (
        r"\left( 3, \frac{\pi}{2} \right)",
        r"(3, \pi/2)",
        true,
        "\\frac{a}{b} equals a/b inside a tuple",
    ),
    (r"\frac{14}{3}", "14/3", true, "slash fraction"),
    (r"\frac{14}{3}", r"4\frac{2}{3}", true, "mixed number 4 2/3"),
    (
        r"\frac{14}{3}",
        "4.6666667",
        true,
        "decimal within 1e-6 relative",
    ),
    ("9", "9.0", true, "trailing .0"),
    (r"\text{Evelyn}", "Evelyn", true, "\\text wrapper removed"),
    (
        r"\text{Evelyn}",
        "evelyn",
        true,
        "words compare case-insensitively",
    ),
    (r"90^\circ", "90", true, "degree sign dropped"),
    (r"90^\circ", r"90^{\circ}", true, "both degree spellings"),
    (
        r"3\sqrt{13}",
        r"\sqrt{117}",
        true,
        "3*sqrt(13) = sqrt(117) numerically",
    ),
    ("6 - 5i", "6-5i", true, "complex number, spaces"),
    ("6 - 5i", "-5i + 6", true, "complex number, reordered"),
    (
        "x=5",
        "5",
        true,
        "equation with a variable on the left vs its value",
    ),
    ("1,-2", "-2, 1", true, "solution lists are order-free"),
    ("1,-2", r"\{1,-2\}", true, "bare list vs braced set"),
    ("52_8", "52_{8}", true, "base subscript braces"),
    (r"11\sqrt2", r"11\sqrt{2}", true, "\\sqrt2 = \\sqrt{2}"),
    (r"\frac{243}{625}", "0.3888", true, "exact decimal"),
    ("3, 5, 7", "7,5,3", true, "order-free list"),
    ("1.25", r"\frac{5}{4}", true, "decimal vs fraction"),
    ("1.25", r"\frac54", true, "\\frac54 = 5/4"),
    (
        "x^5 - x^4 + x^3 - x^2 + x - 1",
        "(x-1)(x^4+x^2+1)",
        true,
        "factored polynomial, checked at sample points",
    ),
    (r"-\frac{\pi}{6}", r"-\pi/6", true, "pi fraction"),
    ("0.15", r"\frac{3}{20}", true, "decimal vs fraction"),
    ("(6,31,-1)", "(6, 31, -1)", true, "tuple with spaces"),
    (r"\frac{35}{64}", "0.546875", true, "exact decimal"),
    ("x^3+3x-6", "3x + x^3 - 6", true, "reordered polynomial"),
    ("40_9", "40_9", true, "identical base-9 numeral"),
    (
        r"\frac{3\sqrt{3}}{4}",
        r"\frac{3}{4}\sqrt{3}",
        true,
        "coefficient moved out of the fraction",
    ),
    (
        r"\cot x",
        r"\frac{\cos x}{\sin x}",
        true,
        "trig identity at sample points",
    ),
    ("(-2,1)", r"\left(-2, 1\right)", true, "\\left/\\right"),
    (
        r"1 \pm \sqrt{19}",
        r"1+\sqrt{19}, 1-\sqrt{19}",
        true,
        "\\pm expands to two solutions",
    ),
    (r"\text{east}", "East", true, "word, case-insensitive"),
    ("2k+2", "2(k+1)", true, "factored"),
    (
        r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}",
        r"\begin{pmatrix} -\frac13 \\ \frac23 \\ \frac53 \end{pmatrix}",
        true,
        "matrix entries as fractions",
    ),
    (
        r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}",
        "(-1/3, 2/3, 5/3)",
        true,
        "column vector vs tuple",
    ),
    (r"145^\circ", "145", true, "degrees"),
    ("(a+5)(b+2)", "ab + 2a + 5b + 10", true, "expanded product"),
    ("(3,4]", "(3, 4]", true, "half-open interval"),
    (r"\frac43", r"\frac{4}{3}", true, "\\frac43"),
    (r"\text{even}", "even", true, "word"),
    ("1+274i", "274i+1", true, "complex reordered"),
    ("4210_{5}", "4210_5", true, "base subscript braces"),
    (
        r"\frac{3840}{289}",
        "13.2871972",
        true,
        "decimal within tolerance",
    ),
    (r"3 \sqrt{5}", r"\sqrt{45}", true, "surd"),
    ("(15,-29)", "(15, -29)", true, "point"),
    (
        r"\frac{\sqrt{3}}{3}",
        r"\frac{1}{\sqrt{3}}",
        true,
        "rationalised denominator",
    ),
    (r"2\sqrt{113}", r"\sqrt{452}", true, "surd"),
    (r"30^\circ", "30", true, "degrees"),
    (r"\frac65", "1.2", true, "\\frac65"),
    ("3.21", "3.210", true, "trailing zero"),
    (r"\dfrac{17}{50}", "0.34", true, "\\dfrac"),
    (r"-\frac{35}{9}", "-35/9", true, "negative fraction"),
    (
        r"-\sqrt{3}",
        "-1.7320508",
        true,
        "decimal approximation within 1e-6",
    ),
    (
        r"\frac{270}7\text{ degrees}",
        r"\frac{270}{7}",
        true,
        "unit in \\text dropped",
    ),
    (
        ".0000672",
        r"6.72 \times 10^{-5}",
        true,
        "scientific notation with \\times",
    ),
    (".0000672", "6.72e-5", true, "e-notation"),
    (
        "5x - 7y + 11z + 4 = 0",
        "-5x + 7y - 11z - 4 = 0",
        true,
        "plane equation times -1",
    ),
    (r"(2,\infty)", r"(2, \infty)", true, "interval to infinity"),
    (r"10,\!080", "10080", true, "thousands separator with \\!"),
    (
        r"\begin{pmatrix} -2 \\ -14 \\ -7 \end{pmatrix}",
        r"\begin{bmatrix} -2 \\ -14 \\ -7 \end{bmatrix}",
        true,
        "pmatrix vs bmatrix",
    ),
    (
        r"\left( \frac{3}{2}, -13 \right)",
        "(1.5, -13)",
        true,
        "tuple entries numerically",
    ),
    (
        r"11,\! 111,\! 111,\! 100",
        "11111111100",
        true,
        "several thousands separators",
    ),
    (r"\text{(C)}", "C", true, "multiple choice letter"),
    (
        r"\text{(C)}",
        "(C)",
        true,
        "multiple choice with parentheses",
    ),
    (r"288 \pi", r"288\pi", true, "implicit product with pi"),
    (r"\frac{1997}{2}", "998.5", true, "half"),
    (r"\frac 59", "5/9", true, "\\frac 59 with a space"),
    (
        r"\$32,\!348",
        "32348",
        true,
        "dollar sign and thousands separator",
    ),
    (r"\$32,\!348", r"\$32,348", true, "dollar amounts"),
    ("-13x+3", "3-13x", true, "linear polynomial reordered"),
    (
        r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}",
        r"\begin{pmatrix}-1&0\\0&-1\end{pmatrix}",
        true,
        "2x2 matrix spacing",
    ),
    (
        r"864 \mbox{ inches}^2",
        "864",
        true,
        "\\mbox unit with a square",
    ),
    (r"1\frac{4}{5}", r"\frac{9}{5}", true, "mixed number"),
    (r"1\frac{4}{5}", "1.8", true, "mixed number as decimal"),
    (r"\dfrac{33}{100}", "0.33", true, "\\dfrac as decimal"),
    (r"18+2\pi", r"2\pi+18", true, "reordered"),
    (r"\sqrt{53}", "53^{1/2}", true, "root as power"),
    (r"7\pi", r"7 \pi", true, "spacing"),
    (
        r"3 \pm 2 \sqrt{2}",
        r"3+2\sqrt2, 3-2\sqrt2",
        true,
        "\\pm with a surd",
    ),
    (
        r"\left(\frac{3}{5},\frac{8}{3}\right]",
        "(0.6, 8/3]",
        true,
        "half-open interval numerically",
    ),
    (r"5.4 \text{ cents}", "5.4", true, "unit word in \\text"),
    (r"\frac9{19}", r"\frac{9}{19}", true, "\\frac9{19}"),
    (
        r"(-\infty, 0]",
        r"(-\infty,0]",
        true,
        "interval from -infinity",
    ),
    (r"1+2\sqrt{3}", r"2\sqrt{3}+1", true, "reordered surd"),
    (r"12\pi", "37.69911184", true, "pi multiple as decimal"),
    (
        r"\frac{11+9a}{20}",
        r"\frac{9a+11}{20}",
        true,
        "symbolic numerator reordered",
    ),
    (
        r"\frac{11+9a}{20}",
        "0.55 + 0.45a",
        true,
        "symbolic, distributed",
    ),
    (r"-\frac{24}{25}", "-0.96", true, "negative decimal"),
    ("4343_6", "4343_6", true, "identical base-6 numeral"),
    (r"55^\circ", r"55^{\circ}", true, "degree spellings"),
    ("58,500", "58500", true, "thousands separator"),
    ("6r^2-4r-24", "2(3r^2-2r-12)", true, "common factor"),
    (r"\frac{1}{16}", "0.0625", true, "exact decimal"),
    (r"11 \sqrt{5} + 11", r"11(\sqrt5+1)", true, "factored surd"),
    (
        r"(-\sqrt{3}, \sqrt{3})",
        r"(-\sqrt3,\sqrt3)",
        true,
        "open interval of surds",
    ),
    (r"\text{ellipse}", "ellipse", true, "word"),
    (r"16 \sqrt{3}", r"\sqrt{768}", true, "surd"),
    ("(1,-16,-4,43)", "(1, -16, -4, 43)", true, "4-tuple"),
    (
        r"(0,9) \cup (9,36)",
        r"(9,36) \cup (0,9)",
        true,
        "union is order-free",
    ),
    (r"\frac{20000}{\pi}", r"20000/\pi", true, "division by pi"),
    (r"x \in [-2,7]", "[-2,7]", true, "x \\in S is S"),
    ("15x - 80", "-80+15x", true, "reordered"),
    (r"\frac{\sqrt{21}}{5}", r"\sqrt{21}/5", true, "slash"),
    (r"\frac 34", "0.75", true, "\\frac 34"),
    (r"\text{Navin}", "Navin", true, "word"),
    ("326.5", r"\frac{653}{2}", true, "decimal vs fraction"),
    ("1 - 12i", "1-12i", true, "complex spacing"),
    (
        r"\begin{pmatrix} 1/5 \\ -18/5 \end{pmatrix}",
        r"\begin{pmatrix} 0.2 \\ -3.6 \end{pmatrix}",
        true,
        "matrix entries as decimals",
    ),
    ("5r^5", "5 r^{5}", true, "exponent braces"),
    (
        r"\{1\pm\sqrt{5},-2\}",
        r"-2, 1+\sqrt5, 1-\sqrt5",
        true,
        "set with \\pm vs list",
    ),
    ("3R^2", "3 R^2", true, "capital variable"),
    (
        r"\left[ \frac{\pi^2}{8}, \frac{5 \pi^2}{4} \right]",
        r"[\pi^2/8, 5\pi^2/4]",
        true,
        "closed interval of pi expressions",
    ),
    (".35625", "0.35625", true, "leading dot"),
    (
        r"(-\infty, 2) \cup (3, \infty)",
        r"(3,\infty)\cup(-\infty,2)",
        true,
        "union reordered",
    ),
    (
        "x^8 + x^7 + x^6 + x^5 + x^4 + x^3 + x^2 + x + 1",
        r"\frac{x^9-1}{x-1}",
        true,
        "geometric series closed form",
    ),
    ("y = 2x + 3", "2x+3", true, "y = f vs f"),
    (
        "y = 2x + 3",
        "y=3+2x",
        true,
        "equation with reordered right side",
    ),
    ("-2,1", "1, -2", true, "list reordered"),
    (r"\$18.90", "18.9", true, "dollars with trailing zero"),
    (r"15\mbox{ cm}^2", "15", true, "area unit"),
    (
        r"137 \frac{1}{2}",
        "137.5",
        true,
        "mixed number with a space",
    ),
    (r"\frac{2}{1005}", "2/1005", true, "slash"),
    ("8n^2 + 4n + 1", "1+4n+8n^2", true, "reordered polynomial"),
    ("y = -2x", "-2x", true, "line through the origin"),
    (
        r"(2,12) \cup (12,102)",
        r"(2, 12)\cup(12, 102)",
        true,
        "union spacing",
    ),
    (r"106^\circ", "106", true, "degrees"),
    (r"50\%", "50", true, "percent sign dropped"),
    (r"50\%", "0.5", true, "percent as a fraction"),
    (r"10\%", r"\frac{1}{10}", true, "percent as a fraction"),
    (r"\sqrt{2}/2", r"\frac{1}{\sqrt{2}}", true, "rationalised"),
    (
        r"\frac{\sqrt{2}}{2}",
        r"\frac{\sqrt2}2",
        true,
        "single-token arguments",
    ),
    (
        r"e^{i\pi}",
        "-1",
        true,
        "Euler's identity (complex arithmetic)",
    ),
    ("2^{10}", "1024", true, "power"),
    ("5!", "120", true, "factorial"),
    (r"\binom{5}{2}", "10", true, "binomial coefficient"),
    (r"1.5 \times 10^3", "1500", true, "scientific notation"),
    ("1,000", "1000", true, "thousands separator"),
    (r"\ln e^2", "2", true, "natural log"),
    (r"\log_2 8", "3", true, "log with a base"),
    ("|-3|", "3", true, "absolute value"),
    (r"\sin^2 x + \cos^2 x", "1", true, "Pythagorean identity"),
    (r"\tfrac{1}{2}", r"\frac12", true, "\\tfrac"),
    (r"2\cdot 3", "6", true, "\\cdot"),
    (r"\sqrt[3]{27}", "3", true, "cube root"),
    (r"\sqrt[3]{-8}", "-2", true, "real cube root of a negative"),
    ("x = 5", "x=5.0", true, "equations with equal sides"),
    (r"\boxed{5}", "5", true, "a boxed reference is unboxed"),
    (r"$\frac{1}{2}$", "0.5", true, "dollar delimiters"),
    (r"\left\{ 1, 2 \right\}", r"\{2,1\}", true, "set order"),
    (
        r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}",
        "(1,2)",
        true,
        "column vector vs tuple",
    ),
    (r"\infty", r"\infty", true, "infinity"),
    ("2x+2y=2", "x+y=1", true, "proportional equations"),
    (
        r"\frac{1}{2}x",
        r"\frac{x}{2}",
        true,
        "coefficient placement",
    ),
    (r"\theta + 1", r"1+\theta", true, "Greek variable"),
    ("a_1 + a_2", "a_2+a_1", true, "subscripted variables"),
    (r"\text{(B)}", "B", true, "choice letter"),
    (r"\frac{1}{2}", "1/2.", true, "trailing sentence period"),
    // ---- not equivalent ------------------------------------------------------------------
    ("p - q", "q - p", false, "sign flipped"),
    (r"\frac{14}{3}", r"\frac{3}{14}", false, "reciprocal"),
    (
        r"\frac{14}{3}",
        "4.67",
        false,
        "rounded to 2 places: relative error 7e-4",
    ),
    (
        r"3\sqrt{13}",
        r"3\sqrt13",
        false,
        "\\sqrt13 is sqrt(1)*3 in LaTeX",
    ),
    ("6 - 5i", "6 + 5i", false, "conjugate"),
    ("1,-2", "1, 2", false, "different solutions"),
    ("1,-2", "1", false, "missing a solution"),
    ("(6,31,-1)", "(31,6,-1)", false, "tuple order matters"),
    ("(3,4]", "(3,4)", false, "bracket kind matters"),
    ("(3,4]", "[3,4]", false, "bracket kind matters"),
    (r"\text{Evelyn}", r"\text{Navin}", false, "different names"),
    (
        r"\text{east}",
        r"\text{seat}",
        false,
        "anagram: words are not products of letters",
    ),
    ("x^3+3x-6", "x^3+3x+6", false, "constant differs"),
    (r"\cot x", r"\tan x", false, "different function"),
    ("2k+2", "2k+1", false, "constant differs"),
    ("(a+5)(b+2)", "(a+2)(b+5)", false, "different product"),
    (
        r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}",
        r"\begin{pmatrix} 1/3 \\ 2/3 \\ 5/3 \end{pmatrix}",
        false,
        "one entry's sign",
    ),
    (
        r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
        r"\begin{pmatrix} 1 & 3 \\ 2 & 4 \end{pmatrix}",
        false,
        "transpose",
    ),
    (
        "52_8",
        "42",
        false,
        "bases are compared as written (not converted)",
    ),
    (
        "5x - 7y + 11z + 4 = 0",
        "5x - 7y + 11z - 4 = 0",
        false,
        "parallel plane",
    ),
    (r"(2,\infty)", r"[2,\infty)", false, "closed vs open end"),
    ("10080", "1008", false, "digit dropped"),
    (r"\text{(C)}", "D", false, "different choice"),
    (r"11\sqrt2", r"11\sqrt3", false, "different surd"),
    (
        r"1 \pm \sqrt{19}",
        r"1+\sqrt{19}",
        false,
        "only one of two solutions",
    ),
    (
        r"(0,9) \cup (9,36)",
        "(0,36)",
        false,
        "the point 9 is excluded",
    ),
    (r"x \in [-2,7]", "[-2,7)", false, "endpoint"),
    ("y = 2x + 3", "y = 3x + 2", false, "different line"),
    ("y = -2x", "2x", false, "sign"),
    (
        r"\frac{270}7\text{ degrees}",
        "38",
        false,
        "270/7 is 38.57…",
    ),
    (".0000672", ".0000673", false, "last digit"),
    (r"-\sqrt{3}", r"\sqrt{3}", false, "sign"),
    (
        r"\frac{11+9a}{20}",
        r"\frac{11+9b}{20}",
        false,
        "different variable",
    ),
    (r"\infty", r"-\infty", false, "opposite infinities"),
    ("0", "", false, "empty answer"),
    ("x=5", "y=5", false, "different variable"),
    (r"\sqrt{2}", "1.41", false, "too coarse an approximation"),
    ("3.21", "3.2", false, "rounded"),
    (r"\{1,2\}", r"\{1,2,2\}", false, "multiset sizes differ"),
    (r"50\%", "5", false, "neither 50 nor 0.5"),
    (
        r"137 \frac{1}{2}",
        "68.5",
        false,
        "a mixed number, not a product",
    ),
    (r"e^{i\pi}", "1", false, "e^{i pi} = -1"),
    ("(1,2)", r"\{1,2\}", false, "ordered pair vs set"),
    (r"\text{no}", r"\text{on}", false, "words, not products"),
    ("ab", "a+b", false, "product vs sum"),
    ("x^2", "2x", false, "differ away from x = 0, 2"),
    (r"\log_2 8", "2", false, "log_2 8 = 3"),
    (r"\frac{1}{2}", r"\frac{1}{2}x", false, "extra variable"),
    ("2x+2y=2", "x+y=2", false, "not proportional"),
    (
        r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}",
        "(2,1)",
        false,
        "entries swapped",
    ),
    ("-1", "1", false, "sign"),
    ("27", "72", false, "digits swapped"),
];

#[test]
fn table() {
    assert!(CASES.len() >= 150, "only {} cases", CASES.len());
    let mut failures = Vec::new();
    for (a, b, expected, why) in CASES {
        let got = is_equivalent(a, b);
        if got != *expected {
            failures.push(format!(
                "{a:?} vs {b:?}: expected {expected}, got {got} ({why})"
            ));
        }
        // symmetric
        let back = is_equivalent(b, a);
        if back != got {
            failures.push(format!(
                "asymmetric: {a:?} vs {b:?} gives {got}, reversed {back}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_math500_answer_is_equivalent_to_itself_and_its_boxed_form() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/math500_test.jsonl");
    let text = std::fs::read_to_string(path).expect("data/math500_test.jsonl");
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ans = v["answer"].as_str().unwrap();
        assert!(is_equivalent(ans, ans), "{ans:?} not equivalent to itself");
        let response = format!("... so the answer is $\\boxed{{{ans}}}$.");
        assert!(verify(&response, ans), "boxed {ans:?} not verified");
        n += 1;
    }
    assert_eq!(n, 500);
}

#[test]
fn boxed_extraction() {
    assert_eq!(
        last_boxed(r"a \boxed{1} b \boxed{\frac{1}{2}}").as_deref(),
        Some(r"\frac{1}{2}")
    );
    assert_eq!(last_boxed(r"\fbox{7}").as_deref(), Some("7"));
    assert_eq!(last_boxed(r"so \boxed 5$.").as_deref(), Some("5"));
    assert_eq!(last_boxed(r"\boxed{\{1,2\}}").as_deref(), Some(r"\{1,2\}"));
    assert_eq!(last_boxed(r"\boxed{1"), None, "never closes");
    assert_eq!(last_boxed("no box"), None);
}

#[test]
fn answer_anchors() {
    assert_eq!(
        extract_answer("<answer>\n42\n</answer>").as_deref(),
        Some("42")
    );
    assert_eq!(
        extract_answer("Thus the answer is 17.").as_deref(),
        Some("17")
    );
    assert_eq!(
        extract_answer("work\n#### 1,234\n").as_deref(),
        Some("1,234")
    );
    assert_eq!(
        extract_answer(r"\boxed{3}<|eot_id|><|endoftext|>").as_deref(),
        Some("3")
    );
    assert_eq!(extract_answer("nothing here"), None);
}

#[test]
fn normalization_is_canonical() {
    assert_eq!(
        normalize(r"\left( 3, \dfrac{\pi}{2} \right)"),
        r"(3,\frac{\pi}{2})"
    );
    assert_eq!(normalize(r"10,\!080"), "10080");
    assert_eq!(normalize(r"\$18.90"), "18.90");
    assert_eq!(normalize(r"90^\circ"), "90");
    assert_eq!(normalize(r"\cot x"), r"\cot x");
    assert_eq!(normalize(r"5.4 \text{ cents}"), "5.4");
}

/// `math500:verify` judges intermediate texts without `\boxed{}` the way math-verify does (its
/// priorities: boxed / "final answer is … I hope", then "answer", then the last math span or
/// number), while d1's `math500` still needs the box.
#[test]
fn free_text_extraction_follows_math_verify() {
    let cases: &[(&str, Option<&str>)] = &[
        (
            r"Thus $x = 2$, and the area is $\frac{1}{2}$",
            Some(r"\frac{1}{2}"),
        ),
        (r"so \[ 9 \] and then \( (9+1) \)", Some("(9+1)")),
        (
            r"The final answer is $5$. I hope it is correct. Check: $6$",
            Some("5"),
        ),
        (r"$\boxed{7}$ but later $8$", Some("7")),
        ("the number is 10 which is 1,000.99€", Some("1,000.99")),
        ("Soucis : 2,74 $ a..", Some("2.74")),
        ("28 pct", Some(r"28\%")),
        ("no digits", None),
    ];
    for (text, want) in cases {
        assert_eq!(extract_answer(text).as_deref(), *want, "{text:?}");
    }
    let verdicts: &[(&str, &str, bool)] = &[
        (r"We find $x \geq 5$.", r"x \ge 5", true),
        (r"so $5 \leq x$", r"x \geq 5", true),
        (r"hence $-x > -1$", "x < 1", true),
        (r"hence $x > -1$", "x < 1", false),
        // a gold relation matches a predicted interval, not the reverse (allow_set_relation_comp)
        (r"so $(2, \infty)$", "x > 2", true),
        (r"so $x > 2$", r"(2, \infty)", false),
        (r"$x = 5+5+1 = 1/3 \approx 11$", "1/3", true),
        (r"It is $\boxed{28 percent}", r"28\%", true),
        (r"the ratio is $7:32$", "7:32", true),
        ("it's $12:00$", "1:00", false),
        (
            r"$\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix} + \begin{pmatrix}5 & 6 \\ 7 & 8\end{pmatrix}$",
            r"\begin{pmatrix}6 & 8 \\ 10 & 12\end{pmatrix}",
            true,
        ),
        (r"$\boxed{32, 349}$", "32349", false),
        (r"\boxed{1} and \boxed{2} and \boxed{3}", r"\{1,2,3\}", true),
    ];
    for (response, reference, want) in verdicts {
        assert_eq!(
            verify(response, reference),
            *want,
            "{response:?} vs {reference:?}"
        );
    }
    let ex = workbench_core::data::Example::from_pairs([
        ("problem", serde_json::json!("P")),
        ("answer", serde_json::json!(r"\frac{1}{2}")),
    ]);
    let text = r"so far the value is $\frac{1}{2}$";
    let d1 = workbench_core::tasks::task_by_name("math500").unwrap();
    let mv = workbench_core::tasks::task_by_name("math500:verify").unwrap();
    assert!(
        !d1.reward(&ex, text).unwrap().correct,
        "d1 needs a \\boxed{{}}"
    );
    assert!(mv.reward(&ex, text).unwrap().correct);
    assert!(mv.evaluate(&ex, text).unwrap().score == 1.0);
}

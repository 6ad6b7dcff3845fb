//! The one renderer of errors for people: the location once, then the chain of messages, with
//! no library backtraces unless `WORKBENCH_BACKTRACE=1`.
//!
//! Backtraces: `anyhow` and candle capture a backtrace whenever `RUST_BACKTRACE=1` (common among
//! Rust users), and candle prints its own inside the message. [`configure_backtraces`] turns
//! library capture off unless `WORKBENCH_BACKTRACE=1` (panics still honour `RUST_BACKTRACE`),
//! and [`render`] strips candle's backtrace frames from messages in any case.
//!
//! Also here: [`ScriptExit`], the error by which a script's `exit(n)` reaches the process exit
//! code, and [`is_broken_pipe`], so a closed stdout (`workbench info M | head -1`) ends quietly.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};

/// Whether the person asked for library backtraces (`WORKBENCH_BACKTRACE=1`).
pub fn backtraces_wanted() -> bool {
    std::env::var("WORKBENCH_BACKTRACE").is_ok_and(|v| v == "1")
}

/// Makes library backtrace capture follow `WORKBENCH_BACKTRACE` rather than `RUST_BACKTRACE`
/// (std reads `RUST_LIB_BACKTRACE` first). Call once at the start of `main`, before any thread.
pub fn configure_backtraces() {
    let v = if backtraces_wanted() { "1" } else { "0" };
    std::env::set_var("RUST_LIB_BACKTRACE", v);
}

/// The error a script's `exit(n)` turns into, carrying the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptExit(pub i32);

impl std::fmt::Display for ScriptExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the script called exit({})", self.0)
    }
}

impl std::error::Error for ScriptExit {}

/// `i64::MIN`: no `exit(n)` requested.
static EXIT_REQUEST: AtomicI64 = AtomicI64::new(i64::MIN);

/// Records that a script called `exit(code)`; the runner turns it into [`ScriptExit`].
pub fn request_exit(code: i64) {
    EXIT_REQUEST.store(code, Ordering::SeqCst);
}

/// Takes the code of a pending `exit(n)`, if any (clamped to 0..=255 as a process status).
pub fn take_exit_request() -> Option<i32> {
    let v = EXIT_REQUEST.swap(i64::MIN, Ordering::SeqCst);
    (v != i64::MIN).then(|| v.clamp(0, 255) as i32)
}

/// The exit code an error asks for: a script's `exit(n)`, or 141 (128 + SIGPIPE) for a
/// closed output pipe; `None` for an ordinary failure.
pub fn exit_code(err: &anyhow::Error) -> Option<i32> {
    if let Some(ScriptExit(c)) = err.downcast_ref::<ScriptExit>() {
        return Some(*c);
    }
    is_broken_pipe(err).then_some(141)
}

/// Whether the error (anywhere in its chain) is a write to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }) || err
        .chain()
        .any(|c| c.to_string().contains("Broken pipe (os error 32)"))
}

/// candle's message without its backtrace wrappers, for a message that already says `said`:
/// the path candle attaches (`path: "x.safetensors" …`) is given once, as `x.safetensors: …`,
/// and left out when `said` names it already.
pub fn candle_text(e: &candle_core::Error, said: &str) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_text(inner, said),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_text(inner, said))
        }
        candle_core::Error::WithPath { inner, path } => {
            let p = path.display().to_string();
            if said.contains(&p) {
                candle_text(inner, said)
            } else {
                format!("{p}: {}", candle_text(inner, said))
            }
        }
        other => strip_backtrace(&other.to_string()),
    }
}

/// Cuts a backtrace that an error message carries as text (`Stack backtrace:` or the numbered
/// frames `std::backtrace` prints), keeping what comes before it.
pub fn strip_backtrace(msg: &str) -> String {
    let mut out = Vec::new();
    let mut in_trace = false;
    for line in msg.lines() {
        let t = line.trim_start();
        if t.eq_ignore_ascii_case("stack backtrace:") {
            in_trace = true;
            continue;
        }
        let frame = t.is_empty()
            || t.starts_with("at ")
            || t.split_once(": ")
                .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if in_trace && frame {
            continue;
        }
        in_trace = false;
        out.push(line);
    }
    out.join("\n").trim_end().to_string()
}

/// One error as a person reads it: the chain of messages joined by `: `, each part said once
/// (a part already contained in what came before is left out), no backtraces (unless
/// `WORKBENCH_BACKTRACE=1`, when anyhow's is appended).
pub fn render(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let msg = match cause.downcast_ref::<candle_core::Error>() {
            Some(c) => candle_text(c, &parts.join(": ")),
            None => strip_backtrace(&cause.to_string()),
        };
        let msg = msg.trim().to_string();
        if msg.is_empty() || parts.iter().any(|p| p.contains(&msg)) {
            continue;
        }
        parts.push(msg);
        if cause.downcast_ref::<candle_core::Error>().is_some() {
            // candle's own chain was rendered whole above.
            break;
        }
    }
    let mut out = dedupe_prefixes(&parts);
    if backtraces_wanted() {
        let bt = err.backtrace().to_string();
        if !bt.is_empty() && !bt.starts_with("disabled") {
            let _ = write!(out, "\n\nbacktrace:\n{bt}");
        }
    }
    out
}

/// [`render`] for a message that will be printed after `location` (`file:line`): a leading
/// copy of the location in the error is dropped, so it is said once.
pub fn render_at(location: &str, err: &anyhow::Error) -> String {
    let r = render(err);
    match r.strip_prefix(location) {
        Some(rest) if rest.starts_with(':') => rest.trim_start_matches([':', ' ']).to_string(),
        _ => r,
    }
}

/// Joins the parts, dropping a repeated leading location (`x.jsonl:1: skipped: x.jsonl:1: …`
/// becomes `x.jsonl:1: skipped: …`).
fn dedupe_prefixes(parts: &[String]) -> String {
    let mut out = String::new();
    for p in parts {
        let mut p = p.as_str();
        if let Some(loc) = location_prefix(&out) {
            if let Some(rest) = p.strip_prefix(loc.as_str()) {
                p = rest.trim_start_matches([':', ' ']);
            }
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(p);
    }
    out
}

/// The leading `path:line` (or `path:line:col`) of a message, with its colon.
fn location_prefix(msg: &str) -> Option<String> {
    let first = msg.split(": ").next()?;
    let mut it = first.rsplitn(3, ':');
    let last = it.next()?;
    if first.contains(' ') || last.is_empty() || !last.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(format!("{first}:"))
}

/// A message located in a source file: `file:line:col: msg`, then the source line and a caret
/// under column `col` (1-based); `file: msg` without a line. A backtrace in `msg` is dropped.
pub fn at_source(
    file: &str,
    source: &str,
    line: Option<usize>,
    col: Option<usize>,
    msg: &str,
) -> String {
    let msg = strip_backtrace(msg);
    let Some(line) = line else {
        return format!("{file}: {msg}");
    };
    let col = col.unwrap_or(1);
    let text = source.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let gutter = line.to_string();
    format!(
        "{file}:{line}:{col}: {msg}\n {gutter} | {text}\n {} | {}^",
        " ".repeat(gutter.len()),
        " ".repeat(col.saturating_sub(1))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_location_is_said_once() {
        let inner = anyhow::anyhow!("x.jsonl:1: not valid JSON");
        let e = inner.context("x.jsonl:1: skipped");
        assert_eq!(render(&e), "x.jsonl:1: skipped: not valid JSON");
    }

    #[test]
    fn candle_backtraces_are_cut() {
        let msg = "shape mismatch\nStack backtrace:\n   0: candle_core::x\n             at src/a.rs:1\n   1: main\n";
        assert_eq!(strip_backtrace(msg), "shape mismatch");
        let e = candle_core::Error::Msg("bad shape".into()).bt();
        let e = anyhow::Error::new(e).context("cannot run the forward");
        assert_eq!(render(&e), "cannot run the forward: bad shape");
    }

    #[test]
    fn a_path_candle_attaches_is_said_once() {
        let inner =
            candle_core::Error::Msg("header too large".into()).with_path("/m/x.safetensors");
        let e = anyhow::Error::new(inner).context("cannot read safetensors file /m/x.safetensors");
        assert_eq!(
            render(&e),
            "cannot read safetensors file /m/x.safetensors: header too large"
        );
        let inner =
            candle_core::Error::Msg("header too large".into()).with_path("/m/x.safetensors");
        assert_eq!(
            candle_text(&inner, ""),
            "/m/x.safetensors: header too large"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&anyhow::Error::new(ScriptExit(3))), Some(3));
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(exit_code(&anyhow::Error::new(pipe).context("x")), Some(141));
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), None);
    }
}

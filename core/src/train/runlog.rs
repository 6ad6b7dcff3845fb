//! JSONL run logs: one line of metrics per step.
//!
//! A run log is a file with one JSON object per line. Every record carries an integer `"step"`
//! and a `"time"` (seconds since the run started, as an `f64`); the writer adds `time` when the
//! record has none. Times carry across [`RunLog::resume`]: the resumed log continues from the
//! last kept time, so they keep increasing over restarts.
//!
//! Crash safety: each line is written with one `write_all` of the whole line and its newline,
//! then flushed, so a crash leaves at most a partial last line; [`read_log`] skips such a line
//! and reports it in [`LogContents::warnings`]. [`RunLog::resume`] rewrites the file atomically
//! (a temporary sibling, then a rename) keeping only the lines with `step <= k`, so a resumed
//! run never duplicates steps.
//!
//! Non-finite floats: JSON has no NaN or infinity, so NaN and ±Inf values are written as `null`
//! ([`metric`] and `serde_json`'s own `From<f64>` both do this); [`series`] skips them. When
//! reading, the tokens other writers use for them (Python's `NaN`, `Infinity`, `-Infinity`)
//! and numbers beyond the f64 range (`1.8e308`) are read as `null` too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::fsio::write_atomic;

/// One line of a run log.
pub type Record = serde_json::Map<String, Value>;

/// A metric value as JSON: finite floats as numbers, NaN and ±Inf as `null`.
pub fn metric(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// An append-only JSONL metrics writer.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    file: std::fs::File,
    start: Instant,
    /// Seconds already elapsed in earlier runs (the last kept `time` on resume).
    offset: f64,
    last_step: Option<i64>,
    /// Plain progress lines on stderr when it is not a terminal: the progress and the metrics
    /// shown (see [`RunLog::show_progress`]).
    progress: Option<(crate::term::PlainProgress, Vec<String>)>,
}

fn open_append(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot open run log {} for writing", path.display()))
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

impl RunLog {
    /// Starts a new log at `path`, replacing any file there (parent folders are created).
    pub fn create(path: impl AsRef<Path>) -> Result<RunLog> {
        let path = path.as_ref().to_path_buf();
        if crate::fsio::classify(&path)? == crate::fsio::Target::Stdout {
            bail!("a run log needs a file path, not `-`");
        }
        create_parent(&path)?;
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create run log {}", path.display()))?;
        Ok(RunLog {
            path,
            file,
            start: Instant::now(),
            offset: 0.0,
            last_step: None,
            progress: None,
        })
    }

    /// Continues the log at `path` after step `step`: lines with a larger step are dropped (the
    /// file is rewritten atomically), a truncated last line too, and new records' times continue
    /// from the last kept `time`. A missing file starts a new log. A malformed line other than
    /// the last, or one without an integer `step`, is an error naming `file:line`.
    pub fn resume(path: impl AsRef<Path>, step: i64) -> Result<RunLog> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return RunLog::create(&path);
        }
        let text = read_text(&path)?;
        let parsed = parse_lines(&path, &text)?;
        let mut kept = String::new();
        let (mut offset, mut last_step) = (0.0f64, None);
        for (lineno, line, rec) in parsed.lines {
            let s = record_step(&rec).with_context(|| {
                format!("{}:{lineno}: record has no integer `step`", path.display())
            })?;
            if s > step {
                continue;
            }
            if let Some(t) = rec.get("time").and_then(Value::as_f64) {
                offset = offset.max(t);
            }
            last_step = Some(last_step.map_or(s, |l: i64| l.max(s)));
            kept.push_str(line);
            kept.push('\n');
        }
        write_atomic(&path, kept.as_bytes())?;
        let file = open_append(&path)?;
        Ok(RunLog {
            path,
            file,
            start: Instant::now(),
            offset,
            last_step,
            progress: None,
        })
    }

    /// Appends `record` as one line. It must carry an integer `"step"`; `"time"` (seconds since
    /// the run started, carried across resumes) is added when absent.
    pub fn log(&mut self, mut record: Record) -> Result<()> {
        let step = record_step(&record).with_context(|| {
            format!(
                "run log {}: every record needs an integer `step`, found {}",
                self.path.display(),
                record
                    .get("step")
                    .map_or("none".to_string(), Value::to_string)
            )
        })?;
        if !record.contains_key("time") {
            record.insert("time".into(), metric(self.elapsed()));
        }
        let mut line = serde_json::to_string(&record)
            .with_context(|| format!("cannot serialise a record for {}", self.path.display()))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .with_context(|| format!("cannot append to run log {}", self.path.display()))?;
        self.last_step = Some(step);
        if let Some((p, show)) = &mut self.progress {
            let shown = progress_metrics(show, &record);
            p.tick(u64::try_from(step).unwrap_or(0), &shown);
        }
        Ok(())
    }

    /// Without a terminal on stderr, prints a plain progress line (step of `total`, rate, ETA
    /// and the metrics named in `show`, or those starting with `name_`) per logged step, at
    /// most every `WORKBENCH_PROGRESS_SECS` seconds (see [`crate::term::PlainProgress`]).
    pub fn show_progress(&mut self, total: Option<u64>, show: Vec<String>) {
        self.progress = Some((crate::term::PlainProgress::new("step", total), show));
    }

    /// Appends a record of `step` and plain numeric metrics (non-finite values become `null`).
    pub fn log_scalars(&mut self, step: i64, metrics: &[(&str, f64)]) -> Result<()> {
        let mut rec = Record::new();
        rec.insert("step".into(), step.into());
        for (k, v) in metrics {
            rec.insert((*k).to_string(), metric(*v));
        }
        self.log(rec)
    }

    /// Seconds since the run started, including time from runs this one resumed.
    pub fn elapsed(&self) -> f64 {
        self.offset + self.start.elapsed().as_secs_f64()
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The step of the last record written (or kept on resume), if any.
    pub fn last_step(&self) -> Option<i64> {
        self.last_step
    }
}

/// The numeric values of `show` in `rec` (a name absent from `rec` selects the keys starting
/// with `name_`, so `reward` also shows `reward_mean`).
fn progress_metrics(show: &[String], rec: &Record) -> Vec<(String, f64)> {
    let num = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::Null => Some(f64::NAN),
        _ => None,
    };
    let mut out = Vec::new();
    for name in show {
        if let Some(v) = rec.get(name) {
            out.extend(num(v).map(|x| (name.clone(), x)));
        } else {
            let prefix = format!("{name}_");
            for (k, v) in rec.iter().filter(|(k, _)| k.starts_with(&prefix)) {
                out.extend(num(v).map(|x| (k.clone(), x)));
            }
        }
    }
    out
}

/// The progress-bar message of a record: `name value` for each metric named in `show` (a name
/// absent from `rec` selects the keys starting with `name_`), numbers as
/// [`crate::term::compact`] writes them (integers whole, `null` as `nan`), strings as they are.
pub fn progress_message(show: &[String], rec: &Record) -> String {
    let text = |v: &Value| match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => crate::term::compact(n.as_f64().unwrap_or(f64::NAN)),
        Value::Null => "nan".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut parts = Vec::new();
    for name in show {
        if let Some(v) = rec.get(name) {
            parts.push(format!("{name} {}", text(v)));
        } else {
            let prefix = format!("{name}_");
            for (k, v) in rec.iter().filter(|(k, _)| k.starts_with(&prefix)) {
                parts.push(format!("{k} {}", text(v)));
            }
        }
    }
    parts.join("  ")
}

/// The integer `step` of a record.
pub fn record_step(rec: &Record) -> Option<i64> {
    rec.get("step").and_then(Value::as_i64)
}

/// What [`read_log`] found: the records, and warnings (a skipped truncated last line).
#[derive(Debug, Clone, Default)]
pub struct LogContents {
    /// Every well-formed line, in file order.
    pub records: Vec<Record>,
    /// Problems that were tolerated, e.g. `run.jsonl:12: skipped a truncated last line`.
    pub warnings: Vec<String>,
}

struct Parsed<'a> {
    /// `(1-based line number, raw line, record)`.
    lines: Vec<(usize, &'a str, Record)>,
    warnings: Vec<String>,
}

fn read_text(path: &Path) -> Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read run log {}", path.display()))?;
    // A crash may cut the last line inside a multi-byte character: keep going lossily.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn parse_lines<'a>(path: &Path, text: &'a str) -> Result<Parsed<'a>> {
    let numbered: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let mut out = Parsed {
        lines: Vec::with_capacity(numbered.len()),
        warnings: Vec::new(),
    };
    let n = numbered.len();
    for (k, (lineno, line)) in numbered.into_iter().enumerate() {
        let parsed = parse_json_line(line)
            .map_err(|e| anyhow::anyhow!("not valid JSON: {e}"))
            .and_then(|v| match v {
                Value::Object(m) => Ok(m),
                other => Err(anyhow::anyhow!(
                    "expected a JSON object, found {}",
                    json_kind(&other)
                )),
            });
        match parsed {
            Ok(rec) => out.lines.push((lineno, line, rec)),
            Err(e) if k + 1 == n => out.warnings.push(format!(
                "{}:{lineno}: skipped a malformed last line (truncated by a crash?): {e}",
                path.display()
            )),
            Err(e) => bail!("{}:{lineno}: malformed run log line: {e}", path.display()),
        }
    }
    Ok(out)
}

/// One log line as JSON. A line that `serde_json` rejects gets a second chance with its
/// non-finite numbers as `null`: Python's `json.dumps` writes `NaN`, `Infinity` and `-Infinity`,
/// and a number beyond the f64 range (`1.8e308`) is out of range for `serde_json`; all of them
/// are a gap in a curve, not a broken file. Well-formed lines are parsed once, untouched.
fn parse_json_line(line: &str) -> serde_json::Result<Value> {
    match serde_json::from_str::<Value>(line) {
        Ok(v) => Ok(v),
        Err(e) => match non_finite_as_null(line) {
            Some(fixed) => serde_json::from_str::<Value>(&fixed).map_err(|_| e),
            None => Err(e),
        },
    }
}

/// `line` with every number token outside JSON strings that is `NaN`, `Infinity`,
/// `-Infinity` or beyond the f64 range replaced by `null`; `None` when there is none.
fn non_finite_as_null(line: &str) -> Option<String> {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let (mut i, mut last, mut changed) = (0, 0, false);
    while i < b.len() {
        match b[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if c == b'-' || c == b'N' || c == b'I' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b"+-.".contains(&b[i])) {
                    i += 1;
                }
                let tok = &line[start..i];
                let non_finite = matches!(tok, "NaN" | "Infinity" | "-Infinity" | "-NaN")
                    || (tok.bytes().any(|c| c.is_ascii_digit())
                        && tok.parse::<f64>().is_ok_and(|x| !x.is_finite()));
                if non_finite {
                    out.push_str(&line[last..start]);
                    out.push_str("null");
                    last = i;
                    changed = true;
                }
            }
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&line[last.min(line.len())..]);
    Some(out)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads every record of a run log. A malformed line is an error naming `file:line`, except a
/// malformed last line (what a crash mid-write leaves), which is skipped with a warning.
pub fn read_log(path: impl AsRef<Path>) -> Result<LogContents> {
    let path = path.as_ref();
    let text = read_text(path)?;
    let parsed = parse_lines(path, &text)?;
    Ok(LogContents {
        records: parsed.lines.into_iter().map(|(_, _, r)| r).collect(),
        warnings: parsed.warnings,
    })
}

/// `(step, value)` of `metric` over the records that have it as a number (booleans count as
/// 0/1); records without it, without a step, or with `null` (a non-finite value) are skipped.
pub fn series(records: &[Record], metric: &str) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter_map(|r| {
            let step = r.get("step").and_then(Value::as_f64)?;
            let v = match r.get(metric)? {
                Value::Number(n) => n.as_f64()?,
                Value::Bool(b) => f64::from(u8::from(*b)),
                _ => return None,
            };
            Some((step, v))
        })
        .collect()
}

/// A metric's curve for plotting: runs of consecutive finite points, split where the metric
/// is `null` or non-finite (a gap, not a line drawn through it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Segments {
    /// Each run of `(step, value)` points.
    pub runs: Vec<Vec<(f64, f64)>>,
    /// How many records had the metric as `null` / non-finite.
    pub gaps: usize,
}

/// [`series`] with gaps: records without `metric` are skipped, a `null` (or non-finite)
/// value breaks the curve. A record with `metric` whose `step` is not a number is an error
/// naming the record (1-based, in file order).
pub fn segments(records: &[Record], metric: &str) -> Result<Segments> {
    let mut out = Segments::default();
    let mut run = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let Some(v) = r.get(metric) else { continue };
        let step = match r.get("step") {
            Some(Value::Number(n)) => n.as_f64().filter(|s| s.is_finite()),
            _ => None,
        };
        let Some(step) = step else {
            bail!(
                "record {} has a non-numeric `step` ({}); every record needs a numeric step",
                i + 1,
                r.get("step").map_or("none".to_string(), Value::to_string)
            );
        };
        let y = match v {
            Value::Number(n) => n.as_f64().filter(|y| y.is_finite()),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Null => None,
            _ => continue,
        };
        match y {
            Some(y) => run.push((step, y)),
            None => {
                out.gaps += 1;
                if !run.is_empty() {
                    out.runs.push(std::mem::take(&mut run));
                }
            }
        }
    }
    if !run.is_empty() {
        out.runs.push(run);
    }
    Ok(out)
}

/// Names of the numeric metrics present in any record (everything but `step`), sorted.
pub fn metric_names(records: &[Record]) -> Vec<String> {
    let mut names: Vec<String> = records
        .iter()
        .flat_map(|r| r.iter())
        .filter(|(k, v)| k.as_str() != "step" && (v.is_number() || v.is_boolean()))
        .map(|(k, _)| k.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Trailing moving average over `window` points (the first points average what exists so
/// far); a window of 0 or 1 returns the series unchanged.
pub fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    if window <= 1 {
        return points.to_vec();
    }
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= points[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

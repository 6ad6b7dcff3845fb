//! Rhai bindings for `workbench_core::train::runlog`: `run_log(path, opts)` gives a `RunLog`
//! whose `log(#{step: …, …})` appends a JSONL line and advances a progress bar on stderr.
//!
//! The bar shows `step/total`, elapsed time, ETA and the metrics named in `show`; indicatif
//! hides it when stderr is not a terminal, so logs of batch jobs stay clean.

use std::sync::{Arc, Mutex};

use candle_core::DType;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::Value;
use workbench_core::train::runlog::{metric, read_log, RunLog};

use workbench_core::train::options::RunLogOptions;

use super::convert::{err, options, script_err, to_json, to_script, RResult};
use super::tensor::ScriptTensor;

/// The writer and its progress bar.
struct Inner {
    log: RunLog,
    bar: ProgressBar,
    show: Vec<String>,
}

/// A run log visible to scripts (clones share one writer).
#[derive(Clone)]
pub struct ScriptRunLog {
    inner: Arc<Mutex<Inner>>,
    path: String,
}

/// Converts one metric value: numbers, bools, strings, one-element tensors (as f64), arrays
/// and maps; NaN and ±Inf become `null`.
fn value_to_json(key: &str, v: &Dynamic) -> RResult<Value> {
    if let Some(t) = v.clone().try_cast::<ScriptTensor>() {
        if t.t.elem_count() != 1 {
            return Err(err(format!(
                "log(): `{key}` is a tensor of shape {:?}; only one-element tensors can be logged \
                 (reduce it with mean() or sum() first)",
                t.t.dims()
            )));
        }
        let x =
            t.t.to_dtype(DType::F64)
                .and_then(|x| x.flatten_all())
                .and_then(|x| x.get(0))
                .and_then(|x| x.to_scalar::<f64>())
                .map_err(script_err)?;
        return Ok(metric(x));
    }
    to_json(v, &format!("log(): `{key}`"))
}

/// Formats a metric for the bar: 4 significant digits, scientific when very small or large.
fn compact(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            let a = x.abs();
            if a == 0.0 {
                "0".into()
            } else if (1e-3..1e4).contains(&a) {
                let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
                format!("{x:.decimals$}")
            } else {
                format!("{x:.2e}")
            }
        }
        Value::Null => "nan".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The bar's message: each `show` name that the record has, or else the record's keys that
/// start with `name_` (so `show: ["reward"]` also shows `reward_mean`).
fn message(show: &[String], rec: &serde_json::Map<String, Value>) -> String {
    let mut parts = Vec::new();
    for name in show {
        if let Some(v) = rec.get(name) {
            parts.push(format!("{name} {}", compact(v)));
        } else {
            let prefix = format!("{name}_");
            for (k, v) in rec.iter().filter(|(k, _)| k.starts_with(&prefix)) {
                parts.push(format!("{k} {}", compact(v)));
            }
        }
    }
    parts.join("  ")
}

fn make_bar(total: Option<u64>, start: u64) -> RResult<ProgressBar> {
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} step {pos} [{elapsed_precise}] {msg}",
        ),
    };
    let style = ProgressStyle::with_template(template)
        .map_err(script_err)?
        .progress_chars("=> ");
    let bar = bar.with_style(style).with_position(start);
    bar.reset_eta();
    Ok(bar)
}

fn open(path: &str, opts: &Map) -> RResult<ScriptRunLog> {
    let o: RunLogOptions = options("run_log", opts.clone())?;
    let (total, show) = (o.total, o.show);
    let resume = o.resume_step.filter(|&s| s >= 0);
    let mut log = match resume {
        Some(s) => RunLog::resume(path, s),
        None => RunLog::create(path),
    }
    .map_err(script_err)?;
    log.show_progress(total, show.clone());
    let start = log
        .last_step()
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(0);
    let bar = make_bar(total, start)?;
    Ok(ScriptRunLog {
        inner: Arc::new(Mutex::new(Inner { log, bar, show })),
        path: path.to_string(),
    })
}

#[export_module]
mod runlog_api {
    use super::*;

    /// Starts a JSONL run log at `path` (replacing any file there) with a spinner on stderr.
    #[rhai_fn(name = "run_log", return_raw)]
    pub fn run_log(path: &str) -> RResult<ScriptRunLog> {
        open(path, &Map::new())
    }
    /// A JSONL run log at `path` with a progress bar on stderr (hidden when stderr is not a
    /// terminal). Options: `total` (steps, for the bar and ETA), `show` (metric names shown on
    /// the bar; a name also matches keys `name_…`), `resume_step` (keep the lines with
    /// `step <= resume_step` and append after them; `-1` or absent starts afresh), e.g.
    /// `run_log("runs/a/log.jsonl", #{total: 200, show: ["reward", "loss"]})`.
    #[rhai_fn(name = "run_log", return_raw)]
    pub fn run_log_opts(path: &str, opts: Map) -> RResult<ScriptRunLog> {
        open(path, &opts)
    }
    /// Appends one record, e.g. `log.log(#{step: 3, loss: l, reward_mean: r})`: `step` must be
    /// an integer; values may be numbers, bools, strings, arrays, maps or one-element tensors;
    /// `time` (seconds since the run started) is added; NaN and infinities are written as null.
    #[rhai_fn(name = "log", return_raw)]
    pub fn log(l: &mut ScriptRunLog, record: Map) -> RResult<()> {
        let mut rec = serde_json::Map::new();
        for (k, v) in &record {
            rec.insert(k.to_string(), value_to_json(k, v)?);
        }
        let step = match rec.get("step").and_then(Value::as_i64) {
            Some(s) => s,
            None => {
                return Err(err(format!(
                    "log(): the record needs an integer `step`, found {}",
                    record
                        .get("step")
                        .map_or("none".to_string(), |v| format!("{v} ({})", v.type_name()))
                )))
            }
        };
        let mut inner = l.inner.lock().map_err(script_err)?;
        let msg = message(&inner.show, &rec);
        inner.log.log(rec).map_err(script_err)?;
        inner.bar.set_position(u64::try_from(step).unwrap_or(0));
        inner.bar.set_message(msg);
        Ok(())
    }
    /// Completes the progress bar (leaving its last state on screen); the file is already
    /// complete, as every `log` writes and flushes its line.
    #[rhai_fn(name = "finish", return_raw)]
    pub fn finish(l: &mut ScriptRunLog) -> RResult<()> {
        l.inner.lock().map_err(script_err)?.bar.finish();
        Ok(())
    }
    /// The file this log writes.
    #[rhai_fn(get = "path", pure)]
    pub fn path(l: &mut ScriptRunLog) -> String {
        l.path.clone()
    }
    /// The step of the last record written (or kept on resume), `()` if none.
    #[rhai_fn(get = "last_step", pure, return_raw)]
    pub fn last_step(l: &mut ScriptRunLog) -> RResult<Dynamic> {
        let inner = l.inner.lock().map_err(script_err)?;
        Ok(inner.log.last_step().map_or(Dynamic::UNIT, Dynamic::from))
    }
    /// `RunLog(path)`.
    #[rhai_fn(name = "to_string", pure)]
    pub fn to_string(l: &mut ScriptRunLog) -> String {
        format!("RunLog({})", l.path)
    }
    /// Same as `to_string` (used by `print` and `debug`).
    #[rhai_fn(name = "to_debug", pure)]
    pub fn to_debug(l: &mut ScriptRunLog) -> String {
        format!("RunLog({})", l.path)
    }
    /// Every record of a JSONL run log as an array of maps (`null` values read back as `()`).
    /// A malformed line is an error naming `file:line`, except a truncated last line (left by
    /// a crash), which is skipped with a warning on stderr.
    #[rhai_fn(name = "read_log", return_raw)]
    pub fn read_log_fn(path: &str) -> RResult<Array> {
        let got = read_log(path).map_err(script_err)?;
        for w in &got.warnings {
            eprintln!("warning: {w}");
        }
        got.records
            .into_iter()
            .map(|r| to_script(Value::Object(r)))
            .collect()
    }
}

/// Registers `RunLog`, `run_log` and `read_log`.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptRunLog>("RunLog");
    engine.register_global_module(exported_module!(runlog_api).into());
}

//! Rhai bindings for `workbench_core::train::runlog`: `run_log(path, opts)` gives a `RunLog`
//! whose `log(#{step: …, …})` appends a JSONL line and advances a progress bar on stderr.
//!
//! The bar shows `step/total`, elapsed time, ETA and the metrics named in `show`; indicatif
//! hides it when stderr is not a terminal, so logs of batch jobs stay clean.

use std::sync::{Arc, Mutex};

use candle_core::DType;
use indicatif::ProgressBar;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::Value;
use workbench_core::train::runlog::{metric, progress_message, read_log, RunLog};

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
    let bar = workbench_core::term::progress_bar(total, start, "step");
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
        let msg = progress_message(&inner.show, &rec);
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

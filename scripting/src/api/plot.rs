//! `plot(log, metrics, out)`: training curves of JSONL run logs as a PNG or SVG, the renderer
//! of `workbench plot` (`workbench_core::plot`).

use std::path::PathBuf;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};

use workbench_core::train::options::PlotOptions;

use super::convert::{err, options, script_err, RResult};
use workbench_core::plot::{render, PlotSpec};

fn strings(a: Array, what: &str) -> RResult<Vec<String>> {
    a.into_iter()
        .map(|v| {
            v.into_string()
                .map_err(|t| err(format!("plot: {what} must be strings, found {t}")))
        })
        .collect()
}

fn logs_of(logs: Dynamic) -> RResult<Vec<PathBuf>> {
    if logs.is_string() {
        return Ok(vec![PathBuf::from(logs.into_string().map_err(err)?)]);
    }
    match logs.try_cast::<Array>() {
        Some(a) => Ok(strings(a, "log paths")?
            .into_iter()
            .map(PathBuf::from)
            .collect()),
        None => Err(err("plot: `log` must be a path or an array of paths")),
    }
}

#[export_module]
mod plot_api {
    use super::*;

    /// Plots `metrics` (array of names, one panel each; `[]` = every numeric metric but
    /// `time`) of the JSONL run log `log` (a path, or an array of paths: one line each) against
    /// `step` into `out` (.png or .svg, written atomically), like `workbench plot`:
    /// `plot(dir + "/run.jsonl", ["reward"], dir + "/curves.png")`.
    #[rhai_fn(return_raw)]
    pub fn plot(log: Dynamic, metrics: Array, out: &str) -> RResult<()> {
        plot_with(log, metrics, out, Map::new())
    }
    /// `plot` with options `#{ title: "…", smooth: N }` (N-point moving average over the
    /// faint raw curve).
    #[rhai_fn(name = "plot", return_raw)]
    pub fn plot_with(log: Dynamic, metrics: Array, out: &str, opts: Map) -> RResult<()> {
        let o: PlotOptions = options("plot", opts)?;
        if o.smooth == 0 {
            return Err(err("plot: `smooth` must be an integer ≥ 1"));
        }
        let (title, smooth) = (o.title, o.smooth);
        render(&PlotSpec {
            inputs: logs_of(log)?,
            metrics: strings(metrics, "metric names")?,
            out: PathBuf::from(out),
            title,
            smooth,
        })
        .map(|_| ())
        .map_err(script_err)
    }
}

/// Registers `plot`.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(plot_api).into());
}

//! `workbench plot run.jsonl [more.jsonl ...] --metrics reward,loss --out curves.png
//! [--title T] [--smooth N]`: training curves from JSONL run logs.
//!
//! One panel per metric, stacked vertically, x = step, one line per input file (the legend is
//! the file stem, or the path where stems collide). `--smooth N` draws an N-point trailing
//! moving average over the faint raw curve. The format follows the extension of `--out` (PNG
//! or SVG); the image is written atomically. The renderer is `workbench_core::plot`
//! (shared with the Rhai `plot` function).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use workbench_core::plot::{render, PlotSpec};

/// Arguments of `workbench plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// JSONL run logs; each becomes one line per panel, named by its file stem.
    #[arg(required = true, value_name = "LOG")]
    pub inputs: Vec<PathBuf>,
    /// Metrics to plot, comma-separated, one panel each (default: every numeric metric but
    /// `time`).
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// Output image; the extension picks the format: .png or .svg.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Title above the panels.
    #[arg(long)]
    pub title: Option<String>,
    /// Moving-average window in points (1: raw curves only).
    #[arg(long, default_value_t = 1)]
    pub smooth: usize,
}

/// Renders the plot and writes it atomically.
pub fn run(args: &PlotArgs) -> Result<()> {
    let done = render(&PlotSpec {
        inputs: args.inputs.clone(),
        metrics: args.metrics.clone(),
        out: args.out.clone(),
        title: args.title.clone(),
        smooth: args.smooth,
    })?;
    eprintln!(
        "wrote {} ({} panel{}, {} file{})",
        args.out.display(),
        done.panels,
        if done.panels == 1 { "" } else { "s" },
        done.files,
        if done.files == 1 { "" } else { "s" }
    );
    Ok(())
}

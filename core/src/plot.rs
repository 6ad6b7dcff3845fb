//! Training curves from JSONL run logs, rendered with plotters: one panel per metric, stacked
//! vertically, x = step, one line per input file (the legend is the file stem, or the path
//! where stems collide). `smooth` N draws an N-point trailing moving average over the faint raw
//! curve. The format follows the extension of the output (PNG or SVG); the image is written
//! atomically. Text uses the DejaVu Sans font embedded in the binary (assets/fonts/, Bitstream
//! Vera license), so no system fonts are needed.
//!
//! The one renderer behind `workbench plot` and the Rhai `plot(log, metrics, out)`.

use std::path::{Path, PathBuf};

use crate::fsio::{write_atomic, write_atomic_with};
use crate::train::runlog::{metric_names, moving_average, read_log, segments, Record};
use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The embedded font (DejaVu Sans; license in assets/fonts/LICENSE-DejaVu.txt).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// What to plot.
#[derive(Debug, Clone)]
pub struct PlotSpec {
    /// JSONL run logs; each becomes one line per panel, named by its file stem.
    pub inputs: Vec<PathBuf>,
    /// Metrics, one panel each (empty: every numeric metric but `time`).
    pub metrics: Vec<String>,
    /// Output image; the extension picks the format: .png or .svg.
    pub out: PathBuf,
    /// Title above the panels.
    pub title: Option<String>,
    /// Moving-average window in points (1: raw curves only).
    pub smooth: usize,
}

/// What was drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plotted {
    /// Number of panels (metrics).
    pub panels: usize,
    /// Number of input files.
    pub files: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

fn format_of(out: &Path) -> Result<Format> {
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => Ok(Format::Png),
        "svg" => Ok(Format::Svg),
        "" => bail!(
            "--out {} has no extension; accepted extensions: .png, .svg",
            out.display()
        ),
        other => bail!(
            "--out {}: unsupported extension `.{other}`; accepted extensions: .png, .svg",
            out.display()
        ),
    }
}

/// One input file's curve in one panel: runs of points, split at `null`/non-finite values.
struct Curve {
    name: String,
    raw: Vec<Vec<(f64, f64)>>,
    smooth: Vec<Vec<(f64, f64)>>,
}

/// Legend names: file stems, or the paths as given when two stems are equal.
fn legend_names(inputs: &[PathBuf]) -> Vec<String> {
    let stems: Vec<String> = inputs
        .iter()
        .map(|p| {
            p.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| p.display().to_string())
        })
        .collect();
    let unique = {
        let mut s = stems.clone();
        s.sort();
        s.dedup();
        s.len() == stems.len()
    };
    if unique {
        stems
    } else {
        inputs.iter().map(|p| p.display().to_string()).collect()
    }
}

/// Reads the logs and builds each panel's curves, with clear errors for unknown metrics.
fn collect(args: &PlotSpec) -> Result<Vec<(String, Vec<Curve>)>> {
    let mut logs: Vec<Vec<Record>> = Vec::new();
    for p in &args.inputs {
        let got = read_log(p)?;
        for w in &got.warnings {
            eprintln!("warning: {w}");
        }
        logs.push(got.records);
    }
    let mut available: Vec<String> = logs.iter().flat_map(|r| metric_names(r)).collect();
    available.sort();
    available.dedup();
    let files = args
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let metrics: Vec<String> = if args.metrics.is_empty() {
        available
            .iter()
            .filter(|m| m.as_str() != "time")
            .cloned()
            .collect()
    } else {
        args.metrics
            .iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect()
    };
    if metrics.is_empty() {
        bail!("no numeric metrics to plot in {files}");
    }
    let names = legend_names(&args.inputs);
    let mut panels = Vec::new();
    for m in &metrics {
        let mut curves = Vec::new();
        for ((recs, name), path) in logs.iter().zip(&names).zip(&args.inputs) {
            let seg = segments(recs, m).with_context(|| format!("{}", path.display()))?;
            if seg.gaps > 0 {
                eprintln!(
                    "warning: {}: `{m}` has {} null/non-finite value(s), drawn as gaps",
                    path.display(),
                    seg.gaps
                );
            }
            if !seg.runs.is_empty() {
                let smooth = seg.runs.iter().map(|r| moving_average(r, args.smooth));
                curves.push(Curve {
                    name: name.clone(),
                    smooth: smooth.collect(),
                    raw: seg.runs,
                });
            }
        }
        if curves.is_empty() {
            let avail = if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            };
            bail!("metric '{m}' not found in {files}; available: {avail}");
        }
        panels.push((m.clone(), curves));
    }
    Ok(panels)
}

/// Axis range covering `vals` with a 5% margin (or ±0.5 around a constant).
fn padded(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    // Halves first: `hi - lo` overflows to infinity near ±f64::MAX (1.8e308 hung the mesh).
    let lim = f64::MAX / 4.0;
    let (lo, hi) = (lo.clamp(-lim, lim), hi.clamp(-lim, lim));
    let span = hi - lo;
    if span <= f64::EPSILON * lo.abs().max(1.0) {
        let d = (lo.abs() * 0.05).max(0.5);
        (lo - d, hi + d)
    } else {
        (lo - 0.05 * span, hi + 0.05 * span)
    }
}

fn draw_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("cannot draw the plot: {e}")
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: Option<&str>,
    panels: &[(String, Vec<Curve>)],
    smoothing: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let area = match title {
        Some(t) => root.titled(t, (FAMILY, 26)).map_err(draw_err)?,
        None => root.clone(),
    };
    let areas = area.split_evenly((panels.len(), 1));
    for (area, (metric, curves)) in areas.iter().zip(panels) {
        let pts = || curves.iter().flat_map(|c| c.raw.iter().flatten());
        let (x0, x1) = padded(pts().map(|p| p.0));
        let (y0, y1) = padded(pts().map(|p| p.1));
        let mut chart = ChartBuilder::on(area)
            .caption(metric, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&|x| format!("{}", (x * 1e6).round() / 1e6))
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(draw_err)?;
        for (i, c) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            if smoothing {
                for run in &c.raw {
                    chart
                        .draw_series(LineSeries::new(run.iter().copied(), color.mix(0.25)))
                        .map_err(draw_err)?;
                }
            }
            for (k, run) in c.smooth.iter().enumerate() {
                let series = chart
                    .draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))
                    .map_err(draw_err)?;
                if k == 0 {
                    series.label(c.name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                }
            }
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.5))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw_err)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// Renders the plot of `spec` and writes it atomically; warnings about the logs (a truncated
/// last line) go to stderr.
pub fn render(args: &PlotSpec) -> Result<Plotted> {
    let format = format_of(&args.out)?;
    plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded font could not be loaded"))?;
    let panels = collect(args)?;
    let title_h = if args.title.is_some() { 50 } else { 0 };
    let (w, h) = (1000u32, title_h + 320 * panels.len() as u32);
    let smoothing = args.smooth > 1;
    match format {
        Format::Png => {
            let mut buf = vec![0u8; w as usize * h as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
                draw(root, args.title.as_deref(), &panels, smoothing)?;
            }
            write_atomic_with(&args.out, |tmp| {
                image::save_buffer_with_format(
                    tmp,
                    &buf,
                    w,
                    h,
                    image::ColorType::Rgb8,
                    image::ImageFormat::Png,
                )
                .context("cannot encode the PNG")
            })
            .with_context(|| format!("cannot write the plot to {}", args.out.display()))?;
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
                draw(root, args.title.as_deref(), &panels, smoothing)?;
            }
            write_atomic(&args.out, svg.as_bytes())
                .with_context(|| format!("cannot write the plot to {}", args.out.display()))?;
        }
    }
    Ok(Plotted {
        panels: panels.len(),
        files: args.inputs.len(),
    })
}

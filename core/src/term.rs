//! Output for people at a terminal and for batch jobs without one (nohup, Slurm, a pipe).
//!
//! Progress bars draw only on a terminal; without one, long loops print [`PlainProgress`]
//! lines instead: one per update at most every `WORKBENCH_PROGRESS_SECS` seconds (default 10;
//! 0 prints every update), plus the first and the last, each with the step, the rate, the ETA
//! and the key metrics. [`print_line`] writes to stdout and ends the process quietly when stdout
//! is a closed pipe (`workbench … | head -1`) instead of panicking like `println!`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Whether stderr is a terminal (progress bars draw there).
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Writes `line` and a newline to stdout; a closed pipe ends the process with status 141
/// (128 + SIGPIPE), silently, as command-line tools do.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("warning: cannot write to stdout: {e}");
    }
}

/// The interval between plain progress lines (`WORKBENCH_PROGRESS_SECS`, default 10 s).
fn interval() -> Duration {
    std::env::var("WORKBENCH_PROGRESS_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(10), Duration::from_secs_f64)
}

/// Plain progress lines for logs: `label step 12/100  0.85/s  eta 1m43s  loss 0.1234`.
#[derive(Debug, Clone)]
pub struct PlainProgress {
    label: String,
    total: Option<u64>,
    first: Option<u64>,
    start: Instant,
    last: Option<Instant>,
    every: Duration,
}

/// `1h02m`, `3m07s` or `12s`.
pub fn duration_short(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    let s = secs.round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// The progress bar on stderr (hidden when stderr is not a terminal): `pos/len` of `unit`
/// with elapsed time and ETA when `total` is known, else a spinner; starts at `start` (a
/// resumed run) and shows the bar's message after it.
pub fn progress_bar(total: Option<u64>, start: u64, unit: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let template = match total {
        Some(_) => format!("{{bar:30.cyan/blue}} {{pos}}/{{len}} {unit} [{{elapsed_precise}} < {{eta_precise}}] {{msg}}"),
        None => format!("{{spinner}} {unit} {{pos}} [{{elapsed_precise}}] {{msg}}"),
    };
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_position(start);
    bar.reset_eta();
    bar
}

/// The current UTC time as ISO 8601, `YYYY-MM-DDTHH:MM:SSZ` (for run logs and reports).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A metric for a progress line: 4 significant digits, scientific when very small or large.
pub fn compact(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        "nan".into()
    } else if a == 0.0 {
        "0".into()
    } else if (1e-3..1e4).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.2e}")
    }
}

impl PlainProgress {
    /// Progress of `label` (e.g. `train`, `generate`) towards `total` steps when known.
    pub fn new(label: &str, total: Option<u64>) -> PlainProgress {
        PlainProgress {
            label: label.to_string(),
            total,
            first: None,
            start: Instant::now(),
            last: None,
            every: interval(),
        }
    }

    /// The line for `done` steps with `metrics` (no timing decision).
    pub fn line(&self, done: u64, metrics: &[(String, f64)]) -> String {
        let elapsed = self.start.elapsed().as_secs_f64();
        let since = done.saturating_sub(self.first.unwrap_or(0));
        let rate = if elapsed > 0.0 {
            since as f64 / elapsed
        } else {
            0.0
        };
        let mut s = match self.total {
            Some(t) => format!("{} {done}/{t}", self.label),
            None => format!("{} {done}", self.label),
        };
        s.push_str(&format!("  {}/s", compact(rate)));
        s.push_str(&format!("  elapsed {}", duration_short(elapsed)));
        if let Some(t) = self.total {
            if rate > 0.0 && t >= done {
                s.push_str(&format!(
                    "  eta {}",
                    duration_short((t - done) as f64 / rate)
                ));
            }
        }
        for (k, v) in metrics {
            s.push_str(&format!("  {k} {}", compact(*v)));
        }
        s
    }

    /// Records that `done` steps are complete; returns the line when one is due (the first
    /// update, the last one, or `WORKBENCH_PROGRESS_SECS` after the previous line).
    pub fn update(&mut self, done: u64, metrics: &[(String, f64)]) -> Option<String> {
        if self.first.is_none() {
            // The rate counts from the first update (a resumed run starts past 0).
            self.first = Some(done.saturating_sub(1));
        }
        let now = Instant::now();
        let due = match self.last {
            None => true,
            Some(t) => now.duration_since(t) >= self.every,
        } || self.total == Some(done);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(self.line(done, metrics))
    }

    /// [`PlainProgress::update`], printing the line to stderr when one is due and stderr is
    /// not a terminal (where a progress bar draws instead).
    pub fn tick(&mut self, done: u64, metrics: &[(String, f64)]) {
        if stderr_is_tty() {
            return;
        }
        if let Some(l) = self.update(done, metrics) {
            eprintln!("{l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_step_rate_eta_and_metrics() {
        let mut p = PlainProgress::new("train", Some(10));
        p.every = Duration::from_secs(3600);
        let first = p.update(1, &[("loss".into(), 0.5)]).unwrap();
        assert!(first.starts_with("train 1/10  "), "{first}");
        assert!(first.contains("loss 0.5000"), "{first}");
        assert!(p.update(2, &[]).is_none(), "throttled");
        let last = p.update(10, &[]).unwrap();
        assert!(last.starts_with("train 10/10"), "{last}");
    }

    #[test]
    fn short_durations() {
        assert_eq!(duration_short(5.2), "5s");
        assert_eq!(duration_short(187.0), "3m07s");
        assert_eq!(duration_short(3720.0), "1h02m");
    }
}

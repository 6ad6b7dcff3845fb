//! `workbench run FILE.rhai [--set key=value ...] [-- ARGS...]`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Arguments of `workbench run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The script to run.
    pub file: PathBuf,
    /// Override a key of the script's `CONFIG` (a Rhai literal: 3, 1e-4, true, "text", [1, 2]).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Positional arguments after `--`, visible to the script as the array `ARGS`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Runs the script; the first Ctrl-C (or SIGTERM) cancels it between calls, a second one exits
/// at once.
pub fn run(args: &RunArgs) -> Result<()> {
    install_interrupts();
    workbench_scripting::run_file(&args.file, &args.set, &args.args)
}

/// First Ctrl-C or SIGTERM (a batch system's time limit, `scancel`, `kill PID`): ask the script
/// and core loops to stop cleanly (`workbench generate` keeps its finished results). Second:
/// exit now, with 130 (Ctrl-C) or 143 (SIGTERM).
pub fn install_interrupts() {
    use workbench_core::cancel::Cause;
    let _ = ctrlc::set_handler(|| interrupt(Cause::CtrlC));
    #[cfg(unix)]
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM]) {
        std::thread::spawn(move || {
            for _ in signals.forever() {
                interrupt(Cause::Terminate);
            }
        });
    }
}

fn interrupt(cause: workbench_core::cancel::Cause) {
    use workbench_core::cancel::{self, Cause};
    if cancel::is_requested() {
        std::process::exit(match cause {
            Cause::CtrlC => 130,
            Cause::Terminate => 143,
        });
    }
    let name = cause.name();
    eprintln!("\ninterrupt ({name}): stopping at the next safe point ({name} again to exit now)");
    cancel::request_because(cause);
}

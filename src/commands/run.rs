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

/// Runs the script; the first Ctrl-C cancels it between calls, a second one exits at once.
pub fn run(args: &RunArgs) -> Result<()> {
    install_ctrlc();
    workbench_scripting::run_file(&args.file, &args.set, &args.args)
}

/// First Ctrl-C: ask the script and core loops to stop cleanly. Second: exit now.
pub fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        if workbench_core::cancel::is_requested() {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: stopping at the next safe point (Ctrl-C again to exit now)");
        workbench_core::cancel::request();
    });
}

//! The `workbench` command line: inspect checkpoints, run scripts, generate, score, train.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Research workbench for reinforcement learning on masked diffusion language models.
#[derive(Parser, Debug)]
#[command(name = "workbench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a checkpoint's architecture, parameter count, dtypes, special tokens and memory needs.
    Info(commands::info::InfoArgs),
    /// Run a Rhai script: `workbench run FILE.rhai [--set key=value ...] [-- ARGS...]`.
    Run(commands::run::RunArgs),
    /// Interactive Rhai session with completion, history and `:help`.
    Repl(commands::repl::ReplArgs),
    /// Generate completions with any sampler from --prompt or a JSONL of requests.
    Generate(Box<commands::generate::GenerateArgs>),
    /// Re-score a JSONL of completions with a task's rewards and evaluation parser.
    Score(commands::score::ScoreArgs),
    /// Plot metrics of JSONL run logs: one panel per metric, one line per file (PNG or SVG).
    Plot(commands::plot::PlotArgs),
    /// Generate the Rhai API reference (docs/api.md) from the registered functions.
    Doc(commands::doc::DocArgs),
    /// Time forward, generation and training steps at a model shape with random weights.
    Bench(commands::bench::BenchArgs),
}

fn main() -> ExitCode {
    // Before any thread: library backtraces only with WORKBENCH_BACKTRACE=1.
    workbench_core::error_report::configure_backtraces();
    // Before any tensor op or thread: candle's pools read their sizes when they start.
    workbench_core::threads::configure(None);
    // Freed tensor buffers are reused from the heap instead of page-faulted in again.
    workbench_core::malloc::configure();
    let cli = Cli::parse();
    // On a worker of the matmul pool (see `threads::run`).
    let result = workbench_core::threads::run(move || match cli.command {
        Command::Info(args) => commands::info::run(&args),
        Command::Run(args) => commands::run::run(&args),
        Command::Repl(args) => commands::repl::run(&args),
        Command::Doc(args) => commands::doc::run(&args),
        Command::Generate(args) => commands::generate::run(&args),
        Command::Score(args) => commands::score::run(&args),
        Command::Plot(args) => commands::plot::run(&args),
        Command::Bench(args) => commands::bench::run(&args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            use workbench_core::error_report::{exit_code, is_broken_pipe, render};
            // A closed stdout (`| head -1`) and a script's `exit(n)` end without a message.
            if !is_broken_pipe(&e) && exit_code(&e).is_none() {
                eprintln!("error: {}", render(&e));
            }
            exit_code(&e).map_or(ExitCode::FAILURE, |c| ExitCode::from(c as u8))
        }
    }
}

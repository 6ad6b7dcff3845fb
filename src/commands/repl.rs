//! `workbench repl`: the interactive session.

use anyhow::Result;
use clap::Args;
use workbench::repl::{LineSource, RustylineSource};

/// Arguments of `workbench repl`.
#[derive(Args, Debug)]
pub struct ReplArgs {}

/// Clears the cancel flag before each entry so a Ctrl-C only stops the entry it interrupted.
struct Resetting<S>(S);

impl<S: LineSource> LineSource for Resetting<S> {
    fn read_line(&mut self, prompt: &str) -> Option<String> {
        let line = self.0.read_line(prompt);
        workbench_core::cancel::reset();
        line
    }
    fn add_history(&mut self, line: &str) {
        self.0.add_history(line);
    }
    fn set_scope_names(&mut self, names: Vec<String>) {
        self.0.set_scope_names(names);
    }
}

/// Starts the REPL on the terminal.
pub fn run(_args: &ReplArgs) -> Result<()> {
    let engine = workbench_scripting::new_engine();
    // The editor first: on a terminal rustyline installs its own SIGINT handler when it is
    // created (and keeps it until dropped), which would swallow Ctrl-C while an entry runs.
    // Ours, installed after, replaces it: Ctrl-C while an entry runs stops that entry; at the
    // prompt the terminal is in raw mode, so rustyline reads Ctrl-C as a key.
    let mut source = Resetting(RustylineSource::new(&engine)?);
    let _ = ctrlc::set_handler(workbench_core::cancel::request);
    let mut out = std::io::stdout();
    workbench::repl::run_repl(&engine, &mut source, &mut out)
}

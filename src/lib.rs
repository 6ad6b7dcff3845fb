//! The `workbench` command line's library: the developer tools built on the scripting engine
//! rather than part of it — the interactive REPL session ([`repl`]) and the API reference
//! generator behind `workbench doc` and the REPL's `:help` ([`docs`]). The binary's
//! subcommands (`src/commands/`) call these; the Rhai bindings live in `workbench-scripting`.

pub mod docs;
pub mod repl;

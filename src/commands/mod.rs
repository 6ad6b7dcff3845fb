//! One module per subcommand.

pub mod doc;
pub mod info;
pub mod repl;
pub mod run;

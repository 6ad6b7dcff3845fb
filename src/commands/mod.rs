//! One module per subcommand.

pub mod bench;
pub mod doc;
pub mod generate;
pub mod info;
pub mod plot;
pub mod repl;
pub mod run;
pub mod score;

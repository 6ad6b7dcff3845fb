//! `workbench doc`: writes the Rhai API reference (`docs/api.md`) from the registration
//! metadata and doc comments; `--check` fails when the file is out of date (CI runs it).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

/// Arguments of `workbench doc`.
#[derive(Args, Debug)]
pub struct DocArgs {
    /// Where to write the reference.
    #[arg(long, default_value = "docs/api.md")]
    pub out: PathBuf,
    /// Compare instead of writing; exit non-zero when the file differs.
    #[arg(long)]
    pub check: bool,
}

/// Generates (or checks) the API reference.
pub fn run(args: &DocArgs) -> Result<()> {
    let engine = workbench_scripting::new_engine();
    let text = workbench::docs::api_markdown(&engine)?;
    if args.check {
        let current = std::fs::read_to_string(&args.out).unwrap_or_default();
        if current != text {
            bail!(
                "{} is out of date with the registered functions; run `workbench doc` to regenerate it",
                args.out.display()
            );
        }
        println!("{} is up to date", args.out.display());
        return Ok(());
    }
    workbench_core::fsio::write_atomic(&args.out, text.as_bytes())?;
    println!("wrote {}", args.out.display());
    Ok(())
}

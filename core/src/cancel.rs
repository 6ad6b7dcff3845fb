//! Cooperative cancellation: Ctrl-C (and, for `workbench run` and `workbench generate`, SIGTERM:
//! Slurm's time limit, `scancel`, `kill`) sets a process-wide flag that scripts check between
//! calls and long-running core loops (sampling steps, training updates) poll, so a run stops at
//! a clean boundary and files being written are left intact.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static CANCELLED: AtomicBool = AtomicBool::new(false);
static CAUSE: AtomicU8 = AtomicU8::new(0);

/// What asked the run to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Ctrl-C (SIGINT).
    CtrlC,
    /// SIGTERM (a batch system's time limit or `scancel`, `kill PID`).
    Terminate,
}

impl Cause {
    /// How messages name it: `Ctrl-C` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Cause::CtrlC => "Ctrl-C",
            Cause::Terminate => "SIGTERM",
        }
    }
}

/// Asks every running loop to stop at its next check (a Ctrl-C).
pub fn request() {
    request_because(Cause::CtrlC);
}

/// Asks every running loop to stop at its next check, for `cause`.
pub fn request_because(cause: Cause) {
    CAUSE.store(cause as u8, Ordering::SeqCst);
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Whether cancellation was requested.
pub fn is_requested() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// What the last request was for.
pub fn cause() -> Cause {
    if CAUSE.load(Ordering::SeqCst) == Cause::Terminate as u8 {
        Cause::Terminate
    } else {
        Cause::CtrlC
    }
}

/// The message of a cancelled run: `cancelled (Ctrl-C)` or `cancelled (SIGTERM)`.
pub fn message() -> String {
    format!("cancelled ({})", cause().name())
}

/// Clears the flag (the REPL does this before each entry).
pub fn reset() {
    CANCELLED.store(false, Ordering::SeqCst);
}

/// An error when cancellation was requested, for `?` in core loops.
pub fn check() -> anyhow::Result<()> {
    if is_requested() {
        anyhow::bail!("{}", message());
    }
    Ok(())
}

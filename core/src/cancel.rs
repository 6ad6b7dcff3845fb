//! Cooperative cancellation: Ctrl-C sets a process-wide flag that scripts check between calls
//! and long-running core loops (sampling steps, training updates) poll, so a run stops at a
//! clean boundary and files being written are left intact.

use std::sync::atomic::{AtomicBool, Ordering};

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Asks every running loop to stop at its next check.
pub fn request() {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Whether cancellation was requested.
pub fn is_requested() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// Clears the flag (the REPL does this before each entry).
pub fn reset() {
    CANCELLED.store(false, Ordering::SeqCst);
}

/// An error when cancellation was requested, for `?` in core loops.
pub fn check() -> anyhow::Result<()> {
    if is_requested() {
        anyhow::bail!("cancelled (Ctrl-C)");
    }
    Ok(())
}

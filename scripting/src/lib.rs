//! Rhai scripting layer (filled in by the scripting issue).

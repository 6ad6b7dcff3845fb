//! Resident memory of this process from `/proc/self/status` (Linux): the current resident set,
//! the high-water mark and its reset, for the benchmarks' peak-memory figures.

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`, ...), or None where there is none.
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the resident high-water mark (`VmHWM`) to the current resident set; false where
/// `/proc/self/clear_refs` is not writable.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_resident_set_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(super::status_kib("VmRSS").is_some_and(|k| k > 0));
            assert!(super::status_kib("NoSuchField").is_none());
        }
    }
}

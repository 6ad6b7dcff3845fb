//! Allocator tuning for the tensor hot path, applied once at program start ([`configure`]).
//!
//! Every candle op allocates its output, and a backward pass allocates a zero-filled buffer and
//! a sum per graph edge: hundreds of 0.5–16 MB buffers per training step. glibc serves blocks
//! above its mmap threshold with a fresh `mmap` and returns freed memory at the heap top to the
//! kernel beyond its trim threshold, so those buffers were page-faulted in (and zeroed by the
//! kernel) again on every step: 251k page faults in 14 d1 bench steps at the bench shape, ~5%
//! of the step. With the mmap threshold at glibc's maximum (32 MiB) and a 1 GiB trim threshold
//! the freed buffers are reused from the heap (67k faults for the same run). The cost is that
//! the process keeps up to 1 GiB of freed heap for reuse instead of returning it.
//!
//! Only on Linux with glibc; elsewhere (musl, macOS) [`configure`] does nothing.

/// Sets glibc's mmap and trim thresholds (see the module docs). Returns whether both settings
/// were accepted; `WORKBENCH_MALLOC=default` leaves the allocator untouched.
pub fn configure() -> bool {
    if std::env::var("WORKBENCH_MALLOC").is_ok_and(|v| v == "default") {
        return false;
    }
    imp::configure()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::os::raw::c_int;

    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    // glibc's <malloc.h>.
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;

    pub fn configure() -> bool {
        // mallopt only stores two integers in glibc's malloc state; it has no preconditions.
        #[allow(unsafe_code)]
        unsafe {
            let mmap = mallopt(M_MMAP_THRESHOLD, 32 << 20);
            let trim = mallopt(M_TRIM_THRESHOLD, 1 << 30);
            mmap == 1 && trim == 1
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn configure() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_accepts_both_thresholds() {
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(super::imp::configure());
        }
    }
}

//! CPU thread policy for candle's backend, applied once at program start ([`configure`]).
//!
//! candle 0.11's CPU backend has two thread pools:
//!
//! * **gemm** (every matmul) runs on rayon's global pool with `Parallelism::Rayon(n)`, `n` read
//!   from `RAYON_NUM_THREADS` (else the physical core count) at every call. gemm keeps small
//!   products on one thread (its threading threshold) and splits large ones with rayon's
//!   work stealing: when a worker is descheduled, the caller's worker runs the other half
//!   itself, and idle rayon workers go to sleep after a few yields.
//! * **the barrier pool** (`candle-bp-*` threads, sized by `CANDLE_NUM_THREADS`) splits every
//!   element-wise op of ≥ 64 Ki elements. Its caller busy-waits in `BarrierGuard::drop` until
//!   every worker has reported, without yielding. When a worker is parked or descheduled (the
//!   machine has other work) the caller spins for up to a scheduler time slice, once per op:
//!   that is the ~50% of samples the profile showed in `BarrierGuard::drop`, why two threads
//!   were no faster than one, and why a busy process beside the workbench made it 4× slower.
//!   Element-wise ops are memory-bound, so a second thread buys little even when it works.
//!
//! The policy: matmuls get `n` threads through rayon (default: the CPUs this process may run
//! on; `main` runs the whole command on a worker of such a pool, [`run`], so a matmul's caller
//! works on it instead of sleeping until it is done), element-wise ops run on the calling thread (`CANDLE_NUM_THREADS=1`, so the barrier pool
//! has no workers and never spins). Explicit `RAYON_NUM_THREADS` / `CANDLE_NUM_THREADS` in the
//! environment are respected. The workbench's own parallel loops (the split matmul
//! [`crate::ops::matmul`], the fused kernels) run on the compute team ([`crate::team`]) of
//! [`num_threads`] threads, whose helpers spin briefly between jobs instead of sleeping.

use std::sync::OnceLock;

/// The thread counts in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadPolicy {
    /// Threads for matmuls (rayon / gemm) and the workbench's own parallel loops.
    pub compute: usize,
    /// Threads of candle's barrier pool for element-wise ops, the caller included (1 = inline).
    pub elementwise: usize,
}

static POLICY: OnceLock<ThreadPolicy> = OnceLock::new();

fn env_count(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
}

/// The CPUs this process may run on (its affinity mask / cgroup quota), at least 1.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sets the thread policy for this process: `threads` compute threads (else
/// `WORKBENCH_THREADS`, else `RAYON_NUM_THREADS`, else [`available_cpus`]) and element-wise ops
/// inline unless `CANDLE_NUM_THREADS` says otherwise. Call it first thing in `main`, before any
/// tensor op and before other threads exist (it sets environment variables that candle and
/// rayon read when their pools start). Later calls return the policy already in force.
pub fn configure(threads: Option<usize>) -> ThreadPolicy {
    *POLICY.get_or_init(|| {
        let compute = threads
            .filter(|&n| n > 0)
            .or_else(|| env_count("WORKBENCH_THREADS"))
            .or_else(|| env_count("RAYON_NUM_THREADS"))
            .unwrap_or_else(available_cpus);
        let elementwise = env_count("CANDLE_NUM_THREADS").unwrap_or(1);
        // Both variables are read lazily by rayon and candle when their pools first start;
        // nothing has started yet at the top of `main`.
        std::env::set_var("RAYON_NUM_THREADS", compute.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", elementwise.to_string());
        ThreadPolicy {
            compute,
            elementwise,
        }
    })
}

/// The policy in force: what [`configure`] set, or (without it) what candle will use by
/// default, read from the environment.
pub fn policy() -> ThreadPolicy {
    POLICY.get().copied().unwrap_or_else(|| {
        let compute = env_count("RAYON_NUM_THREADS").unwrap_or_else(available_cpus);
        ThreadPolicy {
            compute,
            elementwise: env_count("CANDLE_NUM_THREADS").unwrap_or(compute),
        }
    })
}

/// Runs `f` on a worker of a rayon pool of [`policy`]`().compute` threads and returns its
/// result. candle's CPU matmul hands every large product to rayon; called from a thread outside
/// the pool (plain `main`), each call injects its jobs and puts the caller to sleep until the
/// workers finish, three context switches per matmul (46k switches/s and 38% idle CPU on 2
/// cores in a d1 step, slower than one thread). On a pool worker the caller takes part in its
/// own matmul and the other worker steals the rest. The worker gets a 64 MiB stack (scripts
/// recurse; the main thread had 8 MiB). Without a pool (build failure) `f` runs here.
pub fn run<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(policy().compute)
        .stack_size(64 << 20)
        .thread_name(|i| format!("workbench-{i}"))
        .build();
    match pool {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

/// Compute threads for the workbench's own parallel loops.
pub fn num_threads() -> usize {
    policy().compute
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_counts_are_positive() {
        let p = policy();
        assert!(p.compute >= 1 && p.elementwise >= 1);
        assert!(available_cpus() >= 1);
    }
}

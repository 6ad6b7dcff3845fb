//! The compute team: helper threads that spin briefly between jobs, for the workbench's own
//! parallel loops (the split matmul, the fused kernels).
//!
//! A denoising step or a training step is a few thousand short parallel ops separated by
//! short serial ones. rayon's idle workers sleep after a few yields, so nearly every op paid a
//! futex wake-up (on this VM an inter-processor interrupt): 13% of the samples of a generation
//! were in the kernel's wake-up path, and two threads generated only 1.24x faster than one.
//! Team helpers spin for [`SPIN`] after their last task (yielding the CPU between checks once
//! the first [`SPIN_QUIET`] have passed, so a competing process is not starved), then park.
//!
//! One job at a time: a caller that finds the team busy (another thread's job, or a task that
//! itself calls [`for_each`]) runs its tasks inline. Tasks are claimed one by one from a shared
//! counter, so a descheduled helper never holds up more than the task it has started, and the
//! caller always works on its own job.
//!
//! Results are the same whoever runs which task: callers give each task a fixed piece of work.

// The job (a closure on the caller's stack) is reached through a raw pointer; the caller
// waits until every claimed task has finished before returning, and a task is claimed only
// through the job's own state word (see `claim`).
#![allow(unsafe_code)]

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a helper keeps looking for work after its last task before it parks.
const SPIN: Duration = Duration::from_millis(2);

/// The first part of [`SPIN`], spent without yielding the CPU.
const SPIN_QUIET: Duration = Duration::from_micros(50);

/// A job's closure, reached by the helpers through [`Team::job`].
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

struct Team {
    /// `total << 32 | next`: the current job's task count and the next unclaimed task.
    state: AtomicU64,
    /// Tasks of the current job finished.
    done: AtomicUsize,
    /// The current job (a `*const Job`), valid while `done < total`.
    job: AtomicPtr<()>,
    /// Helpers parked (or about to park).
    sleepers: AtomicUsize,
    /// The first panic of the current job, re-raised on the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Held by the caller of the running job.
    busy: Mutex<()>,
    helpers: OnceLock<Vec<Thread>>,
}

static TEAM: OnceLock<Option<&'static Team>> = OnceLock::new();

/// The team, started on first use with [`crate::threads::num_threads`]` - 1` helpers (none:
/// every job runs inline).
fn team() -> Option<&'static Team> {
    *TEAM.get_or_init(|| {
        let helpers = crate::threads::num_threads().saturating_sub(1);
        if helpers == 0 {
            return None;
        }
        let team: &'static Team = Box::leak(Box::new(Team {
            state: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            sleepers: AtomicUsize::new(0),
            panic: Mutex::new(None),
            busy: Mutex::new(()),
            helpers: OnceLock::new(),
        }));
        let mut threads = Vec::with_capacity(helpers);
        for i in 0..helpers {
            let spawned = std::thread::Builder::new()
                .name(format!("workbench-team-{i}"))
                .spawn(move || helper(team));
            match spawned {
                Ok(h) => threads.push(h.thread().clone()),
                Err(_) => break,
            }
        }
        if threads.is_empty() {
            return None;
        }
        let _ = team.helpers.set(threads);
        Some(team)
    })
}

/// Threads that work on a job: the caller and the team's helpers.
pub fn size() -> usize {
    team()
        .and_then(|t| t.helpers.get())
        .map_or(1, |h| h.len() + 1)
}

/// Runs `f(0)`, …, `f(tasks - 1)`, on the team when it is free and there is more than one
/// task, else on this thread; returns when all have finished. A panic in a task is re-raised
/// here once every task has finished.
pub fn for_each(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    let team = match team() {
        Some(t) if tasks > 1 && tasks <= u32::MAX as usize => t,
        _ => return (0..tasks).for_each(f),
    };
    let Ok(_busy) = team.busy.try_lock() else {
        return (0..tasks).for_each(f);
    };
    let job = Job { f };
    team.done.store(0, Ordering::Relaxed);
    team.job
        .store(&job as *const Job as *mut (), Ordering::Release);
    team.state.store((tasks as u64) << 32, Ordering::SeqCst);
    if team.sleepers.load(Ordering::SeqCst) > 0 {
        for h in team.helpers.get().into_iter().flatten() {
            h.unpark();
        }
    }
    team.work();
    let mut spins = 0u32;
    while team.done.load(Ordering::Acquire) < tasks {
        spins = spins.wrapping_add(1);
        if spins % 1024 == 0 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    // Every task has finished: no helper reads `job` any more (a new claim needs a new job).
    let panic = team.panic.lock().map(|mut p| p.take()).unwrap_or(None);
    drop(_busy);
    if let Some(p) = panic {
        resume_unwind(p);
    }
}

/// `f` of each of `items`, in order, computed as [`for_each`] does (each item given to
/// exactly one task).
pub fn map<T: Send, R: Send>(items: Vec<T>, f: &(dyn Fn(T) -> R + Sync)) -> Vec<R> {
    let n = items.len();
    let items: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    for_each(n, &|i| {
        if let Some(item) = items[i].lock().ok().and_then(|mut s| s.take()) {
            let r = f(item);
            if let Ok(mut s) = results[i].lock() {
                *s = Some(r);
            }
        }
    });
    results
        .into_iter()
        .map(|s| {
            s.into_inner()
                .ok()
                .flatten()
                .expect("every task of a finished job stored its result")
        })
        .collect()
}

impl Team {
    /// Claims the next task of the current job, if any is left.
    fn claim(&self) -> Option<usize> {
        let mut v = self.state.load(Ordering::Acquire);
        loop {
            let (total, next) = (v >> 32, v & u64::from(u32::MAX));
            if next >= total {
                return None;
            }
            // A successful exchange claims task `next` of the job current at that moment;
            // that job cannot end (and its closure cannot go away) before the task is done.
            match self
                .state
                .compare_exchange_weak(v, v + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(next as usize),
                Err(now) => v = now,
            }
        }
    }

    fn has_work(&self) -> bool {
        let v = self.state.load(Ordering::SeqCst);
        v & u64::from(u32::MAX) < v >> 32
    }

    /// Runs tasks of the current job until none is left to claim.
    fn work(&self) {
        while let Some(i) = self.claim() {
            // SAFETY: the claim above succeeded, so the job published with this state is
            // still running and its caller still waits (its `done` cannot reach its total
            // before this task counts itself).
            let job = unsafe { &*(self.job.load(Ordering::Acquire) as *const Job) };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| (job.f)(i))) {
                if let Ok(mut slot) = self.panic.lock() {
                    slot.get_or_insert(p);
                }
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

fn helper(team: &'static Team) {
    loop {
        team.work();
        let idle = Instant::now();
        let mut spins = 0u32;
        loop {
            if team.has_work() {
                break;
            }
            spins = spins.wrapping_add(1);
            if spins % 64 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let waited = idle.elapsed();
            if waited < SPIN_QUIET {
                continue;
            }
            if waited < SPIN {
                std::thread::yield_now();
                continue;
            }
            team.sleepers.fetch_add(1, Ordering::SeqCst);
            if !team.has_work() {
                std::thread::park();
            }
            team.sleepers.fetch_sub(1, Ordering::SeqCst);
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_task_runs_once_and_results_keep_their_order() {
        for tasks in [0usize, 1, 2, 3, 17, 1000] {
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            for_each(tasks, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            assert_eq!(
                map((0..tasks).collect(), &|i| i * 3),
                (0..tasks).map(|i| i * 3).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn concurrent_callers_and_nested_jobs_finish() {
        let sum = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        for_each(8, &|i| {
                            for_each(3, &|j| {
                                sum.fetch_add(i * 3 + j, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(sum.load(Ordering::Relaxed), 4 * 50 * (0..24).sum::<usize>());
    }

    #[test]
    fn a_panicking_task_is_re_raised_after_the_others_finish() {
        let ran = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            for_each(16, &|i| {
                ran.fetch_add(1, Ordering::Relaxed);
                if i == 5 {
                    panic!("task 5");
                }
            })
        }));
        assert!(r.is_err());
        assert_eq!(ran.load(Ordering::Relaxed), 16);
        // The team is usable afterwards.
        assert_eq!(map(vec![0, 1, 2, 3], &|i| i + 1), vec![1, 2, 3, 4]);
    }
}

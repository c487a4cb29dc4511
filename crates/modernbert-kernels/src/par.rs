//! When to go parallel.

/// Below this many elements of work a kernel runs on the calling thread: rayon's fork/join
/// costs a few microseconds, about what a memory-bound kernel needs for 32 Ki floats.
pub(crate) const MIN_PARALLEL_ELEMS: usize = 1 << 15;

/// Rows per rayon task for a row-wise kernel over `rows` rows of `row_elems` elements each,
/// or `None` when the whole job should run serially.
pub(crate) fn rows_per_task(rows: usize, row_elems: usize) -> Option<usize> {
    let total = rows.saturating_mul(row_elems.max(1));
    if total < MIN_PARALLEL_ELEMS || rows < 2 || rayon::current_num_threads() < 2 {
        return None;
    }
    // Tasks of ~16 Ki elements: enough of them for work stealing to balance the load,
    // each big enough to amortize its scheduling.
    Some(((MIN_PARALLEL_ELEMS / 2) / row_elems.max(1)).max(1))
}

/// Runs `f` on rayon's pool with the pool's other threads kept awake while it runs.
///
/// A short forward pass is a chain of parallel calls (one per linear layer) with a little serial
/// work between them. Left alone, rayon's idle threads fall asleep within tens of microseconds,
/// and each call then pays a futex wake-up (an inter-processor interrupt in a VM) to get its
/// helper back; called from outside the pool, the caller also sleeps and is woken per call.
/// Here `f` runs inside the pool and every other thread runs a keeper that runs the pool's jobs
/// as they appear and spins in between, so the calls inside `f` find their helpers awake. A
/// keeper leaves when `f` returns, or after [`KEEPER_PATIENCE`] without a job: one that a thread
/// picked up while waiting inside another job (stacked above work that `f` may wait for) then
/// stalls that work for at most that long instead of forever. Spinning keepers hold their cores:
/// wrap work that is parallel most of the time (a forward pass, a training step), not a long
/// serial stretch.
pub fn with_pool_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    // One keeper per other core at most: in a pool with more threads than cores, more keepers would
    // spin on cores that the working threads need.
    let keepers = rayon::current_num_threads().min(cores()) - 1;
    if keepers == 0 {
        return f();
    }
    let done = AtomicBool::new(false);
    rayon::scope(|s| {
        let owner = rayon::current_thread_index();
        for _ in 0..keepers {
            let done = &done;
            s.spawn(move |_| {
                // Not on the thread that runs `f` (popped while `f` waits in a join), nor inside
                // another keeper: there it would only hold up its own caller.
                if rayon::current_thread_index() == owner || KEEPING.with(|k| k.replace(true)) {
                    return;
                }
                // Cleared on the way out, also if a job run by the keeper panics.
                struct Leave;
                impl Drop for Leave {
                    fn drop(&mut self) {
                        KEEPING.with(|k| k.set(false));
                    }
                }
                let _leave = Leave;
                keep_awake(done);
            });
        }
        let result = f();
        done.store(true, Ordering::Release);
        result
    })
}

/// The cores this process may run on (read once).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// How long a keeper spins without finding a job before it leaves.
pub const KEEPER_PATIENCE: std::time::Duration = std::time::Duration::from_millis(1);

thread_local! {
    static KEEPING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs the pool's jobs as they appear until `done`, or until no job came for [`KEEPER_PATIENCE`].
fn keep_awake(done: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let mut last_job = std::time::Instant::now();
    let mut spins = 0u32;
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            last_job = std::time::Instant::now();
            continue;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) && last_job.elapsed() > KEEPER_PATIENCE {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_pool_awake;
    use rayon::prelude::*;

    fn parallel_sum(n: u64) -> u64 {
        (0..n).into_par_iter().map(|i| i % 7).sum()
    }

    /// Concurrent and nested callers on a 3-thread pool all get their answers (keepers never wait
    /// on work stacked below them for good).
    #[test]
    fn concurrent_and_nested_callers_finish_with_right_answers() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let expect = |n: u64| (0..n).map(|i| i % 7).sum::<u64>();
        std::thread::scope(|s| {
            for caller in 0..4u64 {
                let pool = &pool;
                s.spawn(move || {
                    for round in 0..40u64 {
                        let n = 10_000 + 997 * caller + round;
                        let (a, b) = pool.install(|| {
                            with_pool_awake(|| {
                                let a = parallel_sum(n);
                                (a, with_pool_awake(|| parallel_sum(n + 1)))
                            })
                        });
                        assert_eq!((a, b), (expect(n), expect(n + 1)));
                    }
                });
            }
        });
        // From outside any pool too (the global one).
        assert_eq!(with_pool_awake(|| parallel_sum(123_457)), expect(123_457));
    }

    /// A panic inside `f` (in a job a keeper may have run) reaches the caller, and the pool works
    /// afterwards.
    #[test]
    fn a_panic_inside_reaches_the_caller_and_the_pool_keeps_working() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| {
                with_pool_awake(|| (0..10_000u64).into_par_iter().for_each(|i| assert!(i != 7_777, "job {i}")))
            })
        }));
        assert!(caught.is_err());
        for _ in 0..20 {
            assert_eq!(pool.install(|| with_pool_awake(|| parallel_sum(50_000))), (0..50_000u64).map(|i| i % 7).sum());
        }
    }
}
